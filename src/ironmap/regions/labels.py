"""Canonical regions from a segmentation's label table (``dseg.tsv``) or FreeSurfer aseg codes.

Names are matched case-insensitively (CONVENTIONS): FreeSurfer LUT names where they exist
(``Left-Thalamus`` or ``Left-Thalamus-Proper``, ...), ``Left-Substantia-Nigra``,
``Left-Red-Nucleus`` and ``Left-Dentate-Nucleus`` otherwise. Without a ``.tsv`` integer codes
are FreeSurfer aseg codes, which have no substantia nigra, red nucleus or dentate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError

__all__ = [
    "DEEP_GM",
    "LABEL_NAMES",
    "RegionCodes",
    "read_label_table",
    "region_codes",
]

#: Deep grey-matter regions in reporting order (CONVENTIONS names).
DEEP_GM = (
    "thalamus",
    "caudate",
    "putamen",
    "pallidum",
    "substantia_nigra",
    "red_nucleus",
    "dentate_nucleus",
)

#: code -> FreeSurfer-style name of the labels ironmap itself draws (the simulated phantoms and
#: ``--segmentation atlas``): FreeSurfer aseg codes where they exist, 101-106 for the nuclei.
LABEL_NAMES: dict[int, str] = {
    2: "Left-Cerebral-White-Matter",
    3: "Left-Cerebral-Cortex",
    4: "Left-Lateral-Ventricle",
    7: "Left-Cerebellum-White-Matter",
    8: "Left-Cerebellum-Cortex",
    10: "Left-Thalamus",
    11: "Left-Caudate",
    12: "Left-Putamen",
    13: "Left-Pallidum",
    16: "Brain-Stem",
    24: "CSF",
    41: "Right-Cerebral-White-Matter",
    42: "Right-Cerebral-Cortex",
    43: "Right-Lateral-Ventricle",
    46: "Right-Cerebellum-White-Matter",
    47: "Right-Cerebellum-Cortex",
    49: "Right-Thalamus",
    50: "Right-Caudate",
    51: "Right-Putamen",
    52: "Right-Pallidum",
    101: "Left-Substantia-Nigra",
    102: "Right-Substantia-Nigra",
    103: "Left-Red-Nucleus",
    104: "Right-Red-Nucleus",
    105: "Left-Dentate-Nucleus",
    106: "Right-Dentate-Nucleus",
}

# region -> (left names, right names); names lower-case.
_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "thalamus": (
        ("left-thalamus", "left-thalamus-proper"),
        ("right-thalamus", "right-thalamus-proper"),
    ),
    "caudate": (("left-caudate",), ("right-caudate",)),
    "putamen": (("left-putamen",), ("right-putamen",)),
    "pallidum": (("left-pallidum",), ("right-pallidum",)),
    "substantia_nigra": (("left-substantia-nigra",), ("right-substantia-nigra",)),
    "red_nucleus": (("left-red-nucleus",), ("right-red-nucleus",)),
    "dentate_nucleus": (("left-dentate-nucleus",), ("right-dentate-nucleus",)),
    "cortex": (("left-cerebral-cortex",), ("right-cerebral-cortex",)),
    "cerebral_wm": (("left-cerebral-white-matter",), ("right-cerebral-white-matter",)),
    "csf": (
        ("left-lateral-ventricle", "left-inf-lat-vent"),
        ("right-lateral-ventricle", "right-inf-lat-vent"),
    ),
}
_CSF_MIDLINE = ("csf", "3rd-ventricle", "4th-ventricle", "5th-ventricle")

# FreeSurfer aseg codes for a segmentation without a .tsv.
_ASEG: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "thalamus": ((10,), (49,)),
    "caudate": ((11,), (50,)),
    "putamen": ((12,), (51,)),
    "pallidum": ((13,), (52,)),
    "cortex": ((3,), (42,)),
    "cerebral_wm": ((2,), (41,)),
    "csf": ((4, 5), (43, 44)),
}
_ASEG_CSF_MIDLINE = (14, 15, 24, 72)


@dataclass(frozen=True)
class RegionCodes:
    """Label codes of every canonical region, per hemisphere.

    Attributes
    ----------
    regions : dict
        ``region -> (left codes, right codes)`` for the regions the segmentation has.
    csf : tuple of int
        All CSF and ventricle codes (both hemispheres and midline).
    missing : tuple of str
        Deep grey-matter regions the segmentation does not have.
    """

    regions: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
    csf: tuple[int, ...]
    missing: tuple[str, ...]

    def codes(self, region: str, hemisphere: str = "both") -> tuple[int, ...]:
        """Codes of ``region`` in ``hemisphere`` (``left``, ``right`` or ``both``)."""
        left, right = self.regions.get(region, ((), ()))
        return {"left": left, "right": right, "both": left + right}[hemisphere]


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
            "'index' and 'name'"
        )
    try:
        index = table["index"].astype(int)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: the 'index' column must hold integers") from exc
    return dict(zip(index.tolist(), table["name"].astype(str).tolist(), strict=True))


def region_codes(table: dict[int, str] | None) -> RegionCodes:
    """Map a label table (or FreeSurfer aseg codes when ``table`` is None) to the regions."""
    if table is None:
        regions = dict(_ASEG)
        csf = tuple(c for pair in _ASEG["csf"] for c in pair) + _ASEG_CSF_MIDLINE
        return RegionCodes(regions, csf, tuple(r for r in DEEP_GM if r not in regions))
    by_name: dict[str, list[int]] = {}
    for code, name in table.items():
        by_name.setdefault(name.strip().lower(), []).append(int(code))
    regions = {}
    for region, (left_names, right_names) in _NAMES.items():
        left = tuple(c for n in left_names for c in by_name.get(n, []))
        right = tuple(c for n in right_names for c in by_name.get(n, []))
        if left or right:
            regions[region] = (left, right)
    csf = (
        regions.get("csf", ((), ()))[0]
        + regions.get("csf", ((), ()))[1]
        + tuple(c for n in _CSF_MIDLINE for c in by_name.get(n, []))
    )
    return RegionCodes(regions, csf, tuple(r for r in DEEP_GM if r not in regions))
