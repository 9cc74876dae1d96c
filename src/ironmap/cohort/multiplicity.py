"""Multiplicity of the group comparisons: the serial gatekeeping of :data:`FAMILIES` that marks
a row ``significant`` (:func:`hierarchy`). Moved from :mod:`.compare`, unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contrasts import OMNIBUS, extrapolated
from .stats import ALPHA

__all__ = [
    "FAMILIES",
    "HIERARCHY_COLUMNS",
    "hierarchy",
]

#: Columns :func:`hierarchy` adds (after the existing ones) to both comparison tables.
HIERARCHY_COLUMNS = ["family", "gate", "gate_open", "significant"]


#: contrast -> (family, gate): the contrast whose significance in the same region opens the
#: test ("" for the primary family). Serial gatekeeping: with every gate rooted in MS-HC, a
#: null cohort shows a significant row only if MS-HC shows one (at most ALPHA: BH across
#: regions holds the familywise rate under the complete null).
FAMILIES: dict[str, tuple[str, str]] = {
    "MS-HC": ("primary", ""),
    "RRMS-HC": ("versus-HC", "MS-HC"),
    "SPMS-HC": ("versus-HC", "MS-HC"),
    "PPMS-HC": ("versus-HC", "MS-HC"),
    "CIS-HC": ("versus-HC", "MS-HC"),
    OMNIBUS: ("omnibus", "MS-HC"),
    "progressive-RRMS": ("between-phenotype", OMNIBUS),
    "SPMS-PPMS": ("between-phenotype", OMNIBUS),
}


def hierarchy(table: pd.DataFrame, *, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mark each row ``significant`` under the serial gatekeeping of :data:`FAMILIES`.

    A row is significant when its ``p_fdr`` < :data:`~ironmap.cohort.stats.ALPHA`, its fit
    converged (where the table has ``converged``), and its gate is open: the gating contrast
    is significant in the same region (the primary family, MS-HC, has no gate). A gate absent
    from ``table`` is looked up in ``reference`` (the mixed table takes the phenotype
    omnibus from the primary table); absent from both, it is closed.

    Parameters
    ----------
    table : pandas.DataFrame
        ``region, contrast, p_fdr`` (+ ``converged``), one row per region x contrast.
    reference : pandas.DataFrame, optional
        A table already marked (``region, contrast, significant``).

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``family``, ``gate`` (the gating contrast, "" for the primary),
        ``gate_open`` and ``significant`` (booleans) set.
    """
    table = table.copy()
    known = table["contrast"].map(lambda c: c in FAMILIES)
    if not known.all():
        raise ValueError(f"no family for contrast(s) {sorted(set(table.loc[~known, 'contrast']))}")
    table["family"] = table["contrast"].map(lambda c: FAMILIES[c][0])
    table["gate"] = table["contrast"].map(lambda c: FAMILIES[c][1])
    passed = np.array(table["p_fdr"].lt(ALPHA), dtype=bool)
    if "converged" in table:  # True, or "True" as read back from a TSV
        passed &= np.array(table["converged"].astype(str).eq("True"), dtype=bool)
    passed &= ~extrapolated(table)
    marks: dict[tuple[str, str], bool] = {}
    if reference is not None and len(reference):
        marks = {
            (r, c): bool(s)
            for r, c, s in zip(
                reference["region"], reference["contrast"], reference["significant"], strict=True
            )
        }
    gate_open = np.zeros(len(table), bool)
    significant = np.zeros(len(table), bool)
    # gates before the rows they open: primary, then its children, then theirs
    order = {"": 0, "MS-HC": 1, OMNIBUS: 2}
    for i in sorted(range(len(table)), key=lambda i: order[table["gate"].iat[i]]):
        region, gate = table["region"].iat[i], table["gate"].iat[i]
        gate_open[i] = gate == "" or marks.get((region, gate), False)
        significant[i] = gate_open[i] and passed[i]
        marks[(region, table["contrast"].iat[i])] = bool(significant[i])
    table["gate_open"] = gate_open
    table["significant"] = significant
    return table
