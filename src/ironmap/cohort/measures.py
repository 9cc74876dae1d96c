"""The measures the group stage analyses: R2* and magnetic susceptibility (chi).

One code path (:func:`ironmap.cohort.analysis.analyse_cohort`) runs the harmonisation, the
normative model, the comparisons and the determinants on either; a :class:`Measure` says which
``regions.tsv`` column it reads, its unit, and whether it is modelled on the log scale.

- ``r2star``: ``r2star_median`` (1/s), modelled as log R2* (R2* is positive and scanner
  differences in it are mostly multiplicative).
- ``chi``: ``chi_median`` (ppm), modelled as chi itself: susceptibility is relative to a
  reference region and can be negative, so no log and no percent-of-control scale; its
  differences are absolute (the report shows them in ppb).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MEASURES", "Measure"]


@dataclass(frozen=True)
class Measure:
    """A regional measure of ``regions.tsv`` that the group stage analyses.

    Attributes
    ----------
    name : str
        Prefix of its group columns (``<name>_harmonized``, ``<name>_corrected``, ``<name>_z``)
        and key of :data:`MEASURES`.
    column : str
        Its ``regions.tsv`` column (the regional median).
    unit : str
        Unit of ``column`` (BIDS style).
    label : str
        How the text names it (``R2*``, ``chi``).
    log : bool
        Modelled on the log scale (positive, multiplicative site effects) or as is.
    """

    name: str
    column: str
    unit: str
    label: str
    log: bool


#: The measures, by name: the one home of their columns, units and scales.
MEASURES: dict[str, Measure] = {
    "r2star": Measure("r2star", "r2star_median", "1/s", "R2*", log=True),
    "chi": Measure("chi", "chi_median", "ppm", "chi", log=False),
}
