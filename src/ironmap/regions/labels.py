"""Canonical regions from a segmentation's label table (``dseg.tsv``) or FreeSurfer aseg codes.

Names come from the region catalogue (:mod:`.catalog`) and are matched case-insensitively, with
spaces and underscores read as hyphens (docs/conventions.md): FreeSurfer LUT names where they
exist (``Left-Thalamus`` or ``Left-Thalamus-Proper``, SynthSeg's ``left thalamus``, ...),
``Left-Substantia-Nigra``, ``Left-Red-Nucleus`` and ``Left-Dentate-Nucleus`` otherwise. Without a
``.tsv`` integer codes are FreeSurfer aseg codes, which have no substantia nigra, red nucleus or
dentate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError
from .catalog import CATALOG, DEEP_GM, LABEL_NAMES, normalise_name

__all__ = [
    "DEEP_GM",
    "LABEL_NAMES",
    "RegionCodes",
    "read_label_table",
    "region_codes",
]


@dataclass(frozen=True)
class RegionCodes:
    """Label codes of every canonical region, per hemisphere.

    Attributes
    ----------
    regions : dict
        ``region -> (left codes, right codes, midline codes)`` for the catalogue regions
        (:mod:`.catalog`) the segmentation has.
    csf : tuple of int
        All CSF and ventricle codes (both hemispheres and midline).
    missing : tuple of str
        Deep grey-matter regions the segmentation does not have.
    """

    regions: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    csf: tuple[int, ...]
    missing: tuple[str, ...]

    def codes(self, region: str, hemisphere: str = "both") -> tuple[int, ...]:
        """Codes of ``region`` in ``hemisphere`` (``left``, ``right`` or ``both``).

        ``both`` includes the midline codes of a structure that is not split.
        """
        left, right, midline = self.regions.get(region, ((), (), ()))
        return {"left": left, "right": right, "both": left + right + midline}[hemisphere]


def read_label_table(path: str | Path) -> dict[int, str]:
    """``index -> name`` from a BIDS ``dseg.tsv`` (columns ``index`` and ``name``)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t")
    except Exception as exc:
        raise InputError(f"{path}: cannot read as a TSV table ({exc})") from exc
    missing = {"index", "name"} - set(table.columns)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; a dseg.tsv needs "
            "'index' and 'name' (see docs/conventions.md)"
        )
    try:
        index = table["index"].astype(int)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: the 'index' column must hold integers") from exc
    return dict(zip(index.tolist(), table["name"].astype(str).tolist(), strict=True))


def region_codes(table: dict[int, str] | None) -> RegionCodes:
    """Map a label table (or FreeSurfer aseg codes when ``table`` is None) to the regions."""
    if table is None:
        found = {r.name: r.aseg for r in CATALOG}
    else:
        by_name: dict[str, list[int]] = {}
        for code, name in table.items():
            by_name.setdefault(normalise_name(name), []).append(int(code))
        found = {
            r.name: tuple(
                tuple(c for n in r.names(side) for c in by_name.get(n, []))
                for side in ("left", "right", "midline")
            )
            for r in CATALOG
        }
    regions = {name: sides for name, sides in found.items() if any(sides)}
    csf = tuple(c for r in CATALOG if r.kind == "csf" for side in found[r.name] for c in side)
    return RegionCodes(regions, csf, tuple(r for r in DEEP_GM if r not in regions))
