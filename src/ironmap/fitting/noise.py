"""Estimating the noise standard deviation ``sigma`` of magnitude multi-echo data.

Two estimators, tried in this order by :class:`~ironmap.fitting.DecayModel`:

1. **Background** (:func:`sigma_from_background`): air outside the head holds pure noise, whose
   magnitude is Rayleigh distributed with median ``sigma sqrt(2 ln 2)``. Starting from the voxels
   whose first echo is below 5 % of the robust maximum, the cutoff is moved to 3.5 sigma and
   sigma re-estimated (accounting for the truncation) until both agree; the estimate is kept only
   if there are enough such voxels and their spread is Rayleigh-like (else the volume was
   cropped, masked or zero-filled and has no usable background).
2. **Residuals** (:func:`sigma_from_residuals`): in voxels well above the noise floor the
   residuals of a least-squares fit are Gaussian with variance ``sigma^2`` and
   ``n_echoes - 2`` degrees of freedom. Model misfit inflates this estimate, so it is an upper
   bound in tissue that is not mono-exponential. Needs >= 3 echoes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

__all__ = ["sigma_from_background", "sigma_from_residuals"]

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
    """
    first = np.asarray(data[..., 0], dtype=np.float64).ravel()
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
    return sigma


def _truncated_rayleigh_sigma(median: float, cutoff: float) -> float:
    """Rayleigh scale whose distribution truncated at ``cutoff`` has the given median."""
    if cutoff / median > 30:  # truncation irrelevant
        return median / _RAYLEIGH_MEDIAN

    def excess(sigma: float) -> float:
        cdf = -np.expm1(-0.5 * (median / sigma) ** 2)
        return cdf - 0.5 * -np.expm1(-0.5 * (cutoff / sigma) ** 2)

    # excess > 0 for small sigma, < 0 for large sigma (median > cutoff / 2 ... always true here).
    return float(optimize.brentq(excess, median / 50.0, median * 50.0, xtol=1e-12 * median))


def sigma_from_residuals(residual_ss: NDArray[np.float64], n_echoes: int) -> float | None:
    """Noise SD from per-voxel residual sums of squares of a mono-exponential fit.

    Parameters
    ----------
    residual_ss : numpy.ndarray, shape (n_voxels,)
        ``sum_i (M_i - S_i)^2`` of high-SNR voxels (Rician bias negligible).
    n_echoes : int
        Echoes per voxel (>= 3).

    Returns
    -------
    float or None
        ``sqrt(median(RSS) / median(chi2(n_echoes - 2)))``: the median makes it robust to the
        few voxels (vessels, edges) the model does not describe. ``None`` with < 3 echoes or
        no finite residuals.
    """
    dof = n_echoes - 2
    rss = residual_ss[np.isfinite(residual_ss)]
    if dof < 1 or rss.size == 0:
        return None
    sigma = float(np.sqrt(np.median(rss) / stats.chi2.median(dof)))
    return sigma if sigma > 0 else None
