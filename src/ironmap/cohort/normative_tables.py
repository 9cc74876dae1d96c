"""The normative model of the group stage as tables: ``age_model.tsv``, ``harmonization.tsv``
and the ``harmonization.json`` description.

Called by :func:`ironmap.cohort.analysis.analyse_cohort` (tables) and the report (description).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .age import AGE_DF, MIN_CONTROLS_PER_SITE, NormativeModel


def _age_model_table(model: NormativeModel, reference: np.ndarray) -> pd.DataFrame:
    """One row per region; on a linear scale (chi) ``residual_sd`` is in the measure's unit
    and ``residual_sd_log`` is NaN."""
    rows = []
    width = max(AGE_DF)
    for g, region in enumerate(model.regions):
        curve = model.curves[region]
        df = curve.df
        beta = model.combat.beta[g]
        rows.append(
            {
                "region": region,
                "model": curve.name,
                "n_hc": int(model.n_hc[g]),
                "residual_sd": float(model.residual_sd[g] * (reference[g] if model.log else 1)),
                "reference_age": model.reference_age,
                "reference_site": "pooled",
                "scale": "log" if model.log else "linear",
                "residual_sd_log": float(model.residual_sd[g]) if model.log else np.nan,
                "residual_df": float(model.residual_df[g]),
                f"reference_{model.measure}": float(reference[g]),
                "knots": " ".join(f"{k:.1f}" for k in curve.knots) if df > 1 else "",
                "monotone": bool(curve.monotone),
                "age_df": int(np.sum(curve.active)),
                **{f"press_rmse_df{k}": curve.press_rmse.get(k, np.nan) for k in AGE_DF},
                "param_intercept": float(model.combat.grand_mean[g]),
                **{f"param_age{k + 1}": float(beta[k]) for k in range(df)},
                **{
                    f"param_sex_{s}": float(beta[width + i])
                    for i, s in enumerate(model.sex_levels)
                },
            }
        )
    return pd.DataFrame(rows)


def _harmonization_table(model: NormativeModel) -> pd.DataFrame:
    """One row per region and site; on a linear scale (chi) the location is ``location`` in
    the measure's unit (``location_sd`` its SD) and the percent columns are NaN."""
    c = model.combat
    rows = []
    for g, region in enumerate(model.regions):
        sd = np.sqrt(c.var_pooled[g])
        for i, site in enumerate(c.sites):
            linear = {}
            if not model.log:
                linear = {
                    "location": c.gamma_star[i, g] * sd,
                    "location_sd": np.sqrt(c.gamma_var[i, g]) * sd,
                }
            rows.append(
                {
                    "region": region,
                    "site": site,
                    "n_hc": int(c.n_site[i, g]),
                    "location_percent": 100 * np.expm1(c.gamma_star[i, g] * sd)
                    if model.log
                    else np.nan,
                    "scale": float(np.sqrt(c.delta_star[i, g])),
                    "gamma_hat": c.gamma_hat[i, g],
                    "gamma_star": c.gamma_star[i, g],
                    "delta_hat": c.delta_hat[i, g],
                    "delta_star": c.delta_star[i, g],
                    "location_sd_percent": 100 * np.sqrt(c.gamma_var[i, g]) * sd
                    if model.log
                    else np.nan,
                    "scale_pooled": bool(c.n_site[i].max() < MIN_CONTROLS_PER_SITE),
                    "z_scale": float(np.sqrt(c.delta_z[i, g])),
                    "z_scale_df": float(c.delta_z_df[i, g])
                    if np.isfinite(c.delta_z_df[i, g])
                    else np.nan,
                    **linear,
                }
            )
    return pd.DataFrame(rows)


def harmonization_description(model: NormativeModel) -> dict:
    """What was done to remove site effects, for ``group/harmonization.json``."""
    c = model.combat
    return {
        "Method": "ComBat (Johnson et al. 2007; Fortin et al. 2018), empirical Bayes"
        if c.eb
        else "ComBat without empirical Bayes",
        "Scale": "log R2*",
        "FittedOn": "healthy controls (group HC); applied to every participant",
        "Covariates": [
            "quadratic spline of age, linear beyond the controls' 5th/95th age percentiles, "
            "non-decreasing in the iron-rich nuclei (knots per region)",
            "sex",
        ],
        "AgeSplineDegreesOfFreedom": model.df,
        "Sites": list(c.sites),
        "ControlsPerSite": {s: int(n) for s, n in zip(c.sites, c.n_site.max(axis=1), strict=True)},
        "PooledScaleBelowControls": MIN_CONTROLS_PER_SITE,
        "SitesWithPooledScale": [
            s
            for s, n in zip(c.sites, c.n_site.max(axis=1), strict=True)
            if n < MIN_CONTROLS_PER_SITE
        ],
        "SiteScale": "not applied to R2*: only the site's location is removed, so a disease "
        "effect at a noisy site keeps its size; the site's residual SD relative to the pooled "
        "one (z_scale) enters the z-scores instead",
        "SmallSiteZScale": "sites with fewer controls than PooledScaleBelowControls: the site's "
        "variance ratio pooled over regions (correlation discounted) and shrunk towards the "
        f"pooled scale with a prior of {MIN_CONTROLS_PER_SITE - 1} degrees of freedom",
        "MissingRegions": "a region without controls at a site is NaN for that site's "
        "participants; their other regions are harmonised",
        "ReferenceAge": model.reference_age,
        "ReferenceSite": "pooled (control-weighted mean of the sites)",
        "Validation": "benchmarks/harmonize_reference.py (neuroHarmonize 2.5.2)",
    }
