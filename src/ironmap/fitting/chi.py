"""Maximum-likelihood fit of a truncated central chi distribution to background magnitudes.

The background of a root-sum-of-squares image of ``N`` receive channels is ``sigma chi_2N``
(``N = 1``: Rayleigh). :func:`fit_truncated_chi` fits ``(N, sigma)`` to the magnitudes between
two cutoffs, exactly accounting for the truncation, and :func:`ks_distance` measures how well the
fitted distribution describes them. Integer-valued magnitudes are intervals ``[k - 1/2, k + 1/2)``
(:func:`level_counts` counts them). Used by :mod:`.background` (the accepted estimate) and
:mod:`.misfit` (the rough level of a region that is not trusted as background).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

__all__ = [
    "COILS_RANGE",
    "KS_SAMPLE",
    "MAX_KS_DISTANCE",
    "fit_truncated_chi",
    "ks_distance",
    "level_counts",
]

#: Accept the fitted chi distribution if the Kolmogorov distance to the data is below this.
MAX_KS_DISTANCE = 0.05
#: Values the Kolmogorov distance of continuous data is computed on (an evenly strided sample).
KS_SAMPLE = 200_000
#: Effective channel counts the fit may return.
COILS_RANGE = (0.5, 512.0)


def level_counts(values: NDArray[np.floating]) -> tuple[NDArray, NDArray[np.int64]]:
    """``(levels, counts)`` of integer-valued magnitudes, as ``np.unique(return_counts=True)``
    gives them, by counting (no sort) when the levels are small enough to index."""
    if values.size and float(values.min()) >= 0 and float(values.max()) < 2**20:
        counts = np.bincount(values.astype(np.int64))
        levels = np.flatnonzero(counts)
        return levels.astype(values.dtype), counts[levels]
    return np.unique(values, return_counts=True)


def fit_truncated_chi(
    values: NDArray[np.float64], lower: float, upper: float, quantised: bool
) -> tuple[float, float, float] | None:
    """ML ``(N, sigma, Kolmogorov distance)`` of ``sigma chi_2N`` truncated to (lower, upper)."""
    m2 = float(np.mean(values**2))
    m4 = float(np.mean(values**4))
    if quantised:  # Sheppard's corrections for unit bins
        m2, m4 = m2 - 1.0 / 12.0, m4 - 0.5 * m2 + 7.0 / 240.0
    var = m4 - m2 * m2
    coils0 = float(np.clip(m2 * m2 / var, *COILS_RANGE)) if var > 0 and m2 > 0 else 1.0
    sigma0 = math.sqrt(max(m2, 1e-300) / (2.0 * coils0))
    if quantised:
        levels, counts = level_counts(values)
        lo_edges, hi_edges = levels - 0.5, levels + 0.5

        def nll(p: NDArray[np.float64]) -> float:
            k, s = 2.0 * math.exp(p[0]), math.exp(p[1])
            cdf = special.gammainc(0.5 * k, 0.5 * (np.array([lower, upper]) / s) ** 2)
            mass = special.gammainc(0.5 * k, 0.5 * (hi_edges / s) ** 2) - special.gammainc(
                0.5 * k, 0.5 * (lo_edges / s) ** 2
            )
            norm = cdf[1] - cdf[0]
            if not norm > 0:
                return math.inf
            # A level the model gives no mass (an outlier) costs a lot, but finitely.
            mass = np.maximum(mass, 1e-300)
            return float(-(counts @ np.log(mass)) + counts.sum() * math.log(norm))

    else:
        n = values.size
        s_log = float(np.sum(np.log(values)))
        s_sq = float(np.sum(values**2))

        def nll(p: NDArray[np.float64]) -> float:
            k, log_s = 2.0 * math.exp(p[0]), p[1]
            s = math.exp(log_s)
            cdf = special.gammainc(0.5 * k, 0.5 * (np.array([lower, upper]) / s) ** 2)
            norm = cdf[1] - cdf[0]
            if norm <= 0:
                return math.inf
            loglik = (
                (k - 1.0) * (s_log - n * log_s)
                - 0.5 * s_sq / (s * s)
                - n * ((0.5 * k - 1.0) * math.log(2.0) + special.gammaln(0.5 * k) + log_s)
                - n * math.log(norm)
            )
            return -loglik if math.isfinite(loglik) else math.inf

    lo_p, hi_p = math.log(COILS_RANGE[0]), math.log(COILS_RANGE[1])
    with np.errstate(all="ignore"):
        result = optimize.minimize(
            nll,
            x0=np.array([math.log(coils0), math.log(sigma0)]),
            method="Nelder-Mead",
            bounds=[(lo_p, hi_p), (None, None)],
            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000},
        )
        if not np.all(np.isfinite(result.x)) or not math.isfinite(result.fun):
            return None
        coils, sigma = math.exp(result.x[0]), math.exp(result.x[1])
        ks = ks_distance(values, lower, upper, coils, sigma, quantised)
    if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(ks)):
        return None
    return coils, sigma, ks


def ks_distance(
    values: NDArray[np.float64],
    lower: float,
    upper: float,
    coils: float,
    sigma: float,
    quantised: bool,
) -> float:
    """Kolmogorov distance between the values and the truncated chi CDF (at level edges)."""
    if quantised:
        levels, counts = level_counts(values)
        points = levels + 0.5
        empirical = np.cumsum(counts) / counts.sum()
    else:
        # An evenly strided sample of at most 200 000 values: its distance differs from the
        # full one by about 0.002, far below the acceptance limit, at a fraction of the sort.
        ordered = np.sort(values[:: max(1, values.size // KS_SAMPLE)])
        points = ordered[:: max(1, ordered.size // 20000)]
        empirical = np.searchsorted(ordered, points, side="right") / ordered.size
    cdf = special.gammainc(coils, 0.5 * (np.concatenate([[lower, upper], points]) / sigma) ** 2)
    model = (cdf[2:] - cdf[0]) / (cdf[1] - cdf[0])
    return float(np.max(np.abs(empirical - model)))
