"""Group comparisons of harmonised, age-corrected R2*.

Per region and contrast, statsmodels OLS ``R2*_corrected ~ group + age + C(sex) + C(site)`` with
heteroscedasticity-robust (HC3) standard errors and t-based CIs, on the participants of the
two arms at sites that hold both arms (the others carry no information on the contrast once
site is in the model). Age and site location/scale were already removed against the controls
(:mod:`.age`); site and a linear age term stay in the model so that the uncertainty of each
site's correction and of the control age curve, shared by all participants of a site or an
age, cannot be read as a disease effect when patients are concentrated at a few sites or
older than controls (without the age term: false-positive rate 0.11 for progressive-RRMS in
``benchmarks/group_calibration.py``).

- **Identifiability.** A contrast whose arms share no site (e.g. every PPMS patient at a site
  without controls) has no estimate: a NaN row with a ``note`` and one warning. ``n_a`` and
  ``n_b`` count the participants that inform the estimate.
- **Effect size.** Cohen's d is the estimate over the controls' SD of the corrected R2*; its CI
  is the estimate's t-based CI carried through the ratio with the SD's own uncertainty
  (:func:`cohens_d_interval`; the site x arm percentile bootstrap it replaced excluded 0 for a
  null region in 20 % of PPMS-HC contrasts with 12 patients).
- **Omnibus.** ``phenotype-omnibus``: robust Wald F-test that RRMS, SPMS and PPMS share one
  mean (``statistic``, ``df_num``, ``df_den``).
- **Sensitivity.** :func:`compare_groups_mixed` refits each contrast with a random site
  intercept (statsmodels MixedLM, REML) instead of the fixed site effect; its inference is the
  feasible-GLS estimate with HC3 robust SE and a t reference (MixedLM's own Wald z put a bold
  cell in 75 % of null cohorts).
- **Multiplicity.** p-values are Benjamini-Hochberg-adjusted across regions within each
  contrast (``p_fdr``), and :func:`hierarchy` marks a row ``significant`` through a serial
  gatekeeping per region (:data:`FAMILIES`): MS-HC is the pre-specified primary family; a
  phenotype's contrast with the controls, and the phenotype omnibus, count only in a region
  whose MS-HC is significant; the between-phenotype contrasts only where the omnibus is.

By job: :mod:`.contrasts` (the arms, who enters, the formula), :mod:`.multiplicity`
(:func:`hierarchy`), :mod:`.compare_mixed` (:func:`compare_groups_mixed`); their public names
are re-exported here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from ..errors import IronmapWarning
from .compare_mixed import MIXED_COLUMNS, bell_mccaffrey_df, compare_groups_mixed
from .contrasts import (
    _KEY,
    _PHENOTYPES,
    CONTRASTS,
    MAX_OUTSIDE_AGE_SHARE,
    MS_LABELS,
    OMNIBUS,
    _arms,
    _effective,
    _formula,
    _outside_age,
    _prepare,
    extrapolated,
    group_label,
)
from .multiplicity import FAMILIES, HIERARCHY_COLUMNS, hierarchy
from .stats import fdr

__all__ = [
    "COMPARISON_COLUMNS",
    "CONTRASTS",
    "FAMILIES",
    "HIERARCHY_COLUMNS",
    "MAX_OUTSIDE_AGE_SHARE",
    "MIXED_COLUMNS",
    "MS_LABELS",
    "N_BOOTSTRAP",
    "OMNIBUS",
    "bell_mccaffrey_df",
    "cohens_d_interval",
    "compare_groups",
    "compare_groups_mixed",
    "extrapolated",
    "group_label",
    "hierarchy",
]

COMPARISON_COLUMNS = [
    "region",
    "contrast",
    "estimate",
    "ci_low",
    "ci_high",
    "cohens_d",
    "p",
    "p_fdr",
    "n_a",
    "n_b",
    "cohens_d_ci_low",
    "cohens_d_ci_high",
    "se",
    "se_type",
    "statistic",
    "df_num",
    "df_den",
    "n_sites",
    "n_excluded",
    "model",
    "note",
    *HIERARCHY_COLUMNS,
    "n_outside_age",
]


N_BOOTSTRAP = 1000  # kept for callers: any non-zero n_bootstrap asks for the CI of Cohen's d
MIN_RESIDUAL_DF = 2


def _identifiable(result) -> bool:
    exog = result.model.exog
    col = result.model.exog_names.index(_KEY)
    rank = np.linalg.matrix_rank(exog)
    return rank > np.linalg.matrix_rank(np.delete(exog, col, axis=1))


def _fit_robust(formula: str, part: pd.DataFrame):
    """HC3 fit (HC1 where a participant has leverage 1); None without residual df."""
    model = smf.ols(formula, data=part)
    with warnings.catch_warnings():
        # collinear nuisance terms (e.g. sex within a site) are fine; whether the group
        # difference itself is identifiable is checked by _identifiable
        warnings.simplefilter("ignore", SingularMatrixWarning)
        plain = model.fit()
        if plain.df_resid < MIN_RESIDUAL_DF:
            return None, ""
        hat = plain.get_influence().hat_matrix_diag
        cov = "HC3" if np.all(hat < 1 - 1e-8) else "HC1"
        return model.fit(cov_type=cov, use_t=True), cov


def cohens_d_interval(
    d: float, se: float, sd: float, n_sd: int, df: float, *, level: float = 0.95
) -> tuple[float, float]:
    """CI of Cohen's d = estimate / SD from the estimate's t-based CI and the SD's uncertainty.

    Delta method for the ratio of the estimate (standard error ``se``, ``df`` degrees of
    freedom) and an independent sample SD of ``n_sd`` values (``var(SD) ~ SD^2 / (2 (n - 1))``
    under normality): ``d +- t_df se_d`` with ``se_d^2 = (se / SD)^2 + d^2 / (2 (n_sd - 1))``.
    As ``se_d >= se / SD``, the interval excludes 0 only when the estimate's CI does, and at
    ``d = 0`` it is that CI divided by the SD. Coverage at 12 vs 60 (normal data):
    ``tests/test_compare_calibration.py`` and ``benchmarks/group_calibration.py``.

    Parameters
    ----------
    d : float
        Cohen's d (estimate / sd).
    se : float
        Standard error of the estimate (same units as ``sd``, e.g. 1/s).
    sd : float
        The SD in the denominator (the controls').
    n_sd : int
        Values the SD was computed from (>= 2).
    df : float
        Degrees of freedom of the estimate's t reference.
    level : float
        Confidence level.

    Returns
    -------
    low, high : float
        NaN when an input is not finite or ``n_sd < 2``.
    """
    if n_sd < 2 or not all(np.isfinite([d, se, sd, df])) or sd <= 0:
        return np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, df) * np.sqrt((se / sd) ** 2 + d**2 / (2 * (n_sd - 1)))
    return float(d - half), float(d + half)


def _nan_row(region, contrast, n_a, n_b, note, model="") -> dict:
    return {
        "region": region,
        "contrast": contrast,
        "n_a": n_a,
        "n_b": n_b,
        "note": note,
        "model": model,
    }


def _contrast(region, contrast, part, sd_hc, n_hc, *, n_boot) -> dict:
    a_labels, b_labels = CONTRASTS[contrast]
    effective, lonely = _effective(part)
    n_a = int((effective["arm"] == "a").sum())
    n_b = int((effective["arm"] == "b").sum())
    excluded = len(part) - len(effective)
    if n_a == 0 or n_b == 0:
        where = ", ".join(sorted(part.loc[part["arm"] == "a", "site"].unique()))
        unharmonised = np.isfinite(part["y"]).sum() < len(part)
        note = (
            f"not identifiable: no site holds both {'/'.join(a_labels)} and "
            f"{'/'.join(b_labels)} with R2* ({'/'.join(a_labels)} at {where}"
            + ("; R2* not harmonised where a site has no control with it" if unharmonised else "")
            + "): site and group effects cannot be separated"
        )
        return {**_nan_row(region, contrast, n_a, n_b, note), "n_excluded": excluded}
    if n_a < 2 or n_b < 2:
        note = f"fewer than 2 participants in an arm at shared sites ({n_a} vs {n_b})"
        return {**_nan_row(region, contrast, n_a, n_b, note), "n_excluded": excluded}
    formula = _formula(effective)
    result, cov = _fit_robust(formula, effective)
    if result is None:
        design = formula.replace("C(arm, Treatment('b'))", "group")
        note = f"too few participants for the design {design} ({n_a} vs {n_b})"
        return {**_nan_row(region, contrast, n_a, n_b, note), "n_excluded": excluded}
    if not _identifiable(result):
        note = "not identifiable: the group is collinear with sex/site in this design"
        return {**_nan_row(region, contrast, n_a, n_b, note), "n_excluded": excluded}
    low, high = result.conf_int().loc[_KEY]
    estimate = float(result.params[_KEY])
    d_low = d_high = np.nan
    if n_boot:
        d_low, d_high = cohens_d_interval(
            estimate / sd_hc, float(result.bse[_KEY]), sd_hc, n_hc, float(result.df_resid)
        )
    missing = int((~np.isfinite(part["y"])).sum())
    parts = [f"{excluded - missing} at sites without the other arm ({', '.join(lonely)})"]
    if missing:
        parts.append(
            f"{missing} without harmonised R2* (no R2*, fewer voxels than the minimum-voxel "
            "rule, or no control with it at the site)"
        )
    note = "left out: " + "; ".join(p for p in parts if not p.startswith("0 "))
    return {
        "region": region,
        "contrast": contrast,
        "estimate": estimate,
        "ci_low": float(low),
        "ci_high": float(high),
        "cohens_d": estimate / sd_hc,
        "cohens_d_ci_low": float(d_low),
        "cohens_d_ci_high": float(d_high),
        "p": float(result.pvalues[_KEY]),
        "se": float(result.bse[_KEY]),
        "se_type": cov,
        "statistic": float(result.tvalues[_KEY]),
        "df_num": 1.0,
        "df_den": float(result.df_resid),
        "n_a": n_a,
        "n_b": n_b,
        "n_sites": int(effective["site"].nunique()),
        "n_excluded": excluded,
        "model": formula.replace("C(arm, Treatment('b'))", "group"),
        "note": note if excluded else "",
    }


def _omnibus(region: str, sub: pd.DataFrame) -> dict | None:
    part = sub[sub["label"].isin(_PHENOTYPES) & np.isfinite(sub["y"])]
    part = part.assign(phen=part["label"])
    counts = part["phen"].value_counts()
    part = part[part["phen"].isin(counts.index[counts >= 2])]
    if part["phen"].nunique() < 2:
        return None
    part = part.assign(arm=part["phen"])
    sites = part.groupby("site")["phen"].nunique()
    part = part[part["site"].isin(sites.index[sites >= 2])]
    if part["phen"].nunique() < 2:
        note = "not identifiable: no site holds two MS phenotypes"
        return _nan_row(region, OMNIBUS, len(part), 0, note)
    formula = _formula(part, "C(phen)")
    result, cov = _fit_robust(formula, part)
    if result is None:
        return _nan_row(region, OMNIBUS, len(part), 0, "too few participants for the design")
    names = [n for n in result.model.exog_names if n.startswith("C(phen)")]
    test = result.wald_test(", ".join(f"{n} = 0" for n in names), scalar=True)
    return {
        "region": region,
        "contrast": OMNIBUS,
        "p": float(test.pvalue),
        "statistic": float(test.statistic),
        "df_num": float(test.df_num),
        "df_den": float(test.df_denom),
        "se_type": cov,
        "n_a": len(part),
        "n_b": 0,
        "n_sites": int(part["site"].nunique()),
        "model": formula.replace("C(phen)", "phenotype"),
        "note": f"MS phenotypes {', '.join(sorted(part['phen'].unique()))}; n_a = all analysed",
    }


def compare_groups(
    data: pd.DataFrame,
    *,
    outcome: str = "r2star_corrected",
    seed: int = 0,
    n_bootstrap: int = N_BOOTSTRAP,
) -> pd.DataFrame:
    """One row per region x contrast (docs/conventions.md ``group_comparison.tsv`` plus columns).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant x region with ``region``, ``outcome`` (1/s), ``group``,
        ``phenotype``, ``sex``, ``site``. Rows with a missing outcome, sex or site are left
        out (the caller accounts for them).
    outcome : str
        Column compared (default the harmonised, age-corrected R2*).
    seed : int
        Unused (the CI of Cohen's d is no longer bootstrapped); kept for callers.
    n_bootstrap : int
        0: no CI of Cohen's d; otherwise the analytic CI of :func:`cohens_d_interval` (the
        name is kept from the bootstrap it replaced).

    Returns
    -------
    pandas.DataFrame
        :data:`COMPARISON_COLUMNS`, with the hierarchy's marks (:func:`hierarchy`).
    """
    del seed
    rows = []
    unidentifiable: dict[str, str] = {}
    for region, sub in _prepare(data, outcome).groupby("region", sort=False):
        hc = sub.loc[sub["label"] == "HC", "y"]
        sd_hc, n_hc = float(hc.std(ddof=1)), int(np.isfinite(hc).sum())  # NaN skipped
        for contrast in CONTRASTS:
            part = _arms(sub, contrast)
            if part["arm"].nunique() < 2:
                continue  # nobody at all in an arm: the contrast does not exist in this cohort
            row = _contrast(region, contrast, part, sd_hc, n_hc, n_boot=n_bootstrap)
            if str(row.get("note", "")).startswith("not identifiable"):
                unidentifiable.setdefault(contrast, row["note"])
            rows.append(row)
        omnibus = _omnibus(region, sub)
        if omnibus is not None:
            rows.append(omnibus)
    for contrast, note in unidentifiable.items():
        warnings.warn(f"{contrast}: {note}; reported as NaN", IronmapWarning, stacklevel=2)
    table = pd.DataFrame(rows).reindex(columns=COMPARISON_COLUMNS)
    for col in ("n_a", "n_b", "n_sites", "n_excluded"):
        table[col] = table[col].fillna(0).astype(int)
    table["note"] = table["note"].astype(object).where(table["note"].notna(), "")
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("contrast").groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return hierarchy(_outside_age(table, _prepare(data, outcome)))
