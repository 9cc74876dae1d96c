"""The cohort report: one self-contained HTML file (figures embedded as PNG data URIs).

It opens offline in any browser: no scripts, no external style sheets, fonts or images.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..cohort.age import MIN_CONTROLS_PER_SITE
from ..cohort.compare import group_label
from ..io import atomic_write_bytes
from ..regions import DEEP_GM

__all__ = ["write_report"]

_GROUP_ORDER = ("HC", "RRMS", "SPMS", "PPMS", "CIS")
_COLOURS = {
    "HC": "#4c72b0",
    "RRMS": "#dd8452",
    "SPMS": "#c44e52",
    "PPMS": "#8172b3",
    "CIS": "#937860",
}

_STYLE = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } .small { color: #666; font-size: 0.85em; }
"""


def _label(row) -> str:
    return "HC" if row["group"] == "HC" else str(row["phenotype"])


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _figure(ncols: int, nrows: int, size=(3.1, 2.6)):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes.ravel()


def _cohort_table(subjects: pd.DataFrame) -> str:
    if subjects.empty:
        return "<p>No participant was analysed (see the participant flow).</p>"
    subjects = subjects.assign(label=subjects.apply(_label, axis=1))
    rows = []
    for label in [g for g in _GROUP_ORDER if g in set(subjects.label)]:
        s = subjects[subjects.label == label]
        rows.append(
            {
                "group": label,
                "n": len(s),
                "age, mean (SD)": f"{s.age.mean():.1f} ({s.age.std():.1f})",
                "female": f"{(s.sex == 'F').mean() * 100:.0f} %",
                "disease duration, mean (SD)": ""
                if label == "HC"
                else f"{s.disease_duration.mean():.1f} ({s.disease_duration.std():.1f})",
                "EDSS, median (range)": ""
                if label == "HC"
                else f"{s.edss.median():.1f} ({s.edss.min():.1f}-{s.edss.max():.1f})",
                "lesion volume mL, median": ""
                if label == "HC"
                else f"{s.lesion_volume_ml.median():.2f}",
                "NBV, mean": f"{s.nbv.mean():.3f}",
                "sites": s.site.nunique(),
            }
        )
    return _table(pd.DataFrame(rows))


def _age_figure(long: pd.DataFrame, model) -> str:
    if long.empty or long.r2star_harmonized.isna().all():
        return "<p>No harmonised R2* to show (no analysed participant has one).</p>"
    regions = [r for r in (*DEEP_GM, "nawm") if r in model.regions]
    fig, axes = _figure(4, int(np.ceil(len(regions) / 4)) or 1)
    ages = np.linspace(long.age.min(), long.age.max(), 100)
    curve = model.combat.grand_mean + model.age_term(ages)  # (100, p), baseline sex
    for ax, region in zip(axes, regions, strict=False):
        g = model.regions.index(region)
        part = long[(long.region == region) & long.r2star_harmonized.notna()]
        band = 1.96 * model.residual_sd[g]
        ax.fill_between(
            ages,
            np.exp(curve[:, g] - band),
            np.exp(curve[:, g] + band),
            color=_COLOURS["HC"],
            alpha=0.15,
            lw=0,
        )
        ax.plot(ages, np.exp(curve[:, g]), color=_COLOURS["HC"], lw=1.5)
        for label, sub in part.groupby(part.apply(_label, axis=1)):
            ax.scatter(
                sub.age,
                sub.r2star_harmonized,
                s=6,
                color=_COLOURS.get(label, "k"),
                label=label,
                alpha=0.8,
            )
        df = model.df[region]
        kind = "linear" if df == 1 else f"spline df {df}"
        ax.set_title(f"{region.replace('_', ' ')} ({kind})", fontsize=9)
        ax.set_xlabel("age (years)", fontsize=8)
        ax.set_ylabel("harmonised R2* (1/s)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions) :]:
        ax.axis("off")
    if regions and axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _group_figure(long: pd.DataFrame) -> str:
    if long.empty or long.r2star_corrected.isna().all():
        return "<p>No age-corrected R2* to show (no analysed participant has one).</p>"
    regions = [r for r in (*DEEP_GM, "nawm") if r in set(long.region)]
    fig, axes = _figure(4, int(np.ceil(len(regions) / 4)) or 1)
    rng = np.random.default_rng(0)
    for ax, region in zip(axes, regions, strict=False):
        part = long[(long.region == region) & long.r2star_corrected.notna()]
        labels = part.apply(_label, axis=1)
        present = [g for g in _GROUP_ORDER if g in set(labels)]
        data = [part.r2star_corrected[labels == g].to_numpy() for g in present]
        ax.boxplot(data, showfliers=False, widths=0.6)
        for i, (g, values) in enumerate(zip(present, data, strict=True), start=1):
            ax.scatter(
                i + rng.uniform(-0.15, 0.15, values.size),
                values,
                s=5,
                color=_COLOURS.get(g, "k"),
                alpha=0.7,
            )
        ax.set_xticks(range(1, len(present) + 1), present, fontsize=8)
        ax.set_title(region.replace("_", " "), fontsize=9)
        ax.set_ylabel("age-corrected R2* (1/s)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def _forest_figure(determinants: pd.DataFrame) -> str:
    multi = determinants[determinants.model == "multivariable"].copy()
    if multi.empty:
        return "<p>No multivariable model could be fitted.</p>"
    regions = list(dict.fromkeys(multi.region))
    ncols = min(len(regions), 5)
    fig, axes = _figure(ncols, int(np.ceil(len(regions) / ncols)), size=(2.3, 2.4))
    for ax in axes[len(regions) :]:
        ax.axis("off")
    for i, (ax, region) in enumerate(zip(axes, regions, strict=False)):
        part = multi[multi.region == region].reset_index(drop=True)
        scale = part.std_beta / part.beta.replace(0, np.nan)
        y = np.arange(len(part))[::-1]
        ax.errorbar(
            part.std_beta,
            y,
            xerr=[part.std_beta - part.ci_low * scale, part.ci_high * scale - part.std_beta],
            fmt="o",
            ms=3,
            color="k",
            lw=0.8,
        )
        ax.axvline(0, color="#999", lw=0.6)
        ax.set_yticks(y, part.predictor if i % ncols == 0 else [""] * len(y), fontsize=7)
        ax.set_title(region.replace("_", " "), fontsize=8)
        ax.set_xlabel("standardised beta", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return _png(fig)


def _lesion_figure(long: pd.DataFrame) -> str:
    part = long[(long.region == "lesions") & long.r2star_median.notna() & (long.group == "MS")]
    if part.empty:
        return "<p>No lesion R2* (no lesion masks).</p>"
    fig, axes = _figure(1, 1, size=(4.5, 3.2))
    ax = axes[0]
    for label, sub in part.groupby(part.apply(_label, axis=1)):
        ax.scatter(
            sub.disease_duration,
            sub.r2star_median,
            s=8,
            color=_COLOURS.get(label, "k"),
            label=label,
        )
    ok = part.disease_duration.notna()
    note = ""
    if ok.sum() >= 3 and part.disease_duration[ok].nunique() >= 2:
        slope, intercept = np.polyfit(part.disease_duration[ok], part.r2star_median[ok], 1)
        xs = np.linspace(part.disease_duration.min(), part.disease_duration.max(), 10)
        ax.plot(xs, intercept + slope * xs, color="k", lw=1)
    else:
        note = (
            "<p class='small'>no trend line: fewer than 3 patients with 2 or more distinct "
            "durations.</p>"
        )
    ax.set_xlabel("disease duration (years)", fontsize=8)
    ax.set_ylabel("lesion R2* (1/s)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig) + note


def _age_models(age_model: pd.DataFrame) -> str:
    if age_model.empty:
        return "<p>No age model could be fitted.</p>"
    columns = ["region", "model", "n_hc", "residual_sd", "residual_df", "reference_age"]
    return _table(age_model[columns])


def _versions() -> str:
    items = [("ironmap", __version__), ("python", platform.python_version())]
    for pkg in ("numpy", "scipy", "pandas", "statsmodels", "nibabel", "matplotlib"):
        try:
            items.append((pkg, version(pkg)))
        except PackageNotFoundError:  # pragma: no cover - dependencies are installed
            items.append((pkg, "?"))
    return ", ".join(f"{k} {v}" for k, v in items)


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_html(
        index=False, float_format=lambda x: f"{x:.{digits}g}", na_rep="", border=0, escape=True
    )


def _methods(result) -> str:
    model = result.analysis.normative
    n_sites = len(model.combat.sites)
    return f"""
<p>R2* (1/s) was fitted voxel-wise to the multi-echo gradient-echo magnitudes by ironmap;
regional R2* is the median over the voxels of each structure (the fit method and
partial-volume threshold of each participant are recorded in its provenance file). Site
effects were removed with ComBat (Johnson et al. 2007; Fortin et al. 2018) on log R2*, fitted
on the healthy controls only ({int(model.n_hc.max())} controls at {n_sites} sites) and applied
to every participant: each site's location and scale were estimated per region with
empirical-Bayes pooling across regions, preserving a natural cubic spline of age (1-3 degrees
of freedom chosen per region by leave-one-out prediction error, as in ComBat-GAM, Pomponio et
al. 2020) and sex. Sites with fewer than {MIN_CONTROLS_PER_SITE} controls kept the pooled
scale; participants at sites without controls could not be harmonised and were excluded (see
the participant flow). Harmonised R2* was corrected to the controls' median age
({model.reference_age:.1f} years) with the controls' age curve; z-scores use the prediction
interval of the control model (residual, age-curve and site-term uncertainty). Groups were
compared on the age-corrected R2* by ordinary least squares adjusted for sex with site as a
fixed effect, on the participants at sites holding both groups of a contrast, with HC3
heteroscedasticity-robust standard errors; Cohen's d is the difference over the controls' SD
with a stratified bootstrap 95 % CI; phenotypes were compared by a robust Wald F-test; a mixed
model with a random site intercept is given as a sensitivity analysis
(group_comparison_mixed.tsv). p-values were corrected for the false discovery rate
(Benjamini-Hochberg) across regions within each contrast. In MS (CIS excluded), age-corrected
R2* was regressed on disease duration, EDSS, log(1 + T2 lesion volume), normalised brain volume
and cortical grey-matter volume as percent of intracranial volume, with sex as covariate
(multivariable models only with at least 10 patients per predictor; stepwise selection is
exploratory and reported with bootstrap inclusion frequencies). Lesion R2* was modelled with
age, sex and site as covariates, and relative to each participant's NAWM.</p>
<p class="small">References: Ropele S et al. Determinants of iron accumulation in deep grey
matter of multiple sclerosis patients. Mult Scler 2014;20:1692-8. Johnson WE, Li C, Rabinovic A.
Adjusting batch effects in microarray expression data using empirical Bayes methods.
Biostatistics 2007;8:118-27. Fortin JP et al. Harmonization of cortical thickness measurements
across scanners and sites. NeuroImage 2018;167:104-20. Pomponio R et al. Harmonization of
large MRI datasets for the analysis of brain imaging patterns throughout the lifespan.
NeuroImage 2020;208:116450. Long JS, Ervin LH. Using heteroscedasticity consistent standard
errors in the linear regression model. Am Stat 2000;54:217-24. Benjamini Y, Hochberg Y.
Controlling the false discovery rate. J R Stat Soc B 1995;57:289-300.</p>
"""


def _flow_table(flow: pd.DataFrame) -> pd.DataFrame:
    flow = flow.assign(label=group_label(flow.group, flow.phenotype))
    counts = flow.pivot_table(
        index="reason", columns="label", values="participant_id", aggfunc="count", fill_value=0
    )
    counts.index = [r or "analysed" for r in counts.index]
    return counts.rename_axis(columns=None).reset_index(names="status / reason")


def _harmonization_table(harmonization: pd.DataFrame) -> str:
    if harmonization.empty:
        return "<p>No site harmonisation could be estimated.</p>"
    table = harmonization.assign(
        cell=lambda d: (
            d.location_percent.map("{:+.1f} %".format) + " / x" + d.scale.map("{:.2f}".format)
        )
    )
    cells = table.pivot(index="region", columns="site", values="cell")
    return _table(cells.rename_axis(columns=None).reset_index())


def _cell(row) -> str:
    if row.contrast == "phenotype-omnibus":
        return "" if pd.isna(row.p) else f"F = {row.statistic:.2f}, p_FDR = {row.p_fdr:.3g}"
    if pd.isna(row.estimate):
        return "n.i." if str(row.note).startswith("not identifiable") else "n/a"
    return f"{row.estimate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}], p_FDR = {row.p_fdr:.3g}"


def _comparison_grid(comparison: pd.DataFrame) -> str:
    """Regions x contrasts grid of "estimate [CI], p_FDR", and the contrasts' notes."""
    if comparison.empty:
        return "<p>No comparison could be made.</p>"
    table = comparison.assign(cell=comparison.apply(_cell, axis=1))
    contrasts = list(dict.fromkeys(table.contrast))
    heads = {}
    for contrast, sub in table.groupby("contrast", sort=False):
        n = (
            f"n = {sub.n_a.max()}"
            if contrast == "phenotype-omnibus"
            else (f"n = {sub.n_a.max()} vs {sub.n_b.max()}")
        )
        heads[contrast] = f"{contrast} ({n})"
    grid = table.pivot(index="region", columns="contrast", values="cell")
    grid = grid.reindex(index=list(dict.fromkeys(table.region)), columns=contrasts)
    grid = grid.rename(columns=heads).rename_axis(columns=None).reset_index()
    notes = table[table.note != ""].drop_duplicates(["contrast", "note"])
    items = "".join(
        f"<li><b>{html.escape(c)}</b>: {html.escape(n)}</li>"
        for c, n in zip(notes.contrast, notes.note, strict=True)
    )
    return _table(grid) + (f"<ul class='small'>{items}</ul>" if items else "")


def write_report(path: str | Path, result) -> Path:
    """Write ``report.html`` (atomically) from a :class:`~ironmap.workflows.group.GroupResult`."""
    subjects = result.subjects[result.subjects.analysed]
    regions = result.regions
    long = regions[regions.hemisphere == "both"].merge(subjects, on="participant_id")
    comparison, determinants = result.comparison, result.determinants
    multi = determinants[determinants.model != "univariable"]
    sections = [
        f"<h1>ironmap: deep grey-matter R2* in MS</h1><p class='small'>Generated "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by ironmap {__version__}."
        f" {len(subjects)} of {len(result.flow)} participants analysed, "
        f"{subjects.site.nunique()} sites.</p>",
        "<h2>Cohort (analysed participants)</h2>" + _cohort_table(subjects),
        "<h2>Participant flow</h2><p>Every row of participants.tsv, analysed or excluded with "
        "the reason (group/participant_flow.tsv).</p>" + _table(_flow_table(result.flow)),
        "<h2>Site harmonisation</h2><p>ComBat fitted on controls (log R2*): each site's "
        "location (percent of R2*) and scale (factor on the residual SD) per region "
        "(group/harmonization.tsv).</p>" + _harmonization_table(result.harmonization),
        "<h2>R2* against age</h2><p>Harmonised R2* of every participant with the controls' "
        "normative curve and its 95 % band.</p>" + _age_figure(long, result.analysis.normative),
        "<h2>Age-corrected R2* by group</h2>" + _group_figure(long),
        "<h2>Group comparisons</h2><p>Differences of age-corrected R2* (1/s): estimate [95 % "
        "CI] and FDR-adjusted p, adjusted for age and sex with site as fixed effect (HC3 "
        "robust SE); Cohen's d in group/group_comparison.tsv. n gives the participants that "
        "inform each contrast (a vs b, the most over regions); n.i.: not identifiable.</p>"
        + _comparison_grid(comparison),
        "<h2>Determinants of R2* in MS</h2>"
        + _forest_figure(determinants)
        + "<p>Multivariable and stepwise models (stepwise: exploratory, with bootstrap "
        "inclusion frequency).</p>"
        + (_table(multi) if len(multi) else "<p>No multivariable or stepwise model.</p>"),
        "<h2>Lesion R2* and disease duration</h2>" + _lesion_figure(long),
        "<h2>Age models</h2>" + _age_models(result.age_model),
        "<h2>Methods</h2>" + _methods(result),
        f"<p class='small'>Software: {html.escape(_versions())}.</p>",
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>ironmap report</title><style>"
        + _STYLE
        + "</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )
    atomic_write_bytes(path, page.encode("utf-8"))
    return Path(path)
