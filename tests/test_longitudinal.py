"""Longitudinal analysis: session timing from sessions.tsv, mixed models that recover planted
yearly changes, and the group stage with sessions (tables, warnings, report)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.longitudinal import LONGITUDINAL_COLUMNS, analyse_longitudinal
from ironmap.cohort.sessions import collect_timing, read_sessions, session_timing
from ironmap.cohort.tables import baseline_sessions
from ironmap.errors import InputError, IronmapWarning
from ironmap.io.derivatives import group_path, read_tsv
from ironmap.simulate.table_sessions import simulate_table_sessions
from ironmap.simulate.tables import TableSite
from ironmap.simulate.tissue import MS_EFFECTS, TISSUES
from ironmap.workflows.group import GroupConfig, run_group

# -- session timing ------------------------------------------------------------------------------


def _sessions_file(tmp_path, rows, name="sub-01"):
    path = tmp_path / name / f"{name}_sessions.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


def test_unequal_intervals_from_acq_time(tmp_path):
    path = _sessions_file(
        tmp_path,
        {
            "session_id": ["ses-03", "ses-01", "ses-02"],
            "acq_time": ["2021-07-02T09:00:00", "2018-01-01T09:00:00", "2019-01-01T09:00:00"],
            "edss": [3.5, 2.0, "n/a"],
        },
    )
    timing, reason = session_timing(
        "sub-01", ["ses-01", "ses-02", "ses-03"], table=read_sessions(path), age=40.0, edss=2.5
    )
    assert reason == ""
    assert timing["session"].tolist() == ["ses-01", "ses-02", "ses-03"]
    # 365 and 1278 days: 0.999 and 3.499 years
    assert timing["time_years"].tolist() == pytest.approx([0.0, 365 / 365.25, 1278 / 365.25])
    assert timing["age"].tolist() == pytest.approx([40.0, 40.0 + 365 / 365.25, 40 + 1278 / 365.25])
    # the sessions file's EDSS wins over participants.tsv's at baseline; n/a stays missing
    assert timing["edss"].tolist()[0] == 2.0
    assert np.isnan(timing["edss"].tolist()[1])
    assert set(timing["time_source"]) == {"acq_time"}


def test_age_is_the_clock_when_acq_time_is_incomplete(tmp_path):
    path = _sessions_file(
        tmp_path,
        {
            "session_id": ["ses-a", "ses-b"],
            "acq_time": ["2018-01-01", "n/a"],
            "age": [51.5, 49.0],  # ses-b came first
        },
    )
    timing, reason = session_timing(
        "sub-01", ["ses-a", "ses-b"], table=read_sessions(path), age=49.0, edss=np.nan
    )
    assert reason == ""
    assert timing["session"].tolist() == ["ses-b", "ses-a"]
    assert timing["time_years"].tolist() == pytest.approx([0.0, 2.5])
    assert set(timing["time_source"]) == {"age"}
    # the cross-sectional analysis takes the same baseline (youngest), with its own note
    long = pd.DataFrame({"participant_id": ["sub-01"] * 2, "session": ["ses-a", "ses-b"]})
    with pytest.warns(IronmapWarning, match="youngest age"):
        assert baseline_sessions(long, bids_dir=tmp_path)["session"].tolist() == ["ses-b"]


def test_sessions_without_times_keep_only_the_baseline(tmp_path):
    timing, reason = session_timing("sub-01", ["ses-2", "ses-10"], table=None, age=30.0, edss=1.0)
    assert timing["session"].tolist() == ["ses-2"]  # natural order, never guessed intervals
    assert timing["time_years"].tolist() == [0.0]
    assert reason == "no sub-01/sub-01_sessions.tsv"
    path = _sessions_file(tmp_path, {"session_id": ["ses-2", "ses-10"], "acq_time": ["n/a"] * 2})
    _, reason = session_timing(
        "sub-01", ["ses-2", "ses-10"], table=read_sessions(path), age=30.0, edss=1.0
    )
    assert reason.startswith("neither acq_time nor age for every session")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"session_id": ["ses-1", "ses-1"], "age": [30, 31]}, "ses-1 is listed twice"),
        ({"session_id": ["ses-1", "ses-2"], "age": [30, "old"]}, "age must be a number"),
        ({"session_id": ["ses-1", "ses-2"], "age": [30, 130]}, "ses-2 has age '130'"),
        ({"session_id": ["ses-1", "ses-2"], "edss": [3, 3.2]}, "EDSS must be 0-10 in steps"),
        ({"session": ["ses-1"]}, "no session_id column"),
    ],
)
def test_bad_sessions_files_are_one_line_errors(tmp_path, rows, message):
    path = _sessions_file(tmp_path, rows)
    with pytest.raises(InputError, match=message) as err:
        read_sessions(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


# -- the models on a table-level cohort with known truth ---------------------------------------

SITES = [
    TableSite("a", 1.00, 1.0, {"HC": 18, "RRMS": 14, "SPMS": 8}),
    TableSite("b", 1.05, 1.0, {"HC": 16, "RRMS": 14, "SPMS": 8}),
]


def _slope(t, y) -> float:
    return float(np.polyfit(t, y, 1)[0])


def _analyse(long, people, visits, **kw):
    subjects = people.assign(icv_ml=1400.0, brain_ml=1200.0, cortical_gm_ml=480.0, nbv=0.85)
    subjects = subjects.assign(lesion_volume_ml=5.0, lesion_count=3)
    sessions = {
        pid: g.drop(columns="participant_id") for pid, g in visits.groupby("participant_id")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)  # small cohort: pooled site scales
        cross = analyse_cohort(
            baseline_sessions(long, bids_dir=None),
            subjects,
            mixed=False,
            clinical=False,
            n_bootstrap=0,
        )
    timing, untimed = collect_timing(long, people, sessions=sessions)
    return analyse_longitudinal(long, timing, subjects, cross.normative, untimed=untimed, **kw)


def test_planted_yearly_changes_are_recovered():
    long, people, visits = simulate_table_sessions(
        SITES, seed=7, sessions=3, interval_years=2.0, dropout=0.1, regions=("putamen", "pallidum")
    )
    result = _analyse(long, people, visits)
    table = result.table.set_index(["region", "term", "arm"])
    hc_sites = people[people.group == "HC"].site.map({"a": 1.00, "b": 1.05})
    scale = float(np.exp(np.log(hc_sites).mean()))  # harmonised R2* = site-free R2* x scale
    label = people.set_index("participant_id").phenotype.fillna("HC")
    for region in ("putamen", "pallidum"):
        part = long[long.region == region].merge(people[["participant_id", "age"]])
        slopes, excess = {}, {}
        for pid, g in part.groupby("participant_id"):
            if len(g) > 1:
                healthy = TISSUES[region].age(g.age.iloc[0] + g.time_years)
                slopes[pid] = _slope(g.time_years, g.truth) * scale
                excess[pid] = slopes[pid] - _slope(g.time_years, healthy) * scale
        slopes, excess = pd.Series(slopes), pd.Series(excess)
        arm = label[slopes.index]
        truth = {
            ("annual_change", "HC"): slopes[arm == "HC"].mean(),
            ("annual_change", "MS"): slopes[arm != "HC"].mean(),
            ("annual_change", "SPMS"): slopes[arm == "SPMS"].mean(),
            ("time_x_group", "MS-HC"): excess[arm != "HC"].mean() - excess[arm == "HC"].mean(),
            ("edss_change", "MS"): MS_EFFECTS[region].edss_slope * scale,
        }
        for (term, name), value in truth.items():
            row = table.loc[(region, term, name)]
            assert row.ci_low <= value <= row.ci_high, (region, term, name, value, row.estimate)
    # putamen: ageing in controls, faster in MS (planted 0.07 1/s per year of disease and
    # 0.28 per EDSS point; too little for this cohort to reach p < 0.05, see the benchmark);
    # pallidum: no disease change
    assert table.loc[("putamen", "time_x_group", "MS-HC")].estimate > 0.05
    assert table.loc[("pallidum", "time_x_group", "MS-HC")].p > 0.05
    assert (result.table.units == "1/s per year").sum() == len(result.table) - 2
    # drop-out: participants with one session count, but not as longitudinal
    hc = table.loc[("putamen", "annual_change", "HC")]
    assert hc.n_participants == 34
    assert (
        hc.n_longitudinal
        == (
            visits[visits.session_id == "ses-02"].participant_id.isin(
                people[people.group == "HC"].participant_id
            )
        ).sum()
        < 34
    )
    assert list(result.table.columns) == LONGITUDINAL_COLUMNS
    # every fitted mean trajectory starts at baseline
    assert (result.trajectories.groupby(["region", "arm"]).time_years.min() == 0).all()


def test_no_disease_change_is_not_found():
    long, people, visits = simulate_table_sessions(
        SITES,
        seed=11,
        sessions=3,
        interval_years=2.0,
        planted=False,
        regions=("caudate", "red_nucleus"),
        age={"SPMS": (52.0, 8.0)},  # older than the controls: slower normal ageing
    )
    table = _analyse(long, people, visits).table
    rows = table[table.term.isin(["time_x_group", "edss_change"])]
    assert len(rows) == 8
    assert (rows.ci_low < 0).all()
    assert (rows.ci_high > 0).all()


def test_one_session_each_is_silent_and_fits_nothing():
    long, people, visits = simulate_table_sessions(SITES, seed=3, sessions=1, regions=("putamen",))
    result = _analyse(long, people, visits)  # filterwarnings=error: no warning
    assert result.table.empty
    assert list(result.table.columns) == LONGITUDINAL_COLUMNS
    assert result.values.time_years.eq(0).all()


def test_untimed_follow_ups_are_named_in_one_warning():
    long, people, visits = simulate_table_sessions(SITES, seed=5, sessions=2, regions=("putamen",))
    untimed = visits[~visits.participant_id.isin(["sub-0001", "sub-0002"])]
    with pytest.warns(IronmapWarning, match=r"2 participant\(s\) have several sessions") as rec:
        result = _analyse(long, people, untimed)
    assert len([w for w in rec if "several sessions but no time" in str(w.message)]) == 1
    assert "sub-0001: no sub-0001/sub-0001_sessions.tsv" in str(rec[0].message)
    kept = result.values[result.values.participant_id == "sub-0001"]
    assert kept.session.tolist() == ["ses-01"]
    assert not result.table.empty


def _ms_truth(long, people, region, scale):
    """Mean over MS participants with follow-up of their true yearly change (harmonised)."""
    part = long[long.region == region].merge(people[["participant_id", "group"]])
    part = part[part.group == "MS"]
    slopes = [
        _slope(g.time_years, g.truth) * scale
        for _, g in part.groupby("participant_id")
        if len(g) > 1
    ]
    return float(np.mean(slopes))


def test_a_scanner_upgrade_mid_study_is_a_session_level_effect():
    """Site b's scanner is upgraded after 3 years (R2* x 1.06, sessions.tsv ``scanner``): the
    third sessions there read high. Without the scanner term the MS yearly change is biased
    upwards and its CI misses the truth; with it (one scanner epoch) the CI holds it."""
    upgrades = {"b": (3.0, 1.06)}
    long, people, visits = simulate_table_sessions(
        SITES, seed=21, sessions=3, interval_years=2.0, regions=("putamen",), upgrades=upgrades
    )
    assert set(visits.scanner) == {"a-1", "b-1", "b-2"}
    assert (visits.scanner == "b-2").sum() == (
        (visits.time_years >= 3.0)
        & visits.participant_id.isin(people[people.site == "b"].participant_id)
    ).sum()
    hc_sites = people[people.group == "HC"].site.map({"a": 1.00, "b": 1.05})
    scale = float(np.exp(np.log(hc_sites).mean()))
    truth = _ms_truth(long, people, "putamen", scale)
    fitted = _analyse(long, people, visits).table.set_index(["region", "term", "arm"])
    blind = _analyse(long, people, visits.drop(columns="scanner")).table
    blind = blind.set_index(["region", "term", "arm"])
    row, naive = (
        fitted.loc[("putamen", "annual_change", "MS")],
        blind.loc[("putamen", "annual_change", "MS")],
    )
    assert row.scanner_terms == 1
    assert naive.scanner_terms == 0
    assert "scanner_epoch[1]" in row.model
    assert row.ci_low <= truth <= row.ci_high
    assert naive.ci_low > truth  # the upgrade read as disease change
    assert abs(row.estimate - truth) < 0.3 * (naive.estimate - truth)
    values = _analyse(long, people, visits).values
    assert set(values.scanner.dropna()) == {"a-1", "b-1", "b-2"}


def test_scanner_epochs_are_within_site_and_need_a_separable_epoch():
    from ironmap.cohort.longitudinal import scanner_epochs

    data = pd.DataFrame(
        {
            "site": ["a", "a", "a", "b", "b", "c", "c"],
            "scanner": ["x", "x", "y", "x", np.nan, "z", "z"],
            "time": [0.0, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0],
        }
    )
    epochs = scanner_epochs(data)
    assert len(epochs) == 1  # a: y after x; b: one known scanner; c: one scanner
    np.testing.assert_array_equal(epochs[0], [0, 0, 1, 0, 0, 0, 0])
    assert scanner_epochs(data.drop(columns="scanner")) == []
    every = pd.DataFrame({"site": ["a", "a"], "scanner": ["x", "y"], "time": [2.0, 2.0]})
    assert len(scanner_epochs(every)) == 1  # reference x (sort order), y an epoch


def test_sessions_file_scanner_and_sidecar_scanner(tmp_path):
    """``scanner`` from sub-<label>_sessions.tsv; without the column, DeviceSerialNumber and
    SoftwareVersions of the session's first-echo sidecar."""
    import json

    pid = "sub-01"
    (tmp_path / pid).mkdir()
    pd.DataFrame(
        {"session_id": ["ses-1", "ses-2"], "acq_time": ["2019-01-01", "2021-01-01"]}
    ).to_csv(tmp_path / pid / f"{pid}_sessions.tsv", sep="\t", index=False)
    for session, version in (("ses-1", "VE11C"), ("ses-2", "XA30")):
        anat = tmp_path / pid / session / "anat"
        anat.mkdir(parents=True)
        meta = {"DeviceSerialNumber": "166001", "SoftwareVersions": version}
        (anat / f"{pid}_{session}_echo-1_part-mag_MEGRE.json").write_text(json.dumps(meta))
    regions = pd.DataFrame({"participant_id": [pid, pid], "session": ["ses-1", "ses-2"]})
    people = pd.DataFrame({"participant_id": [pid], "age": [40.0], "edss": [np.nan]})
    timing, _ = collect_timing(regions, people, bids_dir=tmp_path)
    assert timing.scanner.tolist() == ["166001/VE11C", "166001/XA30"]
    given = {
        pid: pd.DataFrame(
            {"session_id": ["ses-1", "ses-2"], "age": [40, 42], "scanner": ["old", "new"]}
        )
    }
    timing, _ = collect_timing(regions, people, sessions=given)
    assert timing.scanner.tolist() == ["old", "new"]
    assert timing.time_years.tolist() == [0.0, 2.0]


# -- the group stage with sessions ---------------------------------------------------------------


def _write_table(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="n/a")


def _longitudinal_cohort(tmp_path, *, n_hc=24, n_ms=24, sessions_files=True, seed=1):
    """Participant-stage tables of 3 sessions (times 0, 1.5 +- 0.3, 3.5 +- 0.3 years).

    Harmonised truth: putamen rises 0.3 1/s per year in everyone, plus 0.5 per year in MS and
    0.6 per EDSS point gained; pallidum rises 0.2 per year in everyone. sub-001 has one
    session; sub-002 a sessions file with ages only; sub-003 (MS) no sessions file. Returns
    the datasets and ``{participant_id: (times, EDSS or None)}``.
    """
    rng = np.random.default_rng(seed)
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    out.mkdir()
    description = {"Name": "t", "DatasetType": "derivative", "GeneratedBy": [{"Name": "ironmap"}]}
    (out / "dataset_description.json").write_text(json.dumps(description))
    people, planted = [], {}
    for i in range(n_hc + n_ms):
        ms = i >= n_hc or i == 2
        pid = f"sub-{i + 1:03d}"
        age = float(rng.uniform(25, 60))
        site = ["a", "b", "c"][i % 3]
        edss0 = float(np.round(rng.uniform(1, 5) * 2) / 2) if ms else np.nan
        people.append(
            {
                "participant_id": pid,
                "age": round(age, 1),
                "sex": ["F", "M"][i % 2],
                "group": "MS" if ms else "HC",
                "phenotype": ["RRMS", "SPMS"][i % 2] if ms else "n/a",
                "disease_duration": 5.0 if ms else np.nan,
                "edss": edss0,
                "site": site,
            }
        )
        times = np.array([0.0, 1.5, 3.5]) + np.r_[0, rng.uniform(-0.3, 0.3, 2)]
        if i == 0:
            times = times[:1]
        steps = rng.choice([0.0, 0.5, 1.0], len(times) - 1)
        edss = edss0 + np.r_[0.0, np.cumsum(steps)] if ms else None
        level = {
            "putamen": 24 + 0.1 * age + rng.normal(0, 1.5),
            "pallidum": 36 + 0.05 * age + rng.normal(0, 1.5),
        }
        factor = {"a": 1.0, "b": 1.04, "c": 0.97}[site]
        rows = []
        for k, t in enumerate(times):
            ses = f"ses-{k + 1:02d}"
            for region, base in level.items():
                rate = 0.3 + 0.5 * ms if region == "putamen" else 0.2
                gained = edss[k] - edss0 if ms and region == "putamen" else 0.0
                value = (base + rate * t + 0.6 * gained) * factor + rng.normal(0, 0.25)
                for hemi in ("left", "right", "both"):
                    rows.append((pid, ses, region, hemi, value, 100))
            rows.append((pid, ses, "lesions", "both", 18.0 if ms else np.nan, 50 if ms else 0))
            anat = out / pid / ses / "anat"
            columns = ["participant_id", "session", "region", "hemisphere", "r2star_median"]
            _write_table(
                anat / f"{pid}_{ses}_regions.tsv",
                [dict(zip([*columns, "n_voxels"], r, strict=True)) for r in rows if r[1] == ses],
            )
            _write_table(
                anat / f"{pid}_{ses}_volumes.tsv",
                [
                    {
                        "participant_id": pid,
                        "session": ses,
                        "icv_ml": 1400.0,
                        "nbv": 0.85,
                        "lesion_volume_ml": 4.0 if ms else 0.0,
                    }
                ],
            )
        planted[pid] = (times, edss)
        start = pd.Timestamp("2019-03-01T10:00:00")
        acq = [(start + pd.Timedelta(days=float(t * 365.25))).isoformat() for t in times]
        sessions = {"session_id": [f"ses-{k + 1:02d}" for k in range(len(times))]}
        if i == 1:
            sessions["age"] = [round(age + t, 2) for t in times]
        else:
            sessions["acq_time"] = acq
        if ms:
            sessions["edss"] = list(edss)
        if sessions_files and i != 2:
            _write_table(bids / pid / f"{pid}_sessions.tsv", sessions)
    _write_table(bids / "participants.tsv", people)
    return bids, out, planted


def test_group_stage_recovers_planted_change_and_keeps_the_baseline_cross_section(tmp_path):
    bids, out, planted = _longitudinal_cohort(tmp_path)
    # MS - HC in putamen: 0.5 per year plus 0.6 per EDSS point gained per year
    timed = {pid: v for pid, v in planted.items() if v[1] is not None and pid != "sub-003"}
    ms_hc = 0.5 + 0.6 * float(np.mean([_slope(t, e) for t, e in timed.values()]))
    with pytest.warns(IronmapWarning) as record:
        result = run_group(GroupConfig(bids, out, report=True, mixed=False))
    messages = [str(w.message) for w in record]
    assert any("baseline session" in m for m in messages)  # the cross-sectional choice
    untimed = [m for m in messages if "several sessions but no time" in m]
    assert len(untimed) == 1
    assert "sub-003: no sub-003/sub-003_sessions.tsv" in untimed[0]
    table = read_tsv(group_path(out, "longitudinal.tsv")).set_index(["region", "term", "arm"])
    sidecar = json.loads(group_path(out, "longitudinal.json").read_text())
    assert list(sidecar) == LONGITUDINAL_COLUMNS
    for (region, term, arm), value in {
        ("putamen", "annual_change", "HC"): 0.3,
        ("pallidum", "annual_change", "HC"): 0.2,
        ("pallidum", "annual_change", "MS"): 0.2,
        ("putamen", "time_x_group", "MS-HC"): ms_hc,
        ("pallidum", "time_x_group", "MS-HC"): 0.0,
        ("putamen", "edss_change", "MS"): 0.6,
        ("pallidum", "edss_change", "MS"): 0.0,
    }.items():
        row = table.loc[(region, term, arm)]
        assert row.ci_low <= value <= row.ci_high, (region, term, arm, row.estimate)
    assert table.loc[("putamen", "time_x_group", "MS-HC")].p_fdr < 1e-3
    hc = table.loc[("putamen", "annual_change", "HC")]
    assert (hc.n_participants, hc.n_longitudinal) == (23, 22)  # sub-001: one session
    sessions = read_tsv(group_path(out, "longitudinal_sessions.tsv"))
    one = sessions[(sessions.participant_id == "sub-004") & (sessions.region == "putamen")]
    assert one.time_years.tolist() == pytest.approx(planted["sub-004"][0], abs=1e-3)
    by_age = sessions[(sessions.participant_id == "sub-002") & (sessions.region == "putamen")]
    assert by_age.time_years.tolist() == pytest.approx(planted["sub-002"][0], abs=0.01)
    assert set(by_age.time_source) == {"age"}
    assert sessions[sessions.participant_id == "sub-003"].session.unique().tolist() == ["ses-01"]
    # the baseline rows are the cross-sectional analysis' harmonised values
    regions = read_tsv(group_path(out, "regions.tsv"))
    base = sessions[sessions.time_years == 0].merge(
        regions[regions.hemisphere == "both"], on=["participant_id", "region"]
    )
    assert len(base) == 2 * 48
    np.testing.assert_allclose(base.r2star_harmonized_x, base.r2star_harmonized_y, atol=0.006)
    page = result.report.read_text()
    assert "<h2>Change over time</h2>" in page
    assert "<img alt='R2* against time since baseline'" in page
    assert "contribute only their baseline" in page
    # cross-sectional results: those of the baseline sessions alone
    for pid in planted:
        for ses in ("ses-02", "ses-03"):
            for path in (out / pid / ses).rglob("*.tsv") if (out / pid / ses).exists() else []:
                path.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        baseline_only = run_group(GroupConfig(bids, out, report=False, mixed=False, force=True))
    pd.testing.assert_frame_equal(result.comparison, baseline_only.comparison)
    assert baseline_only.longitudinal.empty


def test_group_stage_without_sessions_files_refuses_the_longitudinal_analysis(tmp_path):
    bids, out, _ = _longitudinal_cohort(tmp_path, n_hc=10, n_ms=6, sessions_files=False)
    with pytest.warns(IronmapWarning) as record:
        result = run_group(GroupConfig(bids, out, report=True, mixed=False))
    warned = [str(w.message) for w in record if "several sessions but no time" in str(w.message)]
    assert len(warned) == 1
    assert warned[0].startswith("15 participant(s) have several sessions but no time")
    assert "give every session an acq_time or age" in warned[0]
    assert result.longitudinal.empty
    assert list(result.longitudinal.columns) == LONGITUDINAL_COLUMNS
    # an analysis that did not run writes no (empty) tables; provenance says why
    assert not group_path(out, "longitudinal.tsv").exists()
    assert not group_path(out, "longitudinal_sessions.tsv").exists()
    record = json.loads(group_path(out, "provenance.json").read_text())
    assert record["analyses"]["longitudinal"] == {
        "ran": False,
        "reason": "15 participant(s) have several sessions but none with known times (acq_time "
        "or age in sub-<label>_sessions.tsv)",
    }
    assert result.longitudinal_sessions.time_years.eq(0).all()
    page = result.report.read_text()
    assert "No longitudinal model was fitted" in page


# -- images end to end ------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_with_sessions_recovers_the_planted_change_from_images(tmp_path, capsys):
    """ironmap demo --quick --sessions 3: simulated images, participant stage per session, group
    stage with the longitudinal models (about 3 times the quick demo)."""
    from ironmap.regions import DEEP_GM
    from ironmap.workflows.demo import run_demo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        assert run_demo(tmp_path, quick=True, n_jobs=2, sessions=3, interval_years=2.0) == 0
    printed = capsys.readouterr().out
    assert "yearly change of harmonised R2*" in printed
    out = tmp_path / "ironmap"
    truth = json.loads((tmp_path / "bids_truth.json").read_text())
    table = read_tsv(group_path(out, "longitudinal.tsv"))
    assert set(table.region) == {*DEEP_GM, "nawm"}
    # truth: each participant's least-squares slope of its true regional R2* (site-free), on
    # the harmonised scale (the controls' pooled site factor)
    subjects = truth["subjects"]
    hc_bias = [s["site_r2star_bias"] for s in subjects.values() if s["group"] == "HC"]
    scale = float(np.exp(np.mean(np.log(hc_bias))))
    covered = []
    for region in (*DEEP_GM, "nawm"):
        slopes = {"HC": [], "MS": []}
        for s in subjects.values():
            t = [v["time_years"] for v in s["sessions"].values()]
            y = [v["regions"][region]["both"]["r2star_mean"] for v in s["sessions"].values()]
            slopes["HC" if s["group"] == "HC" else "MS"].append(_slope(t, y) * scale)
        for arm, values in slopes.items():
            row = table[(table.region == region) & (table.term == "annual_change")]
            row = row[row.arm == arm].iloc[0]
            covered.append(row.ci_low <= np.mean(values) <= row.ci_high)
    assert np.mean(covered) >= 0.85, covered
    # every session's regional R2* is measured: ses-03 - ses-01 tracks the true change
    errors = []
    for pid, s in subjects.items():
        first, last = s["sessions"]["ses-01"], s["sessions"]["ses-03"]
        measured = [
            read_tsv(out / pid / ses / "anat" / f"{pid}_{ses}_regions.tsv")
            .query("region == 'putamen' and hemisphere == 'both'")
            .r2star_median.iloc[0]
            / (v["site_r2star_bias"] * v["scan_r2star_factor"])
            for ses, v in (("ses-01", first), ("ses-03", last))
        ]
        true = [v["regions"]["putamen"]["both"]["r2star_mean"] for v in (first, last)]
        errors.append((measured[1] - measured[0]) - (true[1] - true[0]))
    assert np.median(np.abs(errors)) < 0.3  # 1/s, over about 4 years
    page = (out / "report.html").read_text()
    assert "<h2>Change over time</h2>" in page


def test_a_random_slope_that_cannot_be_fitted_is_reported_as_a_fallback(monkeypatch):
    """Every random-slope fit fails: the rows say random intercept only, fallback True, and
    the note says why the CIs may be too narrow."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    from ironmap.cohort.longitudinal import RANDOM_INTERCEPT, RANDOM_SLOPE

    fit = MixedLM.fit

    def no_slopes(self, *args, **kwargs):
        if self.k_re > 1:
            raise np.linalg.LinAlgError("Singular matrix")
        return fit(self, *args, **kwargs)

    long, people, visits = simulate_table_sessions(SITES, seed=5, sessions=3, regions=("putamen",))
    normal = _analyse(long, people, visits).table
    assert (normal.random_effects == RANDOM_SLOPE).all()
    assert not normal.fallback.astype(bool).any()
    monkeypatch.setattr(MixedLM, "fit", no_slopes)
    table = _analyse(long, people, visits).table
    assert (table.random_effects == RANDOM_INTERCEPT).all()
    assert table.fallback.astype(bool).all()
    assert table.note.str.contains("random slope dropped").all()
    assert table.model.str.endswith("(1 | participant) [GEE, robust SE]").all()
    # the fallback's inference: GEE, exchangeable, participant-clustered bias-reduced sandwich
    assert table.note.str.contains("sandwich").all()
    rows = table.set_index(["term", "arm"])
    naive = normal.set_index(["term", "arm"])
    assert rows.loc[("annual_change", "MS"), "estimate"] == pytest.approx(
        naive.loc[("annual_change", "MS"), "estimate"], abs=0.05
    )


def _flagged_table() -> pd.DataFrame:
    """Two regions' rows: putamen significant but not converged, caudate significant with a
    random-intercept fallback."""
    rows = []
    for region, converged, fallback in (("putamen", False, False), ("caudate", True, True)):
        for term, arm in (
            ("annual_change", "HC"),
            ("annual_change", "MS"),
            ("time_x_group", "MS-HC"),
        ):
            rows.append(
                {
                    "region": region,
                    "term": term,
                    "arm": arm,
                    "estimate": 0.2,
                    "ci_low": 0.1,
                    "ci_high": 0.3,
                    "p": 0.001,
                    "p_fdr": 0.002,
                    "converged": converged,
                    "fallback": fallback,
                    "note": "" if converged else "the fit did not converge",
                }
            )
    return pd.DataFrame(rows).reindex(columns=LONGITUDINAL_COLUMNS)


def test_report_renders_convergence_and_fallback_flags():
    from ironmap.report.longitudinal import (
        FALLBACK_MARK,
        NOT_CONVERGED_MARK,
        change_table,
        model_notes,
    )

    table = _flagged_table()
    shown, flags = change_table(table)
    column = "MS - HC at equal age, 1/s per year"
    assert flags[column].tolist() == [False, True]  # not converged: never bold
    assert NOT_CONVERGED_MARK in shown.loc[0, column]
    assert FALLBACK_MARK in shown.loc[1, column]
    notes = model_notes(table)
    assert any(n.startswith("putamen annual_change") and "did not converge" in n for n in notes)
    assert any(n.startswith(FALLBACK_MARK) for n in notes)
    # read back from TSV, booleans are text
    shown_text, flags_text = change_table(table.astype({"converged": str, "fallback": str}))
    assert flags_text[column].tolist() == [False, True]
    assert FALLBACK_MARK in shown_text.loc[1, column]


def test_the_image_simulator_plants_a_scanner_upgrade_in_its_sessions():
    """draw_sessions with an upgrade: sessions at the site from the date on have R2* x factor
    and scanner <site>-2 in sessions.tsv; nothing else changes."""
    from ironmap.simulate.cohort import draw_cohort, draw_sessions, sessions_table
    from ironmap.workflows.simulate import SimulateConfig

    subjects = draw_cohort(n_hc=6, n_ms=6, seed=3)
    site = subjects[0].site.name
    plain = draw_sessions(subjects, n_sessions=3, interval_years=2.0, seed=3)
    upgraded = draw_sessions(
        subjects, n_sessions=3, interval_years=2.0, seed=3, upgrade=(site, "2020-01-01", 1.03)
    )
    n_new = 0
    for before, after in zip(plain, upgraded, strict=True):
        for a, b in zip(before, after, strict=True):
            new = a.subject.site.name == site and pd.Timestamp(a.acq_time) >= pd.Timestamp(
                "2020-01-01"
            )
            n_new += new
            assert b.r2star_factor == pytest.approx(a.r2star_factor * (1.03 if new else 1.0))
            assert b.scanner == f"{a.subject.site.name}-{2 if new else 1}"
            assert b.acq_time == a.acq_time
        table = sessions_table(after)
        assert table.scanner.tolist() == [s.scanner for s in after]
    assert n_new > 0
    assert "scanner" not in sessions_table(plain[0]).columns
    config = SimulateConfig(out_bids="x", sessions=3, scanner_upgrade=f"{site}:2020-01-01:1.03")
    assert config.upgrade() == (site, "2020-01-01", 1.03)
    with pytest.raises(InputError, match="SITE:YYYY-MM-DD:FACTOR"):
        SimulateConfig(out_bids="x", sessions=3, scanner_upgrade="1.03")
    with pytest.raises(InputError, match="site must be one of"):
        SimulateConfig(out_bids="x", sessions=3, scanner_upgrade="nowhere:2020-01-01:1.03")
    with pytest.raises(InputError, match="needs --sessions"):
        SimulateConfig(out_bids="x", scanner_upgrade=f"{site}:2020-01-01:1.03")


def test_an_unreadable_sidecar_scanner_is_warned_about_naming_the_file(tmp_path):
    from ironmap.cohort.sessions import sidecar_scanner

    anat = tmp_path / "sub-01" / "ses-1" / "anat"
    anat.mkdir(parents=True)
    bad = anat / "sub-01_ses-1_echo-1_part-mag_MEGRE.json"
    bad.write_text("{not json")
    with pytest.warns(IronmapWarning, match=r"sub-01_ses-1_echo-1_part-mag_MEGRE\.json"):
        assert sidecar_scanner(tmp_path, "sub-01", "ses-1") is None
