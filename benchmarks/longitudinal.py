"""Calibration of the longitudinal analysis over seeded table-level cohorts (no images).

Each cohort (``ironmap.simulate.table_sessions.simulate_table_sessions``): 60 controls and 100
patients (RRMS, SPMS, PPMS) at 5 sites with multiplicative R2* bias 0.96-1.06 and measurement
noise x1-x1.5, patients older than controls (SPMS 52, PPMS 50, RRMS 38, HC 40 years),
3 sessions 2 years apart (each interval x U(0.8, 1.2)), 10 % drop-out at each follow-up (so
some participants have 1 or 2 sessions), a biological random slope (SD 0.02 1/s per year),
a 1 % scan-rescan factor and 0.4 1/s measurement noise. Two scenarios:

- **planted**: healthy ageing of every region (Hallgren curves of ``simulate.tissue``) and, in
  MS, the planted change per year of disease and per EDSS point gained (putamen, caudate,
  thalamus, red and dentate nucleus; none in pallidum, substantia nigra and NAWM), EDSS
  progressing by 0.08 (RRMS), 0.25 (SPMS) and 0.30 (PPMS) points per year;
- **null**: ageing only, no disease change anywhere.

The truth a row's CI must cover, per cohort, from the noise-free planted trajectories
(``truth``: site-free, scan-noise-free R2* of each session) of the participants with two or
more sessions, on the harmonised scale (times the controls' pooled site factor):

- ``annual_change`` of an arm: the mean over its participants of their least-squares slope of
  the true R2* on time;
- ``time_x_group`` (arm - HC): the difference of the arms' mean excess slope, a
  participant's true slope minus the slope of the healthy curve over the same ages (at equal
  age, what the disease adds);
- ``edss_change``: the planted ``edss_slope`` (1/s per EDSS point).

Printed: the coverage of every region x quantity over the planted cohorts, and the
false-positive rate (p < 0.05) of the group-by-time and EDSS terms where no disease change
was planted (null cohorts, all regions; planted cohorts, the three regions without one).

``--design scanner``: the planted cohorts with a scanner upgrade at site s2 after 3 years
(R2* x 1.03 from then on, :data:`UPGRADE`; the sessions table names the scanner, as
``sub-<label>_sessions.tsv``'s ``scanner`` column would), each analysed twice: with the
scanner column (scanner epoch within site, a session-level offset) and without it (the
upgrade unseen). Printed per region: the bias (mean estimate - truth) and coverage of the
yearly change of MS and HC and of MS - HC, with and without the scanner term.

``--design fallback``: the planted cohorts with participants' yearly changes varying 12x more
(:data:`FALLBACK_SLOPE_SD`), each analysed three ways: the random-slope model, and the
random-intercept fallback (forced) with the mixed model's own CIs or with GEE's
participant-clustered bias-reduced sandwich CIs (ironmap's fallback). Printed as above.

Run: ``python benchmarks/longitudinal.py [--reps N] [--jobs J]`` (default 50 cohorts per
scenario on 2 workers; about 10 s of one core per cohort).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ironmap.cohort import longitudinal, longitudinal_fit
from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.longitudinal import analyse_longitudinal
from ironmap.cohort.sessions import collect_timing
from ironmap.cohort.tables import baseline_sessions
from ironmap.errors import IronmapWarning
from ironmap.regions.catalog import MEASURED_ROWS
from ironmap.simulate.table_sessions import simulate_table_sessions
from ironmap.simulate.tables import TableSite
from ironmap.simulate.tissue import TISSUES, tissue_of

SITES = [
    TableSite("s1", 1.00, 1.0, {"HC": 14, "RRMS": 12, "SPMS": 5, "PPMS": 3}),
    TableSite("s2", 1.06, 1.0, {"HC": 10, "RRMS": 14, "SPMS": 6, "PPMS": 4}),
    TableSite("s3", 0.96, 1.5, {"HC": 12, "RRMS": 10, "SPMS": 4, "PPMS": 3}),
    TableSite("s4", 1.04, 1.0, {"HC": 10, "RRMS": 12, "SPMS": 5, "PPMS": 4}),
    TableSite("s5", 1.00, 1.2, {"HC": 14, "RRMS": 10, "SPMS": 5, "PPMS": 3}),
]
AGES = {"RRMS": (38.0, 9.0), "SPMS": (52.0, 8.0), "PPMS": (50.0, 9.0)}
SESSIONS, INTERVAL, DROPOUT = 3, 2.0, 0.1
#: The scanner upgrade of ``--design scanner``: site -> (years after the study's start, factor).
UPGRADE = {"s2": (3.0, 1.03)}
#: Between-participant SD of the yearly change in ``--design fallback`` (1/s per year).
FALLBACK_SLOPE_SD = 0.25
_RANDOM_INTERCEPT_ONLY = (("1", ["lbfgs", "powell"]),)
REGIONS = tuple(row.name for row in MEASURED_ROWS)
SOURCE = {row.name: tissue_of(row.source) for row in MEASURED_ROWS}
MS_PHENOTYPES = ("RRMS", "SPMS", "PPMS")


def _planted_regions() -> tuple[str, ...]:
    """Regions with a planted disease change (duration or EDSS slope)."""
    out = []
    for region in REGIONS:
        effect = TISSUES[SOURCE[region]].ms_effect
        if effect is not None and (effect.duration_slope or effect.edss_slope):
            out.append(region)
    return tuple(out)


PLANTED = _planted_regions()


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t, y, 1)[0])


def _truth(long: pd.DataFrame, people: pd.DataFrame, *, planted: bool) -> pd.DataFrame:
    """Per region and (term, arm): the planted value on the site-free scale."""
    label = people.set_index("participant_id")
    label = label["phenotype"].where(label["group"] == "MS", "HC")
    age0 = people.set_index("participant_id")["age"]
    rows = []
    for (region, pid), g in long.groupby(["region", "participant_id"]):
        if len(g) < 2:
            continue
        t = g["time_years"].to_numpy()
        healthy = TISSUES[SOURCE[region]].age(age0[pid] + t)
        total = _slope(t, g["truth"].to_numpy())
        rows.append((region, pid, label[pid], total, total - _slope(t, healthy)))
    slopes = pd.DataFrame(rows, columns=["region", "pid", "arm", "total", "excess"])
    out = []
    for region, sub in slopes.groupby("region"):
        ms = sub[sub["arm"].isin(MS_PHENOTYPES)]
        hc_excess = sub.loc[sub["arm"] == "HC", "excess"].mean()
        for arm, part in [("HC", sub[sub["arm"] == "HC"]), ("MS", ms)] + [
            (p, sub[sub["arm"] == p]) for p in MS_PHENOTYPES
        ]:
            out.append((region, "annual_change", arm, part["total"].mean()))
            if arm != "HC":
                out.append(
                    (region, "time_x_group", f"{arm}-HC", part["excess"].mean() - hc_excess)
                )
        effect = TISSUES[SOURCE[region]].ms_effect
        edss = effect.edss_slope if (planted and effect is not None) else 0.0
        out.append((region, "edss_change", "MS", edss))
    return pd.DataFrame(out, columns=["region", "term", "arm", "truth"])


def _pooled_scale(people: pd.DataFrame) -> float:
    """The controls' pooled site factor: harmonised R2* = site-free R2* times this."""
    bias = {s.name: s.bias for s in SITES}
    hc = people[people["group"] == "HC"]
    return float(np.exp(np.mean(np.log(hc["site"].map(bias)))))


def one_cohort(args: tuple[int, bool, str, str]) -> pd.DataFrame:
    seed, planted, outcome, design = args
    # the default, or the ComBat-harmonised values to compare (read by both modules)
    longitudinal.OUTCOME = longitudinal_fit.OUTCOME = outcome
    long, people, visits = simulate_table_sessions(
        SITES,
        seed=seed,
        sessions=SESSIONS,
        interval_years=INTERVAL,
        dropout=DROPOUT,
        planted=planted,
        age=AGES,
        upgrades=UPGRADE if design == "scanner" else None,
        **({"slope_sd": FALLBACK_SLOPE_SD} if design == "fallback" else {}),
    )
    subjects = people.assign(
        icv_ml=1450.0, brain_ml=1200.0, cortical_gm_ml=480.0, nbv=0.84, lesion_volume_ml=5.0
    ).assign(lesion_count=3)
    default = (longitudinal_fit._ATTEMPTS, True)
    variants = {"scanner term": (visits, *default)}
    if "scanner" in visits.columns:
        variants["no scanner term"] = (visits.drop(columns="scanner"), *default)
    if design == "fallback":
        variants = {
            "random slope": (visits, *default),
            "RI, model SE": (visits, _RANDOM_INTERCEPT_ONLY, False),
            "RI, GEE robust SE": (visits, _RANDOM_INTERCEPT_ONLY, True),
        }
    truth = _truth(long, people, planted=planted)
    truth["truth"] *= _pooled_scale(people)
    tables = []
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        baseline = baseline_sessions(long, bids_dir=None)
        cross = analyse_cohort(baseline, subjects, mixed=False, clinical=False, n_bootstrap=0)
        for variant, (table_of_visits, attempts, robust) in variants.items():
            longitudinal_fit._ATTEMPTS, longitudinal.ROBUST_FALLBACK = attempts, robust
            sessions = {
                pid: g.drop(columns="participant_id")
                for pid, g in table_of_visits.groupby("participant_id")
            }
            timing, untimed = collect_timing(long, people, sessions=sessions)
            result = analyse_longitudinal(long, timing, subjects, cross.normative, untimed=untimed)
            table = result.table.merge(truth, on=["region", "term", "arm"], how="left")
            table["covered"] = (table["ci_low"] <= table["truth"]) & (
                table["truth"] <= table["ci_high"]
            )
            tables.append(table.assign(variant=variant))
    longitudinal_fit._ATTEMPTS, longitudinal.ROBUST_FALLBACK = default
    table = pd.concat(tables, ignore_index=True)
    return table.assign(seed=seed, scenario="planted" if planted else "null")


def scanner_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per region and variant: bias (mean estimate - truth) and coverage of the yearly change
    of MS and HC and of MS - HC."""
    keep = runs[
        ((runs["term"] == "annual_change") & runs["arm"].isin(["HC", "MS"]))
        | ((runs["term"] == "time_x_group") & (runs["arm"] == "MS-HC"))
    ]
    keep = keep.assign(error=keep["estimate"] - keep["truth"])
    out = keep.groupby(["arm", "variant", "region"], sort=False).agg(
        bias=("error", "mean"), coverage=("covered", "mean"), se=("se", "mean")
    )
    out = out.unstack(["arm", "variant"])
    out.columns = [f"{stat} {arm} ({variant})" for stat, arm, variant in out.columns]
    return out.reindex(index=list(REGIONS))


def scanner_main(args) -> None:
    """``--design scanner`` (planted cohorts with an upgrade, with and without the term) and
    ``--design fallback`` (random slope, and the forced fallback with and without GEE)."""
    start = time.time()
    jobs = [(1000 + s, True, args.outcome, args.design) for s in range(args.reps)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = pd.concat(pool.map(one_cohort, jobs), ignore_index=True)
    pd.set_option("display.width", 250)
    (site, (years, factor)), *_ = UPGRADE.items()
    if args.design == "scanner":
        print(
            f"Scanner upgrade mid-study: {args.reps} seeded planted cohorts, {len(SITES)} "
            f"sites, site {site}'s R2* x {factor:g} from {years:g} years after the start; each "
            "analysed with the sessions' scanner (scanner epoch within site) and without it"
        )
    else:
        print(
            f"Random-slope fallback: {args.reps} seeded planted cohorts, {len(SITES)} sites, "
            f"yearly change varying between participants with SD {FALLBACK_SLOPE_SD:g} 1/s per "
            "year; each analysed with the random slope, and with the random-intercept fallback "
            "(forced) with the model's SE or GEE's robust SE"
        )
    print(f"({platform.machine()}, {os.cpu_count()} cores, {args.jobs} workers)\n")
    table = scanner_table(runs)
    for arm in ("MS", "HC", "MS-HC"):
        columns = [c for c in table.columns if f" {arm} (" in c]
        print(f"{arm}: bias (1/s per year) and coverage of the 95 % CI")
        print(table[columns].round(3).to_string())
        print()
    summary = (
        runs[(runs["term"] == "annual_change") & (runs["arm"] == "MS")]
        .groupby("variant")["covered"]
        .mean()
    )
    print(
        "MS yearly change, coverage over all regions: "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary.items())
    )
    print(f"fits converged: {runs['converged'].mean():.3f}; {time.time() - start:.0f} s wall")


def coverage_table(runs: pd.DataFrame) -> pd.DataFrame:
    keep = runs[
        runs["arm"].isin(
            ["HC", "MS", "RRMS", "SPMS", "PPMS", "MS-HC", "RRMS-HC", "SPMS-HC", "PPMS-HC"]
        )
        | (runs["term"] == "edss_change")
    ]
    keep = keep.assign(quantity=np.where(keep["term"] == "edss_change", "per EDSS", keep["arm"]))
    table = keep.pivot_table(index="region", columns="quantity", values="covered", aggfunc="mean")
    order = [
        "HC",
        "MS",
        "RRMS",
        "SPMS",
        "PPMS",
        "MS-HC",
        "RRMS-HC",
        "SPMS-HC",
        "PPMS-HC",
        "per EDSS",
    ]
    return table.reindex(index=list(REGIONS), columns=[c for c in order if c in table.columns])


def fpr_table(runs: pd.DataFrame, regions: tuple[str, ...]) -> pd.DataFrame:
    part = runs[runs["region"].isin(regions) & runs["term"].isin(["time_x_group", "edss_change"])]
    part = part.assign(
        quantity=np.where(part["term"] == "edss_change", "per EDSS", part["arm"]),
        positive=part["p"] < 0.05,
    )
    table = part.pivot_table(index="region", columns="quantity", values="positive", aggfunc="mean")
    order = ["MS-HC", "RRMS-HC", "SPMS-HC", "PPMS-HC", "per EDSS"]
    return table.reindex(index=list(regions), columns=[c for c in order if c in table.columns])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50, help="cohorts per scenario")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--outcome",
        choices=("r2star_site_adjusted", "r2star_harmonized"),
        default=longitudinal.OUTCOME,
        help="what the models fit: R2* without the site's offset (ironmap's choice), or with "
        "ComBat's scale applied too (the cross-sectional harmonisation)",
    )
    parser.add_argument(
        "--design",
        choices=("default", "scanner", "fallback"),
        default="default",
        help="default: planted and null cohorts; scanner: an upgrade at one site mid-study, "
        "analysed with and without the scanner term",
    )
    args = parser.parse_args()
    if args.design in ("scanner", "fallback"):
        scanner_main(args)
        return
    start = time.time()
    jobs = [(1000 + s, True, args.outcome, "default") for s in range(args.reps)] + [
        (5000 + s, False, args.outcome, "default") for s in range(args.reps)
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = pd.concat(pool.map(one_cohort, jobs), ignore_index=True)
    planted, null = runs[runs["scenario"] == "planted"], runs[runs["scenario"] == "null"]
    pd.set_option("display.width", 200)
    print(
        f"Longitudinal calibration: {args.reps} seeded cohorts per scenario, {len(SITES)} sites, "
        f"60 HC + 100 MS, {SESSIONS} sessions {INTERVAL:g} years apart (x U(0.8, 1.2)), "
        f"{DROPOUT:.0%} drop-out per follow-up"
    )
    print(
        f"(outcome {args.outcome}; {platform.machine()}, {os.cpu_count()} cores, {args.jobs} "
        "workers)\n"
    )
    cover = coverage_table(planted)
    print("1. Coverage of the planted change by the 95 % CIs (planted cohorts)")
    print("   annual change (1/s per year) of HC, MS and each phenotype; arm-HC: group x time")
    print("   at equal age; per EDSS: R2* change per EDSS point gained (1/s)")
    print(cover.round(2).to_string())
    cells = cover.to_numpy().ravel()
    print(
        f"\n   region x quantity cells with coverage >= 0.90: {np.mean(cells >= 0.9):.0%} "
        f"({int(np.sum(cells >= 0.9))}/{cells.size}); pooled coverage "
        f"{planted['covered'].mean():.3f}; lowest {np.min(cells):.2f}"
    )
    print("\n2. False-positive rate at nominal 5 % where no disease change was planted")
    print("   null cohorts (ageing only), every region:")
    null_fpr = fpr_table(null, REGIONS)
    print(null_fpr.round(3).to_string())
    quiet = tuple(r for r in REGIONS if r not in PLANTED)
    print(f"\n   planted cohorts, regions without a disease change ({', '.join(quiet)}):")
    planted_fpr = fpr_table(planted, quiet)
    print(planted_fpr.round(3).to_string())
    both = pd.concat([null_fpr.stack(), planted_fpr.stack()])
    print(
        f"\n   overall false-positive rate {np.mean(both.to_numpy()):.3f} "
        f"(null {null_fpr.to_numpy().mean():.3f}, planted {planted_fpr.to_numpy().mean():.3f}); "
        f"highest cell {both.max():.3f}"
    )
    bias = planted.assign(error=planted["estimate"] - planted["truth"])
    summary = bias.groupby(["term"])[["truth", "error", "se"]].mean()
    print("\n3. Mean truth, estimate - truth and SE by term (planted cohorts, 1/s per year or")
    print("   per EDSS point)")
    print(summary.round(4).to_string())
    converged = runs["converged"].mean()
    print(f"\nfits converged: {converged:.3f}; {time.time() - start:.0f} s wall")


if __name__ == "__main__":
    main()
