"""The minimum-voxel rule for small nuclei, and no empty tables of analyses that did not run."""

from __future__ import annotations

import inspect
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.cli.parser import build_parser
from ironmap.cohort.analysis import analyse_cohort
from ironmap.defaults import MIN_VOXELS
from ironmap.errors import IronmapWarning
from ironmap.io.derivatives import group_path, read_tsv
from ironmap.report.analyses import min_voxel_rule, without_small
from ironmap.workflows.group import GroupConfig, run_group
from test_group import _write_cohort
from test_longitudinal import _longitudinal_cohort

NOT_RUN = ("longitudinal.tsv", "longitudinal_sessions.tsv", "lesion_models.tsv")


def _set_counts(out, pid: str, region: str, left: int, right: int) -> None:
    """Rewrite one participant's per-hemisphere voxel counts of one structure."""
    path = out / pid / "anat" / f"{pid}_regions.tsv"
    table = pd.read_csv(path, sep="\t")
    for hemi, n in (("left", left), ("right", right), ("both", left + right)):
        table.loc[(table.region == region) & (table.hemisphere == hemi), "n_voxels"] = n
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def test_three_voxels_in_the_left_red_nucleus_leave_out_that_region_only(tmp_path):
    """Before: a 3-voxel red nucleus entered the statistics like any other, without a word."""
    bids, out = _write_cohort(tmp_path)
    _set_counts(out, "sub-045", "red_nucleus", 3, 9)  # an MS participant
    _set_counts(out, "sub-046", "red_nucleus", MIN_VOXELS, MIN_VOXELS)  # at the limit: kept
    with pytest.warns(IronmapWarning) as record:
        result = run_group(GroupConfig(bids, out, mixed=False))
    warned = [str(w.message) for w in record if "minimum-voxel rule" in str(w.message)]
    assert len(warned) == 1
    assert f"fewer than {MIN_VOXELS} voxels in a hemisphere" in warned[0]
    assert "red_nucleus 1 participant" in warned[0]

    regions = read_tsv(group_path(out, "regions.tsv"))
    both = regions[regions.hemisphere == "both"].set_index(["participant_id", "region"])
    for column in ("r2star_harmonized", "r2star_corrected", "r2star_z"):
        assert np.isnan(both.loc[("sub-045", "red_nucleus"), column])
        assert np.isfinite(both.loc[("sub-046", "red_nucleus"), column])
        others = both.loc["sub-045"].drop(index=["red_nucleus", "lesions"])
        assert np.isfinite(others[column]).all()
    assert np.isfinite(both.loc[("sub-045", "red_nucleus"), "r2star_median"])  # still measured

    flow = read_tsv(group_path(out, "participant_flow.tsv")).set_index("participant_id")
    assert flow.loc["sub-045", "status"] == "analysed"
    assert "red_nucleus" in flow.loc["sub-045", "note"]
    assert "left 3, right 9 voxels" in flow.loc["sub-045", "note"]
    assert flow["note"].fillna("").str.contains("voxels").sum() == 1

    comparison = read_tsv(group_path(out, "group_comparison.tsv"))
    ms_hc = comparison[comparison.contrast == "MS-HC"].set_index("region")
    assert ms_hc.loc["red_nucleus", "n_a"] + ms_hc.loc["red_nucleus", "n_b"] == 89
    assert ms_hc.loc["putamen", "n_a"] + ms_hc.loc["putamen", "n_b"] == 90

    # the report: the rule, and per site the count the participant QC table gives
    page = result.report.read_text()
    rule = re.search(r"Minimum-voxel rule:[^<]*", page)
    assert rule is not None
    assert f"fewer than {MIN_VOXELS} R2* voxels in either hemisphere" in rule.group(0)
    assert "red nucleus 1 participant" in rule.group(0)
    qc = read_tsv(group_path(out, "participant_qc.tsv"))
    low = qc[qc.min_voxels_red_nucleus < MIN_VOXELS]
    assert low.participant_id.tolist() == ["sub-045"]
    site = low.site.iloc[0]
    assert f"1 of {int((qc.site == site).sum())} &lt; {MIN_VOXELS} left out" in page
    assert "Small nuclei" not in page  # 100 voxels per hemisphere: no caveat
    methods = page[page.index("<h2>Methods</h2>") :]
    assert (
        f"A participant's structure with fewer than {MIN_VOXELS} R2* voxels in either hemisphere "
        "was left out of the group statistics (red nucleus: 1 participant(s))."
    ) in methods

    # no empty tables of analyses that did not run; provenance and the report say why
    for name in NOT_RUN:
        assert not group_path(out, name).exists()
        assert not group_path(out, name.replace(".tsv", ".json")).exists()
    record = json.loads(group_path(out, "provenance.json").read_text())
    assert record["analyses"]["longitudinal"] == {
        "ran": False,
        "reason": "one session per participant",
    }
    assert record["analyses"]["lesion_models"]["ran"] is False
    assert record["analyses"]["comparison_mixed"] == {
        "ran": False,
        "reason": "not requested (mixed=False)",
    }
    assert record["options"]["min_voxels"] == MIN_VOXELS
    assert "The longitudinal analysis was not run: one session per participant" in page

    again = run_group(GroupConfig(bids, out, mixed=False))  # up to date: read back
    assert again.skipped
    assert again.longitudinal.empty
    assert again.lesion_models.empty
    assert again.min_voxels == MIN_VOXELS
    assert again.analyses["longitudinal"]["ran"] is False


def test_the_threshold_is_the_one_constant():
    assert GroupConfig.__dataclass_fields__["min_voxels"].default == MIN_VOXELS
    assert inspect.signature(analyse_cohort).parameters["min_voxels"].default == MIN_VOXELS
    args = build_parser().parse_args(["run", "b", "o", "group"])
    assert args.min_voxels == MIN_VOXELS
    assert (
        build_parser().parse_args(["run", "b", "o", "group", "--min-voxels", "8"]).min_voxels == 8
    )


def test_changing_min_voxels_changes_the_provenance_and_removes_stale_tables(tmp_path, capsys):
    bids, out = _write_cohort(tmp_path)
    _set_counts(out, "sub-045", "red_nucleus", 6, 7)
    run_group(GroupConfig(bids, out, report=False))
    assert main(["run", str(bids), str(out), "group", "--min-voxels", "8", "-q"]) == 2
    assert "option min_voxels: 5 -> 8" in capsys.readouterr().err
    stale = group_path(out, "longitudinal.tsv")
    stale.write_text("region\tterm\n")  # a table of an earlier run that had sessions
    code = main(["run", str(bids), str(out), "group", "--min-voxels", "8", "--force", "-q"])
    assert code == 0
    assert "minimum-voxel rule: fewer than 8 voxels" in capsys.readouterr().err
    record = json.loads(group_path(out, "provenance.json").read_text())
    assert record["options"]["min_voxels"] == 8
    assert not stale.exists()
    flow = read_tsv(group_path(out, "participant_flow.tsv")).set_index("participant_id")
    assert "left 6, right 7 voxels (fewer than 8" in flow.loc["sub-045", "note"]


def test_the_report_warns_about_small_nuclei_with_their_counts():
    """Before: a red nucleus of a median 6 voxels per hemisphere was a headline without caveat."""
    counts = {"putamen": 300, "substantia_nigra": 10, "red_nucleus": 6}
    rows = [
        (f"sub-{i}", region, hemi, n + i)
        for i in range(5)
        for region, n in counts.items()
        for hemi in ("left", "right")
    ]
    regions = pd.DataFrame(rows, columns=["participant_id", "region", "hemisphere", "n_voxels"])
    subjects = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(5)], "analysed": True})
    result = SimpleNamespace(regions=regions, subjects=subjects, min_voxels=7)
    text = min_voxel_rule(result)
    assert "fewer than 7 R2* voxels in either hemisphere" in text
    assert "left out: red nucleus 1 participant(s)" in text  # sub-0: 6 voxels
    assert "<b>Small nuclei</b>" in text
    assert "substantia nigra 12, red nucleus 8 (fewer than 20)" in text
    # Table 2's descriptive mean (SD) counts the participants the statistics count
    long = regions.assign(r2star_median=30.0).drop_duplicates(["participant_id", "region"])
    shown = without_small(long, result).set_index(["participant_id", "region"])["r2star_median"]
    assert np.isnan(shown[("sub-0", "red_nucleus")])
    assert shown.drop(("sub-0", "red_nucleus")).eq(30.0).all()


def test_the_rule_applies_to_each_session_of_the_longitudinal_analysis(tmp_path):
    """A follow-up session with 3 voxels in the left pallidum leaves that session's pallidum out
    of the longitudinal models; its other sessions and structures stay."""
    bids, out, _ = _longitudinal_cohort(tmp_path, n_hc=12, n_ms=12)
    path = out / "sub-005" / "ses-02" / "anat" / "sub-005_ses-02_regions.tsv"
    table = read_tsv(path)
    table.loc[(table.region == "pallidum") & (table.hemisphere == "left"), "n_voxels"] = 3
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    with pytest.warns(IronmapWarning) as record:
        run_group(GroupConfig(bids, out, report=False, mixed=False))
    messages = [str(w.message) for w in record if "minimum-voxel rule" in str(w.message)]
    assert messages == [
        f"minimum-voxel rule: 1 session(s) x structure with fewer than {MIN_VOXELS} voxels in "
        "a hemisphere are left out of the longitudinal models (pallidum 1)"
    ]
    sessions = read_tsv(group_path(out, "longitudinal_sessions.tsv"))
    pal = sessions[(sessions.participant_id == "sub-005") & (sessions.region == "pallidum")]
    pal = pal.set_index("session")
    assert np.isnan(pal.loc["ses-02", "r2star_site_adjusted"])
    assert np.isfinite(pal.loc["ses-02", "r2star_median"])  # the measurement is kept
    assert np.isfinite(pal.loc[["ses-01", "ses-03"], "r2star_site_adjusted"]).all()
    others = sessions[(sessions.participant_id == "sub-005") & (sessions.region != "pallidum")]
    assert np.isfinite(others["r2star_site_adjusted"]).all()
