"""Residual sigma versus the image background: flagging model misfit.

A residual-based sigma (:mod:`.residuals`) is inflated where the decay is not mono-exponential.
:func:`background_level` gives the rough noise level of the low-intensity region even where no
background is trusted, and :func:`check_residual_sigma` flags a residual sigma well above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .background import Background, NoiseEstimate, resolve_background
from .chi import fit_truncated_chi

__all__ = ["ResidualSigma", "background_level", "check_residual_sigma"]

#: Residual sigma more than this many times the background sigma flags model misfit.
_MISFIT_RATIO = 1.5


@dataclass(frozen=True)
class ResidualSigma:
    """A residual-based sigma checked against the image background.

    Attributes
    ----------
    sigma : float
        Noise SD from fit residuals (signal units).
    background : float or None
        Noise SD suggested by the image background (signal units), ``None`` if there is none.
    ratio : float
        ``sigma / background`` (NaN without a background).
    misfit : bool
        ``ratio > tolerance``: the model does not describe the tissue and the residuals
        overestimate the noise (R2* noise-floor correction and ``r2star_sd`` too large).
    message : str
        One line for a warning (empty when ``misfit`` is False).
    """

    sigma: float
    background: float | None
    ratio: float
    misfit: bool
    message: str


def check_residual_sigma(
    sigma: float, background: float | None, *, tolerance: float = _MISFIT_RATIO
) -> ResidualSigma:
    """Flag a residual sigma that is larger than the background noise level.

    Parameters
    ----------
    sigma : float
        Noise SD from fit residuals, e.g. :func:`sigma_from_residuals` (signal units).
    background : float or None
        Noise SD from the background, e.g. :func:`background_level` (signal units).
    tolerance : float, optional
        Ratio above which the residual sigma is called inflated by misfit (default 1.5: the
        two estimators agree within a few per cent on mono-exponential data).

    Returns
    -------
    ResidualSigma
        Never raises; ``misfit`` is False when either value is missing or not positive.
    """
    sigma = float(sigma)
    ok = background is not None and math.isfinite(background) and background > 0
    ratio = sigma / float(background) if ok and math.isfinite(sigma) else math.nan
    misfit = bool(ratio > tolerance)
    message = (
        f"sigma from fit residuals ({sigma:.3g}) is {ratio:.1f} times the background level "
        f"({background:.3g}): model misfit inflates it; pass --sigma"
        if misfit
        else ""
    )
    return ResidualSigma(sigma, float(background) if ok else None, ratio, misfit, message)


def background_level(
    data: ArrayLike,
    *,
    threshold: float = 0.05,
    estimate: NoiseEstimate | Background | None = Background.ANALYSE,
) -> float | None:
    """Rough per-channel noise SD of the low-intensity region, even where no background is trusted.

    The accepted :func:`noise_from_background` estimate if there is one; else a chi fit (method
    of moments, truncated maximum likelihood) to the non-zero voxels whose first echo is below
    ``threshold`` times the 99th percentile, without the acceptance tests. It is an upper
    bound of the noise (tissue in the region only adds to it) and is meant only as the reference
    of :func:`check_residual_sigma`, not as a sigma to fit with.

    Parameters
    ----------
    data : array_like, shape (..., n_echoes) or (...,)
        Magnitude images (not modified).
    threshold : float, optional
        Fraction of the 99th percentile of the first echo below which voxels are used.
    estimate : NoiseEstimate, Background or None, optional
        The :func:`noise_from_background` result for ``data`` when the caller already has it
        (None: there is no usable background); the default ``Background.ANALYSE`` runs it here.

    Returns
    -------
    float or None
        Signal units; ``None`` with fewer than 100 such voxels. Never raises on the data
        (``TypeError`` when ``estimate`` is none of the above).
    """
    estimate = resolve_background(data, estimate, threshold=threshold, name="estimate")
    if estimate is not None:
        return estimate.sigma
    try:
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim < 2:
            arr = arr.reshape(-1, 1)
        first = arr[..., 0]
        usable = np.isfinite(first) & (first > 0)
        if usable.sum() < 100:
            return None
        cutoff = threshold * float(np.percentile(first[usable], 99.0))
        values = arr[usable & (first < cutoff)]
        quantised = bool(np.all(values == np.round(values)))
        lower = 0.5 if quantised else 0.0
        values = values[np.isfinite(values) & (values > lower) & (values < cutoff)]
        if values.size < 100 or np.unique(values).size < 3:
            return None
        fit = fit_truncated_chi(values, lower, cutoff, quantised)
    except (ValueError, TypeError, ArithmeticError):
        return None
    return None if fit is None else fit[1]
