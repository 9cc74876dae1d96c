"""The tables of the group models: site harmonisation (location and scale per region and
site) and the controls' age model per region, with the age curve's readable name
(:func:`curve_label`, also the figures' panel titles).
"""

from __future__ import annotations

import re

import pandas as pd

from .style import pretty_region


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
