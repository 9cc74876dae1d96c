"""The report's R2* figures: against age with the controls' curve, by group, lesion R2*.

Each function returns a matplotlib ``Figure`` to embed, or a sentence saying why there is none.
Call them inside :func:`~ironmap.report.style.plotting`. Colours and markers come from
:data:`~ironmap.report.style.PALETTE` and :data:`~ironmap.report.style.MARKERS` only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cohort.analysis import CORRECTED_REGIONS
from .style import (
    GROUP_ORDER,
    MARKERS,
    ONE_COLUMN_IN,
    PALETTE,
    first_column,
    labels,
    new_figure,
    pretty_region,
)
from .tables import curve_title

__all__ = ["age_figure", "group_figure", "lesion_figure", "normative_regions"]


def _present(values: pd.Series) -> list[str]:
    return [g for g in GROUP_ORDER if g in set(values)]


def _scatter(ax, part: pd.DataFrame, x: str, y: str, *, size: float = 16) -> None:
    """One scatter per group, in group order, with the group's colour and marker."""
    label = labels(part)
    for g in _present(label):
        sub = part[label == g]
        ax.scatter(
            sub[x], sub[y], s=size, color=PALETTE[g], marker=MARKERS[g], alpha=0.8, lw=0, label=g
        )


def normative_regions(long: pd.DataFrame, column: str) -> list[str]:
    """Deep grey matter then NAWM: the regions with a value of ``column`` (in that order)."""
    have = set(long.loc[long[column].notna(), "region"])
    return [r for r in CORRECTED_REGIONS if r in have]


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    return ncols, max(1, int(np.ceil(n / ncols)))


def age_figure(long: pd.DataFrame, model):
    """Harmonised R2* against age, every group, with the controls' curve and 95 % band.

    ``model`` is the :class:`~ironmap.cohort.age.NormativeModel` (curve at the baseline sex and
    pooled site); NAWM is drawn like the deep grey matter.
    """
    if long.empty or model is None or long["r2star_harmonized"].isna().all():
        return "No harmonised R2* to show (no analysed participant has one)."
    regions = [r for r in normative_regions(long, "r2star_harmonized") if r in model.regions]
    ncols, nrows = _grid(len(regions))
    fig, axes = new_figure(ncols, nrows, height=1.75)
    ages = np.linspace(long["age"].min(), long["age"].max(), 100)
    curve = model.combat.grand_mean + model.age_term(ages)  # (100, regions), baseline sex
    for ax, region in zip(axes, regions, strict=False):
        g = model.regions.index(region)
        band = 1.96 * model.residual_sd[g]
        ax.fill_between(
            ages,
            np.exp(curve[:, g] - band),
            np.exp(curve[:, g] + band),
            color=PALETTE["HC"],
            alpha=0.12,
            lw=0,
        )
        ax.plot(ages, np.exp(curve[:, g]), color=PALETTE["HC"], lw=1.1)
        part = long[(long["region"] == region) & long["r2star_harmonized"].notna()]
        _scatter(ax, part, "age", "r2star_harmonized", size=4)
        ax.set_title(curve_title(region, model.curves[region].name))
        ax.set_xlabel("age (years)")
        if first_column(ax):
            ax.set_ylabel("R2* (1/s)")
    for ax in axes[len(regions) :]:
        ax.axis("off")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="outside lower center", ncols=len(names), frameon=False, markerscale=2
    )
    return fig


def group_figure(long: pd.DataFrame):
    """Age-corrected R2* per group: boxes (median, IQR, 1.5 IQR whiskers), points, n per box."""
    if long.empty or long["r2star_corrected"].isna().all():
        return "No age-corrected R2* to show (no analysed participant has one)."
    regions = normative_regions(long, "r2star_corrected")
    ncols, nrows = _grid(len(regions))
    fig, axes = new_figure(ncols, nrows, height=1.9)
    rng = np.random.default_rng(0)
    for ax, region in zip(axes, regions, strict=False):
        part = long[(long["region"] == region) & long["r2star_corrected"].notna()]
        label = labels(part)
        present = _present(label)
        data = [part.loc[label == g, "r2star_corrected"].to_numpy() for g in present]
        boxes = ax.boxplot(
            data,
            showfliers=False,
            widths=0.6,
            patch_artist=True,
            medianprops={"color": "k", "lw": 1.0},
            whiskerprops={"color": "#444", "lw": 0.7},
            capprops={"color": "#444", "lw": 0.7},
        )
        for box, g in zip(boxes["boxes"], present, strict=True):
            box.set(facecolor=PALETTE[g], alpha=0.22, edgecolor="#444")
        for i, (g, values) in enumerate(zip(present, data, strict=True), start=1):
            ax.scatter(
                i + rng.uniform(-0.17, 0.17, values.size),
                values,
                s=3,
                color=PALETTE[g],
                marker=MARKERS[g],
                alpha=0.75,
                lw=0,
            )
        ticks = [f"{g}\nn={v.size}" for g, v in zip(present, data, strict=True)]
        ax.set_xticks(range(1, len(present) + 1), ticks)
        ax.set_title(pretty_region(region))
        if first_column(ax):
            ax.set_ylabel("age-corrected R2* (1/s)")
    for ax in axes[len(regions) :]:
        ax.axis("off")
    return fig


def _lesion_points(long: pd.DataFrame) -> pd.DataFrame:
    """MS participants' lesion R2* rows that have a disease duration."""
    part = long[
        (long["region"] == "lesions") & long["r2star_median"].notna() & (long["group"] == "MS")
    ]
    return part[part["disease_duration"].notna()]


def _has_trend(part: pd.DataFrame) -> bool:
    return len(part) >= 3 and part["disease_duration"].nunique() >= 2


def lesion_trend_note(long: pd.DataFrame) -> str:
    """What the lesion figure's caption must add when it draws no line ("" otherwise)."""
    part = _lesion_points(long)
    if part.empty or _has_trend(part):
        return ""
    return "No trend line: fewer than 3 patients with 2 or more distinct durations."


def lesion_figure(long: pd.DataFrame):
    """Lesion R2* against disease duration in MS, with a least-squares line (3+ patients)."""
    part = _lesion_points(long)
    if part.empty:
        return "No lesion R2* with a disease duration (no lesion masks, or no durations)."
    fig, axes = new_figure(1, 1, height=2.6, width=ONE_COLUMN_IN)
    ax = axes[0]
    _scatter(ax, part, "disease_duration", "r2star_median", size=8)
    if _has_trend(part):
        slope, intercept = np.polyfit(part["disease_duration"], part["r2star_median"], 1)
        xs = np.linspace(part["disease_duration"].min(), part["disease_duration"].max(), 10)
        ax.plot(xs, intercept + slope * xs, color="#444", lw=1.0)
    ax.set_xlabel("disease duration (years)")
    ax.set_ylabel("lesion R2* (1/s)")
    ax.legend(frameon=False, markerscale=1.5)
    return fig
