"""The report's result tables: Table 1 (the cohort), Table 2 (R2* by group and the adjusted
differences), the participant flow, site harmonisation, age models and determinants.

Builders return DataFrames of display strings (a newline is a line break), so that their numbers
can be checked against the tables they come from; :func:`html_table` renders them, and
:func:`table_files` writes the same cells as a TSV and a plain HTML fragment to paste into a
manuscript. Every estimate, CI bound, Cohen's d and test statistic has :data:`DECIMALS`
decimals (:func:`fmt_ci`, :func:`fmt_number`), every p-value :func:`fmt_p`'s format.

This module builds Table 1 and Table 2 (and the mixed-model sensitivity table) and
re-exports the report's other tables and formats from their modules: :mod:`.formats`,
:mod:`.table_render`, :mod:`.tables_flow`, :mod:`.tables_models`,
:mod:`.tables_determinants`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cohort.compare import MS_LABELS, hierarchy
from ..cohort.demographics import ALL_MS, group_tests, quartiles
from .formats import DECIMALS, flat, fmt_ci, fmt_number, fmt_p, p_is
from .style import GROUP_ORDER, labels
from .table_render import fragment_table, html_table, table_files, write_table_files
from .tables_determinants import (
    correlation_table,
    determinants_heads,
    determinants_significant,
    determinants_table,
)
from .tables_flow import exclusions_table, flow_table
from .tables_models import age_model_table, curve_label, curve_title, harmonization_table

__all__ = [
    "ALL_MS",
    "DECIMALS",
    "PRL_COLUMNS",
    "PRL_NO_TEST",
    "TESTS_ROW",
    "age_model_table",
    "correlation_table",
    "curve_label",
    "curve_title",
    "determinants_heads",
    "determinants_significant",
    "determinants_table",
    "exclusions_table",
    "flat",
    "flow_table",
    "fmt_ci",
    "fmt_number",
    "fmt_p",
    "fragment_table",
    "harmonization_table",
    "has_prl",
    "html_table",
    "mixed_table",
    "p_is",
    "table1",
    "table2",
    "table_files",
    "unadjusted_summary",
    "write_table_files",
]


def _mean_sd(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    sd = f"{values.std():.{digits}f}" if len(values) > 1 else "-"
    return f"{values.mean():.{digits}f} ({sd})"


def _median_iqr(values: pd.Series, digits: int = 1, *, ordinal: bool = False) -> str:
    """``median [q1-q3]``; ``ordinal``: observed scores
    (:func:`~ironmap.cohort.demographics.quartiles`)."""
    if values.dropna().empty:
        return ""
    q1, q2, q3 = quartiles(values, ordinal=ordinal)
    return f"{q2:.{digits}f} [{q1:.{digits}f}-{q3:.{digits}f}]"


def _arms(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(name, row mask) of HC, all clinically definite MS, then each MS label and CIS."""
    label = labels(frame)
    arms = [("HC", label == "HC")] if (label == "HC").any() else []
    if label.isin(MS_LABELS).any():
        arms.append((ALL_MS, label.isin(MS_LABELS)))
    arms += [(g, label == g) for g in GROUP_ORDER[1:] if (label == g).any()]
    return arms


#: Table 1's columns that :func:`~ironmap.cohort.demographics.group_tests` tests, by variable.
_TESTED = {"age": "age, years\nmean (SD)", "sex": "female\nn (%)", "nbv": "NBV\nmean (SD)"}
#: The first cell of Table 1's row of between-group tests.
TESTS_ROW = f"p, HC vs {ALL_MS}"
#: Table 1's PRL columns (only with ``n_prl``): the count's median [IQR], and participants with
#: at least one PRL candidate, n (% of those with a count). Untested against controls.
PRL_COLUMNS = ("PRL count\nmedian [IQR]", ">= 1 PRL\nn (%)")
#: The PRL cells of :data:`TESTS_ROW`: controls have no lesions, so no HC vs MS test.
PRL_NO_TEST = "n/a\n(controls have no lesions)"


def has_prl(subjects: pd.DataFrame) -> bool:
    """Whether the cohort has PRL counts: ``n_prl`` known for a participant other than a
    control (lesion tables with chi)."""
    if "n_prl" not in subjects:
        return False
    return bool(subjects.loc[labels(subjects) != "HC", "n_prl"].notna().any())


def _prl_cells(values: pd.Series) -> dict[str, str]:
    """Table 1's :data:`PRL_COLUMNS` cells of one arm's ``n_prl``."""
    counts = pd.to_numeric(values, errors="coerce").dropna()
    if counts.empty:
        return dict.fromkeys(PRL_COLUMNS, "")
    any_prl = int((counts >= 1).sum())
    share = f"{any_prl} ({100 * any_prl / len(counts):.0f} %)"
    return dict(zip(PRL_COLUMNS, (_median_iqr(counts), share), strict=True))


def table1(subjects: pd.DataFrame) -> pd.DataFrame:
    """Demographics of the analysed participants by group and phenotype (display strings).

    EDSS quartiles are observed scores (ordinal, 0.5-point steps); the last row,
    :data:`TESTS_ROW`, gives the p-value and test of controls against all clinically definite
    MS (:func:`~ironmap.cohort.demographics.group_tests`) under age, sex and NBV. With PRL
    counts (:func:`has_prl`) each arm also gets :data:`PRL_COLUMNS`: ``n_prl``'s median [IQR]
    (linear quartiles) and n (%) with at least one PRL candidate; :data:`TESTS_ROW` has
    :data:`PRL_NO_TEST` under them (no PRL test against controls, who have no lesions).
    """
    rows = []
    prl = has_prl(subjects)
    for name, mask in _arms(subjects):
        s = subjects[mask]
        hc = name == "HC"
        female = int((s["sex"] == "F").sum())
        rows.append(
            {
                "group": name,
                "n": str(len(s)),
                "sites": str(s["site"].nunique()),
                "age, years\nmean (SD)": _mean_sd(s["age"]),
                "female\nn (%)": f"{female} ({100 * female / len(s):.0f} %)",
                "disease duration, years\nmean (SD)": ""
                if hc
                else _mean_sd(s["disease_duration"]),
                "EDSS\nmedian [IQR]": "" if hc else _median_iqr(s["edss"], ordinal=True),
                "T2 lesion volume, mL\nmedian [IQR]": ""
                if hc
                else _median_iqr(s["lesion_volume_ml"], 2),
                "NBV\nmean (SD)": _mean_sd(s["nbv"], 3),
            }
        )
        if prl:
            rows[-1].update(_prl_cells(s["n_prl"]))
    tests = group_tests(subjects) if len(rows) else pd.DataFrame()
    if len(tests):
        row = dict.fromkeys(rows[0], "")
        row["group"] = TESTS_ROW
        for test in tests.itertuples():
            row[_TESTED[test.variable]] = f"{p_is('p', test.p)}\n({test.test.split(',')[0]})"
        if prl:
            row.update(dict.fromkeys(PRL_COLUMNS, PRL_NO_TEST))
        rows.append(row)
    return pd.DataFrame(rows)


def unadjusted_summary(long: pd.DataFrame, column: str = "r2star_median") -> pd.DataFrame:
    """``region, arm, n, mean, sd`` of ``column`` (``r2star_median``: 1/s, hemispheres pooled)
    per arm."""
    rows = []
    part = long[long[column].notna()]
    for region in dict.fromkeys(part["region"]):
        sub = part[part["region"] == region]
        for name, mask in _arms(sub):
            values = sub.loc[mask, column]
            rows.append(
                {
                    "region": region,
                    "arm": name,
                    "n": len(values),
                    "mean": values.mean(),
                    "sd": values.std() if len(values) > 1 else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=["region", "arm", "n", "mean", "sd"])


def _difference(row) -> str:
    """A contrast's cell, lines ``estimate [CI]``, ``d = d [CI]``, ``t(df) = t, p = p``,
    ``p_FDR = p`` (the omnibus: ``F(df1, df2) = F, p = p``, ``p_FDR = p``); rows without
    Cohen's d or the statistic (the mixed model's) leave those out."""
    p, p_fdr = p_is("p", row.p), p_is("p_FDR", row.p_fdr)
    if row.contrast == "phenotype-omnibus":
        if pd.isna(row.p):
            return "n/a"
        test = f"F({row.df_num:.0f}, {row.df_den:.0f}) = {fmt_number(row.statistic)}"
        return f"{test}, {p}\n{p_fdr}"
    if pd.isna(row.estimate):
        return "n.i." if str(row.note).startswith("not identifiable") else "n/a"
    lines = [fmt_ci(row.estimate, row.ci_low, row.ci_high)]
    d = getattr(row, "cohens_d", np.nan)
    if pd.notna(d):
        lines.append("d = " + fmt_ci(d, row.cohens_d_ci_low, row.cohens_d_ci_high))
    t, df = getattr(row, "statistic", np.nan), getattr(row, "df_den", np.nan)
    test = f"t({df:.0f}) = {fmt_number(t)}, " if pd.notna(t) and pd.notna(df) else ""
    return "\n".join([*lines, test + p, p_fdr])


def table2(
    long: pd.DataFrame, comparison: pd.DataFrame, *, column: str = "r2star_median"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unadjusted R2* mean (SD) per arm beside the adjusted differences, regions x columns.

    Parameters
    ----------
    long : pandas.DataFrame
        ``regions.tsv`` rows of hemisphere ``both`` of the analysed participants, joined with
        ``subjects.tsv``.
    comparison : pandas.DataFrame
        ``group_comparison.tsv``.
    column : str, optional
        The measure summarised per arm (``chi_median`` for the chi table, with ``long`` and
        ``comparison`` in the units to show).

    Returns
    -------
    table : pandas.DataFrame
        Index: regions (deep grey matter, NAWM, lesions); columns: the arms (``HC``,
        :data:`ALL_MS`, phenotypes) with ``mean (SD)`` of ``r2star_median``, then each contrast
        with lines ``estimate [CI]``, ``d = Cohen's d [CI]``, ``t(df) = t, p = p``,
        ``p_FDR = p`` (the omnibus: ``F(df1, df2) = F, p = p``, ``p_FDR = p``; ``n.i.`` not
        identifiable, ``n/a`` not estimable).
    significant : pandas.DataFrame of bool
        Same shape: True where a contrast's row is ``significant`` under the multiplicity
        hierarchy (:func:`~ironmap.cohort.compare.hierarchy`; marked here when the table
        lacks the column).
    """
    summary = unadjusted_summary(long, column)
    means = summary.assign(
        cell=[_mean_sd_cell(m, s) for m, s in zip(summary["mean"], summary["sd"], strict=True)]
    )
    arms = list(dict.fromkeys(means["arm"]))
    table = means.pivot(index="region", columns="arm", values="cell").reindex(columns=arms)
    significant = pd.DataFrame(False, index=table.index, columns=table.columns)
    if not comparison.empty:
        cells = comparison.assign(cell=comparison.apply(_difference, axis=1))
        contrasts = list(dict.fromkeys(cells["contrast"]))
        diff = cells.pivot(index="region", columns="contrast", values="cell")
        if "significant" not in cells:
            cells = hierarchy(cells)
        sig = cells.assign(sig=cells["significant"].astype(str).eq("True")).pivot(
            index="region", columns="contrast", values="sig"
        )
        table = table.join(diff.reindex(columns=contrasts), how="outer")
        significant = significant.join(sig.reindex(columns=contrasts).astype(bool), how="outer")
    order = list(dict.fromkeys(long["region"]))
    table = table.reindex(index=[r for r in order if r in table.index])
    significant = significant.reindex(index=table.index).fillna(False).astype(bool)
    return table.rename_axis(index="region", columns=None), significant


def mixed_table(mixed: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The random-site-intercept sensitivity analysis, regions x contrasts (display strings).

    Parameters
    ----------
    mixed : pandas.DataFrame
        ``group/group_comparison_mixed.tsv``.

    Returns
    -------
    table : pandas.DataFrame
        Index: regions; columns: contrasts; ``estimate [CI]``, ``p``, ``p_FDR`` lines, with
        ``(not converged)`` under a fit that did not converge.
    significant : pandas.DataFrame of bool
        Same shape: the rows' ``significant`` (never a fit that did not converge).
    """
    if "significant" not in mixed:
        mixed = hierarchy(mixed)
    converged = mixed["converged"].astype(str).eq("True")
    cells = mixed.assign(
        cell=[
            _difference(row) + ("" if ok else "\n(not converged)")
            for row, ok in zip(mixed.itertuples(), converged, strict=True)
        ],
        sig=mixed["significant"].astype(str).eq("True") & converged,
    )
    contrasts = list(dict.fromkeys(cells["contrast"]))
    regions = list(dict.fromkeys(cells["region"]))
    table = cells.pivot(index="region", columns="contrast", values="cell")
    sig = cells.pivot(index="region", columns="contrast", values="sig")
    table = table.reindex(index=regions, columns=contrasts)
    sig = sig.reindex(index=regions, columns=contrasts).fillna(False).astype(bool)
    return table.rename_axis(index="region", columns=None), sig.rename_axis(columns=None)


def _mean_sd_cell(mean: float, sd: float) -> str:
    return f"{mean:.1f} ({sd:.1f})" if np.isfinite(sd) else f"{mean:.1f} (-)"
