"""Lesions one by one: per-lesion volume, rim detection and pooling, against simulated truth.

A seeded cohort of MS patients (``ironmap simulate --n-hc 0 --n-ms N --phase``: the demo's sites,
SNR and lesion load; a share of the larger lesions has a paramagnetic rim, R2* 1.6x and +3 Hz
in their outer millimetre, ``ironmap.simulate.lesions``) goes through the participant stage.
Each row of ``sub-*_lesions.tsv`` is matched to the nearest true lesion (centroids within
4 mm, one to one). Printed:

- per-lesion volume error (%) by size (R2* voxels), acceptance: within 10 % for >= 10 voxels;
- how well the rim-core contrast separates rim lesions from the others (ROC AUC over matched
  lesions with a core), from R2* and from the local field; acceptance: AUC >= 0.9;
- whether the rows add up to the pooled ``lesions`` row of ``regions.tsv`` (voxels and mean).

Run: ``python benchmarks/lesions.py [--n-ms 12] [--seed 7]`` (about 10 s per patient).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ironmap.cli import main as ironmap


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties counted half."""
    ranks = stats.rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def match(table: pd.DataFrame, truth: list[dict], *, max_mm: float = 4.0) -> pd.DataFrame:
    """Each estimated lesion with its nearest true lesion (greedy, one to one, <= max_mm)."""
    est = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    true = np.array([t["centroid_mm"] for t in truth], dtype=float).reshape(-1, 3)
    if not len(est) or not len(true):
        return table.iloc[:0].assign(true_volume_ml=[], rim=[])
    dist = np.linalg.norm(est[:, None, :] - true[None, :, :], axis=2)
    pairs, used_e, used_t = [], set(), set()
    for e, t in zip(*np.unravel_index(np.argsort(dist, axis=None), dist.shape), strict=True):
        if dist[e, t] > max_mm:
            break
        if e in used_e or t in used_t:
            continue
        used_e.add(e)
        used_t.add(t)
        pairs.append((e, t))
    rows = table.iloc[[e for e, _ in pairs]].copy()
    rows["true_volume_ml"] = [truth[t]["volume_ml"] for _, t in pairs]
    rows["rim"] = [truth[t]["rim"] for _, t in pairs]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bids, out = Path(tmp) / "bids", Path(tmp) / "out"
        common = ["-q", "--n-jobs", str(args.n_jobs)]
        simulate = ["simulate", str(bids), "--n-hc", "0", "--n-ms", str(args.n_ms)]
        assert ironmap([*simulate, "--seed", str(args.seed), "--phase", *common]) == 0
        assert ironmap(["run", str(bids), str(out), "participant", *common]) == 0
        truth = json.loads((Path(tmp) / "bids_truth.json").read_text())["subjects"]
        matched, pooled_checks, n_true, n_est = [], [], 0, 0
        for pid, record in truth.items():
            anat = out / pid / "anat"
            table = pd.read_csv(anat / f"{pid}_lesions.tsv", sep="\t")
            regions = pd.read_csv(anat / f"{pid}_regions.tsv", sep="\t")
            n_true += len(record["lesions"])
            n_est += len(table)
            matched.append(match(table, record["lesions"]))
            row = regions[regions.region == "lesions"].iloc[0]
            w = table.n_voxels.where(table.r2star_mean.notna(), 0)
            mean = (table.r2star_mean.fillna(0) * w).sum() / w.sum() if w.sum() else np.nan
            pooled_checks.append((table.n_voxels.sum() == row.n_voxels, mean, row.r2star_mean))
    lesions = pd.concat(matched, ignore_index=True)
    lesions["volume_error_pct"] = 100 * (lesions.volume_ml / lesions.true_volume_ml - 1)
    print(
        f"{args.n_ms} MS patients (seed {args.seed}): {n_true} true lesions, {n_est} listed, "
        f"{len(lesions)} matched within 4 mm ({time.perf_counter() - start:.0f} s)\n"
    )
    print("Per-lesion volume error (%), by size in R2* voxels")
    print(f"{'size':<12}{'lesions':>8}{'median':>9}{'max |err|':>11}{'within 10 %':>13}")
    bins = [(1, 10), (10, 30), (30, 100), (100, 10**9)]
    for lo, hi in bins:
        part = lesions[(lesions.n_voxels >= lo) & (lesions.n_voxels < hi)].volume_error_pct
        if part.empty:
            continue
        label = f"{lo}-{hi - 1}" if hi < 10**9 else f">= {lo}"
        within = 100 * (part.abs() <= 10).mean()
        print(
            f"{label:<12}{len(part):>8}{part.median():>+9.1f}{part.abs().max():>11.1f}"
            f"{within:>12.0f}%"
        )
    cored = lesions[lesions.n_core > 0]
    rim = cored.rim.to_numpy(bool)
    print(
        f"\nRim lesions vs the others (matched lesions with a core: {rim.sum()} rim, "
        f"{(~rim).sum()} without)"
    )
    for column, label in (
        ("r2star_rim_core_diff", "R2* rim - core (1/s)"),
        ("field_rim_core_diff_hz", "local field rim - core (Hz)"),
    ):
        values = cored[column].to_numpy(float)
        ok = np.isfinite(values)
        print(
            f"  {label:<28} AUC {auc(values[ok], rim[ok]):.3f}   median rim "
            f"{np.median(values[ok & rim]):+.2f}, others {np.median(values[ok & ~rim]):+.2f}"
        )
    voxels_match = all(v for v, _, _ in pooled_checks)
    worst = max(abs(m - p) for _, m, p in pooled_checks if np.isfinite(p))
    print(
        f"\nRows add up to the pooled lesion row: voxels {'yes' if voxels_match else 'NO'} in "
        f"{len(pooled_checks)} patients; largest difference of the mean {worst:.2e} 1/s"
    )


if __name__ == "__main__":
    main()
