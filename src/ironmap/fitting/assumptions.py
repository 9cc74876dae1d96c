"""Telling the user when the noise model was assumed, not estimated from a background.

Without a usable image background (a volume cropped to the head, masked, or with air on one
side that still looks like tissue) the number of receive channels ``N`` falls back to 1 and
sigma to the fit residuals. For a root-sum-of-squares image of ``N > 1`` channels that model
puts the noise floor too low and R2* comes out low where the decay reaches it (4-54 % for 12
channels at SNR 30, R2* 15-150 1/s); the residual sigma is an upper bound where the decay is not
mono-exponential. :func:`assumed_noise` says what was assumed and how to set it, once per fit.
"""

from __future__ import annotations

import warnings

from ..errors import IronmapWarning
from .results import DecayFit

__all__ = ["assumed_noise", "warn_assumed_noise"]


def assumed_noise(fit: DecayFit, *, sigma_option: str | None = "--sigma") -> str | None:
    """One line on what ``fit`` assumed because N or sigma was not estimated from a background.

    Parameters
    ----------
    fit : DecayFit
        A fit whose ``coils_source`` the caller set (:func:`~.models.effective_coils`).
    sigma_option : str or None, optional
        The option that sets sigma where the fit was run (None: there is none, e.g. the
        participant stage).

    Returns
    -------
    str or None
        None when N was given or estimated and sigma given, estimated from the background or
        mapped (``--sigma-map local``), and when sigma is unknown (the fit warned already).
    """
    coils = fit.coils_source == "default"
    residual = fit.sigma_source == "residuals" and fit.sigma is not None
    if not (coils or residual):
        return None
    assumed = []
    if coils:
        assumed.append("N = 1 receive channel (Rician noise)")
    if residual:
        assumed.append(f"noise sigma {fit.sigma:.4g} per channel from the fit residuals")
    consequences = []
    if coils:
        consequences.append(
            "if the magnitudes are a root-sum-of-squares of N channels, R2* is biased low where "
            "the decay reaches the noise floor (about 10 % for 12 channels): pass --coils N"
        )
    if residual:
        consequences.append(
            "the residual sigma is too large where the decay is not mono-exponential"
            + (f": pass {sigma_option} SIGMA if it is known" if sigma_option else "")
        )
    return (
        "noise model not estimated from an image background (none found): assumed "
        + " and ".join(assumed)
        + "; "
        + "; ".join(consequences)
    )


def warn_assumed_noise(
    fit: DecayFit, *, name: str | None = None, sigma_option: str | None = "--sigma"
) -> None:
    """Issue :func:`assumed_noise` of ``fit`` as an :class:`~ironmap.errors.IronmapWarning`
    (prefixed ``"{name}: "``), if there is anything to say."""
    message = assumed_noise(fit, sigma_option=sigma_option)
    if message is not None:
        prefix = f"{name}: " if name else ""
        warnings.warn(prefix + message, IronmapWarning, stacklevel=2)
