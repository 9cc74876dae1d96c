"""The column dictionary (ironmap.io.columns): every table ironmap writes has a JSON sidecar
describing exactly its columns, its numbers are rounded by the column's rule, and the
derivatives dataset lists in ``.bidsignore`` what BIDS has no rule for."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.cohort.analysis import ANALYSIS_TABLES, FLOW_COLUMNS, NORMATIVE_COLUMNS
from ironmap.cohort.compare import COMPARISON_COLUMNS, CONTRASTS, MIXED_COLUMNS, OMNIBUS
from ironmap.cohort.determinants import (
    DETERMINANT_COLUMNS,
    OPTIONAL_PREDICTORS,
    PREDICTORS,
    TRANSFORMS,
)
from ironmap.cohort.tables import PHENOTYPES, SUBJECT_COLUMNS
from ironmap.io import write_nifti
from ironmap.io.columns import UNDESCRIBED, describe, table_sidecar, undescribed
from ironmap.io.dataset import write_bidsignore
from ironmap.io.derivatives import (
    BIDSIGNORE,
    GROUP_TABLES,
    ParticipantOutputs,
    group_path,
    read_tsv,
    table_kind,
    tsv_sidecar_path,
    write_tsv,
)
from ironmap.regions import DEEP_GM
from ironmap.regions.catalog import HEMISPHERES
from ironmap.workflows.group import GroupConfig, run_group

#: Kinds of tables ironmap writes (GROUP_TABLES keys, and the participant-stage tables).
KINDS = (*GROUP_TABLES, "volumes", "dseg")


def _check_sidecars(out) -> list[str]:
    """Assert every TSV under ``out`` has a sidecar describing exactly its columns, every
    value of a column with ``Levels`` is a level; returns the tables checked."""
    checked = []
    for path in sorted(out.rglob("*.tsv")):
        table = read_tsv(path, dtype=str)
        sidecar = json.loads(tsv_sidecar_path(path).read_text())
        # metadata keys are CamelCase (harmonization.json describes the model too)
        sidecar = {k: v for k, v in sidecar.items() if not k[:1].isupper()}
        assert list(sidecar) == list(table.columns), path
        for name, entry in sidecar.items():
            assert entry["Description"], (path, name)
            assert entry["Description"] != UNDESCRIBED, (path, name)
            values = set(table[name].dropna()) - {""}
            levels = entry.get("Levels")
            if levels is not None:
                assert values <= set(levels), (path, name, values - set(levels))
            if entry.get("Format") == "number":  # as the BIDS validator reads them
                assert all(np.isfinite(float(v)) for v in values), (path, name)
            elif entry.get("Format") == "integer":
                assert all(float(v).is_integer() for v in values), (path, name)
        checked.append(path.name)
    return checked


# -- the dictionary against the code that makes the columns -----------------------------------


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("comparison", COMPARISON_COLUMNS),
        ("comparison_mixed", MIXED_COLUMNS),
        ("determinants", DETERMINANT_COLUMNS),
        ("subjects", [*SUBJECT_COLUMNS, "analysed", "age_support"]),
        ("flow", FLOW_COLUMNS),
        ("regions", ["session", *NORMATIVE_COLUMNS, "iron_median_mg_per_kg"]),
        (
            "age_model",
            ["param_age4", "param_sex_F", "press_rmse_df4", "knots", "monotone", "age_df"],
        ),
        ("dseg", ["index", "name"]),
    ],
)
def test_every_column_the_code_makes_is_described(kind, columns):
    assert undescribed(columns, kind) == []


def test_participant_qc_columns_are_described():
    qc = pytest.importorskip("ironmap.cohort.qc")
    assert undescribed(qc.QC_COLUMNS, "participant_qc") == []


def test_levels_follow_the_code():
    levels = {k: set(describe(k).levels) for k in ("phenotype", "contrast", "hemisphere")}
    assert levels["phenotype"] == set(PHENOTYPES)
    assert levels["contrast"] == {*CONTRASTS, OMNIBUS}
    assert levels["hemisphere"] == set(HEMISPHERES)
    assert set(describe("region", "regions").levels) == {*DEEP_GM, "nawm", "lesions"}
    assert set(describe("region", "age_model").levels) == {*DEEP_GM, "nawm"}
    levels = set(describe("predictor", "determinants").levels)
    assert levels == {*PREDICTORS, *OPTIONAL_PREDICTORS}
    assert set(describe("transform", "determinants").levels) == set(TRANSFORMS.values())


def test_a_name_means_what_its_table_says():
    assert describe("ci_low", "comparison").units == "1/s"
    assert describe("ci_low", "determinants").units == "1/s per unit of transform"
    assert describe("scale", "age_model").levels == {"log": "natural log of R2*"}
    assert describe("scale", "harmonization").levels is None
    assert describe("no_such_column") is None
    assert table_sidecar(["no_such_column"]) == {"no_such_column": {"Description": UNDESCRIBED}}


def test_table_kind_from_the_file_name(tmp_path):
    out = ParticipantOutputs(tmp_path, "01", "a")
    assert table_kind(out.regions) == "regions"
    assert table_kind(out.volumes) == "volumes"
    assert table_kind(out.dseg_tsv) == "dseg"
    for kind, name in GROUP_TABLES.items():
        assert table_kind(group_path(tmp_path, name)) == kind
    assert table_kind(tmp_path / "other.tsv") is None
    assert set(KINDS) >= {table_kind(group_path(tmp_path, n)) for n in GROUP_TABLES.values()}


# -- rounding ------------------------------------------------------------------------------------


def test_numbers_are_rounded_to_what_the_measurement_supports(tmp_path):
    path = tmp_path / "t.tsv"
    table = pd.DataFrame(
        {
            "r2star_median": [21.811644109844387, np.nan],
            "volume_ml": [5.20512345, 1198.9679999999998],
            "p": [0.000123456, 0.63478184],
            "age": [42.2345, 70.05],
            "r2star_z": [0.43507369, -0.0001],
            "n_voxels": [520, 647],
            "other": [1198.9679999999998, 1 / 3],
        }
    )
    write_tsv(path, table)
    assert path.read_text().splitlines() == [
        "r2star_median\tvolume_ml\tp\tage\tr2star_z\tn_voxels\tother",
        "21.81\t5.205\t0.000123\t42.2\t0.44\t520\t1198.968",
        "n/a\t1198.968\t0.635\t70\t0\t647\t0.33333333",
    ]
    assert table.loc[0, "r2star_median"] == 21.811644109844387  # the caller's table is kept
    sidecar = json.loads((tmp_path / "t.json").read_text())
    assert sidecar["r2star_median"] == {
        "Description": describe("r2star_median").description,
        "Format": "number",
        "Units": "1/s",
    }
    assert sidecar["other"] == {"Description": UNDESCRIBED}


def test_significant_digits_keep_small_p_values(tmp_path):
    path = tmp_path / "group" / "determinants.tsv"
    write_tsv(path, pd.DataFrame({"p": [2.3456e-9, 0.0], "beta": [-0.0123456, 123456.7]}))
    assert path.read_text().splitlines()[1:] == ["2.35e-09\t-0.01235", "0\t123500"]


# -- sidecars of the tables the stages write --------------------------------------------------


def test_dseg_sidecar_is_shared_with_its_image(tmp_path):
    out = ParticipantOutputs(tmp_path, "01")
    labels = np.zeros((4, 4, 4), np.int16)
    write_nifti(labels, np.eye(4), out.dseg, sidecar={"Description": "d", "Units": "1"})
    for _ in range(2):  # a rerun keeps the image's keys and the columns once
        write_tsv(out.dseg_tsv, pd.DataFrame({"index": [12], "name": ["Left-Putamen"]}))
    sidecar = json.loads(tsv_sidecar_path(out.dseg_tsv).read_text())
    assert list(sidecar) == ["Description", "Units", "index", "name"]
    assert sidecar["Description"] == "d"


def test_bidsignore_lists_what_bids_has_no_rule_for_and_keeps_the_users_lines(tmp_path):
    (tmp_path / BIDSIGNORE).write_text("mine/\n")
    write_bidsignore(tmp_path)
    write_bidsignore(tmp_path)
    lines = (tmp_path / BIDSIGNORE).read_text().splitlines()
    assert lines[0] == "mine/"
    assert len(lines) == len(set(lines))
    assert {"/report.html", "/group", "/sub-*/figures", "*_provenance.json"} <= set(lines)
    assert {"*_regions.tsv", "*_regions.json", "*_volumes.tsv", "/.ironmap.lock"} <= set(lines)


def test_participant_stage_tables_and_maps(tmp_path):
    from ironmap.simulate.bids import write_cohort
    from ironmap.simulate.cohort import draw_site_panel

    root, out = tmp_path / "bids", tmp_path / "out"
    write_cohort(root, draw_site_panel()[:1])
    assert main(["run", str(root), str(out), "participant"]) == 0
    tables = ["sub-001_lesions.tsv", "sub-001_regions.tsv", "sub-001_volumes.tsv"]
    assert sorted(_check_sidecars(out)) == tables
    regions = read_tsv(ParticipantOutputs(out, "001").regions)
    assert (regions.r2star_median.round(2) == regions.r2star_median).all()
    assert (out / BIDSIGNORE).exists()
    for path in ParticipantOutputs(out, "001").maps.values():
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        if not path.name.endswith("_mask.nii.gz"):
            assert sidecar["SkullStripped"] is False


def _hand_written_cohort(tmp_path, n_hc=24, n_ms=24):
    """Participant-stage tables written with write_tsv, and participants.tsv."""
    rng = np.random.default_rng(5)
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    description = {"Name": "t", "DatasetType": "derivative", "GeneratedBy": [{"Name": "ironmap"}]}
    out.mkdir()
    (out / "dataset_description.json").write_text(json.dumps(description))
    rows = []
    for i in range(n_hc + n_ms):
        ms, pid, site = i >= n_hc, f"sub-{i + 1:03d}", "ab"[i % 2]
        age, dd = rng.uniform(25, 65), rng.uniform(1, 15)
        if i < 2:  # controls span every age: nobody outside their support (no age warning)
            age = (25.0, 65.0)[i]
        rows.append(
            {
                "participant_id": pid,
                "age": round(age, 1),
                "sex": "FM"[(i // 2) % 2],
                "group": "MS" if ms else "HC",
                "phenotype": ("RRMS", "SPMS", "PPMS")[i % 3] if ms else np.nan,
                "disease_duration": round(dd, 1) if ms else np.nan,
                "edss": float(rng.integers(0, 14)) / 2 if ms else np.nan,
                "site": site,
            }
        )
        regions = []
        for region in (*DEEP_GM, "nawm", "lesions"):
            value = 25 + 0.1 * age + (3 if ms and region == "putamen" else 0) + rng.normal()
            if region == "lesions":
                value = 18 + rng.normal() if ms else np.nan
            for hemi in ("both",) if region in ("nawm", "lesions") else HEMISPHERES:
                regions.append([pid, region, hemi, value, value, 2.0, 100, 5.0, "ok", 0.0])
        columns = [
            *("participant_id", "region", "hemisphere", "r2star_median", "r2star_mean"),
            *("r2star_iqr", "n_voxels", "volume_ml", "alignment", "alignment_score"),
        ]
        outputs = ParticipantOutputs(out, pid.removeprefix("sub-"))
        write_tsv(outputs.regions, pd.DataFrame(regions, columns=columns))
        volumes = {
            "participant_id": pid,
            "icv_ml": 1400.0,
            "brain_ml": 1200.0 - 2 * dd * ms,
            "cortical_gm_ml": 480 + rng.normal(0, 20),
            "nbv": 0.86 - 0.002 * dd * ms + rng.normal(0, 0.01),
            "lesion_volume_ml": rng.gamma(2, 4) if ms else 0.0,
            "lesion_count": 5 if ms else 0,
        }
        write_tsv(outputs.volumes, pd.DataFrame([volumes]))
    pd.DataFrame(rows).to_csv(bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return bids, out


def test_group_stage_tables(tmp_path):
    bids, out = _hand_written_cohort(tmp_path)
    with pytest.warns(UserWarning, match="fewer than 10"):  # small cohort: pooled scales
        run_group(GroupConfig(bids, out, report=False, mixed=True))
    checked = _check_sidecars(out / "group")
    record = json.loads(group_path(out, "provenance.json").read_text())
    absent = {  # one session each, no lesion tables: those analyses write no (empty) tables
        GROUP_TABLES[key]
        for name, entry in record["analyses"].items()
        if not entry["ran"]
        for key in ANALYSIS_TABLES[name]
    }
    no_chi = {GROUP_TABLES[key] for key in ANALYSIS_TABLES["chi"]}  # no regional chi
    assert (
        absent == {"longitudinal.tsv", "longitudinal_sessions.tsv", "lesion_models.tsv"} | no_chi
    )
    assert sorted(checked) == sorted(set(GROUP_TABLES.values()) - absent)
    comparison = pd.read_csv(group_path(out, "group_comparison.tsv"), sep="\t", dtype=str)
    assert comparison.estimate.dropna().str.fullmatch(r"-?\d+(\.\d{1,2})?").all()
    assert {"/group", "*_regions.tsv"} <= set((out / BIDSIGNORE).read_text().splitlines())
    again = run_group(GroupConfig(bids, out, report=False, mixed=True))
    assert again.skipped  # the sidecars are outputs: present, so the tables are kept
