"""The magnetic dipole: how a susceptibility distribution perturbs the main field.

A susceptibility distribution ``chi`` (ppm, SI, relative to the reference tissue) in a field
``B0`` along the unit vector ``b`` produces, to first order, the relative field perturbation
``delta = F^-1[ D(k) F(chi) ]`` with the unit dipole kernel

    D(k) = 1/3 - (k . b)^2 / |k|^2,   D(0) = 0,

(Salomir et al., Concepts Magn Reson B 2003; Marques & Bowtell, Concepts Magn Reson B 2005).
``delta`` is dimensionless (ppm when ``chi`` is in ppm); the frequency offset is
``delta * GAMMA_BAR_MHZ_PER_T * B0`` (Hz per ppm: 127.7 at 3 T). ``D(0) = 0`` leaves the mean
of ``chi`` undetermined: susceptibility is always relative to a reference
(:mod:`ironmap.susceptibility`), and the Lorentz-sphere term is part of the 1/3.

This module is the one home of the kernel: the QSM inversion divides by it and the simulator
(:mod:`ironmap.simulate`) multiplies by it to plant fields from sources.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GAMMA_BAR_MHZ_PER_T",
    "b0_direction",
    "dipole_kernel",
    "forward_field",
    "hz_per_ppm",
    "padded_shape",
]

#: Proton gyromagnetic ratio over 2 pi (MHz/T): 1 ppm of field is 42.577 Hz per tesla.
GAMMA_BAR_MHZ_PER_T = 42.577478


def hz_per_ppm(field_strength_t: float) -> float:
    """Frequency offset (Hz) of a 1 ppm field perturbation at ``field_strength_t`` (T)."""
    return GAMMA_BAR_MHZ_PER_T * float(field_strength_t)


def b0_direction(affine: ArrayLike) -> NDArray[np.float64]:
    """The main field direction (scanner z) in the voxel axes of an image.

    Parameters
    ----------
    affine : array_like, shape (4, 4)
        Voxel -> scanner mm affine (RAS+; scanner z is the bore axis).

    Returns
    -------
    numpy.ndarray, shape (3,)
        Unit vector along B0 in voxel axes (``(0, 0, 1)`` for an axial, unrotated image).
    """
    rotation = np.asarray(affine, dtype=float)[:3, :3]
    rotation = rotation / np.linalg.norm(rotation, axis=0)
    direction = rotation.T @ np.array([0.0, 0.0, 1.0])
    return direction / np.linalg.norm(direction)


def dipole_kernel(
    shape: Sequence[int],
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
) -> NDArray[np.float64]:
    """The unit dipole kernel ``D(k)`` on the FFT grid of ``shape``.

    Parameters
    ----------
    shape : sequence of 3 int
        Grid (after any padding) the kernel multiplies the FFT of.
    voxel_mm : sequence of 3 float
        Voxel size (mm); only its ratios matter.
    direction : sequence of 3 float, optional
        B0 in voxel axes (:func:`b0_direction`); normalised here.

    Returns
    -------
    numpy.ndarray, shape ``shape``
        ``1/3 - (k.b)^2/|k|^2`` in :func:`numpy.fft.fftn` order; 0 at ``k = 0``.
    """
    b = np.asarray(direction, dtype=float)
    b = b / np.linalg.norm(b)
    k = np.meshgrid(
        *(np.fft.fftfreq(n, d=d) for n, d in zip(shape, voxel_mm, strict=True)),
        indexing="ij",
        sparse=True,
    )
    kb = k[0] * b[0] + k[1] * b[1] + k[2] * b[2]
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = 1.0 / 3.0 - kb**2 / k2
    kernel[0, 0, 0] = 0.0
    return kernel


def padded_shape(shape: Sequence[int], pad: int) -> tuple[int, ...]:
    """``shape`` plus ``pad`` voxels per side, rounded up to an even size (fast FFTs)."""
    return tuple(int(n + 2 * pad + (n + 2 * pad) % 2) for n in shape)


def forward_field(
    chi_ppm: NDArray,
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    pad: int = 16,
) -> NDArray[np.float64]:
    """Field perturbation (ppm) of a susceptibility map, by the dipole kernel in k-space.

    Parameters
    ----------
    chi_ppm : numpy.ndarray, shape (X, Y, Z)
        Susceptibility (ppm) relative to the surroundings (zero outside the sources).
    voxel_mm : sequence of 3 float
    direction : sequence of 3 float, optional
        B0 in voxel axes.
    pad : int, optional
        Zero-padding (voxels per side) against the FFT's periodic wrap-around.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Relative field ``delta`` in ppm (multiply by :func:`hz_per_ppm` for Hz).
    """
    chi = np.asarray(chi_ppm, dtype=np.float64)
    big = padded_shape(chi.shape, pad)
    kernel = dipole_kernel(big, voxel_mm, direction=direction)
    field = np.fft.ifftn(kernel * np.fft.fftn(chi, s=big, axes=(0, 1, 2))).real
    return field[: chi.shape[0], : chi.shape[1], : chi.shape[2]]
