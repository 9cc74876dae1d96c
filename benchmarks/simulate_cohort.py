"""Time and disk size of simulating the default cohort (81 HC + 97 MS at 7 sites).

Targets (issue #3): <= 5 min on 2 cores and <= 2 GB on disk.

Run: ``python benchmarks/simulate_cohort.py [--n-hc 81 --n-ms 97 --n-jobs 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ironmap.workflows.simulate import SimulateConfig, run_simulate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-hc", type=int, default=81)
    parser.add_argument("--n-ms", type=int, default=97)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cohort"
        start = time.perf_counter()
        run_simulate(SimulateConfig(out, n_hc=args.n_hc, n_ms=args.n_ms, n_jobs=args.n_jobs))
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        n_files = sum(1 for p in Path(tmp).rglob("*") if p.is_file())
    n = args.n_hc + args.n_ms
    print(f"{'subjects':>9}{'jobs':>6}{'seconds':>9}{'s/subject':>11}{'disk MB':>9}{'files':>7}")
    row = f"{n:>9}{args.n_jobs:>6}{seconds:>9.1f}{seconds / n:>11.2f}"
    print(f"{row}{size / 2**20:>9.0f}{n_files:>7}")


if __name__ == "__main__":
    main()
