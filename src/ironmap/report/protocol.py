"""The report's acquisition and quality-control tables, from ``group/participant_qc.tsv``
(:func:`ironmap.cohort.qc.collect_protocols`) and ``group/participant_flow.tsv``.
"""

from __future__ import annotations

import pandas as pd

from ..cohort.qc import MIN_REGION_VOXELS
from ..defaults import MIN_VOXELS
from ..regions.labels import DEEP_GM
from .style import GROUP_ORDER, labels, pretty_region

__all__ = [
    "CSF_PCT_FLAG",
    "FAILED_PCT_FLAG",
    "flagged_participants",
    "missing_records",
    "protocol_summary",
    "site_protocol_table",
    "voxel_count_table",
]

#: Failed voxels (% of the fit mask) from which a participant is listed for checking.
FAILED_PCT_FLAG = 1.0
#: A participant whose SNR is below this fraction of its site's median is listed for checking.
SNR_FRACTION_FLAG = 0.5
#: A participant with more than this share (%) of a deep grey-matter structure's voxels left out
#: as CSF-like (``csf_excluded_pct_<region>``) is listed: its segmentation misses the ventricles.
CSF_PCT_FLAG = 10.0


def _number(x: float, digits: int = 1) -> str:
    text = f"{x:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _values(series: pd.Series, fmt=str) -> str:
    """The distinct values of a column, ' / '-joined ('' when none is known)."""
    values = [fmt(v) for v in dict.fromkeys(series.dropna())]
    return " / ".join(dict.fromkeys(values))


def protocol_summary(qc: pd.DataFrame) -> pd.Series:
    """One protocol description per participant: field, echoes, TE range, voxel size (n/a
    parts left out), e.g. ``3 T, 9 echoes, TE 2.6-39.4 ms, 2 × 2 × 2 mm``."""

    def describe(row) -> str:
        parts = []
        if pd.notna(row.field_t):
            parts.append(f"{_number(row.field_t)} T")
        if pd.notna(row.n_echoes):
            parts.append(f"{int(row.n_echoes)} echoes")
        if pd.notna(row.te_min_ms):
            parts.append(f"TE {_number(row.te_min_ms)}-{_number(row.te_max_ms)} ms")
        if pd.notna(row.voxel_x_mm):
            size = " × ".join(_number(v) for v in (row.voxel_x_mm, row.voxel_y_mm, row.voxel_z_mm))
            parts.append(f"{size} mm")
        return ", ".join(parts) if parts else "not recorded"

    return qc.apply(describe, axis=1) if len(qc) else pd.Series(dtype=object)


def _median_range(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.median():.{digits}f} ({values.min():.{digits}f}-{values.max():.{digits}f})"


def site_protocol_table(qc: pd.DataFrame, flow: pd.DataFrame) -> pd.DataFrame:
    """Per site: n analysed per group, n excluded, the protocol, noise, SNR and failed voxels.

    Counts come from the participant flow (every row of ``participants.tsv``); the rest from
    the QC table (participants with participant-stage outputs).
    """
    flow = flow.assign(label=labels(flow))
    analysed = flow[flow["status"] == "analysed"]
    present = [g for g in GROUP_ORDER if g in set(flow["label"])]
    qc = qc.assign(protocol=protocol_summary(qc))
    rows = []
    for site in sorted(flow["site"].astype(str).unique()):
        at = qc[qc["site"].astype(str) == site]
        row = {"site": site}
        for g in present:
            row[g] = str(
                int(((analysed["site"].astype(str) == site) & (analysed["label"] == g)).sum())
            )
        excluded = (flow["site"].astype(str) == site) & (flow["status"] == "excluded")
        row["excluded"] = str(int(excluded.sum()))
        row["protocol"] = "\n".join(dict.fromkeys(at["protocol"])) if len(at) else ""
        row["B0 corr."] = _values(
            at["b0_correction"], lambda v: "yes" if v in (True, "True") else "no"
        )
        row["fit method"] = _values(at["fit_method"])
        row["noise sigma\nmedian (range)"] = _median_range(at["noise_sigma"])
        row["SNR, echo 1\nmedian (range)"] = _median_range(at["snr"], 0)
        row["failed voxels, %\nmedian (max)"] = _failed(at["failed_voxel_pct"])
        rows.append(row)
    return pd.DataFrame(rows)


def _failed(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return ""
    return f"{values.median():.2f} ({values.max():.2f})"


def voxel_count_table(
    qc: pd.DataFrame, *, min_voxels: int = MIN_VOXELS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per site and deep-GM region: the smallest per-hemisphere voxel count of any participant.

    Returns
    -------
    table : pandas.DataFrame
        ``site`` and one column per region: ``smallest (k < 20)`` where k participants of the
        site have fewer than :data:`~ironmap.cohort.qc.MIN_REGION_VOXELS` voxels, and
        ``k of n < min_voxels left out`` where the minimum-voxel rule left k out.
    flags : pandas.DataFrame of bool
        Same shape: True where the smallest count is below the threshold.
    """
    columns = [r for r in DEEP_GM if f"min_voxels_{r}" in qc.columns]
    rows, flags = [], []
    for site in sorted(qc["site"].dropna().astype(str).unique()):
        at = qc[qc["site"].astype(str) == site]
        row, flag = {"site": site}, {"site": False}
        for region in columns:
            counts = at[f"min_voxels_{region}"].dropna()
            low = int((counts < MIN_REGION_VOXELS).sum())
            lost = int((counts < min_voxels).sum())
            name = pretty_region(region)
            row[name] = (
                ""
                if counts.empty
                else f"{counts.median():.0f} (min {int(counts.min())})"
                + (f"\n{low} of {len(counts)} < {MIN_REGION_VOXELS}" if low else "")
                + (f"\n{lost} of {len(counts)} < {min_voxels} left out" if lost else "")
            )
            flag[name] = bool(low)
        rows.append(row)
        flags.append(flag)
    return pd.DataFrame(rows), pd.DataFrame(flags)


def flagged_participants(qc: pd.DataFrame) -> pd.DataFrame:
    """Participants to look at: doubtful alignment, many failed voxels, low SNR for the site, or
    a deep grey-matter structure with many CSF-like voxels."""
    if qc.empty:
        return pd.DataFrame(columns=["participant", "site", "group", "why"])
    reasons: dict[str, list[str]] = {}
    site_snr = qc.groupby(qc["site"].astype(str))["snr"].transform("median")
    for i, row in enumerate(qc.itertuples(index=False)):
        why = []
        if getattr(row, "alignment", None) == "doubtful":
            why.append("segmentation alignment doubtful")
        if pd.notna(row.failed_voxel_pct) and row.failed_voxel_pct >= FAILED_PCT_FLAG:
            why.append(f"{row.failed_voxel_pct:.1f} % of the fit mask failed")
        snr, median = row.snr, site_snr.iloc[i]
        if pd.notna(snr) and pd.notna(median) and snr < SNR_FRACTION_FLAG * median:
            why.append(f"SNR {snr:.0f}, under half the site's median ({median:.0f})")
        csf = [
            f"{_number(pct)} % of the {pretty_region(region)}'s"
            for region in DEEP_GM
            if pd.notna(pct := getattr(row, f"csf_excluded_pct_{region}", None))
            and pct > CSF_PCT_FLAG
        ]
        if csf:
            why.append(
                "segmentation does not follow the ventricles: "
                f"{' and '.join(csf)} voxels were CSF-like"
            )
        if why:
            reasons[row.participant_id] = why
    flagged = qc[qc["participant_id"].isin(reasons)]
    return pd.DataFrame(
        {
            "participant": flagged["participant_id"],
            "site": flagged["site"],
            "group": labels(flagged) if len(flagged) else pd.Series(dtype=object),
            "why": flagged["participant_id"].map(lambda p: "; ".join(reasons[p])),
        }
    )


def missing_records(qc: pd.DataFrame) -> int:
    """Participants without a protocol record (no provenance file or map sidecar)."""
    return int((qc["fit_method"].isna() | qc["n_echoes"].isna()).sum()) if len(qc) else 0
