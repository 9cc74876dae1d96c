"""Stepwise selection of the determinants' exploratory model set.

Forward entry at p < 0.05 and backward removal at p > 0.10 as in SPSS (the 2014 study), on
OLS p-values computed without a model object (:func:`ols_pvalues`), and each predictor's
inclusion frequency over bootstrap resamples. Used by :mod:`.determinants`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

__all__ = ["ols_pvalues", "stepwise"]


ENTER, REMOVE = 0.05, 0.10


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


def _inclusion(y, base, x, seed: int, n_bootstrap: int) -> np.ndarray:
    if n_bootstrap == 0:
        return np.full(x.shape[1], np.nan)
    rng = np.random.default_rng(seed)
    counts = np.zeros(x.shape[1])
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(y), len(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            counts[stepwise(y[idx], base[idx], x[idx])] += 1
    return counts / n_bootstrap
