"""Real FFTs on a zero-padded grid, one thread (the pipeline parallelises over participants)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from .dipole import dipole_kernel


def fast_shape(shape: Sequence[int], pad: int) -> tuple[int, ...]:
    """``shape`` plus ``pad`` voxels per side, each rounded up to a fast (5-smooth) even size."""
    out = []
    for n in shape:
        m = sfft.next_fast_len(int(n) + 2 * int(pad), real=True)
        while m % 2:
            m = sfft.next_fast_len(m + 1, real=True)
        out.append(m)
    return tuple(out)


def rfft(a: NDArray, big: Sequence[int]) -> NDArray[np.complex128]:
    return sfft.rfftn(np.asarray(a, dtype=np.float64), s=big, axes=(0, 1, 2), workers=1)


def irfft(spectrum: NDArray, big: Sequence[int], shape: Sequence[int]) -> NDArray[np.float64]:
    full = sfft.irfftn(spectrum, s=big, axes=(0, 1, 2), workers=1)
    return full[: shape[0], : shape[1], : shape[2]]


def half(full_kernel: NDArray) -> NDArray:
    """The ``rfftn`` half of a kernel given on the full FFT grid (a kernel even in k)."""
    return full_kernel[..., : full_kernel.shape[-1] // 2 + 1]


def dipole_half(
    big: Sequence[int], voxel_mm: Sequence[float], direction: Sequence[float]
) -> NDArray[np.float64]:
    """:func:`~.dipole.dipole_kernel` on the ``rfftn`` half grid of ``big``."""
    return np.ascontiguousarray(half(dipole_kernel(big, voxel_mm, direction=direction)))


def gradient_power(big: Sequence[int], voxel_mm: Sequence[float]) -> NDArray[np.float64]:
    """``|G(k)|^2`` of the forward-difference gradient (per mm) on the ``rfftn`` half grid."""
    total = 0.0
    for axis, (n, d) in enumerate(zip(big, voxel_mm, strict=True)):
        m = n // 2 + 1 if axis == 2 else n
        k = np.arange(m) if axis == 2 else np.fft.fftfreq(n) * n
        g = (2.0 * np.sin(np.pi * k / n) / d) ** 2
        total = total + g.reshape([m if a == axis else 1 for a in range(3)])
    return np.asarray(total)
