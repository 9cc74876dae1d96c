"""Macroscopic field-gradient correction of multi-echo magnitudes.

A voxel in which the B0 off-resonance ``f`` (Hz) varies linearly with gradient ``g_k`` (Hz per
voxel) along each axis ``k`` dephases as a whole: its magnitude is multiplied by

    F(TE) = prod_k |sinc(g_k TE)|,    sinc(x) = sin(pi x) / (pi x)

(Yablonskiy 1998 for the through-slice direction; Dahnke & Schaeffter 2005 per axis). Near
air-tissue interfaces this extra decay inflates R2*, more so for thick slices and long echoes,
and differently between sites.

The correction enters the fit as a known factor of the model (``DecayModel.fit(...,
decay_factor=F)``). The field map comes from the phase of consecutive echoes:
``f = angle(S_2 conj(S_1)) /
(2 pi (TE_2 - TE_1))``, averaged over echo pairs with magnitude weights. This needs no spatial
unwrapping as long as ``|f| < 1 / (2 dTE)`` (±100 Hz at 5 ms spacing), which holds for brain
tissue at 3 T away from the sinuses' air itself.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["field_map", "gradient_correction", "gradient_decay"]

#: Below this predicted signal fraction the correction is not trusted (voxel is NaN).
MIN_FRACTION = 0.2
#: Smoothing of the field map before its gradients: differentiating amplifies phase noise,
#: and noise in the gradient always reads as extra dephasing (sinc is concave at 0).
SMOOTH_VOXELS = 1.0


def field_map(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike, *, smooth_voxels: float = 0.0
) -> NDArray[np.float64]:
    """Off-resonance frequency (Hz) from multi-echo phase, by echo differences.

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians) of the same echoes.
    echo_times_s : array_like, shape (n_echoes,)
    smooth_voxels : float, optional
        SD (voxels) of a signal-weighted Gaussian smoothing of the map; 0 keeps it raw.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Frequency in Hz (positive = faster precession).
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    z = np.asarray(magnitude, dtype=np.float64) * np.exp(1j * np.asarray(phase, np.float64))
    pairs = z[..., 1:] * np.conj(z[..., :-1])
    freq = np.angle(pairs) / (2 * np.pi * np.diff(te))  # one estimate per echo pair
    weight = np.abs(pairs)
    with np.errstate(invalid="ignore", divide="ignore"):
        field = np.sum(freq * weight, axis=-1) / np.sum(weight, axis=-1)
    if smooth_voxels > 0:  # signal-weighted smoothing: noisy (dark) voxels count less
        w = np.where(np.isfinite(field), np.sum(weight, axis=-1), 0.0)
        num = ndimage.gaussian_filter(np.nan_to_num(field) * w, smooth_voxels)
        den = ndimage.gaussian_filter(w, smooth_voxels)
        with np.errstate(invalid="ignore", divide="ignore"):
            field = np.where(np.isfinite(field), num / den, np.nan)
    return field


def gradient_decay(field_hz: NDArray, echo_times_s: ArrayLike) -> NDArray[np.float64]:
    """Signal fraction ``F(TE)`` left by intravoxel dephasing, shape (X, Y, Z, n_echoes).

    Parameters
    ----------
    field_hz : numpy.ndarray, shape (X, Y, Z)
        Off-resonance map (Hz); its gradients per voxel (central differences) define ``g_k``.
    echo_times_s : array_like, shape (n_echoes,)
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    field = np.asarray(field_hz, dtype=np.float64)
    decay = np.ones((*field.shape, te.size))
    for axis in range(field.ndim):
        if field.shape[axis] < 2:
            continue
        g = np.gradient(field, axis=axis)  # Hz per voxel
        decay *= np.abs(np.sinc(g[..., None] * te))
    return decay


def gradient_correction(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The dephasing factor to fit with, from the phase of the echoes.

    Use it as ``DecayModel(te).fit(magnitude, decay_factor=factor)``: the decay model becomes
    ``S0 exp(-R2* TE) F(TE)`` and the noise stays that of the measured magnitudes (dividing the
    magnitudes by ``F`` instead would amplify the Rician noise floor of dephased echoes).

    Returns
    -------
    factor : numpy.ndarray, shape (X, Y, Z, n_echoes)
        ``F(TE)``; NaN where ``F < 0.2`` (too little signal left to correct: the voxel fails).
    field_hz : numpy.ndarray, shape (X, Y, Z)
    unreliable : numpy.ndarray of bool, shape (X, Y, Z)
        Voxels where some echo had ``F < 0.2``.
    """
    field = field_map(magnitude, phase, echo_times_s, smooth_voxels=SMOOTH_VOXELS)
    finite = np.isfinite(field)
    decay = gradient_decay(np.where(finite, field, 0.0), echo_times_s)
    low = decay < MIN_FRACTION
    factor = np.where(low | ~finite[..., None], np.nan, decay)
    return factor, field, low.any(axis=-1) & finite
