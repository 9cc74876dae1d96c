"""Columns of :mod:`ironmap.io.columns` that belong to one kind of table, and column families.

Part of the one column dictionary (:func:`ironmap.io.columns.describe` reads it); kept apart
only to keep modules short. Descriptions follow docs/conventions.md.

Here: the tables with one row per participant (or per region or lesion of one), the column
families, and :data:`TABLE_COLUMNS`, which gathers the group stage's tables
(:mod:`._group_columns`, :mod:`._longitudinal_columns`) and the chi ones (:mod:`._chi_columns`).
"""

from __future__ import annotations

from collections.abc import Callable

from ._chi_columns import _CHI_REGION_COLUMNS, CHI_COLUMNS
from ._group_columns import GROUP_COLUMNS
from ._longitudinal_columns import LONGITUDINAL_COLUMNS
from .columns import (
    _DEEP_GM,
    _LESIONS,
    _NAWM,
    Column,
    _bool,
    _count,
    _ml,
    _r2,
    _region,
)

__all__ = ["PATTERNS", "TABLE_COLUMNS"]


#: Table kind -> columns whose meaning is particular to that table.
TABLE_COLUMNS: dict[str, dict[str, Column]] = {
    "regions": {
        **_CHI_REGION_COLUMNS,
        "region": _region({**_DEEP_GM, **_NAWM, **_LESIONS}),
        "n_csf_excluded": _count(
            "R2* voxels of the region left out because their R2* says CSF (below half the "
            "region's tissue R2*, their partial-volume neighbours, and voxels next to the "
            "segmentation's CSF below 0.85 x the tissue R2*; --csf-exclusion); 0 on "
            "lesions rows, which are not examined"
        ),
        "label_source": Column(
            "Where the row's voxels were labelled (n/a: no label covers the structure, the row "
            "is NaN)",
            levels={
                "dseg": "the participant's own segmentation",
                "atlas": "the bundled atlas registered to the participant (--segmentation atlas, "
                "or hybrid for the structures the dseg lacks)",
                "lesion_mask": "the participant's lesion mask (lesions row)",
            },
        ),
    },
    "lesions": {
        "lesion_id": Column(
            "Lesion number within the participant (session), 1 = largest", format="integer"
        ),
        "centroid_x_mm": Column(
            "Lesion centroid on the lesion mask's grid, scanner x (RAS)", "mm", decimals=1
        ),
        "centroid_y_mm": Column("Lesion centroid, scanner y (RAS)", "mm", decimals=1),
        "centroid_z_mm": Column("Lesion centroid, scanner z (RAS)", "mm", decimals=1),
        "n_voxels": _count(
            "R2* voxels of the lesion: lesion fraction >= --min-fraction, as in the pooled row"
        ),
        "volume_ml": _ml("Lesion volume on the lesion mask's own grid"),
        "r2star_median": _r2("Median R2* of all the lesion's voxels"),
        "r2star_mean": _r2("Mean R2* of all the lesion's voxels (what pools over lesions)"),
        "n_core": _count("Core voxels: the lesion eroded by one voxel (0: too small for a core)"),
        "r2star_core_median": _r2("Median R2* of the core"),
        "n_rim": _count("Rim voxels: the lesion's edge, inside it (one voxel thick)"),
        "r2star_rim_median": _r2("Median R2* of the rim"),
        "r2star_rim_core_diff": _r2(
            "Rim minus core median R2*: positive in paramagnetic rim lesions"
        ),
        "n_shell": _count(
            "Shell voxels: up to two voxels outside the lesion, touched by no lesion"
        ),
        "r2star_shell_median": _r2("Median R2* of the shell around the lesion"),
        "r2star_nawm_median": _r2("The participant's NAWM median R2* (reference)"),
        "field_core_hz": Column(
            "Median local field of the core (field map less its 6 mm Gaussian smoothing; "
            "needs phase echoes)",
            "Hz",
            decimals=2,
        ),
        "field_rim_hz": Column(
            "Median local field of the rim (see field_core_hz)", "Hz", decimals=2
        ),
        "field_rim_core_diff_hz": Column(
            "Rim minus core local field: positive in paramagnetic rim lesions", "Hz", decimals=2
        ),
        "ventricle_distance_mm": Column(
            "Smallest distance from a voxel the lesion touches to a lateral-ventricle voxel "
            "(fraction >= 0.5), voxel centre to voxel centre on the R2* grid: 0 when they "
            "overlap, one voxel size when adjacent (n/a without ventricles in the segmentation)",
            "mm",
            decimals=1,
        ),
        "location": Column(
            "Where the lesion lies (n/a without ventricles in the segmentation)",
            levels={
                "periventricular": "ventricle_distance_mm <= 3 mm: touching the lateral "
                "ventricle, one voxel of partial volume allowed (MAGNIMS/McDonald)",
                "deep_white_matter": "farther from the lateral ventricles",
            },
        ),
        "chi_core_median": Column(
            "Median susceptibility of the lesion deeper than the PRL band (two voxel layers "
            "inside its edge; n/a for smaller lesions or without a chi map)",
            "ppm",
            decimals=4,
        ),
        "chi_rim_median": Column(
            "Median susceptibility of the PRL band, straddling the mask's edge: two voxel "
            "layers inside the lesion's 50 % boundary and its partial-volume voxels outside it",
            "ppm",
            decimals=4,
        ),
        "chi_shell_median": Column(
            "Median susceptibility of the white matter more than one voxel outside the lesion, "
            "out to 8 mm: the local NAWM level",
            "ppm",
            decimals=4,
        ),
        "prl_rim_coverage": Column(
            "Share of the band's 14 direction sectors whose mean excess over partial-volume "
            "lesion and NAWM (chi, plus R2* at 0.0072 ppm per 1/s; vessels left out) is at "
            "least 0.01 ppm",
            decimals=2,
        ),
        "prl_central_vein": _bool(
            "A vessel (0.07 ppm or more above the lesion and NAWM levels) within 3 mm of the "
            "lesion's centroid: the central vein sign (not used by prl_score)",
            "central vein",
            "none",
        ),
        "prl_score": Column(
            "Median over the band's sectors of their excess (see prl_rim_coverage): high when "
            "a paramagnetic rim covers more than half the lesion's surface (n/a without a chi "
            "map or a NAWM shell)",
            "ppm",
            decimals=4,
        ),
        "prl_candidate": _bool(
            "Paramagnetic rim lesion candidate: prl_score >= 0.01 ppm", "PRL", "not a PRL"
        ),
    },
    "subjects": {
        "analysed": _bool(
            "Whether the group statistics include the participant",
            "included",
            "excluded (reason in participant_flow.tsv)",
        ),
        "age_support": Column(
            "Age against the controls of the normative model (n/a: no age)",
            levels={
                "within": "within the controls' 5th-95th age percentile",
                "beyond_p5_p95": "within the controls' age range, beyond their 5th-95th "
                "percentile (the age curve's linear tails)",
                "outside": "younger or older than every control (extrapolated along the "
                "linear tail)",
            },
        ),
    },
    "flow": {
        "status": Column(
            "Whether the group statistics include the participant",
            levels={"analysed": "included", "excluded": "left out (see reason)"},
        ),
        "reason": Column("Why the participant is excluded (empty when analysed)"),
        "note": Column(
            "Caveat of an analysed participant (empty if none): age outside the controls' "
            "range or beyond their 5th-95th percentile"
        ),
    },
    **GROUP_COLUMNS,
    "participant_qc": {
        "n_echoes": _count("Echoes fitted"),
        "te_min_ms": Column("First echo time", "ms", decimals=3),
        "te_max_ms": Column("Last echo time", "ms", decimals=3),
        "voxel_x_mm": Column("Voxel size along the first axis of the R2* map", "mm", decimals=3),
        "voxel_y_mm": Column("Voxel size along the second axis of the R2* map", "mm", decimals=3),
        "voxel_z_mm": Column("Voxel size along the third axis of the R2* map", "mm", decimals=3),
        "field_t": Column("Magnetic field strength", "T", decimals=2),
        "b0_correction": _bool(
            "Whether macroscopic field gradients were corrected from the phase", "yes", "no"
        ),
        "fit_method": Column("R2* estimator asked for (--fit-method)"),
        "qsm": Column(
            "Where the susceptibility map (sub-*_Chimap.nii.gz) came from (--qsm)",
            levels={
                "computed": "from the phase echoes",
                "external": "a Chimap found in the derivatives (e.g. QSMxT's)",
                "none": "no susceptibility map (no phase echoes, or --qsm off)",
            },
        ),
        "qsm_background": Column("QSM background field removal method (computed maps)"),
        "qsm_inversion": Column("QSM dipole inversion method (computed maps)"),
        "qsm_reference": Column("Region chi is relative to (computed maps)"),
        "estimation_algorithm": Column("R2* estimator used (EstimationAlgorithm of the maps)"),
        "min_fraction": Column(
            "--min-fraction: share of a voxel inside a structure to count", format="number"
        ),
        "erode_mm": Column("--erode-mm: erosion radius of each structure", "mm"),
        "segmentation": Column(
            "--segmentation",
            levels={
                "auto": "the participant's dseg when there is one",
                "atlas": "the bundled atlas registered to the participant",
                "hybrid": "the dseg, and the registered atlas for the deep grey matter it lacks",
                "none": "maps only",
            },
        ),
        "csf_exclusion": Column(
            "--csf-exclusion (n/a: made before the option existed)",
            levels={
                "on": "R2* voxels whose R2* says CSF left out of the regions",
                "off": "no voxel left out as CSF-like",
            },
        ),
        "segmentation_source": Column(
            "Where the regions came from (_provenance.json option and inputs)",
            levels={
                "dseg": "the participant's own segmentation (*_dseg.nii[.gz], or a "
                "FreeSurfer/FastSurfer/SynthSeg output)",
                "atlas": "the bundled atlas registered to the participant",
                "hybrid": "the participant's own segmentation, the registered atlas for the deep "
                "grey-matter structures it lacks (atlas_regions)",
            },
        ),
        "atlas_regions": Column(
            "With segmentation_source hybrid: the deep grey-matter structures labelled by the "
            "registered atlas (label_source atlas in _regions.tsv), ';'-separated; n/a otherwise"
        ),
        "label_source": Column(
            "Where the regions' labels were read from",
            levels={
                "dseg.tsv": "the names of the segmentation's dseg.tsv",
                "aseg codes": "FreeSurfer aseg codes (a segmentation without dseg.tsv)",
                "freesurfer": "FreeSurfer LUT codes of a FreeSurfer or FastSurfer subject "
                "folder (mri/aseg.mgz ...)",
                "synthseg": "FreeSurfer LUT codes of a SynthSeg output (*_synthseg.nii[.gz])",
                "atlas": "the bundled atlas's labels",
            },
        ),
        "lesion_mask": _bool(
            "Whether a lesion mask (*_label-lesion_mask) was an input", "yes", "no"
        ),
        "iron_calibration": Column("--iron-calibration (none without iron columns)"),
        "noise_sigma": Column("Noise SD of the magnitudes (magnitude units)", significant=4),
        "noise_sigma_source": Column(
            "Where noise_sigma comes from",
            levels={
                "given": "given",
                "background": "image background",
                "residuals": "fit residuals",
                "unknown": "unknown",
            },
        ),
        "snr": Column("First-echo SNR: median fitted first-echo signal / noise_sigma", decimals=1),
        "fit_voxels": _count("Fit-mask voxels inside the intracranial volume"),
        "failed_voxels": _count("Of them, voxels whose fit failed"),
        "failed_voxel_pct": Column("100 x failed_voxels / fit_voxels", "%", decimals=2),
        "alignment": Column(
            "Worst alignment of the participant's dseg to the GRE",
            levels={"ok": "aligned", "doubtful": "possibly misaligned: check the QC figure"},
        ),
        "segmentation_registered": _bool(
            "Whether the dseg's own image (T1w, FLAIR) was registered to the GRE "
            "(--register-segmentation; n/a: not decided)",
            "yes",
            "no",
        ),
        "registration_shift_mm": Column(
            "Displacement of the GRE's centre by that registration (head motion between scans)",
            "mm",
            decimals=2,
        ),
        "registration_angle_deg": Column("Rotation angle of that registration", "deg", decimals=2),
        "ironmap_version": Column("ironmap version of the participant stage"),
    },
    **LONGITUDINAL_COLUMNS,
    "dseg": {
        "index": Column("Label code in the dseg image", format="integer"),
        "name": Column("Structure name (FreeSurfer style, docs/conventions.md)"),
    },
    **CHI_COLUMNS,
}

#: Column families: regular expression (full match) -> the Column, from the match's groups.
PATTERNS: tuple[tuple[str, Callable[..., Column]], ...] = (
    (
        r"param_age(\d+)",
        lambda k: Column(
            f"Coefficient of age basis b{k} (log(1/s) per decade: the curve's slope at knot "
            f"{k}, or its increment for a monotone curve)",
            format="number",
        ),
    ),
    (
        r"param_sex_(.+)",
        lambda code: Column(
            f"Difference in log R2* (log(1/s)) of sex {code} from the baseline sex",
            format="number",
        ),
    ),
    (
        r"press_rmse_df(\d+)",
        lambda k: Column(
            f"Leave-one-out (PRESS) RMSE of the {k}-knot age model, log R2*", significant=4
        ),
    ),
    (
        r"corr_(.+)",
        lambda name: Column(
            f"Pearson correlation of the row's predictor with {name} over the model's "
            "participants (determinants.tsv multivariable rows)",
            decimals=3,
        ),
    ),
    (
        r"min_voxels_(.+)",
        lambda region: _count(f"Smaller of the two hemispheres' n_voxels of {region}"),
    ),
    (
        r"csf_excluded_pct_(.+)",
        lambda region: Column(
            f"Share of {region}'s R2* voxels left out as CSF-like: 100 x n_csf_excluded / "
            "(n_voxels + n_csf_excluded) of its both row",
            "%",
            decimals=1,
        ),
    ),
)
