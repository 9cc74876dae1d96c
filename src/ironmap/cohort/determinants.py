"""Clinical and MRI determinants of R2* in MS (the 2014 study's regression analysis).

Outcome: age/site-corrected R2* of each region (for ``lesions``, the lesion R2* itself).
Predictors: disease duration, EDSS, T2 lesion volume, NBV and cortical GM volume (lesions:
disease duration and lesion volume). Three model sets, statsmodels OLS:

- ``multivariable``: all predictors together, with standardised betas and VIFs;
- ``univariable``: one predictor at a time;
- ``stepwise``: forward entry at p < 0.05 and backward removal at p > 0.10, repeated until
  stable, as in SPSS stepwise regression used in 2014.

p-values are FDR-corrected within each model set.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.outliers_influence import variance_inflation_factor

from ..errors import IronmapWarning
from .stats import fdr

__all__ = ["DETERMINANT_COLUMNS", "PREDICTORS", "determinants"]

PREDICTORS = ("disease_duration", "edss", "lesion_volume_ml", "nbv", "cortical_gm_ml")
LESION_PREDICTORS = ("disease_duration", "lesion_volume_ml")
DETERMINANT_COLUMNS = [
    "region",
    "model",
    "predictor",
    "beta",
    "std_beta",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "n",
    "vif",
]
ENTER, REMOVE = 0.05, 0.10


def _fit(data: pd.DataFrame, predictors: list[str]):
    formula = "y ~ " + (" + ".join(predictors) if predictors else "1")
    return smf.ols(formula, data=data).fit()


def _rows(region: str, model: str, data: pd.DataFrame, predictors: list[str]) -> list[dict]:
    result = _fit(data, predictors)
    ci = result.conf_int()
    sd_y = data["y"].std(ddof=1)
    vifs = {}
    if model == "multivariable" and len(predictors) > 1:
        design = np.column_stack([np.ones(len(data)), data[predictors].to_numpy(float)])
        vifs = {p: variance_inflation_factor(design, i + 1) for i, p in enumerate(predictors)}
    return [
        {
            "region": region,
            "model": model,
            "predictor": p,
            "beta": float(result.params[p]),
            "std_beta": float(result.params[p] * data[p].std(ddof=1) / sd_y),
            "ci_low": float(ci.loc[p, 0]),
            "ci_high": float(ci.loc[p, 1]),
            "p": float(result.pvalues[p]),
            "n": int(result.nobs),
            "vif": float(vifs.get(p, np.nan)),
        }
        for p in predictors
    ]


def _independent(data: pd.DataFrame, predictors: list[str], region: str) -> list[str]:
    """Drop predictors that are linear combinations of earlier ones (with a warning)."""
    kept: list[str] = []
    base = [np.ones(len(data))]
    for p in predictors:
        trial = np.column_stack([*base, *(data[k] for k in kept), data[p]])
        scaled = (trial - trial.mean(0)) / np.where(trial.std(0) > 0, trial.std(0), 1.0)
        scaled[:, 0] = 1.0
        if np.linalg.matrix_rank(scaled, tol=1e-8 * len(data)) == trial.shape[1]:
            kept.append(p)
        else:
            warnings.warn(
                f"{region}: {p} is collinear with {', '.join(kept)}; left out of its models",
                IronmapWarning,
                stacklevel=3,
            )
    return kept


def stepwise(data: pd.DataFrame, candidates: list[str]) -> list[str]:
    """Forward entry (p < 0.05) with backward removal (p > 0.10) until no change."""
    chosen: list[str] = []
    for _ in range(4 * len(candidates)):
        changed = False
        remaining = [c for c in candidates if c not in chosen]
        if remaining:
            pvals = {c: _fit(data, [*chosen, c]).pvalues[c] for c in remaining}
            best = min(pvals, key=pvals.get)
            if pvals[best] < ENTER:
                chosen.append(best)
                changed = True
        if chosen:
            pvals = _fit(data, chosen).pvalues[chosen]
            worst = pvals.idxmax()
            if pvals[worst] > REMOVE:
                chosen.remove(worst)
                changed = True
        if not changed:
            break
    return chosen


def determinants(data: pd.DataFrame) -> pd.DataFrame:
    """CONVENTIONS ``determinants.tsv`` rows (plus ``vif``) from MS participants.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per MS participant x region, with ``region``, ``y`` (the outcome, 1/s) and the
        predictor columns.
    """
    rows: list[dict] = []
    for region, sub in data.groupby("region", sort=False):
        predictors = list(LESION_PREDICTORS if region == "lesions" else PREDICTORS)
        sub = sub.dropna(subset=["y", *predictors])
        usable = _independent(sub, [p for p in predictors if sub[p].std(ddof=1) > 0], region)
        if len(sub) < len(usable) + 3 or not usable:
            continue
        rows += _rows(region, "multivariable", sub, usable)
        for p in usable:
            rows += _rows(region, "univariable", sub, [p])
        chosen = stepwise(sub, usable)
        rows += _rows(region, "stepwise", sub, chosen)
    table = pd.DataFrame(rows, columns=[c for c in DETERMINANT_COLUMNS if c != "p_fdr"])
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("model").groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return table[DETERMINANT_COLUMNS]
