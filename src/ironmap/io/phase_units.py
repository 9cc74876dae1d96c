"""Phase units: how stored phase values become radians.

Units (:func:`detect_phase_units`, from the values of all echoes together, after the NIfTI
``scl_slope``/``scl_inter``):

- ``rad``: the values lie within -pi..pi (or 0..2pi) and span at least
  :data:`RADIAN_SPAN` of a cycle; used as they are.
- ``siemens``: integers within -4096..4095 spanning at least :data:`RADIAN_SPAN` of it
  (Siemens DICOM, dcm2niix without scaling); radians = value x pi / 4096.
- ``siemens_unsigned``: integers within 0..4095 spanning at least :data:`RADIAN_SPAN` of it;
  radians = value x 2 pi / 4096 - pi. (Integers that span less, e.g. milliradians
  -3142..3142, are ``scaled``.)
- ``scaled``: any other range whose values fill it evenly as wrapped phase does (each of
  :data:`UNIFORM_BINS` equal bins of the range holds at least :data:`MIN_BIN_SHARE` of its even
  share): the range is one cycle, radians = value x 2 pi / (max - min), with an
  :class:`~ironmap.errors.IronmapWarning` naming the factor. The real phase of
  ``../shared/data/invivo_megre_crop`` (+/-0.00367) reads as a factor of 855.
- anything else (a field map, unwrapped phase, a magnitude image, a constant) is refused
  with a one-line :class:`~ironmap.errors.InputError` naming the file.

A sidecar that declares ``"Units": "rad"`` (BIDS) decides what the values alone cannot:
values within -pi..pi (or 0..2pi) that span little of the cycle unevenly (phase with the receive
offset removed, a small field of view) are then radians; values beyond one cycle contradict it
and are refused. It does not override the rules above (values that fill a narrow range evenly
are ``scaled`` whatever the sidecar says: the real crop ships so).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError, IronmapWarning

#: Share of a cycle that values within -pi..pi must span to be taken as radians (and of the
#: integer range, Siemens integers).
RADIAN_SPAN = 0.9
#: Tolerance (radians) on the -pi..pi (0..2pi) limits of radian phase.
RADIAN_TOL = 1e-3
#: Siemens DICOM phase: integers -4096..4095 (signed) or 0..4095 (unsigned).
SIEMENS_LEVELS = 4096
#: Bins of the observed range whose occupancy tells wrapped phase of another scale.
UNIFORM_BINS = 16
#: Least share of its even share that each bin of wrapped phase holds (the real crop's
#: emptiest bin holds 0.63 of it, a magnitude image's none).
MIN_BIN_SHARE = 0.25


@dataclass(frozen=True)
class PhaseUnits:
    """How stored phase values become radians: ``radians = value * scale + offset``.

    Attributes
    ----------
    units : {"rad", "siemens", "siemens_unsigned", "scaled", "complex"}
    scale : float
        Radians per stored unit.
    offset : float
        Radians added after scaling (-pi for ``siemens_unsigned``, else 0).
    """

    units: str
    scale: float
    offset: float = 0.0

    def to_radians(self, data: NDArray) -> NDArray[np.float32]:
        """Wrapped phase (radians, -pi..pi) of ``data`` in these units."""
        rad = np.asarray(data, dtype=np.float64) * self.scale + self.offset
        return np.angle(np.exp(1j * rad)).astype(np.float32)


#: ``Units`` values of a phase sidecar that declare radians.
RADIAN_UNITS = ("rad", "radian", "radians")


def detect_phase_units(
    data: ArrayLike, *, source: str | Path, declared: str | None = None
) -> PhaseUnits:
    """The units of stored phase values (see the module docstring for the rules).

    Parameters
    ----------
    data : array_like
        Phase values of all echoes (any shape; non-finite values are ignored).
    source : str or Path
        Named in the warning and in errors.
    declared : str, optional
        The sidecar's ``Units``; radians (:data:`RADIAN_UNITS`) are trusted within -pi..2pi.

    Warns
    -----
    IronmapWarning
        ``scaled`` units, naming the factor to radians.

    Raises
    ------
    InputError
        Values that are not wrapped phase of any scale, with how to fix it.
    """
    values = np.asarray(data, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(f"{source}: no finite phase values; check the conversion")
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    within = lo >= -np.pi - RADIAN_TOL and hi <= 2 * np.pi + RADIAN_TOL
    if within and RADIAN_SPAN * 2 * np.pi <= span <= 2 * np.pi + RADIAN_TOL:
        return PhaseUnits("rad", 1.0)
    integer = bool(np.all(values == np.round(values)))
    if integer and lo >= -SIEMENS_LEVELS and hi <= SIEMENS_LEVELS - 1:
        if lo < 0 and span >= RADIAN_SPAN * (2 * SIEMENS_LEVELS - 1):
            return PhaseUnits("siemens", np.pi / SIEMENS_LEVELS)
        if lo >= 0 and span >= RADIAN_SPAN * (SIEMENS_LEVELS - 1):
            return PhaseUnits("siemens_unsigned", 2 * np.pi / SIEMENS_LEVELS, -np.pi)
    counts = np.histogram(values, bins=UNIFORM_BINS, range=(lo, hi))[0] if span > 0 else [0]
    if span > 0 and np.min(counts) >= MIN_BIN_SHARE * values.size / UNIFORM_BINS:
        scale = 2 * np.pi / span
        warnings.warn(
            f"{source}: phase values span {lo:.4g}..{hi:.4g}, not radians (-pi..pi) nor Siemens "
            f"integers; they fill the range as wrapped phase does, so it is read as one cycle: "
            f"radians = value x {scale:.4g} (PhaseScale in the sidecars); convert the phase to "
            "radians to silence this",
            IronmapWarning,
            stacklevel=3,
        )
        return PhaseUnits("scaled", scale)
    if declared is not None and str(declared).lower() in RADIAN_UNITS:
        if within and span <= 2 * np.pi + RADIAN_TOL:
            return PhaseUnits("rad", 1.0)
        raise InputError(
            f"{source}: the sidecar declares Units {declared!r} but the values span "
            f"{lo:.4g}..{hi:.4g}, beyond one cycle of radians; fix the conversion or the sidecar"
        )
    raise InputError(
        f"{source}: phase values {lo:.4g}..{hi:.4g} are neither radians (-pi..pi), Siemens "
        "integers (-4096..4095, 0..4095) nor wrapped phase of another scale (they do not fill "
        "their range evenly: unwrapped phase, a field map or not a phase image?); give the "
        "wrapped phase, e.g. in radians"
    )
