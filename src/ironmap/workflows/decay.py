"""The R2* fit of one participant/session.

The field-gradient dephasing factor from the phase echoes, the noise (background analysis and
the local noise map of ``--sigma-map local``), the fit itself, and the count of the voxels that
could not be fitted, with the warnings a user needs. Called by
:func:`ironmap.workflows.session.process_session`.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import IronmapWarning
from ..fitting import DecayFit, DecayModel, FitStatus, effective_coils
from ..fitting.assumptions import warn_assumed_noise
from ..fitting.gradients import gradient_correction
from ..fitting.noise import NoiseEstimate, noise_from_background
from ..fitting.sigma_map import SigmaMap, local_sigma_map
from ..io import MultiEchoImage, ParticipantOutputs
from ..io.phase import PhaseImage
from ..segmentation.strategies import Segmentation

if TYPE_CHECKING:
    from .participant import ParticipantConfig

log = logging.getLogger("ironmap")

#: Above this share of the fit mask's voxels failing, a participant gets a warning.
FAILED_VOXELS_WARN = 0.01


def _decay_factor(
    image: MultiEchoImage, phase: PhaseImage | None, name: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Field-gradient dephasing factor from the phase echoes and the field map (Hz) it was
    computed from, for the lesions' local field (both None without phase echoes)."""
    if phase is None:
        return None, None
    factor, field_hz, unreliable = gradient_correction(image.data, phase.data, image.echo_times_s)
    log.info(
        "%s: field-gradient correction; %d voxels of the image beyond it",
        name,
        int(unreliable.sum()),
    )
    return factor, field_hz


def _gradient_failures(fit: DecayFit, image: MultiEchoImage, name: str) -> int:
    """Voxels of the fit mask that the field-gradient correction flagged as beyond it (its
    factor is NaN there, so they fail as ``BAD_SIGNAL`` though their echoes are valid); a
    warning when there are any. The count goes to the R2* map's sidecar."""
    factor = fit.decay_factor  # the factor of _decay_factor, as the fit was given it
    if factor is None:
        return 0
    data = image.data
    valid = np.all(np.isfinite(data) & (data > 0), axis=-1)
    fitted = fit.status != FitStatus.NOT_FITTED
    failed = int(np.sum(fitted & valid & ~np.all(np.isfinite(factor), axis=-1)))
    if failed:
        warnings.warn(
            f"{name}: {failed:,} voxels are beyond the field-gradient correction (dephasing "
            "too strong or the field too steep to sample, near air) and are NaN in the maps "
            "(B0GradientVoxelsFailed in the R2* map's sidecar)",
            IronmapWarning,
            stacklevel=2,
        )
    return failed


def _fit(image: MultiEchoImage, config: ParticipantConfig, *, mask, factor, name: str) -> DecayFit:
    """Fit R2*; the fitting's own warnings go to the log (its summary is in the maps)."""
    # The background is analysed once, for the number of channels and for sigma.
    background = noise_from_background(image.data)
    coils, source = effective_coils(image.data, config.coils, background=background)
    sigma_map = _sigma_map(image, config, mask=mask, background=background, name=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IronmapWarning)
        fit = DecayModel(image.echo_times_s, method=config.fit_method, coils=coils).fit(
            image.data,
            mask=mask,
            decay_factor=factor,
            background=background,
            sigma_map=None if sigma_map is None else sigma_map.sigma,
        )
        fit.coils_source = source
    for w in caught:
        log.info("%s: %s", name, w.message)
    warn_assumed_noise(fit, name=name, sigma_option=None)  # N or sigma not from a background
    return fit


def _sigma_map(
    image: MultiEchoImage,
    config: ParticipantConfig,
    *,
    mask: np.ndarray,
    background: NoiseEstimate | None,
    name: str,
) -> SigmaMap | None:
    """The local noise map of ``--sigma-map local`` (None: one sigma), with a warning when the
    background shows noise that varies in space and no map was asked for."""
    if config.sigma_map == "off":
        if background is not None and not background.uniform:
            warnings.warn(
                f"{name}: noise varies in space, use --sigma-map local (background sigma "
                f"{background.spread:.2f}x between image blocks; one sigma under-corrects the "
                "noise floor where the noise is high)",
                IronmapWarning,
                stacklevel=2,
            )
        return None
    noise = local_sigma_map(image.data, image.echo_times_s, mask, source=image.sources[0])
    if noise is None:
        warnings.warn(
            f"{name}: too few voxels decay slowly enough for a local noise map; "
            "one sigma is used (--sigma-map off)",
            IronmapWarning,
            stacklevel=2,
        )
        return None
    log.info(
        "%s: local noise map from %d voxels, sigma %.4g, 95th/5th percentile %.2f",
        name,
        noise.samples,
        noise.global_sigma,
        noise.spread,
    )
    return noise


def _failed_voxels(
    fit: DecayFit, segmentation: Segmentation | None, out: ParticipantOutputs
) -> dict:
    """Fitted voxels inside the intracranial volume, those that failed and why; a warning
    above 1 % failed.

    The fit mask of a segmentation is its intracranial volume dilated by one voxel; that margin
    is mostly skull and background, where "no signal" is expected, so it is not counted.
    """
    tissue = fit.status != FitStatus.NOT_FITTED
    if segmentation is not None and "icv" in segmentation.fractions:
        tissue &= segmentation.fractions["icv"] >= 0.5
    counts = np.bincount(fit.status[tissue], minlength=len(FitStatus))
    reasons = {
        status.name.lower().replace("_", " "): int(counts[status])
        for status in FitStatus
        if status not in (FitStatus.OK, FitStatus.NOT_FITTED) and counts[status]
    }
    voxels = {
        "fit_voxels": int(tissue.sum()),
        "failed_voxels": sum(reasons.values()),
        "failed_reasons": reasons,
    }
    n, failed = voxels["fit_voxels"], voxels["failed_voxels"]
    if n and failed / n > FAILED_VOXELS_WARN:
        why = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items())
        warnings.warn(
            f"{out.name}: {failed:,} of {n:,} voxels ({100 * failed / n:.1f} %) could not be "
            f"fitted ({why}); see {out.maps['desc-failed_mask'].name}",
            IronmapWarning,
            stacklevel=2,
        )
    return voxels
