"""The participant-flow tables: counts of analysed and excluded participants by reason and
group (Table S1, from ``group/participant_flow.tsv``) and the list of exclusions.
"""

from __future__ import annotations

import re

import pandas as pd

from .style import GROUP_ORDER, labels, pretty_region

#: A minimum-voxel note of participant_flow.tsv: ``<region>: left 3, right 8 voxels (...)``.
_SMALL_NOTE = re.compile(r"(\w+): left \d+, right \d+ voxels")


def _flow_label(note: str) -> str:
    """The Table S1 row of an analysed participant's flow ``note``: the age-support flag (the
    note's head) and each structure the minimum-voxel rule left out, readable."""
    small = _SMALL_NOTE.findall(note)
    parts = [] if note.startswith(tuple(f"{r}:" for r in small)) else [note.split(":")[0]]
    if small:
        parts.append(", ".join(pretty_region(r) for r in small) + " left out (too few voxels)")
    return "; ".join(p for p in parts if p)


def flow_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Counts of analysed (apart: those with a note, e.g. beyond the controls' ages) and of
    each exclusion reason, by group label."""
    note = flow["note"].fillna("") if "note" in flow else pd.Series("", index=flow.index)
    flagged = "analysed, " + note.map(_flow_label)
    reason = flow["reason"].where((flow["reason"] != "") | (note == ""), flagged)
    flow = flow.assign(label=labels(flow), reason=reason)
    counts = flow.pivot_table(
        index="reason", columns="label", values="participant_id", aggfunc="count", fill_value=0
    )
    counts = counts.reindex(columns=[g for g in GROUP_ORDER if g in counts.columns])
    counts["total"] = counts.sum(axis=1)
    counts.index = [r or "analysed" for r in counts.index]
    return counts.astype(str).rename_axis(columns=None).reset_index(names="status / reason")


def exclusions_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Every excluded participant with group, site and the reason."""
    excluded = flow[flow["status"] == "excluded"]
    return pd.DataFrame(
        {
            "participant": excluded["participant_id"],
            "group": labels(excluded),
            "site": excluded["site"],
            "reason": excluded["reason"],
        }
    )
