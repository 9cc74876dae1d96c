"""participants.tsv validation (sex codes, value ranges) and the cohort tables' choice of rows:
baseline session per participant, participants without participant-stage outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap.cohort import tables
from ironmap.cohort.tables import collect_regions, read_participants, subjects_table
from ironmap.errors import InputError, IronmapWarning


def _write_participants(tmp_path, **columns):
    """A valid three-row participants.tsv (HC, MS, MS), with ``columns`` replaced."""
    table = {
        "participant_id": ["sub-01", "sub-02", "sub-03"],
        "age": ["40", "50", "35"],
        "sex": ["F", "M", "F"],
        "group": ["HC", "MS", "MS"],
        "phenotype": ["n/a", "RRMS", "SPMS"],
        "disease_duration": ["n/a", "5", "12.5"],
        "edss": ["n/a", "2.5", "6"],
        "site": ["a", "b", "a"],
    }
    table.update(columns)
    path = tmp_path / "participants.tsv"
    pd.DataFrame(table).to_csv(path, sep="\t", index=False)
    return path


def _write_outputs(out, pid, session=None, *, value=30.0, icv=1400.0, volumes=True):
    """One participant's (session's) ``_regions.tsv`` and ``_volumes.tsv``."""
    folder = out / pid / (f"ses-{session}" if session else "") / "anat"
    folder.mkdir(parents=True)
    name = f"{pid}_ses-{session}" if session else pid
    first = {"participant_id": pid} | ({"session": f"ses-{session}"} if session else {})
    regions = pd.DataFrame(
        [first | {"region": "putamen", "hemisphere": h, "r2star_median": value} for h in "lr"]
    )
    regions.to_csv(folder / f"{name}_regions.tsv", sep="\t", index=False)
    if volumes:
        pd.DataFrame([first | {"icv_ml": icv, "brain_ml": 1200.0}]).to_csv(
            folder / f"{name}_volumes.tsv", sep="\t", index=False
        )


def _write_sessions(bids, pid, acq_times):
    """``BIDS_DIR/sub-<label>/sub-<label>_sessions.tsv`` with ``{session_id: acq_time}``."""
    folder = bids / pid
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"session_id": list(acq_times), "acq_time": list(acq_times.values())})
    table.to_csv(folder / f"{pid}_sessions.tsv", sep="\t", index=False)


# --- sex ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (["M", "F", "O"], ["M", "F", "O"]),
        (["male", "Female", "OTHER"], ["M", "F", "O"]),
        (["m", "f", "o"], ["M", "F", "O"]),
        (["n/a", "", " Male "], [np.nan, np.nan, "M"]),
    ],
)
def test_sex_bids_codes_are_normalised(tmp_path, written, expected):
    table = read_participants(_write_participants(tmp_path, sex=written))
    assert table["sex"].tolist() == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize("value", ["X", "1", "unknown"])
def test_sex_unknown_code_is_refused(tmp_path, value):
    path = _write_participants(tmp_path, sex=["F", value, "M"])
    with pytest.raises(InputError, match=r"sex") as err:
        read_participants(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert "sub-02" in message
    assert repr(value) in message
    assert "M/male, F/female, O/other" in message
    assert "n/a" in message


# --- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "pid", "column", "value"),
    [
        ({"age": ["0", "50", "35"]}, "sub-01", "age", "0"),
        ({"age": ["40", "-3", "35"]}, "sub-02", "age", "-3"),
        ({"age": ["40", "50", "121"]}, "sub-03", "age", "121"),
        ({"edss": ["n/a", "99", "6"]}, "sub-02", "edss", "99"),
        ({"edss": ["n/a", "2.5", "-1"]}, "sub-03", "edss", "-1"),
        ({"edss": ["n/a", "3.3", "6"]}, "sub-02", "edss", "3.3"),
        ({"edss": ["11", "2.5", "6"]}, "sub-01", "edss", "11"),  # HC checked when given
        ({"disease_duration": ["n/a", "-1", "12.5"]}, "sub-02", "disease_duration", "-1"),
        ({"disease_duration": ["n/a", "5", "36"]}, "sub-03", "disease_duration", "36"),
        ({"disease_duration": ["41", "5", "12.5"]}, "sub-01", "disease_duration", "41"),
    ],
)
def test_impossible_values_are_refused(tmp_path, columns, pid, column, value):
    path = _write_participants(tmp_path, **columns)
    with pytest.raises(InputError, match=column) as err:
        read_participants(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert pid in message
    assert repr(value) in message


def test_limit_values_are_accepted(tmp_path):
    path = _write_participants(
        tmp_path,
        age=["120", "0.5", "35"],
        edss=["0", "10", "9.5"],
        disease_duration=["0", "0.5", "35"],
    )
    table = read_participants(path)
    assert table["age"].tolist() == [120.0, 0.5, 35.0]
    assert table["edss"].tolist() == [0.0, 10.0, 9.5]
    assert table["disease_duration"].tolist() == [0.0, 0.5, 35.0]


# --- baseline session -----------------------------------------------------------------------


def _long(rows):
    return pd.DataFrame(rows, columns=["participant_id", "session", "value"])


def test_baseline_sessions_natural_order_keeps_sessionless_participants():
    table = _long(
        [
            ("sub-01", "ses-10", 1.0),
            ("sub-01", "ses-2", 2.0),
            ("sub-01", "ses-2", 3.0),
            ("sub-02", np.nan, 4.0),
            ("sub-02", np.nan, 5.0),
            ("sub-03", "ses-1", 6.0),
        ]
    )
    with pytest.warns(IronmapWarning, match="baseline session") as record:
        out = tables.baseline_sessions(table, bids_dir=None)
    assert len(record) == 1
    assert "ses-2 before ses-10" in str(record[0].message)
    assert out["value"].tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert out["session"].tolist()[:2] == ["ses-2", "ses-2"]


def test_baseline_sessions_one_session_each_is_silent():
    table = _long([("sub-01", "ses-2", 1.0), ("sub-02", np.nan, 2.0)])
    out = tables.baseline_sessions(table, bids_dir=None)  # filterwarnings=error
    assert out["value"].tolist() == [1.0, 2.0]


def test_baseline_sessions_without_session_column_is_unchanged():
    table = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "value": [1.0, 2.0]})
    out = tables.baseline_sessions(table, bids_dir=None)
    assert out.equals(table)


@pytest.mark.parametrize("labels", [("ses-01", "ses-02"), ("01", "02")])
def test_baseline_sessions_earliest_acq_time(tmp_path, labels):
    _write_sessions(tmp_path, "sub-01", {"ses-01": "2021-03-04T10:00:00", "ses-02": "2019-11-02"})
    _write_sessions(tmp_path, "sub-02", {"ses-01": "2020-01-01", "ses-02": "n/a"})
    table = _long(
        [
            ("sub-01", labels[0], 1.0),
            ("sub-01", labels[1], 2.0),
            ("sub-02", labels[1], 3.0),
            ("sub-02", labels[0], 4.0),
        ]
    )
    with pytest.warns(IronmapWarning, match="acq_time") as record:
        out = tables.baseline_sessions(table, bids_dir=tmp_path)
    assert len(record) == 1
    # sub-01 by acq_time (ses-02 is earlier); sub-02 lacks one acq_time: natural order
    assert out["value"].tolist() == [2.0, 4.0]


def test_baseline_sessions_bad_acq_time(tmp_path):
    _write_sessions(tmp_path, "sub-01", {"ses-01": "yesterday", "ses-02": "2019-11-02"})
    table = _long([("sub-01", "ses-01", 1.0), ("sub-01", "ses-02", 2.0)])
    with pytest.raises(InputError, match="acq_time") as err:
        tables.baseline_sessions(table, bids_dir=tmp_path)
    assert "sub-01_sessions.tsv" in str(err.value)
    assert "'yesterday'" in str(err.value)


def test_collect_regions_baseline_and_sessionless(tmp_path):
    out = tmp_path / "out"
    _write_outputs(out, "sub-01", "2", value=20.0)
    _write_outputs(out, "sub-01", "10", value=21.0)
    _write_outputs(out, "sub-02", value=22.0)
    with pytest.warns(IronmapWarning, match="baseline session"):
        regions = collect_regions(out)
    assert sorted(zip(regions.participant_id, regions.r2star_median, strict=True)) == [
        ("sub-01", 20.0),
        ("sub-01", 20.0),
        ("sub-02", 22.0),
        ("sub-02", 22.0),
    ]


def test_collect_regions_acq_time(tmp_path):
    out, bids = tmp_path / "out", tmp_path / "bids"
    _write_outputs(out, "sub-01", "01", value=20.0)
    _write_outputs(out, "sub-01", "02", value=21.0)
    _write_sessions(bids, "sub-01", {"ses-01": "2022-06-01", "ses-02": "2020-06-01"})
    with pytest.warns(IronmapWarning, match="acq_time"):
        regions = collect_regions(out, bids_dir=bids)
    assert regions["session"].tolist() == ["ses-02", "ses-02"]
    assert regions["r2star_median"].tolist() == [21.0, 21.0]


def test_subjects_table_baseline_volumes(tmp_path):
    out, bids = tmp_path / "out", tmp_path / "bids"
    participants = read_participants(_write_participants(tmp_path))
    _write_outputs(out, "sub-01", "2", icv=1400.0)
    _write_outputs(out, "sub-01", "10", icv=1500.0)
    _write_outputs(out, "sub-02", "1", icv=1600.0)
    _write_outputs(out, "sub-02", "2", icv=1700.0)
    _write_outputs(out, "sub-03", icv=1800.0)
    _write_sessions(bids, "sub-02", {"ses-1": "2020-01-01", "ses-2": "2019-01-01"})
    with pytest.warns(IronmapWarning, match="baseline session"):
        subjects = subjects_table(participants, out, bids_dir=bids)
    assert subjects["participant_id"].tolist() == ["sub-01", "sub-02", "sub-03"]
    assert subjects["icv_ml"].tolist() == [1400.0, 1700.0, 1800.0]


# --- missing participant-stage outputs ------------------------------------------------------


def test_missing_outputs():
    participants = pd.DataFrame({"participant_id": ["sub-03", "sub-01", "sub-02", "sub-04"]})
    regions = pd.DataFrame({"participant_id": ["sub-01", "sub-01", "sub-03"]})
    assert tables.missing_outputs(participants, regions) == ["sub-02", "sub-04"]
    assert tables.missing_outputs(participants, participants) == []


def test_subjects_table_drops_participants_without_outputs(tmp_path):
    out = tmp_path / "out"
    participants = read_participants(_write_participants(tmp_path))
    _write_outputs(out, "sub-01", icv=1400.0)
    _write_outputs(out, "sub-03", icv=1500.0)
    subjects = subjects_table(participants, out)
    assert subjects["participant_id"].tolist() == ["sub-01", "sub-03"]
    assert subjects["icv_ml"].tolist() == [1400.0, 1500.0]
    assert list(subjects.columns) == tables.SUBJECT_COLUMNS


def test_subjects_table_keeps_exactly_the_regions_participants(tmp_path):
    out = tmp_path / "out"
    participants = read_participants(_write_participants(tmp_path))
    _write_outputs(out, "sub-01", icv=1400.0)
    _write_outputs(out, "sub-02", icv=1500.0)
    _write_outputs(out, "sub-03", volumes=False)
    regions = collect_regions(out)
    regions = regions[regions.participant_id != "sub-01"]
    subjects = subjects_table(participants, out, regions=regions)
    assert subjects["participant_id"].tolist() == ["sub-02", "sub-03"]
    assert subjects["icv_ml"].tolist() == pytest.approx([1500.0, np.nan], nan_ok=True)
    assert subjects["age"].tolist() == [50.0, 35.0]


def test_missing_group_is_refused(tmp_path):
    """Before: a participant with group n/a was accepted and analysed as MS."""
    path = tmp_path / "participants.tsv"
    path.write_text(
        "participant_id\tage\tsex\tgroup\tphenotype\tdisease_duration\tedss\tsite\n"
        "sub-01\t40\tF\tHC\tn/a\tn/a\tn/a\ta\n"
        "sub-02\t41\tM\tn/a\tRRMS\t3\t2\ta\n"
    )
    with pytest.raises(InputError, match="group is missing for sub-02"):
        read_participants(path)
