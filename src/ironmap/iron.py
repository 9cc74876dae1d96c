"""Iron concentration from R2*: published linear post-mortem calibrations.

A calibration ``R2* = slope x [Fe] + intercept`` (``[Fe]`` in mg iron per kg wet tissue) holds
only at the field strength it was measured at; ironmap refuses other fields.

- ``langkammer2010``: Langkammer C, Krebs N, Goessler W, et al. Quantitative MR imaging of brain
  iron: a postmortem validation study. Radiology 2010;257:455-462. Whole-brain specimens, 3 T,
  iron by inductively coupled plasma mass spectrometry: R2* = 0.27 [Fe] + 14.29 (1/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = ["CALIBRATIONS", "IronCalibration", "iron_from_r2star"]


@dataclass(frozen=True)
class IronCalibration:
    """``R2* = slope * iron + intercept`` at ``field_t`` tesla; iron in mg/kg wet tissue."""

    name: str
    slope: float  # (1/s) per (mg/kg)
    intercept: float  # 1/s
    field_t: float
    reference: str

    def iron(self, r2star: ArrayLike) -> NDArray[np.float64]:
        """Iron (mg/kg wet tissue) from R2* (1/s)."""
        return (np.asarray(r2star, dtype=np.float64) - self.intercept) / self.slope


CALIBRATIONS: dict[str, IronCalibration] = {
    "langkammer2010": IronCalibration(
        name="langkammer2010",
        slope=0.27,
        intercept=14.29,
        field_t=3.0,
        reference="Langkammer et al., Radiology 2010;257:455-462 (3 T, post mortem)",
    )
}


def iron_from_r2star(
    r2star: ArrayLike, *, calibration: str, field_t: float | None, source: str = ""
) -> NDArray[np.float64]:
    """Convert R2* (1/s) to iron (mg/kg wet tissue) with a calibration valid at ``field_t``.

    Raises
    ------
    InputError
        Unknown calibration, unknown field strength, or a field the calibration does not cover.
    """
    if calibration not in CALIBRATIONS:
        raise InputError(
            f"unknown iron calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}"
        )
    cal = CALIBRATIONS[calibration]
    if field_t is None:
        raise InputError(
            f"{source}: no MagneticFieldStrength in the sidecars; the {cal.name} iron "
            f"calibration holds at {cal.field_t:g} T only"
        )
    if abs(float(field_t) - cal.field_t) > 0.1:
        raise InputError(
            f"{source}: acquired at {float(field_t):g} T but the {cal.name} iron calibration "
            f"holds at {cal.field_t:g} T only; run without --iron-calibration"
        )
    return cal.iron(r2star)
