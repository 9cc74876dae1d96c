"""Whose folder is it: the rule for ``OUTPUT_DIR`` and the files that make it ironmap's
derivatives dataset.

ironmap writes only into a missing or empty folder or its own derivatives dataset, never inside
the input dataset except exactly ``BIDS_DIR/derivatives/<name>`` (:func:`check_output_dir`);
:func:`write_dataset_description` and :func:`write_bidsignore` write the dataset's own files.
The names of the files come from :mod:`.derivatives`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..errors import InputError
from .derivatives import (
    _FIGURES,
    _PROVENANCE,
    _TABLES,
    BIDSIGNORE,
    DATASET_DESCRIPTION,
    GROUP_DIR,
    LOCK,
    QC_INDEX,
    REPORT,
    tsv_sidecar_path,
)
from .maps import atomic_write_bytes, write_json

__all__ = [
    "check_output_dir",
    "is_ironmap_dataset",
    "write_bidsignore",
    "write_dataset_description",
]


# -- whose folder is it? ----------------------------------------------------------------------

_OUTSIDE = (
    "choose an OUTPUT_DIR outside BIDS_DIR, or BIDS_DIR/derivatives/<name> (inputs are never "
    "written)"
)
_KEEP_OUT = "choose a new or empty OUTPUT_DIR (--force does not override this)"


def check_output_dir(output_dir: str | Path, *, bids_dir: str | Path) -> None:
    """Refuse (one line) an ``OUTPUT_DIR`` that ironmap must not write.

    ironmap writes only into a missing or empty folder or its own derivatives dataset
    (``dataset_description.json`` with ``GeneratedBy[0].Name == "ironmap"``), never inside the
    input dataset nor into a folder that contains it (symbolic links resolved), except exactly
    ``BIDS_DIR/derivatives/<name>`` (the BIDS habit; the same rule: missing, empty or
    ironmap's own). ``--force`` does not override this: it is about ironmap's own outputs.

    Raises
    ------
    InputError
        Naming ``output_dir`` and what to do.
    """
    out, bids = Path(output_dir), Path(bids_dir)
    real_out, real_bids = out.resolve(), bids.resolve()
    if real_out == real_bids:
        raise InputError(f"{out}: is the input dataset; {_OUTSIDE}")
    own_derivatives = real_out.parent == real_bids / "derivatives"
    if real_bids in real_out.parents and not own_derivatives:
        raise InputError(f"{out}: is inside the input dataset {bids}; {_OUTSIDE}")
    if real_out in real_bids.parents:
        raise InputError(f"{out}: contains the input dataset {bids}; {_OUTSIDE}")
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: is a file, not a folder; give a folder for OUTPUT_DIR")
    description = out / DATASET_DESCRIPTION
    if not description.exists():
        if any(p.name != LOCK for p in out.iterdir()):
            raise InputError(
                f"{out}: is not empty and is not an ironmap derivatives dataset "
                f"(no {DATASET_DESCRIPTION}); {_KEEP_OUT}"
            )
        return
    name = _generated_by(description)
    if name == "ironmap" and own_derivatives and not is_ironmap_dataset(out):
        raise InputError(
            f"{out}: holds inputs made by ironmap, not its outputs (no SourceDatasets in its "
            f"{DATASET_DESCRIPTION}, e.g. the ground truth of `ironmap simulate`); {_KEEP_OUT}"
        )
    if name == "ironmap":
        return
    if name is None:
        raise InputError(
            f"{out}: its {DATASET_DESCRIPTION} names no GeneratedBy pipeline, so it is not "
            f"ironmap's; {_KEEP_OUT}"
        )
    raise InputError(
        f"{out}: holds the outputs of {name} (GeneratedBy in {DATASET_DESCRIPTION}), not of "
        f"ironmap; {_KEEP_OUT}"
    )


def is_ironmap_dataset(folder: str | Path) -> bool:
    """Whether ``folder`` holds the outputs of ``ironmap run``: its ``dataset_description.json``
    says ``GeneratedBy[0].Name == "ironmap"`` and names its ``SourceDatasets`` (as
    :func:`write_dataset_description` writes; the ground truth of ``ironmap simulate`` names
    none and is an input). Its files are outputs, never inputs."""
    description = Path(folder) / DATASET_DESCRIPTION
    if not description.is_file() or _generated_by(description) != "ironmap":
        return False
    content = json.loads(description.read_text())
    return isinstance(content.get("SourceDatasets"), list) and bool(content["SourceDatasets"])


def _generated_by(description: Path) -> str | None:
    """``GeneratedBy[0].Name`` of a dataset description (None when absent or unreadable)."""
    try:
        content = json.loads(description.read_text())
    except (ValueError, UnicodeDecodeError, IsADirectoryError):
        return None
    generated = content.get("GeneratedBy") if isinstance(content, dict) else None
    if isinstance(generated, list) and generated and isinstance(generated[0], dict):
        name = generated[0].get("Name")
        return str(name) if name else None
    return None


def write_dataset_description(output_dir: str | Path, *, bids_dir: str | Path) -> None:
    """``OUTPUT_DIR/dataset_description.json`` of ironmap's derivatives dataset."""
    write_json(
        Path(output_dir) / DATASET_DESCRIPTION,
        {
            "Name": "ironmap R2* maps and regional R2*",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "ironmap", "Version": __version__}],
            # BIDS: a URI (file:///..., percent-encoded), not a bare path
            "SourceDatasets": [{"URL": Path(bids_dir).resolve().as_uri()}],
        },
    )


def write_bidsignore(output_dir: str | Path) -> None:
    """Add to ``OUTPUT_DIR/.bidsignore`` the outputs that BIDS has no rule for yet.

    The report, the group tables, the figures, the participant tables and provenance records
    and the lock; lines already there (the user's own) are kept. The BIDS validator skips what
    this file lists.
    """
    patterns = [  # folders without a trailing "/": the validator checks them as paths too
        f"/{REPORT}",
        f"/{GROUP_DIR}",
        f"/{Path(QC_INDEX).parent}",
        f"/sub-*/{_FIGURES}",
        *(f"*_{name}" for name in _TABLES.values()),
        *(f"*_{tsv_sidecar_path(Path(name)).name}" for name in _TABLES.values()),
        f"*_{_PROVENANCE}",
        f"/{LOCK}",
    ]
    path = Path(output_dir) / BIDSIGNORE
    lines = path.read_text().splitlines() if path.exists() else []
    missing = [p for p in patterns if p not in lines]
    if missing:
        header = [] if lines else ["# ironmap outputs that BIDS has no rule for yet"]
        atomic_write_bytes(path, "\n".join([*lines, *header, *missing, ""]).encode())
