"""Participant-stage throughput: 1 and 2 workers, local processes and a Dask LocalCluster.

Cohort: the quick demo cohort (10 HC + 10 MS, 7 sites). For every executor the stage runs from
scratch; the table gives wall time, participants per hour, speed-up over 1 local worker, the
largest worker peak RSS, and the mean seconds per participant spent in each step
(resample = I/O + label transfer, fit, stats = tables + QC figure + provenance). The last lines
extrapolate to a 50 000-participant run (core-hours, output disk).

Run: ``python benchmarks/scaling.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.workflows.participant import ParticipantConfig, run_participant
from ironmap.workflows.simulate import QUICK_COHORT, SimulateConfig, run_simulate


def _run(bids: Path, out: Path, **options) -> dict:
    start = time.perf_counter()
    results = run_participant(ParticipantConfig(bids, out, **options))
    wall = time.perf_counter() - start
    assert all(r.status == "done" for r in results), [r.error for r in results]
    steps = pd.DataFrame([r.seconds for r in results]).mean()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "wall_s": wall,
        "per_hour": len(results) * 3600 / wall,
        "peak_rss_mb": max(r.peak_rss_mb for r in results),
        **{f"{k}_s": v for k, v in steps.items()},
        "out_mb_per_subject": size / 2**20 / len(results),
        "n": len(results),
    }


def main() -> None:
    from distributed import LocalCluster

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        bids = Path(tmp) / "bids"
        n_hc, n_ms = QUICK_COHORT
        run_simulate(SimulateConfig(bids, n_hc=n_hc, n_ms=n_ms, n_jobs=2))
        rows["local, 1 worker"] = _run(bids, Path(tmp) / "l1", n_jobs=1)
        rows["local, 2 workers"] = _run(bids, Path(tmp) / "l2", n_jobs=2)
        for workers in (1, 2):
            with LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                rows[f"dask, {workers} worker{'s' * (workers > 1)}"] = _run(
                    bids, Path(tmp) / f"d{workers}", scheduler_address=cluster.scheduler_address
                )
    table = pd.DataFrame(rows).T
    base = table.loc["local, 1 worker", "per_hour"]
    table.insert(2, "speedup", table["per_hour"] / base)
    cols = ["wall_s", "per_hour", "speedup", "peak_rss_mb", "resample_s", "fit_s", "stats_s"]
    print(f"participant stage on {int(table.n.iloc[0])} participants (quick demo cohort)")
    print(table[cols].round(2).to_string())
    per_subject_core_s = 3600 / base
    disk = float(np.mean(table.out_mb_per_subject))
    print(
        f"\n50 000 participants: {50_000 * per_subject_core_s / 3600:,.0f} core-hours at "
        f"{per_subject_core_s:.2f} core-seconds each; outputs {50_000 * disk / 1024:,.0f} GB "
        f"({disk:.1f} MB per participant)"
    )


if __name__ == "__main__":
    main()
