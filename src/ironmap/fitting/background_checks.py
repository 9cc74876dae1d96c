"""Where a candidate background lies and what it holds: the checks of :mod:`.background`.

Low-intensity voxels are noise around the head only if they reach the image border
(:func:`border_share`); on one side of the field of view only, if they also keep their level
over the echoes (:func:`echo_drift`: noise does not decay, tissue does). :func:`block_spread`
reports noise that varies in space (parallel-imaging g-factor, intensity normalisation).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_BLOCK_SPREAD",
    "MAX_ECHO_DRIFT",
    "MIN_BLOCK_VALUES",
    "MIN_BORDER_SHARE",
    "MIN_ONE_SIDED_SHARE",
    "block_spread",
    "border_share",
    "echo_drift",
]

#: Report the background as spatially varying if block sigmas differ by more than this ratio.
MAX_BLOCK_SPREAD = 1.2
#: Fewest background values a block needs to enter :func:`block_spread`.
MIN_BLOCK_VALUES = 200
#: A background surrounds the head: at least this share of the non-zero voxels on the image's
#: in-plane border (first two axes) must be background. Two tissue classes filling the field of
#: view otherwise pass for tissue plus background.
MIN_BORDER_SHARE = 0.75
#: A background on one side of the field of view (the head cut by it) must still cover this
#: share of the in-plane border (one whole side of a square image is about a quarter) ...
MIN_ONE_SIDED_SHARE = 0.25
#: ... and hold noise: its mean magnitude may change by at most this fraction (plus three
#: standard errors) from the second to the last echo (noise does not decay; tissue does, by
#: 6 % even at the R2* of CSF, 2 1/s, over 30 ms).
MAX_ECHO_DRIFT = 0.02


def echo_drift(arr: NDArray, voxels: NDArray[np.bool_]) -> tuple[float, float] | None:
    """Relative change of the mean magnitude of ``voxels`` from the second to the last echo,
    and its standard error; None with fewer than three echoes (the first echo selected the
    voxels, so its values are biased low and do not count)."""
    if arr.ndim < 2 or arr.shape[-1] < 3:
        return None
    second = arr[..., 1][voxels].astype(np.float64)
    last = arr[..., -1][voxels].astype(np.float64)
    keep = np.isfinite(second) & np.isfinite(last)
    second, last = second[keep], last[keep]
    mean = float(second.mean()) if second.size > 1 else 0.0
    if not mean > 0:
        return None
    difference = last - second
    return float(difference.mean()) / mean, float(difference.std() / math.sqrt(keep.sum())) / mean


def border_share(background: np.ndarray, usable: np.ndarray) -> float | None:
    """Share of the usable voxels on the border of the first two axes that are background
    (None for images with fewer than two axes or no usable border voxel)."""
    if background.ndim < 2 or min(background.shape[:2]) < 3:
        return None
    edge = np.zeros(background.shape, dtype=bool)
    edge[[0, -1]] = True
    edge[:, [0, -1]] = True
    on_edge = usable & edge
    if not on_edge.any():
        return None  # a zero-filled (masked) border: the zeros are the background
    return float((background & on_edge).sum() / on_edge.sum())


def block_spread(
    arr: NDArray,
    voxels: NDArray[np.bool_],
    spatial: tuple[int, ...],
    lower: float,
    cutoff: float,
    coils: float,
) -> float:
    """Largest / smallest background sigma over a 2 x 2 (x 2) grid of spatial blocks."""
    axes = [i for i, size in enumerate(spatial) if size >= 4][:3]
    if len(spatial) < 2 or len(axes) < 2:
        return math.nan
    coords = np.nonzero(voxels)
    block = np.zeros(coords[0].size, dtype=np.int64)
    for i in axes:
        block = 2 * block + (2 * coords[i] >= spatial[i])
    values = arr[voxels].astype(np.float64)  # (n_voxels, n_echoes)
    keep = np.isfinite(values) & (values > lower) & (values < cutoff)
    sq = np.where(keep, values, 0.0) ** 2
    n_blocks = 2 ** len(axes)
    counts = np.bincount(block, weights=keep.sum(axis=1), minlength=n_blocks)
    sums = np.bincount(block, weights=sq.sum(axis=1), minlength=n_blocks)
    ok = counts >= MIN_BLOCK_VALUES
    if ok.sum() < 2:
        return math.nan
    block_sigma = np.sqrt(sums[ok] / counts[ok] / (2.0 * coils))
    return float(block_sigma.max() / block_sigma.min())
