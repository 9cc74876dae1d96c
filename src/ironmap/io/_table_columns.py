"""Columns of :mod:`ironmap.io.columns` that belong to one kind of table, and column families.

Part of the one column dictionary (:func:`ironmap.io.columns.describe` reads it); kept apart
only to keep modules short. Descriptions follow docs/conventions.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .columns import (
    _DEEP_GM,
    _LESIONS,
    _NAWM,
    _PHENOTYPES,
    COLUMNS,
    Column,
    _bool,
    _count,
    _ml,
    _p,
    _r2,
    _region,
)

__all__ = ["PATTERNS", "TABLE_COLUMNS"]

_BETA_UNITS = "1/s per unit of transform"


def _chi(description: str) -> Column:
    """A susceptibility (QSM) column: ppm, to 0.1 ppb."""
    return Column(description, "ppm", decimals=4)


#: The regional susceptibility columns of ``regions.tsv`` (participant and group tables).
_CHI_REGION_COLUMNS = {
    "chi_median": _chi(
        "Median susceptibility (QSM, sub-*_Chimap.nii.gz) of the very voxels of r2star_median "
        "(n/a without phase echoes or an external Chimap)"
    ),
    "chi_mean": _chi("Mean susceptibility of the region's voxels"),
    "chi_sd": _chi("Standard deviation of the susceptibility of the region's voxels"),
    "chi_n_voxels": _count(
        "Voxels with a susceptibility among the region's R2* voxels (0 without QSM)"
    ),
    "chi_harmonized": _chi(
        "chi_median with the site's additive location removed (ComBat on chi, linear scale; "
        "group/regions.tsv, when chi was analysed), age kept"
    ),
    "chi_corrected": _chi(
        "Harmonised chi corrected to the controls' reference age (see age_model_chi.tsv)"
    ),
    "chi_z": Column(
        "z-score of chi against the controls' prediction interval at the participant's age, "
        "sex and site (SD units)",
        decimals=2,
    ),
}


def _hierarchy_columns() -> dict[str, Column]:
    """The multiplicity hierarchy's columns, shared by both comparison tables."""
    return {
        "family": Column(
            "Multiplicity family of the contrast (docs/conventions.md)",
            levels={
                "primary": "MS-HC, pre-specified",
                "versus-HC": "a phenotype (or CIS) against the controls, gated by MS-HC",
                "omnibus": "the phenotype omnibus, gated by MS-HC",
                "between-phenotype": "MS phenotypes against each other, gated by the omnibus",
            },
        ),
        "gate": Column(
            "Contrast whose significance in the same region opens this test (empty: primary)"
        ),
        "gate_open": _bool("Whether the gate passed", "gate passed", "gate closed"),
        "significant": _bool(
            "p_fdr < 0.05 and the gate passed (and, mixed table, the fit converged), and no "
            "more than 20 % of the participants outside the controls' ages: the report's "
            "bold marks",
            "significant",
            "not significant",
        ),
        "n_outside_age": _count(
            "Participants of the contrast older or younger than every control (age correction "
            "extrapolated); above 20 % of n_a + n_b the row is never significant"
        ),
    }


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
    "age_model": {
        "model": Column(
            "Age model of the controls",
            levels={
                "linear": "linear in age",
                "linear-monotone": "linear in age, slope >= 0",
                **{
                    f"spline-df{k}": f"quadratic spline of age with {k} knots, linear beyond "
                    "the outer knots"
                    for k in (2, 3, 4)
                },
                **{
                    f"spline-df{k}-monotone": f"quadratic spline of age with {k} knots, linear "
                    "beyond the outer knots, non-decreasing and concave"
                    for k in (2, 3, 4)
                },
            },
        ),
        "residual_sd": _r2(
            "Controls' residual SD converted to 1/s at the reference age "
            "(residual_sd_log x reference_r2star)"
        ),
        "reference_age": Column(
            "Age everyone is corrected to: the controls' median age", "year", decimals=1
        ),
        "reference_site": Column(
            "Site everyone is corrected to",
            levels={"pooled": "the control-weighted average site (the ComBat grand mean)"},
        ),
        "scale": Column("Scale the model is fitted on", levels={"log": "natural log of R2*"}),
        "residual_sd_log": Column(
            "SD of the harmonised controls' residuals on log R2* (about a relative SD)",
            significant=4,
        ),
        "residual_df": _count(
            "Residual degrees of freedom: n_hc - age_df - sex coefficients - sites with controls"
        ),
        "reference_r2star": _r2(
            "Expected R2* of a control of the baseline sex at the reference age, pooled site"
        ),
        "knots": Column(
            "Spline knots, space-separated: the controls' 5th and 95th age percentiles (the "
            "boundary knots) and equally spaced percentiles between; empty for linear",
            "year",
            format="string",
        ),
        "monotone": _bool(
            "Whether the curve is constrained non-decreasing and concave (iron-rich nuclei)",
            "constrained",
            "free",
        ),
        "age_df": _count(
            "Age basis functions in the fit (knots less those a constraint bound at 0)"
        ),
        "param_intercept": Column(
            "alpha: expected log R2* (log(1/s)) at age 0 (basis = 0), baseline sex, pooled site",
            format="number",
        ),
    },
    "harmonization": {
        "n_hc": _count("Controls of this site with R2* in this region"),
        "location_percent": Column(
            "The site's multiplicative offset after pooling, 100 (exp(gamma_star x sigma) - 1)",
            "%",
            decimals=2,
        ),
        "scale": Column(
            "The site's residual SD relative to the pooled one, sqrt(delta_star)", decimals=3
        ),
        "gamma_hat": Column(
            "Site location before empirical-Bayes pooling (SDs of log R2*)", significant=4
        ),
        "gamma_star": Column(
            "Site location after empirical-Bayes pooling (SDs of log R2*)", significant=4
        ),
        "delta_hat": Column(
            "Site scale (variance ratio) before pooling; n/a with one control", significant=4
        ),
        "delta_star": Column("Site scale (variance ratio) after pooling", significant=4),
        "location_sd_percent": Column(
            "Posterior SD of the location (uncertainty of the site correction)", "%", decimals=2
        ),
        "scale_pooled": _bool(
            "Whether the site keeps the pooled scale (fewer than 10 controls)",
            "pooled scale (delta_star = 1)",
            "own scale",
        ),
        "z_scale": Column(
            "The site's residual SD relative to the pooled one in the z-scores: sqrt(delta_star), "
            "or at a site with fewer than 10 controls its ratio pooled over regions and shrunk "
            "towards 1; R2* itself is not rescaled",
            decimals=3,
        ),
        "z_scale_df": Column(
            "Degrees of freedom behind z_scale at a site with fewer than 10 controls (prior 9 "
            "included); n/a at the others",
            significant=3,
        ),
    },
    "comparison": {
        "estimate": _r2(
            "Adjusted difference of means of r2star_corrected, arm A minus arm B (age, sex and "
            "site accounted for); n/a for the omnibus"
        ),
        "ci_low": _r2("Lower bound of the 95 % confidence interval (t-based, robust SE)"),
        "ci_high": _r2("Upper bound of the 95 % confidence interval (t-based, robust SE)"),
        "cohens_d": Column(
            "estimate / SD of the controls' r2star_corrected in the region", decimals=3
        ),
        "p": _p("Two-sided p-value (t-test; F-test for the omnibus)"),
        "cohens_d_ci_low": Column(
            "Lower bound of the 95 % CI of cohens_d (t-based CI of estimate with the controls' "
            "SD uncertainty, delta method)",
            decimals=3,
        ),
        "cohens_d_ci_high": Column("Upper bound of the 95 % CI of cohens_d", decimals=3),
        "se": _r2("Robust standard error of estimate"),
        "se_type": Column(
            "Type of robust standard error",
            levels={"HC3": "HC3", "HC1": "HC1 (a participant has leverage 1)"},
        ),
        "statistic": Column("t (contrasts) or F (omnibus)", decimals=3),
        "df_num": _count("Numerator degrees of freedom (1 for contrasts)"),
        "df_den": _count("Denominator (residual) degrees of freedom"),
        "n_sites": _count("Sites in the model"),
        "n_excluded": _count(
            "Participants of the two arms left out (at sites without the other arm, or without "
            "r2star_corrected)"
        ),
        "note": Column("Why a row has no estimate, or who was left out"),
        **_hierarchy_columns(),
    },
    "lesion_models": {
        "outcome": Column(
            "Modelled lesion outcome",
            levels={
                "lesion_r2star_pct": "100 (lesion core median R2* / NAWM median R2* - 1), %: "
                "the lesion without its rim band (lesions with a core)",
                "rim_core_r2star": "rim minus core median R2* (1/s), lesions with a core",
            },
        ),
        "term": Column(
            "Fixed effect: Intercept (median-volume lesion at disease duration 0, mean age, "
            "reference sex and site), log2_volume (per doubling of lesion volume), "
            "disease_duration (per year), location[periventricular] (against deep white-matter "
            "lesions), age (per year), C(sex)[T.<level>], C(site)[T.<site>] (against the "
            "reference)"
        ),
        "estimate": Column(
            "Fixed-effect estimate, in the outcome's units (% or 1/s) per unit of the term",
            significant=4,
        ),
        "ci_low": Column("Lower bound of the 95 % Wald confidence interval", significant=4),
        "ci_high": Column("Upper bound of the 95 % Wald confidence interval", significant=4),
        "p": _p("Wald p-value"),
        "n_lesions": _count("Lesions in the model"),
        "n_participants": _count("Participants (MS with disease duration) in the model"),
        "participant_sd": Column(
            "SD of the random participant intercept, in the outcome's units", significant=4
        ),
        "converged": _bool(
            "Whether a usable REML fit was found (converged, finite SEs, definite Hessian); "
            "estimates are n/a when not",
            "converged",
            "did not converge",
        ),
        "model": Column(
            "Model formula, e.g. y ~ log2_volume + disease_duration + age + C(sex) + C(site) "
            "+ (1 | participant); '(OLS, participant-clustered SE)' when the participant "
            "variance is on its boundary"
        ),
        "note": Column(
            "Lesions left out, a boundary refit, or why the outcome was not estimated (empty "
            "when none)"
        ),
        "optimizer": Column(
            "MixedLM optimizer of the kept fit (lbfgs, powell, nm: highest REML likelihood of "
            "the usable fits); empty when none"
        ),
    },
    "comparison_mixed": {
        "estimate": _r2("Adjusted difference A - B, random site intercept (MixedLM, REML)"),
        "ci_low": _r2("Lower bound of the 95 % CI (GLS, robust SE, t with df)"),
        "ci_high": _r2("Upper bound of the 95 % CI (GLS, robust SE, t with df)"),
        "p": _p("Two-sided p-value (t with df, robust SE)"),
        "site_sd": _r2("SD of the random site intercept"),
        "converged": _bool("Whether the REML fit converged", "converged", "did not converge"),
        "model": Column("Model formula, e.g. y ~ group + age + C(sex) + (1 | site)"),
        "se": _r2("Robust standard error of estimate (GLS on the REML variance components)"),
        "se_type": Column(
            "Type of robust standard error",
            levels={"HC3": "HC3", "HC1": "HC1 (a participant has leverage 1)"},
        ),
        "df": Column("Bell-McCaffrey degrees of freedom of the t reference (group coefficient)"),
        "note": Column(
            "Why a row is not marked significant (fit did not converge, age correction "
            "extrapolated)"
        ),
        **_hierarchy_columns(),
    },
    "determinants": {
        "region": _region(
            {
                **_DEEP_GM,
                **_NAWM,
                **_LESIONS,
                "lesions_nawm": "lesion minus the same participant's NAWM r2star_median",
            }
        ),
        "model": Column(
            "Regression model",
            levels={
                "multivariable": "all predictors together (the pre-specified primary model)",
                "univariable": "one predictor at a time",
                "stepwise": "forward entry p < 0.05, backward removal p > 0.10",
                "reduced": "disease duration + EDSS, where the primary model is collinear",
            },
        ),
        "predictor": Column(
            "Clinical or MRI predictor",
            levels={
                "disease_duration": "disease duration (years)",
                "edss": "EDSS",
                "lesion_volume_ml": "lesion volume (mL)",
                "nbv": "normalised brain volume",
                "cortical_gm_ml": "cortical grey-matter volume",
                "n_prl": "PRL candidates (count; deep grey matter and NAWM, with lesion chi)",
            },
        ),
        "beta": Column("Regression coefficient", _BETA_UNITS, significant=4),
        "std_beta": Column("beta x SD(predictor) / SD(outcome)", decimals=3),
        "ci_low": Column("Lower bound of the 95 % CI of beta", _BETA_UNITS, significant=4),
        "ci_high": Column("Upper bound of the 95 % CI of beta", _BETA_UNITS, significant=4),
        "p": _p("Two-sided t-test p-value"),
        "p_fdr": _p(
            "Benjamini-Hochberg over the multivariable rows (the primary family), and "
            "separately over the univariable and over the reduced rows; n/a for stepwise"
        ),
        "n": _count("Participants in the model"),
        "vif": Column(
            "Variance inflation factor in the whole design (predictors, age, sex, site); "
            "multivariable and reduced rows",
            decimals=2,
        ),
        "transform": Column(
            "The scale beta refers to",
            levels={
                "years": "per year",
                "EDSS points": "per EDSS point",
                "log(1 + lesion_volume_ml)": "per unit of the natural log of 1 + mL",
                "brain / ICV": "per 1.0 of the fraction",
                "100 * cortical_gm_ml / icv_ml (% of ICV)": "per % of ICV",
                "PRL candidates (count)": "per PRL candidate",
            },
        ),
        "covariates": Column("Covariates always in the model: age, sex, site"),
        "note": Column(
            "Why a row needs care: VIF above the limit (not identifiable in practice), the "
            "reduced model and why it is shown, stepwise rows exploratory; empty otherwise"
        ),
        "exploratory": _bool(
            "Whether the row is exploratory", "stepwise: its p ignores the selection", "no"
        ),
        "inclusion_frequency": Column(
            "Share of the bootstrap resamples (ironmap.cohort.determinants.N_BOOTSTRAP) in "
            "which stepwise selects the predictor",
            decimals=2,
        ),
        "unit": Column(
            "The clinically meaningful unit beta_unit is per (ironmap.cohort.determinants.UNITS)",
            levels={
                "10 years": "per 10 years of disease duration",
                "EDSS point": "per EDSS point",
                "doubling of (1 mL + volume)": "per doubling of 1 mL + T2 lesion volume "
                "(log(1 + mL) x ln 2)",
                "SD": "per SD of the predictor (NBV, cortical GM in % of ICV) over the model's "
                "participants",
                "PRL": "per PRL candidate (n_prl)",
            },
        ),
        "unit_scale": Column(
            "The unit in the scale of transform: 10, 1, ln 2, or the predictor's SD over the "
            "model's participants",
            significant=4,
        ),
        "beta_unit": Column("beta x unit_scale: beta per unit", "1/s per unit", significant=4),
        "ci_low_unit": Column("ci_low x unit_scale", "1/s per unit", significant=4),
        "ci_high_unit": Column("ci_high x unit_scale", "1/s per unit", significant=4),
        "ci_low_fcr": Column(
            "Lower bound of the false-coverage-rate adjusted CI of beta (Benjamini-Yekutieli "
            "2005: level fcr_level within the p_fdr family; excludes 0 exactly when "
            "p_fdr < 0.05); n/a for stepwise",
            _BETA_UNITS,
            significant=4,
        ),
        "ci_high_fcr": Column(
            "Upper bound of the false-coverage-rate adjusted CI of beta (see ci_low_fcr)",
            _BETA_UNITS,
            significant=4,
        ),
        "std_ci_low_fcr": Column(
            "Lower bound of the FCR-adjusted CI on the scale of std_beta", decimals=3
        ),
        "std_ci_high_fcr": Column(
            "Upper bound of the FCR-adjusted CI on the scale of std_beta", decimals=3
        ),
        "fcr_level": Column(
            "Confidence level of the FCR-adjusted CIs: 1 - R q / m with R of the m rows of "
            "the family at p_fdr < q = 0.05 (1 - q / m when R = 0)",
            decimals=6,
        ),
    },
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
    "longitudinal": {
        "term": Column(
            "What the row estimates (docs/cohort.md#longitudinal-analysis)",
            levels={
                "annual_change": "mean yearly change of harmonised R2* of the arm, at its "
                "participants' own ages",
                "time_x_group": "yearly change of the arm minus that of the controls at equal "
                "age (group x time)",
                "edss_change": "change of harmonised R2* per EDSS point gained, over and above "
                "the yearly change (clinically definite MS)",
            },
        ),
        "arm": Column(
            "Participants the row is about (an arm, or an arm minus the controls)",
            levels={
                "HC": "healthy controls",
                "MS": "clinically definite MS (RRMS, SPMS, PPMS, MS without phenotype; CIS "
                "excluded): its phenotypes weighted by participants with follow-up",
                **_PHENOTYPES,
                **{f"{arm}-HC": f"{arm} minus HC" for arm in ("MS", *_PHENOTYPES)},
            },
        ),
        "estimate": Column(
            "Estimate, in the units of the units column (1/s per year or per EDSS point)",
            decimals=3,
        ),
        "ci_low": Column("Lower bound of the 95 % Wald confidence interval", decimals=3),
        "ci_high": Column("Upper bound of the 95 % Wald confidence interval", decimals=3),
        "p": _p("Two-sided Wald p-value (normal)"),
        "p_fdr": _p("p adjusted by Benjamini-Hochberg across regions within each term and arm"),
        "units": Column(
            "Units of estimate, ci_low, ci_high and se",
            levels={
                "1/s per year": "R2* change per year",
                "1/s per EDSS point": "R2* change per EDSS point",
            },
        ),
        "se": Column("Standard error of estimate (units column)", decimals=3),
        "n_participants": _count("Participants in the arm(s) of the row, any number of sessions"),
        "n_longitudinal": _count("Of them, participants with two or more timed sessions"),
        "n_sessions": _count("Sessions (with R2*) of these participants"),
        "followup_years": Column(
            "Median follow-up (last minus first session) of the participants with two or more "
            "sessions",
            "year",
            decimals=1,
        ),
        "slope_sd": Column(
            "SD of the participants' random slope: spread of yearly change around the model",
            "1/s per year",
            decimals=3,
        ),
        "residual_sd": _r2(
            "Within-participant residual SD of harmonised R2* (scan-rescan and measurement)"
        ),
        "converged": _bool("Whether the REML fit converged", "converged", "did not converge"),
        "model": Column(
            "Mixed model, e.g. r2star_harmonized ~ time + arm + time:arm + age0 + C(sex) + "
            "C(site) + (1 + time | participant)"
        ),
        "note": Column(
            "Arms left out, a random slope dropped, or a fit that did not converge (empty "
            "otherwise)"
        ),
        "random_effects": Column(
            "Random effects per participant of the fitted model",
            levels={
                "intercept + slope": "random intercept and random slope on time",
                "intercept": "random intercept only (the random-slope fit failed: fallback)",
            },
        ),
        "fallback": _bool(
            "Whether the random slope was dropped because its fit failed (CIs too narrow if "
            "yearly changes vary between participants)",
            "random intercept only",
            "random intercept and slope",
        ),
        "scanner_terms": _count(
            "Scanner epochs after the first at a site modelled as session-level offsets (0: no "
            "scanner change during follow-up)"
        ),
    },
    "longitudinal_sessions": {
        "session": Column("Session label, ses-<label> (n/a for data without sessions)"),
        "time_years": Column("Years since the participant's baseline session", "year", decimals=3),
        "age": Column(
            "Age at the session: participants.tsv age (at baseline) + time_years",
            "year",
            decimals=2,
        ),
        "edss": Column(
            "EDSS at the session, from sub-<label>_sessions.tsv (at baseline participants.tsv's "
            "when the sessions file has none)",
            decimals=1,
        ),
        "r2star_site_adjusted": _r2(
            "r2star_median with the site's multiplicative offset removed (ComBat's location, "
            "fitted on the baseline controls; not its scale): what the longitudinal models fit"
        ),
        "time_source": Column(
            "How time_years was found",
            levels={
                "acq_time": "acq_time of sub-<label>_sessions.tsv (every session has one)",
                "age": "age of sub-<label>_sessions.tsv (every session has one, no acq_time)",
                "baseline": "the participant's only timed session (time 0)",
            },
        ),
        "scanner": Column(
            "Scanner of the session: scanner column of sub-<label>_sessions.tsv, else the "
            "first echo sidecar's DeviceSerialNumber/SoftwareVersions (n/a: unknown, counted as "
            "the site's usual scanner)"
        ),
    },
    "dseg": {
        "index": Column("Label code in the dseg image", format="integer"),
        "name": Column("Structure name (FreeSurfer style, docs/conventions.md)"),
    },
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


# -- the chi tables of the group stage: the R2* analyses' columns, in ppm -------------------

#: Group table kind of the chi analysis -> the R2* table it mirrors (io.derivatives.GROUP_TABLES).
_CHI_KINDS = {
    "age_model_chi": "age_model",
    "harmonization_chi": "harmonization",
    "comparison_chi": "comparison",
    "comparison_mixed_chi": "comparison_mixed",
    "determinants_chi": "determinants",
}


def _as_chi(column: Column) -> Column:
    """A column of an R2* group table as it reads in the chi table of the same analysis: 1/s
    becomes ppm (4 significant digits), R2* chi (chi is modelled on its own, linear, scale)."""
    words = column.description.replace("log R2*", "chi").replace("R2*", "chi")
    words = words.replace("r2star_", "chi_").replace("log(1/s)", "ppm").replace("1/s", "ppm")
    if column.units and "1/s" in column.units:
        units = column.units.replace("log(1/s)", "ppm").replace("1/s", "ppm")
        return replace(column, description=words, units=units, decimals=None, significant=4)
    return replace(column, description=words)


_CHI_EXTRA = {
    "residual_sd": _chi("Controls' residual SD of chi (linear scale)"),
    **{
        f"param_age{k}": Column(
            f"Coefficient of age basis b{k} (ppm per decade: the curve's slope at knot {k}, or "
            "its increment for a monotone curve)",
            format="number",
        )
        for k in range(1, 5)
    },
    **{
        f"param_sex_{code}": Column(
            f"Difference in chi (ppm) of sex {code} from the baseline sex", format="number"
        )
        for code in ("F", "M", "O")
    },
    **{
        f"press_rmse_df{k}": Column(
            f"Leave-one-out (PRESS) RMSE of the {k}-knot age model of chi", "ppm", significant=4
        )
        for k in range(1, 5)
    },
    "reference_chi": _chi("The controls' expected chi at the reference age (baseline sex)"),
    "location": _chi("The site's additive chi offset removed by the harmonisation"),
    "location_sd": _chi("Posterior SD of location"),
    "residual_sd_log": Column("n/a: chi is modelled on a linear scale (see residual_sd)"),
    "location_percent": Column("n/a: chi's site offset is additive (see location)"),
    "location_sd_percent": Column("n/a: chi's site offset is additive (see location_sd)"),
}
for _kind, _base in _CHI_KINDS.items():
    TABLE_COLUMNS[_kind] = {
        **{name: _as_chi(c) for name, c in {**COLUMNS, **TABLE_COLUMNS.get(_base, {})}.items()},
        **_CHI_EXTRA,
    }
