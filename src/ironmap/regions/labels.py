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

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import InputError
from ..io.bids import read_bids_tsv
from .catalog import CATALOG, DEEP_GM, LABEL_NAMES, normalise_name

__all__ = [
    "DEEP_GM",
    "LABEL_NAMES",
    "RegionCodes",
    "label_array",
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
    """``index -> name`` from a BIDS ``dseg.tsv`` (columns ``index`` and ``name``).

    Raises
    ------
    InputError
        One line naming the file: unreadable (:func:`ironmap.io.bids.read_bids_tsv`), a
        missing column, an index that is not a non-negative integer, an index listed twice, or
        an empty name.
    """
    path = Path(path)
    table = read_bids_tsv(path)
    missing = {"index", "name"} - set(table.columns)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; a dseg.tsv needs "
            "'index' and 'name' (see docs/conventions.md)"
        )
    labels: dict[int, str] = {}
    for text, name in zip(table["index"], table["name"], strict=True):
        code = _index(text)
        if code is None:
            raise InputError(f"{path}: 'index' must hold non-negative integers, got {text!r}")
        if pd.isna(name) or not str(name).strip():
            raise InputError(f"{path}: index {code} has no name; name every label")
        if code in labels:
            raise InputError(
                f"{path}: index {code} is listed twice: {labels[code]} and {name}; "
                "each index must name one structure"
            )
        labels[code] = str(name).strip()
    return labels


def _index(text: object) -> int | None:
    """A ``dseg.tsv`` index as an int (``"10"`` or ``"10.0"``); None if not an integer >= 0."""
    try:
        value = float(str(text))
    except ValueError:
        return None
    if not (np.isfinite(value) and value >= 0 and value.is_integer() and value < 2**53):
        return None
    return int(value)


def label_array(labels: NDArray, *, source_name: str) -> NDArray[np.integer]:
    """Check that a label image holds integers >= 0; return it with an integer dtype.

    Parameters
    ----------
    labels : numpy.ndarray
        Label image; float images are accepted when every value is a whole number.
    source_name : str
        The file, named in errors.

    Returns
    -------
    numpy.ndarray
        ``labels`` itself when it has an integer dtype (bool: uint8), else an int64 copy.

    Raises
    ------
    InputError
        A NaN, Inf, fractional or negative label, or one of 2^53 or more.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if labels.dtype.kind not in "iuf":
        raise InputError(f"{source_name}: label images must hold integers, got {labels.dtype}")
    if labels.size == 0:
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        bad = ~np.isfinite(labels)
        if bad.any():
            raise InputError(
                f"{source_name}: {int(bad.sum())} NaN or Inf label(s); a segmentation must hold "
                "integer labels, fix or re-export it"
            )
    low, high = labels.min(), labels.max()
    if low < 0:
        raise InputError(f"{source_name}: negative label {low}; labels must be integers >= 0")
    if high >= 2**53:
        raise InputError(f"{source_name}: label {high} is too large (must be below 2^53)")
    if labels.dtype.kind != "f":
        return labels
    fractional = labels != np.floor(labels)
    if fractional.any():
        raise InputError(
            f"{source_name}: label {labels[fractional][0]} is not an integer; a segmentation "
            "must hold integer labels (was it resampled with interpolation?)"
        )
    return labels.astype(np.int64)


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
