"""The report's acquisition and quality-control section: participants and protocol per
site, voxel counts of the deep grey-matter structures and the participants to check.
"""

from __future__ import annotations

import pandas as pd

from ..cohort.qc import MIN_REGION_VOXELS
from ..io.derivatives import QC_INDEX
from . import protocol
from .numbering import _Numbers


def _qc(n: _Numbers, qc: pd.DataFrame, flow: pd.DataFrame, *, min_voxels: int) -> str:
    if qc.empty:
        return "<p>No participant-stage outputs to summarise.</p>"
    missing = protocol.missing_records(qc)
    note = (
        f"<p class='note'>{missing} participant(s) have no provenance record or map sidecar "
        "(e.g. tables copied without the maps): their protocol cells are empty.</p>"
        if missing
        else ""
    )
    note += f"<p>Every participant's QC page, with flags: <a href='{QC_INDEX}'>{QC_INDEX}</a>.</p>"
    sites = n.table(
        protocol.site_protocol_table(qc, flow),
        "Participants and protocol per site: analysed participants per group and excluded "
        "participants; field strength, echoes, echo times and voxel size (from the R2* maps' "
        "sidecars and headers); field-gradient correction and fit method (from each "
        "participant's provenance); noise SD (magnitude units); first-echo SNR (median fitted "
        "first-echo signal in the fit mask over the noise SD); failed voxels (% of the fit "
        "mask). Per participant: group/participant_qc.tsv.",
        kind="S",
        text=("protocol",),
    )
    counts, flags = protocol.voxel_count_table(qc, min_voxels=min_voxels)
    voxels = n.table(
        counts,
        "R2* voxels per hemisphere of the deep grey-matter structures, per site: median over "
        "participants (smallest in any participant); below, in red: participants with fewer "
        f"than {MIN_REGION_VOXELS} voxels in a hemisphere, whose regional median rests on few "
        "voxels (e.g. the red nucleus on 2 mm data), and those with fewer than "
        f"{min_voxels}, whose structure the minimum-voxel rule left out of the group "
        "statistics.",
        kind="S",
        cell_class=lambda r, c: "flag" if c in flags.columns and flags.at[r, c] else "",
    )
    flagged = protocol.flagged_participants(qc)
    checks = (
        n.table(
            flagged,
            "Participants to check: segmentation alignment doubtful, at least "
            f"{protocol.FAILED_PCT_FLAG:g} % failed voxels, SNR under half the site median, or "
            f"more than {protocol.CSF_PCT_FLAG:g} % of a deep grey-matter structure CSF-like "
            "(a segmentation that does not follow the ventricles).",
            kind="S",
            left=4,
        )
        if len(flagged)
        else "<p>No participant has a doubtful alignment, 1 % or more failed voxels, an SNR "
        f"under half its site's median or more than {protocol.CSF_PCT_FLAG:g} % of a deep "
        "grey-matter structure CSF-like.</p>"
    )
    return note + sites + voxels + checks
