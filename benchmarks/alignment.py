"""Segmentation-to-image alignment check: detection rate against displacement, false alarms.

Cohort: simulated participants (``draw_cohort``, seeded; 7 sites, 2-12 echoes, 2x2x2 and
2x2x3 mm GRE voxels), each with its ground-truth dseg on the 1 mm phantom grid. Cases per
participant, checked with :func:`ironmap.segmentation.alignment.measure_alignment` (the
decision of ``UserDseg``, which warns for ``doubtful`` and refuses ``misaligned``):

- ``aligned``: the dseg as simulated (false alarms);
- ``shift D mm``: its affine translated by D mm in a random direction (two per participant);
- ``LR flip, midline``: the label array reversed left-right; the phantom's field of view is
  centred on the midline, so this mirrors the labels across it (no displacement);
- ``LR flip, off-centre``: the same after cropping 4-12 mm from one side of the dseg (affine
  kept consistent), so the mirror also displaces the labels by that much.

Table: per case, the share caught (refused or doubtful) and refused, the estimated
displacement (median and range), the median score and flip score (and the flip score's range),
and the median CPU milliseconds per check (``time.process_time``: other processes on a loaded
machine do not inflate it; wall time is printed below the table). Simulation is not timed.

Run: ``python benchmarks/alignment.py [--n 50] [--quick]`` (``--quick``: 10 participants).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from ironmap.regions import region_codes
from ironmap.regions.catalog import LABEL_NAMES
from ironmap.segmentation.alignment import (
    FLIP_SCORE,
    REFUSE_SCORE,
    REFUSE_SHIFT_MM,
    WARN_SCORE,
    WARN_SHIFT_MM,
    measure_alignment,
)
from ironmap.simulate import draw_cohort, generate_subject

SHIFTS_MM = (2.0, 4.0, 6.0, 10.0, 30.0)
DIRECTIONS = 2  # random directions per participant and displacement


def cases(labels: np.ndarray, affine: np.ndarray, rng: np.random.Generator):
    """``(case, labels, affine)`` of every displaced or flipped version of one dseg."""
    yield "aligned", labels, affine
    for distance in SHIFTS_MM:
        for _ in range(DIRECTIONS):
            direction = rng.normal(size=3)
            moved = affine.copy()
            moved[:3, 3] += distance * direction / np.linalg.norm(direction)
            yield f"shift {distance:g} mm", labels, moved
    yield "LR flip, midline", labels[::-1], affine
    crop = int(rng.integers(4, 13))  # voxels (mm) removed from the left
    cropped = affine.copy()
    cropped[:3, 3] += affine[:3, 0] * crop
    yield "LR flip, off-centre", labels[crop:][::-1], cropped


def run(n: int, seed: int) -> pd.DataFrame:
    codes = region_codes(LABEL_NAMES)
    rng = np.random.default_rng(seed)
    rows = []
    for subject in draw_cohort(n_hc=n // 2, n_ms=n - n // 2, seed=seed):
        data = generate_subject(subject)
        for case, labels, seg_affine in cases(data.anatomy.labels, data.anatomy.affine, rng):
            start, cpu = time.perf_counter(), time.process_time()
            result = measure_alignment(labels, seg_affine, codes, data.magnitude, data.affine)
            rows.append(
                {
                    "case": case,
                    "site": subject.site.name,
                    "outcome": result.outcome,
                    "shift_mm": result.shift_norm_mm,
                    "score": result.score,
                    "flip_score": result.flip_score,
                    "seconds": time.perf_counter() - start,
                    "cpu_seconds": time.process_time() - cpu,
                }
            )
    return pd.DataFrame(rows)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    order = list(dict.fromkeys(results["case"]))
    grouped = results.groupby("case", sort=False)
    table = pd.DataFrame(
        {
            "n": grouped.size(),
            "caught %": grouped.outcome.apply(lambda o: 100 * np.mean(o != "ok")).round(0),
            "refused %": grouped.outcome.apply(lambda o: 100 * np.mean(o == "misaligned")),
            "est. shift mm": grouped.shift_mm.median().round(1),
            "est. shift range": grouped.shift_mm.agg(lambda x: f"{x.min():.1f}-{x.max():.1f}"),
            "score": grouped.score.median().round(2),
            "flip score": grouped.flip_score.median().round(2),
            "flip score range": grouped.flip_score.agg(
                lambda x: f"{x.min():.2f} to {x.max():.2f}"
            ),
            "ms CPU": (1000 * grouped.cpu_seconds.median()).round(0),
        }
    )
    table["refused %"] = table["refused %"].round(0)
    return table.loc[order]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="participants (default 50)")
    parser.add_argument("--quick", action="store_true", help="10 participants")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    n = 10 if args.quick else args.n
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({platform.system()} {platform.release()}); Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    print(
        f"thresholds: doubtful at >= {WARN_SHIFT_MM:g} mm and score >= {WARN_SCORE:g} "
        f"(or flip score >= {FLIP_SCORE:g}); refused at >= {REFUSE_SHIFT_MM:g} mm and "
        f"score >= {REFUSE_SCORE:g}"
    )
    results = run(n, args.seed)
    sites = ", ".join(
        f"{s} {c}" for s, c in results.query("case == 'aligned'").site.value_counts().items()
    )
    print(f"\n{n} simulated participants ({sites}), seed {args.seed}:")
    print(summary(results).to_string())
    aligned = results.query("case == 'aligned'")
    print(
        f"\nfalse alarms on aligned dsegs: {100 * np.mean(aligned.outcome != 'ok'):.1f} % "
        f"(max estimated shift {aligned.shift_mm.max():.2f} mm, max score "
        f"{aligned.score.max():.2f}, max flip score {aligned.flip_score.max():.2f})"
    )
    print(
        f"time per check: CPU median {1000 * results.cpu_seconds.median():.0f} ms, max "
        f"{1000 * results.cpu_seconds.max():.0f} ms; wall median "
        f"{1000 * results.seconds.median():.0f} ms, max {1000 * results.seconds.max():.0f} ms "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
