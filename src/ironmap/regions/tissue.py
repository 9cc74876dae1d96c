"""The robust level of one tissue among the voxels of a region that holds some of another.

One estimator, two uses: the tissue R2* of a region part of which is CSF
(:func:`ironmap.regions.csf.tissue_level`), and the grey-matter T1w intensity of a label part of
which is white matter (:func:`ironmap.segmentation.constrain.follow_grey_white`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["robust_tissue_level"]


def robust_tissue_level(
    values: NDArray[np.floating],
    *,
    start_percentile: float,
    above: bool = True,
    reference: float = 0.0,
    ratio: float = 0.5,
    n_iter: int = 2,
) -> float:
    """Iterated one-sided median: the level of the tissue on one side of a cut.

    Starting from ``level = percentile(values, start_percentile)``, repeat ``n_iter`` times::

        cut   = (1 - ratio) * reference + ratio * level
        level = median(values > cut)    # above=True; values < cut when above=False

    stopping early when no value lies beyond the cut (the level is kept). The cut sits a fixed
    fraction ``ratio`` of the way from the other tissue's level ``reference`` to the current
    level, so voxels mostly of the other tissue are left out and the median is that of the
    tissue (a mixture of a tissue ``N(mu, s)`` and another at ``reference`` far from it gives
    ``mu``). The comparisons are strict.

    Parameters
    ----------
    values : numpy.ndarray of float, shape (N,)
        Voxel values (any units); non-finite values are ignored. Floating-point values are
        compared and their medians taken in their own precision.
    start_percentile : float
        Percentile (0-100) of ``values`` to start from: on the tissue's side of the mixture.
    above : bool, optional
        The tissue lies above the cut (True) or below it (False).
    reference : float, optional
        Level of the other tissue (0 for CSF's R2*: the cut is ``ratio * level``).
    ratio : float, optional
        Position of the cut between ``reference`` (0) and the level (1).
    n_iter : int, optional
        Number of median steps.

    Returns
    -------
    float
        The tissue level (units of ``values``); NaN without a finite value.

    Examples
    --------
    >>> robust_tissue_level(np.array([2.0, 3.0, 30.0, 31.0, 32.0]), start_percentile=90.0)
    31.0
    """
    values = np.asarray(values).ravel()
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    level = float(np.percentile(values, start_percentile))
    for _ in range(n_iter):
        cut = (1.0 - ratio) * reference + ratio * level
        kept = values[values > cut] if above else values[values < cut]
        if kept.size == 0:
            break
        level = float(np.median(kept))
    return level
