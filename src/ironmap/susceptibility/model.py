"""QSM as a model and its fit: multi-echo magnitude and phase -> susceptibility (ppm).

:class:`QSMModel` holds the acquisition (echo times, voxel size, field strength, B0 direction)
and the methods of each step; :meth:`QSMModel.fit` runs the steps in the order SEPIA, MEDI and
QSMxT use -- brain mask, total field from the echoes, background field removal, dipole
inversion, referencing -- and returns a :class:`QSMFit`.

Step methods (names in :data:`BACKGROUND_METHODS`, :data:`INVERSION_METHODS`,
:data:`REFERENCES`):

- total field: weighted echo differences of the complex signal
  (:func:`ironmap.fitting.gradients.field_map`);
- background: ``sharp`` (:func:`.background.sharp`);
- inversion: ``tkd`` (:func:`.inversion.tkd`);
- reference: ``brain`` (mean susceptibility over the final mask is 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import InputError
from ..fitting.gradients import field_map
from .background import sharp
from .dipole import hz_per_ppm
from .inversion import tkd

__all__ = [
    "BACKGROUND_METHODS",
    "INVERSION_METHODS",
    "REFERENCES",
    "QSMFit",
    "QSMModel",
    "brain_mask",
]

BACKGROUND_METHODS = ("sharp",)
INVERSION_METHODS = ("tkd",)
REFERENCES = ("brain",)
#: Brain mask: first-echo magnitude above this fraction of its 99th percentile.
MASK_FRACTION = 0.15


def brain_mask(magnitude: NDArray) -> NDArray[np.bool_]:
    """Head/brain mask from the first echo: a threshold, the largest component, holes filled.

    Parameters
    ----------
    magnitude : numpy.ndarray, shape (X, Y, Z, n_echoes) or (X, Y, Z)

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
    """
    first = np.asarray(magnitude)
    first = first[..., 0] if first.ndim == 4 else first
    first = np.nan_to_num(first)
    mask = first > MASK_FRACTION * np.percentile(first[first > 0], 99)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


@dataclass(frozen=True)
class QSMFit:
    """A susceptibility map and what it was computed from.

    Attributes
    ----------
    chi_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        Susceptibility (ppm) relative to the reference; NaN outside ``mask``.
    local_field_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        Background-removed field (ppm); NaN outside ``mask``.
    field_hz : numpy.ndarray of float32, shape (X, Y, Z)
        Total field (Hz) from the echoes; NaN where it could not be estimated.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Where ``chi_ppm`` is defined (the brain mask after background removal).
    parameters : dict
        Methods and parameters of every step, for provenance and the sidecar.
    """

    chi_ppm: NDArray[np.float32]
    local_field_ppm: NDArray[np.float32]
    field_hz: NDArray[np.float32]
    mask: NDArray[np.bool_]
    parameters: dict = field(default_factory=dict)


class QSMModel:
    """Quantitative susceptibility mapping of one multi-echo GRE acquisition.

    Parameters
    ----------
    echo_times_s : array_like, shape (n_echoes,)
        Echo times (s).
    voxel_mm : sequence of 3 float
        Voxel size (mm).
    field_strength_t : float
        Main field (T).
    direction : sequence of 3 float, optional
        B0 in voxel axes (:func:`~.dipole.b0_direction` of the image affine).
    background, inversion, reference : str, optional
        Step methods (see the module docstring).
    """

    def __init__(
        self,
        echo_times_s: ArrayLike,
        voxel_mm: Sequence[float],
        *,
        field_strength_t: float,
        direction: Sequence[float] = (0.0, 0.0, 1.0),
        background: str = "sharp",
        inversion: str = "tkd",
        reference: str = "brain",
    ) -> None:
        for name, value, allowed in (
            ("background", background, BACKGROUND_METHODS),
            ("inversion", inversion, INVERSION_METHODS),
            ("reference", reference, REFERENCES),
        ):
            if value not in allowed:
                raise InputError(f"QSM {name} must be one of {', '.join(allowed)}, got {value!r}")
        if not field_strength_t or field_strength_t <= 0:
            raise InputError(f"QSM needs the field strength in tesla, got {field_strength_t!r}")
        self.echo_times_s = np.asarray(echo_times_s, dtype=float)
        self.voxel_mm = tuple(float(v) for v in voxel_mm)
        self.field_strength_t = float(field_strength_t)
        self.direction = tuple(float(v) for v in direction)
        self.background = background
        self.inversion = inversion
        self.reference = reference

    def fit(
        self, magnitude: NDArray, phase: NDArray, *, mask: NDArray[np.bool_] | None = None
    ) -> QSMFit:
        """Susceptibility from magnitudes and phases (radians) of the echoes.

        Parameters
        ----------
        magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
            Phase in radians, positive = faster precession (paramagnetic).
        mask : numpy.ndarray of bool, shape (X, Y, Z), optional
            Brain mask; default :func:`brain_mask` of the first echo.

        Returns
        -------
        QSMFit
        """
        if mask is None:
            mask = brain_mask(magnitude)
        total_hz = field_map(magnitude, phase, self.echo_times_s)
        valid = mask & np.isfinite(total_hz)
        total_ppm = np.where(valid, total_hz, 0.0) / hz_per_ppm(self.field_strength_t)
        local, eroded = sharp(total_ppm, valid, self.voxel_mm)
        chi = tkd(local, eroded, self.voxel_mm, direction=self.direction)
        chi = chi - chi[eroded].mean()
        nan = np.float32(np.nan)
        return QSMFit(
            chi_ppm=np.where(eroded, chi, nan).astype(np.float32),
            local_field_ppm=np.where(eroded, local, nan).astype(np.float32),
            field_hz=np.where(np.isfinite(total_hz), total_hz, nan).astype(np.float32),
            mask=eroded,
            parameters={
                "field": "echo differences",
                "background": self.background,
                "inversion": self.inversion,
                "reference": self.reference,
                "field_strength_t": self.field_strength_t,
                "b0_direction": list(self.direction),
            },
        )
