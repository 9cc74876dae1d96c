"""The QC index (``qc/index.html``): one row per participant, links to the QC pages, flags."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.cohort.qc import MIN_REGION_VOXELS, QC_COLUMNS, Z_FLAG, qc_overview
from ironmap.io.derivatives import QC_INDEX, ParticipantOutputs
from ironmap.regions import DEEP_GM
from ironmap.report.protocol import CSF_PCT_FLAG, FAILED_PCT_FLAG
from ironmap.report.qc_index import qc_index_html

#: Columns of the index, by header position.
PARTICIPANT, FAILED, MIN_VOXELS, Z_OVER, CSF, FLAGS = 0, 4, 6, 7, 8, 9


def index_rows(page: str) -> list[list[tuple[str, str]]]:
    """The body rows of the index: per cell its attributes and its content."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        re.findall(r"<td([^>]*)>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def sort_value(cell: tuple[str, str]) -> float:
    value = re.search(r"data-v='([^']*)'", cell[0]).group(1)
    return float(value) if value else np.nan


def _cohort(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four participants: sub-01 clean; sub-02 2.5 % failed; sub-03 a 3-voxel left red nucleus
    and two structures with |z| > 3; sub-04 alignment doubtful and no QC page. QC pages for
    sub-01..03 (their files only)."""
    rows = []
    for k, pid in enumerate(["sub-01", "sub-02", "sub-03", "sub-04"]):
        for j, region in enumerate(DEEP_GM):
            left = 3 if (pid == "sub-03" and region == "red_nucleus") else 30 + j + k
            z = 3.4 if (pid == "sub-03" and j < 2) else (-3.0 if j == 2 else 0.5)
            for hemi, n, zz in (("left", left, np.nan), ("right", 40, np.nan),
                                ("both", left + 40, z)):  # fmt: skip
                rows.append((pid, region, hemi, n, "ok", 0.1 * k, zz))
    columns = ["participant_id", "region", "hemisphere", "n_voxels", "alignment",
               "alignment_score", "r2star_z"]  # fmt: skip
    regions = pd.DataFrame(rows, columns=columns)
    qc = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02", "sub-03", "sub-04"],
            "site": ["a", "a", "b", "b"],
            "group": ["HC", "MS", "MS", "HC"],
            "voxel_x_mm": 2.0,
            "voxel_y_mm": 2.0,
            "voxel_z_mm": [2.0, 3.0, 3.0, 2.0],
            "failed_voxel_pct": [0.1, 2.5, 0.0, 0.2],
            "alignment": ["ok", "ok", "ok", "doubtful"],
            "csf_excluded_pct_caudate": [0.0, 12.0 * (CSF_PCT_FLAG < 12), 1.0, 0.0],
        }
    ).reindex(columns=[c for c in QC_COLUMNS if c != "session"])
    for pid in ("sub-01", "sub-02", "sub-03"):
        page = ParticipantOutputs(out, pid.removeprefix("sub-")).qc_page
        page.parent.mkdir(parents=True)
        page.write_text("<html></html>")
    return qc, regions


def test_index_rows_links_flags_and_worst_first(tmp_path):
    qc, regions = _cohort(tmp_path)
    overview = qc_overview(qc, regions, failed_pct=FAILED_PCT_FLAG, csf_pct=CSF_PCT_FLAG)
    page = qc_index_html(overview, tmp_path)
    (tmp_path / QC_INDEX).parent.mkdir()
    (tmp_path / QC_INDEX).write_text(page)
    rows = index_rows(page)
    assert len(rows) == len(qc)
    names = [re.sub(r"<[^>]+>", "", r[PARTICIPANT][1]).split()[0] for r in rows]
    # worst first: two flags (sub-02: failed %, CSF-like caudate; sub-03: few voxels, |z|;
    # the failed fits rank first), one (sub-04: alignment), none (sub-01)
    assert names == ["sub-02", "sub-03", "sub-04", "sub-01"]
    assert [sort_value(r[FLAGS]) for r in rows] == [2, 2, 1, 0]
    assert "flag" not in "".join(attrs for attrs, _ in rows[-1])
    for row, pid in zip(rows, names, strict=True):
        link = re.search(r"href='([^']+)'", row[PARTICIPANT][1])
        assert (link is None) == (pid == "sub-04")
        if link:  # relative to qc/, resolving to the participant's page
            target = (tmp_path / QC_INDEX).parent / link.group(1)
            assert target.resolve() == ParticipantOutputs(tmp_path, pid[4:]).qc_page.resolve()
            assert target.exists()
        ours = regions[(regions.participant_id == pid) & regions.region.isin(DEEP_GM)]
        hemis = ours[ours.hemisphere != "both"]
        assert sort_value(row[MIN_VOXELS]) == hemis.n_voxels.min()
        assert ("flag" in row[MIN_VOXELS][0]) == (hemis.n_voxels.min() < MIN_REGION_VOXELS)
        over = (ours[ours.hemisphere == "both"].r2star_z.abs() > Z_FLAG).sum()
        assert sort_value(row[Z_OVER]) == over  # |z| = 3.0 exactly is not above the limit
        assert ("flag" in row[Z_OVER][0]) == (over > 0)
        failed = qc.set_index("participant_id").at[pid, "failed_voxel_pct"]
        assert sort_value(row[FAILED]) == failed
        assert ("flag" in row[FAILED][0]) == (failed >= FAILED_PCT_FLAG)
    assert "red nucleus, left" in rows[1][MIN_VOXELS][1]
    assert "<script>" in page
    assert "http" not in page.split("<body>")[1]
