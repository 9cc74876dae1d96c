"""Throughput of the R2* fitting methods (voxels per second).

A 1M-voxel x 9-echo float32 volume (brain-like tissue mix, see ``_cases.brain_like``) is fitted
by every method with the noise sigma given. Baselines measured in the same run:

- ``numpy lstsq``: ``np.linalg.lstsq`` on ``log(S)`` for all voxels at once (the fastest
  reasonable R2* map, biased near the noise floor);
- ``curve_fit``: ``scipy.optimize.curve_fit`` called per voxel (how many scripts do it), timed
  on a subsample and scaled.

Two more tables stress the noise-floor path of the default method (``auto``):

- *floor mix*: R2* uniform in 10-120 1/s at S0 / sigma = 50 with sigma **estimated** (from
  the fit residuals: the arrays have no background), so about 70 % of the voxels take the
  Rician maximum-likelihood path (issue 16 target: at least 0.10x numpy lstsq);
- *worst case*: every voxel decays into the noise floor (R2* 60-150 1/s at S0/sigma 15-40),
  sigma given (target: at least 0.05x numpy lstsq).

Run: ``python benchmarks/fit_speed.py [--voxels N] [--tables floor] [--methods auto]
[--repeat 3]``; ``--tables``/``--methods`` pick tables (brain, floor, worst) and methods,
``--repeat`` sets the best-of count. Threading is left at its default (numpy's BLAS may use
every core; the fit runs on one) unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings

import numpy as np
from scipy.optimize import curve_fit

from ironmap.errors import IronmapWarning
from ironmap.fitting import METHODS, DecayModel

from _cases import TE_9, brain_like, rician

TABLES = ("brain", "floor", "worst")


REPEAT = 3


def _best_of(func, repeat: int | None = None) -> float:
    repeat = REPEAT if repeat is None else repeat
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def numpy_lstsq(mag: np.ndarray, te: np.ndarray) -> np.ndarray:
    design = np.column_stack([np.ones_like(te), -te])
    return np.linalg.lstsq(design, np.log(mag).T, rcond=None)[0][1]


def curve_fit_per_voxel(mag: np.ndarray, te: np.ndarray) -> np.ndarray:
    def model(t, s0, r2):
        return s0 * np.exp(-r2 * t)

    out = np.empty(mag.shape[0])
    for i, y in enumerate(mag):
        out[i] = curve_fit(model, te, y, p0=(y[0], 30.0), maxfev=2000)[0][1]
    return out


def table(
    mag: np.ndarray,
    te: np.ndarray,
    title: str,
    n_curve_fit: int,
    *,
    sigma: float | None = 1.0,
    methods: tuple[str, ...] = METHODS,
) -> None:
    n = mag.shape[0]
    t_np = _best_of(lambda: numpy_lstsq(mag, te))
    t_cf = math.nan
    if n_curve_fit > 0:
        sub = mag[:: max(1, n // n_curve_fit)][:n_curve_fit].astype(np.float64)
        t_cf = _best_of(lambda: curve_fit_per_voxel(sub, te), repeat=1) * n / sub.shape[0]
    given = "sigma given" if sigma is not None else "sigma estimated"
    print(f"\n{title}: {n:,} voxels x {te.size} echoes, {given}")
    print(
        f"{'method':<14}{'seconds':>10}{'voxels/s':>14}{'vs numpy lstsq':>16}{'vs curve_fit':>14}"
    )

    def vs_curve_fit(t: float) -> str:
        return f"{t_cf / t:>13.0f}x" if n_curve_fit > 0 else f"{'-':>14}"

    print(f"{'numpy lstsq':<14}{t_np:>10.3f}{n / t_np:>14,.0f}{1.0:>16.3f}{vs_curve_fit(t_np)}")
    if n_curve_fit > 0:
        print(
            f"{'curve_fit*':<14}{t_cf:>10.1f}{n / t_cf:>14,.0f}{t_np / t_cf:>16.4f}{1.0:>13.0f}x"
        )
    for method in methods:
        model = DecayModel(te, method=method, sigma=sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IronmapWarning)
            t = _best_of(lambda model=model: model.fit(mag))
        print(f"{method:<14}{t:>10.3f}{n / t:>14,.0f}{t_np / t:>16.3f}{vs_curve_fit(t)}")
    if n_curve_fit > 0:
        print(f"* curve_fit timed on {sub.shape[0]:,} voxels and scaled to {n:,}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=1_000_000)
    parser.add_argument("--curve-fit-voxels", type=int, default=2000, help="0: skip curve_fit")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    global REPEAT
    REPEAT = args.repeat
    methods = tuple(args.methods)
    cpu = platform.processor() or platform.machine()
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"{cpu}, {os.cpu_count()} CPUs, numpy {np.__version__}, OMP_NUM_THREADS {threads}")
    if "brain" in args.tables:
        mag, _ = brain_like(args.voxels, TE_9)
        table(mag, TE_9, "Brain-like mix", args.curve_fit_voxels, methods=methods)
    rng = np.random.default_rng(1)
    r2 = rng.uniform(60.0, 150.0, args.voxels)
    s0 = rng.uniform(15.0, 40.0, args.voxels)
    floor = rician(s0[:, None] * np.exp(-r2[:, None] * TE_9), 1.0, rng).astype(np.float32)
    r2 = rng.uniform(10.0, 120.0, args.voxels)
    mix = rician(50.0 * np.exp(-r2[:, None] * TE_9), 1.0, rng).astype(np.float32)
    title = "Floor mix (R2* 10-120 1/s, S0/sigma 50)"
    if "floor" in args.tables:
        table(mix, TE_9, title, args.curve_fit_voxels, sigma=None, methods=methods)
    title = "Worst case (all voxels reach the noise floor)"
    if "worst" in args.tables:
        table(floor, TE_9, title, args.curve_fit_voxels, methods=methods)


if __name__ == "__main__":
    main()
