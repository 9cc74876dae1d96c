"""``--segmentation atlas`` against the true labels of simulated subjects.

Cohort: one healthy control per site (7 sites, 2-12 echoes, 2 x 2 x 2 or 2 x 2 x 3 mm voxels),
each drawn from the bundled atlas under a random affine + smooth deformation, with nuclei reshaped
away from the atlas's own (``ironmap.simulate.atlas_anatomy``). For every subject:

* the participant stage runs twice, with the true segmentation (``--segmentation auto``, the
  simulated dseg) and with ``--segmentation atlas``, each subject in its own process, so that wall
  time and peak memory (``ru_maxrss``) are per subject;
* Dice of each structure and hemisphere between the written ``desc-ironmap_dseg`` (on the R2*
  grid subdivided to 1 mm, which here is the truth's own 1 mm grid) and the true labels;
* the regional median R2* (``regions.tsv``) with atlas labels relative to that with true labels;
* for the first ``--ablation`` subjects, Dice before the R2* refinement (registration alone).

Each subject is registered twice: to its first echo, and to its 1 mm T1w (same images otherwise).

Run: ``python benchmarks/atlas_segmentation.py [--threads 2] [--ablation 2]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.io.derivatives import ParticipantOutputs, read_tsv
from ironmap.segmentation.atlas import IRON_RICH
from ironmap.simulate.bids import write_cohort
from ironmap.simulate.cohort import draw_site_panel

STRUCTURES = {
    "thalamus": (10, 49),
    "caudate": (11, 50),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "substantia_nigra": (101, 102),
    "red_nucleus": (103, 104),
    "dentate_nucleus": (105, 106),
}
TARGET = {r: 0.8 for r in ("thalamus", "caudate", "putamen", "pallidum")} | {
    r: 0.6 for r in ("substantia_nigra", "red_nucleus", "dentate_nucleus")
}


def majority(truth: np.ndarray, truth_affine: np.ndarray, affine: np.ndarray, shape) -> np.ndarray:
    """The true label covering most of each voxel of an aligned block grid (ties: lowest code)."""
    factor = np.rint(np.diag(affine)[:3] / np.diag(truth_affine)[:3]).astype(int)
    f0, f1, f2 = factor
    blocks = truth[: shape[0] * f0, : shape[1] * f1, : shape[2] * f2]
    blocks = blocks.reshape(shape[0], f0, shape[1], f1, shape[2], f2).transpose(0, 2, 4, 1, 3, 5)
    blocks = blocks.reshape(*shape, -1)
    best = np.zeros(shape, np.int16)
    count = np.zeros(shape, np.int16)
    for code in np.unique(blocks):
        n = (blocks == code).sum(-1)
        better = n > count
        best[better], count[better] = code, n[better]
    return best


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def run_one(bids: Path, out: Path, label: str, segmentation: str, threads: int):
    """One participant in a child process: (seconds, peak RSS in MB)."""
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads))
    cmd = [sys.executable, "-m", "ironmap", "run", str(bids), str(out), "participant"]
    cmd += ["--participant-label", label, "--segmentation", segmentation]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{label}: {proc.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="ITK threads (default: 2)")
    parser.add_argument("--ablation", type=int, default=2, help="subjects for the ablation")
    args = parser.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)  # ablation, in process
    subjects = draw_site_panel(group="HC")
    dice_rows, r2_rows, cost_rows, ablation_rows = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        with_t1w = Path(tmp) / "bids_t1w"
        write_cohort(with_t1w, subjects, anatomy="atlas", with_t1w=True)
        echo_only = Path(tmp) / "bids"  # the same images without the T1w
        shutil.copytree(with_t1w, echo_only, ignore=shutil.ignore_patterns("*_T1w.*"))
        for i, subject in enumerate(subjects):
            sub = subject.participant_id
            label = sub.removeprefix("sub-")
            out_true = Path(tmp) / "true"
            run_one(echo_only, out_true, label, "auto", args.threads)
            t_true = read_tsv(ParticipantOutputs(out_true, sub.removeprefix("sub-")).regions)
            for target, bids in (("first echo", echo_only), ("T1w", with_t1w)):
                out = Path(tmp) / target.replace(" ", "_")
                seconds, rss = run_one(bids, out, label, "atlas", args.threads)
                site = subject.site.name
                cost_rows.append(
                    {"target": target, "site": site, "seconds": seconds, "peak_rss_mb": rss}
                )
                img = nib.load(out / sub / "anat" / f"{sub}_desc-ironmap_dseg.nii.gz")
                labels = np.asarray(img.dataobj)
                true_img = nib.load(
                    bids / "derivatives/segmentation" / sub / "anat" / f"{sub}_dseg.nii.gz"
                )
                true = majority(
                    np.asarray(true_img.dataobj), true_img.affine, img.affine, labels.shape
                )
                for region, codes in STRUCTURES.items():
                    for code, side in zip(codes, ("left", "right"), strict=True):
                        dice_rows.append(
                            {
                                "target": target,
                                "site": site,
                                "region": region,
                                "hemisphere": side,
                                "dice": dice(labels == code, true == code),
                            }
                        )
                t_atlas = pd.read_csv(out / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
                merged = t_true.merge(t_atlas, on=["region", "hemisphere"], suffixes=("_t", "_a"))
                merged = merged[merged.region.isin(STRUCTURES)]
                for row in merged.itertuples():
                    r2_rows.append(
                        {
                            "target": target,
                            "site": site,
                            "region": row.region,
                            "hemisphere": row.hemisphere,
                            "diff_pct": 100 * (row.r2star_median_a / row.r2star_median_t - 1),
                        }
                    )
                if i < args.ablation and target == "first echo":
                    ablation_rows += ablation(echo_only, out, sub, true, site)
    report(dice_rows, r2_rows, cost_rows, ablation_rows, args.threads)


def ablation(bids: Path, out: Path, sub: str, true: np.ndarray, site: str) -> list[dict]:
    """Dice of the registered atlas before refinement (same registration, same label grid)."""
    from ironmap.io import load_bids_echoes
    from ironmap.segmentation.autoseg import atlas_segmentation

    echoes = sorted((bids / sub / "anat").glob("*_MEGRE.nii.gz"))
    image = load_bids_echoes(echoes)
    r2 = nib.load(out / sub / "anat" / f"{sub}_R2starmap.nii.gz")
    seg = atlas_segmentation(
        np.asarray(r2.dataobj, dtype=np.float32),
        r2.affine,
        target=image.data[..., 0],
        target_affine=image.affine,
        refine=False,
    )
    rows = []
    for region, codes in IRON_RICH.items():
        for code, side in zip(codes, ("left", "right"), strict=True):
            rows.append(
                {
                    "site": site,
                    "region": region,
                    "hemisphere": side,
                    "dice_registration": dice(seg.labels == code, true == code),
                }
            )
    return rows


def report(dice_rows, r2_rows, cost_rows, ablation_rows, threads: int) -> None:
    d = pd.DataFrame(dice_rows)
    n = d.site.nunique()
    summary = d.groupby(["region", "target"], sort=False)["dice"].agg(["mean", "min"])
    summary = summary.unstack("target")
    summary.columns = [f"{stat} ({target})" for stat, target in summary.columns]
    summary["target"] = pd.Series(TARGET)
    print(
        f"Dice at 1 mm after refinement, {n} subjects x 2 hemispheres, by registration "
        "target (the minimum must reach the target):"
    )
    print(summary.round(3).to_string())
    print("\nDice per subject, first-echo target (left/right mean):")
    first = d[d.target == "first echo"]
    wide = first.groupby(["site", "region"], sort=False)["dice"].mean().unstack("region")
    print(wide.round(2).to_string())
    r = pd.DataFrame(r2_rows)
    r = r[r.hemisphere == "both"]
    table = r.groupby(["region", "target"], sort=False)["diff_pct"].agg(
        mean="mean", max_abs=lambda x: x.abs().max()
    )
    print("\nRegional median R2* (both hemispheres), atlas labels vs true labels, %:")
    print(table.unstack("target").round(2).to_string())
    for target, part in r.groupby("target"):
        print(
            f"largest |difference| ({target}): {part.diff_pct.abs().max():.2f} % (target <= 5 %)"
        )
    if ablation_rows:
        a = pd.DataFrame(ablation_rows).merge(first, on=["site", "region", "hemisphere"])
        print(
            f"\nRefinement on R2* (iron-rich nuclei), mean Dice over {a.site.nunique()} "
            "subjects x 2 hemispheres, first-echo target:"
        )
        print(
            a.groupby("region", sort=False)[["dice_registration", "dice"]]
            .mean()
            .rename(columns={"dice": "dice_refined"})
            .round(3)
            .to_string()
        )
    c = pd.DataFrame(cost_rows)
    print(
        f"\nCost per subject, whole participant stage with --segmentation atlas, "
        f"{threads} ITK threads:"
    )
    print(c.pivot(index="site", columns="target").round(1).to_string())
    print(
        f"max: {c.seconds.max():.0f} s (target <= 180 s), "
        f"{c.peak_rss_mb.max():.0f} MB (target <= 3072 MB)"
    )


if __name__ == "__main__":
    main()
