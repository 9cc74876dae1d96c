"""The default estimator ``auto``: noise-corrected WLS above the noise floor, Rician ML below it.

Every voxel is first fitted by log-linear WLS (the closed form for two echoes) on the
noise-corrected magnitudes ``sqrt(M^2 - sigma^2)``; voxels whose fitted last echo is below
:data:`RICIAN_CUTOFF_SNR` sigma are refitted by Rician maximum likelihood
(:func:`~ironmap.fitting.solvers.rician_ml`) and the ``O(sigma^2)`` bias of that estimate is
removed (:func:`~ironmap.fitting.crlb.r2star_ml_bias`). See docs/fitting.md for the reasoning.

With ``N = coils`` receive channels combined by root-sum-of-squares the magnitudes are
noncentral chi (``2N`` degrees of freedom): the correction becomes ``sqrt(M^2 - (2N-1) sigma^2)``,
the cutoff ``10 sqrt(N)`` sigma, and the likelihood, its bias and bound those of ``N`` channels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import solvers
from .crlb import r2star_ml_bias

__all__ = ["RICIAN_CUTOFF_SNR", "auto"]

#: Sigma below which the fitted last echo sends a voxel to the Rician fit (see docs/fitting.md);
#: times ``sqrt(N)`` for ``N`` receive coils.
RICIAN_CUTOFF_SNR = 10.0


def auto(
    signal: NDArray[np.float64],
    te: NDArray[np.float64],
    *,
    sigma: float | None,
    factor: NDArray[np.float64] | None,
    coils: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Noise-floor aware fit of ``S0 exp(-R2* TE) F(TE)`` under Rician noise.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_voxels, n_echoes)
        Measured magnitudes (float64, finite, > 0), **not** divided by ``factor``: the noise is
        that of these values.
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.
    sigma : float, numpy.ndarray of shape (n_voxels,), or None
        Noise standard deviation per channel, in signal units: one value, or one per voxel (a
        noise map). ``None``: no noise-floor correction, plain WLS (closed form for two echoes)
        on ``signal / factor``.
    factor : numpy.ndarray, shape (n_voxels, n_echoes), or None
        Known extra signal factor per voxel and echo (finite, > 0), or ``None`` for 1.
    coils : int, optional
        Receive channels ``N`` combined by root-sum-of-squares (noncentral chi noise with ``2N``
        degrees of freedom); default 1, Rician.

    Returns
    -------
    s0 : numpy.ndarray, shape (n_voxels,)
        Signal at TE = 0, signal units.
    r2star : numpy.ndarray, shape (n_voxels,)
        R2* in 1/s.
    converged : numpy.ndarray of bool, shape (n_voxels,)
        False where the Rician maximum-likelihood iteration did not converge.
    """
    first = solvers.two_point if te.size == 2 else solvers.wls
    if sigma is None:
        a, r = first(signal if factor is None else signal / factor, te)
        return a, r, np.ones(signal.shape[0], dtype=bool)
    # Above the noise floor: sqrt(M^2 - (2N-1) sigma^2) is unbiased to second order in sigma / A.
    if np.ndim(sigma):  # one sigma per voxel
        sigma = np.asarray(sigma, dtype=np.float64)
        sig = sigma[:, None]
    else:
        sig = sigma
    floor = (2 * coils - 1) * sig**2  # exactly sigma^2 for N = 1
    corrected = np.sqrt(np.maximum(signal**2 - floor, (0.5 * sig) ** 2))
    if factor is not None:
        corrected /= factor
    a, r = first(corrected, te)
    converged = np.ones(signal.shape[0], dtype=bool)
    last = a * np.exp(-r * te[-1]) * (1.0 if factor is None else factor[:, -1])
    # The floor E[M | A = 0] grows as sqrt(N) sigma, and so does the cutoff.
    low = ~(
        last >= RICIAN_CUTOFF_SNR * np.sqrt(coils) * sigma
    )  # NaN starts go to the Rician fit as well
    if low.any():
        start_a, start_r = a[low], r[low]
        broken = ~(np.isfinite(start_a) & np.isfinite(start_r) & (start_a > 0))
        if broken.any():  # fall back to a crude start from the first two echoes
            start_a[broken], start_r[broken] = solvers.two_point(
                signal[low][broken][:, :2], te[:2]
            )
        f_low = None if factor is None else factor[low]
        sig_low = sigma[low] if np.ndim(sigma) else sigma
        a_ml, r_ml, converged[low] = solvers.rician_ml(
            signal[low], te, sig_low, s0=start_a, r2star=start_r, factor=f_low, coils=coils
        )
        bias = r2star_ml_bias(a_ml, r_ml, te, sig_low, factor=f_low, coils=coils)
        a_ml, r_ml = a_ml, r_ml - bias
        if te.size == 2:
            # Two echoes, two parameters: the likelihood puts the second echo's amplitude at 0
            # whenever its magnitude is below about sqrt(2) sigma (no finite R2*). Keep the
            # closed form on noise-corrected magnitudes there: finite wherever log-linear is.
            lost = ~(np.isfinite(a_ml) & np.isfinite(r_ml) & (a_ml > 0) & (r_ml * te[-1] > 1e-6))
            a_ml[lost], r_ml[lost] = start_a[lost], start_r[lost]
            converged[np.flatnonzero(low)[lost]] = True
        a[low], r[low] = a_ml, r_ml
    return a, r, converged
