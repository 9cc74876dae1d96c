"""Background field removal: the local field of the brain's own susceptibility sources.

``sharp``: sophisticated harmonic artifact reduction (Schweser et al., NeuroImage 2011): a
background field is harmonic inside the brain, so its spherical mean value equals its value;
``field - SMV(field)`` removes it on the mask eroded by the sphere, and a truncated
deconvolution by ``1 - F(SMV)`` restores the local field there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .dipole import padded_shape

__all__ = ["SHARP_RADIUS_MM", "SHARP_THRESHOLD", "sharp", "sphere_kernel"]

#: Radius (mm) of the spherical mean value kernel of :func:`sharp`.
SHARP_RADIUS_MM = 5.0
#: Truncation of the deconvolution ``1 - F(SMV)`` in :func:`sharp`.
SHARP_THRESHOLD = 0.05


def _ball(radius_mm: float, voxel_mm: Sequence[float]) -> NDArray[np.bool_]:
    half = [int(np.floor(radius_mm / d)) for d in voxel_mm]
    grid = np.meshgrid(
        *(np.arange(-h, h + 1) * d for h, d in zip(half, voxel_mm, strict=True)),
        indexing="ij",
    )
    return sum(g**2 for g in grid) <= radius_mm**2


def sphere_kernel(
    shape: Sequence[int], radius_mm: float, voxel_mm: Sequence[float]
) -> NDArray[np.float64]:
    """Fourier transform of the normalised spherical mean value kernel on a grid of ``shape``."""
    ball = _ball(radius_mm, voxel_mm).astype(np.float64)
    ball /= ball.sum()
    kernel = np.zeros(shape)
    half = [s // 2 for s in ball.shape]
    idx = np.argwhere(ball > 0)
    where = (idx - np.asarray(half)) % np.asarray(shape)
    kernel[tuple(where.T)] = ball[tuple(idx.T)]
    return np.fft.fftn(kernel).real


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
