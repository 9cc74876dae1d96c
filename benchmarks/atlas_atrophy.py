"""Periventricular atrophy: atlas segmentation and regional R2* as the ventricles enlarge.

Cohort: healthy controls of the site panel (``--sites``, default four sites with 5-10 echoes,
2 x 2 x 2 and 2 x 2 x 3 mm voxels), each drawn from the bundled atlas under a random deformation
(``ironmap.simulate.atlas_anatomy``) with a 1 mm T1w, then drawn again with its lateral
ventricles enlarged by 0, 1, 2, 3, 4 and 6 mm into caudate, thalamus and white matter
(``generate_subject(..., ventricle_margin_mm=m)``: the same subject, seed and images otherwise).

For every subject and enlargement the participant stage runs twice (three times with
``--other-grid``):

* ``--segmentation atlas`` (registered to the T1w, or with ``--target echo`` to the first echo);
* ``--segmentation auto`` with the true labels as the user's dseg on the 1 mm grid;
* with ``--other-grid``, ``--segmentation auto`` with the true labels moved (nearest neighbour)
  onto a 1.5 mm grid shifted by 0.5 mm: a user's segmentation made on another grid.

Reported, per structure (thalamus, caudate, putamen, pallidum, lateral ventricles):

* Dice at 1 mm between the written atlas dseg (on the R2* grid subdivided to 1 mm, which is the
  truth's grid) and the true labels;
* the regional median R2* (both hemispheres) of each run against the planted truth (the mean true
  R2* of the structure's 1 mm voxels times the site bias), in %;
* ``n_csf_excluded`` (R2* voxels left out as CSF-like) when ``regions.tsv`` has it;
* the slope of each error against the true ventricle volume with its 95 % CI, over 0-4 mm and
  over every enlargement: pooled over subjects (OLS, error ~ volume, with the Pearson
  correlation of error and volume across the cohort) and within subject (one intercept per
  subject: the same images but the atrophy, so it resolves trends of a few hundredths of a
  percent), with the change it implies over the simulated range of ventricle volume.

Run: ``python benchmarks/atlas_atrophy.py [--threads 2] [--target t1w|echo] [--panels 2]
[--jobs 2] [--csv rows.csv]`` (``--panels N``: N subjects per site, drawn with seeds 100, 200,
...);
``--from-csv rows.csv`` re-prints the tables of an earlier run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import ndimage, stats

from ironmap.io.derivatives import ParticipantOutputs, read_tsv
from ironmap.simulate.bids import SEGMENTATION_DIR, write_dataset_files, write_subject
from ironmap.simulate.cohort import draw_site_panel, participants_table
from ironmap.simulate.subject import generate_subject, truth_summary

STRUCTURES = {
    "thalamus": (10, 49),
    "caudate": (11, 50),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "lateral_ventricle": (4, 43),
}
MEASURED = ("thalamus", "caudate", "putamen", "pallidum")
#: The true labels on another grid (``--other-grid``): 1.5 mm voxels shifted by 0.5 mm.
OTHER_GRID = "labels 1.5 mm"
OTHER_VOXEL_MM, OTHER_SHIFT_MM = 1.5, 0.5
MARGINS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)
SITES = ("amsterdam", "london", "milan", "naples")
#: Acceptance: |median R2* error| at most this (%) with atlas labels, up to ACCEPT_MM.
TOLERANCE_PCT = 3.0
ACCEPT_MM = 4.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def write_dataset(root: Path, subjects, margin: float, *, with_t1w: bool) -> dict:
    """The subjects with ventricles enlarged by ``margin`` mm; truth per participant."""
    write_dataset_files(root, participants_table(subjects))
    truth = {}
    for subject in subjects:
        data = generate_subject(
            subject, anatomy="atlas", with_t1w=with_t1w, ventricle_margin_mm=margin
        )
        write_subject(root, subject, data)
        t = truth_summary(subject, data)
        voxel_ml = abs(np.linalg.det(data.anatomy.affine[:3, :3])) / 1000.0
        t["ventricle_ml"] = float(np.isin(data.anatomy.labels, (4, 43)).sum() * voxel_ml)
        truth[subject.participant_id] = t
    return truth


def regrid_labels(bids: Path, other: Path, *, voxel_mm: float, shift_mm: float) -> None:
    """Copy ``bids`` to ``other`` with every true dseg moved onto another grid: ``voxel_mm``
    voxels, shifted by ``shift_mm`` on each axis, nearest neighbour (a user's segmentation made
    on another grid: its boundaries off by up to half a voxel)."""
    shutil.copytree(bids, other)
    for path in sorted((other / SEGMENTATION_DIR).glob("sub-*/anat/*_dseg.nii.gz")):
        img = nib.load(path)
        labels = np.asarray(img.dataobj)
        scale = voxel_mm / np.linalg.norm(img.affine[:3, :3], axis=0)
        new_affine = img.affine.copy()
        new_affine[:3, :3] = img.affine[:3, :3] * scale
        new_affine[:3, 3] = img.affine[:3, 3] + img.affine[:3, :3] @ np.full(3, shift_mm)
        shape = tuple(int(n) for n in np.floor((np.array(labels.shape) - shift_mm) / scale))
        vox = np.linalg.inv(img.affine) @ new_affine  # new voxel -> old voxel
        moved = ndimage.affine_transform(
            labels, vox[:3, :3], offset=vox[:3, 3], output_shape=shape, order=0, mode="constant"
        )
        nib.save(nib.Nifti1Image(moved.astype(labels.dtype), new_affine, img.header), path)


def run_stage(bids: Path, out: Path, segmentation: str, *, n_jobs: int = 1) -> None:
    from ironmap.workflows.participant import ParticipantConfig, run_participant

    config = ParticipantConfig(bids, out, segmentation=segmentation, n_jobs=n_jobs)
    failed = [r for r in run_participant(config) if r.status == "failed"]
    if failed:
        raise RuntimeError("; ".join(f"{r.name}: {r.error}" for r in failed))


def measure(
    bids: Path,
    out_atlas: Path,
    out_true: Path,
    truth: dict,
    margin: float,
    out_grid: Path | None = None,
) -> list:
    rows = []
    for sub, t in truth.items():
        label = sub.removeprefix("sub-")
        img = nib.load(ParticipantOutputs(out_atlas, label).dseg)
        labels = np.asarray(img.dataobj)
        true_img = nib.load(bids / SEGMENTATION_DIR / sub / "anat" / f"{sub}_dseg.nii.gz")
        true = np.asarray(true_img.dataobj)
        if not np.allclose(img.affine, true_img.affine):
            raise RuntimeError(f"{sub}: the atlas dseg is not on the truth's 1 mm grid")
        if labels.shape != true.shape:  # the subdivided R2* grid crops the truth's last voxels
            true = true[tuple(slice(0, n) for n in labels.shape)]
        tables = {
            "atlas": read_tsv(ParticipantOutputs(out_atlas, label).regions),
            "true labels": read_tsv(ParticipantOutputs(out_true, label).regions),
        }
        if out_grid is not None:
            tables[OTHER_GRID] = read_tsv(ParticipantOutputs(out_grid, label).regions)
        for region, codes in STRUCTURES.items():
            row = {
                "participant_id": sub,
                "site": t["site"],
                "margin_mm": margin,
                "ventricle_ml": t["ventricle_ml"],
                "region": region,
                "dice": dice(np.isin(labels, codes), np.isin(true, codes)),
            }
            if region in MEASURED:
                planted = t["regions"][region]["both"]["r2star_mean"] * t["site_r2star_bias"]
                row["true_ml"] = t["regions"][region]["both"]["volume_ml"]
                for source, table in tables.items():
                    both = table[(table.region == region) & (table.hemisphere == "both")].iloc[0]
                    row[f"error_pct ({source})"] = 100 * (both.r2star_median / planted - 1)
                    row[f"n_voxels ({source})"] = both.n_voxels
                    row[f"n_csf_excluded ({source})"] = both.get("n_csf_excluded", np.nan)
            rows.append(row)
    return rows


def slope(rows: pd.DataFrame, region: str, source: str, max_mm: float, formula: str) -> str:
    part = rows[(rows.region == region) & (rows.margin_mm <= max_mm)]
    part = part.rename(columns={f"error_pct ({source})": "error"})
    fit = smf.ols(formula, data=part).fit()
    lo, hi = fit.conf_int().loc["ventricle_ml"]
    b = fit.params["ventricle_ml"]
    verdict = "includes 0" if lo <= 0 <= hi else "EXCLUDES 0"
    span = part.ventricle_ml.max() - part.ventricle_ml.min()
    text = (
        f"{b:+.4f} %/mL [{lo:+.4f}, {hi:+.4f}] ({verdict}), {b * span:+.2f} % over {span:.0f} mL"
    )
    if "C(" not in formula:  # pooled: the correlation across the cohort
        r, p = stats.pearsonr(part.ventricle_ml, part.error)
        text += f"; r = {r:+.2f} (p = {p:.2f})"
    return text


def report(rows: pd.DataFrame, target: str) -> None:
    n = rows.participant_id.nunique()
    print(f"{n} subjects ({', '.join(sorted(rows.site.unique()))}), atlas registered to {target}")
    vent = rows[rows.region == "caudate"].groupby("margin_mm")[["ventricle_ml", "true_ml"]]
    print("\nTrue lateral-ventricle and caudate volume (mL, both hemispheres), subject mean:")
    print(vent.mean().round(1).rename(columns={"true_ml": "caudate_ml"}).T.to_string())
    print("\nDice at 1 mm, atlas labels vs truth, mean (min) over subjects (both hemispheres):")
    d = rows.groupby(["region", "margin_mm"], sort=False)["dice"].agg(["mean", "min"])
    text = d.apply(lambda r: f"{r['mean']:.3f} ({r['min']:.2f})", axis=1).unstack("margin_mm")
    print(text.to_string())
    measured = rows[rows.region.isin(MEASURED)]
    sources = [s for s in ("atlas", "true labels", OTHER_GRID) if f"error_pct ({s})" in rows]
    for source in sources:
        col = f"error_pct ({source})"
        e = measured.groupby(["region", "margin_mm"], sort=False)[col]
        table = e.agg(["mean", lambda x: x.abs().max()])
        table.columns = ["mean", "max_abs"]
        text = table.apply(lambda r: f"{r['mean']:+6.2f} ({r['max_abs']:.2f})", axis=1)
        print(
            f"\nRegional median R2* vs planted truth, {source}, %: mean (max |error|) over "
            "subjects, by ventricular enlargement (mm):"
        )
        print(text.unstack("margin_mm").to_string())
        excluded = f"n_csf_excluded ({source})"
        if measured[excluded].notna().any():
            counts = measured.groupby(["region", "margin_mm"], sort=False)
            n_excluded = counts[excluded].sum()
            frac = n_excluded / (n_excluded + counts[f"n_voxels ({source})"].sum())
            print(f"share of R2* voxels excluded as CSF-like ({source}), %:")
            print((100 * frac).unstack("margin_mm").round(1).to_string())
    ok = measured[measured.margin_mm <= ACCEPT_MM]["error_pct (atlas)"].abs().max()
    verdict = "PASS" if ok <= TOLERANCE_PCT else "FAIL"
    print(
        f"\nlargest |error| with atlas labels up to {ACCEPT_MM:g} mm: {ok:.2f} % "
        f"(target <= {TOLERANCE_PCT:g} %): {verdict}"
    )
    models = {
        "pooled": "error ~ ventricle_ml",
        "within subject": "error ~ ventricle_ml + C(participant_id)",
    }
    for model, formula in models.items():
        print(f"\nSlope of the error against true ventricle volume ({model}), 95 % CI:")
        for region in MEASURED:
            for source in sources:
                for max_mm, what in ((ACCEPT_MM, f"0-{ACCEPT_MM:g} mm"), (np.inf, "all")):
                    fit = slope(measured, region, source, max_mm, formula)
                    print(f"  {region:9s} {source:13s} {what:8s} {fit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="ITK threads (default: 2)")
    parser.add_argument("--target", choices=("t1w", "echo"), default="t1w")
    parser.add_argument("--sites", default=",".join(SITES), help="comma-separated site names")
    parser.add_argument(
        "--panels", type=int, default=1, help="subjects per site (panels of seed 100, 200, ...)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="participants processed at once")
    parser.add_argument(
        "--other-grid",
        action="store_true",
        help=f"also run the true labels moved onto a {OTHER_VOXEL_MM:g} mm grid shifted by "
        f"{OTHER_SHIFT_MM:g} mm (a user's segmentation made on another grid)",
    )
    parser.add_argument("--margins", default=",".join(f"{m:g}" for m in MARGINS))
    parser.add_argument("--csv", type=Path, help="write the per-subject rows here")
    parser.add_argument("--from-csv", type=Path, help="only print the tables of these rows")
    parser.add_argument("--keep", type=Path, help="keep the datasets and outputs in this folder")
    args = parser.parse_args()
    if args.from_csv:
        report(pd.read_csv(args.from_csv), args.target)
        return
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(args.threads))
    sites = args.sites.split(",")
    subjects = [
        dataclasses.replace(s, label=f"{panel + 1}{s.label}")
        for panel in range(args.panels)
        for s in draw_site_panel(group="HC", seed=100 * (panel + 1))
        if s.site.name in sites
    ]
    margins = [float(m) for m in args.margins.split(",")]
    rows = []
    tmp = tempfile.mkdtemp() if args.keep is None else str(args.keep)
    try:
        for margin in margins:
            root = Path(tmp) / f"margin{margin:g}"
            bids = root / "bids"
            truth = write_dataset(bids, subjects, margin, with_t1w=args.target == "t1w")
            run_stage(bids, root / "true", "auto", n_jobs=args.jobs)
            run_stage(bids, root / "atlas", "atlas", n_jobs=args.jobs)
            grid = None
            if args.other_grid:
                other = root / "bids_grid"
                regrid_labels(bids, other, voxel_mm=OTHER_VOXEL_MM, shift_mm=OTHER_SHIFT_MM)
                grid = root / "grid"
                run_stage(other, grid, "auto", n_jobs=args.jobs)
            rows += measure(bids, root / "atlas", root / "true", truth, margin, grid)
            print(f"margin {margin:g} mm done", flush=True)
            if args.csv:
                pd.DataFrame(rows).to_csv(args.csv, index=False)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    report(pd.DataFrame(rows), args.target)


if __name__ == "__main__":
    main()
