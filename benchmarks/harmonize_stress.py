"""Site harmonisation under designs that break ComBat's assumptions (table-level cohorts).

``benchmarks/group_calibration.py`` draws site bias exactly as the harmonisation model assumes
it: one multiplicative bias shared by every region, independent regions, patients within the
controls' ages. Here each design breaks one assumption (or stresses one weak point), on top of
a common multicentre cohort (5 sites, 54-64 controls and ~70 patients), drawn with
:func:`ironmap.simulate.tables.simulate_table_cohort`:

=================  ===========================================================================
``reference``      the model's assumptions; site s4 has twice the measurement noise (12 HC)
``region-bias``    every site's bias differs by region (log-normal, SD 4 %)
``additive``       additive, not multiplicative, site bias (-2.5 to +3 1/s, every region)
``correlated``     a between-subject effect shared by all regions (r ~ 0.85)
``older``          patients (65 +- 4 years) older than nearly every control (35 +- 6)
``missing``        dentate nucleus n/a at one site (s2: 8 HC + 23 MS)
``noisy-small``    a site with 4 controls, 20 patients and twice the measurement noise
``confounded``     a site with 2 controls holding 60 % of the patients
=================  ===========================================================================

Half the regions carry a planted MS effect (+1.5 1/s in every MS phenotype: putamen,
pallidum, red nucleus, dentate), the other half none (thalamus, caudate, substantia nigra,
NAWM). Each cohort goes through the real :func:`ironmap.cohort.analysis.analyse_cohort`
(``mixed=False, clinical=False, n_bootstrap=0``). Printed per design, over seeded reps:

- ``FPR``: MS-HC p < 0.05 in the null regions; ``bold FPR``: marked significant there (the
  report's bold: p_FDR, the hierarchy, and no contrast resting on extrapolated ages);
- ``coverage``: the MS-HC 95 % CI holds the planted effect on the corrected scale (the +1.5
  1/s scaled by the controls' pooled multiplicative bias and by the healthy curve's ratio
  between the reference age and each patient's age, as in ``group_calibration.py``);
- ``est/planted``: mean estimate / mean target over planted regions (1 = unbiased; the
  ``confounded`` row is the confounded-site attenuation), with its Monte-Carlo SE and the
  lowest region's ratio;
- ``site est/planted``: the same ratio for the MS - HC difference within the special site
  alone (OLS of the corrected R2* on group, age and sex there): how much harmonisation keeps
  of an effect at that site;
- ``z mean``, ``z SD``: disease-free patients' z-scores (null regions) at the design's special
  site (``site``), pooled over reps.

"Before" numbers come from running this script on another checkout's ``src`` (``PYTHONPATH``;
the simulator of this checkout must be importable there, see ``docs/cohort.md``).

Run: ``python benchmarks/harmonize_stress.py [--reps N] [--designs a,b]`` (default 200 reps;
about 0.4 s per cohort on an idle core, 6 s on the shared machine of the numbers in
``docs/cohort.md``, which used 100 reps for ``reference`` and 40 for the others).
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

from ironmap.cohort.analysis import analyse_cohort
from ironmap.simulate.tables import REGIONS, TableSite, simulate_table_cohort
from ironmap.simulate.tissue import AGE_MODELS, BIOLOGICAL_SD_SHARED

EFFECT = 1.5  # 1/s, planted in every MS phenotype
PLANTED = ("putamen", "pallidum", "red_nucleus", "dentate_nucleus")
NULL = tuple(r for r in REGIONS if r not in PLANTED)
PHENOTYPES = ("RRMS", "SPMS")
#: (name, bias, noise, HC, RRMS, SPMS) of the common cohort.
BASE = (
    ("s1", 1.00, 1.0, 14, 10, 4),
    ("s2", 1.05, 1.0, 12, 12, 4),
    ("s3", 0.96, 1.0, 16, 8, 3),
    ("s4", 1.03, 1.0, 10, 10, 4),
    ("s5", 0.98, 1.0, 12, 8, 3),
)


def _sites(**changes) -> list[TableSite]:
    """The common cohort; ``changes``: site name -> TableSite keyword overrides."""
    out = []
    for name, bias, noise, hc, rr, sp in BASE:
        kw = {"bias": bias, "noise": noise, "n": {"HC": hc, "RRMS": rr, "SPMS": sp}}
        kw.update(changes.get(name, {}))
        out.append(TableSite(name, **kw))
    for name, kw in changes.items():
        if name not in {b[0] for b in BASE}:
            out.append(TableSite(name, **kw))
    return out


def _region_bias(seed: int) -> dict[str, dict]:
    rng = np.random.default_rng([seed, 7])
    return {
        b[0]: {
            "region_bias": dict(
                zip(REGIONS, np.exp(rng.normal(0, 0.04, len(REGIONS))), strict=True)
            )
        }
        for b in BASE
    }


#: name -> (sites(seed), simulate_table_cohort options, special site, post-processing)
DESIGNS = {
    "reference": (
        lambda seed: _sites(s4={"noise": 2.0, "n": {"HC": 12, "RRMS": 14, "SPMS": 4}}),
        {},
        "s4",
    ),
    "region-bias": (lambda seed: _sites(**_region_bias(seed)), {}, "s2"),
    "additive": (
        lambda seed: _sites(
            s1={"bias": 1.0, "offset": 0.0},
            s2={"bias": 1.0, "offset": 3.0},
            s3={"bias": 1.0, "offset": -2.5},
            s4={"bias": 1.0, "offset": 1.5},
            s5={"bias": 1.0, "offset": -1.5},
        ),
        {},
        "s2",
    ),
    "correlated": (lambda seed: _sites(), {"shared_sd": BIOLOGICAL_SD_SHARED}, "s4"),
    "older": (
        lambda seed: _sites(),
        {"age": {"HC": (35.0, 6.0), "RRMS": (65.0, 4.0), "SPMS": (66.0, 4.0)}},
        "s1",
    ),
    "missing": (lambda seed: _sites(s2={"n": {"HC": 8, "RRMS": 18, "SPMS": 5}}), {}, "s2"),
    "noisy-small": (
        lambda seed: _sites(
            n1={"bias": 1.04, "noise": 2.0, "n": {"HC": 4, "RRMS": 16, "SPMS": 4}}
        ),
        {},
        "n1",
    ),
    "confounded": (
        lambda seed: _sites(c1={"bias": 1.03, "n": {"HC": 2, "RRMS": 80, "SPMS": 26}}),
        {},
        "c1",
    ),
}


def _subjects(people: pd.DataFrame) -> pd.DataFrame:
    return people.assign(
        icv_ml=1450.0, brain_ml=1200.0, cortical_gm_ml=480.0, nbv=0.84, lesion_volume_ml=5.0
    ).assign(lesion_count=3)


def _targets(sites: list[TableSite], people: pd.DataFrame, reference_age: float) -> dict:
    """Planted effect on the corrected scale per planted region (1/s)."""
    hc = [s for s in sites if s.n.get("HC")]
    weights = np.array([s.n["HC"] for s in hc], float)
    ms = people[people["group"] == "MS"]
    out = {}
    for region in PLANTED:
        bias = [s.bias * s.region_bias.get(region, 1.0) for s in hc]
        scale = np.exp(np.average(np.log(bias), weights=weights))
        curve = AGE_MODELS[region]
        out[region] = float(EFFECT * scale * np.mean(curve(reference_age) / curve(ms["age"])))
    return out


def one_cohort(design: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Analyse one cohort of ``design``: MS-HC rows with their target, and the special z."""
    make, options, special = DESIGNS[design]
    sites = make(seed)
    effects = {p: dict.fromkeys(PLANTED, EFFECT) for p in PHENOTYPES}
    long, people = simulate_table_cohort(sites, seed=seed, effects=effects, **options)
    if design == "missing":
        at = long["participant_id"].isin(people.loc[people["site"] == "s2", "participant_id"])
        long.loc[at & (long["region"] == "dentate_nucleus"), "r2star_median"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyse_cohort(
            long, _subjects(people), mixed=False, clinical=False, n_bootstrap=0
        )
    comp = result.comparison.query("contrast == 'MS-HC'")[
        ["region", "estimate", "ci_low", "ci_high", "p", "significant"]
    ].copy()
    comp["target"] = comp["region"].map(_targets(sites, people, result.normative.reference_age))
    comp["seed"] = seed
    values = result.regions.merge(people[["participant_id", "site", "group", "age", "sex"]])
    keep = (values["group"] == "MS") & (values["site"] == special) & values["region"].isin(NULL)
    comp["site_estimate"] = comp["region"].map(_within_site(values[values["site"] == special]))
    return comp, values.loc[keep, ["region", "r2star_z"]]


def _within_site(values: pd.DataFrame) -> dict[str, float]:
    """MS - HC of r2star_corrected within one site (OLS with age and sex), per planted region."""
    out = {}
    for region in PLANTED:
        part = values[(values["region"] == region) & values["r2star_corrected"].notna()]
        if part["group"].nunique() < 2 or len(part) < 5:
            out[region] = np.nan
            continue
        fit = smf.ols("r2star_corrected ~ C(group, Treatment('HC')) + age + C(sex)", part).fit()
        out[region] = float(fit.params["C(group, Treatment('HC'))[T.MS]"])
    return out


def run(design: str, reps: int) -> dict:
    rows, zs = [], []
    for rep in range(reps):
        comp, z = one_cohort(design, 1000 * (list(DESIGNS).index(design) + 1) + rep)
        rows.append(comp)
        zs.append(z)
    comp = pd.concat(rows, ignore_index=True)
    z = pd.concat(zs, ignore_index=True)["r2star_z"]
    null = comp[comp["region"].isin(NULL)]
    planted = comp[comp["region"].isin(PLANTED)]
    finite = planted[np.isfinite(planted["estimate"])]
    covered = (finite["ci_low"] <= finite["target"]) & (finite["target"] <= finite["ci_high"])
    per_rep = finite.groupby("seed").apply(
        lambda d: d["estimate"].mean() / d["target"].mean(), include_groups=False
    )
    by_region = finite.groupby("region").apply(
        lambda d: d["estimate"].mean() / d["target"].mean(), include_groups=False
    )
    return {
        "design": design,
        "site": DESIGNS[design][2],
        "FPR": float(np.mean(null["p"].dropna() < 0.05)),
        "bold FPR": float(np.mean(null["significant"].astype(bool))),
        "coverage": float(covered.mean()),
        "est/planted": float(finite["estimate"].mean() / finite["target"].mean()),
        "+-MCSE": float(per_rep.std(ddof=1) / np.sqrt(len(per_rep))),
        "lowest region": f"{by_region.min():.3f} {by_region.idxmin()}",
        "site est/planted": float(
            finite["site_estimate"].mean()
            / finite.loc[finite["site_estimate"].notna(), "target"].mean()
        ),
        "z mean": float(z.mean()),
        "z SD": float(z.std(ddof=1)),
        "NaN rows": int(comp["estimate"].isna().sum()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--designs", default=",".join(DESIGNS))
    args = parser.parse_args(argv)
    import ironmap

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"ironmap from {os.path.dirname(ironmap.__file__)}; {args.reps} reps per design")
    start = time.perf_counter()
    rows = []
    for design in args.designs.split(","):
        rows.append(run(design, args.reps))
        print(
            "  "
            + "  ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()
            ),
            flush=True,
        )
    table = pd.DataFrame(rows)
    print(
        table.to_string(
            index=False, float_format=lambda x: f"{x:.3f}", formatters={"+-MCSE": "{:.3f}".format}
        )
    )
    print(
        f"\nFPR: MS-HC p < 0.05 in {', '.join(NULL)}; coverage, est/planted: +{EFFECT} 1/s in "
        f"{', '.join(PLANTED)}; z: disease-free patients (null regions) at `site`; NaN rows: "
        f"MS-HC rows without an estimate.\n{time.perf_counter() - start:.0f} s wall"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
