"""``ironmap fit``: one multi-echo acquisition in, R2*/T2*/S0/SD maps out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..defaults import B0_CORRECTIONS, SIGMA_MAPS, check_coils
from ..errors import InputError
from ..fitting import DecayModel, effective_coils, get_solver
from ..fitting.gradients import gradient_correction
from ..fitting.noise import Background, noise_from_background
from ..fitting.sigma_map import local_sigma_map
from ..io import (
    MultiEchoImage,
    check_writable,
    decay_map_paths,
    load_bids_echoes,
    load_multiecho,
    load_volume,
    sidecar_path,
    write_decay_maps,
)

__all__ = ["FitConfig", "run_fit"]

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class FitConfig:
    """Everything ``ironmap fit`` needs.

    Give either ``magnitude`` with ``echo_times`` (in ``te_unit``) or ``bids_echoes``.
    ``sigma`` is the noise SD per channel in magnitude units (estimated when None).
    ``fit_method`` is one of :data:`ironmap.fitting.METHODS`, ``b0_correction`` one of
    :data:`ironmap.defaults.B0_CORRECTIONS`, ``sigma_map`` one of
    :data:`ironmap.defaults.SIGMA_MAPS`. Validated on construction (one-line InputError).
    """

    output_prefix: Path
    magnitude: Path | None = None
    echo_times: tuple[float, ...] | None = None
    te_unit: str = "s"
    bids_echoes: tuple[Path, ...] | None = None
    fit_method: str = "auto"
    mask: Path | None = None
    sigma: float | None = None
    force: bool = False
    phase: Path | None = None
    b0_correction: str = "auto"
    coils: int | None = None
    sigma_map: str = "off"

    def __post_init__(self) -> None:
        get_solver(self.fit_method)
        check_coils(self.coils)
        if self.sigma_map not in SIGMA_MAPS:
            raise InputError(
                f"--sigma-map must be one of {', '.join(SIGMA_MAPS)}, got {self.sigma_map!r}"
            )
        if self.sigma_map != "off" and self.sigma is not None:
            raise InputError("give --sigma or --sigma-map local, not both")
        if self.b0_correction not in B0_CORRECTIONS:
            raise InputError(
                f"--b0-correction must be one of {', '.join(B0_CORRECTIONS)}, "
                f"got {self.b0_correction!r}"
            )
        if self.te_unit not in ("s", "ms"):
            raise InputError(f"--te-unit must be s or ms, got {self.te_unit!r}")


def _phase(config: FitConfig, image: MultiEchoImage) -> np.ndarray | None:
    """Phase (radians, same shape as the magnitudes) for the field-gradient correction, if any.

    ``auto``: ``--phase PHASE`` (4D, radians) when given; with ``--bids-echoes``, the
    ``part-phase`` siblings of the ``part-mag`` files when all exist.
    """
    if config.b0_correction == "off":
        return None
    if config.phase is not None:
        source = config.phase
        phase = load_multiecho(config.phase, image.echo_times_s, part="phase").data
        if np.nanmax(np.abs(phase)) > np.pi + 1e-3:
            raise InputError(f"{source}: phase must be in radians (-pi..pi); rescale it")
    elif config.bids_echoes:
        siblings = [
            s.with_name(s.name.replace("_part-mag_", "_part-phase_")) for s in image.sources
        ]
        if not all("_part-mag_" in s.name for s in image.sources) or not all(
            p.exists() for p in siblings
        ):
            return None
        source = siblings[0]
        phase = load_bids_echoes(siblings, part="phase").data
    else:
        return None
    if phase.shape != image.data.shape:
        raise InputError(
            f"{source}: phase shape {phase.shape} differs from the magnitudes {image.data.shape}"
        )
    return phase


def _load(config: FitConfig) -> MultiEchoImage:
    if config.bids_echoes:
        if config.magnitude is not None or config.echo_times:
            raise InputError("give either MAG with --te, or --bids-echoes, not both")
        return load_bids_echoes(config.bids_echoes)
    if config.magnitude is None:
        raise InputError("no input: give MAG with --te T1 T2 ..., or --bids-echoes FILES")
    if not config.echo_times:
        raise InputError(
            f"{config.magnitude}: no echo times; pass --te T1 T2 ... (seconds, or --te-unit ms)"
        )
    return load_multiecho(config.magnitude, config.echo_times, te_unit=config.te_unit)


def _load_mask(path: Path, image: MultiEchoImage) -> np.ndarray:
    data, affine = load_volume(path)
    shape = image.data.shape[:3]
    if data.shape != shape or not np.allclose(affine, image.affine, atol=1e-4):
        raise InputError(
            f"{path}: mask grid (shape {data.shape}) does not match the magnitude grid "
            f"(shape {shape}) or its affine; resample the mask to the GRE grid"
        )
    return np.nan_to_num(data) != 0


def run_fit(config: FitConfig) -> list[Path]:
    """Fit R2* to one acquisition and write the maps; returns the NIfTI files written."""
    targets = decay_map_paths(config.output_prefix).values()
    check_writable([p for t in targets for p in (t, sidecar_path(t))], force=config.force)
    image = _load(config)
    log.info(
        "loaded %s: %s voxels x %d echoes, TE %s ms",
        image.sources[0].name,
        "x".join(map(str, image.data.shape[:3])),
        image.data.shape[3],
        ", ".join(f"{t * 1e3:.3g}" for t in image.echo_times_s),
    )
    mask = _load_mask(config.mask, image) if config.mask is not None else None
    # The background is analysed once, for the number of channels and for sigma.
    background = (
        noise_from_background(image.data)
        if config.coils is None and config.sigma is None
        else Background.ANALYSE
    )
    coils, coils_source = effective_coils(image.data, config.coils, background=background)
    model = DecayModel(
        image.echo_times_s, method=config.fit_method, sigma=config.sigma, coils=coils
    )
    phase = _phase(config, image)
    factor, gradient_failed = None, {}
    if phase is not None:
        factor, _, unreliable = gradient_correction(image.data, phase, image.echo_times_s)
        failed = int(np.sum(unreliable if mask is None else unreliable & mask))
        gradient_failed = {"B0GradientVoxelsFailed": failed}
        log.info("field-gradient correction from phase; %d voxels beyond it", failed)
        if failed:
            log.warning(
                "%d voxels are beyond the field-gradient correction (dephasing too strong or "
                "the field too steep to sample, near air) and are NaN in the maps",
                failed,
            )
    sigma_map = None
    if config.sigma_map == "local":
        noise = local_sigma_map(image.data, image.echo_times_s, mask, source=image.sources[0])
        if noise is None:
            log.warning("too few voxels for a local noise map; one sigma is used")
        else:
            sigma_map = noise.sigma
    fit = model.fit(
        image.data, mask=mask, decay_factor=factor, background=background, sigma_map=sigma_map
    )
    log.info(
        "fitted %d voxels with %s (noise sigma %s from %s)",
        int((fit.status == 0).sum()),
        fit.method,
        "unknown" if fit.sigma is None else f"{fit.sigma:.4g}",
        fit.sigma_source,
    )
    written = write_decay_maps(
        fit,
        image.affine,
        config.output_prefix,
        echo_times_s=image.echo_times_s,
        sources=image.sources,
        force=config.force,
        header=image.header,
        extra_sidecar={
            "B0GradientCorrection": phase is not None,
            **gradient_failed,
            "ReceiveCoilsSource": coils_source,
        },
    )
    for path in written:
        log.info("wrote %s", path)
    return written
