"""How the error of a structure's median R2* grows as its voxel count falls (minimum-voxel rule).

Reads a finished demo (``ironmap demo OUT``, or any simulated cohort with its truth): the group
stage's ``OUT/ironmap/group/regions.tsv`` (one row per participant x structure x hemisphere with
``r2star_median`` and ``n_voxels``) and the simulator's ``OUT/bids_truth.json`` (per participant
and hemisphere the mean true R2* over the structure's 1 mm voxels, lesions excluded, and the
site's R2* bias; ``ironmap.simulate.subject.truth_summary``). The error of a hemisphere is
``r2star_median - truth x site_r2star_bias`` (1/s: what that scanner should measure). Printed:

- per bin of the hemisphere's voxel count (deep grey matter, every site): n, bias (mean error),
  SD, RMSE, 95th percentile of |error|, and the same for the small nuclei (substantia nigra, red
  nucleus) by slice thickness (2 mm and 3 mm sites);
- the fit ``E[error^2] = a + b / n`` (weighted least squares on every hemisphere, HC3 standard
  errors, statsmodels) and the rule's threshold: the smallest count whose predicted RMSE is at
  most twice the predicted RMSE at ``cohort.qc.MIN_REGION_VOXELS`` voxels (the count below which
  the QC only flags), against ``ironmap.defaults.MIN_VOXELS``;
- how many participants each structure would lose under the default.

Run: ``python benchmarks/min_voxels.py /tmp/demo_after`` (a few seconds).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ironmap.cohort.qc import MIN_REGION_VOXELS
from ironmap.defaults import MIN_VOXELS
from ironmap.io.derivatives import read_tsv
from ironmap.regions import DEEP_GM

BINS = [0, 4, 8, 12, 16, 20, 30, 50, 100, math.inf]
SMALL = ("substantia_nigra", "red_nucleus")


def errors(demo: Path) -> pd.DataFrame:
    """One row per participant x deep-GM structure x hemisphere: n_voxels, error (1/s), site."""
    truth = json.loads((demo / "bids_truth.json").read_text())
    thick = {s: v["protocol"]["voxel_mm"][2] for s, v in truth["sites"].items()}
    rows = [
        (pid, region, hemi, v["r2star_mean"] * s["site_r2star_bias"], s["site"])
        for pid, s in truth["subjects"].items()
        for region, hemis in s["regions"].items()
        for hemi, v in hemis.items()
        if v.get("r2star_mean") is not None
    ]
    truth_rows = pd.DataFrame(
        rows, columns=["participant_id", "region", "hemisphere", "truth", "site"]
    )
    measured = read_tsv(demo / "ironmap" / "group" / "regions.tsv")
    data = measured.merge(truth_rows, on=["participant_id", "region", "hemisphere"])
    data = data[data["region"].isin(DEEP_GM) & (data["hemisphere"] != "both")]
    data = data.dropna(subset=["r2star_median", "n_voxels"])
    return data.assign(
        error=data["r2star_median"] - data["truth"],
        slice_mm=data["site"].map(thick),
        count=pd.cut(data["n_voxels"], BINS, right=True),
    )


def summary(data: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """n, bias, SD, RMSE and 95th percentile of |error| (1/s) per group."""
    grouped = data.groupby(by, observed=True)["error"]
    return pd.DataFrame(
        {
            "n": grouped.size(),
            "bias": grouped.mean(),
            "sd": grouped.std(),
            "rmse": grouped.apply(lambda e: float(np.sqrt(np.mean(e**2)))),
            "p95_abs": grouped.apply(lambda e: float(np.abs(e).quantile(0.95))),
        }
    )


def threshold(data: pd.DataFrame) -> tuple[float, float, int]:
    """Fit E[error^2] = a + b / n; the smallest n with RMSE(n) <= 2 RMSE(MIN_REGION_VOXELS)."""
    design = sm.add_constant(1.0 / data["n_voxels"].to_numpy(float))
    fit = sm.OLS(data["error"].to_numpy(float) ** 2, design).fit(cov_type="HC3")
    a, b = (float(x) for x in fit.params)
    limit = 4.0 * (a + b / MIN_REGION_VOXELS)  # variance: (2 x RMSE)^2
    return a, b, max(1, math.ceil(b / (limit - a)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo", type=Path, help="a demo folder: bids_truth.json and ironmap/")
    args = parser.parse_args()
    data = errors(args.demo)
    pd.set_option("display.width", 140)
    print(f"{len(data)} hemispheres of {data['participant_id'].nunique()} participants\n")
    print("Error of the hemisphere's median R2* (1/s) by voxel count, deep grey matter:")
    print(summary(data, ["count"]).round(3).to_string(), "\n")
    small = data[data["region"].isin(SMALL)]
    print("Substantia nigra and red nucleus by slice thickness (mm):")
    print(summary(small, ["slice_mm", "count"]).round(3).to_string(), "\n")
    a, b, n_min = threshold(data)
    print(f"E[error^2] = {a:.4f} + {b:.3f} / n  (1/s)^2")
    print(
        f"RMSE at {MIN_REGION_VOXELS} voxels {math.sqrt(a + b / MIN_REGION_VOXELS):.3f} 1/s; "
        f"smallest count with at most twice that: {n_min} (ironmap.defaults.MIN_VOXELS = "
        f"{MIN_VOXELS})\n"
    )
    sides = data.pivot_table(
        index=["participant_id", "region"], columns="hemisphere", values="n_voxels"
    )
    lost = (sides.min(axis=1) < MIN_VOXELS).groupby(level="region").sum()
    print(f"Participants whose structure the default ({MIN_VOXELS} per hemisphere) leaves out:")
    print(lost.reindex([r for r in DEEP_GM if r in lost.index]).to_string())


if __name__ == "__main__":
    main()
