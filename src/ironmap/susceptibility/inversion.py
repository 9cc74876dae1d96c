"""Dipole inversion: susceptibility (ppm) from the local field (ppm).

``tkd``: truncated k-space division (Shmueli et al., MRM 2009; Wharton et al., MRM 2010), the
closed-form baseline: ``chi = F^-1[ F(delta) / D ]`` with ``1/D`` replaced by
``sign(D) / threshold`` where ``|D| < threshold`` (the cone of ill-conditioned frequencies).
The truncation underestimates susceptibility by a known factor; it is not corrected here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .dipole import dipole_kernel, padded_shape

__all__ = ["TKD_THRESHOLD", "tkd"]

#: Truncation of ``|D|`` for :func:`tkd` (0.19 is a common choice: Wharton et al. 2010).
TKD_THRESHOLD = 0.19


def tkd(
    local_field_ppm: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    threshold: float = TKD_THRESHOLD,
    pad: int = 16,
) -> NDArray[np.float64]:
    """Truncated k-space division.

    Parameters
    ----------
    local_field_ppm : numpy.ndarray, shape (X, Y, Z)
        Local (background-removed) field in ppm; values outside ``mask`` are ignored.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Where the local field is defined.
    voxel_mm : sequence of 3 float
    direction : sequence of 3 float, optional
        B0 in voxel axes (:func:`~.dipole.b0_direction`).
    threshold : float, optional
        ``|D|`` below which the kernel is truncated, in (0, 1/3).
    pad : int, optional
        Zero padding (voxels per side).

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Susceptibility in ppm inside ``mask``, 0 outside (mean not referenced).
    """
    if not 0 < threshold < 1 / 3:
        raise ValueError(f"TKD threshold must be in (0, 1/3), got {threshold}")
    field = np.where(mask, np.nan_to_num(np.asarray(local_field_ppm, dtype=np.float64)), 0.0)
    big = padded_shape(field.shape, pad)
    kernel = dipole_kernel(big, voxel_mm, direction=direction)
    inverse = np.where(
        np.abs(kernel) >= threshold,
        1.0 / np.where(kernel == 0, 1.0, kernel),
        np.sign(kernel) / threshold,
    )
    chi = np.fft.ifftn(inverse * np.fft.fftn(field, s=big, axes=(0, 1, 2))).real
    return np.where(mask, chi[: field.shape[0], : field.shape[1], : field.shape[2]], 0.0)
