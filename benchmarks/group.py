"""Group-stage statistics: CPU and wall time of ``analyse_cohort`` against cohort size.

Cohorts: simulated participant-stage tables (:func:`ironmap.simulate.tables.simulate_table_cohort`)
at 7 sites in the proportions of the default cohort, 81 HC / 97 MS (RRMS 60 %, SPMS 25 %,
PPMS 15 %), scaled to 178, 1,000 and 10,000 participants; every MS participant has a
``lesions`` row. Each size runs with ``mixed=False`` and ``mixed=True`` (the MixedLM
sensitivity analysis). Tables:

1. CPU (``time.process_time``, all threads) and wall seconds, milliseconds per participant,
   and the ratio of the time per participant to that of 178 participants (1: linear in n,
   < 1: better than linear).
2. Wall seconds of each step of ``analyse_cohort`` and its scaling exponent
   ``log(t2 / t1) / log(n2 / n1)`` between consecutive sizes (1: linear, 2: quadratic).
3. The 8 ironmap functions with the largest cumulative time under cProfile (mixed=True; the
   sizes of ``--profile-n``, default 178).

Simulation is not timed; one untimed warm-up run first (lazy imports). Cohorts up to 1,000
are timed best of ``--repeat`` (3), larger ones once. IronmapWarnings (few controls per
site, ...) are silenced. A case over ``--limit`` seconds (300) stops the larger ones. On a
shared machine, ``--blas-threads 1`` keeps OpenBLAS's threads from competing with other
processes (on a loaded 2-core machine they made some SVDs 10-20 times slower).

Run: ``python benchmarks/group.py [--quick] [--profile-n 178 10000]`` (``--quick``: 178 and
1,000 only; ``--profile-n``: the sizes to profile).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import os
import platform
import pstats
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

import ironmap
import ironmap.cohort.analysis as analysis
from ironmap.cohort.analysis import analyse_cohort
from ironmap.errors import IronmapWarning
from ironmap.simulate.tables import TableSite, simulate_table_cohort

SIZES = (178, 1_000, 10_000)
QUICK_SIZES = (178, 1_000)
#: label -> share of the cohort (81 HC / 97 MS; MS 60 % RRMS, 25 % SPMS, 15 % PPMS).
SHARES = {
    "HC": 81 / 178,
    "RRMS": 0.60 * 97 / 178,
    "SPMS": 0.25 * 97 / 178,
    "PPMS": 0.15 * 97 / 178,
}
#: 7 sites: (name, multiplicative R2* bias, noise factor).
SITES = (
    ("s1", 1.00, 1.0),
    ("s2", 1.05, 1.0),
    ("s3", 0.97, 1.5),
    ("s4", 1.02, 1.0),
    ("s5", 0.95, 1.2),
    ("s6", 1.08, 1.0),
    ("s7", 1.00, 2.0),
)
#: modest disease effects (1/s) so that the comparisons and determinants have work to do.
EFFECTS = {
    "RRMS": {"putamen": 1.0, "nawm": -0.3},
    "SPMS": {"putamen": 1.5, "pallidum": 1.0, "nawm": -0.6},
    "PPMS": {"caudate": 1.0, "nawm": -0.5},
}
#: analyse_cohort's steps timed separately (names in ironmap.cohort.analysis).
STEPS = (
    "_normative",
    "compare_groups",
    "compare_groups_mixed",
    "predictor_values",
    "_lesion_outcomes",
    "determinants",
    "_age_model_table",
    "_harmonization_table",
)
TOP = 8
#: larger cohorts are timed once (they take minutes); smaller ones best of --repeat
REPEAT_MAX_N = 1_000


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Largest-remainder split of ``total`` in proportion to ``weights``."""
    exact = np.asarray(weights, float) / np.sum(weights) * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def make_cohort(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``regions`` and ``subjects`` tables of a simulated n-participant, 7-site cohort."""
    per_label = dict(zip(SHARES, _allocate(n, list(SHARES.values())), strict=True))
    per_site = {label: _allocate(count, [1.0] * len(SITES)) for label, count in per_label.items()}
    sites = [
        TableSite(name, bias, noise, {label: per_site[label][i] for label in SHARES})
        for i, (name, bias, noise) in enumerate(SITES)
    ]
    long, people = simulate_table_cohort(sites, seed=seed, effects=EFFECTS)
    rng = np.random.default_rng(seed)
    ms = people["group"] == "MS"
    subjects = people.assign(
        icv_ml=rng.normal(1450, 120, n),
        brain_ml=1200.0,
        cortical_gm_ml=rng.normal(480, 30, n),
        nbv=rng.normal(0.84, 0.02, n),
        lesion_volume_ml=np.where(ms, rng.gamma(2, 4, n), 0.0),
        lesion_count=3,
    )
    lesions = people.loc[ms, ["participant_id"]].assign(
        region="lesions",
        hemisphere="both",
        r2star_median=18.0 + rng.normal(0.0, 1.0, int(ms.sum())),
        n_voxels=100,
    )
    regions = pd.concat([long.drop(columns="truth"), lesions], ignore_index=True)
    return regions, subjects


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _limit(seconds: float):
    """Raise :class:`_Timeout` after ``seconds`` of wall time (SIGALRM; no-op elsewhere)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def _raise(signum, frame):
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _step_timers(seconds: dict[str, float]):
    """Wrap analyse_cohort's steps (module attributes) to add their wall time to ``seconds``."""
    originals = {name: getattr(analysis, name) for name in STEPS if hasattr(analysis, name)}

    def wrap(name, func):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

        return timed

    for name, func in originals.items():
        setattr(analysis, name, wrap(name, func))
    try:
        yield
    finally:
        for name, func in originals.items():
            setattr(analysis, name, func)


def _run(regions: pd.DataFrame, subjects: pd.DataFrame, mixed: bool, limit: float) -> dict:
    """One timed analyse_cohort: CPU and wall seconds, and wall seconds of each step."""
    steps: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        with _step_timers(steps), _limit(limit):
            cpu, wall = time.process_time(), time.perf_counter()
            analyse_cohort(regions, subjects, mixed=mixed)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu, "wall_s": wall, "steps": steps}


def _best(regions, subjects, mixed: bool, limit: float, repeat: int) -> dict:
    """The run with the least wall time out of ``repeat``."""
    return min((_run(regions, subjects, mixed, limit) for _ in range(repeat)), key=_wall)


def _wall(result: dict) -> float:
    return result["wall_s"]


def _profile(regions: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    """Top ironmap functions by cumulative time (cProfile) of analyse_cohort(mixed=True)."""
    profiler = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        profiler.runcall(analyse_cohort, regions, subjects, mixed=True)
    stats = pstats.Stats(profiler)
    root = str(Path(ironmap.__file__).resolve().parent)
    total = max(ct for (_, _, _, ct, _) in stats.stats.values())
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        path = str(Path(filename).resolve()) if filename.startswith(("/", ".")) else filename
        if not path.startswith(root):
            continue
        module = "ironmap." + ".".join(Path(path).relative_to(root).with_suffix("").parts)
        rows.append(
            {
                "function": f"{module}.{name}:{line}",
                "calls": ncalls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
                "cum_%": 100 * cumtime / total,
            }
        )
    table = pd.DataFrame(rows).sort_values("cumtime_s", ascending=False).head(TOP)
    return table.set_index("function")


def _load() -> str:
    """1-minute load average (other processes on the machine inflate the times)."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far (MB; NaN where unknown)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="178 and 1,000 participants only")
    parser.add_argument(
        "--limit", type=float, default=300.0, help="seconds allowed per case (default 300)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help=f"runs per case up to {REPEAT_MAX_N:,} participants, best kept (default 3)",
    )
    parser.add_argument(
        "--profile-n",
        type=int,
        nargs="+",
        default=[SIZES[0]],
        help=f"cohort sizes to profile with mixed=True (default {SIZES[0]})",
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="limit BLAS threads (threadpoolctl; default: the library's own setting)",
    )
    args = parser.parse_args(argv)
    if args.blas_threads:
        with threadpool_limits(args.blas_threads):
            _benchmark(args)
    else:
        _benchmark(args)


def _blas() -> str:
    libs = [i for i in threadpool_info() if i["user_api"] == "blas"]
    return ", ".join(
        f"{i['internal_api']} {i['version']} {i['num_threads']} threads" for i in libs
    )


def _benchmark(args: argparse.Namespace) -> None:
    sizes = QUICK_SIZES if args.quick else SIZES

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"({platform.system()} {platform.release()}); Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}; load average {_load()}"
    )
    print(f"BLAS: {_blas()}")
    results: dict[tuple[int, bool], dict] = {}
    cohorts: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}
    stopped = ""
    _run(*make_cohort(SIZES[0], seed=1), True, 0)  # warm-up (lazy imports), no time limit
    for n in sizes:
        cohorts[n] = make_cohort(n)
        repeat = args.repeat if n <= REPEAT_MAX_N else 1
        for mixed in (False, True):
            try:
                results[n, mixed] = _best(*cohorts[n], mixed, args.limit, repeat)
            except _Timeout:
                stopped = f"n = {n}, mixed={mixed} took more than {args.limit:g} s: stopped"
                break
        if stopped:
            break
        if n not in args.profile_n:
            del cohorts[n]

    if not results:
        print(stopped)
        return
    rows = []
    for (n, mixed), r in results.items():
        base = results.get((sizes[0], mixed), {"wall_s": np.nan})
        per = 1000 * r["wall_s"] / n
        rows.append(
            {
                "n": n,
                "mixed": mixed,
                "cpu_s": r["cpu_s"],
                "wall_s": r["wall_s"],
                "cpu_ms/participant": 1000 * r["cpu_s"] / n,
                "wall_ms/participant": per,
                "wall_x_178": r["wall_s"] / base["wall_s"],
                "n_x_178": n / sizes[0],
                "per_participant_x_178": per / (1000 * base["wall_s"] / sizes[0]),
            }
        )
    table = pd.DataFrame(rows).set_index(["n", "mixed"])
    print(
        f"\nanalyse_cohort on simulated tables (7 sites; best of {args.repeat} up to "
        f"{REPEAT_MAX_N:,} participants, one run above):"
    )
    print(table.round(3).to_string())
    if stopped:
        print(stopped)

    steps = pd.DataFrame(
        {
            (n, mixed): {
                **r["steps"],
                "other": r["wall_s"] - sum(r["steps"].values()),
                "total": r["wall_s"],
            }
            for (n, mixed), r in results.items()
        }
    ).fillna(0.0)
    steps = steps.reindex([s for s in (*STEPS, "other", "total") if s in steps.index])
    steps.columns.names = ["n", "mixed"]
    print("\nwall seconds per step (other: merges and reshaping in analyse_cohort itself):")
    print(steps.round(3).to_string())
    exponents = {}
    done = sorted({n for n, _ in results})
    for mixed in (False, True):
        for small, large in itertools.pairwise(done):
            if (large, mixed) in results:
                t1, t2 = steps[(small, mixed)], steps[(large, mixed)]
                ratio = t2 / t1.where(t1 > 0)
                exponents[f"{small}->{large}, {mixed=}"] = np.log(ratio) / np.log(large / small)
    if exponents:
        print("\nscaling exponent per step, log(t2 / t1) / log(n2 / n1) (1 = linear):")
        print(pd.DataFrame(exponents).round(2).to_string())

    print(f"load average after the timed runs: {_load()}; peak RSS {_peak_rss_mb():,.0f} MB")

    for n in args.profile_n if not stopped else []:
        regions, subjects = cohorts.pop(n) if n in cohorts else make_cohort(n)
        print(
            f"\ncProfile, n = {n:,}, mixed=True: top {TOP} ironmap functions by cumulative "
            "time (seconds include the profiler's overhead)"
        )
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(_profile(regions, subjects).round(3).to_string())


if __name__ == "__main__":
    main()
