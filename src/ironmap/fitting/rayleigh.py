"""The one-channel (Rayleigh) background estimator of the noise SD.

Air outside the head holds pure noise, whose magnitude is Rayleigh distributed with median
``sigma sqrt(2 ln 2)``. Starting from the voxels whose first echo is below 5 % of the robust
maximum, the cutoff is moved to 3.5 sigma and sigma re-estimated (accounting for the truncation)
until both agree; the estimate is kept only if there are enough such voxels and their spread is
Rayleigh-like. Backgrounds of ``N > 1`` channels are left to :mod:`.background`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import optimize

from .background import noise_from_background

__all__ = ["rayleigh_sigma", "sigma_from_background"]

#: Background voxels lie below this many sigma (99.8 % of the Rayleigh distribution).
_CUTOFF_SIGMAS = 3.5
_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))
#: Interquartile range over median of a Rayleigh distribution (scale free).
_RAYLEIGH_IQR_RATIO = float(
    (np.sqrt(2 * np.log(4)) - np.sqrt(2 * np.log(4 / 3))) / np.sqrt(2 * np.log(2))
)


def sigma_from_background(
    data: NDArray[np.floating],
    *,
    threshold: float = 0.05,
    min_voxels: int = 500,
    min_fraction: float = 0.02,
) -> float | None:
    """Noise SD from the Rayleigh-distributed background, or ``None`` if there is none.

    Parameters
    ----------
    data : numpy.ndarray, shape (..., n_echoes)
        Magnitude images (not modified).
    threshold : float, optional
        The search starts from voxels whose first echo is below ``threshold`` times the 99th
        percentile.
    min_voxels, min_fraction : optional
        Minimum size of the background, in voxels and as a fraction of all voxels.

    Returns
    -------
    float or None
        ``sigma`` in signal units, or ``None`` when the volume has no background that looks like
        pure noise (too few voxels, exact zeros, or a spread unlike a Rayleigh distribution).
        A background that is not Rayleigh but is the central chi distribution of a
        root-sum-of-squares image of ``N > 1`` channels gives the *per-channel* sigma of
        :func:`noise_from_background` (the magnitude SD is then about ``0.7 sigma`` and its mean
        ``sigma sqrt(2N - 1/2)``, not ``1.25 sigma``); integer-valued backgrounds are also
        delegated to it. Never raises.
    """
    sigma = rayleigh_sigma(data, threshold, min_voxels, min_fraction)
    if sigma is not None:
        return sigma
    estimate = noise_from_background(
        data, threshold=threshold, min_voxels=min_voxels, min_fraction=min_fraction
    )
    return None if estimate is None else estimate.sigma


def rayleigh_sigma(
    data: NDArray[np.floating],
    threshold: float = 0.05,
    min_voxels: int = 500,
    min_fraction: float = 0.02,
) -> float | None:
    """The Rayleigh (one receive channel) background estimator of :func:`sigma_from_background`.

    ``None`` if the background is not Rayleigh (or is integer-valued with sigma below 5, or
    absent); :func:`noise_from_background` is then the estimator to try. Never raises.
    """
    try:
        return _rayleigh_sigma(data, threshold, min_voxels, min_fraction)
    except (ValueError, TypeError, IndexError, ArithmeticError):
        return None


def _rayleigh_sigma(
    data: NDArray[np.floating], threshold: float, min_voxels: int, min_fraction: float
) -> float | None:
    """The Rayleigh background estimator (``None`` if the background is not Rayleigh)."""
    arr = np.asarray(data)
    if arr.ndim == 0 or arr.dtype.kind not in "biuf":
        return None
    first = arr[..., 0].astype(np.float64).ravel()
    first = first[np.isfinite(first) & (first > 0)]  # exact zeros: masked/zero-filled, not noise
    if first.size < min_voxels:
        return None
    top = float(np.percentile(first, 99.0))
    cutoff = threshold * top
    sigma = None
    for _ in range(20):
        values = first[first < cutoff]
        if values.size < max(min_voxels, min_fraction * first.size):
            return None
        sigma = _truncated_rayleigh_sigma(float(np.median(values)), cutoff)
        if sigma is None:
            return None
        new_cutoff = _CUTOFF_SIGMAS * sigma
        if new_cutoff > 0.5 * top:  # noise and signal not separable
            return None
        if abs(new_cutoff - cutoff) < 1e-3 * cutoff:
            break
        cutoff = new_cutoff
    values = first[first < cutoff]
    q25, q50, q75 = np.percentile(values, [25.0, 50.0, 75.0])
    # A background mixed with tissue, or made of constant values, has the wrong shape.
    if abs((q75 - q25) / q50 - _RAYLEIGH_IQR_RATIO) > 0.2 * _RAYLEIGH_IQR_RATIO:
        return None
    if sigma is not None and sigma < 5.0 and np.all(values == np.round(values)):
        return None  # coarse integer levels bias the median: use the interval fit instead
    return sigma


def _truncated_rayleigh_sigma(median: float, cutoff: float) -> float | None:
    """Rayleigh scale whose distribution truncated at ``cutoff`` has the given median.

    ``None`` if there is none: as sigma grows the truncated density tends to ``2 M / cutoff^2``,
    whose median ``cutoff / sqrt(2)`` is the largest a truncated Rayleigh can have. A median
    above it (a root-sum-of-squares background, ``N > 1``) used to make ``brentq`` raise.
    """
    if not (median > 0 and cutoff > median):
        return None
    if cutoff / median > 30:  # truncation irrelevant
        return median / _RAYLEIGH_MEDIAN

    def excess(sigma: float) -> float:
        cdf = -np.expm1(-0.5 * (median / sigma) ** 2)
        return cdf - 0.5 * -np.expm1(-0.5 * (cutoff / sigma) ** 2)

    # excess > 0 for small sigma; < 0 for large sigma only if median < cutoff / sqrt(2).
    if not excess(median / 50.0) > 0 > excess(median * 50.0):
        return None
    return float(optimize.brentq(excess, median / 50.0, median * 50.0, xtol=1e-12 * median))
