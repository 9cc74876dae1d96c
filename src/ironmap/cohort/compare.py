"""Group comparisons of regional R2*: MS and each phenotype against controls, progressive
against relapsing-remitting MS.

Per region and contrast, statsmodels OLS ``R2* ~ C(group) + age + C(sex) + C(site)`` on the
participants of the two groups: the group coefficient is the difference of means adjusted for
age, sex and site. Site enters as a fixed effect, so a scanner offset at a site that recruited
mostly patients is not read as a disease effect: groups are compared within sites. Cohen's d is
the estimate over the residual SD; p-values are FDR-corrected across regions per contrast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from .stats import fdr

__all__ = ["COMPARISON_COLUMNS", "CONTRASTS", "compare_groups"]

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
    "model",
]

#: contrast -> (members of a, members of b), by group or phenotype.
CONTRASTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MS-HC": (("MS",), ("HC",)),
    "RRMS-HC": (("RRMS",), ("HC",)),
    "SPMS-HC": (("SPMS",), ("HC",)),
    "PPMS-HC": (("PPMS",), ("HC",)),
    "progressive-RRMS": (("SPMS", "PPMS"), ("RRMS",)),
}


def _label(row: pd.Series) -> str:
    return "HC" if row["group"] == "HC" else str(row["phenotype"])


def _formula(data: pd.DataFrame) -> str:
    terms = ["C(arm, Treatment('b'))", "age"]
    if data["sex"].nunique() > 1:
        terms.append("C(sex)")
    if data["site"].nunique() > 1:
        terms.append("C(site)")
    return "y ~ " + " + ".join(terms)


def compare_groups(data: pd.DataFrame, *, outcome: str = "r2star_median") -> pd.DataFrame:
    """One row per region x contrast (CONVENTIONS ``group_comparison.tsv``).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per participant x region with ``region``, ``outcome``, ``group``,
        ``phenotype``, ``age``, ``sex``, ``site``.
    """
    rows = []
    for region, sub in data.groupby("region", sort=False):
        sub = sub.dropna(subset=[outcome, "age", "sex", "site"]).copy()
        sub["label"] = sub.apply(_label, axis=1)
        for contrast, (a, b) in CONTRASTS.items():
            in_a = sub["label"].isin(a) | (sub["group"].isin(a))
            in_b = sub["label"].isin(b) | (sub["group"].isin(b))
            arm = np.where(in_a, "a", np.where(in_b, "b", None))
            part = sub.assign(arm=arm, y=sub[outcome]).dropna(subset=["arm"])
            n_a, n_b = int((part["arm"] == "a").sum()), int((part["arm"] == "b").sum())
            if n_a < 2 or n_b < 2:
                continue
            formula = _formula(part)
            result = smf.ols(formula, data=part).fit()
            key = "C(arm, Treatment('b'))[T.a]"
            if key not in result.params or not np.isfinite(result.bse[key]):
                continue
            low, high = result.conf_int().loc[key]
            rows.append(
                {
                    "region": region,
                    "contrast": contrast,
                    "estimate": float(result.params[key]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "cohens_d": float(result.params[key] / np.sqrt(result.scale)),
                    "p": float(result.pvalues[key]),
                    "n_a": n_a,
                    "n_b": n_b,
                    "model": formula.replace("C(arm, Treatment('b'))", "group"),
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c != "p_fdr"])
    table["p_fdr"] = np.nan
    for _, idx in table.groupby("contrast").groups.items():
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return table[COMPARISON_COLUMNS]
