"""The region catalogue: one record per brain structure, from which every other table derives.

Each :class:`Region` row holds the canonical name (the ``region`` column of ``regions.tsv``),
ironmap's own label codes and FreeSurfer-style names (used by the simulated phantoms and by
``--segmentation atlas``), the names other segmentation tools give it in a ``dseg.tsv``
(FreeSurfer aseg, FSL FIRST, SynthSeg and FastSurfer all use the FreeSurfer LUT names, SynthSeg
with spaces), its FreeSurfer aseg codes (for a segmentation without a ``.tsv``), where the
bundled atlas takes it from, and whether it is iron-rich (refined on R2* by the atlas path).

Adding a region is one row of :data:`CATALOG`; :mod:`.labels`, :mod:`.stats`, the atlas
(:mod:`ironmap.segmentation.atlas`) and the simulator (:mod:`ironmap.simulate`) read it from here.
Names match case-insensitively, with spaces and underscores read as hyphens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "APARC_CORTEX",
    "CATALOG",
    "DEEP_GM",
    "HEMISPHERES",
    "IRON_RICH",
    "LABEL_NAMES",
    "MEASURED_ROWS",
    "REGION_NAMES",
    "Region",
    "RegionRow",
    "by_name",
    "code_region",
    "label_code",
    "normalise_name",
]

HEMISPHERES = ("left", "right", "both")


@dataclass(frozen=True)
class Region:
    """One brain structure.

    Attributes
    ----------
    name : str
        Canonical name, the ``region`` value in ``regions.tsv`` (e.g. ``"thalamus"``).
    kind : {"deep_gm", "tissue", "csf"}
        Deep grey matter (reported per hemisphere), another tissue, or CSF (not brain).
    codes : tuple of int
        ironmap's own label codes: ``(left, right)``, or ``(midline,)`` for a structure that
        is not split. FreeSurfer aseg codes where they exist, 101-106 for the nuclei.
    stems : tuple of str
        Name stems: ``Left-<stem>`` / ``Right-<stem>`` (or ``<stem>`` for a midline
        structure) name it in a ``dseg.tsv``; the first gives ironmap's own label names.
    midline_names : tuple of str
        Extra whole-structure names without a hemisphere (e.g. ``CSF``, ``3rd-Ventricle``).
    aseg : tuple of tuple of int
        FreeSurfer aseg codes ``(left, right, midline)`` for a segmentation without a ``.tsv``;
        empty tuples where aseg has no such label.
    harvard_oxford : tuple of int
        Volume indices in the Harvard-Oxford subcortical atlas (``(left, right)`` or
        ``(midline,)``) when the bundled atlas takes the structure from it.
    talairach : int or None
        Talairach daemon cell-type index when the atlas takes it from there (split at x = 0).
    iron_rich : bool
        R2*-hyperintense nucleus that ``--segmentation atlas`` re-draws on the R2* map.
    """

    name: str
    kind: Literal["deep_gm", "tissue", "csf"]
    codes: tuple[int, ...]
    stems: tuple[str, ...] = ()
    midline_names: tuple[str, ...] = ()
    aseg: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = ((), (), ())
    harvard_oxford: tuple[int, ...] = ()
    talairach: int | None = None
    iron_rich: bool = False

    @property
    def lateral(self) -> bool:
        """True when the structure has a left and a right label."""
        return len(self.codes) == 2

    @property
    def label_names(self) -> tuple[str, ...]:
        """ironmap's own label names, one per code of :attr:`codes`."""
        if self.lateral:
            return (f"Left-{self.stems[0]}", f"Right-{self.stems[0]}")
        return (self.stems[0],)

    def names(self, hemisphere: str) -> tuple[str, ...]:
        """Normalised names of ``hemisphere`` (``left``, ``right`` or ``midline``)."""
        if hemisphere == "midline":
            stems = () if self.lateral else self.stems
            return tuple(normalise_name(n) for n in (*stems, *self.midline_names))
        if not self.lateral:
            return ()
        return tuple(normalise_name(f"{hemisphere}-{stem}") for stem in self.stems)


#: FreeSurfer LUT codes of the cortical parcels that replace aseg's cerebral cortex (3, 42) in
#: ``aparc+aseg.mgz``, FastSurfer's ``aparc.DKTatlas+aseg.deep.mgz`` and ``mri_synthseg --parc``
#: (Desikan-Killiany and DKT: ``ctx-lh-*`` 1000-1035, ``ctx-rh-*`` 2000-2035).
APARC_CORTEX = (tuple(range(1000, 1036)), tuple(range(2000, 2036)))

#: Every structure ironmap knows, deep grey matter first in reporting order.
CATALOG: tuple[Region, ...] = (
    Region("thalamus", "deep_gm", (10, 49), ("Thalamus", "Thalamus-Proper"),
           aseg=((10,), (49,), ()), harvard_oxford=(97, 106)),
    Region("caudate", "deep_gm", (11, 50), ("Caudate",),
           aseg=((11,), (50,), ()), harvard_oxford=(98, 107)),
    Region("putamen", "deep_gm", (12, 51), ("Putamen",),
           aseg=((12,), (51,), ()), harvard_oxford=(99, 108)),
    Region("pallidum", "deep_gm", (13, 52), ("Pallidum",),
           aseg=((13,), (52,), ()), harvard_oxford=(100, 109), iron_rich=True),
    Region("substantia_nigra", "deep_gm", (101, 102), ("Substantia-Nigra",),
           talairach=21, iron_rich=True),
    Region("red_nucleus", "deep_gm", (103, 104), ("Red-Nucleus",),
           talairach=22, iron_rich=True),
    Region("dentate_nucleus", "deep_gm", (105, 106), ("Dentate-Nucleus",),
           talairach=7, iron_rich=True),
    Region("cortex", "tissue", (3, 42), ("Cerebral-Cortex",),
           aseg=((3, *APARC_CORTEX[0]), (42, *APARC_CORTEX[1]), ())),
    Region("cerebral_wm", "tissue", (2, 41), ("Cerebral-White-Matter",), aseg=((2,), (41,), ())),
    Region("cerebellum_wm", "tissue", (7, 46), ("Cerebellum-White-Matter",),
           aseg=((7,), (46,), ())),
    Region("cerebellum_cortex", "tissue", (8, 47), ("Cerebellum-Cortex",),
           aseg=((8,), (47,), ())),
    Region("brainstem", "tissue", (16,), ("Brain-Stem",), aseg=((), (), (16,)),
           harvard_oxford=(101,)),
    Region("lateral_ventricle", "csf", (4, 43), ("Lateral-Ventricle", "Inf-Lat-Vent"),
           aseg=((4, 5), (43, 44), ()), harvard_oxford=(96, 105)),
    Region("csf", "csf", (24,), ("CSF",), ("3rd-Ventricle", "4th-Ventricle", "5th-Ventricle"),
           aseg=((), (), (14, 15, 24, 72))),
)  # fmt: skip


@dataclass(frozen=True)
class RegionRow:
    """A ``region`` of ``regions.tsv`` measured on the segmentation.

    Attributes
    ----------
    name : str
        Value of the ``region`` column.
    source : str
        Catalogue region whose voxels it uses.
    hemispheres : tuple of str
        Hemisphere rows written (``left``, ``right``, ``both``).
    """

    name: str
    source: str
    hemispheres: tuple[str, ...]


def normalise_name(name: str) -> str:
    """Lower case, spaces and underscores as hyphens: ``"Left Thalamus"`` -> ``left-thalamus``."""
    return "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def by_name(name: str) -> Region:
    """The catalogue record of canonical region ``name``."""
    for region in CATALOG:
        if region.name == name:
            return region
    raise KeyError(f"unknown region {name!r}; known: {', '.join(REGION_NAMES)}")


def label_code(region: str, side: str) -> int:
    """ironmap's label code of catalogue ``region`` on ``side``.

    Parameters
    ----------
    region : str
        Canonical region name (:func:`by_name`).
    side : {"left", "right", "midline"}
        Hemisphere of a lateral structure, or ``midline`` for one that is not split.

    Returns
    -------
    int

    Raises
    ------
    KeyError
        If ``region`` is not in the catalogue.
    ValueError
        If the structure has no label on ``side``.
    """
    record = by_name(region)
    if record.lateral and side in ("left", "right"):
        return record.codes[side == "right"]
    if not record.lateral and side == "midline":
        return record.codes[0]
    raise ValueError(f"{region} has no {side} label (its codes are {record.codes})")


def code_region(code: int) -> str | None:
    """Canonical region of one of ironmap's own label codes (None for unknown codes)."""
    return _CODE_REGION.get(int(code))


REGION_NAMES: tuple[str, ...] = tuple(r.name for r in CATALOG)

#: Deep grey-matter regions in reporting order.
DEEP_GM: tuple[str, ...] = tuple(r.name for r in CATALOG if r.kind == "deep_gm")

#: Iron-rich nuclei re-drawn on R2* by the atlas path: region -> ironmap codes (left, right).
IRON_RICH: dict[str, tuple[int, ...]] = {r.name: r.codes for r in CATALOG if r.iron_rich}

#: code -> FreeSurfer-style name of the labels ironmap itself draws (the simulated phantoms and
#: ``--segmentation atlas``), in code order.
LABEL_NAMES: dict[int, str] = dict(
    sorted((c, n) for r in CATALOG for c, n in zip(r.codes, r.label_names, strict=True))
)

#: Rows of ``regions.tsv`` measured on the segmentation (lesion-free voxels), in order; the
#: ``lesions`` row (from the lesion mask) follows them.
MEASURED_ROWS: tuple[RegionRow, ...] = (
    *(RegionRow(r, r, HEMISPHERES) for r in DEEP_GM),
    RegionRow("nawm", "cerebral_wm", ("both",)),
)

_CODE_REGION = {c: r.name for r in CATALOG for c in r.codes}
