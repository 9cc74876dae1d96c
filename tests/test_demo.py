"""``ironmap demo --quick`` end to end (slow: ~30 s; run with ``make test-slow``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ironmap.cli import main


@pytest.mark.slow
def test_quick_demo_runs_resumes_and_recovers_r2star(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--quick"]) == 0
    assert "20 done, 0 skipped, 0 failed" in capsys.readouterr().out
    truth = json.loads((out / "bids_truth.json").read_text())
    assert len(truth["subjects"]) == 20
    # resume: nothing is recomputed
    assert main(["demo", str(out), "--quick"]) == 0
    assert "0 done, 20 skipped, 0 failed" in capsys.readouterr().out
    errors = []
    for sub, t in truth["subjects"].items():
        table = pd.read_csv(out / "ironmap" / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
        for row in table[table.hemisphere == "both"].itertuples():
            true = t["regions"][row.region]["both"]["r2star_mean"]
            if true is not None:  # controls have no lesions
                errors.append((row.region, row.r2star_median / (true * t["site_r2star_bias"]) - 1))
    errors = pd.DataFrame(errors, columns=["region", "error"])
    # unbiased for every structure; single small nuclei (~15 voxels) scatter by ~1 % SD
    assert errors.groupby("region").error.mean().abs().max() < 0.01
    assert errors.error.abs().max() < 0.05
    assert errors.error.abs().median() < 0.005
    assert (out / "ironmap" / "report.html").exists()


@pytest.mark.slow
def test_default_demo_recovers_every_planted_effect(tmp_path, capsys):
    """The 178-participant demo (~5 min on 2 cores): the group stage finds what was planted.

    Effects are at literature scale (MS - HC 1-2 1/s, Cohen's d 0.5-0.8): MS - HC is found in
    every region with an effect; the phenotype contrasts and slopes have the right sign.
    """
    out = tmp_path / "demo"
    assert main(["demo", str(out)]) == 0
    comp = pd.read_csv(out / "ironmap" / "group" / "group_comparison.tsv", sep="\t")
    ms_hc = comp[comp.contrast == "MS-HC"].set_index("region")
    for region in ("thalamus", "caudate", "putamen", "red_nucleus", "dentate_nucleus"):
        assert ms_hc.loc[region, "estimate"] > 0, region
        assert ms_hc.loc[region, "p"] < 0.05, region
        prog = comp[(comp.region == region) & (comp.contrast == "progressive-RRMS")].iloc[0]
        assert prog.estimate > 0
    for region in ("pallidum", "substantia_nigra"):
        assert ms_hc.loc[region, "ci_low"] < 0 < ms_hc.loc[region, "ci_high"], region
    assert (ms_hc.n_a + ms_hc.n_b <= 178).all()
    det = pd.read_csv(out / "ironmap" / "group" / "determinants.tsv", sep="\t")
    uni = det[det.model == "univariable"].set_index(["region", "predictor"])
    for region in ("caudate", "putamen", "dentate_nucleus"):
        for predictor in ("disease_duration", "edss"):
            assert uni.loc[(region, predictor), "beta"] > 0
    assert uni.loc[("lesions", "disease_duration"), "beta"] < 0
    page = (out / "ironmap" / "report.html").read_text()
    assert "ComBat" in page
    assert "MS-HC (n = 97 vs 81)" in page
    assert (out / "ironmap" / "report.html").stat().st_size > 100_000
