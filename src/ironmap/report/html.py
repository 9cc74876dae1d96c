"""The cohort report: one self-contained HTML file (figures embedded as PNG data URIs).

It opens offline in any browser: no scripts, no external style sheets, fonts or images. This
module assembles the sections in the order a paper reads: the cohort (Table 1) and who was
excluded, R2* by group (Table 2, figures), the determinants in MS, lesions one by one with
lesion tables (:mod:`.lesions`), change over time with
several sessions (:mod:`.longitudinal`), acquisition and quality
control per site, site harmonisation and age models, then the Methods written from what was run
(:mod:`.methods`). Tables come from :mod:`.tables` and :mod:`.protocol`, figures from
:mod:`.figures` and :mod:`.clinical`, the look from :mod:`.style`.
The participants, R2* by group and quality-control sections are built in
:mod:`.sections_cohort`, :mod:`.sections_groups` and :mod:`.sections_qc`, numbered by
:mod:`.numbering`.
"""

from __future__ import annotations

import datetime as _dt
import html
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from .. import __version__
from ..cohort.analysis import harmonization_description
from ..cohort.determinants import N_BOOTSTRAP, VIF_LIMIT
from ..defaults import MIN_VOXELS
from ..io import atomic_write_bytes
from ..io.derivatives import clear_group_figures
from . import clinical, figures, tables
from .analyses import min_voxel_methods, min_voxel_rule, without_small
from .lesions import lesion_section
from .longitudinal import longitudinal_section
from .methods import methods, write_methods
from .numbering import _Numbers
from .sections_cohort import _cohort
from .sections_groups import _chi_table, _mixed, _table2
from .sections_qc import _qc
from .style import PALETTE, STYLE, plotting

__all__ = ["write_report"]


def _versions() -> str:
    items = [("ironmap", __version__), ("python", platform.python_version())]
    for pkg in ("numpy", "scipy", "pandas", "statsmodels", "nibabel", "matplotlib"):
        try:
            items.append((pkg, version(pkg)))
        except PackageNotFoundError:  # pragma: no cover - dependencies are installed
            items.append((pkg, "?"))
    return ", ".join(f"{k} {v}" for k, v in items)


def _legend() -> str:
    swatches = " ".join(f"<span style='color:{c}'>&#9679;</span> {g}" for g, c in PALETTE.items())
    return f"<p class='small'>Colours (Okabe-Ito, colour-blind safe): {swatches}.</p>"


def write_report(path: str | Path, result, *, tables_dir: str | Path | None = None) -> Path:
    """Write ``report.html`` (atomically) from a :class:`~ironmap.workflows.group.GroupResult`.

    With ``tables_dir`` (``group/tables/``), every numbered table is also written there as
    ``table<number>.tsv`` and ``.html`` and every other file there is removed.
    """
    subjects = result.subjects[result.subjects["analysed"]]
    regions = result.regions
    long = regions[regions["hemisphere"] == "both"].merge(subjects, on="participant_id")
    long = without_small(long, result)  # the minimum-voxel rule, as in the statistics
    comparison, determinants = result.comparison, result.determinants
    model = result.analysis.normative if result.analysis is not None else None
    harmonization = harmonization_description(model) if model is not None else None
    qc = getattr(result, "participant_qc", pd.DataFrame())
    forest_model = clinical.forest_model(determinants) or "no"
    clear_group_figures(Path(path).parent)  # no figure of an earlier report survives
    n = _Numbers(Path(path).parent)
    sections = [
        "<h1>ironmap: deep grey-matter R2* in MS</h1><p class='small'>Generated "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by ironmap {__version__}."
        f" {len(subjects)} of {len(result.flow)} participants analysed, "
        f"{subjects['site'].nunique()} sites. Tables and figures are numbered for a paper; "
        "supplementary tables are numbered S1, S2, ...; every number is in the TSV tables of "
        "group/ (columns in docs/conventions.md).</p>" + _legend(),
        "<h2>Participants</h2>" + _cohort(n, result, subjects),
        "<h2>R2* by group</h2>"
        + _table2(n, long, comparison)
        + min_voxel_rule(result)
        + _chi_table(n, long, result)
        + _mixed(n, getattr(result, "comparison_mixed", None)),
    ]
    with plotting():
        sections += [
            n.figure(
                figures.group_figure(long),
                "Age-corrected R2* by group and region (harmonised across sites, corrected to "
                "the controls' median age). Boxes: median and interquartile range; whiskers: "
                "1.5 IQR; points: participants; n under each box.",
                "age-corrected R2* by group",
            ),
            n.figure(
                figures.age_figure(long, model),
                "Harmonised R2* against age, deep grey matter and NAWM. Line and band: the "
                "controls' normative curve (baseline sex, pooled site) and its 95 % range; "
                "the age model of each region (linear or spline with its knots; monotone: "
                "constrained non-decreasing and concave) is in the panel title; beyond the "
                "controls' 5th-95th age percentile the curve is a straight line.",
                "R2* against age",
            ),
            "<h2>Determinants of R2* in MS</h2>",
            n.figure(
                clinical.forest_figure(determinants),
                f"Determinants of R2* in clinically definite MS ({forest_model} models): "
                "standardised beta per outcome (panel) and predictor "
                "(row; one shared axis, labelled on the left of each row of panels; one x "
                "range in every panel), adjusted "
                "for age, sex and site. Filled: p_FDR < 0.05 in the pre-specified primary "
                "(multivariable) model; no other model is marked. "
                + clinical.forest_convention(determinants)
                + " Outcomes: age-corrected R2* "
                "of deep grey matter and NAWM; lesion R2* and lesion minus NAWM R2* (duration "
                "and lesion volume only).",
                "forest plot of determinants",
            ),
            n.figure(
                clinical.clinical_figure(long, determinants, "edss"),
                "Age-corrected deep grey-matter R2* against EDSS in clinically definite MS, "
                "by phenotype. Line: univariable age-, sex- and site-adjusted slope of "
                "group/determinants.tsv "
                "through the patients' mean; p_FDR: its p corrected for the false discovery "
                "rate over the univariable models (as marked everywhere in this report).",
                "R2* against EDSS",
            ),
            n.figure(
                clinical.clinical_figure(long, determinants, "disease_duration"),
                "Age-corrected deep grey-matter R2* against disease duration in clinically "
                "definite MS, by phenotype. Line: univariable age-, sex- and site-adjusted "
                "slope of group/determinants.tsv through the patients' mean; p_FDR as in "
                "Figure 4.",
                "R2* against disease duration",
            ),
            n.figure(
                figures.lesion_figure(long),
                "Lesion R2* (median over all lesion voxels) against disease duration in MS, "
                "with the least-squares line (unadjusted; the adjusted model is in "
                "group/determinants.tsv). " + figures.lesion_trend_note(long),
                "lesion R2* against disease duration",
            ),
        ]
    text = methods(  # after the sensitivity table is numbered: the Methods cite its number
        qc,
        flow=result.flow,
        age_model=result.age_model,
        harmonization=harmonization,
        comparison_mixed=result.comparison_mixed,
        determinants=determinants,
        version=__version__,
        mixed_table=n.labels.get("mixed"),  # the sentence exactly when the table is shown
        min_voxels=min_voxel_methods(result),
    )
    multi = tables.determinants_table(determinants)
    bold = tables.determinants_significant(determinants)
    corr = tables.correlation_table(determinants)
    notes = multi[multi.get("note", pd.Series("", index=multi.index)).fillna("") != ""]
    note_items = "".join(
        f"<li><b>{html.escape(o)}</b>: {html.escape(t)}</li>"
        for o, t in zip(notes.get("outcome", []), notes.get("note", []), strict=True)
    )
    sections += [
        n.table(
            multi.drop(columns="note", errors="ignore"),
            "Multivariable models (the pre-specified primary model) of age-corrected R2* in "
            "clinically definite MS (lesion outcomes: lesion R2* and lesion minus NAWM R2*), "
            "adjusted for age, sex and site: beta [95 % CI] in 1/s per the unit under each "
            "predictor (per 10 years of disease duration, per EDSS point, per doubling of 1 mL "
            "+ T2 lesion volume, per SD of NBV and of cortical GM over the model's patients, "
            "the SD in brackets; group/determinants.tsv beta_unit), standardised beta, "
            "p corrected for the false discovery rate over all "
            "multivariable rows (bold: p_FDR < 0.05, primary model only) and the variance "
            f"inflation factor (*: above {VIF_LIMIT:g}, where a coefficient is not identifiable "
            "in practice; such a region has the pre-specified reduced model, duration + EDSS "
            "with the same covariates, in the row under it, not marked). Stepwise: "
            "the predictors forward-backward selection kept, with the share of "
            f"{N_BOOTSTRAP} bootstrap "
            "resamples selecting each (exploratory: its p ignores the selection). "
            "Univariable models: group/determinants.tsv.",
            kind="S",
            text=("stepwise (bootstrap inclusion)",),
            cell_class=lambda r, c: "sig" if c in bold.columns and bold.at[r, c] else "",
        )
        + (
            f"<p class='note'>Notes on the models:</p><ul class='note'>{note_items}</ul>"
            if note_items
            else ""
        )
        if len(multi)
        else "<p>No multivariable or stepwise model (fewer than 10 patients per predictor).</p>",
        n.table(
            corr,
            "Correlations (Pearson r) of the determinants with each other and with age in "
            "the patients of the first primary model, with each predictor's VIF in the whole "
            f"design (*: above {VIF_LIMIT:g}); every region's are the corr_* columns of "
            "group/determinants.tsv.",
            kind="S",
        )
        if len(corr)
        else "",
        lesion_section(n, result, plotting),
        longitudinal_section(n, result, plotting),
        "<h2>Acquisition and quality control</h2>"
        + _qc(n, qc, result.flow, min_voxels=getattr(result, "min_voxels", MIN_VOXELS)),
        "<h2>Site harmonisation and age models</h2>"
        + (
            n.table(
                tables.harmonization_table(result.harmonization),
                "ComBat site parameters fitted on the controls (log R2*): each site's location "
                "(percent of R2*, removed from R2*) / scale (factor on the residual SD, used in "
                "the z-scores only), per region (group/harmonization.tsv).",
                kind="S",
            )
            if len(result.harmonization)
            else "<p>No site harmonisation could be estimated.</p>"
        )
        + (
            n.table(
                tables.age_model_table(result.age_model),
                "The controls' age model chosen per region (group/age_model.tsv); reference "
                "R2*: a control of the baseline sex at the reference age, pooled site.",
                kind="S",
            )
            if len(result.age_model)
            else "<p>No age model could be fitted.</p>"
        ),
        "<h2>Methods</h2>" + text.html(),
        f"<p class='small'>Software: {html.escape(_versions())}.</p>",
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>ironmap report</title><style>"
        + STYLE
        + "</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    atomic_write_bytes(path, page.encode("utf-8"))
    n.write_tables(tables_dir)
    write_methods(Path(path).parent, text)  # group/methods.md, group/references.bib
    return Path(path)
