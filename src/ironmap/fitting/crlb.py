"""Cramer-Rao lower bound of R2* for the mono-exponential decay model.

For ``S(t) = S0 exp(-R2* t)`` sampled at echo times ``t_i`` with noise of standard deviation
``sigma``, the Fisher information about ``(ln S0, R2*)`` is ``sum_i w_i J_i J_i^T`` with
``J_i = S_i (1, -t_i)`` and ``w_i = 1 / sigma^2`` (Gaussian noise) or
``f(S_i / sigma) / sigma^2`` (Rician magnitudes, :func:`~.rician.rician_information_factor`;
noncentral chi of ``2N`` degrees of freedom for ``coils=N`` receive channels combined by
root-sum-of-squares).
The bound on ``var(R2*)`` is the (R2*, R2*) element of its inverse; it does not depend on how
``S0`` is parametrised.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .rician import rician_information_factor

__all__ = ["r2star_crlb_sd", "r2star_ml_bias"]


def r2star_crlb_sd(
    s0: ArrayLike,
    r2star: ArrayLike,
    te: ArrayLike,
    sigma: float | ArrayLike,
    *,
    rician: bool = True,
    factor: ArrayLike | None = None,
    coils: int = 1,
) -> NDArray[np.float64]:
    """Cramer-Rao standard deviation of R2* (1/s).

    Parameters
    ----------
    s0 : array_like, shape (...)
        Amplitude at TE = 0, in the units of ``sigma``.
    r2star : array_like, shape (...)
        R2* in 1/s.
    te : array_like, shape (n_echoes,)
        Echo times in seconds.
    sigma : float or array_like of shape (...)
        Noise standard deviation per channel (> 0): one value, or one per voxel.
    rician : bool, optional
        Use the Rician information of magnitude data (default) rather than Gaussian noise.
    factor : array_like, shape (..., n_echoes), optional
        Known extra signal factor per echo (amplitude ``S0 exp(-R2* TE) F``).
    coils : int, optional
        Receive channels ``N`` combined by root-sum-of-squares (default 1): with ``rician``,
        the information of the noncentral chi distribution with ``2N`` degrees of freedom.

    Returns
    -------
    numpy.ndarray, shape (...)
        The smallest standard deviation any unbiased estimator of R2* can reach; NaN where the
        inputs are not finite.
    """
    a, b, c = _information(s0, r2star, te, sigma, rician, factor, coils)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(a / (a * c - b * b))


def r2star_ml_bias(
    s0: ArrayLike,
    r2star: ArrayLike,
    te: ArrayLike,
    sigma: float | ArrayLike,
    *,
    rician: bool = True,
    factor: ArrayLike | None = None,
    coils: int = 1,
) -> NDArray[np.float64]:
    """Second-order bias of the maximum-likelihood R2* from the model's curvature (1/s).

    Box's (1971) formula for non-linear regression, ``b = -1/2 F^-1 J^T W d`` with
    ``d_i = tr(F^-1 H_i)``, ``H_i`` the Hessian of echo ``i``'s signal in ``(ln S0, R2*)`` and
    ``W`` the per-echo information weights. Subtracting it from the estimate removes the
    ``O(sigma^2)`` bias of fitting a curved model (about +0.7 % at SNR 15, R2* 80 1/s over
    2.6-39.4 ms); the smaller part due to Rician skew is not modelled.

    Parameters and shapes are those of :func:`r2star_crlb_sd`.
    """
    te = np.asarray(te, dtype=np.float64)
    # With W A^2 the information weights times the squared amplitudes, the moments
    # a = sum W A^2, b = -sum W A^2 te, c = sum W A^2 te^2 and e = sum W A^2 te^3 give
    # d_i = A_i (c + 2 b te_i + a te_i^2) / det, hence sum W A d = (2 a c - 2 b^2) / det = 2 and
    # -sum W te A d = -(b c + a e) / det: one pass over the echoes, no (n, n_echoes) products.
    wa2 = _weighted_amplitudes(s0, r2star, te, sigma, rician, factor, coils)
    a, b, c, e = (wa2 @ np.stack([np.ones_like(te), -te, te**2, te**3], axis=1)).T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        det = a * c - b * b
        # A singular information (all the signal in one echo: a fit that sent the later echoes
        # to zero) has no bias: NaN, as the per-echo form gave it (0 / 0), not rounding noise.
        det = np.where(det > _SINGULAR * a * c, det, np.nan)
        v1 = -(b * c + a * e) / det
        return -0.5 * (a * v1 - 2.0 * b) / det


#: Information matrices with ``det < _SINGULAR a c`` (``1 - cos^2`` of the angle between the
#: two parameters' sensitivities) are singular to rounding.
_SINGULAR = 1e-9


def _information(
    s0: ArrayLike,
    r2star: ArrayLike,
    te: ArrayLike,
    sigma: float | ArrayLike,
    rician: bool,
    factor: ArrayLike | None = None,
    coils: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Fisher information ``[[a, b], [b, c]]`` about ``(ln S0, R2*)``."""
    wa2 = _weighted_amplitudes(s0, r2star, te, sigma, rician, factor, coils)
    te = np.asarray(te, dtype=np.float64)
    return wa2.sum(axis=-1), -(wa2 @ te), wa2 @ te**2


def _weighted_amplitudes(
    s0: ArrayLike,
    r2star: ArrayLike,
    te: ArrayLike,
    sigma: float | ArrayLike,
    rician: bool,
    factor: ArrayLike | None = None,
    coils: int = 1,
) -> NDArray[np.float64]:
    """``W A^2`` per echo, shape (..., n_echoes): information weight times squared amplitude."""
    s0 = np.asarray(s0, dtype=np.float64)
    r2 = np.asarray(r2star, dtype=np.float64)
    te = np.asarray(te, dtype=np.float64)
    amp = s0[..., None] * np.exp(-r2[..., None] * te)
    if factor is not None:
        amp = amp * np.asarray(factor, dtype=np.float64)
    sig = np.asarray(sigma, dtype=np.float64)[..., None]  # one value, or one per voxel
    w = rician_information_factor(amp / sig, coils=coils) if rician else np.ones_like(amp)
    w = w / sig**2
    return w * amp**2
