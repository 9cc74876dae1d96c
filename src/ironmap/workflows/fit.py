"""``ironmap fit``: one multi-echo acquisition in, R2*/T2*/S0/SD maps out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fitting import DecayModel
from ..io import (
    MultiEchoImage,
    check_writable,
    decay_map_paths,
    load_bids_echoes,
    load_image,
    load_multiecho,
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
    """

    output_prefix: Path
    magnitude: Path | None = None
    echo_times: tuple[float, ...] | None = None
    te_unit: str = "s"
    bids_echoes: tuple[Path, ...] | None = None
    method: str = "auto"
    mask: Path | None = None
    sigma: float | None = None
    force: bool = False


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
    img = load_image(path)
    shape = image.data.shape[:3]
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != shape or not np.allclose(img.affine, image.affine, atol=1e-4):
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
    model = DecayModel(image.echo_times_s, method=config.method, sigma=config.sigma)
    fit = model.fit(image.data, mask=mask)
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
    )
    for path in written:
        log.info("wrote %s", path)
    return written
