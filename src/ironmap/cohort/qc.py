"""Per-participant protocol and quality control, collected from the participant-stage outputs.

:func:`collect_protocols` gives ``group/participant_qc.tsv``: one row per participant (its
baseline session, the one the statistics use) with what was acquired (echoes, echo times, field
strength, voxel size, from the maps' JSON sidecars and NIfTI headers), how it was processed (the
options of ``_provenance.json``) and how well (noise, SNR, failed voxels, the smallest voxel count
of each deep grey-matter structure, the share of its voxels left out as CSF-like and the
segmentation's alignment). The report's protocol and QC tables and its Methods paragraph are
built from it. Columns in docs/conventions.md.

A participant whose provenance record, sidecar or maps are missing (e.g. tables copied without
the maps) keeps its row with ``n/a`` in the columns that need them; nothing is warned, since the
report says how many participants had no record.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.derivatives import ParticipantOutputs
from ..io.echoes import sidecar_path
from ..io.freesurfer import tool_of
from ..io.nifti import load_image
from ..regions.labels import DEEP_GM

__all__ = [
    "MIN_REGION_VOXELS",
    "OVERVIEW_FLAGS",
    "QC_COLUMNS",
    "Z_FLAG",
    "collect_protocols",
    "first_echo_snr",
    "qc_overview",
]

#: Voxels per hemisphere below which a structure's median R2* is flagged as resting on few
#: voxels (the same count the lesion outcomes need, ``cohort.determinants.MIN_LESION_VOXELS``).
MIN_REGION_VOXELS = 20

#: A structure whose R2* z-score against the normative model exceeds this in absolute value is
#: flagged on the QC index (``r2star_z`` of ``group/regions.tsv``).
Z_FLAG = 3.0

#: The flags of :func:`qc_overview`, worst first: column -> what it says.
OVERVIEW_FLAGS = {
    "flag_alignment": "segmentation alignment doubtful",
    "flag_failed": "many failed fits",
    "flag_few_voxels": "few voxels in a hemisphere",
    "flag_z": "|z| above the limit",
    "flag_csf": "structure CSF-like",
}

#: Columns of ``group/participant_qc.tsv``, in order (``session`` only with sessions).
QC_COLUMNS = [
    "participant_id",
    "session",
    "site",
    "group",
    "phenotype",
    "n_echoes",
    "te_min_ms",
    "te_max_ms",
    "voxel_x_mm",
    "voxel_y_mm",
    "voxel_z_mm",
    "field_t",
    "b0_correction",
    "fit_method",
    "estimation_algorithm",
    "min_fraction",
    "erode_mm",
    "segmentation",
    "csf_exclusion",
    "segmentation_source",
    "label_source",
    "atlas_regions",
    "lesion_mask",
    "iron_calibration",
    "noise_sigma",
    "noise_sigma_source",
    "snr",
    "fit_voxels",
    "failed_voxels",
    "failed_voxel_pct",
    *(f"min_voxels_{r}" for r in DEEP_GM),
    *(f"csf_excluded_pct_{r}" for r in DEEP_GM),
    "alignment",
    "segmentation_registered",
    "registration_shift_mm",
    "registration_angle_deg",
    "qsm",
    "qsm_background",
    "qsm_inversion",
    "qsm_reference",
    "ironmap_version",
]


def _json(path: Path) -> dict:
    """A JSON object, or {} when the file is missing or not an object."""
    if not path.exists():
        return {}
    try:
        content = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return {}
    return content if isinstance(content, dict) else {}


def first_echo_snr(s0: np.ndarray, r2star: np.ndarray, te1_s: float, sigma: float) -> float:
    """SNR of the first echo: median fitted first-echo signal over the noise SD.

    Parameters
    ----------
    s0, r2star : numpy.ndarray
        The S0 map (magnitude units) and the R2* map (1/s), same shape; voxels where the fit
        failed are NaN in R2*.
    te1_s : float
        First echo time (s).
    sigma : float
        Noise SD of the magnitudes (``NoiseSigma`` of the sidecar, magnitude units).

    Returns
    -------
    float
        ``median(S0 exp(-R2* TE1)) / sigma`` over the voxels with a finite R2* and S0 (the fitted
        voxels: the intracranial fit mask), NaN without such voxels or without a positive sigma.
        The fitted first-echo signal is used rather than the measured one so that the SNR does
        not depend on noise in the voxel, and rather than S0 so that it is the SNR of an image
        that was acquired.
    """
    ok = np.isfinite(r2star) & np.isfinite(s0)
    if not ok.any() or not (sigma > 0):
        return float("nan")
    signal = s0[ok] * np.exp(-r2star[ok] * te1_s)
    return float(np.median(signal) / sigma)


def _data(img) -> np.ndarray | None:
    """The map's data as float64, or None when it cannot be read (a damaged output)."""
    try:
        return np.asarray(img.dataobj, dtype=np.float64)
    except (OSError, ValueError, EOFError, zlib.error):
        return None


def _maps(outputs: ParticipantOutputs, sidecar: dict) -> dict:
    """Voxel size (mm) from the R2* header and the first-echo SNR from the S0 and R2* maps."""
    paths = outputs.maps
    row: dict = {}
    if not paths["R2starmap"].exists():
        return row
    r2_img = load_image(paths["R2starmap"])
    zooms = [float(z) for z in r2_img.header.get_zooms()[:3]]
    row.update(zip(("voxel_x_mm", "voxel_y_mm", "voxel_z_mm"), zooms, strict=True))
    te = sidecar.get("EchoTime")
    sigma = sidecar.get("NoiseSigma")
    if paths["S0map"].exists() and isinstance(te, list) and te and sigma is not None:
        r2star = _data(r2_img)
        s0 = _data(load_image(paths["S0map"]))
        if r2star is not None and s0 is not None and r2star.shape == s0.shape:
            row["snr"] = first_echo_snr(s0, r2star, float(min(te)), float(sigma))
    return row


def _csf_excluded_pct(rows: pd.DataFrame, region: str) -> float:
    """100 x n_csf_excluded / (n_voxels + n_csf_excluded) of the region's ``both`` row: the
    share of its R2* voxels left out as CSF-like; NaN without the columns, the row or voxels."""
    if "n_csf_excluded" not in rows.columns:
        return np.nan
    both = rows[(rows["region"] == region) & (rows["hemisphere"] == "both")]
    if both.empty:
        return np.nan
    kept = pd.to_numeric(both["n_voxels"], errors="coerce").iloc[0]
    excluded = pd.to_numeric(both["n_csf_excluded"], errors="coerce").iloc[0]
    total = kept + excluded
    if not np.isfinite(total) or total <= 0:
        return np.nan
    return float(100.0 * excluded / total)


def _regions(rows: pd.DataFrame) -> dict:
    """Smallest per-hemisphere voxel count of each deep-GM structure, the share of its voxels
    left out as CSF-like, and the alignment."""
    row: dict = {}
    for region in DEEP_GM:
        part = rows[(rows["region"] == region) & (rows["hemisphere"] != "both")]
        if part.empty:  # no hemisphere rows: the pooled count is the best there is
            part = rows[rows["region"] == region]
        counts = pd.to_numeric(part["n_voxels"], errors="coerce").dropna()
        row[f"min_voxels_{region}"] = int(counts.min()) if len(counts) else np.nan
        row[f"csf_excluded_pct_{region}"] = _csf_excluded_pct(rows, region)
    if "alignment" in rows.columns:
        values = set(rows["alignment"].dropna().astype(str))
        row["alignment"] = "doubtful" if "doubtful" in values else ("ok" if values else np.nan)
    return row


def _segmentation(options: dict, inputs: dict) -> dict:
    """Where the regions came from, from the provenance record's option and input files.

    ``--segmentation auto`` used the participant's dseg (an input ``*_dseg.nii[.gz]``, or a
    FreeSurfer/FastSurfer/SynthSeg output, :func:`ironmap.io.freesurfer.tool_of`; without
    one no regions were written), ``atlas`` the registered atlas, ``hybrid`` with a dseg both
    (source ``hybrid``: the dseg, and the atlas for what it lacks); labels come from the
    dseg's ``.tsv`` when it was an input, else from that tool (``freesurfer``, ``synthseg``),
    else its FreeSurfer aseg codes. ``lesion_mask``: a ``*_label-lesion_mask`` was an input.
    NaN where the record does not say.
    """
    names = [str(name) for name in inputs]
    tools = [tool for tool in map(tool_of, names) if tool is not None]
    dseg = any(n.endswith(("_dseg.nii.gz", "_dseg.nii")) for n in names) or bool(tools)
    option = options.get("segmentation")
    source = "atlas" if option == "atlas" else ("dseg" if dseg else np.nan)
    if option == "hybrid":
        source = "hybrid" if dseg else "atlas"  # hybrid without a dseg registers the atlas
    if source == "atlas":
        labels = "atlas"
    elif source in ("dseg", "hybrid"):
        labels = "dseg.tsv" if any(n.endswith("_dseg.tsv") for n in names) else "aseg codes"
        labels = tools[0] if tools and labels == "aseg codes" else labels
    else:
        labels = np.nan
    lesion = any("_label-lesion_mask.nii" in n for n in names) if names else np.nan
    return {"segmentation_source": source, "label_source": labels, "lesion_mask": lesion}


def _qsm(provenance: dict) -> dict:
    """The susceptibility map's source, steps and reference region (``qsm`` of
    ``_provenance.json``; ``none`` without one, NaN without a record)."""
    if not provenance:
        return {}
    record = provenance.get("qsm") or {}
    parameters = record.get("parameters") or {}
    return {
        "qsm": record.get("source", "none"),
        "qsm_background": parameters.get("background"),
        "qsm_inversion": parameters.get("inversion"),
        "qsm_reference": record.get("reference_region"),
    }


def _participant(outputs: ParticipantOutputs, rows: pd.DataFrame) -> dict:
    provenance = _json(outputs.provenance)
    sidecar = _json(sidecar_path(outputs.maps["R2starmap"]))
    options = provenance.get("options") or {}
    voxels = provenance.get("voxels") or {}
    te = sidecar.get("EchoTime")
    te = [float(t) for t in te] if isinstance(te, list) and te else []
    fit_voxels, failed = voxels.get("fit_voxels"), voxels.get("failed_voxels")
    row = {
        "n_echoes": len(te) if te else np.nan,
        "te_min_ms": 1e3 * min(te) if te else np.nan,
        "te_max_ms": 1e3 * max(te) if te else np.nan,
        "field_t": sidecar.get("MagneticFieldStrength", np.nan),
        "b0_correction": options.get("b0_correction", sidecar.get("B0GradientCorrection")),
        "fit_method": options.get("fit_method"),
        "estimation_algorithm": sidecar.get("EstimationAlgorithm"),
        "min_fraction": options.get("min_fraction"),
        "erode_mm": options.get("erode_mm"),
        "segmentation": options.get("segmentation"),
        **_segmentation(options, provenance.get("inputs") or {}),
        "csf_exclusion": options.get("csf_exclusion", np.nan),  # NaN: made before the option
        "iron_calibration": (options.get("iron_calibration") or "none") if options else None,
        "noise_sigma": sidecar.get("NoiseSigma"),
        "noise_sigma_source": sidecar.get("NoiseSigmaSource"),
        "fit_voxels": fit_voxels,
        "failed_voxels": failed,
        "failed_voxel_pct": (
            100.0 * failed / fit_voxels if fit_voxels and failed is not None else None
        ),
        **_registration(provenance),
        **_qsm(provenance),
        "ironmap_version": provenance.get("ironmap_version"),
    }
    if row["segmentation_source"] == "hybrid":
        row["atlas_regions"] = _atlas_regions(rows)
    return {**row, **_maps(outputs, sidecar), **_regions(rows)}


def _registration(provenance: dict) -> dict:
    """Whether the dseg's own image was registered to the GRE, the displacement (mm) of the
    GRE's centre and the rotation angle (deg) (``segmentation_registration`` of the provenance
    record, :mod:`ironmap.segmentation.coregister`); NaN where it does not say."""
    record = provenance.get("segmentation_registration") or {}
    registered = bool(record.get("registered")) if record else np.nan
    shift = record.get("displacement_mm") if registered is True else None
    return {
        "segmentation_registered": registered,
        "registration_shift_mm": float(np.linalg.norm(shift)) if shift else np.nan,
        "registration_angle_deg": record.get("angle_deg", np.nan)
        if registered is True
        else np.nan,
    }


def _atlas_regions(rows: pd.DataFrame) -> str | float:
    """The deep grey-matter structures of ``rows`` (``_regions.tsv``) whose ``label_source`` is
    ``atlas``, in catalogue order, ``;``-separated (NaN when none)."""
    if "label_source" not in rows.columns:
        return np.nan
    atlas = set(rows.loc[rows["label_source"] == "atlas", "region"])
    return ";".join(r for r in DEEP_GM if r in atlas) or np.nan


def collect_protocols(
    output_dir: str | Path, regions: pd.DataFrame, subjects: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``group/participant_qc.tsv``: protocol and QC of each participant's baseline session.

    Parameters
    ----------
    output_dir : str or Path
        The participant stage's ``OUTPUT_DIR``.
    regions : pandas.DataFrame
        The stacked ``_regions.tsv`` rows, one session per participant (the output of
        :func:`~ironmap.cohort.tables.collect_regions`): they say which participants and
        sessions to read and give ``n_voxels`` and ``alignment``.
    subjects : pandas.DataFrame, optional
        ``group/subjects.tsv`` rows; their ``site``, ``group`` and ``phenotype`` are added.

    Returns
    -------
    pandas.DataFrame
        One row per participant of ``regions``, columns :data:`QC_COLUMNS` (``session`` only
        when ``regions`` has one). ``snr`` is :func:`first_echo_snr`; ``failed_voxel_pct`` is
        100 x failed / fitted voxels of ``_provenance.json``; ``min_voxels_<region>`` the
        smaller of the two hemispheres' ``n_voxels``; ``csf_excluded_pct_<region>`` 100 x
        ``n_csf_excluded / (n_voxels + n_csf_excluded)`` of the region's ``both`` row (NaN
        without the columns or voxels); ``csf_exclusion`` the ``--csf-exclusion`` option (NaN
        for outputs made before the option existed).
    """
    rows = []
    has_session = "session" in regions.columns
    for pid, part in regions.groupby("participant_id", sort=False):
        sessions = part["session"].dropna() if has_session else pd.Series(dtype=object)
        session = str(sessions.iloc[0]) if len(sessions) else None
        label = session.removeprefix("ses-") if session is not None else None
        outputs = ParticipantOutputs(Path(output_dir), str(pid).removeprefix("sub-"), label)
        rows.append({"participant_id": pid, "session": session, **_participant(outputs, part)})
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["participant_id"])
    if subjects is not None and len(table):
        info = subjects.set_index("participant_id")[["site", "group", "phenotype"]]
        table = table.join(info, on="participant_id")
    columns = [c for c in QC_COLUMNS if has_session or c != "session"]
    return table.reindex(columns=columns)


def qc_overview(
    qc: pd.DataFrame,
    regions: pd.DataFrame,
    *,
    failed_pct: float,
    csf_pct: float,
    min_voxels: int = MIN_REGION_VOXELS,
    z_limit: float = Z_FLAG,
) -> pd.DataFrame:
    """One row per participant of ``qc`` with the numbers and flags of the QC index, worst first.

    Parameters
    ----------
    qc : pandas.DataFrame
        ``group/participant_qc.tsv`` (:func:`collect_protocols`).
    regions : pandas.DataFrame
        ``group/regions.tsv``: per-hemisphere ``n_voxels``, ``alignment_score`` and, for the
        analysed participants, ``r2star_z`` of the ``both`` rows.
    failed_pct : float
        Failed voxels (% of the fit mask) from which a participant is flagged.
    csf_pct : float
        Share (%) of a deep grey-matter structure left out as CSF-like above which it is flagged.
    min_voxels : int, optional
        Voxels per hemisphere below which a structure is flagged.
    z_limit : float, optional
        ``|r2star_z|`` above which a structure is flagged.

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, ``session`` (with sessions), ``site``, ``group``, ``voxel_mm``
        (``"2 x 2 x 3"``), ``failed_voxel_pct``, ``alignment``, ``alignment_score``,
        ``min_voxels`` (smallest per-hemisphere ``n_voxels`` of a deep-GM structure),
        ``min_voxels_structure`` (``"red_nucleus/left"``), ``n_z_over`` (deep-GM structures
        with ``|r2star_z| > z_limit``, NaN without z-scores), ``max_abs_z``, ``csf_excluded_pct``
        (the largest ``csf_excluded_pct_<region>``), ``csf_excluded_structure``, the boolean
        :data:`OVERVIEW_FLAGS` columns and ``n_flags``; sorted by ``n_flags`` (descending), the
        flags in :data:`OVERVIEW_FLAGS` order, then the smallest count, the largest ``|z|``, the
        failed share and the participant.
    """
    table = qc.copy()
    if "session" not in table.columns:
        table["session"] = None
    sizes = [f"voxel_{a}_mm" for a in "xyz"]
    table["voxel_mm"] = table[sizes].apply(
        lambda r: " x ".join(f"{v:g}" for v in r) if r.notna().all() else np.nan, axis=1
    ) if len(table) else pd.Series(dtype=object)  # fmt: skip
    deep = regions[regions["region"].isin(DEEP_GM)]
    hemis = deep[deep["hemisphere"] != "both"].dropna(subset=["n_voxels"])
    smallest = hemis.loc[hemis.groupby("participant_id")["n_voxels"].idxmin()]
    smallest = smallest.set_index("participant_id")
    table["min_voxels"] = table["participant_id"].map(smallest["n_voxels"])
    table["min_voxels_structure"] = table["participant_id"].map(
        smallest["region"] + "/" + smallest["hemisphere"]
    )
    both = deep[deep["hemisphere"] == "both"]
    if "r2star_z" in both.columns:
        z = pd.to_numeric(both["r2star_z"], errors="coerce").abs().groupby(both["participant_id"])
        table["n_z_over"] = table["participant_id"].map(
            z.apply(lambda v: (v > z_limit).sum() if v.notna().any() else np.nan)
        )
        table["max_abs_z"] = table["participant_id"].map(z.max())
    else:
        table["n_z_over"] = table["max_abs_z"] = np.nan
    if "alignment_score" in regions.columns:
        score = regions.groupby("participant_id")["alignment_score"].first()
        table["alignment_score"] = table["participant_id"].map(score)
    else:
        table["alignment_score"] = np.nan
    csf = table[[f"csf_excluded_pct_{r}" for r in DEEP_GM]].astype(float)
    known = csf.notna().any(axis=1)
    table["csf_excluded_pct"] = csf.max(axis=1)
    table["csf_excluded_structure"] = np.where(
        known, csf.fillna(-1.0).idxmax(axis=1).str.removeprefix("csf_excluded_pct_"), None
    )
    table["flag_alignment"] = table["alignment"] == "doubtful"
    table["flag_failed"] = table["failed_voxel_pct"].astype(float) >= failed_pct
    table["flag_few_voxels"] = table["min_voxels"].astype(float) < min_voxels
    table["flag_z"] = table["n_z_over"].astype(float) > 0
    table["flag_csf"] = table["csf_excluded_pct"] > csf_pct
    table["n_flags"] = table[list(OVERVIEW_FLAGS)].sum(axis=1).astype(int)
    table = table.sort_values(
        [
            "n_flags",
            *OVERVIEW_FLAGS,
            "min_voxels",
            "max_abs_z",
            "failed_voxel_pct",
            "participant_id",
        ],
        ascending=[False, *(False for _ in OVERVIEW_FLAGS), True, False, False, True],
        na_position="last",
        kind="stable",
    )
    columns = [
        "participant_id", "session", "site", "group", "voxel_mm", "failed_voxel_pct",
        "alignment", "alignment_score", "min_voxels", "min_voxels_structure", "n_z_over",
        "max_abs_z", "csf_excluded_pct", "csf_excluded_structure", *OVERVIEW_FLAGS, "n_flags",
    ]  # fmt: skip
    return table[columns].reset_index(drop=True)
