"""The report's figures of the determinants in MS: the forest plot and R2* against EDSS and
disease duration.

The data each plot is drawn from are built by a function of their own (:func:`forest_rows`,
:func:`clinical_lines`) so that they can be checked without reading pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cohort.compare import MS_LABELS
from ..cohort.determinants import OPTIONAL_PREDICTORS, PER_PREDICTOR, PREDICTORS, PRIMARY_MODEL
from ..regions.labels import DEEP_GM
from .style import MARKERS, PALETTE, first_column, labels, new_figure, pretty_region

__all__ = [
    "PREDICTOR_LABELS",
    "clinical_figure",
    "clinical_lines",
    "forest_convention",
    "forest_figure",
    "forest_limits",
    "forest_model",
    "forest_predictors",
    "forest_rows",
]

#: Readable predictor names (figures and tables; the unit each beta is per is in
#: :data:`ironmap.cohort.determinants.UNITS`).
_NAMES = {
    "disease_duration": "disease duration",
    "edss": "EDSS",
    "lesion_volume_ml": "T2 lesion volume",
    "nbv": "NBV",
    "cortical_gm_ml": "cortical GM (% of ICV)",
    "n_prl": "PRL count",
}
#: Row labels of the forest plot, top to bottom, keyed by predictor name (every predictor of
#: the determinants, in their order).
PREDICTOR_LABELS = {
    p: _NAMES.get(p, p.replace("_", " ")) for p in (*PREDICTORS, *OPTIONAL_PREDICTORS)
}
#: What the clinical scatter's x axes are, with units.
AXIS_LABELS = {"edss": "EDSS", "disease_duration": "disease duration (years)"}


def forest_model(determinants: pd.DataFrame) -> str | None:
    """The model set the forest plot shows: ``multivariable`` if fitted, else ``univariable``."""
    for model in ("multivariable", "univariable"):
        if (determinants["model"] == model).any():
            return model
    return None


def forest_predictors(determinants: pd.DataFrame, model: str = "multivariable") -> list[str]:
    """The predictors the forest plot has rows for: those of :data:`PREDICTOR_LABELS` that
    ``model`` fitted in some region, in that order (an optional predictor such as ``n_prl``
    gets no empty row in a cohort without it)."""
    fitted = set(determinants.loc[determinants["model"] == model, "predictor"])
    return [p for p in PREDICTOR_LABELS if p in fitted]


def forest_rows(determinants: pd.DataFrame, model: str = "multivariable") -> pd.DataFrame:
    """What the forest plot draws: one row per region x predictor of ``model``.

    Returns
    -------
    pandas.DataFrame
        ``region, predictor, row, std_beta, std_low, std_high, p_fdr, filled, level``.
        ``filled``: p_FDR < 0.05 in the pre-specified primary model (no other model is
        marked). ``row`` is the predictor's position in :func:`forest_predictors` (0 = top),
        the same in every panel whatever predictors a region's model has (the lesion outcomes
        have two). ``std_low``, ``std_high``: the false-coverage-rate adjusted CI of the
        standardised beta (``std_ci_low_fcr``, ``std_ci_high_fcr`` of determinants.tsv, at
        confidence ``level`` = ``fcr_level``), which excludes 0 exactly for the rows with
        p_FDR < 0.05 (Benjamini & Yekutieli 2005).
    """
    part = determinants[determinants["model"] == model]
    order = {p: i for i, p in enumerate(forest_predictors(determinants, model))}
    part = part[part["predictor"].isin(order)]
    return pd.DataFrame(
        {
            "region": part["region"].to_numpy(),
            "predictor": part["predictor"].to_numpy(),
            "row": part["predictor"].map(order).to_numpy(),
            "std_beta": part["std_beta"].to_numpy(),
            "std_low": part["std_ci_low_fcr"].to_numpy(),
            "std_high": part["std_ci_high_fcr"].to_numpy(),
            "p_fdr": part["p_fdr"].to_numpy(),
            "filled": ((part["p_fdr"] < 0.05) & (model == PRIMARY_MODEL)).to_numpy(),
            "level": part["fcr_level"].to_numpy(),
        }
    )


def forest_convention(determinants: pd.DataFrame) -> str:
    """The caption's sentence on the forest plot's bars: the FCR level and R of m."""
    model = forest_model(determinants)
    if model is None:
        return ""
    rows = forest_rows(determinants, model)
    family = determinants[(determinants["model"] == model) & determinants["p"].notna()]
    selected = int((family["p_fdr"] < 0.05).sum())
    level = rows["level"].dropna()
    at = f" {100 * level.iloc[0]:.2f} %" if len(level) else ""
    return (
        f"Bars: false-coverage-rate adjusted CIs (Benjamini-Yekutieli) at level{at} = "
        f"1 - R q / m with R = {selected} of the m = {len(family)} {model} tests at p_FDR < "
        "q = 0.05, so a bar excludes 0 exactly "
        + (
            "when its point is filled"
            if model == PRIMARY_MODEL
            else "at p_FDR < 0.05 (not filled: not the primary model)"
        )
        + " (95 % CIs in group/determinants.tsv)."
    )


def forest_limits(rows: pd.DataFrame) -> tuple[float, float]:
    """The one x range of every forest panel: all CIs and 0, with 5 % margins."""
    values = np.concatenate([rows["std_low"], rows["std_high"], rows["std_beta"], [0.0]])
    values = values[np.isfinite(values)]
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low) if high > low else 0.5
    return low - pad, high + pad


def forest_figure(determinants: pd.DataFrame):
    """Standardised betas with FCR-adjusted CIs, one panel per outcome (one shared x range),
    rows keyed by predictor."""
    model = forest_model(determinants)
    if model is None:
        return "No determinant model could be fitted (too few MS patients)."
    rows = forest_rows(determinants, model)
    regions = list(dict.fromkeys(rows["region"]))
    ncols = min(len(regions), 5)
    nrows = int(np.ceil(len(regions) / ncols))
    fig, axes = new_figure(ncols, nrows, height=1.45, sharey=True)
    predictors = forest_predictors(determinants, model)
    n_rows = len(predictors)
    limits = forest_limits(rows)
    for i, (ax, region) in enumerate(zip(axes, regions, strict=False)):
        part = rows[rows["region"] == region]
        y = n_rows - 1 - part["row"].to_numpy()
        significant = part["filled"].to_numpy()
        beta = part["std_beta"].to_numpy()
        err = np.vstack([beta - part["std_low"].to_numpy(), part["std_high"].to_numpy() - beta])
        for filled in (True, False):
            sel = significant == filled
            if not sel.any():
                continue
            ax.errorbar(
                beta[sel],
                y[sel],
                xerr=err[:, sel],
                fmt="o",
                ms=3.5,
                color="k",
                mfc="k" if filled else "white",
                lw=0.8,
                mew=0.8,
            )
        ax.axvline(0, color="#999", lw=0.6)
        for k in range(n_rows):
            ax.axhline(k, color="#eee", lw=0.6, zorder=0)
        ax.set_title(pretty_region(region))
        if i + ncols >= len(regions):  # one x range: labelled under the lowest panels only
            ax.set_xlabel("standardised beta")
        ax.set_xlim(*limits)
        ax.set_ylim(-0.6, n_rows - 0.4)
    # one y axis shared by every panel, labelled at the start of each row of panels
    axes[0].set_yticks(range(n_rows)[::-1], [PREDICTOR_LABELS[p] for p in predictors])
    for ax in axes[len(regions) :]:
        ax.axis("off")
    return fig


def clinical_lines(
    long: pd.DataFrame, determinants: pd.DataFrame, predictor: str
) -> dict[str, dict]:
    """Points and fitted line of age-corrected deep-GM R2* against ``predictor``, per region.

    Returns
    -------
    dict
        region -> ``{"points": DataFrame(x, y, label), "beta", "p", "p_fdr", "n", "x", "y"}``:
        the clinically definite MS patients (CIS excluded, as in the determinants) with both
        values; the line has the univariable slope ``beta`` of ``determinants.tsv`` (age-,
        sex- and site-adjusted, 1/s per unit) and passes through the mean of those points
        (where the least-squares line at the sample's covariate mix passes); ``x``, ``y``:
        its two end points. Regions without a univariable row have ``beta`` NaN.
    """
    uni = determinants[
        (determinants["model"] == "univariable") & (determinants["predictor"] == predictor)
    ].set_index("region")
    out: dict[str, dict] = {}
    for region in DEEP_GM:
        part = long[(long["region"] == region) & labels(long).isin(MS_LABELS)]
        part = part[part["r2star_corrected"].notna() & part[predictor].notna()]
        if part.empty:
            continue
        points = pd.DataFrame(
            {"x": part[predictor], "y": part["r2star_corrected"], "label": labels(part)}
        )
        beta = float(uni.at[region, "beta"]) if region in uni.index else np.nan
        xs = np.array([points["x"].min(), points["x"].max()])
        out[region] = {
            "points": points,
            "beta": beta,
            "p": float(uni.at[region, "p"]) if region in uni.index else np.nan,
            "p_fdr": float(uni.at[region, "p_fdr"]) if region in uni.index else np.nan,
            "n": int(uni.at[region, "n"]) if region in uni.index else len(points),
            "x": xs,
            "y": points["y"].mean() + beta * (xs - points["x"].mean()),
        }
    return out


def clinical_figure(long: pd.DataFrame, determinants: pd.DataFrame, predictor: str):
    """One panel per deep-GM region: age-corrected R2* against ``predictor`` by phenotype."""
    from matplotlib.ticker import MultipleLocator

    lines = clinical_lines(long, determinants, predictor)
    if not lines:
        return f"No MS patient has both age-corrected R2* and {AXIS_LABELS[predictor]}."
    ncols, nrows = 4, int(np.ceil((len(lines) + 1) / 4))
    fig, axes = new_figure(ncols, nrows, height=1.95)
    unit = "year" if predictor == "disease_duration" else "point"
    for ax, (region, line) in zip(axes, lines.items(), strict=False):
        points = line["points"]
        for g in [g for g in MS_LABELS if g in set(points["label"])]:
            sub = points[points["label"] == g]
            ax.scatter(sub["x"], sub["y"], s=7, color=PALETTE[g], marker=MARKERS[g], lw=0, label=g)
        if np.isfinite(line["beta"]):
            ax.plot(line["x"], line["y"], color="#333", lw=1.0)
            # p_FDR: the significance convention of the forest plot and the tables
            fit = f"beta = {line['beta']:.2f} 1/s per {unit}\np_FDR = {line['p_fdr']:.2g}"
        else:
            fit = f"no model: n = {line['n']} < {PER_PREDICTOR}"
        ax.set_title(f"{pretty_region(region)}\n{fit}")
        ax.set_xlabel(AXIS_LABELS[predictor])
        if predictor == "edss":  # whole EDSS points, not 2.5-steps of a 0.5-step scale
            ax.xaxis.set_major_locator(MultipleLocator(2))
        if first_column(ax):
            ax.set_ylabel("age-corrected R2* (1/s)")
    handles: dict = {}
    for ax in axes[: len(lines)]:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, handle)
    order = [g for g in MS_LABELS if g in handles]
    axes[len(lines)].legend(
        [handles[g] for g in order],
        order,
        loc="center",
        frameon=False,
        title="phenotype",
        markerscale=1.5,
    )
    for ax in axes[len(lines) :]:
        ax.axis("off")
    return fig
