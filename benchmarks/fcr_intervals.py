"""Do the forest plot's FCR-adjusted intervals keep their promise, and agree with its marks?

The report's forest plot (Figure 3) fills a point when the primary model's ``p_fdr`` < 0.05 and
draws ``std_ci_low_fcr`` .. ``std_ci_high_fcr`` of ``group/determinants.tsv``: false-coverage-
rate adjusted intervals (Benjamini & Yekutieli 2005; :func:`ironmap.cohort.stats.fcr_intervals`).
This benchmark measures, over seeded replicates of a family shaped like the determinants
(11 outcomes x 4 correlated clinical predictors, n = 97 patients, ordinary least squares with
statsmodels):

- the false coverage rate of the adjusted intervals: the share of the selected (BH at q = 0.05)
  intervals that miss the true coefficient, averaged over replicates (promise: <= 0.05);
- the same for unadjusted 95 % intervals of the selected tests (what the plot drew before
  issue 25): selection makes them miss more often;
- the share of tests whose adjusted interval excludes 0 exactly when the point is filled
  (must be 1.0: one significance convention).

The data are not generated from the intervals' assumptions alone: the predictors are
correlated (r 0.5-0.8, as disease duration, EDSS and atrophy are) and the residuals are
heavy-tailed (t with 5 df), which the t intervals do not assume.

Run: ``python benchmarks/fcr_intervals.py [--reps 400]`` (about 30 s at 400 replicates).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ironmap.cohort.stats import ALPHA, fcr_intervals

N_PATIENTS = 97
N_OUTCOMES = 11
N_PREDICTORS = 4
#: Predictor correlation (duration, EDSS, lesion load, atrophy-like): collinear, not extreme.
CORRELATION = np.array(
    [
        [1.0, 0.8, 0.6, -0.6],
        [0.8, 1.0, 0.5, -0.5],
        [0.6, 0.5, 1.0, -0.5],
        [-0.6, -0.5, -0.5, 1.0],
    ]
)
#: Scenario -> how many of the 44 coefficients are non-zero (standardised effect 0.35).
SCENARIOS = {"all null": 0, "sparse (4 of 44)": 4, "half (22 of 44)": 22}
EFFECT = 0.35


def _replicate(rng: np.random.Generator, truth: np.ndarray) -> dict[str, float]:
    """One family: 11 regressions, 44 tests; false coverage and agreement of the marks."""
    chol = np.linalg.cholesky(CORRELATION)
    estimates, ses, dfs, ps = [], [], [], []
    for outcome in range(N_OUTCOMES):
        x = rng.standard_normal((N_PATIENTS, N_PREDICTORS)) @ chol.T
        noise = rng.standard_t(5, N_PATIENTS) / np.sqrt(5 / 3)  # unit variance, heavy tails
        y = x @ truth[outcome] + noise
        fit = sm.OLS(y, sm.add_constant(x)).fit()
        estimates.append(fit.params[1:])
        ses.append(fit.bse[1:])
        dfs.append(np.full(N_PREDICTORS, fit.df_resid))
        ps.append(fit.pvalues[1:])
    estimate, se, df, p = (np.concatenate(a) for a in (estimates, ses, dfs, ps))
    beta = truth.ravel()
    selected = multipletests(p, alpha=ALPHA, method="fdr_bh")[0]
    low, high, level = fcr_intervals(estimate, se, df, p, q=ALPHA)
    half95 = stats.t.ppf(0.975, df) * se
    miss_fcr = (beta < low) | (beta > high)
    miss_95 = (beta < estimate - half95) | (beta > estimate + half95)
    r = max(int(selected.sum()), 1)
    excludes = (low > 0) | (high < 0)
    return {
        "R": float(selected.sum()),
        "level": level,
        "fcr_adjusted": float((miss_fcr & selected).sum()) / r,
        "fcr_unadjusted": float((miss_95 & selected).sum()) / r,
        "agree": float(np.mean(excludes == selected)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400, help="replicates per scenario")
    parser.add_argument("--seed", type=int, default=2505)
    args = parser.parse_args()
    start = time.perf_counter()
    print(
        f"{N_OUTCOMES} outcomes x {N_PREDICTORS} predictors (m = 44), n = {N_PATIENTS}, "
        f"q = {ALPHA}, residuals t(5), {args.reps} replicates per scenario"
    )
    header = (
        f"{'scenario':<18} {'mean R':>7} {'mean level':>11} {'FCR adjusted':>13} "
        f"{'FCR unadjusted 95%':>19} {'marks = CI excl. 0':>19}"
    )
    print(header)
    print("-" * len(header))
    for k, (name, nonzero) in enumerate(SCENARIOS.items()):
        rng = np.random.default_rng(args.seed + k)
        truth = np.zeros(N_OUTCOMES * N_PREDICTORS)
        truth[rng.choice(truth.size, nonzero, replace=False)] = EFFECT
        truth = truth.reshape(N_OUTCOMES, N_PREDICTORS)
        rows = [_replicate(rng, truth) for _ in range(args.reps)]
        mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        print(
            f"{name:<18} {mean['R']:>7.2f} {mean['level']:>11.4f} "
            f"{mean['fcr_adjusted']:>13.4f} {mean['fcr_unadjusted']:>19.4f} "
            f"{mean['agree']:>19.4f}"
        )
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
