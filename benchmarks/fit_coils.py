"""Accuracy of ``auto`` on root-sum-of-squares magnitudes of N receive coils (noncentral chi).

For each N x R2* x SNR cell (SNR = S0 / sigma, sigma the noise SD per channel and real/imaginary
part, 9 echoes 2.6-39.4 ms, seeded) the same voxels are fitted by ``auto`` with the true sigma
given, before (``coils=1``: the Rician model, today's behaviour on such data) and after
(``coils=N``). Columns: bias in % of the true R2* and RMSE / CRLB, the Cramer-Rao bound of the
noncentral chi distribution with 2N degrees of freedom.

Run: ``python benchmarks/fit_coils.py [--voxels N]``.
"""

from __future__ import annotations

import argparse

import numpy as np

from ironmap.fitting import DecayModel
from ironmap.simulate.signal import rss_magnitude

from _cases import (
    COILS,
    R2_GRID,
    SNR_GRID,
    TE_9,
    CellAccuracy,
    quiet_fit,
    score_cells,
    seeded_cells,
)


def rss(amplitude: np.ndarray, sigma: float, coils: int, rng: np.random.Generator) -> np.ndarray:
    """RSS magnitude of ``coils`` channels (:func:`ironmap.simulate.signal.rss_magnitude`)."""
    return rss_magnitude(amplitude, sigma=sigma, coils=coils, rng=rng)


def cell(r2: float, snr: float, coils: int, n: int, seed: int) -> dict[str, CellAccuracy]:
    """``{"before": accuracy with coils=1, "after": with coils=N}`` for one cell (sigma = 1)."""
    rng = np.random.default_rng(seed)
    mag = rss(np.broadcast_to(snr * np.exp(-r2 * TE_9), (n, TE_9.size)), 1.0, coils, rng)
    estimates = {
        name: quiet_fit(DecayModel(TE_9, sigma=1.0, coils=model_coils), mag).r2star
        for name, model_coils in (("before", 1), ("after", coils))
    }
    return score_cells(estimates, r2, snr, coils)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=20_000, help="voxels per cell")
    args = parser.parse_args(argv)
    print(
        f"RSS of N coils, 9 echoes 2.6-39.4 ms, {args.voxels:,} voxels per cell, sigma given; "
        "auto with coils=1 (before) and coils=N (after)"
    )
    print(f"{'N':>3}{'R2*':>6}{'SNR':>5}{'CRLB':>7}{'before':>20}{'after':>20}")
    print(f"{'':>21}" + f"{'bias%  RMSE/CRLB':>20}" * 2)
    for seed, coils, r2, snr in seeded_cells(COILS, R2_GRID, SNR_GRID):
        res = cell(r2, snr, coils, args.voxels, seed)
        row = "".join(f"{a.bias:>+12.2f}{a.ratio:>8.2f}" for a in res.values())
        print(f"{coils:>3}{r2:>6.0f}{snr:>5.0f}{res['after'].crlb:>7.2f}{row}")


if __name__ == "__main__":
    main()
