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


def _cohort_table(subjects: pd.DataFrame) -> pd.DataFrame:
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
    return pd.DataFrame(rows)


def _age_figure(long: pd.DataFrame, age_model: pd.DataFrame) -> str:
    from ..cohort.age import NormativeModel

    regions = [r for r in DEEP_GM if r in set(age_model.region)]
    fig, axes = _figure(4, int(np.ceil(len(regions) / 4)) or 1)
    ages = np.linspace(long.age.min(), long.age.max(), 100)
    for ax, region in zip(axes, regions, strict=False):
        part = long[long.region == region]
        m = age_model[age_model.region == region].iloc[0]
        params = {k[6:]: m[k] for k in m.index if k.startswith("param_") and k != "param_rate"}
        params = {k: v for k, v in params.items() if np.isfinite(v)}
        sites = {k[5:]: m[k] for k in m.index if k.startswith("site_") and np.isfinite(m[k])}
        model = NormativeModel(
            m.model,
            params,
            m.param_rate if np.isfinite(m.param_rate) else None,
            sites,
            float(np.mean(list(sites.values()))),
            m.residual_sd,
            int(m.n_hc),
        )
        for site in sites:
            ax.plot(ages, model.predict(ages, site), color="#999", lw=0.6)
        ref = model.predict(ages, m.reference_site)
        band = 1.96 * m.residual_sd
        ax.fill_between(ages, ref - band, ref + band, color=_COLOURS["HC"], alpha=0.15, lw=0)
        ax.plot(ages, ref, color=_COLOURS["HC"], lw=1.5)
        for label, sub in part.groupby(part.apply(_label, axis=1)):
            ax.scatter(
                sub.age,
                sub.r2star_median,
                s=6,
                color=_COLOURS.get(label, "k"),
                label=label,
                alpha=0.8,
            )
        ax.set_title(f"{region.replace('_', ' ')} ({m.model})", fontsize=9)
        ax.set_xlabel("age (years)", fontsize=8)
        ax.set_ylabel("R2* (1/s)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(regions) :]:
        ax.axis("off")
    if regions:
        axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _group_figure(long: pd.DataFrame) -> str:
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
    if ok.sum() > 2:
        slope, intercept = np.polyfit(part.disease_duration[ok], part.r2star_median[ok], 1)
        xs = np.linspace(part.disease_duration.min(), part.disease_duration.max(), 10)
        ax.plot(xs, intercept + slope * xs, color="k", lw=1)
    ax.set_xlabel("disease duration (years)", fontsize=8)
    ax.set_ylabel("lesion R2* (1/s)", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


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


_METHODS = """
<p>R2* (1/s) was fitted voxel-wise to the multi-echo gradient-echo magnitudes with ironmap's
noise-floor-aware estimator (log-linear least squares on noise-corrected magnitudes; Rician
maximum likelihood with second-order bias correction where the decay reaches the noise floor).
Segmentations and lesion masks were transferred to the R2* grid with partial-volume fractions;
a voxel counted for a structure when at least 90 % of it lay inside, and lesion voxels were
excluded from deep grey matter and normal-appearing white matter. Regional R2* is the median
over those voxels. For each region a normative model of R2* against age (linear, quadratic or
the Hallgren-Sourander exponential, chosen by 5-fold cross-validation) with site as a fixed
effect was fitted in healthy controls, and every participant's R2* was corrected to the
controls' median age at the reference site, as in Ropele et al. (2014). Groups were compared by
ordinary least squares adjusted for age, sex and site (site as fixed effect); Cohen's d is the
adjusted difference over the residual SD; p-values were corrected for the false discovery rate
(Benjamini-Hochberg) across regions. In MS, age-corrected R2* was regressed on disease duration,
EDSS, T2 lesion volume, normalised brain volume and cortical grey-matter volume (multivariable,
univariable and stepwise models).</p>
<p class="small">References: Ropele S et al. Determinants of iron accumulation in deep grey
matter of multiple sclerosis patients. Mult Scler 2014;20:1692-8. Hallgren B, Sourander P. The
effect of age on the non-haemin iron in the human brain. J Neurochem 1958;3:41-51. Pei M et al.
Algorithm for fast monoexponential fitting based on auto-regression on linear operations (ARLO)
of data. Magn Reson Med 2015;73:843-50. Box MJ. Bias in nonlinear estimation. J R Stat Soc B
1971;33:171-201. Benjamini Y, Hochberg Y. Controlling the false discovery rate. J R Stat Soc B
1995;57:289-300.</p>
"""


def write_report(
    path: str | Path,
    *,
    regions: pd.DataFrame,
    subjects: pd.DataFrame,
    age_model: pd.DataFrame,
    comparison: pd.DataFrame,
    determinants: pd.DataFrame,
) -> Path:
    """Write ``report.html`` (atomically) and return its path."""
    long = regions[regions.hemisphere == "both"].merge(subjects, on="participant_id", how="left")
    comp = comparison.drop(columns=["model"]).copy()
    multi = determinants[determinants.model != "univariable"]
    sections = [
        f"<h1>ironmap: deep grey-matter R2* in MS</h1><p class='small'>Generated "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} by ironmap {__version__}."
        f" {len(subjects)} participants, {subjects.site.nunique()} sites.</p>",
        "<h2>Cohort</h2>" + _table(_cohort_table(subjects)),
        "<h2>R2* against age</h2><p>Healthy-control normative curve at the reference site with "
        "its 95 % band (blue), the other sites' curves (grey), and every participant.</p>"
        + _age_figure(long, age_model),
        "<h2>Age-corrected R2* by group</h2>" + _group_figure(long),
        "<h2>Group comparisons</h2><p>Adjusted differences of means (1/s) with 95 % CI; model "
        f"<code>{html.escape(str(comparison.model.iloc[0])) if len(comparison) else ''}</code>."
        "</p>" + _table(comp),
        "<h2>Determinants of R2* in MS</h2>"
        + _forest_figure(determinants)
        + "<p>Multivariable and stepwise models (age-corrected R2*; lesions: lesion R2*).</p>"
        + _table(multi),
        "<h2>Lesion R2* and disease duration</h2>" + _lesion_figure(long),
        "<h2>Age models</h2>"
        + _table(
            age_model[
                ["region", "model", "n_hc", "residual_sd", "reference_age", "reference_site"]
            ]
        ),
        "<h2>Methods</h2>" + _METHODS,
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
