"""The report's result tables: Table 1 (the cohort), Table 2 (R2* by group and the adjusted
differences), the participant flow, site harmonisation, age models and determinants.

Builders return DataFrames of display strings (a newline is a line break), so that their numbers
can be checked against the tables they come from; :func:`html_table` renders them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..cohort.compare import MS_LABELS, hierarchy
from ..cohort.determinants import PRIMARY_MODEL, VIF_LIMIT
from .style import GROUP_ORDER, labels, pretty_region

__all__ = [
    "ALL_MS",
    "age_model_table",
    "correlation_table",
    "curve_label",
    "curve_title",
    "determinants_significant",
    "determinants_table",
    "exclusions_table",
    "flow_table",
    "harmonization_table",
    "html_table",
    "mixed_table",
    "table1",
    "table2",
    "unadjusted_summary",
]

#: Label of the pooled clinically definite MS column/row (CIS not pooled in, as in MS-HC).
ALL_MS = "MS (all)"


def html_table(
    frame: pd.DataFrame,
    caption: str = "",
    *,
    left: int = 1,
    text: tuple[str, ...] = (),
    cell_class: Callable[[int, str], str] | None = None,
    css: str = "",
) -> str:
    """An HTML table of display strings: escaped, newlines as ``<br>``, NaN as empty.

    ``caption`` is HTML. The ``left`` first columns and the columns named in ``text`` are
    left-aligned text that may wrap; ``cell_class(row, column) -> str`` may give a cell a CSS
    class (``flag``, ``sig``); ``css`` is the table's class.
    """

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        return html.escape(str(value)).replace("\n", "<br>")

    is_text = [i < left or c in text for i, c in enumerate(frame.columns)]
    head = "".join(
        f"<th class='text'>{cell(c)}</th>" if t and i > 0 else f"<th>{cell(c)}</th>"
        for i, (c, t) in enumerate(zip(frame.columns, is_text, strict=True))
    )
    body = []
    for r, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for i, (column, value) in enumerate(zip(frame.columns, row, strict=True)):
            classes = ["text"] if is_text[i] and i > 0 else []  # CSS: first column is text
            extra = cell_class(r, column) if cell_class else ""
            classes += [extra] if extra else []
            attr = f" class='{' '.join(classes)}'" if classes else ""
            cells.append(f"<td{attr}>{cell(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<p class='caption'>{caption}</p>" if caption else ""
    klass = f" class='{css}'" if css else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"{cap}<div class='scroll'>{table}</div>"


def _mean_sd(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    sd = f"{values.std():.{digits}f}" if len(values) > 1 else "-"
    return f"{values.mean():.{digits}f} ({sd})"


def _median_iqr(values: pd.Series, digits: int = 1) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:.{digits}f} [{q1:.{digits}f}-{q3:.{digits}f}]"


def _arms(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(name, row mask) of HC, all clinically definite MS, then each MS label and CIS."""
    label = labels(frame)
    arms = [("HC", label == "HC")] if (label == "HC").any() else []
    if label.isin(MS_LABELS).any():
        arms.append((ALL_MS, label.isin(MS_LABELS)))
    arms += [(g, label == g) for g in GROUP_ORDER[1:] if (label == g).any()]
    return arms


def table1(subjects: pd.DataFrame) -> pd.DataFrame:
    """Demographics of the analysed participants by group and phenotype (display strings)."""
    rows = []
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
                "EDSS\nmedian [IQR]": "" if hc else _median_iqr(s["edss"]),
                "T2 lesion volume, mL\nmedian [IQR]": ""
                if hc
                else _median_iqr(s["lesion_volume_ml"], 2),
                "NBV\nmean (SD)": _mean_sd(s["nbv"], 3),
            }
        )
    return pd.DataFrame(rows)


def unadjusted_summary(long: pd.DataFrame) -> pd.DataFrame:
    """``region, arm, n, mean, sd`` of ``r2star_median`` (1/s, hemispheres pooled) per arm."""
    rows = []
    part = long[long["r2star_median"].notna()]
    for region in dict.fromkeys(part["region"]):
        sub = part[part["region"] == region]
        for name, mask in _arms(sub):
            values = sub.loc[mask, "r2star_median"]
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


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """``= 0.012`` or ``< 0.001``: what follows ``p_FDR``."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _difference(row) -> str:
    if row.contrast == "phenotype-omnibus":
        if pd.isna(row.p):
            return "n/a"
        return f"F = {row.statistic:.2f}\np_FDR {_p_is(row.p_fdr)}"
    if pd.isna(row.estimate):
        return "n.i." if str(row.note).startswith("not identifiable") else "n/a"
    return f"{row.estimate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]\np_FDR {_p_is(row.p_fdr)}"


def table2(long: pd.DataFrame, comparison: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unadjusted R2* mean (SD) per arm beside the adjusted differences, regions x columns.

    Parameters
    ----------
    long : pandas.DataFrame
        ``regions.tsv`` rows of hemisphere ``both`` of the analysed participants, joined with
        ``subjects.tsv``.
    comparison : pandas.DataFrame
        ``group_comparison.tsv``.

    Returns
    -------
    table : pandas.DataFrame
        Index: regions (deep grey matter, NAWM, lesions); columns: the arms (``HC``,
        :data:`ALL_MS`, phenotypes) with ``mean (SD)`` of ``r2star_median``, then each contrast
        with ``estimate [CI]\\np_FDR = p`` (``p_FDR < 0.001`` below; ``n.i.`` not identifiable,
        ``n/a`` not estimable).
    significant : pandas.DataFrame of bool
        Same shape: True where a contrast's row is ``significant`` under the multiplicity
        hierarchy (:func:`~ironmap.cohort.compare.hierarchy`; marked here when the table
        lacks the column).
    """
    summary = unadjusted_summary(long)
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
        Index: regions; columns: contrasts; ``estimate [CI]\np_FDR = p``, with ``(not
        converged)`` under a fit that did not converge.
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


def flow_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Counts of analysed (apart: those with a note, e.g. beyond the controls' ages) and of
    each exclusion reason, by group label."""
    note = flow["note"].fillna("") if "note" in flow else pd.Series("", index=flow.index)
    flagged = "analysed, " + note.str.split(":").str[0]
    reason = flow["reason"].where((flow["reason"] != "") | (note == ""), flagged)
    flow = flow.assign(label=labels(flow), reason=reason)
    counts = flow.pivot_table(
        index="reason", columns="label", values="participant_id", aggfunc="count", fill_value=0
    )
    counts = counts.reindex(columns=[g for g in GROUP_ORDER if g in counts.columns])
    counts["total"] = counts.sum(axis=1)
    counts.index = [r or "analysed" for r in counts.index]
    return counts.astype(str).rename_axis(columns=None).reset_index(names="status / reason")


def exclusions_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Every excluded participant with group, site and the reason."""
    excluded = flow[flow["status"] == "excluded"]
    return pd.DataFrame(
        {
            "participant": excluded["participant_id"],
            "group": labels(excluded),
            "site": excluded["site"],
            "reason": excluded["reason"],
        }
    )


def harmonization_table(harmonization: pd.DataFrame) -> pd.DataFrame:
    """Region x site: the site's location (% of R2*) / scale in the z-scores (x residual SD)."""
    scale = harmonization["z_scale"] if "z_scale" in harmonization else harmonization["scale"]
    table = harmonization.assign(
        cell=lambda d: (
            d["location_percent"].map("{:+.1f} %".format) + " / x" + scale.map("{:.2f}".format)
        ).where(d["location_percent"].notna(), "n/a (no control with R2*)"),
        region=lambda d: d["region"].map(pretty_region),
    )
    cells = table.pivot(index="region", columns="site", values="cell")
    cells = cells.reindex(index=list(dict.fromkeys(table["region"])))
    return cells.rename_axis(columns=None).reset_index()


def curve_label(model: str) -> str:
    """``spline-df3-monotone`` -> ``spline, 3 knots, monotone`` (age_model.tsv's ``model``)."""
    match = re.fullmatch(r"(linear|spline-df(\d+))(-monotone)?", str(model))
    if match is None:
        return str(model)
    text = "linear" if match[1] == "linear" else f"spline, {match[2]} knots"
    return text + (", monotone" if match[3] else "")


def curve_title(region: str, model: str) -> str:
    """A figure panel's two-line title: the region, then its age curve (:func:`curve_label`)."""
    return f"{pretty_region(region)}\n({curve_label(model)})"


def age_model_table(age_model: pd.DataFrame) -> pd.DataFrame:
    """The age model chosen per region with its fit."""
    return pd.DataFrame(
        {
            "region": age_model["region"].map(pretty_region),
            "model": age_model["model"].map(curve_label),
            "controls": age_model["n_hc"].astype(str),
            "residual SD (1/s)": age_model["residual_sd"].map("{:.2f}".format),
            "residual df": age_model["residual_df"].map("{:.0f}".format),
            "reference R2* (1/s)": age_model["reference_r2star"].map("{:.2f}".format),
        }
    )


def determinants_table(determinants: pd.DataFrame) -> pd.DataFrame:
    """Multivariable models as an outcomes x predictors grid, with the stepwise selection.

    Cells: ``beta [95 % CI]`` (1/s per unit of the predictor's ``transform``), then the
    standardised beta, ``p_FDR`` and the VIF (``*`` after it: above
    :data:`~ironmap.cohort.determinants.VIF_LIMIT`, not identifiable in practice); the last
    columns give ``n``, the predictors stepwise selection kept with their bootstrap inclusion
    frequency (exploratory) and the rows' ``note``. A region whose primary model is collinear
    has the pre-specified reduced model (duration + EDSS) in the row under it.
    """
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    stepwise = determinants[determinants["model"] == "stepwise"]
    reduced = determinants[determinants["model"] == "reduced"]
    if multi.empty and stepwise.empty:
        return pd.DataFrame()
    predictors = list(dict.fromkeys(multi["predictor"]))
    per = dict(zip(determinants["predictor"], determinants["transform"], strict=False))
    rows = []
    for region in dict.fromkeys([*multi["region"], *stepwise["region"]]):
        for model, frame in ((PRIMARY_MODEL, multi), ("reduced", reduced)):
            part = frame[frame["region"] == region].set_index("predictor")
            if model == "reduced" and part.empty:
                continue
            name = pretty_region(region)
            row = {"outcome": name if model == PRIMARY_MODEL else f"{name}, reduced model"}
            for p in predictors:
                head = f"{p}\nper {per.get(p, '')}"
                if p not in part.index:
                    row[head] = ""
                    continue
                r = part.loc[p]
                p_fdr = "n/a" if pd.isna(r["p_fdr"]) else _p_is(r["p_fdr"])
                vif = "" if pd.isna(r["vif"]) else f", VIF {r['vif']:.1f}"
                row[head] = (
                    f"{r['beta']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]\n"
                    f"std. beta {r['std_beta']:.2f}, p_FDR {p_fdr}\n{vif.removeprefix(', ')}"
                    + ("*" if r["vif"] > VIF_LIMIT else "")
                )
            n = part["n"].max() if len(part) else np.nan
            if model == PRIMARY_MODEL and pd.isna(n):
                n = stepwise.loc[stepwise["region"] == region, "n"].max()
            row["n"] = "" if pd.isna(n) else str(int(n))
            chosen = stepwise[stepwise["region"] == region] if model == PRIMARY_MODEL else []
            row["stepwise (bootstrap inclusion)"] = (
                "\n".join(
                    f"{p} ({f:.0%})" if pd.notna(f) else p
                    for p, f in zip(
                        chosen["predictor"],
                        chosen.get("inclusion_frequency", pd.Series(np.nan, index=chosen.index)),
                        strict=True,
                    )
                )
                or ("none" if len(chosen) == 0 and len(part) else "")
                if model == PRIMARY_MODEL
                else ""
            )
            high = [p for p in part.index if part.at[p, "vif"] > VIF_LIMIT]
            if model == "reduced":
                row["note"] = "pre-specified reduced model (duration + EDSS, same covariates)"
            elif high:
                later = (reduced["region"] == region).any()
                row["note"] = (
                    f"not identifiable in practice (VIF > {VIF_LIMIT:g}): {', '.join(high)}"
                    + ("; reduced model in the next row" if later else "")
                )
            else:
                row["note"] = ""
            rows.append(row)
    return pd.DataFrame(rows)


def determinants_significant(determinants: pd.DataFrame) -> pd.DataFrame:
    """Which cells of :func:`determinants_table` to mark significant (bold), same shape.

    Only the pre-specified primary model's cells, at ``p_FDR < 0.05``: the reduced,
    univariable and stepwise rows are never marked.
    """
    table = determinants_table(determinants)
    flags = pd.DataFrame(False, index=table.index, columns=table.columns)
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    names = {pretty_region(r): r for r in multi["region"]}
    for i, outcome in enumerate(table.get("outcome", [])):
        if outcome not in names:
            continue
        part = multi[multi["region"] == names[outcome]]
        for p, q in zip(part["predictor"], part["p_fdr"], strict=True):
            for column in table.columns:
                if column.split("\n")[0] == p:
                    flags.at[i, column] = bool(q < 0.05)
    return flags


def correlation_table(determinants: pd.DataFrame) -> pd.DataFrame:
    """The predictors' correlations (with age) of the first primary model, as a matrix.

    Rows and columns: the predictors of that region's primary model, then age; values:
    ``corr_<name>`` of ``determinants.tsv`` (Pearson r over the model's participants), two
    decimals; the last column gives each predictor's VIF. Empty without a primary model.
    """
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    if multi.empty:
        return pd.DataFrame()
    region = multi["region"].iloc[0]
    part = multi[multi["region"] == region]
    names = [*part["predictor"], "age"]
    rows = []
    for _, r in part.iterrows():
        row = {f"{pretty_region(region)}: r": r["predictor"]}
        row.update({q: f"{r[f'corr_{q}']:.2f}" for q in names if f"corr_{q}" in r})
        row["VIF"] = f"{r['vif']:.1f}" + ("*" if r["vif"] > VIF_LIMIT else "")
        rows.append(row)
    return pd.DataFrame(rows)
