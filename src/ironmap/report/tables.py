"""The report's result tables: Table 1 (the cohort), Table 2 (R2* by group and the adjusted
differences), the participant flow, site harmonisation, age models and determinants.

Builders return DataFrames of display strings (a newline is a line break), so that their numbers
can be checked against the tables they come from; :func:`html_table` renders them, and
:func:`table_files` writes the same cells as a TSV and a plain HTML fragment to paste into a
manuscript. Every estimate, CI bound, Cohen's d and test statistic has :data:`DECIMALS`
decimals (:func:`fmt_ci`, :func:`fmt_number`), every p-value :func:`fmt_p`'s format.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort.compare import MS_LABELS, hierarchy
from ..cohort.demographics import ALL_MS, group_tests, quartiles
from ..cohort.determinants import PRIMARY_MODEL, UNITS, VIF_LIMIT
from ..cohort.stats import ALPHA
from ..io import atomic_write_bytes
from .clinical import PREDICTOR_LABELS
from .style import GROUP_ORDER, labels, pretty_region

__all__ = [
    "ALL_MS",
    "DECIMALS",
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
    "html_table",
    "mixed_table",
    "p_is",
    "table1",
    "table2",
    "table_files",
    "unadjusted_summary",
    "write_table_files",
]

#: Decimals of every estimate, CI bound, Cohen's d and test statistic in the report's tables.
DECIMALS = 2
#: p-values below this are shown as ``<0.001``.
P_FLOOR = 0.001


def fmt_number(value: float, decimals: int = DECIMALS) -> str:
    """``value`` with ``decimals`` decimals (``0.00``, never ``-0.00``); ``n/a`` if not finite."""
    if value is None or not np.isfinite(value):
        return "n/a"
    text = f"{value:.{decimals}f}"
    return text.removeprefix("-") if float(text) == 0 else text


def fmt_ci(estimate: float, low: float, high: float, *, decimals: int = DECIMALS) -> str:
    """``estimate [low, high]``, each by :func:`fmt_number`: ``-0.23 [-0.46, 0.01]``."""
    numbers = (fmt_number(v, decimals) for v in (estimate, low, high))
    return "{} [{}, {}]".format(*numbers)


def fmt_p(p: float) -> str:
    """A p-value: ``<0.001`` below :data:`P_FLOOR`, else 2 significant digits (``0.013``,
    ``0.10``), 3 where 2 would round a p below the significance level up to it (``0.0496``);
    ``n/a`` if not finite."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p < P_FLOOR:
        return f"<{P_FLOOR:g}"
    text = f"{p:#.2g}"
    return f"{p:#.3g}" if float(text) >= ALPHA > p else text


def p_is(name: str, p: float) -> str:
    """``p_FDR = 0.013``, ``p_FDR < 0.001`` or ``p_FDR n/a``: a named p-value in a cell."""
    text = fmt_p(p)
    if text.startswith("<"):
        return f"{name} < {text[1:]}"
    return f"{name} n/a" if text == "n/a" else f"{name} = {text}"


def flat(text) -> str:
    """A cell or header on one line, for a TSV: line breaks become ``; ``; NaN empty."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return "; ".join(str(text).split("\n"))


def _label(predictor: str) -> str:
    """A predictor's readable name (:data:`~ironmap.report.clinical.PREDICTOR_LABELS`)."""
    return PREDICTOR_LABELS.get(predictor, str(predictor).replace("_", " "))


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


def _cell_html(value) -> str:
    """A cell's HTML: escaped, newlines as ``<br>``, NaN empty (as :func:`html_table`)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value)).replace("\n", "<br>")


def fragment_table(
    frame: pd.DataFrame, caption: str = "", *, bold: Callable[[int, str], bool] | None = None
) -> str:
    """A plain HTML ``<table>`` of ``frame`` for a word processor or an HTML-to-LaTeX converter.

    No classes or styles: ``<caption>`` (``caption`` is HTML), ``<thead>``/``<tbody>``, line
    breaks as ``<br>``, and ``<b>`` around the cells ``bold(row, column)`` marks.
    """
    head = "".join(f"<th>{_cell_html(c)}</th>" for c in frame.columns)
    body = []
    for r, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text = _cell_html(value)
            strong = bool(bold and text and bold(r, column))
            cells.append(f"<td><b>{text}</b></td>" if strong else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    rows = "\n".join(body)
    return f"<table>\n{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"


def table_files(
    frame: pd.DataFrame, caption: str = "", *, bold: Callable[[int, str], bool] | None = None
) -> tuple[str, str]:
    """The TSV text (cells and headers by :func:`flat`, no index) and the HTML fragment
    (:func:`fragment_table`) of one report table: the same cells as the report shows."""
    cells = frame.map(flat) if len(frame.columns) else frame
    cells.columns = [flat(c) for c in frame.columns]
    return cells.to_csv(sep="\t", index=False, lineterminator="\n"), fragment_table(
        frame, caption, bold=bold
    )


def write_table_files(folder: str | Path, files: dict[str, tuple[str, str]]) -> list[Path]:
    """Write ``<name>.tsv`` and ``<name>.html`` per entry of ``files`` (name -> the texts of
    :func:`table_files`) into ``folder``, each atomically, then remove every other file there
    (the folder is ironmap's: a table of an earlier run does not survive).

    Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (tsv, fragment) in files.items():
        for suffix, text in ((".tsv", tsv), (".html", fragment)):
            path = folder / f"{name}{suffix}"
            atomic_write_bytes(path, text.encode("utf-8"))
            written.append(path)
    for path in folder.iterdir():
        if path not in written and path.is_file():
            path.unlink()
    return written


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


def table1(subjects: pd.DataFrame) -> pd.DataFrame:
    """Demographics of the analysed participants by group and phenotype (display strings).

    EDSS quartiles are observed scores (ordinal, 0.5-point steps); the last row,
    :data:`TESTS_ROW`, gives the p-value and test of controls against all clinically definite
    MS (:func:`~ironmap.cohort.demographics.group_tests`) under age, sex and NBV.
    """
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
                "EDSS\nmedian [IQR]": "" if hc else _median_iqr(s["edss"], ordinal=True),
                "T2 lesion volume, mL\nmedian [IQR]": ""
                if hc
                else _median_iqr(s["lesion_volume_ml"], 2),
                "NBV\nmean (SD)": _mean_sd(s["nbv"], 3),
            }
        )
    tests = group_tests(subjects) if len(rows) else pd.DataFrame()
    if len(tests):
        row = dict.fromkeys(rows[0], "")
        row["group"] = TESTS_ROW
        for test in tests.itertuples():
            row[_TESTED[test.variable]] = f"{p_is('p', test.p)}\n({test.test.split(',')[0]})"
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


#: A minimum-voxel note of participant_flow.tsv: ``<region>: left 3, right 8 voxels (...)``.
_SMALL_NOTE = re.compile(r"(\w+): left \d+, right \d+ voxels")


def _flow_label(note: str) -> str:
    """The Table S1 row of an analysed participant's flow ``note``: the age-support flag (the
    note's head) and each structure the minimum-voxel rule left out, readable."""
    small = _SMALL_NOTE.findall(note)
    parts = [] if note.startswith(tuple(f"{r}:" for r in small)) else [note.split(":")[0]]
    if small:
        parts.append(", ".join(pretty_region(r) for r in small) + " left out (too few voxels)")
    return "; ".join(p for p in parts if p)


def flow_table(flow: pd.DataFrame) -> pd.DataFrame:
    """Counts of analysed (apart: those with a note, e.g. beyond the controls' ages) and of
    each exclusion reason, by group label."""
    note = flow["note"].fillna("") if "note" in flow else pd.Series("", index=flow.index)
    flagged = "analysed, " + note.map(_flow_label)
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


def _unit_head(determinants: pd.DataFrame, predictor: str) -> str:
    """``per 10 years``, ``per SD (0.0061)``: the unit of the predictor's ``beta_unit``
    (``determinants.tsv``'s ``unit`` and ``unit_scale``; the SD's range if it differs between
    models); ``per <transform>`` for a table without them."""
    rows = determinants[determinants["predictor"] == predictor]
    if "beta_unit" not in determinants:
        return f"per {rows['transform'].iloc[0]}" if len(rows) else ""
    unit = UNITS.get(predictor, ("", None))
    if unit[1] is not None:
        return f"per {unit[0]}"
    scales = sorted({f"{v:#.2g}" for v in rows["unit_scale"].dropna()}, key=float)
    if not scales:
        return f"per {unit[0]}"
    text = scales[0] if len(scales) == 1 else f"{scales[0]}-{scales[-1]}"
    return f"per {unit[0]} ({text})"


def determinants_heads(determinants: pd.DataFrame) -> dict[str, str]:
    """Predictor -> its :func:`determinants_table` column: readable name, then the unit."""
    names = dict.fromkeys(determinants["predictor"])
    return {p: f"{_label(p)}\n{_unit_head(determinants, p)}" for p in names}


def determinants_table(determinants: pd.DataFrame) -> pd.DataFrame:
    """Multivariable models as an outcomes x predictors grid, with the stepwise selection.

    Cells: ``beta [95 % CI]`` in 1/s per the clinically meaningful unit in the column's head
    (``beta_unit`` of ``determinants.tsv``: per 10 years, per EDSS point, per doubling of
    1 mL + lesion volume, per SD), then the standardised beta, ``p_FDR`` and the VIF (``*``
    after it: above :data:`~ironmap.cohort.determinants.VIF_LIMIT`, not identifiable in
    practice); the last columns give ``n``, the predictors stepwise selection kept with their
    bootstrap inclusion frequency (exploratory) and the rows' ``note``. A region whose primary
    model is collinear has the pre-specified reduced model (duration + EDSS) in the row under it.
    """
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    stepwise = determinants[determinants["model"] == "stepwise"]
    reduced = determinants[determinants["model"] == "reduced"]
    if multi.empty and stepwise.empty:
        return pd.DataFrame()
    predictors = list(dict.fromkeys(multi["predictor"]))
    heads = determinants_heads(determinants)
    unit = "_unit" if "beta_unit" in determinants else ""
    rows = []
    for region in dict.fromkeys([*multi["region"], *stepwise["region"]]):
        for model, frame in ((PRIMARY_MODEL, multi), ("reduced", reduced)):
            part = frame[frame["region"] == region].set_index("predictor")
            if model == "reduced" and part.empty:
                continue
            name = pretty_region(region)
            row = {"outcome": name if model == PRIMARY_MODEL else f"{name}, reduced model"}
            for p in predictors:
                head = heads[p]
                if p not in part.index:
                    row[head] = ""
                    continue
                r = part.loc[p]
                vif = "" if pd.isna(r["vif"]) else f", VIF {r['vif']:.1f}"
                row[head] = (
                    fmt_ci(r[f"beta{unit}"], r[f"ci_low{unit}"], r[f"ci_high{unit}"])
                    + f"\nstd. beta {fmt_number(r['std_beta'])}, {p_is('p_FDR', r['p_fdr'])}\n"
                    + vif.removeprefix(", ")
                    + ("*" if r["vif"] > VIF_LIMIT else "")
                )
            n = part["n"].max() if len(part) else np.nan
            if model == PRIMARY_MODEL and pd.isna(n):
                n = stepwise.loc[stepwise["region"] == region, "n"].max()
            row["n"] = "" if pd.isna(n) else str(int(n))
            chosen = stepwise[stepwise["region"] == region] if model == PRIMARY_MODEL else []
            row["stepwise (bootstrap inclusion)"] = (
                "\n".join(
                    f"{_label(p)} ({f:.0%})" if pd.notna(f) else _label(p)
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
                    f"not identifiable in practice (VIF > {VIF_LIMIT:g}): "
                    + ", ".join(map(_label, high))
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
    heads = determinants_heads(determinants)
    for i, outcome in enumerate(table.get("outcome", [])):
        if outcome not in names:
            continue
        part = multi[multi["region"] == names[outcome]]
        for p, q in zip(part["predictor"], part["p_fdr"], strict=True):
            if heads.get(p) in table.columns:
                flags.at[i, heads[p]] = bool(q < ALPHA)
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
        row = {f"{pretty_region(region)}: r": _label(r["predictor"])}
        row.update({_label(q): fmt_number(r[f"corr_{q}"]) for q in names if f"corr_{q}" in r})
        row["VIF"] = f"{r['vif']:.1f}" + ("*" if r["vif"] > VIF_LIMIT else "")
        rows.append(row)
    return pd.DataFrame(rows)
