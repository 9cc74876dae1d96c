"""Resuming the participant stage: what a session's outputs were made from.

The provenance record of one participant/session (checksums of every input file and the options
that change the outputs) and the check that decides whether its outputs are up to date (skip),
missing or forced (compute), or made from other inputs or options (refuse, naming what changed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import InputError
from ..io import SessionInputs, sidecar_path
from ..io.derivatives import describe_changes, provenance_changes, sha256
from ..segmentation.coregister import DEFAULT_REGISTER_SEGMENTATION
from ..segmentation.strategies import SegmentationStrategy
from .qsm import _qsm_inputs, _qsm_source

if TYPE_CHECKING:
    from .participant import ParticipantConfig


def _phases_used(inputs: SessionInputs, config: ParticipantConfig) -> tuple[Path, ...]:
    """Phase files the field-gradient correction uses (none when it is off): the
    ``part-phase`` echoes, or the ``part-imag`` ones of real/imaginary pairs."""
    return (inputs.phases or inputs.imags) if config.b0_correction == "auto" else ()


def _provenance(
    inputs: SessionInputs, config: ParticipantConfig, strategy: SegmentationStrategy
) -> dict:
    """Checksums of every input file (keyed by file name) and the options that change the
    outputs: the same data reached by another path or copied elsewhere resume."""
    files = [
        *inputs.echoes,
        *_phases_used(inputs, config),
        *_qsm_inputs(inputs, config),
        *strategy.input_files(),
        inputs.lesion_mask,
    ]
    sidecars = [sidecar_path(p) for p in [*inputs.echoes, *_phases_used(inputs, config)]]
    hashed = list(dict.fromkeys(p for p in [*files, *sidecars] if p is not None and p.exists()))
    return {
        "ironmap_version": __version__,
        "inputs": {p.name: sha256(p) for p in hashed},
        "options": {
            "fit_method": config.fit_method,
            # recorded when given: outputs made before --coils existed (estimated = default)
            # still match a run with the default
            **({"coils": config.coils} if config.coils is not None else {}),
            **({"sigma_map": config.sigma_map} if config.sigma_map != "off" else {}),
            "min_fraction": config.min_fraction,
            "erode_mm": config.erode_mm,
            "b0_correction": bool(_phases_used(inputs, config)),
            "iron_calibration": config.iron_calibration,
            "segmentation": config.segmentation,
            "csf_exclusion": config.csf_exclusion,
            # recorded when the session has a susceptibility map: outputs without one resume
            **({"qsm": source} if (source := _qsm_source(inputs, config)) else {}),
            # recorded when not the default: outputs made before the option still resume
            **(
                {"register_segmentation": config.register_segmentation}
                if config.register_segmentation != DEFAULT_REGISTER_SEGMENTATION
                else {}
            ),
        },
    }


def _up_to_date(path: Path, provenance: dict, *, force: bool) -> dict | None:
    """The previous record when ``path`` records these inputs and options (skip), None to
    compute; refuse outputs of other inputs or options, naming what changed."""
    if not path.exists() or force:
        return None
    try:
        previous = json.loads(path.read_text())
    except ValueError:
        raise InputError(
            f"{path}: not a readable provenance record; pass --force to redo"
        ) from None
    changes = provenance_changes(previous, provenance)
    if not changes:
        return previous
    raise InputError(
        f"{path}: outputs exist from other inputs or options ({describe_changes(changes)}); "
        "pass --force to redo"
    )
