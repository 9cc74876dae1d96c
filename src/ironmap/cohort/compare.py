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
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from ..errors import IronmapWarning
from .stats import ALPHA, fdr

__all__ = [
    "COMPARISON_COLUMNS",
    "CONTRASTS",
    "FAMILIES",
    "MIXED_COLUMNS",
    "OMNIBUS",
    "cohens_d_interval",
    "compare_groups",
    "compare_groups_mixed",
    "group_label",
    "hierarchy",
]
#: Columns :func:`hierarchy` adds (after the existing ones) to both comparison tables.
HIERARCHY_COLUMNS = ["family", "gate", "gate_open", "significant"]

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
#: Share of a contrast's participants older or younger than every control above which its
#: age correction is an extrapolation of the controls' curve: the row keeps its numbers, says
#: so in ``note`` and is never marked significant. In ``benchmarks/harmonize_stress.py``
#: (design ``older``: every patient older than the controls) p < 0.05 in 22 % of null
#: regions and the planted effect comes out at 40 %; no covariate can repair a contrast whose
#: arms do not share ages.
MAX_OUTSIDE_AGE_SHARE = 0.2

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
#: contrast -> (family, gate): the contrast whose significance in the same region opens the
#: test ("" for the primary family). Serial gatekeeping: with every gate rooted in MS-HC, a
#: null cohort shows a significant row only if MS-HC shows one (at most ALPHA: BH across
#: regions holds the familywise rate under the complete null).
FAMILIES: dict[str, tuple[str, str]] = {
    "MS-HC": ("primary", ""),
    "RRMS-HC": ("versus-HC", "MS-HC"),
    "SPMS-HC": ("versus-HC", "MS-HC"),
    "PPMS-HC": ("versus-HC", "MS-HC"),
    "CIS-HC": ("versus-HC", "MS-HC"),
    OMNIBUS: ("omnibus", "MS-HC"),
    "progressive-RRMS": ("between-phenotype", OMNIBUS),
    "SPMS-PPMS": ("between-phenotype", OMNIBUS),
}
_NOT_CONVERGED = "REML fit did not converge: not marked significant"
N_BOOTSTRAP = 1000  # kept for callers: any non-zero n_bootstrap asks for the CI of Cohen's d
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


def hierarchy(table: pd.DataFrame, *, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mark each row ``significant`` under the serial gatekeeping of :data:`FAMILIES`.

    A row is significant when its ``p_fdr`` < :data:`~ironmap.cohort.stats.ALPHA`, its fit
    converged (where the table has ``converged``), and its gate is open: the gating contrast
    is significant in the same region (the primary family, MS-HC, has no gate). A gate absent
    from ``table`` is looked up in ``reference`` (the mixed table takes the phenotype
    omnibus from the primary table); absent from both, it is closed.

    Parameters
    ----------
    table : pandas.DataFrame
        ``region, contrast, p_fdr`` (+ ``converged``), one row per region x contrast.
    reference : pandas.DataFrame, optional
        A table already marked (``region, contrast, significant``).

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``family``, ``gate`` (the gating contrast, "" for the primary),
        ``gate_open`` and ``significant`` (booleans) set.
    """
    table = table.copy()
    known = table["contrast"].map(lambda c: c in FAMILIES)
    if not known.all():
        raise ValueError(f"no family for contrast(s) {sorted(set(table.loc[~known, 'contrast']))}")
    table["family"] = table["contrast"].map(lambda c: FAMILIES[c][0])
    table["gate"] = table["contrast"].map(lambda c: FAMILIES[c][1])
    passed = np.array(table["p_fdr"].lt(ALPHA), dtype=bool)
    if "converged" in table:  # True, or "True" as read back from a TSV
        passed &= np.array(table["converged"].astype(str).eq("True"), dtype=bool)
    passed &= ~extrapolated(table)
    marks: dict[tuple[str, str], bool] = {}
    if reference is not None and len(reference):
        marks = {
            (r, c): bool(s)
            for r, c, s in zip(
                reference["region"], reference["contrast"], reference["significant"], strict=True
            )
        }
    gate_open = np.zeros(len(table), bool)
    significant = np.zeros(len(table), bool)
    # gates before the rows they open: primary, then its children, then theirs
    order = {"": 0, "MS-HC": 1, OMNIBUS: 2}
    for i in sorted(range(len(table)), key=lambda i: order[table["gate"].iat[i]]):
        region, gate = table["region"].iat[i], table["gate"].iat[i]
        gate_open[i] = gate == "" or marks.get((region, gate), False)
        significant[i] = gate_open[i] and passed[i]
        marks[(region, table["contrast"].iat[i])] = bool(significant[i])
    table["gate_open"] = gate_open
    table["significant"] = significant
    return table


def extrapolated(table: pd.DataFrame) -> np.ndarray:
    """Rows whose participants lie outside the controls' ages in more than
    :data:`MAX_OUTSIDE_AGE_SHARE` (False where ``n_outside_age`` is absent), shape (rows,)."""
    if "n_outside_age" not in table:
        return np.zeros(len(table), bool)
    n = pd.to_numeric(table["n_a"], errors="coerce") + pd.to_numeric(table["n_b"], errors="coerce")
    outside = pd.to_numeric(table["n_outside_age"], errors="coerce").fillna(0)
    return np.array(outside > MAX_OUTSIDE_AGE_SHARE * n, dtype=bool)


def _outside_age(table: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """``n_outside_age`` per row from ``data['age_support']`` (absent: 0) and its note."""
    if "age_support" not in data:
        table["n_outside_age"] = 0
        return table
    outside = data[(data["age_support"] == "outside") & np.isfinite(data["y"])]
    counts = []
    for region, contrast in zip(table["region"], table["contrast"], strict=True):
        sub = outside[outside["region"] == region]
        labels = (
            set(_PHENOTYPES)
            if contrast == OMNIBUS
            else {*CONTRASTS[contrast][0], *CONTRASTS[contrast][1]}
        )
        counts.append(int(sub["label"].isin(labels).sum()))
    table["n_outside_age"] = counts
    flagged = extrapolated(table)
    note = (
        f"more than {100 * MAX_OUTSIDE_AGE_SHARE:.0f} % of the participants older or younger "
        "than every control: age correction extrapolated, not marked significant"
    )
    table.loc[flagged, "note"] = [
        f"{n}; {note}" if n else note for n in table.loc[flagged, "note"].astype(str)
    ]
    return table


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
