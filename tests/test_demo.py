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
    for sub, t in truth["subjects"].items():
        table = pd.read_csv(out / "ironmap" / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
        for row in table[table.hemisphere == "both"].itertuples():
            true = t["regions"][row.region]["both"]["r2star_mean"]
            if true is None:  # no lesions in controls
                continue
            expected = true * t["site_r2star_bias"]
            assert row.r2star_median == pytest.approx(expected, rel=0.03), (sub, row.region)
