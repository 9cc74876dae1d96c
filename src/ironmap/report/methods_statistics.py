"""The Methods' group-analysis paragraphs: harmonisation and the controls' age model
(``group/harmonization.json``, ``group/age_model.tsv``), and the statistics of the
comparisons and determinants.
"""

from __future__ import annotations

import html

import pandas as pd

from ..cohort.age import MIN_CONTROLS_PER_SITE
from ..cohort.demographics import MIN_EXPECTED
from ..cohort.determinants import N_BOOTSTRAP, OPTIONAL_PREDICTORS, UNITS, VIF_LIMIT
from .sentences import _join
from .style import pretty_region
from .tables_models import curve_label


def _harmonisation(age_model: pd.DataFrame, harmonization: dict | None, cite) -> str:
    if not harmonization:
        return ""
    sites = harmonization.get("ControlsPerSite", {})
    pooled = harmonization.get("SitesWithPooledScale", [])
    eb = (
        "with empirical-Bayes pooling across regions"
        if "empirical" in str(harmonization.get("Method", ""))
        else "without empirical-Bayes pooling"
    )
    text = (
        f"Site effects were removed with ComBat ({cite('johnson', 'fortin')}) on log R2*, "
        f"{eb}, fitted on the {sum(sites.values())} healthy controls at {len(sites)} sites ("
        + ", ".join(f"{html.escape(str(s))} {n}" for s, n in sites.items())
        + ") and applied to every participant, preserving age (a regression spline, as in "
        f"ComBat-GAM; {cite('pomponio')}) and sex. Only the site's location was removed from "
        "R2*; its scale (residual SD relative to the pooled one) entered the z-scores, so that "
        "a disease effect at a noisy site was not shrunk with its noise."
    )
    if pooled:
        text += (
            f" Sites with fewer than {MIN_CONTROLS_PER_SITE} controls ("
            + ", ".join(html.escape(str(s)) for s in pooled)
            + ") had their scale pooled over regions and shrunk towards the pooled scale "
            f"(prior of {MIN_CONTROLS_PER_SITE - 1} degrees of freedom)."
        )
    if len(age_model):
        chosen = age_model.groupby("model", sort=False)["region"].agg(list)
        parts = []
        for model, regions in chosen.items():
            parts.append(f"{curve_label(model)} for {_join(pretty_region(r) for r in regions)}")
        text += (
            " The controls' age curve was a quadratic spline, linear beyond the controls' 5th "
            "and 95th age percentiles, constrained non-decreasing and concave in the iron-rich "
            "nuclei (caudate, putamen, pallidum, substantia nigra, red nucleus, dentate "
            f"nucleus), where iron rises with age and levels off ({cite('hallgren')}), with "
            "1-4 knots chosen per region by leave-one-out prediction error: "
            f"{'; '.join(parts)}. Harmonised R2* was "
            "corrected to the controls' median age "
            f"({float(age_model['reference_age'].iloc[0]):.1f} years) with that curve."
        )
    return text


def _statistics(
    comparison_mixed: pd.DataFrame, determinants: pd.DataFrame, cite, mixed_table: str | None
) -> str:
    text = (
        "In Table 1, the controls and all clinically definite MS were compared by Welch's "
        "t-test (age, normalised brain volume) and the chi-square test of sex (Yates-corrected; "
        f"Fisher's exact test when an expected count was below {MIN_EXPECTED}); EDSS quartiles "
        "are observed scores. "
        "Groups were compared on age-corrected R2* by ordinary least squares with group, age, "
        "sex and site (fixed effect), on the participants at sites holding both arms of a "
        f"contrast, with HC3 heteroscedasticity-robust standard errors ({cite('long')}); Cohen's "
        "d is the difference over the controls' SD, with a 95 % CI from the difference's "
        "t-based CI and the SD's sampling uncertainty (delta method). RRMS, SPMS and PPMS were "
        "compared by a robust Wald F-test. p-values were corrected for the false discovery "
        f"rate across regions within each contrast ({cite('bh')}). Multiplicity across "
        "contrasts followed a pre-specified hierarchy (serial gatekeeping per region): MS "
        "versus controls was the primary family; a phenotype's difference from the controls "
        "and the omnibus test of the phenotypes were declared significant only in regions where "
        "MS versus controls was, and the differences between phenotypes only where the omnibus "
        "test was."
    )
    if mixed_table and len(comparison_mixed):
        converged = comparison_mixed["converged"].astype(str).eq("True")
        failed = int((~converged).sum())
        text += (
            " As a sensitivity analysis, the differences were refitted by a mixed model with a "
            f"random site intercept instead of the site fixed effect (REML; {mixed_table}), "
            "with robust standard errors of the generalised least-squares estimate and a t "
            f"reference with Bell-McCaffrey degrees of freedom ({cite('bellmccaffrey')}); "
            + (
                f"{failed} of {len(comparison_mixed)} fits did not converge and were not "
                "declared significant."
                if failed
                else f"all {len(comparison_mixed)} fits converged."
            )
        )
    multi = determinants[determinants["model"] == "multivariable"]["region"].unique()
    used = set(determinants.get("predictor", ()))  # the optional predictors where fitted
    units = {p: u for p, u in UNITS.items() if p not in OPTIONAL_PREDICTORS or p in used}
    text += (
        " In clinically definite MS (CIS excluded), age-corrected R2* was regressed on disease "
        "duration, EDSS, log(1 + T2 lesion volume), normalised brain volume and cortical grey "
        "matter (% of intracranial volume)"
        + (" and, in deep grey matter and NAWM, the PRL count" if "n_prl" in used else "")
        + ", each alone and, with at least 10 patients per "
        "predictor, together (the pre-specified primary model), with age, sex and site as "
        "covariates"
        + (
            f" (multivariable models for {_join(pretty_region(r) for r in multi)})"
            if len(multi)
            else " (too few patients for any multivariable model)"
        )
        + _stepwise(determinants)
        + " Lesion R2* was modelled with the same covariates, and "
        "relative to each participant's NAWM."
        " Collinearity is reported as variance inflation factors (VIF) and the predictors' "
        f"correlations; a coefficient with VIF above {VIF_LIMIT:g} was taken as not "
        "identifiable in practice (the limit measured in seeded simulations), and for such "
        "regions the pre-specified reduced model (duration and EDSS, same covariates) is "
        "shown beside it. Only the primary model's rows, at p_FDR < 0.05 across its regions "
        "and predictors, are marked significant; univariable, reduced and stepwise rows are "
        "not. Coefficients are reported in 1/s per "
        + _join(
            f"{unit} ({_PREDICTOR_NAMES.get(p, p.replace('_', ' '))})"
            for p, (unit, _) in units.items()
        )
        + "."
    )
    if determinants["model"].isin(["multivariable", "univariable"]).any():
        text += (
            " The forest plot's intervals are false-coverage-rate adjusted "
            f"({cite('by2005')}): with R of the m tests of a family at p_FDR < 0.05, "
            "confidence intervals at level 1 - 0.05 R / m, which exclude 0 exactly for the "
            "tests marked significant."
        )
    return text


#: How the Methods name the determinants beside their units ("SD (normalised brain volume)").
_PREDICTOR_NAMES = {
    "edss": "EDSS",
    "lesion_volume_ml": "T2 lesion volume",
    "nbv": "normalised brain volume",
    "cortical_gm_ml": "cortical grey matter",
    "n_prl": "PRL count",
}


def _stepwise(determinants: pd.DataFrame) -> str:
    """How the stepwise selection was reported: with the bootstrap inclusion frequencies of
    ``determinants.tsv`` when it has them (:data:`~ironmap.cohort.determinants.N_BOOTSTRAP`
    resamples of the patients with replacement, not stratified)."""
    stepwise = determinants[determinants["model"] == "stepwise"]
    if stepwise.empty:
        return "."
    frequency = pd.to_numeric(stepwise.get("inclusion_frequency"), errors="coerce")
    if frequency is None or frequency.isna().all():
        return "; stepwise selection is exploratory (no bootstrap)."
    return (
        "; stepwise selection is exploratory and reported with each predictor's inclusion "
        f"frequency over {N_BOOTSTRAP} bootstrap resamples of the patients (drawn with "
        "replacement, not stratified)."
    )
