"""The report's longitudinal section: change of R2* over time (``group/longitudinal.tsv``).

A table of the yearly change per region (controls, clinically definite MS, their difference
at equal age, and the change per EDSS point gained), spaghetti plots of every participant's
site-adjusted R2* against time since baseline with the fitted mean trajectories, and a
supplementary table per phenotype. Without two timed sessions for anyone the section says why
(or is left out when nobody has a second session at all).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..cohort.longitudinal import MIN_LONGITUDINAL, OUTCOME
from .analyses import not_run
from .figures import normative_regions
from .style import (
    GROUP_ORDER,
    MARKERS,
    PALETTE,
    first_column,
    labels,
    new_figure,
    pretty_region,
)
from .tables import fmt_ci, p_is

__all__ = [
    "FALLBACK_MARK",
    "NOT_CONVERGED_MARK",
    "change_table",
    "longitudinal_section",
    "model_notes",
    "phenotype_table",
    "spaghetti_figure",
]

_SIGNIFICANT = 0.05


#: Marks of a cell whose model did not converge, and of one whose random slope was dropped.
NOT_CONVERGED_MARK, FALLBACK_MARK = "\u2020", "\u2021"


def _flag(row: pd.Series, column: str) -> bool:
    """A boolean column of a row as written (``True``) or read back from TSV (``"True"``)."""
    return column in row.index and str(row[column]) == "True"


def _converged(row: pd.Series) -> bool:
    """False only where the table says the fit did not converge (older tables: True)."""
    return not ("converged" in row.index and str(row["converged"]) == "False")


def _cell(row: pd.Series | None, *, p: bool = False) -> str:
    """``estimate [low, high]`` (:func:`~.tables.fmt_ci`) and, with ``p``, ``p_FDR`` below;
    :data:`NOT_CONVERGED_MARK` when the fit did not converge, :data:`FALLBACK_MARK` when its
    random slope was dropped."""
    if row is None or pd.isna(row["estimate"]):
        return ""
    text = fmt_ci(row["estimate"], row["ci_low"], row["ci_high"])
    if not _converged(row):
        text += f" {NOT_CONVERGED_MARK}"
    if _flag(row, "fallback"):
        text += f" {FALLBACK_MARK}"
    if p and pd.notna(row["p_fdr"]):
        text += f"\n{p_is('p_FDR', row['p_fdr'])}"
    return text


def _lookup(table: pd.DataFrame) -> dict[tuple[str, str, str], pd.Series]:
    return {(r["region"], r["term"], r["arm"]): r for _, r in table.iterrows()}


def change_table(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per region: yearly change of HC and MS, MS - HC at equal age, change per EDSS point.

    Returns the display strings and a same-shaped frame of booleans (p_FDR < 0.05 in a fit
    that converged) for the difference and EDSS columns.
    """
    rows = _lookup(table)
    columns = {
        "HC, 1/s per year": ("annual_change", "HC", False),
        "MS, 1/s per year": ("annual_change", "MS", False),
        "MS - HC at equal age, 1/s per year": ("time_x_group", "MS-HC", True),
        "per EDSS point gained, 1/s (MS)": ("edss_change", "MS", True),
    }
    regions = list(dict.fromkeys(table["region"]))
    shown, flags = [], []
    for region in regions:
        cells, marks = {"region": pretty_region(region)}, {"region": False}
        for name, (term, arm, with_p) in columns.items():
            row = rows.get((region, term, arm))
            cells[name] = _cell(row, p=with_p)
            marks[name] = bool(
                with_p and row is not None and row["p_fdr"] < _SIGNIFICANT and _converged(row)
            )
        shown.append(cells)
        flags.append(marks)
    return pd.DataFrame(shown), pd.DataFrame(flags)


def phenotype_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per region and phenotype: yearly change and its difference from the controls."""
    rows = _lookup(table)
    arms = [a for a in GROUP_ORDER[1:] if a != "MS" and (table["arm"] == a).any()]
    shown = []
    for region in dict.fromkeys(table["region"]):
        cells = {"region": pretty_region(region)}
        for arm in arms:
            cells[f"{arm}, 1/s per year"] = _cell(rows.get((region, "annual_change", arm)))
            cells[f"{arm} - HC"] = _cell(rows.get((region, "time_x_group", f"{arm}-HC")), p=True)
        shown.append(cells)
    return pd.DataFrame(shown)


def spaghetti_figure(values: pd.DataFrame, subjects: pd.DataFrame, trajectories: pd.DataFrame):
    """Harmonised R2* against years since baseline: a line per participant with two or more
    sessions (colour and marker by group), and the fitted mean trajectory of the controls and
    of clinically definite MS (thick). Returns a sentence when there is nothing to draw."""
    data = values.merge(subjects[["participant_id", "group", "phenotype"]], on="participant_id")
    data = data[data[OUTCOME].notna()]
    several = data.groupby("participant_id")["session"].transform("nunique") > 1
    data = data[several]
    if data.empty:
        return "No participant has two sessions with site-adjusted R2*."
    regions = normative_regions(data, OUTCOME)
    ncols = 4
    fig, axes = new_figure(ncols, max(1, int(np.ceil(len(regions) / ncols))), height=1.8)
    data = data.assign(label=labels(data))
    for ax, region in zip(axes, regions, strict=False):
        part = data[data["region"] == region].sort_values("time_years")
        for label in [g for g in GROUP_ORDER if g in set(part["label"])]:
            for i, (_, person) in enumerate(
                part[part["label"] == label].groupby("participant_id")
            ):
                ax.plot(
                    person["time_years"],
                    person[OUTCOME],
                    color=PALETTE[label],
                    marker=MARKERS[label],
                    ms=1.5,
                    lw=0.4,
                    alpha=0.45,
                    label=label if i == 0 else None,
                )
        fitted = trajectories[trajectories["region"] == region] if len(trajectories) else None
        for arm, colour, style in (("HC", PALETTE["HC"], "-"), ("MS", PALETTE["MS"], "--")):
            line = fitted[fitted["arm"] == arm] if fitted is not None else pd.DataFrame()
            if len(line):
                ax.plot(
                    line["time_years"],
                    line[OUTCOME],
                    color=colour,
                    ls=style,
                    lw=1.6,
                    label=f"{arm} fitted mean",
                )
        ax.set_title(pretty_region(region))
        ax.set_xlabel("years since baseline")
        if first_column(ax):
            ax.set_ylabel("site-adjusted R2* (1/s)")
    for ax in axes[len(regions) :]:
        ax.axis("off")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), frameon=False)
    return fig


def _summary(result) -> str:
    """Who entered the longitudinal models, and the stated choice for the cross-section."""
    values = result.longitudinal_sessions
    counts = values.groupby("participant_id")["session"].nunique()
    followed = counts[counts > 1]
    times = values.groupby("participant_id")["time_years"].max()[followed.index]
    trend = getattr(result, "trend", None)
    untimed = len(trend.untimed) if trend is not None else 0
    text = (
        f"{len(followed)} analysed participants have two or more timed sessions "
        f"({int(followed.sum())} sessions; median follow-up {times.median():.1f} years, range "
        f"{times.min():.1f}-{times.max():.1f}). The cross-sectional results above use each "
        "participant's baseline session; every timed session enters the models below "
        "(group/longitudinal.tsv, values per session in group/longitudinal_sessions.tsv)."
    )
    table = getattr(result, "longitudinal", pd.DataFrame())
    if "scanner_terms" in table.columns and len(table):
        epochs = pd.to_numeric(table["scanner_terms"], errors="coerce").max()
        if epochs > 0:
            text += (
                f" A change of scanner during follow-up ({int(epochs)} scanner epoch(s) after "
                "the first at a site, from the scanner column of sub-&lt;label&gt;_sessions.tsv "
                "or the sidecars' DeviceSerialNumber/SoftwareVersions) is modelled as a "
                "session-level offset, so that an upgrade is not read as change over time."
            )
    if untimed:
        text += (
            f" {untimed} participant(s) with several sessions but no acq_time or age for every "
            "session in sub-&lt;label&gt;_sessions.tsv contribute only their baseline."
        )
    return f"<p>{text}</p>"


def longitudinal_section(numbers, result, plotting) -> str:
    """The section's HTML ('' when no participant has a second session).

    ``numbers`` numbers the tables and figures (the report's ``_Numbers``), ``result`` is the
    :class:`~ironmap.workflows.group.GroupResult`, ``plotting`` the report's matplotlib context.
    """
    values = getattr(result, "longitudinal_sessions", pd.DataFrame())
    table = getattr(result, "longitudinal", pd.DataFrame())
    trend = getattr(result, "trend", None)
    has_sessions = (
        len(values) and (values.groupby("participant_id")["session"].nunique() > 1).any()
    )
    if not has_sessions and not (trend is not None and trend.untimed):
        return not_run(result, "longitudinal")  # why it did not run ('' when not recorded)
    head = "<h2>Change over time</h2>"
    if table.empty:
        return head + (
            "<p>No longitudinal model was fitted: the analysis needs participants with two or "
            "more sessions whose times are known (acq_time or age for every session in "
            f"sub-&lt;label&gt;_sessions.tsv), at least {MIN_LONGITUDINAL} in a group. The "
            "results above are cross-sectional (each participant's baseline session).</p>"
        )
    shown, flags = change_table(table)
    parts = [head, _summary(result)]
    parts.append(
        numbers.table(
            shown,
            "Yearly change of R2* (site-adjusted; linear mixed models with a random intercept and "
            "slope per participant, adjusted for baseline age, sex and site): estimate [95 % "
            "CI]. HC and MS: each group's mean yearly change at its participants' ages (normal "
            "ageing, and ageing with disease). MS - HC: the difference at equal age (yearly "
            "change a smooth function of baseline age, shared by the groups). Per EDSS point: "
            "change of R2* with each EDSS point gained, over and above the yearly change. p "
            "corrected for the false discovery rate across regions; bold: p_FDR < 0.05.",
            cell_class=lambda r, c: "sig" if c in flags.columns and flags.at[r, c] else "",
            css="grid",
        )
    )
    subjects = result.subjects[result.subjects["analysed"]]
    trajectories = trend.trajectories if trend is not None else pd.DataFrame()
    with plotting():
        parts.append(
            numbers.figure(
                spaghetti_figure(values, subjects, trajectories),
                "Site-adjusted R2* (the site's multiplicative offset removed) against years since "
                "baseline: one line per participant with "
                "two or more sessions (colour and marker by group); thick: the fitted mean "
                "trajectory of the controls (solid) and of clinically definite MS (dashed), the "
                "mean over each group's participants of the mixed model's fixed-effect "
                "prediction.",
                "R2* against time since baseline",
            )
        )
    phenotypes = phenotype_table(table)
    if phenotypes.shape[1] > 1:
        parts.append(
            numbers.table(
                phenotypes,
                "Yearly change of site-adjusted R2* (1/s per year) per phenotype and its "
                "difference from the controls at equal age, as in the table above "
                "(group/longitudinal.tsv).",
                kind="S",
                css="grid",
            )
        )
    items = "".join(f"<li>{html.escape(t)}</li>" for t in model_notes(table))
    if items:
        parts.append(f"<p class='note'>Notes on the models:</p><ul class='note'>{items}</ul>")
    return "".join(parts)


def model_notes(table: pd.DataFrame) -> list[str]:
    """The notes of ``group/longitudinal.tsv``, each once with the models it concerns
    (``region term``), and what the cells' marks mean when a cell has one."""
    notes = table[table["note"].fillna("") != ""]
    out = []
    for note, part in notes.groupby("note", sort=False):
        where = ", ".join(
            dict.fromkeys(
                f"{pretty_region(r)} {t}"
                for r, t in zip(part["region"], part["term"], strict=True)
            )
        )
        out.append(f"{where}: {note}")
    rows = [r for _, r in table.iterrows()]
    if any(not _converged(r) for r in rows):
        out.append(
            f"{NOT_CONVERGED_MARK}: the mixed model did not converge; its estimate is shown "
            "but never marked significant"
        )
    if any(_flag(r, "fallback") for r in rows):
        out.append(
            f"{FALLBACK_MARK}: the random slope could not be fitted; the model has a random "
            "intercept only (random_effects, fallback in group/longitudinal.tsv)"
        )
    return out
