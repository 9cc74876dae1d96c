"""Resuming the group stage: its provenance record and whether its outputs are up to date.

``group/provenance.json`` records the ironmap version, the SHA-256 of ``participants.tsv``, of
every participant table and sessions file the stage reads (keyed by file name) and the options;
outputs with the same record are kept, outputs of other inputs or options are refused unless
``force``. Called by :func:`ironmap.workflows.group.run_group`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..cohort.analysis import ANALYSIS_TABLES
from ..errors import InputError
from ..io.derivatives import (
    GROUP_DIR,
    GROUP_PROVENANCE,
    GROUP_TABLES,
    describe_changes,
    find_participant_tables,
    group_outputs,
    group_path,
    provenance_changes,
    report_outputs,
    sha256,
)

if TYPE_CHECKING:
    from .group import GroupConfig


def _provenance(config: GroupConfig, table_path: Path) -> dict:
    """Version, checksums of every file the stage reads (by file name), and the options."""
    out = Path(config.output_dir)
    files = [
        table_path,
        *find_participant_tables(out, "regions"),
        *find_participant_tables(out, "volumes"),
        *sorted(Path(config.bids_dir).glob("sub-*/sub-*_sessions.tsv")),
    ]
    return {
        "ironmap_version": __version__,
        "inputs": {p.name: sha256(p) for p in files},
        "options": {"mixed": config.mixed, "min_voxels": config.min_voxels},
    }


def _up_to_date(out: Path, provenance: dict, config: GroupConfig) -> bool:
    """True to keep the outputs (same record, all present); False to compute; else refuse."""
    record = group_path(out, GROUP_PROVENANCE)
    if config.force or not any(p.exists() for p in group_outputs(out)):
        return False
    if not record.exists():
        raise InputError(
            f"{out / GROUP_DIR}: group outputs exist without a provenance record (written by "
            "an older ironmap); pass --force to recompute them"
        )
    try:
        previous = json.loads(record.read_text())
    except ValueError:
        raise InputError(f"{record}: not a readable provenance record; pass --force") from None
    if previous.get("complete") is False:  # our own interrupted run: redo it
        return False
    changes = provenance_changes(previous, provenance)
    if changes:
        raise InputError(
            f"{record}: group outputs exist from other inputs or options "
            f"({describe_changes(changes)}); pass --force to recompute"
        )
    absent = {GROUP_TABLES[k] for k in _not_run(previous.get("analyses") or {})}
    wanted = [
        p
        for p in group_outputs(out)
        if (config.report or p not in report_outputs(out))
        and p.name.replace(".json", ".tsv") not in absent
    ]
    return all(p.exists() for p in wanted)


def _not_run(analyses: dict) -> list[str]:
    """The ``GROUP_TABLES`` keys of the analyses that did not run (not written)."""
    return [
        key
        for name, record in analyses.items()
        if not record.get("ran", True)
        for key in ANALYSIS_TABLES.get(name, ())
    ]
