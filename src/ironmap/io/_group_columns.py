"""Columns of the group stage's cross-sectional analysis tables, in R2*.

The age model, harmonisation, comparison (fixed and mixed), lesion-model and determinants
tables; part of the one column dictionary (:data:`ironmap.io._table_columns.TABLE_COLUMNS`
gathers them; :func:`ironmap.io.columns.describe` reads it). Descriptions follow
docs/conventions.md.
"""

from __future__ import annotations

from .columns import (
    _DEEP_GM,
    _LESIONS,
    _NAWM,
    Column,
    _bool,
    _count,
    _p,
    _r2,
    _region,
)

__all__ = ["GROUP_COLUMNS"]

_BETA_UNITS = "1/s per unit of transform"


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


#: Group table kind -> columns whose meaning is particular to that table.
GROUP_COLUMNS: dict[str, dict[str, Column]] = {
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
}
