"""Clinical and MRI determinants of R2* in MS (the 2014 study's regression analysis).

Participants: clinically definite MS (RRMS, SPMS, PPMS, or MS without a phenotype); CIS is not
pooled in. Outcomes:

- deep grey matter and NAWM: harmonised, age-corrected R2* (1/s, :mod:`.age`);
- ``lesions``: lesion R2* (1/s), with age and site as covariates (no control model exists for
  lesions), from participants whose lesion mask has at least ``MIN_LESION_VOXELS`` voxels;
- ``lesions_nawm``: lesion minus the same participant's NAWM R2* (1/s), same covariates.

Sex is a covariate of every model. Predictors, as docs/conventions.md names them, with the
scale their ``beta`` refers to (``transform`` column): ``disease_duration`` (years),
``edss`` (points),
``lesion_volume_ml`` as ``log(1 + mL)`` (lesion volumes are right-skewed), ``nbv`` (fraction
of ICV) and ``cortical_gm_ml`` as percent of ICV (head-size normalised). A predictor missing
for everyone is left out with a warning; a participant missing any other predictor is left out
of all of that region's models, so that they share one set of participants.

Model sets (statsmodels OLS):

- ``multivariable``: all predictors together (only with >= 10 participants per predictor),
  with standardised betas and VIFs;
- ``univariable``: one predictor at a time (>= 10 participants);
- ``stepwise``: forward entry at p < 0.05 and backward removal at p > 0.10 as in SPSS
  (2014). Its p-values ignore the selection, so the rows are marked ``exploratory`` and carry
  the ``inclusion_frequency`` of each predictor over bootstrap resamples instead of an FDR.

FDR families (pre-specified): Benjamini-Hochberg over all regions x predictors of the
``multivariable`` set, and separately of the ``univariable`` set.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special
from statsmodels.stats.outliers_influence import variance_inflation_factor

from ..errors import IronmapWarning
from .stats import fdr

__all__ = [
    "DETERMINANT_COLUMNS",
    "MIN_LESION_VOXELS",
    "PREDICTORS",
    "TRANSFORMS",
    "determinants",
    "ols_pvalues",
    "predictor_values",
    "stepwise",
]

PREDICTORS = ("disease_duration", "edss", "lesion_volume_ml", "nbv", "cortical_gm_ml")
LESION_PREDICTORS = ("disease_duration", "lesion_volume_ml")
LESION_OUTCOMES = ("lesions", "lesions_nawm")
#: predictor -> what its beta is per.
TRANSFORMS = {
    "disease_duration": "years",
    "edss": "EDSS points",
    "lesion_volume_ml": "log(1 + lesion_volume_ml)",
    "nbv": "brain / ICV",
    "cortical_gm_ml": "100 * cortical_gm_ml / icv_ml (% of ICV)",
}
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
    "transform",
    "covariates",
    "exploratory",
    "inclusion_frequency",
]
ENTER, REMOVE = 0.05, 0.10
PER_PREDICTOR = 10
MIN_LESION_VOXELS = 20
N_BOOTSTRAP = 100


def predictor_values(subjects: pd.DataFrame) -> pd.DataFrame:
    """The predictors on the scale of :data:`TRANSFORMS` (one column per predictor)."""
    out = pd.DataFrame(index=subjects.index)
    out["disease_duration"] = subjects["disease_duration"]
    out["edss"] = subjects["edss"]
    out["lesion_volume_ml"] = np.log1p(subjects["lesion_volume_ml"].clip(lower=0))
    out["nbv"] = subjects["nbv"]
    icv = subjects["icv_ml"].where(subjects["icv_ml"] > 0)
    out["cortical_gm_ml"] = 100.0 * subjects["cortical_gm_ml"] / icv
    return out


def _covariates(sub: pd.DataFrame, region: str) -> tuple[np.ndarray, list[str]]:
    names = ["sex"] + (["age", "site"] if region in LESION_OUTCOMES else [])
    frame = sub[names].copy()
    numeric = [c for c in names if c == "age"]
    dummies = pd.get_dummies(frame.drop(columns=numeric), drop_first=True, dtype=float)
    parts = [frame[numeric].to_numpy(float), dummies.to_numpy(float)]
    return np.column_stack([np.ones(len(sub)), *parts]), names


def _fit(y, base, x):
    return sm.OLS(y, np.column_stack([base, x]) if x.size else base).fit()


def ols_pvalues(y: np.ndarray, exog: np.ndarray) -> np.ndarray:
    """Two-sided t-test p-values of OLS coefficients, shape (k,).

    The same numbers as ``statsmodels.OLS(y, exog).fit().pvalues`` for a full-rank design
    (tested), without the model object: the stepwise bootstrap needs ~10^4 of them.
    """
    coef, _, rank, _ = np.linalg.lstsq(exog, y, rcond=None)
    dof = len(y) - rank
    resid = y - exog @ coef
    cov = np.linalg.pinv(exog.T @ exog) * (resid @ resid / dof)
    t = coef / np.sqrt(np.diag(cov))
    return 2 * special.stdtr(dof, -np.abs(t))


def _rows(region, model, sub, base, covariates, predictors) -> list[dict]:
    y = sub["y"].to_numpy(float)
    x = sub[predictors].to_numpy(float)
    result = _fit(y, base, x)
    first = base.shape[1]
    ci = result.conf_int()
    vifs = {}
    if model == "multivariable" and len(predictors) > 1:
        design = np.column_stack([np.ones(len(sub)), x])
        vifs = {p: variance_inflation_factor(design, i + 1) for i, p in enumerate(predictors)}
    sd_y = np.std(y, ddof=1)
    sd_y = sd_y if sd_y > 0 else np.nan  # a constant outcome has no standardised beta
    return [
        {
            "region": region,
            "model": model,
            "predictor": p,
            "beta": float(result.params[first + i]),
            "std_beta": float(result.params[first + i] * np.std(x[:, i], ddof=1) / sd_y),
            "ci_low": float(ci[first + i, 0]),
            "ci_high": float(ci[first + i, 1]),
            "p": float(result.pvalues[first + i]),
            "n": int(result.nobs),
            "vif": float(vifs.get(p, np.nan)),
            "transform": TRANSFORMS[p],
            "covariates": ", ".join(covariates),
            "exploratory": model == "stepwise",
        }
        for i, p in enumerate(predictors)
    ]


def _independent(sub: pd.DataFrame, predictors: list[str], region: str) -> list[str]:
    """Drop predictors that are linear combinations of earlier ones (with a warning)."""
    kept: list[str] = []
    for p in predictors:
        trial = sub[[*kept, p]].to_numpy(float)
        scaled = (trial - trial.mean(0)) / np.where(trial.std(0) > 0, trial.std(0), 1.0)
        scaled = np.column_stack([np.ones(len(sub)), scaled])
        if np.linalg.matrix_rank(scaled, tol=1e-8 * len(sub)) == scaled.shape[1]:
            kept.append(p)
        else:
            warnings.warn(
                f"{region}: {p} is collinear with {', '.join(kept)}; left out of its models",
                IronmapWarning,
                stacklevel=3,
            )
    return kept


def stepwise(y: np.ndarray, base: np.ndarray, x: np.ndarray) -> list[int]:
    """Forward entry (p < 0.05) with backward removal (p > 0.10) until no change.

    Parameters
    ----------
    y : ndarray, shape (n,)
    base : ndarray, shape (n, c)
        Intercept and covariates, always in the model.
    x : ndarray, shape (n, k)
        Candidate predictors.

    Returns
    -------
    list of int
        Columns of ``x`` chosen, in order of entry.
    """
    chosen: list[int] = []
    first = base.shape[1]
    for _ in range(4 * x.shape[1]):
        changed = False
        remaining = [c for c in range(x.shape[1]) if c not in chosen]
        if remaining:
            pvals = {
                c: ols_pvalues(y, np.column_stack([base, x[:, [*chosen, c]]]))[-1]
                for c in remaining
            }
            best = min(pvals, key=pvals.get)
            if pvals[best] < ENTER:
                chosen.append(best)
                changed = True
        if chosen:
            pvals = ols_pvalues(y, np.column_stack([base, x[:, chosen]]))[first:]
            worst = int(np.argmax(pvals))
            if pvals[worst] > REMOVE:
                chosen.pop(worst)
                changed = True
        if not changed:
            break
    return chosen


def _inclusion(y, base, x, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = np.zeros(x.shape[1])
    for _ in range(N_BOOTSTRAP):
        idx = rng.integers(0, len(y), len(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            counts[stepwise(y[idx], base[idx], x[idx])] += 1
    return counts / N_BOOTSTRAP


def _usable(sub: pd.DataFrame, candidates: tuple[str, ...], region: str) -> list[str]:
    usable = []
    for p in candidates:
        if sub[p].notna().sum() == 0:
            warnings.warn(
                f"{region}: predictor {p} is missing for every participant; left out",
                IronmapWarning,
                stacklevel=3,
            )
        elif sub[p].std(ddof=1) > 0:
            usable.append(p)
    return usable


def _region(region: str, sub: pd.DataFrame, seed: int, thin: list[str]) -> list[dict]:
    candidates = LESION_PREDICTORS if region in LESION_OUTCOMES else PREDICTORS
    usable = _usable(sub, candidates, region)
    sub = sub.dropna(subset=["y", "sex", *usable])
    usable = _independent(sub, [p for p in usable if sub[p].std(ddof=1) > 0], region)
    if len(sub) < PER_PREDICTOR or not usable:
        return []
    base, covariates = _covariates(sub, region)
    rows: list[dict] = []
    if len(sub) >= PER_PREDICTOR * len(usable):
        rows += _rows(region, "multivariable", sub, base, covariates, usable)
    else:
        thin.append(f"{region} ({len(sub)} for {len(usable)})")
    for p in usable:
        rows += _rows(region, "univariable", sub, base, covariates, [p])
    y, x = sub["y"].to_numpy(float), sub[usable].to_numpy(float)
    chosen = [usable[i] for i in stepwise(y, base, x)]
    frequency = dict(zip(usable, _inclusion(y, base, x, seed), strict=True))
    for row in _rows(region, "stepwise", sub, base, covariates, chosen):
        row["inclusion_frequency"] = frequency[row["predictor"]]
        rows.append(row)
    return rows


def determinants(data: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """docs/conventions.md ``determinants.tsv`` rows (plus columns) from MS participants.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per MS participant x region, with ``region``, ``y`` (the outcome, 1/s),
        ``sex``, ``age``, ``site`` and the predictors on the scale of :data:`TRANSFORMS`
        (see :func:`predictor_values`).
    seed : int
        Seed of the stepwise bootstrap.
    """
    rows: list[dict] = []
    thin: list[str] = []
    for region, sub in data.groupby("region", sort=False):
        rows += _region(region, sub, seed, thin)
    if thin:
        warnings.warn(
            f"fewer than {PER_PREDICTOR} patients per predictor, no multivariable model: "
            + ", ".join(thin),
            IronmapWarning,
            stacklevel=2,
        )
    table = pd.DataFrame(rows).reindex(columns=DETERMINANT_COLUMNS)
    table["p_fdr"] = np.nan
    for model in ("multivariable", "univariable"):
        idx = table.index[table["model"] == model]
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return table
