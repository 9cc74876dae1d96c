"""The sessions the longitudinal models see: every timed session's R2*, site-harmonised with the
controls' cross-sectional model and site-adjusted (:func:`harmonise_sessions`,
``group/longitudinal_sessions.tsv``). Moved from :mod:`.longitudinal`, unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..defaults import MIN_VOXELS
from .age import NormativeModel

__all__ = [
    "SESSION_VALUE_COLUMNS",
    "harmonise_sessions",
]

#: Columns of ``group/longitudinal_sessions.tsv``.
SESSION_VALUE_COLUMNS = [
    "participant_id",
    "session",
    "region",
    "time_years",
    "age",
    "edss",
    "time_source",
    "r2star_median",
    "r2star_harmonized",
    "r2star_site_adjusted",
    "scanner",
]


def harmonise_sessions(
    regions: pd.DataFrame,
    timing: pd.DataFrame,
    subjects: pd.DataFrame,
    normative: NormativeModel,
    *,
    min_voxels: int = MIN_VOXELS,
) -> pd.DataFrame:
    """Every timed session's harmonised and site-adjusted R2* (baseline controls' model).

    Parameters
    ----------
    regions : pandas.DataFrame
        Participant-stage rows of every session (``participant_id``, ``session``, ``region``,
        ``hemisphere``, ``r2star_median``).
    timing : pandas.DataFrame
        :func:`~.sessions.collect_timing` rows (``time_years``, ``age`` of each session).
    subjects : pandas.DataFrame
        Analysed participants: ``participant_id, group, sex, site``.
    normative : NormativeModel
    min_voxels : int
        Minimum-voxel rule: a session's structure with fewer voxels in either hemisphere
        (:func:`~.analysis.small_regions`) has NaN harmonised and site-adjusted R2* (its
        measured ``r2star_median`` is kept) and enters no longitudinal model.

    Returns
    -------
    pandas.DataFrame
        :data:`SESSION_VALUE_COLUMNS`, one row per timed session x modelled region.
    """
    both = regions[(regions["hemisphere"] == "both") & regions["region"].isin(normative.regions)]
    both = both[["participant_id", "session", "region", "r2star_median"]]
    small = _small_sessions(regions, min_voxels)
    if "scanner" not in timing.columns:
        timing = timing.assign(scanner=np.nan)
    keyed = both.merge(timing, on=["participant_id", "session"], how="inner")
    keyed = keyed.merge(
        subjects[["participant_id", "group", "sex", "site"]], on="participant_id", how="inner"
    )
    if keyed.empty:
        return pd.DataFrame(columns=SESSION_VALUE_COLUMNS)
    index = ["participant_id", "session"]
    kept = keyed["r2star_median"].where(~_keys(keyed).isin(small))
    wide = keyed.assign(r2star_median=kept).pivot(
        index=index, columns="region", values="r2star_median"
    )
    wide = wide.reindex(columns=list(normative.regions))
    info = keyed.drop_duplicates(index).set_index(index).loc[wide.index]
    values = normative.transform(
        wide.to_numpy(float),
        info["age"].to_numpy(float),
        info["sex"].to_numpy(object),
        info["site"].to_numpy(object),
        is_control=(info["group"] == "HC").to_numpy(),
    )
    combat = normative.combat
    idx = combat.site_index(info["site"].to_numpy(object))
    location = np.full(wide.shape, np.nan)
    location[idx >= 0] = combat.gamma_star[idx[idx >= 0]] * np.sqrt(combat.var_pooled)
    values["r2star_site_adjusted"] = wide.to_numpy(float) * np.exp(-location)
    columns = pd.Index(normative.regions, name="region")
    frames = [
        pd.DataFrame(values[name], index=wide.index, columns=columns)
        .stack(future_stack=True)
        .rename(name)
        for name in ("r2star_harmonized", "r2star_site_adjusted")
    ]
    harmonised = pd.concat(frames, axis=1).reset_index()
    out = keyed.merge(harmonised, on=[*index, "region"], how="left")
    order = {r: i for i, r in enumerate(normative.regions)}
    out = out.sort_values(
        ["participant_id", "time_years", "region"],
        key=lambda c: c.map(order) if c.name == "region" else c,
    )
    out = out[SESSION_VALUE_COLUMNS].reset_index(drop=True)
    out["session"] = out["session"].astype(object).where(out["session"] != "", np.nan)
    return out


def _keys(table: pd.DataFrame) -> pd.MultiIndex:
    """``(participant_id, session, region)`` of each row (session '' where missing)."""
    session = table["session"].astype(object)
    return pd.MultiIndex.from_arrays(
        [table["participant_id"], session.where(session.notna(), ""), table["region"]]
    )


def _small_sessions(regions: pd.DataFrame, min_voxels: int) -> pd.MultiIndex:
    """``(participant_id, session, region)`` of the structures the minimum-voxel rule leaves
    out (session '' where the table has none)."""
    from .analysis import small_regions  # a function-level import: analysis is the caller's

    small = small_regions(regions, min_voxels)
    if "session" not in small.columns:
        small = small.assign(session="")
    return _keys(small)
