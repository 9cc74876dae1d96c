"""Shared synthetic data for the benchmarks (seeded, so every run measures the same thing)."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ironmap.errors import IronmapWarning
from ironmap.fitting import DecayFit, DecayModel, r2star_crlb_sd

#: The echo train of the acceptance criteria: 9 echoes, 2.6-39.4 ms (4.6 ms spacing).
TE_9 = np.linspace(2.6e-3, 39.4e-3, 9)
#: The grid of the receive-coil benchmarks (fit_coils.py, fit_acceptance.py): R2* (1/s), SNR
#: (S0 / sigma per channel) and the number of channels N.
R2_GRID = (15.0, 30.0, 50.0, 80.0, 120.0, 150.0)
SNR_GRID = (30.0, 60.0)
COILS = (1, 8, 32)


def rician(amplitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``amplitude`` plus complex Gaussian noise of SD ``sigma`` per channel."""
    noise = rng.normal(scale=sigma, size=(2, *amplitude.shape))
    return np.hypot(amplitude + noise[0], noise[1])


def brain_like(n_voxels: int, te: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Magnitudes of a brain-like mix of tissues at 3 T, noise sigma = 1.

    70 % white/grey matter (R2* 15-30 1/s), 20 % deep grey matter (25-60 1/s) and 10 % iron-rich
    or venous voxels (60-150 1/s); S0 / sigma uniform in 40-120.

    Returns
    -------
    magnitude : numpy.ndarray, shape (n_voxels, n_echoes), float32
    truth : dict with ``s0`` and ``r2star`` arrays of shape (n_voxels,)
    """
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n_voxels, p=[0.7, 0.2, 0.1])
    lo = np.array([15.0, 25.0, 60.0])[kind]
    hi = np.array([30.0, 60.0, 150.0])[kind]
    r2 = rng.uniform(lo, hi)
    s0 = rng.uniform(40.0, 120.0, n_voxels)
    mag = rician(s0[:, None] * np.exp(-r2[:, None] * te), 1.0, rng).astype(np.float32)
    return mag, {"s0": s0, "r2star": r2}


@dataclass(frozen=True)
class CellAccuracy:
    """R2* estimates of one (R2*, SNR, N) cell of a benchmark grid against the truth.

    Attributes
    ----------
    crlb : float
        Cramer-Rao bound of the R2* SD (1/s): :data:`TE_9`, S0 = SNR, sigma = 1 per channel,
        noncentral chi of N channels.
    bias : float
        Mean of the finite estimates minus the true R2*, in % of it.
    ratio : float
        RMSE of the finite estimates over ``crlb``.
    failed : float
        Share of the estimates that are NaN (failed voxels), in %.
    """

    crlb: float
    bias: float
    ratio: float
    failed: float


def cell_accuracy(estimates: np.ndarray, r2star: float, snr: float, coils: int) -> CellAccuracy:
    """Bias, RMSE / CRLB and failures of the R2* ``estimates`` of one cell (true ``r2star``)."""
    crlb = float(r2star_crlb_sd(snr, r2star, TE_9, 1.0, coils=coils))
    failed = 100.0 * np.mean(~np.isfinite(estimates))
    est = estimates[np.isfinite(estimates)]
    bias = 100.0 * (est.mean() - r2star) / r2star
    ratio = float(np.sqrt(np.mean((est - r2star) ** 2))) / crlb
    return CellAccuracy(crlb, bias, ratio, failed)


def quiet_fit(model: DecayModel, data: np.ndarray, **kwargs) -> DecayFit:
    """``model.fit(data, **kwargs)`` without its warnings (failures are counted instead)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        return model.fit(data, **kwargs)


def seeded_cells(*axes: Iterable) -> Iterator[tuple]:
    """``(seed, value_1, value_2, ...)`` for every combination of the axes' values, the last
    axis fastest, with seeds 1, 2, ...: each cell of a benchmark grid draws its own noise, the
    same in every run."""
    for seed, values in enumerate(itertools.product(*axes), start=1):
        yield (seed, *values)


def score_cells(
    estimates: Mapping[str, np.ndarray], r2star: float, snr: float, coils: int
) -> dict[str, CellAccuracy]:
    """:func:`cell_accuracy` of each named set of R2* estimates of one cell (same truth)."""
    return {name: cell_accuracy(est, r2star, snr, coils) for name, est in estimates.items()}
