"""Resume by content: checksums of input files and what differs between two provenance records.

Inputs are compared by file name and SHA-256, options key by key; the participant and group
stages refuse, naming the changes, outputs made from other inputs or options.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["describe_changes", "provenance_changes", "sha256"]


# -- provenance: resume by content ------------------------------------------------------------


def sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance_changes(previous: dict, current: dict) -> list[str]:
    """What differs between two provenance records, in words; empty when they match.

    Inputs are matched by file name and SHA-256, so the same dataset reached by another path
    (relative, absolute, a copy) matches; records that key inputs by path (older ironmap) are
    read by the path's base name. Options are compared key by key. E.g. ``["option
    fit_method: auto -> loglin", "input sub-01_echo-2_part-mag_MEGRE.nii.gz changed content"]``.
    """
    changes = []
    versions = previous.get("ironmap_version"), current.get("ironmap_version")
    if versions[0] != versions[1]:
        changes.append(f"ironmap version {versions[0]} -> {versions[1]}")
    old, new = previous.get("options") or {}, current.get("options") or {}
    for key in [*new, *(k for k in old if k not in new)]:
        if key not in old or key not in new or old[key] != new[key]:
            changes.append(f"option {key}: {old.get(key, 'unset')} -> {new.get(key, 'unset')}")
    old = {Path(k).name: v for k, v in (previous.get("inputs") or {}).items()}
    new = current.get("inputs") or {}
    for name in sorted(set(old) | set(new)):
        if name not in old:
            changes.append(f"input {name} new")
        elif name not in new:
            changes.append(f"input {name} removed")
        elif old[name] != new[name]:
            changes.append(f"input {name} changed content")
    return changes


def describe_changes(changes: list[str], *, limit: int = 6) -> str:
    """``changes`` joined for a one-line message, the first ``limit`` and a count of the rest."""
    rest = len(changes) - limit
    return "; ".join(changes[:limit]) + (f"; and {rest} more" if rest > 0 else "")
