"""The cohort report: one self-contained HTML file (figures embedded as PNG data URIs).

It opens offline in any browser: no scripts, no external style sheets, fonts or images. This
module assembles the sections in the order a paper reads: the cohort (Table 1) and who was
excluded, R2* by group (Table 2, figures), the determinants in MS, lesions one by one with
lesion tables (:mod:`.lesions`), change over time with
several sessions (:mod:`.longitudinal`), acquisition and quality
control per site, site harmonisation and age models, then the Methods written from what was run
(:mod:`.methods`). Tables come from :mod:`.tables` and :mod:`.protocol`, figures from
:mod:`.figures` and :mod:`.clinical`, the look from :mod:`.style`.
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
from ..cohort.qc import MIN_REGION_VOXELS
from ..defaults import MIN_VOXELS
from ..io import atomic_write_bytes
from ..io.derivatives import QC_INDEX, clear_group_figures, group_figure_stem
from . import clinical, figures, protocol, tables
from .analyses import min_voxel_methods, min_voxel_rule, without_small
from .lesions import lesion_section
from .longitudinal import longitudinal_section
from .methods import methods, write_methods
from .style import PALETTE, STYLE, embed, export, plotting, pretty_region

__all__ = ["write_report"]


def _versions() -> str:
    items = [("ironmap", __version__), ("python", platform.python_version())]
    for pkg in ("numpy", "scipy", "pandas", "statsmodels", "nibabel", "matplotlib"):
        try:
            items.append((pkg, version(pkg)))
        except PackageNotFoundError:  # pragma: no cover - dependencies are installed
            items.append((pkg, "?"))
    return ", ".join(f"{k} {v}" for k, v in items)


class _Numbers:
    """Numbered figures and tables, in the order they appear.

    Each numbered table is also kept as the texts of ``table<number>.tsv`` and ``.html``
    (:func:`~.tables.table_files`), written by :meth:`write_tables`.
    """

    def __init__(self, output_dir: Path | None = None) -> None:
        self.figures = 0
        self.tables: dict[str, int] = {}
        self.table_files: dict[str, tuple[str, str]] = {}
        #: Where Figure N is also written as SVG, PDF and PNG (group/figures/); None: nowhere.
        self.output_dir = output_dir
        self.labels: dict[str, str] = {}  # key given to table() -> "Table S2"

    def figure(self, made, caption: str, alt: str) -> str:
        if isinstance(made, str):  # why there is no figure
            return f"<p>{html.escape(made)}</p>"
        self.figures += 1
        png = None
        if self.output_dir is not None:
            png = export(made, group_figure_stem(self.output_dir, self.figures))
        return embed(made, html.escape(caption), self.figures, alt, png=png)

    def table(
        self, frame: pd.DataFrame, caption: str, *, kind: str = "", key: str = "", **kw
    ) -> str:
        self.tables[kind] = self.tables.get(kind, 0) + 1
        number = f"{kind}{self.tables[kind]}"
        if key:
            self.labels[key] = f"Table {number}"
        caption = f"<b>Table {number}.</b> {html.escape(caption)}"
        mark = kw.get("cell_class")
        self.table_files[f"table{number}"] = tables.table_files(
            frame, caption, bold=(lambda r, c: mark(r, c) == "sig") if mark else None
        )
        return tables.html_table(frame, caption, **kw)

    def write_tables(self, folder: str | Path | None) -> None:
        """Write every numbered table into ``folder`` (and nothing else stays there)."""
        if folder is not None:
            tables.write_table_files(folder, self.table_files)


def _legend() -> str:
    swatches = " ".join(f"<span style='color:{c}'>&#9679;</span> {g}" for g, c in PALETTE.items())
    return f"<p class='small'>Colours (Okabe-Ito, colour-blind safe): {swatches}.</p>"


def _cohort(n: _Numbers, result, subjects: pd.DataFrame) -> str:
    if subjects.empty:
        return "<p>No participant was analysed (see the participant flow).</p>"
    cohort = n.table(
        tables.table1(subjects),
        "Demographic and clinical characteristics of the analysed participants. "
        f"{tables.ALL_MS}: clinically definite MS (RRMS, SPMS, PPMS, MS without phenotype); "
        "CIS is listed apart and not pooled in. IQR: interquartile range (EDSS: observed scores, "
        "the inverted empirical distribution function, no interpolation between steps); NBV: "
        "normalised brain volume (brain / intracranial volume). Last row: controls against "
        f"{tables.ALL_MS}, Welch's t-test (age, NBV) and the chi-square test (sex; "
        "Yates-corrected for two sexes, Fisher's exact test with an expected count below 5).",
    )
    flow = n.table(
        tables.flow_table(result.flow),
        "Participant flow: every row of participants.tsv, analysed or excluded with the reason "
        "(group/participant_flow.tsv).",
        kind="S",
    )
    excluded = tables.exclusions_table(result.flow)
    listed = n.table(excluded, "Excluded participants.", kind="S", left=4) if len(excluded) else ""
    return cohort + _age_support(subjects) + flow + listed


def _age_support(subjects: pd.DataFrame) -> str:
    """One line: analysed participants beyond the controls' ages (subjects.tsv age_support)."""
    if "age_support" not in subjects:
        return ""
    counts = subjects["age_support"].value_counts()
    outside, beyond = int(counts.get("outside", 0)), int(counts.get("beyond_p5_p95", 0))
    if not outside and not beyond:
        return ""
    return (
        f"<p>Age support: {outside} analysed participant(s) are younger or older than every "
        f"control and {beyond} beyond the controls' 5th-95th age percentile; the age curves "
        "are straight lines there, so their age-corrected R2* and z-scores are extrapolated "
        "(flagged in group/subjects.tsv, age_support, and the participant flow).</p>"
    )


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


def _table2(n: _Numbers, long: pd.DataFrame, comparison: pd.DataFrame) -> str:
    if long.empty:
        return "<p>No R2* to summarise.</p>" + (_NO_COMPARISON if comparison.empty else "")
    table, significant = tables.table2(long, comparison)
    heads = {}
    for contrast, sub in comparison.groupby("contrast", sort=False):
        a, b = int(sub["n_a"].max()), int(sub["n_b"].max())
        # "MS-HC (n = 97 vs 81)": the wording of group_comparison.tsv's contrast and n columns
        heads[contrast] = f"{contrast} (n = {a})" if b == 0 else f"{contrast} (n = {a} vs {b})"
    arms = tables.unadjusted_summary(long).groupby("arm", sort=False)["n"].max()
    heads.update({arm: f"{arm}\nn = {k}" for arm, k in arms.items()})
    contrasts = [c for c in table.columns if c not in arms.index]
    versus_hc = [c for c in contrasts if c.endswith("-HC")]
    between = [c for c in contrasts if c not in versus_hc]

    def part(columns: list[str], caption: str) -> str:
        keep = table[columns].notna().any(axis=1)  # e.g. lesions: no contrast
        frame = table.loc[keep, columns].rename(columns=heads, index=pretty_region).reset_index()
        flags = significant.loc[keep, columns].reset_index(drop=True)
        original = {heads.get(c, c): c for c in columns}

        def cell_class(row: int, column: str) -> str:
            key = original.get(column)
            return "sig" if key in flags.columns and flags.at[row, key] else ""

        return n.table(frame, caption, cell_class=cell_class, css="grid")

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
    heads = {arm: f"{arm}\nn = {k}" for arm, k in arms.items()}
    for contrast, sub in comparison.groupby("contrast", sort=False):
        a, b = int(sub["n_a"].max()), int(sub["n_b"].max())
        heads[contrast] = f"{contrast} (n = {a})" if b == 0 else f"{contrast} (n = {a} vs {b})"
    columns = [*arms.index, *(c for c in table.columns if c.endswith("-HC"))]
    keep = table[columns].notna().any(axis=1)
    frame = table.loc[keep, columns].rename(columns=heads, index=pretty_region).reset_index()
    flags = significant.loc[keep, columns].reset_index(drop=True)
    original = {heads.get(c, c): c for c in columns}

    def cell_class(row: int, column: str) -> str:
        key = original.get(column)
        return "sig" if key in flags.columns and flags.at[row, key] else ""

    caption = (
        "Magnetic susceptibility chi (QSM, ppb, relative to the reference region in Methods) "
        "by group and differences from the controls, as Table 2 for R2*. Left: unadjusted "
        "regional median chi, mean (SD) over the analysed participants. Right: estimate "
        "[95 % CI] of the absolute difference of harmonised, age-corrected chi (ppb; chi can be "
        "negative, so no ratio or percent), adjusted for age and sex with site as fixed "
        "effect; d, t, p, p_FDR and bold as in Table 2 (every number, in ppm, in "
        "group/group_comparison_chi.tsv; between-phenotype contrasts there too)."
    )
    return "<h2>Susceptibility (chi) by group</h2>" + n.table(
        frame, caption, key="chi", cell_class=cell_class, css="grid"
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


def _qc(n: _Numbers, qc: pd.DataFrame, flow: pd.DataFrame, *, min_voxels: int) -> str:
    if qc.empty:
        return "<p>No participant-stage outputs to summarise.</p>"
    missing = protocol.missing_records(qc)
    note = (
        f"<p class='note'>{missing} participant(s) have no provenance record or map sidecar "
        "(e.g. tables copied without the maps): their protocol cells are empty.</p>"
        if missing
        else ""
    )
    note += f"<p>Every participant's QC page, with flags: <a href='{QC_INDEX}'>{QC_INDEX}</a>.</p>"
    sites = n.table(
        protocol.site_protocol_table(qc, flow),
        "Participants and protocol per site: analysed participants per group and excluded "
        "participants; field strength, echoes, echo times and voxel size (from the R2* maps' "
        "sidecars and headers); field-gradient correction and fit method (from each "
        "participant's provenance); noise SD (magnitude units); first-echo SNR (median fitted "
        "first-echo signal in the fit mask over the noise SD); failed voxels (% of the fit "
        "mask). Per participant: group/participant_qc.tsv.",
        kind="S",
        text=("protocol",),
    )
    counts, flags = protocol.voxel_count_table(qc, min_voxels=min_voxels)
    voxels = n.table(
        counts,
        "R2* voxels per hemisphere of the deep grey-matter structures, per site: median over "
        "participants (smallest in any participant); below, in red: participants with fewer "
        f"than {MIN_REGION_VOXELS} voxels in a hemisphere, whose regional median rests on few "
        "voxels (e.g. the red nucleus on 2 mm data), and those with fewer than "
        f"{min_voxels}, whose structure the minimum-voxel rule left out of the group "
        "statistics.",
        kind="S",
        cell_class=lambda r, c: "flag" if c in flags.columns and flags.at[r, c] else "",
    )
    flagged = protocol.flagged_participants(qc)
    checks = (
        n.table(
            flagged,
            "Participants to check: segmentation alignment doubtful, at least "
            f"{protocol.FAILED_PCT_FLAG:g} % failed voxels, SNR under half the site median, or "
            f"more than {protocol.CSF_PCT_FLAG:g} % of a deep grey-matter structure CSF-like "
            "(a segmentation that does not follow the ventricles).",
            kind="S",
            left=4,
        )
        if len(flagged)
        else "<p>No participant has a doubtful alignment, 1 % or more failed voxels, an SNR "
        f"under half its site's median or more than {protocol.CSF_PCT_FLAG:g} % of a deep "
        "grey-matter structure CSF-like.</p>"
    )
    return note + sites + voxels + checks


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
