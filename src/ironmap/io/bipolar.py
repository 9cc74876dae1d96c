"""The odd/even phase offset of a bipolar readout, estimated from the echoes' second
differences (removed by :func:`ironmap.io.phase.load_phase`).

Per-echo offsets: the field is estimated from echo differences (:mod:`ironmap.fitting.gradients`)
so a phase offset common to all echoes (the receive-coil phase ``phi_0(r)``) cancels. A bipolar
readout (``readout="bipolar"``, ``--readout bipolar``, or ``"ReadoutPolarity": "bipolar"`` in the
sidecar for ``auto``) adds ``(-1)^n beta(r)`` to echo ``n``; :func:`bipolar_offset` estimates
``beta`` as a constant plus a linear gradient in space from the second differences of three
consecutive, equally spaced echoes (the odd/even model of Li et al., MRM 2015,
doi:10.1002/mrm.25197; Feng et al. 2012, doi:10.1002/mrm.24123) and removes it. The constant is
known modulo pi/2 (the second difference measures ``4 beta``); curvature of ``beta`` beyond the
linear term is not modelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError


def bipolar_offset(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike, *, source: str | Path = ""
) -> NDArray[np.float64]:
    """The odd/even phase offset ``beta(r)`` (radians) of a bipolar readout.

    With ``phi_n = phi_0 + 2 pi f TE_n + (-1)^n beta`` and equally spaced echoes, the second
    difference ``phi_n+1 - 2 phi_n + phi_n-1 = -4 (-1)^n beta`` is free of the field and of
    ``phi_0``. Its complex form ``S_n+1 S_n-1 conj(S_n)^2`` (magnitude-weighted) is summed over
    the echo triples, its mean phase step along each axis gives the linear part of ``4 beta``
    and the demodulated sum its constant (modulo 2 pi, so ``beta`` modulo pi/2).

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians).
    echo_times_s : array_like, shape (n_echoes,)
        At least 3, equally spaced.
    source : str or Path
        Named in errors.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        ``beta`` in radians: constant plus linear in the voxel indices.
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    if te.size < 3 or not np.allclose(np.diff(te), np.diff(te)[0], rtol=1e-3):
        raise InputError(
            f"{source}: the bipolar correction needs >= 3 equally spaced echoes, got TE "
            f"{te.tolist()} s; use --readout unipolar"
        )
    z = np.nan_to_num(np.asarray(magnitude, np.float64)) * np.exp(
        1j * np.nan_to_num(np.asarray(phase, np.float64))
    )
    total = np.zeros(z.shape[:3], np.complex128)
    for n in range(1, te.size - 1):
        triple = z[..., n + 1] * z[..., n - 1] * np.conj(z[..., n]) ** 2
        total += triple if n % 2 else np.conj(triple)
    grids = np.indices(total.shape, dtype=np.float64)
    slopes = []
    for axis in range(3):
        ahead = np.take(total, np.arange(1, total.shape[axis]), axis=axis)
        behind = np.take(total, np.arange(total.shape[axis] - 1), axis=axis)
        slopes.append(float(np.angle(np.sum(ahead * np.conj(behind)))))
    linear = sum(s * g for s, g in zip(slopes, grids, strict=True))
    constant = float(np.angle(np.sum(total * np.exp(-1j * linear))))
    return (constant + linear) / 4.0
