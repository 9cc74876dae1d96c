"""R2* mapping: mono-exponential decay models of multi-echo gradient-echo magnitudes.

The public entry point is :class:`DecayModel` (``model.fit(data, mask) -> DecayFit``); the
vectorised solvers, Rician noise helpers, Cramer-Rao bounds and noise estimators it uses live in
their own modules and can be called directly on ``(n_voxels, n_echoes)`` arrays.
"""

from .crlb import r2star_crlb_sd
from .models import METHODS, DecayFit, DecayModel, FitStatus
from .noise import sigma_from_background, sigma_from_residuals
from .rician import bessel_ratio, rician_information_factor

__all__ = [
    "METHODS",
    "DecayFit",
    "DecayModel",
    "FitStatus",
    "bessel_ratio",
    "r2star_crlb_sd",
    "rician_information_factor",
    "sigma_from_background",
    "sigma_from_residuals",
]
