"""Accuracy of the R2* fitting methods against the Rician Cramer-Rao bound.

For each R2* x SNR cell (SNR = S0 / sigma, 9 echoes 2.6-39.4 ms, Rician magnitudes, seeded), every
method fits the same voxels with the true sigma given. Columns: bias in % of the true R2*, SD of
the estimates (1/s) and RMSE / CRLB (1.00 = as good as any unbiased estimator can be).

Run: ``python benchmarks/fit_accuracy.py [--voxels N]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from ironmap.errors import IronmapWarning
from ironmap.fitting import METHODS, DecayModel, r2star_crlb_sd

from _cases import TE_9, rician


def _log_wls(mag: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """R2* of a weighted log-linear fit (weights 0 drop an echo); NaN with < 2 echoes kept."""
    y = np.log(np.where(weights > 0, mag, 1.0))
    sw, swt, swtt = weights.sum(1), weights @ TE_9, weights @ TE_9**2
    swy, swty = (weights * y).sum(1), (weights * y) @ TE_9
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = -(sw * swty - swt * swy) / (sw * swtt - swt**2)
    return np.where((weights > 0).sum(1) >= 2, r2, np.nan)


#: Noise-floor strategies other than ``auto`` (sigma = 1), for the second table.
STRATEGIES = {
    "truncate<3sd": lambda m: _log_wls(m, m**2 * (m > 3.0)),
    "M^2-2sd^2": lambda m: _log_wls(np.sqrt(np.maximum(m**2 - 2.0, 0.25)), m**2 - 2.0 > 0.25),
    "sqrt(M^2-sd^2)": lambda m: _log_wls(np.sqrt(np.maximum(m**2 - 1.0, 0.25)), m**2),
}

R2_GRID = (15.0, 30.0, 50.0, 80.0, 120.0, 150.0)
SNR_GRID = (15.0, 30.0, 60.0)


def cell(
    r2: float, snr: float, n: int, seed: int, estimators: dict
) -> dict[str, tuple[float, float, float]]:
    """``{name: (bias %, SD, RMSE / CRLB)}`` for one R2* x SNR cell."""
    rng = np.random.default_rng(seed)
    mag = rician(np.broadcast_to(snr * np.exp(-r2 * TE_9), (n, TE_9.size)), 1.0, rng)
    crlb = float(r2star_crlb_sd(snr, r2, TE_9, 1.0))
    out = {}
    for name, estimate in estimators.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IronmapWarning)
            est = estimate(mag)
        est = est[np.isfinite(est)]
        rmse = float(np.sqrt(np.mean((est - r2) ** 2)))
        out[name] = (100 * (est.mean() - r2) / r2, float(est.std()), rmse / crlb)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=20_000, help="voxels per cell")
    args = parser.parse_args(argv)
    methods = {
        m: (lambda mag, m=m: DecayModel(TE_9, method=m, sigma=1.0).fit(mag).r2star)
        for m in METHODS
    }
    print(f"Rician noise, 9 echoes 2.6-39.4 ms, {args.voxels:,} voxels per cell, sigma given")
    print("\nironmap methods")
    _table(methods, args.voxels)
    print("\nOther noise-floor strategies (log-linear WLS after the named correction)")
    _table({"auto": methods["auto"], **STRATEGIES}, args.voxels)


def _table(estimators: dict, n: int) -> None:
    head = "".join(f"{m:>21}" for m in estimators)
    print(f"{'R2*':>5}{'SNR':>5}{'CRLB':>7}{head}")
    print(f"{'':>17}" + "".join(f"{'bias%  SD  RMSE/CRLB':>21}" for _ in estimators))
    for i, r2 in enumerate(R2_GRID):
        for j, snr in enumerate(SNR_GRID):
            res = cell(r2, snr, n, 100 * i + j, estimators)
            crlb = float(r2star_crlb_sd(snr, r2, TE_9, 1.0))
            cols = "".join(f"{b:>+8.2f}{s:>6.2f}{q:>7.2f}" for b, s, q in res.values())
            print(f"{r2:>5.0f}{snr:>5.0f}{crlb:>7.2f}{cols}")


if __name__ == "__main__":
    main()
