"""Background field removal: the local field of the brain's own susceptibility sources.

``sharp``: sophisticated harmonic artifact reduction (Schweser et al., NeuroImage 2011): a
background field is harmonic inside the brain, so its spherical mean value equals its value;
``field - SMV(field)`` removes it on the mask eroded by the sphere, and a truncated
deconvolution by ``1 - F(SMV)`` restores the local field there.

``vsharp``: variable-radius SHARP (Li et al., NeuroImage 2011; Wu et al., MRM 2012): every voxel
takes the high-passed field of the largest sphere that fits in the mask around it (radii
:data:`VSHARP_RADII_MM`, large to small), so the mask is eroded by the smallest radius only; the
deconvolution uses the largest sphere's kernel.

``pdf``: projection onto dipole fields (Liu et al., NMR Biomed 2011): the background field is
the field of the susceptibility outside the mask that best explains the total field inside it
(noise-weighted least squares, conjugate gradients on the normal equations, FFT dipole kernel);
the local field is the remainder. No erosion.

``smv``: only the high-pass ``field - SMV(field)`` on the mask eroded by the sphere
(:func:`smv_highpass`); the rest of the background removal happens inside the inversion, whose
forward model then includes ``1 - SMV`` (single-step QSM: Chatnuntawech et al., NMR Biomed 2017;
the SHARP-embedded models of Liu Z et al. and Sun & Wilman). No deconvolution, hence none of
SHARP's low-frequency loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy import ndimage

from . import _fft
from .dipole import padded_shape

__all__ = [
    "PDF_ITERATIONS",
    "PDF_TOLERANCE",
    "SHARP_RADIUS_MM",
    "SHARP_THRESHOLD",
    "SMV_RADII_MM",
    "SMV_RADIUS_MM",
    "VSHARP_RADII_MM",
    "pdf",
    "sharp",
    "smv_highpass",
    "sphere_kernel",
    "vsharp",
]

#: Radius (mm) of the spherical mean value kernel of :func:`sharp`.
SHARP_RADIUS_MM = 5.0
#: Truncation of the deconvolution ``1 - F(SMV)`` in :func:`sharp`.
SHARP_THRESHOLD = 0.05
#: Largest and smallest sphere radius (mm) of :func:`vsharp`; the smallest is raised to the
#: largest voxel dimension, and the radii step by the largest voxel dimension.
VSHARP_RADII_MM = (12.0, 1.0)
#: Radius (mm) of the sphere of :func:`smv_highpass`.
SMV_RADIUS_MM = 6.0
#: Sphere radii (mm) of the single-step QSM's data terms (``background="smv"``: one data term
#: per radius, see :func:`.inversion.medi`); the final mask is eroded by the smallest.
SMV_RADII_MM = (6.0,)
#: Conjugate-gradient iterations and relative residual tolerance of :func:`pdf`.
PDF_ITERATIONS = 30
PDF_TOLERANCE = 0.01


def _ball(radius_mm: float, voxel_mm: Sequence[float]) -> NDArray[np.bool_]:
    half = [int(np.floor(radius_mm / d)) for d in voxel_mm]
    grid = np.meshgrid(
        *(np.arange(-h, h + 1) * d for h, d in zip(half, voxel_mm, strict=True)),
        indexing="ij",
    )
    return sum(g**2 for g in grid) <= radius_mm**2


def _ball_spatial(
    shape: Sequence[int], radius_mm: float, voxel_mm: Sequence[float]
) -> NDArray[np.float64]:
    """The normalised ball of ``radius_mm`` centred at the origin of a grid of ``shape``
    (wrapped around, as the FFT sees it)."""
    ball = _ball(radius_mm, voxel_mm).astype(np.float64)
    ball /= ball.sum()
    kernel = np.zeros(shape)
    half = [s // 2 for s in ball.shape]
    idx = np.argwhere(ball > 0)
    where = (idx - np.asarray(half)) % np.asarray(shape)
    kernel[tuple(where.T)] = ball[tuple(idx.T)]
    return kernel


def sphere_kernel(
    shape: Sequence[int], radius_mm: float, voxel_mm: Sequence[float]
) -> NDArray[np.float64]:
    """Fourier transform of the normalised spherical mean value kernel on a grid of ``shape``."""
    return np.fft.fftn(_ball_spatial(shape, radius_mm, voxel_mm)).real


def sharp(
    field: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    radius_mm: float = SHARP_RADIUS_MM,
    threshold: float = SHARP_THRESHOLD,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Local field and the eroded mask where it is defined.

    Parameters
    ----------
    field : numpy.ndarray, shape (X, Y, Z)
        Total field (any unit; the result has the same), finite inside ``mask``.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Brain mask.
    voxel_mm : sequence of 3 float
    radius_mm, threshold : float, optional

    Returns
    -------
    local : numpy.ndarray, shape (X, Y, Z)
        Local field inside ``eroded``, 0 outside.
    eroded : numpy.ndarray of bool, shape (X, Y, Z)
        ``mask`` eroded by the sphere.
    """
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=_ball(radius_mm, voxel_mm))
    pad = int(np.ceil(radius_mm / min(voxel_mm))) + 2
    big = padded_shape(field.shape, pad)
    smv = sphere_kernel(big, radius_mm, voxel_mm)
    f = np.where(mask, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    crop = (slice(0, field.shape[0]), slice(0, field.shape[1]), slice(0, field.shape[2]))
    high = np.fft.ifftn((1.0 - smv) * np.fft.fftn(f, s=big, axes=(0, 1, 2))).real[crop]
    high = np.where(eroded, high, 0.0)
    operator = 1.0 - smv
    inverse = np.where(np.abs(operator) > threshold, 1.0 / np.where(operator == 0, 1, operator), 0)
    local = np.fft.ifftn(inverse * np.fft.fftn(high, s=big, axes=(0, 1, 2))).real[crop]
    return np.where(eroded, local, 0.0), eroded


def vsharp_radii(voxel_mm: Sequence[float], radii_mm: Sequence[float] = VSHARP_RADII_MM):
    """The radii (mm, decreasing) :func:`vsharp` uses for ``voxel_mm``."""
    step = max(voxel_mm)
    largest, smallest = float(max(radii_mm)), max(float(min(radii_mm)), step)
    radii = np.arange(largest, smallest - 1e-6, -step)
    return tuple(float(r) for r in radii) if radii.size else (largest,)


def _ball_half(big, radius_mm, voxel_mm):
    """rfftn of the normalised ball of ``radius_mm`` centred at the origin of the grid."""
    return _fft.rfft(_ball_spatial(big, radius_mm, voxel_mm), big).real


def vsharp(
    field: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    radii_mm: Sequence[float] = VSHARP_RADII_MM,
    threshold: float = SHARP_THRESHOLD,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Variable-radius SHARP: local field and the mask where it is defined.

    Parameters
    ----------
    field : numpy.ndarray, shape (X, Y, Z)
        Total field (any unit; the result has the same), finite inside ``mask``.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Brain mask.
    voxel_mm : sequence of 3 float
    radii_mm : (float, float), optional
        Largest and smallest radius (mm), see :func:`vsharp_radii`.
    threshold : float, optional
        Truncation of the deconvolution by the largest sphere's ``1 - F(SMV)``.

    Returns
    -------
    local : numpy.ndarray, shape (X, Y, Z)
        Local field inside ``eroded``, 0 outside.
    eroded : numpy.ndarray of bool, shape (X, Y, Z)
        ``mask`` eroded by the smallest sphere.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = mask.shape
    radii = vsharp_radii(voxel_mm, radii_mm)
    big = _fft.fast_shape(shape, int(np.ceil(radii[0] / min(voxel_mm))) + 1)
    f = np.where(mask, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    spectrum = _fft.rfft(f, big)
    mask_spectrum = _fft.rfft(mask, big)
    high = np.zeros(shape)
    assigned = np.zeros(shape, dtype=bool)
    largest = None
    for radius in radii:
        smv = _ball_half(big, radius, voxel_mm)
        largest = smv if largest is None else largest
        inside = _fft.irfft(smv * mask_spectrum, big, shape) > 1.0 - 1e-6
        new = inside & mask & ~assigned
        if new.any():
            high[new] = _fft.irfft((1.0 - smv) * spectrum, big, shape)[new]
            assigned |= new
    operator = 1.0 - largest
    inverse = np.where(np.abs(operator) > threshold, 1.0 / np.where(operator == 0, 1, operator), 0)
    local = _fft.irfft(inverse * _fft.rfft(high, big), big, shape)
    return np.where(assigned, local, 0.0), assigned


def pdf(
    field: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    weight: NDArray | None = None,
    iterations: int = PDF_ITERATIONS,
    tolerance: float = PDF_TOLERANCE,
    pad: int = 16,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Projection onto dipole fields: local field (total minus the fitted background).

    Minimises ``|| W (field - M D chi_out) ||^2`` over a susceptibility ``chi_out`` that is
    zero inside ``mask`` (``M``: restriction to the mask, ``D``: dipole convolution on the
    grid padded by ``pad`` voxels), by conjugate gradients on the normal equations.

    Parameters
    ----------
    field : numpy.ndarray, shape (X, Y, Z)
        Total field (ppm), finite inside ``mask``.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float
    direction : sequence of 3 float, optional
        B0 in voxel axes.
    weight : numpy.ndarray, shape (X, Y, Z), optional
        Data weight ``W`` (e.g. 1 / noise SD); default uniform.
    iterations : int, optional
        Maximum CG iterations.
    tolerance : float, optional
        Stop when the residual norm falls below this fraction of the first.
    pad : int, optional
        Voxels of outside space (sources) beyond the grid on each side.

    Returns
    -------
    local : numpy.ndarray, shape (X, Y, Z)
        Local field (ppm) inside ``mask``, 0 outside.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        ``mask`` itself (PDF erodes nothing).
    """
    mask = np.asarray(mask, dtype=bool)
    shape = mask.shape
    big = _fft.fast_shape(shape, pad)
    kernel = _fft.dipole_half(big, voxel_mm, direction)
    f = np.where(mask, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    w2 = np.ones(shape) if weight is None else np.nan_to_num(np.asarray(weight, float)) ** 2
    w2 = np.where(mask, w2, 0.0)
    outside = np.ones(big, dtype=bool)
    outside[: shape[0], : shape[1], : shape[2]] = ~mask

    def dipole(chi_big):
        return sfft.irfftn(kernel * sfft.rfftn(chi_big, workers=1), s=big, workers=1)

    def embed(small):
        out = np.zeros(big)
        out[: shape[0], : shape[1], : shape[2]] = small
        return out

    def normal(chi_big):
        inner = dipole(chi_big)[: shape[0], : shape[1], : shape[2]]
        return np.where(outside, dipole(embed(w2 * inner)), 0.0)

    b = np.where(outside, dipole(embed(w2 * f)), 0.0)
    x = np.zeros(big)
    r = b.copy()
    p = r.copy()
    rr = float(np.vdot(r, r))
    first = np.sqrt(rr)
    for _ in range(int(iterations)):
        if first == 0 or np.sqrt(rr) <= tolerance * first:
            break
        ap = normal(p)
        alpha = rr / float(np.vdot(p, ap))
        x += alpha * p
        r -= alpha * ap
        rr_new = float(np.vdot(r, r))
        p = r + (rr_new / rr) * p
        rr = rr_new
    background = dipole(x)[: shape[0], : shape[1], : shape[2]]
    return np.where(mask, f - background, 0.0), mask


def smv_highpass(
    field: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    radius_mm: float = SMV_RADIUS_MM,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """``field - SMV(field)`` where the sphere lies inside ``mask`` (harmonic fields vanish).

    Parameters
    ----------
    field : numpy.ndarray, shape (X, Y, Z)
        Total field (any unit; the result has the same), finite inside ``mask``.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float
    radius_mm : float, optional

    Returns
    -------
    highpass : numpy.ndarray, shape (X, Y, Z)
        The high-passed field inside ``eroded``, 0 outside.
    eroded : numpy.ndarray of bool, shape (X, Y, Z)
        ``mask`` eroded by the sphere.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = mask.shape
    big = _fft.fast_shape(shape, int(np.ceil(radius_mm / min(voxel_mm))) + 1)
    smv = _ball_half(big, radius_mm, voxel_mm)
    f = np.where(mask, np.nan_to_num(np.asarray(field, dtype=np.float64)), 0.0)
    eroded = (_fft.irfft(smv * _fft.rfft(mask, big), big, shape) > 1.0 - 1e-6) & mask
    high = _fft.irfft((1.0 - smv) * _fft.rfft(f, big), big, shape)
    return np.where(eroded, high, 0.0), eroded
