"""The report's R2* by group section: Table 2 (R2* by group and the adjusted differences),
the same for chi (in ppb) and the mixed-model sensitivity table.
"""

from __future__ import annotations

import html

import pandas as pd

from . import tables
from .numbering import _Numbers
from .style import pretty_region

_DIFFERENCES = (
    "estimate [95 % CI] of the difference of harmonised, age-corrected R2* (1/s), adjusted "
    "for age and sex with site as fixed effect (HC3 robust SE); d: Cohen's d [95 % CI] (the "
    "difference over the controls' SD); the robust t statistic with its residual df, p, and "
    "p_FDR corrected for the false discovery rate across regions within each contrast; "
    "bold: significant under the "
    "multiplicity hierarchy (p_FDR < 0.05 and, except for MS-HC, the region's gate passed: "
    "MS-HC for the phenotypes and the omnibus, the omnibus for the contrasts between "
    "phenotypes; see Methods). n: participants "
    "informing each contrast (arms at sites holding both; the most over regions). n.i.: not "
    "identifiable (the arms share no site); n/a: too few participants (every number in "
    "group/group_comparison.tsv)."
)


_NO_COMPARISON = (
    "<p>No comparison could be made: no contrast has participants on both sides at a shared "
    "site (see group/participant_flow.tsv).</p>"
)


def _contrast_heads(comparison: pd.DataFrame) -> dict[str, str]:
    """Column heads of the contrasts: "MS-HC (n = 97 vs 81)", the wording of the comparison
    table's contrast and n columns."""
    heads = {}
    for contrast, sub in comparison.groupby("contrast", sort=False):
        a, b = int(sub["n_a"].max()), int(sub["n_b"].max())
        heads[contrast] = f"{contrast} (n = {a})" if b == 0 else f"{contrast} (n = {a} vs {b})"
    return heads


def _grid(
    n: _Numbers,
    table: pd.DataFrame,
    significant: pd.DataFrame,
    columns: list[str],
    heads: dict[str, str],
    caption: str,
    **options,
) -> str:
    """A numbered grid table of ``columns`` of a Table 2-like frame, its rows with at least one
    value, cells in bold where ``significant``."""
    keep = table[columns].notna().any(axis=1)  # e.g. lesions: no contrast
    frame = table.loc[keep, columns].rename(columns=heads, index=pretty_region).reset_index()
    flags = significant.loc[keep, columns].reset_index(drop=True)
    original = {heads.get(c, c): c for c in columns}

    def cell_class(row: int, column: str) -> str:
        key = original.get(column)
        return "sig" if key in flags.columns and flags.at[row, key] else ""

    return n.table(frame, caption, cell_class=cell_class, css="grid", **options)


def _table2(n: _Numbers, long: pd.DataFrame, comparison: pd.DataFrame) -> str:
    if long.empty:
        return "<p>No R2* to summarise.</p>" + (_NO_COMPARISON if comparison.empty else "")
    table, significant = tables.table2(long, comparison)
    heads = _contrast_heads(comparison)
    arms = tables.unadjusted_summary(long).groupby("arm", sort=False)["n"].max()
    heads.update({arm: f"{arm}\nn = {k}" for arm, k in arms.items()})
    contrasts = [c for c in table.columns if c not in arms.index]
    versus_hc = [c for c in contrasts if c.endswith("-HC")]
    between = [c for c in contrasts if c not in versus_hc]

    def part(columns: list[str], caption: str) -> str:
        return _grid(n, table, significant, columns, heads, caption)

    html_parts = part(
        [*arms.index, *versus_hc],
        "R2* (1/s) by group and differences from the controls. Left: unadjusted regional "
        "median R2*, mean (SD) over the analysed participants (left and right pooled). "
        "Right: " + _DIFFERENCES,
    )
    if between:
        html_parts += part(
            between,
            "Differences of R2* between MS phenotypes, as in Table 2; progressive: SPMS and "
            "PPMS; phenotype-omnibus: robust Wald F-test (numerator, denominator df) that "
            "RRMS, SPMS and PPMS share one mean.",
        )
    if comparison.empty:
        html_parts += _NO_COMPARISON
    noted = comparison[comparison["note"].fillna("") != ""]
    every = comparison["region"].nunique()
    items = "".join(
        f"<li><b>{html.escape(contrast)}</b>"
        + ("" if len(regions) == every else " (" + html.escape(", ".join(regions)) + ")")
        + f": {html.escape(note)}</li>"
        for (contrast, note), regions in noted.groupby(["contrast", "note"], sort=False)["region"]
        .agg(lambda r: [pretty_region(x) for x in r])
        .items()
    )
    return html_parts + (
        f"<p class='note'>Notes on the contrasts:</p><ul class='note'>{items}</ul>"
        if items
        else ""
    )


#: chi is shown in ppb (parts per billion) in the report: differences of a few ppb.
_PPB = 1000.0


def _chi_table(n: _Numbers, long: pd.DataFrame, result) -> str:
    """Regional susceptibility beside R2*: Table 2's layout for chi (ppb), when the group
    stage analysed chi (``group/group_comparison_chi.tsv``); empty otherwise."""
    comparison = getattr(result, "comparison_chi", None)
    if comparison is None or comparison.empty or "chi_median" not in long:
        return ""
    scaled = comparison.copy()
    for column in ("estimate", "ci_low", "ci_high"):
        scaled[column] = pd.to_numeric(scaled[column], errors="coerce") * _PPB
    table, significant = tables.table2(
        long.assign(chi_median=long["chi_median"] * _PPB), scaled, column="chi_median"
    )
    arms = tables.unadjusted_summary(long, "chi_median").groupby("arm", sort=False)["n"].max()
    heads = {**_contrast_heads(comparison), **{arm: f"{arm}\nn = {k}" for arm, k in arms.items()}}
    columns = [*arms.index, *(c for c in table.columns if c.endswith("-HC"))]
    caption = (
        "Magnetic susceptibility chi (QSM, ppb, relative to the reference region in Methods) "
        "by group and differences from the controls, as Table 2 for R2*. Left: unadjusted "
        "regional median chi, mean (SD) over the analysed participants. Right: estimate "
        "[95 % CI] of the absolute difference of harmonised, age-corrected chi (ppb; chi can be "
        "negative, so no ratio or percent), adjusted for age and sex with site as fixed "
        "effect; d, t, p, p_FDR and bold as in Table 2 (every number, in ppm, in "
        "group/group_comparison_chi.tsv; between-phenotype contrasts there too)."
    )
    return "<h2>Susceptibility (chi) by group</h2>" + _grid(
        n, table, significant, columns, heads, caption, key="chi"
    )


def _mixed(n: _Numbers, mixed: pd.DataFrame) -> str:
    """The sensitivity analysis (supplementary table) and its fits that did not converge."""
    if mixed is None or mixed.empty:
        return ""
    table, significant = tables.mixed_table(mixed)
    frame = table.rename(index=pretty_region).reset_index()
    flags = significant.reset_index(drop=True)

    def cell_class(row: int, column: str) -> str:
        return "sig" if column in flags.columns and flags.at[row, column] else ""

    caption = (
        "Sensitivity analysis: the differences of Table 2 with a random site intercept "
        "instead of the site fixed effect (linear mixed model, REML; estimate [95 % CI] from "
        "the generalised least squares with HC3 robust SE and a t reference), p_FDR across "
        "regions within each contrast; bold as in Table 2 (the phenotype omnibus gate from "
        "Table 2), never for a fit that did not converge (group/group_comparison_mixed.tsv)."
    )
    out = n.table(frame, caption, kind="S", key="mixed", cell_class=cell_class, css="grid")
    failed = mixed[~mixed["converged"].astype(str).eq("True")]
    if len(failed):
        items = ", ".join(
            f"{pretty_region(r)} {c}"
            for r, c in zip(failed["region"], failed["contrast"], strict=True)
        )
        out += (
            f"<p class='note'>The REML fit did not converge for {html.escape(items)}: "
            "these cells are shown but not marked significant.</p>"
        )
    return out
