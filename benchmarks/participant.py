"""Participant stage: seconds per participant (resample / fit / stats split), and how the
partial-volume threshold ``--min-fraction`` trades voxels for accuracy.

Cohort: one simulated MS patient per site (7 sites, 2-12 echoes, 2-3 mm voxels), so every
protocol is timed and checked. Accuracy: |regional median R2* / truth - 1| (both hemispheres),
maximum over sites, in %.

Run: ``python benchmarks/participant.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from ironmap.io.derivatives import ParticipantOutputs, read_tsv
from ironmap.simulate.bids import write_cohort
from ironmap.simulate.cohort import draw_site_panel
from ironmap.workflows.participant import ParticipantConfig, run_participant

THRESHOLDS = (0.5, 0.75, 0.9, 1.0)


def make_cohort(root: Path) -> dict:
    return write_cohort(root, draw_site_panel())


def errors(truth: dict, out: Path) -> pd.DataFrame:
    rows = []
    for sub, t in truth.items():
        table = read_tsv(ParticipantOutputs(out, sub.removeprefix("sub-")).regions)
        for row in table[table.hemisphere == "both"].itertuples():
            true = t["regions"][row.region]["both"]["r2star_mean"]
            if true:
                err = 100 * abs(row.r2star_median / (true * t["site_r2star_bias"]) - 1)
                rows.append((row.region, err, row.n_voxels))
    return pd.DataFrame(rows, columns=["region", "error", "n_voxels"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bids"
        truth = make_cohort(root)
        accuracy, voxels = {}, {}
        for threshold in THRESHOLDS:
            out = Path(tmp) / f"out{threshold}"
            results = run_participant(ParticipantConfig(root, out, min_fraction=threshold))
            if threshold == 0.9:
                times = pd.DataFrame([r.seconds for r in results])
                sites = [truth[f"sub-{r.name[4:]}"]["site"] for r in results]
            table = errors(truth, out)
            accuracy[threshold] = table.groupby("region")["error"].max()
            voxels[threshold] = table.groupby("region")["n_voxels"].min()
    print("Seconds per participant (default --min-fraction 0.9, 1 process):")
    times.index = sites
    times["total"] = times.sum(axis=1)
    print(times.round(2).to_string())
    print(f"mean total: {times['total'].mean():.2f} s")
    print("\nmax |median R2* / truth - 1| over the 7 sites, % (min voxels per region):")
    table = pd.DataFrame(
        {
            f"min-fraction {t}": [
                f"{accuracy[t][r]:5.2f} ({voxels[t][r]:.0f})" for r in accuracy[t].index
            ]
            for t in THRESHOLDS
        },
        index=accuracy[THRESHOLDS[0]].index,
    )
    print(table.to_string())


if __name__ == "__main__":
    main()
