"""Sensitivity analysis of the group comparisons: each contrast with a random site intercept
(:func:`compare_groups_mixed`; MixedLM, inference from the feasible-GLS fit with HC3 SE and
Bell-McCaffrey degrees of freedom). Moved from :mod:`.compare`, unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from .contrasts import _KEY, CONTRASTS, _arms, _effective, _formula, _outside_age, _prepare
from .multiplicity import HIERARCHY_COLUMNS, hierarchy
from .stats import fdr

__all__ = [
    "MIXED_COLUMNS",
    "bell_mccaffrey_df",
    "compare_groups_mixed",
]

MIXED_COLUMNS = [
    "region",
    "contrast",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "n_a",
    "n_b",
    "site_sd",
    "converged",
    "model",
    "se",
    "se_type",
    "df",
    "note",
    *HIERARCHY_COLUMNS,
    "n_outside_age",
]


_NOT_CONVERGED = "REML fit did not converge: not marked significant"


def _gls_robust(result):
    """The random-intercept fit's fixed effects as OLS on quasi-demeaned data, HC3 SE.

    With site variance ``tau2`` and residual variance ``sigma2`` (REML), each site's rows are
    transformed by ``V^(-1/2)``: ``y - theta_s mean_s(y)`` (and so the design), with
    ``theta_s = 1 - sqrt(sigma2 / (sigma2 + n_s tau2))``; least squares on the transformed rows
    is the GLS (MixedLM) estimate. HC3 on them keeps the heteroscedasticity the model assumes
    away (a small, more variable phenotype) from shrinking the SE, and the t reference with the
    residual df replaces MixedLM's z.
    """
    import statsmodels.api as sm

    model = result.model
    groups = pd.Series(model.groups)
    x, y = np.asarray(model.exog, float), np.asarray(model.endog, float)
    sigma2, tau2 = float(result.scale), max(float(result.cov_re.iloc[0, 0]), 0.0)
    n_s = groups.map(groups.value_counts()).to_numpy(float)
    theta = 1.0 - np.sqrt(sigma2 / (sigma2 + n_s * tau2))
    site_x = pd.DataFrame(x).groupby(groups.to_numpy()).transform("mean").to_numpy()
    site_y = pd.Series(y).groupby(groups.to_numpy()).transform("mean").to_numpy()
    xt = pd.DataFrame(x - theta[:, None] * site_x, columns=model.exog_names)
    yt = y - theta * site_y
    ols = sm.OLS(yt, xt)
    plain = ols.fit()
    hat = plain.get_influence().hat_matrix_diag
    cov = "HC3" if np.all(hat < 1 - 1e-8) else "HC1"
    return ols.fit(cov_type=cov, use_t=True), cov


def bell_mccaffrey_df(exog: np.ndarray, column: int) -> float:
    """Bell-McCaffrey degrees of freedom of one coefficient's robust t statistic.

    Satterthwaite's approximation for the HC2 variance of coefficient ``column`` under a
    homoscedastic working model (Bell and McCaffrey 2002; Imbens and Kolesar 2016): with
    ``g = X (X'X)^-1 e_column``, ``M = I - H`` and ``D = diag(g^2 / (1 - h))``, the variance
    estimate is ``eps' A eps`` with ``A = M D M``, and ``df = tr(A)^2 / tr(A^2)``. It is small
    when a few participants (a small arm) carry the estimate, where the residual df would
    make the t reference too narrow.

    Parameters
    ----------
    exog : ndarray, shape (n, k)
        The design (here: the quasi-demeaned rows of :func:`_gls_robust`).
    column : int
        The coefficient.
    """
    x = np.asarray(exog, dtype=np.float64)
    inverse = np.linalg.pinv(x.T @ x)
    hat = np.einsum("ij,jk,ik->i", x, inverse, x)
    d = (x @ inverse[:, column]) ** 2 / np.clip(1.0 - hat, 1e-8, None)
    # without the n x n matrix M: tr(A) = sum d (1 - h), and with B = X' D X,
    # tr(A^2) = sum d^2 (1 - 2 h) + tr((X'X)^-1 B (X'X)^-1 B)
    wb = inverse @ (x.T * d) @ x
    trace = np.sum(d * (1.0 - hat))
    trace_sq = np.sum(d**2 * (1.0 - 2.0 * hat)) + np.trace(wb @ wb)
    return float(trace**2 / trace_sq)


def compare_groups_mixed(
    data: pd.DataFrame, *, outcome: str = "r2star_corrected", reference: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Sensitivity analysis: each contrast with a random site intercept (MixedLM, REML).

    Same participants as :func:`compare_groups` (sites holding both arms); ``site_sd`` is the
    SD of the random site intercept (1/s). The estimate is MixedLM's; its SE, CI and p come
    from :func:`_gls_robust` (HC3, t with ``df`` residual degrees of freedom). A fit that did
    not converge keeps its numbers but is never ``significant`` (``note`` says why).

    Parameters
    ----------
    data : pandas.DataFrame
        As for :func:`compare_groups`.
    outcome : str
        Column compared.
    reference : pandas.DataFrame, optional
        The primary table (:func:`compare_groups`): its phenotype omnibus gates the
        between-phenotype rows (:func:`hierarchy`); without it they are never significant.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    rows = []
    for region, sub in _prepare(data, outcome).groupby("region", sort=False):
        for contrast in CONTRASTS:
            part, _ = _effective(_arms(sub, contrast))
            n_a, n_b = int((part["arm"] == "a").sum()), int((part["arm"] == "b").sum())
            if n_a < 2 or n_b < 2 or part["site"].nunique() < 2:
                continue
            formula = _formula(part.assign(site="one"))
            with warnings.catch_warnings():
                # a site variance at its boundary (0) after harmonisation is expected; the
                # fit's own convergence flag is reported
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)
                result = smf.mixedlm(formula, part, groups=part["site"]).fit(
                    reml=True, method=["powell", "cg"]
                )
                robust, cov = _gls_robust(result)
            converged = bool(result.converged)
            key = list(robust.model.exog_names).index(_KEY)
            df = bell_mccaffrey_df(robust.model.exog, key)
            se = float(robust.bse[_KEY])
            half = stats.t.ppf(0.975, df) * se
            low, high = robust.params[_KEY] - half, robust.params[_KEY] + half
            rows.append(
                {
                    "region": region,
                    "contrast": contrast,
                    "estimate": float(result.fe_params[_KEY]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p": float(2 * stats.t.sf(abs(robust.params[_KEY]) / se, df)),
                    "n_a": n_a,
                    "n_b": n_b,
                    "site_sd": float(np.sqrt(max(result.cov_re.iloc[0, 0], 0.0))),
                    "converged": converged,
                    "model": formula.replace("C(arm, Treatment('b'))", "group") + " + (1 | site)",
                    "se": se,
                    "se_type": cov,
                    "df": df,
                    "note": "" if converged else _NOT_CONVERGED,
                }
            )
    table = pd.DataFrame(rows).reindex(columns=MIXED_COLUMNS)
    table["note"] = table["note"].astype(object).where(table["note"].notna(), "")
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("contrast").groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return hierarchy(_outside_age(table, _prepare(data, outcome)), reference=reference)
