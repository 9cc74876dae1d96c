"""Group stage end to end on participant-stage tables written by hand (fast), and the report."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.regions import DEEP_GM
from ironmap.workflows.group import GroupConfig, run_group


def _write_cohort(tmp_path, *, n_hc=40, n_ms=50, seed=0, putamen_effect=3.0):
    rng = np.random.default_rng(seed)
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir()
    rows = []
    for i in range(n_hc + n_ms):
        ms = i >= n_hc
        pid = f"sub-{i + 1:03d}"
        age = rng.uniform(20, 70)
        site = rng.choice(["a", "b", "c"])
        dd = min(rng.gamma(4, 3), age - 18) if ms else np.nan
        edss = np.clip(np.round((1 + 0.2 * dd + rng.normal(0, 1)) * 2) / 2, 0, 8) if ms else np.nan
        rows.append(
            (
                pid,
                age,
                rng.choice(["F", "M"]),
                "MS" if ms else "HC",
                rng.choice(["RRMS", "SPMS", "PPMS"]) if ms else np.nan,
                dd,
                edss,
                site,
            )
        )
        anat = out / pid / "anat"
        anat.mkdir(parents=True)
        regions = []
        for region in (*DEEP_GM, "nawm", "lesions"):
            base = 25 + 5 * (1 - np.exp(-0.05 * age)) + {"a": 0, "b": 1, "c": -1}[site]
            effect = putamen_effect + 0.1 * dd if (ms and region == "putamen") else 0.0
            value = base + effect + rng.normal(0, 1)
            if region == "lesions":
                value = 18 - 0.2 * dd + rng.normal(0, 0.5) if ms else np.nan
            for hemi in ("left", "right", "both"):
                regions.append((pid, region, hemi, value, value, 2.0, 100, 5.0))
        pd.DataFrame(
            regions,
            columns=[
                "participant_id",
                "region",
                "hemisphere",
                "r2star_median",
                "r2star_mean",
                "r2star_iqr",
                "n_voxels",
                "volume_ml",
            ],
        ).to_csv(anat / f"{pid}_regions.tsv", sep="\t", index=False, na_rep="n/a")
        pd.DataFrame(
            [
                {
                    "participant_id": pid,
                    "icv_ml": 1400.0,
                    "brain_ml": 1200.0 - 3 * (dd if ms else 0),
                    "cortical_gm_ml": 480 + rng.normal(0, 20),
                    "nbv": 0.86 - (0.003 * dd if ms else 0) + rng.normal(0, 0.01),
                    "lesion_volume_ml": rng.gamma(2, 4) if ms else 0.0,
                    "lesion_count": 5 if ms else 0,
                }
            ]
        ).to_csv(anat / f"{pid}_volumes.tsv", sep="\t", index=False)
    pd.DataFrame(
        rows,
        columns=[
            "participant_id",
            "age",
            "sex",
            "group",
            "phenotype",
            "disease_duration",
            "edss",
            "site",
        ],
    ).to_csv(bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return bids, out


def test_group_tables_follow_conventions_and_find_the_planted_effect(tmp_path):
    bids, out = _write_cohort(tmp_path)
    result = run_group(GroupConfig(bids, out))
    comp = pd.read_csv(out / "group" / "group_comparison.tsv", sep="\t")
    assert list(comp.columns[:10]) == [
        "region",
        "contrast",
        "estimate",
        "ci_low",
        "ci_high",
        "cohens_d",
        "p",
        "p_fdr",
        "n_a",
        "n_b",
    ]
    put = comp[(comp.region == "putamen") & (comp.contrast == "MS-HC")].iloc[0]
    assert put.p_fdr < 1e-6
    assert put.estimate > 3.0
    pal = comp[(comp.region == "pallidum") & (comp.contrast == "MS-HC")].iloc[0]
    assert pal.p > 0.01
    age = pd.read_csv(out / "group" / "age_model.tsv", sep="\t")
    assert list(age.columns[:5]) == ["region", "model", "n_hc", "residual_sd", "reference_age"]
    assert (age.n_hc == 40).all()
    subjects = pd.read_csv(out / "group" / "subjects.tsv", sep="\t")
    assert list(subjects.columns[:14]) == [
        "participant_id",
        "site",
        "group",
        "phenotype",
        "age",
        "sex",
        "disease_duration",
        "edss",
        "icv_ml",
        "brain_ml",
        "cortical_gm_ml",
        "nbv",
        "lesion_volume_ml",
        "lesion_count",
    ]
    det = pd.read_csv(out / "group" / "determinants.tsv", sep="\t")
    assert list(det.columns[:10]) == [
        "region",
        "model",
        "predictor",
        "beta",
        "std_beta",
        "ci_low",
        "ci_high",
        "p",
        "p_fdr",
        "n",
    ]
    dd = det[
        (det.region == "putamen")
        & (det.model == "univariable")
        & (det.predictor == "disease_duration")
    ].iloc[0]
    assert dd.ci_low < 0.1 < dd.ci_high
    lesion = det[
        (det.region == "lesions")
        & (det.model == "univariable")
        & (det.predictor == "disease_duration")
    ].iloc[0]
    assert lesion.ci_low < -0.2 < lesion.ci_high
    regions = pd.read_csv(out / "group" / "regions.tsv", sep="\t")
    hc_corr = regions[
        (regions.region == "thalamus")
        & (regions.hemisphere == "both")
        & regions.participant_id.isin(subjects[subjects.group == "HC"].participant_id)
    ]
    assert hc_corr.r2star_z.std() == pytest.approx(1.0, rel=0.25)
    assert result.report == out / "report.html"


def test_report_is_self_contained(tmp_path, capsys):
    bids, out = _write_cohort(tmp_path)
    assert main(["run", str(bids), str(out), "group"]) == 0
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") >= 4
    external = re.findall(r"""(?:src|href)=["'](?!data:)[^"']+""", page)
    assert external == []
    assert "<script" not in page
    assert "Ropele" in page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium")
def test_report_renders_in_headless_chromium(tmp_path):
    bids, out = _write_cohort(tmp_path, n_hc=20, n_ms=20)
    run_group(GroupConfig(bids, out))
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,3000",
            f"--screenshot={shot}",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert shot.stat().st_size > 50_000  # figures and tables drawn, not a blank page


def test_participants_missing_from_the_table(tmp_path, capsys):
    bids, out = _write_cohort(tmp_path, n_hc=10, n_ms=10)
    table = pd.read_csv(bids / "participants.tsv", sep="\t")
    table.iloc[1:].to_csv(bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    assert main(["run", str(bids), str(out), "group"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "participants.tsv: no row for sub-001; every processed participant needs one"
    )
