"""Total field from multi-echo phase: spatial unwrapping and a weighted fit over the echoes.

The steps follow the "total field" stage of SEPIA, MEDI (``Fit_ppm_complex``) and QSMxT:

1. the phase of every echo is referenced to the first echo (``S_n conj(S_1)``), which removes
   the receive-phase offset of a unipolar readout;
2. each referenced phase is unwrapped in space (:func:`laplacian_unwrap`: the least-squares
   "Laplacian" unwrapper of Ghiglia & Romero, JOSA A 1994, also Schofield & Zhu, Opt Lett 2003;
   or, optionally, the quality-guided unwrapper of scikit-image, Herraez et al., Appl Opt 2002);
3. the field is the weighted least-squares slope of the unwrapped phase over ``TE_n - TE_1``
   with the optimum weights ``|S_n|^2 (TE_n - TE_1)^2`` (Robinson et al., NMR Biomed 2017; SEPIA's
   "optimum weights" echo combination), and its noise SD follows from the same weights.

The Laplacian unwrapper is exact up to a harmonic function inside the mask where the phase has
no residues; that function is removed with the background field (:mod:`.background`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["UNWRAP_METHODS", "echo_phase_noise", "laplacian_unwrap", "total_field", "wrap"]

#: Spatial unwrappers of :func:`total_field`.
UNWRAP_METHODS = ("laplacian", "quality")


def wrap(phase: NDArray) -> NDArray[np.float64]:
    """Phase wrapped into ``[-pi, pi)`` (radians)."""
    return (np.asarray(phase, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def laplacian_unwrap(phase: NDArray, mask: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """Least-squares (Laplacian) spatial phase unwrapping by the discrete cosine transform.

    Solves ``L u = div w(grad phase)`` with Neumann boundaries, where ``w`` wraps each
    neighbour difference into ``[-pi, pi)`` and differences that leave ``mask`` are zero
    (Ghiglia & Romero, JOSA A 1994). Where the phase has no residues the result equals the
    unwrapped phase inside ``mask`` up to a harmonic function (a constant in a convex region).

    Parameters
    ----------
    phase : numpy.ndarray, shape (X, Y, Z)
        Wrapped phase (radians).
    mask : numpy.ndarray of bool, shape (X, Y, Z), optional
        Where the phase is meaningful; default everywhere.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Unwrapped phase (radians), mean 0 over the grid; meaningless outside ``mask``.
    """
    phase = np.asarray(phase, dtype=np.float64)
    inside = np.ones(phase.shape, bool) if mask is None else np.asarray(mask, bool)
    rho = np.zeros(phase.shape)
    for axis in range(phase.ndim):
        grad = wrap(np.diff(phase, axis=axis))
        both = np.logical_and(
            np.take(inside, range(1, phase.shape[axis]), axis=axis),
            np.take(inside, range(0, phase.shape[axis] - 1), axis=axis),
        )
        grad = np.where(both, grad, 0.0)
        pad_lo = [(0, 0)] * phase.ndim
        pad_lo[axis] = (1, 0)
        pad_hi = [(0, 0)] * phase.ndim
        pad_hi[axis] = (0, 1)
        rho += np.pad(grad, pad_hi) - np.pad(grad, pad_lo)  # divergence (Neumann: 0 flux)
    eig = sum(
        (2.0 * np.cos(np.pi * np.arange(n) / n) - 2.0).reshape(
            [n if a == axis else 1 for a in range(phase.ndim)]
        )
        for axis, n in enumerate(phase.shape)
    )
    spectrum = sfft.dctn(rho, type=2, norm="ortho", workers=1)
    eig = np.asarray(eig)
    eig.flat[0] = 1.0
    spectrum /= eig
    spectrum.flat[0] = 0.0
    return sfft.idctn(spectrum, type=2, norm="ortho", workers=1)


def _quality_unwrap(phase: NDArray, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    try:
        from skimage.restoration import unwrap_phase
    except ImportError:  # pragma: no cover - optional dependency
        raise InputError(
            "QSM unwrap='quality' needs scikit-image (pip install scikit-image); "
            "unwrap='laplacian' needs nothing"
        ) from None
    masked = np.ma.masked_array(wrap(phase), mask=~np.asarray(mask, bool))
    return np.ma.filled(unwrap_phase(masked), 0.0).astype(np.float64)


def echo_phase_noise(magnitude: NDArray, mask: NDArray[np.bool_]) -> float:
    """Noise SD of one real/imaginary channel, from the spread of the last echo's magnitude
    differences between neighbours inside ``mask`` (robust: median absolute deviation).

    Parameters
    ----------
    magnitude : numpy.ndarray, shape (X, Y, Z, n_echoes)
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    """
    last = np.asarray(magnitude[..., -1], dtype=np.float64)
    diff = np.diff(last, axis=0)
    both = mask[1:] & mask[:-1]
    values = diff[both]
    if values.size < 10:
        return float("nan")
    mad = np.median(np.abs(values - np.median(values)))
    return float(1.4826 * mad / np.sqrt(2.0))


def total_field(
    magnitude: NDArray,
    phase: NDArray,
    echo_times_s: ArrayLike,
    mask: NDArray[np.bool_],
    *,
    unwrap: str = "laplacian",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Total field (Hz) and its noise SD (Hz) from multi-echo magnitude and phase.

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians; positive = faster precession) of at least 2 echoes.
    echo_times_s : array_like, shape (n_echoes,)
        Increasing echo times (s).
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Where to unwrap (the brain).
    unwrap : {"laplacian", "quality"}, optional
        Spatial unwrapper (:data:`UNWRAP_METHODS`).

    Returns
    -------
    field_hz : numpy.ndarray, shape (X, Y, Z)
        Frequency offset (Hz); exact inside ``mask`` up to a harmonic function (see the module
        docstring); 0 outside ``mask``.
    noise_hz : numpy.ndarray, shape (X, Y, Z)
        SD of ``field_hz`` from the magnitudes: ``sigma sqrt(A + B^2 / |S_1|^2) / (2 pi A)``
        with ``A = sum |S_n|^2 t_n^2``, ``B = sum |S_n|^2 t_n``, ``t_n = TE_n - TE_1`` (the
        first echo's noise is in every referenced phase) and ``sigma`` the channel noise
        (:func:`echo_phase_noise`; 1 if that is 0 or undefined, so that the map is a relative
        weight only); ``inf`` where there is no signal.
    """
    te = np.asarray(echo_times_s, dtype=np.float64).ravel()
    mag = np.asarray(magnitude, dtype=np.float64)
    ph = np.asarray(phase, dtype=np.float64)
    if mag.ndim != 4 or mag.shape != ph.shape or mag.shape[-1] != te.size:
        raise InputError(
            f"QSM needs magnitude and phase of shape (X, Y, Z, n_echoes) matching {te.size} "
            f"echo times, got {mag.shape} and {ph.shape}"
        )
    if te.size < 2 or np.any(np.diff(te) <= 0):
        raise InputError(f"QSM needs at least 2 increasing echo times, got {te.tolist()}")
    if unwrap not in UNWRAP_METHODS:
        raise InputError(f"QSM unwrap must be one of {', '.join(UNWRAP_METHODS)}, got {unwrap!r}")
    mask = np.asarray(mask, bool)
    mag = np.nan_to_num(np.abs(mag))
    ph = np.nan_to_num(ph)
    t = te[1:] - te[0]
    numerator = np.zeros(mask.shape)
    denominator = np.zeros(mask.shape)
    first_echo_term = np.zeros(mask.shape)
    for n in range(1, te.size):
        referenced = wrap(ph[..., n] - ph[..., 0])
        if unwrap == "laplacian":
            unwrapped = laplacian_unwrap(referenced, mask)
        else:
            unwrapped = _quality_unwrap(referenced, mask)
        # the unwrapped phase keeps the data's value where it is congruent (wrap(u - data) == 0)
        weight = mag[..., n] ** 2 * t[n - 1] ** 2
        numerator += weight * unwrapped / t[n - 1]
        denominator += weight
        first_echo_term += mag[..., n] ** 2 * t[n - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        field_hz = np.where(mask & (denominator > 0), numerator / denominator / (2 * np.pi), 0.0)
        sigma = echo_phase_noise(mag, mask)
        if not np.isfinite(sigma) or sigma <= 0:
            sigma = 1.0  # noise-free or too small to tell: relative weights only
        # the first echo's noise enters every referenced phase
        variance = denominator + first_echo_term**2 / mag[..., 0] ** 2
        noise_hz = sigma * np.sqrt(variance) / denominator / (2 * np.pi)
    noise_hz = np.where(mask & (denominator > 0) & np.isfinite(noise_hz), noise_hz, np.inf)
    return field_hz, noise_hz
