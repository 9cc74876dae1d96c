"""Small statistics helpers shared by the group comparisons and the determinants."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from statsmodels.stats.multitest import multipletests

__all__ = ["ALPHA", "fdr"]

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
