"""Calibration of the group statistics on susceptibility (chi) over seeded table cohorts.

The chi analysis is the R2* code path on a linear scale (``analyse_cohort(measure="chi")``);
this checks it where chi differs from R2*: site offsets are additive, not multiplicative, and
here they also **differ by region** (each site x region gets its own offset, SD
:data:`REGION_SITE_SD_PPM`, on top of a site-wide one), so a model that assumed one offset per
site would leak them into the contrasts. Design: the sites, ages and phenotypes of
``group_calibration.py`` (patients concentrated at biased sites, patients older than controls,
a noisy site, a small and more variable PPMS, CIS only at a site without controls); regional chi
from :func:`ironmap.simulate.tables.add_chi`. Printed:

1. false-positive rate of every contrast at nominal 5 % in null cohorts (no disease effect),
   for ironmap's chi analysis and for raw chi with an age, sex and site OLS per region;
2. 95 % CI coverage and mean error of a planted MS effect (+15 ppb in putamen, every phenotype);
3. the share of null cohorts with at least one significant (bold) cell under the hierarchy.

Run: ``python benchmarks/chi_calibration.py [--reps N]`` (default 100; about 2 s CPU per rep).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from group_calibration import AGES, EXTRA_SD, SITES, _subjects
from ironmap.cohort.analysis import analyse_cohort
from ironmap.errors import IronmapWarning
from ironmap.simulate.tables import add_chi, simulate_table_cohort

#: SD (ppm) of the site offset that differs region by region (on top of the site-wide one).
REGION_SITE_SD_PPM = 0.008
#: Site-wide offsets (ppm): chi is relative to a reference region, so scanners shift it.
SITE_OFFSET_PPM = {"s1": 0.0, "s2": 0.012, "s3": -0.006, "s4": 0.008, "s5": 0.0, "s6": -0.01}
EFFECT_PPM = 0.015  # planted in putamen in every MS phenotype (and CIS) for coverage
MS = ("RRMS", "SPMS", "PPMS")


def _cohort(seed: int, effects=None):
    long, people = simulate_table_cohort(SITES, seed=seed, age=AGES, extra_sd=EXTRA_SD)
    long = add_chi(long, people, seed=seed, effects=effects, site_offset=SITE_OFFSET_PPM)
    rng = np.random.default_rng([seed, 28])
    pairs = long[["participant_id", "region"]].assign(
        site=long["participant_id"].map(people.set_index("participant_id")["site"])
    )
    keys = pairs[["site", "region"]].drop_duplicates()
    offsets = pd.Series(
        rng.normal(0.0, REGION_SITE_SD_PPM, len(keys)),
        index=pd.MultiIndex.from_frame(keys),
    )
    long = long.assign(
        chi_median=long["chi_median"]
        + offsets.reindex(pd.MultiIndex.from_frame(pairs[["site", "region"]])).to_numpy()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        result = analyse_cohort(
            long, _subjects(people, seed), mixed=False, clinical=False, n_bootstrap=0,
            measure="chi",
        )  # fmt: skip
    return result, long, people


def _raw_p(long: pd.DataFrame, people: pd.DataFrame) -> list[dict]:
    """Raw chi, OLS with age, sex and site per region: MS (RRMS, SPMS, PPMS) vs HC."""
    data = long.merge(people[["participant_id", "age", "sex", "site", "group", "phenotype"]])
    data = data[(data.group == "HC") | data.phenotype.isin(MS)]
    rows = []
    for region, part in data.groupby("region"):
        fit = smf.ols("chi_median ~ C(group, Treatment('HC')) + age + sex + site", part).fit()
        name = next(k for k in fit.pvalues.index if k.startswith("C(group"))
        rows.append({"region": region, "contrast": "MS-HC", "p": fit.pvalues[name]})
    return rows


def null_runs(reps: int):
    fp, raw, bold = [], [], []
    for seed in range(reps):
        result, long, people = _cohort(seed)
        comp = result.comparison
        fp.append(comp[["region", "contrast", "p"]])
        raw += _raw_p(long, people)
        bold.append(bool(comp.significant.any()))
    return pd.concat(fp), pd.DataFrame(raw), float(np.mean(bold))


def coverage_runs(reps: int):
    covered, errors = [], []
    effects = {p: {"putamen": EFFECT_PPM} for p in (*MS, "CIS")}
    for seed in range(reps):
        result, _, _ = _cohort(10_000 + seed, effects=effects)
        row = result.comparison.query("region == 'putamen' and contrast == 'MS-HC'").iloc[0]
        covered.append(row.ci_low <= EFFECT_PPM <= row.ci_high)
        errors.append(row.estimate - EFFECT_PPM)
    return float(np.mean(covered)), float(np.mean(errors))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args(argv)
    start = time.process_time()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.reps} seeded cohorts per row; site x region offsets SD "
        f"{1000 * REGION_SITE_SD_PPM:.0f} ppb"
    )
    fp, raw, bold = null_runs(args.reps)
    rate = fp.dropna(subset=["p"]).groupby("contrast")["p"].apply(lambda p: (p < 0.05).mean())
    print("\n1. false-positive rate at nominal 5 % (null cohorts, every region pooled)")
    table = pd.DataFrame({"ironmap chi": rate})
    table.loc["MS-HC", "raw chi, OLS age+sex+site"] = float((raw.p < 0.05).mean())
    print(table.round(3).to_string())
    covered, error = coverage_runs(args.reps)
    print(
        f"\n2. planted +{1000 * EFFECT_PPM:.0f} ppb in putamen: 95 % CI coverage {covered:.3f}, "
        f"mean error {1000 * error:+.2f} ppb"
    )
    print(f"\n3. null cohorts with a significant (bold) cell under the hierarchy: {bold:.3f}")
    print(f"\nCPU {time.process_time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
