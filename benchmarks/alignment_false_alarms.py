"""False alarms and detection of the alignment check when the dseg comes from a segmenter.

``benchmarks/alignment.py`` checks the true labels, which fit the simulated GRE to the voxel. A
real dseg is drawn by a segmenter on another image (a T1w), and fits less sharply. Here every
motion-free participant's dseg is, per condition:

- ``truth``: the simulated labels (the reference: the check was tuned on these);
- ``segmenter``: the true labels degraded by :func:`ironmap.simulate.segmenter.segmenter_labels`
  with its defaults (partial-volume blur FWHM 2 mm, smooth displacement RMS 1 mm over 12 mm,
  every label grown or shrunk by 1 mm, 30 % of boundary voxels jittered by one voxel);
- ``segmenter, coarse``: the same, harsher (blur 3 mm, displacement RMS 1.5 mm);
- ``segmenter, noisy``: the defaults with 60 % of boundary voxels jittered (a noisy T1w);
- ``atlas path`` (``--atlas N`` participants, drawn from the deformed bundled atlas): the bundled
  atlas registered by ANTs to the participant's simulated 1 mm T1w
  (:func:`ironmap.segmentation.register.register_atlas`, the registration of
  ``--segmentation atlas`` without the R2* refinement), labels on the T1w grid.

False alarms: the share of motion-free dsegs found ``doubtful`` (warned) and ``misaligned``
(refused) by :func:`ironmap.segmentation.alignment.measure_alignment` with the thresholds of
that module. Detection: the same dseg with its affine translated by 2, 4 and 6 mm in a random
direction (one per participant and distance). The median Dice of the deep grey-matter labels
against the truth says how far each condition is from it.

Run: ``python benchmarks/alignment_false_alarms.py [--n 40] [--atlas 0] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd

from ironmap.regions import region_codes
from ironmap.regions.catalog import LABEL_NAMES, by_name
from ironmap.segmentation.alignment import (
    FLIP_SCORE,
    REFUSE_SCORE,
    REFUSE_SHIFT_MM,
    WARN_SCORE,
    WARN_SHIFT_MM,
    measure_alignment,
)
from ironmap.simulate import draw_cohort, generate_subject
from ironmap.simulate.segmenter import segmenter_labels

SHIFTS_MM = (2.0, 4.0, 6.0)
#: condition -> keyword arguments of segmenter_labels (None: the truth).
CONDITIONS = {
    "truth": None,
    "segmenter": {},
    "segmenter, coarse": {"blur_fwhm_mm": 3.0, "displacement_rms_mm": 1.5},
    "segmenter, noisy": {"boundary_error": 0.6},
}
#: The flip threshold before issue 26 (false alarms with it are printed too).
FORMER_FLIP_SCORE = 0.03
DICE_REGIONS = ("thalamus", "caudate", "putamen", "pallidum")
GOAL_PCT = 2.0


def deep_gm_dice(labels: np.ndarray, truth: np.ndarray) -> float:
    """Median Dice over the left and right labels of :data:`DICE_REGIONS`."""
    values = []
    for region in DICE_REGIONS:
        for code in by_name(region).codes:
            a, b = labels == code, truth == code
            values.append(2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.median(values))


def flipped(labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels mirrored along their first axis across the plane through their centroid
    (the affine moved so that the labelled volume stays where it was)."""
    profile = (labels > 0).sum(axis=(1, 2))
    centre = float(profile @ np.arange(profile.size)) / profile.sum()
    moved = affine.copy()
    moved[:3, 3] += affine[:3, 0] * (2.0 * centre - (labels.shape[0] - 1))
    return labels[::-1], moved


def check_cases(key, labels, seg_affine, data, codes, rng, truth):
    """Rows of the motion-free check, the shifted ones and the mirrored one of one dseg."""
    dice = deep_gm_dice(labels, truth)
    cases = [("none", labels, seg_affine)]
    for distance in SHIFTS_MM:
        direction = rng.normal(size=3)
        moved = seg_affine.copy()
        moved[:3, 3] += distance * direction / np.linalg.norm(direction)
        cases.append((f"{distance:g} mm", labels, moved))
    cases.append(("LR flip", *flipped(labels, seg_affine)))
    for case, case_labels, affine in cases:
        cpu = time.process_time()
        result = measure_alignment(case_labels, affine, codes, data.magnitude, data.affine)
        yield {
            "anatomy": key[0],
            "condition": key[1],
            "case": case,
            "outcome": result.outcome,
            "flipped": result.flipped,
            "shift_mm": result.shift_norm_mm,
            "score": result.score,
            "flip_score": result.flip_score,
            "dice": dice,
            "cpu_seconds": time.process_time() - cpu,
        }


def run(n: int, n_anatomy: int, n_registered: int, seed: int) -> pd.DataFrame:
    codes = region_codes(LABEL_NAMES)
    rng = np.random.default_rng(seed)
    rows = []
    cohorts = [
        ("phantom", draw_cohort(n_hc=n // 2, n_ms=n - n // 2, seed=seed) if n else []),
        ("atlas", draw_cohort(n_hc=n_anatomy, n_ms=0, seed=seed + 1) if n_anatomy else []),
    ]
    for anatomy, subjects in cohorts:
        for subject in subjects:
            data = generate_subject(subject, anatomy=anatomy)
            truth = data.anatomy.labels
            for condition, options in CONDITIONS.items():
                labels = truth if options is None else segmenter_labels(
                    truth, data.anatomy.affine, rng, **options
                )  # fmt: skip
                key = (anatomy, condition)
                rows += check_cases(key, labels, data.anatomy.affine, data, codes, rng, truth)
    if n_registered:
        from ironmap.segmentation.register import register_atlas

        for subject in draw_cohort(n_hc=n_registered, n_ms=0, seed=seed + 2):
            data = generate_subject(subject, anatomy="atlas", with_t1w=True)
            registered = register_atlas(data.t1w, data.anatomy.affine, n_threads=1)
            rows += check_cases(
                ("atlas", "atlas path"), registered.labels, data.anatomy.affine, data, codes,
                rng, data.anatomy.labels,
            )  # fmt: skip
    return pd.DataFrame(rows)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per anatomy and condition: false alarms without motion, detection of each
    shift (caught: warned or refused) and of the mirror."""
    table = {}
    for key, rows in results.groupby(["anatomy", "condition"], sort=False):
        still = rows[rows["case"] == "none"]
        row = {
            "n": len(still),
            "Dice deep GM": round(still["dice"].median(), 2),
            "warned %": round(100 * np.mean(still.outcome == "doubtful"), 1),
            "refused %": round(100 * np.mean(still.outcome == "misaligned"), 1),
            "max shift mm": round(still.shift_mm.max(), 2),
            "max score": round(still.score.max(), 2),
            "max flip": round(still.flip_score.max(), 2),
        }
        for distance in SHIFTS_MM:
            moved = rows[rows["case"] == f"{distance:g} mm"]
            caught = 100 * np.mean(moved.outcome != "ok")
            refused = 100 * np.mean(moved.outcome == "misaligned")
            row[f"{distance:g} mm caught/refused %"] = f"{caught:.0f}/{refused:.0f}"
        mirror = rows[rows["case"] == "LR flip"]
        row["flip caught %"] = round(100 * np.mean(mirror.flipped), 0)
        row["flip score (mirrored)"] = (
            f"{mirror.flip_score.min():.2f} to {mirror.flip_score.max():.2f}"
        )
        table[key] = row
    return pd.DataFrame.from_dict(table, orient="index")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="phantom participants (default 40)")
    parser.add_argument(
        "--anatomy", type=int, default=12, help="participants drawn from the deformed atlas"
    )
    parser.add_argument(
        "--registered", type=int, default=0, help="atlas-path participants (ANTs, ~2-5 min each)"
    )
    parser.add_argument("--quick", action="store_true", help="8 + 4 participants, no ANTs")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--save", help="write every check to this TSV")
    args = parser.parse_args(argv)
    n, n_anatomy, n_registered = (
        (8, 4, 0) if args.quick else (args.n, args.anatomy, args.registered)
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(
        f"thresholds: doubtful at >= {WARN_SHIFT_MM:g} mm and score >= {WARN_SCORE:g} "
        f"(or flip score >= {FLIP_SCORE:g}); refused at >= {REFUSE_SHIFT_MM:g} mm and "
        f"score >= {REFUSE_SCORE:g}"
    )
    start = time.perf_counter()
    results = run(n, n_anatomy, n_registered, args.seed)
    if args.save:
        results.to_csv(args.save, sep="\t", index=False)
    print(
        f"\n{n} phantom + {n_anatomy} atlas-anatomy (+ {n_registered} registered) "
        f"participants, seed {args.seed}:"
    )
    print(summary(results).to_string())
    still = results[(results["case"] == "none") & (results.condition != "truth")]
    rate = 100 * np.mean(still.outcome != "ok")
    flips = 100 * np.mean(still.flipped)
    former = 100 * np.mean((still.outcome != "ok") | (still.flip_score >= FORMER_FLIP_SCORE))
    print(
        f"\nfalse alarms on motion-free segmenter dsegs: {rate:.1f} % (goal <= {GOAL_PCT:g} %; "
        f"{flips:.1f} % from the flip score); with the former flip threshold "
        f"{FORMER_FLIP_SCORE:g}: {former:.1f} %"
    )
    print(
        f"CPU per check: median {1000 * results.cpu_seconds.median():.0f} ms; "
        f"wall {time.perf_counter() - start:.0f} s in all"
    )


if __name__ == "__main__":
    main()
