"""The participant flow of the group stage (``group/participant_flow.tsv``).

Every row of ``participants.tsv``, ``analysed`` or ``excluded`` with the reason, and a ``note``
for analysed participants beyond the controls' age support or with structures left out by the
minimum-voxel rule.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..defaults import MIN_VOXELS
from ..errors import IronmapWarning

FLOW_COLUMNS = ["participant_id", "group", "phenotype", "site", "status", "reason", "note"]


def participant_flow(
    participants: pd.DataFrame,
    exclusions: dict[str, str],
    *,
    age_support: pd.Series | None = None,
    age_limits: tuple[float, float, float, float] | None = None,
    small: pd.DataFrame | None = None,
    min_voxels: int = MIN_VOXELS,
) -> pd.DataFrame:
    """Every row of ``participants.tsv``: ``analysed``, or ``excluded`` with the reason.

    ``small`` (:func:`small_regions` at ``min_voxels``) adds to an analysed participant's
    ``note`` each structure the minimum-voxel rule left out, with its voxel counts (warned by
    :func:`analyse_cohort`).

    Warns once, with the count of each reason, when anyone is excluded, and once, with their
    number, when analysed participants are younger or older than every control
    (``age_support``, participant_id -> level of ``AGE_SUPPORT_LEVELS``, against the controls'
    ``age_limits`` in years: minimum, 5th, 95th percentile, maximum); their ``note`` says so.
    """
    flow = participants[["participant_id", "group", "phenotype", "site"]].copy()
    flow["reason"] = flow["participant_id"].map(lambda pid: exclusions.get(pid, ""))
    flow["status"] = np.where(flow["reason"] == "", "analysed", "excluded")
    flow["note"] = _age_notes(flow, age_support, age_limits)
    if small is not None and len(small):
        flow["note"] = _join_notes(flow["note"], _voxel_notes(flow, small, min_voxels))
    excluded = flow[flow["status"] == "excluded"]
    if len(excluded):
        kinds = excluded["reason"].str.split(":").str[0].value_counts()
        listed = "; ".join(f"{n} x {reason}" for reason, n in kinds.items())
        warnings.warn(
            f"{len(excluded)} of {len(flow)} participants excluded ({listed}); "
            "see group/participant_flow.tsv",
            IronmapWarning,
            stacklevel=2,
        )
    return flow[FLOW_COLUMNS]


def _voxel_notes(flow: pd.DataFrame, small: pd.DataFrame, min_voxels: int) -> pd.Series:
    """The flow's ``note`` of the minimum-voxel rule, per analysed participant ('' if none)."""
    text = small.assign(
        words=small["region"]
        + ": left "
        + small["n_voxels_left"].astype(int).astype(str)
        + ", right "
        + small["n_voxels_right"].astype(int).astype(str)
        + f" voxels (fewer than {min_voxels} in a hemisphere): left out of the group statistics"
    )
    per = text.groupby("participant_id", sort=False)["words"].agg("; ".join)
    notes = flow["participant_id"].map(per).fillna("")
    return notes.where(flow["status"] == "analysed", "")


def _join_notes(first: pd.Series, second: pd.Series) -> pd.Series:
    """Two note columns joined with '; ' (either may be empty)."""
    both = (first != "") & (second != "")
    return (first + np.where(both, "; ", "") + second).astype(object)


def _age_notes(flow: pd.DataFrame, support: pd.Series | None, limits) -> pd.Series:
    """The flow's ``note``: analysed participants beyond the controls' age support, warned."""
    notes = pd.Series("", index=flow.index, dtype=object)
    if support is None or limits is None:
        return notes
    level = flow["participant_id"].map(support).where(flow["status"] == "analysed")
    low, p5, p95, high = limits
    text = {
        "outside": f"age outside the controls' range ({low:.1f}-{high:.1f} years)",
        "beyond_p5_p95": f"age beyond the controls' 5th-95th percentile ({p5:.1f}-{p95:.1f} "
        "years)",
    }
    tail = ": analysed; its age-corrected R2* rests on the linear tail of the age curve"
    for key, words in text.items():
        notes[level == key] = words + tail
    outside = int((level == "outside").sum())
    if outside:
        warnings.warn(
            f"{outside} analysed participant(s) are outside the controls' age range "
            f"({low:.1f}-{high:.1f} years) and {int((level == 'beyond_p5_p95').sum())} beyond "
            f"its 5th-95th percentile ({p5:.1f}-{p95:.1f}); their age-corrected R2* and z-scores "
            "rest on the linear tails of the controls' age curves (age_support in "
            "group/subjects.tsv, note in group/participant_flow.tsv)",
            IronmapWarning,
            stacklevel=3,
        )
    return notes
