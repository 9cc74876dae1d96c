"""The QC index, ``OUTPUT_DIR/qc/index.html``: one row per participant, linking its QC page.

The numbers and flags come from :func:`ironmap.cohort.qc.qc_overview` (failed fits, alignment,
the smallest per-hemisphere voxel count, structures with ``|z|`` above the limit, the share left
out as CSF-like); this module only formats them. The rows come worst first (most flags), so the
page is useful without scripts; a small inline script sorts by a clicked column. The page is
self-contained (no external resources), like the report.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from ..cohort.qc import MIN_REGION_VOXELS, OVERVIEW_FLAGS, Z_FLAG, qc_overview
from ..defaults import MIN_VOXELS
from ..io import atomic_write_bytes
from ..io.derivatives import QC_INDEX, ParticipantOutputs
from .protocol import CSF_PCT_FLAG, FAILED_PCT_FLAG
from .style import pretty_region

__all__ = ["qc_index_html", "write_qc_index"]

#: Click-to-sort: numbers by their ``data-v``, text otherwise; a second click reverses.
_SORT_SCRIPT = """
document.querySelectorAll('th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0], col = +th.dataset.col;
    var up = th.dataset.dir !== 'up'; th.dataset.dir = up ? 'up' : 'down';
    var key = function (tr) { var c = tr.cells[col], v = c.dataset.v;
      return v === undefined ? c.textContent : (v === '' ? NaN : +v); };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x === 'number' || typeof y === 'number') {
        if (isNaN(x)) return 1; if (isNaN(y)) return -1; return up ? x - y : y - x; }
      return up ? x.localeCompare(y) : y.localeCompare(x);
    }).forEach(function (tr) { body.appendChild(tr); });
  });
});
"""

_STYLE = """body{font-family:sans-serif;margin:1em;font-size:14px}
table{border-collapse:collapse}th,td{padding:2px 8px;border-bottom:1px solid #ddd}
th{background:#f0f0f0;cursor:pointer;text-align:left;position:sticky;top:0}
td.n{text-align:right}td.flag{background:#fdd;color:#a00;font-weight:bold}
p.note{color:#444;max-width:70em}"""


def _number(value, digits: int) -> str:
    return "" if pd.isna(value) else f"{float(value):.{digits}f}"


def _cell(text: str, *, sort=None, flag: bool = False, numeric: bool = False) -> str:
    classes = " ".join(c for c, on in (("n", numeric), ("flag", flag)) if on)
    attrs = f" class='{classes}'" if classes else ""
    if sort is not None:
        attrs += " data-v=''" if pd.isna(sort) else f" data-v='{float(sort):.12g}'"
    return f"<td{attrs}>{text}</td>"


def _link(row, output_dir: Path) -> str:
    """The participant's name, linked (relative) to its QC page when that exists."""
    session = row.session if isinstance(row.session, str) else None
    outputs = ParticipantOutputs(
        output_dir,
        str(row.participant_id).removeprefix("sub-"),
        None if session is None else session.removeprefix("ses-"),
    )
    name = html.escape(outputs.name)
    page = outputs.qc_page
    if not page.exists():
        return f"{name} (no QC page)"
    href = Path(os.path.relpath(page, (output_dir / QC_INDEX).parent)).as_posix()
    return f"<a href='{html.escape(href)}'>{name}</a>"


def _structure(name) -> str:
    if not isinstance(name, str):
        return ""
    region, _, hemisphere = name.partition("/")
    return html.escape(pretty_region(region) + (f", {hemisphere}" if hemisphere else ""))


def qc_index_html(
    overview: pd.DataFrame, output_dir: str | Path, *, min_voxels: int = MIN_VOXELS
) -> str:
    """The QC index page of :func:`~ironmap.cohort.qc.qc_overview`'s table (rows in its order).

    Links are relative to ``OUTPUT_DIR/qc/``; a participant without a QC page is named unlinked.
    ``min_voxels`` is the threshold ``overview``'s ``flag_few_voxels`` was computed with (the
    group statistics' minimum-voxel rule), stated on the page.
    """
    output_dir = Path(output_dir)
    headers = [
        "participant", "site", "group", "voxel (mm)", "failed fits (%)", "alignment (score)",
        "fewest voxels / hemisphere", f"structures |z| > {Z_FLAG:g} (max |z|)",
        "most CSF-like (% left out)", "flags",
    ]  # fmt: skip
    rows = []
    for row in overview.itertuples(index=False):
        alignment = "" if pd.isna(row.alignment) else html.escape(str(row.alignment))
        if pd.notna(row.alignment_score):
            alignment += f" ({float(row.alignment_score):.2g})"
        flags = [text for column, text in OVERVIEW_FLAGS.items() if getattr(row, column)]
        cells = [
            _cell(_link(row, output_dir)),
            _cell(html.escape("" if pd.isna(row.site) else str(row.site))),
            _cell(html.escape("" if pd.isna(row.group) else str(row.group))),
            _cell(html.escape("" if pd.isna(row.voxel_mm) else str(row.voxel_mm))),
            _cell(_number(row.failed_voxel_pct, 2), sort=row.failed_voxel_pct,
                  flag=row.flag_failed, numeric=True),
            _cell(alignment, flag=row.flag_alignment),
            _cell(f"{_number(row.min_voxels, 0)} {_structure(row.min_voxels_structure)}",
                  sort=row.min_voxels, flag=row.flag_few_voxels),
            _cell("" if pd.isna(row.n_z_over)
                  else f"{int(row.n_z_over)} ({_number(row.max_abs_z, 2)})",
                  sort=row.n_z_over, flag=row.flag_z),
            _cell(_number(row.csf_excluded_pct, 1) + (
                      f" {_structure(row.csf_excluded_structure)}"
                      if row.csf_excluded_pct > 0 else ""),
                  sort=row.csf_excluded_pct, flag=row.flag_csf),
            _cell(html.escape("; ".join(flags)), sort=row.n_flags),
        ]  # fmt: skip
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th data-col='{i}'>{html.escape(h)}</th>" for i, h in enumerate(headers))
    counts = ", ".join(
        f"{int(overview[column].sum())} {text}" for column, text in OVERVIEW_FLAGS.items()
    )
    note = (
        f"{len(overview)} participants, worst first (most flags); click a column header to "
        f"sort. Flagged (red): segmentation alignment doubtful; at least {FAILED_PCT_FLAG:g} % "
        f"of the fit mask failed; fewer than {min_voxels} R2* voxels in a hemisphere of "
        f"a deep grey-matter structure (left out of the group statistics; counts under "
        f"{MIN_REGION_VOXELS} are noisy, see each page); a structure's R2* z-score "
        f"(against the normative model, "
        f"analysed participants only) beyond ±{Z_FLAG:g}; more than {CSF_PCT_FLAG:g} % of a "
        f"structure left out as CSF-like. Flagged: {counts}. Per participant: "
        "group/participant_qc.tsv and group/regions.tsv."
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ironmap QC index</title>
<style>{_STYLE}</style></head>
<body><h1>Quality control: every participant</h1>
<p class="note">{html.escape(note)}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


def write_qc_index(output_dir: str | Path, result) -> Path:
    """Write ``OUTPUT_DIR/qc/index.html`` (atomically) for a group stage's ``result``
    (:class:`~ironmap.workflows.group.GroupResult`: its ``participant_qc`` and ``regions``)."""
    minimum = int(getattr(result, "min_voxels", MIN_VOXELS))
    overview = qc_overview(
        result.participant_qc,
        result.regions,
        failed_pct=FAILED_PCT_FLAG,
        csf_pct=CSF_PCT_FLAG,
        min_voxels=minimum,
    )
    path = Path(output_dir) / QC_INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        path, qc_index_html(overview, output_dir, min_voxels=minimum).encode("utf-8")
    )
    return path
