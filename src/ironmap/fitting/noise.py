"""Estimating the noise standard deviation ``sigma`` of magnitude multi-echo data.

This module gathers the noise estimators under their historical import path; each lives in a
module of its own:

- :mod:`.background`: the image background of ``N`` root-sum-of-squares channels
  (:func:`noise_from_background`, :func:`diagnose_background`, :class:`NoiseEstimate`, the
  :data:`Background.ANALYSE` sentinel), with its spatial checks in :mod:`.background_checks`
  (image border, one-sided backgrounds that do not decay, noise varying in space);
- :mod:`.rayleigh`: the one-channel background estimator (:func:`sigma_from_background`);
- :mod:`.chi`: the truncated chi fit the background analysis rests on;
- :mod:`.residuals`: sigma from fit residuals (:func:`sigma_from_residuals`, >= 3 echoes);
- :mod:`.misfit`: the residual sigma checked against the background level
  (:func:`check_residual_sigma`, :func:`background_level`).

:class:`~ironmap.fitting.DecayModel` tries them in this order: background (Rayleigh, then chi),
then residuals.
"""

from __future__ import annotations

from .background import (
    Background,
    NoiseEstimate,
    check_background,
    diagnose_background,
    noise_from_background,
    resolve_background,
)
from .misfit import ResidualSigma, background_level, check_residual_sigma
from .rayleigh import rayleigh_sigma, sigma_from_background
from .residuals import MIN_RESIDUAL_ECHOES, sigma_from_residuals

__all__ = [
    "MIN_RESIDUAL_ECHOES",
    "Background",
    "NoiseEstimate",
    "ResidualSigma",
    "background_level",
    "check_background",
    "check_residual_sigma",
    "diagnose_background",
    "noise_from_background",
    "rayleigh_sigma",
    "resolve_background",
    "sigma_from_background",
    "sigma_from_residuals",
]
