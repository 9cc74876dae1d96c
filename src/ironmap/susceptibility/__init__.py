"""Quantitative susceptibility mapping (QSM): iron as magnetic susceptibility, in ppm.

The public entry point is :class:`QSMModel` (``model.fit(magnitude, phase) -> QSMFit``); the
steps (dipole kernel, background removal, inversion) live in their own modules and can be
called directly on arrays.
"""

from .dipole import b0_direction, dipole_kernel, forward_field, hz_per_ppm
from .model import (
    BACKGROUND_METHODS,
    DEFAULT_BACKGROUND,
    DEFAULT_INVERSION,
    DEFAULT_REFERENCE,
    INVERSION_METHODS,
    REFERENCES,
    QSMFit,
    QSMModel,
)

__all__ = [
    "BACKGROUND_METHODS",
    "DEFAULT_BACKGROUND",
    "DEFAULT_INVERSION",
    "DEFAULT_REFERENCE",
    "INVERSION_METHODS",
    "REFERENCES",
    "QSMFit",
    "QSMModel",
    "b0_direction",
    "dipole_kernel",
    "forward_field",
    "hz_per_ppm",
]
