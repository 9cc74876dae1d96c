"""The controls' normative age curve against the planted one, old and new method side by side.

Table-level cohorts (:func:`ironmap.simulate.tables.simulate_table_cohort`; the planted healthy
curves are :data:`ironmap.simulate.tissue.AGE_MODELS`, Hallgren-Sourander saturating
exponentials, the thalamus also falling after 40), no disease effect planted, two sites
without site bias, so that ``r2star_corrected`` should equal the participant's true R2* with
the planted age curve removed: ``truth - AGE(age) + AGE(reference_age)``. Designs:

- ``thin-old``: 45 controls aged N(38, 10) (about one older than 60 per cohort) and 80
  patients aged N(56, 12) up to 80 (many older than every control): the demo's defect.
- ``dense``: 120 controls and 80 patients aged N(50, 17), 18-80: where the controls are dense
  the new curve must still follow the planted nonlinear rise (no over-smoothing).

Printed per design and region: the mean error (bias, 1/s) of ``r2star_corrected`` by age
decade and the root mean square over cohorts of each cohort's mean error (a cohort's own
error, which the mean over cohorts cancels when it takes either sign), for the old method
(natural cubic spline with 1-3 degrees of freedom by PRESS, knots at quantiles of the
controls' ages including their minimum and maximum; ironmap before issue 24, rebuilt here
from :func:`ironmap.cohort.age.spline_basis`) and the new one
(:mod:`ironmap.cohort.age_curve`); and the share of fitted curves with an inverted U (their
maximum over 18-80 years exceeds both ends by more than 0.5 1/s).

Run: ``python benchmarks/age_curve.py [--reps N]`` (default 200; about 0.3 s per cohort
and method). Results: docs/cohort.md, age correction.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ironmap.cohort.age import fit_normative, spline_basis
from ironmap.simulate.tables import REGIONS, TableSite, simulate_table_cohort
from ironmap.simulate.tissue import AGE_MODELS, tissue_of

TISSUE = {r: "cerebral_wm" if r == "nawm" else tissue_of(r) for r in REGIONS}
DESIGNS = {
    "thin-old": (
        [
            TableSite("a", 1.0, 1.0, {"HC": 25, "RRMS": 40}),
            TableSite("b", 1.0, 1.0, {"HC": 20, "RRMS": 40}),
        ],
        {"HC": (38.0, 10.0), "RRMS": (56.0, 12.0)},
    ),
    "dense": (
        [
            TableSite("a", 1.0, 1.0, {"HC": 60, "RRMS": 40}),
            TableSite("b", 1.0, 1.0, {"HC": 60, "RRMS": 40}),
        ],
        {"HC": (50.0, 17.0), "RRMS": (50.0, 17.0)},
    ),
}
BANDS = [18, 30, 40, 50, 60, 70, 80.1]
GRID = np.linspace(18, 80, 63)
INVERTED_U = 0.5  # 1/s


@dataclass(frozen=True)
class NaturalSpline:
    """The old age curve: natural cubic spline, knots at quantiles (min and max included)."""

    df: int
    knots: np.ndarray
    press_rmse: dict = field(default_factory=dict)
    monotone: bool = False

    @property
    def active(self) -> np.ndarray:
        return np.ones(self.df, dtype=bool)

    @property
    def name(self) -> str:
        return "linear" if self.df == 1 else f"natural-spline-df{self.df}"

    def basis(self, age):
        return spline_basis(age, self.knots)


def _old_curve(y, age, fixed) -> NaturalSpline:
    """PRESS over df 1-3, as ``ironmap.cohort.age._choose_df`` did."""
    press = {}
    for df in (1, 2, 3):
        if len(y) - fixed.shape[1] - df < 3:
            continue
        knots = np.quantile(age, np.linspace(0, 1, df + 1)) if df > 1 else np.array([0.0, 1.0])
        fit = sm.OLS(y, np.column_stack([fixed, spline_basis(age, knots)])).fit()
        hat = fit.get_influence().hat_matrix_diag
        press[df] = float(np.sqrt(np.mean((fit.resid / (1 - hat)) ** 2)))
    df = min(press, key=press.get)
    knots = np.quantile(age, np.linspace(0, 1, df + 1)) if df > 1 else np.array([0.0, 1.0])
    return NaturalSpline(df, knots, press)


def _old_curves(wide, people, hc) -> dict:
    sex = people["sex"].to_numpy(object)[hc]
    site = people["site"].to_numpy(object)[hc]
    levels = sorted(pd.Series(sex).value_counts().index[1:])
    fixed = np.column_stack(
        [(site[:, None] == np.array(sorted(set(site)), dtype=object)).astype(float)]
        + [(sex == s).astype(float) for s in levels]
    )
    age = people["age"].to_numpy(float)[hc]
    logy = np.log(wide[hc])
    return {r: _old_curve(logy[:, g], age, fixed) for g, r in enumerate(REGIONS)}


def _one(design: str, seed: int) -> tuple[pd.DataFrame, dict]:
    sites, ages = DESIGNS[design]
    long, people = simulate_table_cohort(sites, seed=seed, age=ages)
    wide = long.pivot(index="participant_id", columns="region", values="r2star_median")
    wide = wide[list(REGIONS)]
    truth = long.pivot(index="participant_id", columns="region", values="truth")[list(REGIONS)]
    people = people.set_index("participant_id").loc[wide.index]
    hc = (people["group"] == "HC").to_numpy()
    y, age = wide.to_numpy(float), people["age"].to_numpy(float)
    rows, shapes = [], {}
    for method in ("old", "new"):
        given = _old_curves(y, people, hc) if method == "old" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = fit_normative(
                y[hc],
                age=age[hc],
                sex=people["sex"].to_numpy(object)[hc],
                site=people["site"].to_numpy(object)[hc],
                regions=REGIONS,
                curves=given,
            )
        out = model.transform(
            y,
            age,
            people["sex"].to_numpy(object),
            people["site"].to_numpy(object),
            is_control=hc,
        )
        ref = model.reference_age
        planted = np.column_stack([AGE_MODELS[TISSUE[r]](age) for r in REGIONS])
        planted_ref = np.array([float(AGE_MODELS[TISSUE[r]](ref)) for r in REGIONS])
        target = truth.to_numpy(float) - planted + planted_ref
        error = out["r2star_corrected"] - target
        band = pd.cut(age, BANDS, right=False)
        for g, region in enumerate(REGIONS):
            rows.append(
                pd.DataFrame(
                    {"method": method, "region": region, "band": band, "error": error[:, g]}
                )
            )
        curve = np.exp(model.combat.grand_mean + model.age_term(GRID))  # (grid, regions)
        shapes[method] = (curve.max(0) - np.maximum(curve[0], curve[-1])) > INVERTED_U
    return pd.concat(rows), shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    print(
        f"ironmap age-curve benchmark: {args.reps} seeded cohorts per design; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    pd.set_option("display.width", 200)
    for design in DESIGNS:
        start = time.perf_counter()
        errors, shapes = [], {"old": [], "new": []}
        for seed in range(args.reps):
            frame, shape = _one(design, seed)
            errors.append(frame.assign(seed=seed))
            for k in shapes:
                shapes[k].append(shape[k])
        table = pd.concat(errors)
        # bias per cohort and band first, then the mean over cohorts
        per_cohort = table.groupby(["region", "method", "band", "seed"], observed=True)["error"]
        per_cohort = per_cohort.mean().groupby(["region", "method", "band"], observed=True)
        index = pd.MultiIndex.from_product([REGIONS, ["old", "new"]])
        bias = per_cohort.mean().unstack("band").reindex(index)
        rms = per_cohort.agg(lambda e: np.sqrt(np.mean(e**2))).unstack("band").reindex(index)
        counts = table[(table.method == "new") & (table.region == REGIONS[0])]
        per_band = counts.groupby("band", observed=True).size() / args.reps
        print(
            f"\n== design {design}: bias of r2star_corrected (1/s) by age band, old vs new "
            f"({time.perf_counter() - start:.0f} s)"
        )
        print(
            "participants per cohort in each band: "
            + ", ".join(f"{b}: {n:.1f}" for b, n in per_band.items())
        )
        print(bias.round(2).to_string())
        print(
            "\nroot mean square over cohorts of the cohort's mean error (1/s) by age band "
            "(a cohort's own error, not cancelled across cohorts):"
        )
        print(rms.round(2).to_string())
        share = pd.DataFrame(
            {k: np.mean(v, axis=0) for k, v in shapes.items()}, index=list(REGIONS)
        )
        planted = np.column_stack([AGE_MODELS[TISSUE[r]](GRID) for r in REGIONS])
        share["planted"] = (planted.max(0) - np.maximum(planted[0], planted[-1])) > INVERTED_U
        print("\nshare of cohorts whose fitted curve has an inverted U (> 0.5 1/s):")
        print(share.round(3).T.to_string())


if __name__ == "__main__":
    main()
