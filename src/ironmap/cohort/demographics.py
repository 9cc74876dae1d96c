"""Table 1's statistics: quartiles on a variable's own scale and the between-group tests.

The report (:func:`ironmap.report.tables.table1`) only formats what these return.

- Quartiles of an ordinal score (EDSS, 0.5-point steps) are observed values: the inverted
  empirical distribution function (:data:`ORDINAL_QUANTILE`, Hyndman & Fan type 1), never an
  interpolation such as 2.9 on a 0.5-step scale. Continuous variables use numpy's default
  (linear interpolation, type 7).
- Between-group tests, controls against all clinically definite MS (:data:`MS_LABELS`; CIS is
  not pooled in, as in Table 2's MS-HC): age and NBV by Welch's t-test (unequal variances), sex
  by the chi-square test of the group x sex contingency table (Yates-corrected for a 2 x 2
  table, :func:`scipy.stats.chi2_contingency`'s default), or Fisher's exact test for a 2 x 2
  table with an expected count below 5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .compare import MS_LABELS, group_label

__all__ = [
    "ALL_MS",
    "GROUP_TEST_COLUMNS",
    "MIN_EXPECTED",
    "ORDINAL_QUANTILE",
    "group_tests",
    "quartiles",
]

#: Label of the pooled clinically definite MS arm (CIS not pooled in, as in MS-HC).
ALL_MS = "MS (all)"

#: numpy quantile method of ordinal scores: an observed value (Hyndman & Fan type 1).
ORDINAL_QUANTILE = "inverted_cdf"
#: Smallest expected count of a 2 x 2 sex table tested by chi-square (else Fisher's exact).
MIN_EXPECTED = 5
#: Columns of :func:`group_tests`.
GROUP_TEST_COLUMNS = ["variable", "arm_a", "arm_b", "n_a", "n_b", "test", "statistic", "df", "p"]


def quartiles(values: pd.Series, *, ordinal: bool = False) -> tuple[float, float, float]:
    """First quartile, median and third quartile of the non-missing ``values``.

    Parameters
    ----------
    values : pandas.Series, shape (n,)
    ordinal : bool
        An ordinal score (EDSS): quartiles are observed values (:data:`ORDINAL_QUANTILE`).

    Returns
    -------
    tuple of float
        ``(q1, median, q3)``; NaN for no values.
    """
    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    method = ORDINAL_QUANTILE if ordinal else "linear"
    q1, q2, q3 = np.quantile(x, [0.25, 0.5, 0.75], method=method)
    return (float(q1), float(q2), float(q3))


def _welch(variable: str, a: pd.Series, b: pd.Series) -> dict | None:
    a, b = a.dropna().astype(float), b.dropna().astype(float)
    if len(a) < 2 or len(b) < 2:
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)  # (nearly) constant: no test
        result = stats.ttest_ind(a, b, equal_var=False)
    if caught or not np.isfinite(result.pvalue):
        return None
    return {
        "variable": variable,
        "n_a": len(a),
        "n_b": len(b),
        "test": "Welch t-test",
        "statistic": float(result.statistic),
        "df": float(result.df),
        "p": float(result.pvalue),
    }


def _sex(a: pd.Series, b: pd.Series) -> dict | None:
    a, b = a.dropna(), b.dropna()
    levels = sorted(set(a) | set(b))
    if len(a) == 0 or len(b) == 0 or len(levels) < 2:
        return None
    counts = np.array([[int((s == v).sum()) for v in levels] for s in (a, b)])
    row = {"variable": "sex", "n_a": len(a), "n_b": len(b)}
    if counts.shape == (2, 2) and (stats.contingency.expected_freq(counts) < MIN_EXPECTED).any():
        result = stats.fisher_exact(counts)
        fisher = {"test": "Fisher exact", "statistic": np.nan, "df": np.nan}
        return row | fisher | {"p": float(result.pvalue)}
    chi2, p, dof, _ = stats.chi2_contingency(counts)
    test = "chi-square, Yates-corrected" if counts.shape == (2, 2) else "chi-square"
    return row | {"test": test, "statistic": float(chi2), "df": float(dof), "p": float(p)}


def group_tests(subjects: pd.DataFrame) -> pd.DataFrame:
    """Controls against all clinically definite MS: age, sex and NBV (module docstring).

    Parameters
    ----------
    subjects : pandas.DataFrame
        The analysed participants: ``group``, ``phenotype``, ``age`` (years), ``sex``
        (``M``/``F``/``O``), ``nbv`` (fraction of ICV; optional).

    Returns
    -------
    pandas.DataFrame
        :data:`GROUP_TEST_COLUMNS`, one row per variable that could be tested (two arms with
        at least two values each, not constant): ``arm_a`` ``HC``, ``arm_b`` :data:`ALL_MS`;
        ``statistic`` Welch's t (HC minus MS) or chi-square, NaN for Fisher's exact test;
        ``df`` Welch's (Satterthwaite) or the chi-square's degrees of freedom.
    """
    label = group_label(subjects["group"], subjects["phenotype"])
    hc, ms = subjects[label == "HC"], subjects[label.isin(MS_LABELS)]
    rows = [
        _welch("age", hc["age"], ms["age"]),
        _sex(hc["sex"], ms["sex"]),
        _welch("nbv", hc["nbv"], ms["nbv"]) if "nbv" in subjects else None,
    ]
    table = pd.DataFrame([r for r in rows if r is not None], columns=GROUP_TEST_COLUMNS)
    return table.assign(arm_a="HC", arm_b=ALL_MS)
