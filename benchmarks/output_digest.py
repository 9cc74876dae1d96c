"""Compare two output trees file by file: are the outputs of two ironmap versions identical?

Used to show that a refactor changes no number: run the same commands (e.g. ``ironmap demo
OUT --quick``) with the old and the new code into two folders, then::

    python benchmarks/output_digest.py OLD_DIR NEW_DIR

prints one row per kind of file (identical / different / only on one side) and lists the files
that differ. Byte comparison, except for the run-time fields that differ between any two runs:
``seconds`` in ``*_provenance.json``, ``ironmap_version`` (a development version string) and
the report's "Generated <time> UTC".
Paths written into text outputs (sidecar ``Sources``, ``SourceDatasets``) name each run's own
folders: ``--root OLD_ROOT NEW_ROOT`` (default: the two folders compared) is replaced by one
placeholder in text files before comparing. Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import pandas as pd

#: JSON keys whose values are run-time facts, not results.
VOLATILE = ("seconds", "ironmap_version")


#: Run-time stamps in text outputs (the report's generation time).
STAMPS = (re.compile(rb"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC"),)

#: Text outputs, in which each run's own root folder is replaced by a placeholder.
TEXT = (".json", ".tsv", ".html", ".txt")


def digest(path: Path, root: Path | None = None) -> str:
    """sha256 of the file; JSON provenance records without their volatile keys, and text files
    with ``root`` replaced by a placeholder."""
    raw = path.read_bytes()
    if root is not None and path.name.endswith(TEXT):
        raw = raw.replace(str(root).encode(), b"<ROOT>")
        for stamp in STAMPS:
            raw = stamp.sub(b"<STAMP>", raw)
    if path.name.endswith("provenance.json"):
        content = json.loads(raw)
        for key in VOLATILE:
            content.pop(key, None)
        raw = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()


def kind(relative: Path) -> str:
    """A file's kind for the summary: its suffix after the last BIDS entity."""
    name = relative.name
    if "_" in name and name.startswith("sub-"):
        return "sub-*_" + name.split("_")[-1]
    return name


def compare(
    old: Path, new: Path, *, roots: tuple[Path, Path] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Per-kind counts and the list of differing relative paths."""
    old_root, new_root = roots or (old, new)
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    rows, differing = [], []
    for rel in sorted(old_files | new_files):
        if rel not in new_files:
            state = "only old"
        elif rel not in old_files:
            state = "only new"
        else:
            same = digest(old / rel, old_root) == digest(new / rel, new_root)
            state = "identical" if same else "different"
        if state != "identical":
            differing.append(f"{state}: {rel}")
        rows.append({"kind": kind(rel), "state": state})
    frame = pd.DataFrame(rows)
    table = pd.crosstab(frame["kind"], frame["state"]).rename_axis(columns=None)
    return table, differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, nargs="?")
    parser.add_argument("new", type=Path, nargs="?")
    parser.add_argument("--root", nargs=2, type=Path, metavar=("OLD_ROOT", "NEW_ROOT"))
    args = parser.parse_args(argv)
    if args.old is None or args.new is None:  # `make bench` runs every script without arguments
        print("output_digest: nothing to compare; usage: output_digest.py OLD_DIR NEW_DIR")
        return 0
    table, differing = compare(args.old, args.new, roots=args.root)
    print(table.to_string())
    for line in differing:
        print(line)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
