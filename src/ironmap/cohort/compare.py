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
- **Effect size.** Cohen's d is the estimate over the controls' SD of the corrected R2*, with a
  stratified (site x arm) percentile bootstrap CI.
- **Omnibus.** ``phenotype-omnibus``: robust Wald F-test that RRMS, SPMS and PPMS share one
  mean (``statistic``, ``df_num``, ``df_den``).
- **Sensitivity.** :func:`compare_groups_mixed` refits each contrast with a random site
  intercept (statsmodels MixedLM, REML) instead of the fixed site effect.

p-values are Benjamini-Hochberg-adjusted across regions within each contrast (one family per
contrast, pre-specified).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from ..errors import IronmapWarning
from .stats import fdr

__all__ = [
    "COMPARISON_COLUMNS",
    "CONTRASTS",
    "MIXED_COLUMNS",
    "OMNIBUS",
    "compare_groups",
    "compare_groups_mixed",
    "group_label",
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
]

MS_LABELS = ("RRMS", "SPMS", "PPMS", "MS")  # "MS": clinically definite, phenotype not given
#: contrast -> (labels of arm a, labels of arm b); a label is HC or the MS phenotype.
CONTRASTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MS-HC": (MS_LABELS, ("HC",)),
    "RRMS-HC": (("RRMS",), ("HC",)),
    "SPMS-HC": (("SPMS",), ("HC",)),
    "PPMS-HC": (("PPMS",), ("HC",)),
    "CIS-HC": (("CIS",), ("HC",)),
    "progressive-RRMS": (("SPMS", "PPMS"), ("RRMS",)),
    "SPMS-PPMS": (("SPMS",), ("PPMS",)),
}
OMNIBUS = "phenotype-omnibus"
_PHENOTYPES = ("RRMS", "SPMS", "PPMS")
_KEY = "C(arm, Treatment('b'))[T.a]"
N_BOOTSTRAP = 1000
_CHUNK = 250  # bootstrap resamples per matrix product
MIN_RESIDUAL_DF = 2


def group_label(group: pd.Series, phenotype: pd.Series) -> pd.Series:
    """``HC``, the MS phenotype, or ``MS`` where an MS participant's phenotype is missing."""
    label = phenotype.astype(object).where(phenotype.notna(), "MS")
    return label.where(group != "HC", "HC")


def _formula(part: pd.DataFrame, arm: str = "C(arm, Treatment('b'))") -> str:
    terms = [arm]
    if "age" in part and part["age"].std() > 0:
        terms.append("age")  # residual age: the control curve's own error, shared by age
    if part["sex"].nunique() > 1:
        terms.append("C(sex)")
    if part["site"].nunique() > 1:
        terms.append("C(site)")
    return "y ~ " + " + ".join(terms)


def _effective(part: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Participants with an outcome at sites holding both arms; the sites holding only one."""
    part = part[np.isfinite(part["y"])]
    arms = part.groupby("site")["arm"].nunique()
    shared = arms.index[arms == 2]
    return part[part["site"].isin(shared)], sorted(arms.index[arms < 2])


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


def _bootstrap_d(part: pd.DataFrame, model, sd_b: bool, seed: int, n_boot: int):
    """Cohen's d numerator (and SD) over a site x arm stratified bootstrap.

    A resample is a vector of counts (how often each participant is drawn, multinomial within
    its site x arm cell), so each resample's least squares comes from weighted sums of
    ``x x'`` and ``x y``: one matrix product for all resamples, memory O(n p^2 + chunk n),
    time linear in n. ``model`` is the contrast's statsmodels OLS model (its design is
    reused); ``sd_b``: the SD in the denominator is that of arm b (controls), and is resampled
    too.
    """
    x, y = model.exog, model.endog
    n, p = x.shape
    col = model.exog_names.index(_KEY)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n))
    for members in part.groupby(["site", "arm"]).indices.values():
        m = len(members)
        counts[:, members] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    xx = (x[:, :, None] * x[:, None, :]).reshape(n, p * p)
    xy = x * y[:, None]
    beta = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        w = counts[start : start + _CHUNK]
        xtx = (w @ xx).reshape(len(w), p, p)
        beta[start : start + len(w)] = (np.linalg.pinv(xtx) @ (w @ xy)[:, :, None])[:, col, 0]
    sd = np.full(n_boot, np.nan)
    if sd_b:
        is_b = (part["arm"] == "b").to_numpy()  # resampling within cells keeps each arm
        wb, yb, k = counts[:, is_b], y[is_b], is_b.sum()
        mean = wb @ yb / k
        sd = np.sqrt(np.maximum(wb @ (yb - yb.mean()) ** 2 / k - (mean - yb.mean()) ** 2, 0))
        sd *= np.sqrt(k / (k - 1))
    return beta, sd


def _nan_row(region, contrast, n_a, n_b, note, model="") -> dict:
    return {
        "region": region,
        "contrast": contrast,
        "n_a": n_a,
        "n_b": n_b,
        "note": note,
        "model": model,
    }


def _contrast(region, contrast, part, sd_hc, *, seed, n_boot) -> dict:
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
        boot, boot_sd = _bootstrap_d(effective, result.model, b_labels == ("HC",), seed, n_boot)
        scale = boot_sd if b_labels == ("HC",) else sd_hc
        d_low, d_high = np.nanpercentile(boot / scale, [2.5, 97.5])
    missing = int((~np.isfinite(part["y"])).sum())
    parts = [f"{excluded - missing} at sites without the other arm ({', '.join(lonely)})"]
    if missing:
        parts.append(
            f"{missing} without harmonised R2* (no R2*, or no control with it at the site)"
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


def _arms(sub: pd.DataFrame, contrast: str) -> pd.DataFrame:
    a, b = CONTRASTS[contrast]
    arm = np.where(sub["label"].isin(a), "a", np.where(sub["label"].isin(b), "b", None))
    return sub.assign(arm=arm).dropna(subset=["arm"])


def _prepare(data: pd.DataFrame, outcome: str) -> pd.DataFrame:
    data = data.dropna(subset=["sex", "site"])
    return data.assign(y=data[outcome], label=group_label(data["group"], data["phenotype"]))


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
        Seed of the bootstrap.
    n_bootstrap : int
        Bootstrap resamples for the CI of Cohen's d (0: no CI).
    """
    rows = []
    unidentifiable: dict[str, str] = {}
    for region, sub in _prepare(data, outcome).groupby("region", sort=False):
        sd_hc = float(sub.loc[sub["label"] == "HC", "y"].std(ddof=1))  # NaN skipped
        for contrast in CONTRASTS:
            part = _arms(sub, contrast)
            if part["arm"].nunique() < 2:
                continue  # nobody at all in an arm: the contrast does not exist in this cohort
            row = _contrast(region, contrast, part, sd_hc, seed=seed, n_boot=n_bootstrap)
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
    return table


def compare_groups_mixed(data: pd.DataFrame, *, outcome: str = "r2star_corrected") -> pd.DataFrame:
    """Sensitivity analysis: each contrast with a random site intercept (MixedLM, REML).

    Same participants as :func:`compare_groups` (sites holding both arms); ``site_sd`` is the
    SD of the random site intercept (1/s).
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
            converged = bool(result.converged)
            low, high = result.conf_int().loc[_KEY]
            rows.append(
                {
                    "region": region,
                    "contrast": contrast,
                    "estimate": float(result.params[_KEY]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "p": float(result.pvalues[_KEY]),
                    "n_a": n_a,
                    "n_b": n_b,
                    "site_sd": float(np.sqrt(max(result.cov_re.iloc[0, 0], 0.0))),
                    "converged": converged,
                    "model": formula.replace("C(arm, Treatment('b'))", "group") + " + (1 | site)",
                }
            )
    table = pd.DataFrame(rows).reindex(columns=MIXED_COLUMNS)
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("contrast").groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return table
