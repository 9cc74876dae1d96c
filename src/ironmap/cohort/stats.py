"""Small statistics helpers shared by the group comparisons and the determinants."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["ALPHA", "fcr_intervals", "fdr"]

#: Significance level of every test and of the false discovery rate (two-sided, 95 % CIs).
ALPHA = 0.05


def fdr(p: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values; NaN stays NaN."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def fcr_intervals(
    estimate: ArrayLike, se: ArrayLike, df: ArrayLike, p: ArrayLike, *, q: float = ALPHA
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """False-coverage-rate adjusted t confidence intervals of one family of tests.

    Benjamini & Yekutieli (2005, JASA 100:71-81): when Benjamini-Hochberg at level ``q``
    selects R of the m tests, intervals at level ``1 - R q / m`` (``1 - q / m`` when R = 0)
    keep the expected share of selected intervals that miss their parameter at most ``q``.
    With t tests (``p = 2 P(T_df > |estimate / se|)``) a selected test's interval excludes 0
    and an unselected one's contains it, so the intervals agree with the BH marks.

    Parameters
    ----------
    estimate, se, df, p : array_like, shape (m,)
        Estimates, their standard errors (same units), residual degrees of freedom of the t
        reference, and the two-sided p-values BH is applied to. Tests with a non-finite p are
        not in the family and get NaN bounds.
    q : float
        False discovery rate of the selection (and false coverage rate of the intervals).

    Returns
    -------
    low, high : numpy.ndarray, shape (m,)
        Interval bounds, in the units of ``estimate``.
    level : float
        The intervals' confidence level ``1 - max(R, 1) q / m`` (NaN when no p is finite).
    """
    estimate, se, df, p = (np.asarray(a, dtype=np.float64) for a in (estimate, se, df, p))
    ok = np.isfinite(p)
    low = np.full(p.shape, np.nan)
    high = np.full(p.shape, np.nan)
    m = int(ok.sum())
    if m == 0:
        return low, high, float("nan")
    selected = int(multipletests(p[ok], alpha=q, method="fdr_bh")[0].sum())
    level = 1.0 - max(selected, 1) * q / m
    half = stats.t.ppf(0.5 + level / 2, df[ok]) * se[ok]
    low[ok], high[ok] = estimate[ok] - half, estimate[ok] + half
    return low, high, level
