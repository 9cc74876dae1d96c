"""The group contrasts of the comparisons and who enters each: arms (:data:`CONTRASTS`),
participants at sites holding both arms, the model formula, and the rows whose age
correction is an extrapolation (:func:`extrapolated`). Moved from :mod:`.compare`, unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CONTRASTS",
    "MAX_OUTSIDE_AGE_SHARE",
    "MS_LABELS",
    "OMNIBUS",
    "extrapolated",
    "group_label",
]

#: Share of a contrast's participants older or younger than every control above which its
#: age correction is an extrapolation of the controls' curve: the row keeps its numbers, says
#: so in ``note`` and is never marked significant. In ``benchmarks/harmonize_stress.py``
#: (design ``older``: every patient older than the controls) p < 0.05 in 22 % of null
#: regions and the planted effect comes out at 40 %; no covariate can repair a contrast whose
#: arms do not share ages.
MAX_OUTSIDE_AGE_SHARE = 0.2


MS_LABELS = ("RRMS", "SPMS", "PPMS", "MS")  # "MS": clinically definite, phenotype not given
#: contrast -> (labels of arm a, labels of arm b); a label is HC or the MS phenotype.
CONTRASTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MS-HC": (MS_LABELS, ("HC",)),
    "RRMS-HC": (("RRMS",), ("HC",)),
    "SPMS-HC": (("SPMS",), ("HC",)),
    "PPMS-HC": (("PPMS",), ("HC",)),
    "CIS-HC": (("CIS",), ("HC",)),
    "progressive-RRMS": (("SPMS", "PPMS"), ("RRMS",)),
    "SPMS-PPMS": (("SPMS",), ("PPMS",)),
}
OMNIBUS = "phenotype-omnibus"
_PHENOTYPES = ("RRMS", "SPMS", "PPMS")
_KEY = "C(arm, Treatment('b'))[T.a]"


def group_label(group: pd.Series, phenotype: pd.Series) -> pd.Series:
    """``HC``, the MS phenotype, or ``MS`` where an MS participant's phenotype is missing."""
    label = phenotype.astype(object).where(phenotype.notna(), "MS")
    return label.where(group != "HC", "HC")


def _formula(part: pd.DataFrame, arm: str = "C(arm, Treatment('b'))") -> str:
    terms = [arm]
    if "age" in part and part["age"].std() > 0:
        terms.append("age")  # residual age: the control curve's own error, shared by age
    if part["sex"].nunique() > 1:
        terms.append("C(sex)")
    if part["site"].nunique() > 1:
        terms.append("C(site)")
    return "y ~ " + " + ".join(terms)


def _effective(part: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Participants with an outcome at sites holding both arms; the sites holding only one."""
    part = part[np.isfinite(part["y"])]
    arms = part.groupby("site")["arm"].nunique()
    shared = arms.index[arms == 2]
    return part[part["site"].isin(shared)], sorted(arms.index[arms < 2])


def _arms(sub: pd.DataFrame, contrast: str) -> pd.DataFrame:
    a, b = CONTRASTS[contrast]
    arm = np.where(sub["label"].isin(a), "a", np.where(sub["label"].isin(b), "b", None))
    return sub.assign(arm=arm).dropna(subset=["arm"])


def _prepare(data: pd.DataFrame, outcome: str) -> pd.DataFrame:
    data = data.dropna(subset=["sex", "site"])
    return data.assign(y=data[outcome], label=group_label(data["group"], data["phenotype"]))


def extrapolated(table: pd.DataFrame) -> np.ndarray:
    """Rows whose participants lie outside the controls' ages in more than
    :data:`MAX_OUTSIDE_AGE_SHARE` (False where ``n_outside_age`` is absent), shape (rows,)."""
    if "n_outside_age" not in table:
        return np.zeros(len(table), bool)
    n = pd.to_numeric(table["n_a"], errors="coerce") + pd.to_numeric(table["n_b"], errors="coerce")
    outside = pd.to_numeric(table["n_outside_age"], errors="coerce").fillna(0)
    return np.array(outside > MAX_OUTSIDE_AGE_SHARE * n, dtype=bool)


def _outside_age(table: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """``n_outside_age`` per row from ``data['age_support']`` (absent: 0) and its note."""
    if "age_support" not in data:
        table["n_outside_age"] = 0
        return table
    outside = data[(data["age_support"] == "outside") & np.isfinite(data["y"])]
    counts = []
    for region, contrast in zip(table["region"], table["contrast"], strict=True):
        sub = outside[outside["region"] == region]
        labels = (
            set(_PHENOTYPES)
            if contrast == OMNIBUS
            else {*CONTRASTS[contrast][0], *CONTRASTS[contrast][1]}
        )
        counts.append(int(sub["label"].isin(labels).sum()))
    table["n_outside_age"] = counts
    flagged = extrapolated(table)
    note = (
        f"more than {100 * MAX_OUTSIDE_AGE_SHARE:.0f} % of the participants older or younger "
        "than every control: age correction extrapolated, not marked significant"
    )
    table.loc[flagged, "note"] = [
        f"{n}; {note}" if n else note for n in table.loc[flagged, "note"].astype(str)
    ]
    return table
