"""R2* mapping: mono-exponential decay models of multi-echo gradient-echo magnitudes.

The public entry point is :class:`DecayModel` (``model.fit(data, mask) -> DecayFit``); the
vectorised solvers, Rician noise helpers, Cramer-Rao bounds and noise estimators it uses live in
their own modules and can be called directly on ``(n_voxels, n_echoes)`` arrays. The fit methods
are the records of :data:`SOLVERS` (:mod:`.registry`); :data:`METHODS` lists the public ones and
:func:`get_solver` validates a method name.
"""

from .background import Background
from .crlb import r2star_crlb_sd
from .models import DecayModel, effective_coils
from .rayleigh import sigma_from_background
from .registry import METHODS, SOLVERS, Solver, get_solver, public_methods
from .residuals import sigma_from_residuals
from .results import DecayFit, FitStatus
from .rician import bessel_ratio, rician_information_factor

__all__ = [
    "METHODS",
    "SOLVERS",
    "Background",
    "DecayFit",
    "DecayModel",
    "FitStatus",
    "Solver",
    "bessel_ratio",
    "effective_coils",
    "get_solver",
    "public_methods",
    "r2star_crlb_sd",
    "rician_information_factor",
    "sigma_from_background",
    "sigma_from_residuals",
]
