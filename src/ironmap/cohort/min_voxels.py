"""The minimum-voxel rule of the group stage.

A participant's deep grey-matter structure with fewer R2* voxels than ``--min-voxels`` in either
hemisphere enters no group statistics: :func:`small_regions` lists those structures,
:func:`_apply_min_voxels` sets their measure to NaN (with one warning).
"""

from __future__ import annotations

import warnings

import pandas as pd

from ..defaults import MIN_VOXELS
from ..errors import IronmapWarning
from ..regions.labels import DEEP_GM
from .measures import Measure

SMALL_COLUMNS = ["participant_id", "region", "n_voxels_left", "n_voxels_right"]


def small_regions(regions: pd.DataFrame, min_voxels: int = MIN_VOXELS) -> pd.DataFrame:
    """Participant x deep grey-matter structure with fewer than ``min_voxels`` in a hemisphere.

    Parameters
    ----------
    regions : pandas.DataFrame
        ``regions.tsv`` rows (``participant_id, region, hemisphere, n_voxels``); structures
        without both a ``left`` and a ``right`` row with a count are never listed (nothing is
        known about them).
    min_voxels : int
        The minimum-voxel rule's threshold (:data:`ironmap.defaults.MIN_VOXELS`).

    Returns
    -------
    pandas.DataFrame
        :data:`SMALL_COLUMNS`: one row per participant x structure the rule leaves out, with the
        two hemispheres' voxel counts; sorted by region (as :data:`DEEP_GM`) and participant.
        With a ``session`` column in ``regions`` (several sessions), one row per participant x
        session x structure, ``session`` after ``participant_id``.
    """
    keys = ["participant_id", *(["session"] if "session" in regions.columns else []), "region"]
    columns = [*keys, *SMALL_COLUMNS[2:]]
    needed = {"participant_id", "region", "hemisphere", "n_voxels"}
    if regions.empty or not needed <= set(regions.columns):
        return pd.DataFrame(columns=columns)
    sides = regions[
        regions["region"].isin(DEEP_GM) & regions["hemisphere"].isin(["left", "right"])
    ]
    sides = sides.assign(n=pd.to_numeric(sides["n_voxels"], errors="coerce"))
    if "session" in keys:  # sessionless rows of a table with sessions: "" (not dropped)
        session = sides["session"].astype(object)
        sides = sides.assign(session=session.where(session.notna(), ""))
    counts = sides.pivot_table(index=keys, columns="hemisphere", values="n", aggfunc="min")
    if not {"left", "right"} <= set(counts.columns):
        return pd.DataFrame(columns=columns)
    counts = counts[["left", "right"]].dropna()
    low = counts[(counts < min_voxels).any(axis=1)].astype(int).reset_index()
    low.columns = columns
    order = low["region"].map({r: i for i, r in enumerate(DEEP_GM)})
    low = low.assign(order=order).sort_values(["order", *keys[:-1]])
    return low[columns].reset_index(drop=True)


def _apply_min_voxels(
    long: pd.DataFrame, small: pd.DataFrame, min_voxels: int, measure: Measure
) -> pd.DataFrame:
    """``long`` (bilateral rows) with the small structures' measure NaN, and one warning."""
    if small.empty:
        return long
    key = pd.MultiIndex.from_frame(long[["participant_id", "region"]])
    drop = key.isin(pd.MultiIndex.from_frame(small[["participant_id", "region"]]))
    per_region = small["region"].value_counts(sort=False)
    listed = ", ".join(f"{region} {n} participant(s)" for region, n in per_region.items())
    warnings.warn(
        f"minimum-voxel rule: fewer than {min_voxels} voxels in a hemisphere, so that structure "
        f"enters no group statistics ({listed}); the participants' other structures are "
        "analysed (--min-voxels; note in group/participant_flow.tsv)",
        IronmapWarning,
        stacklevel=3,
    )
    return long.assign(**{measure.column: long[measure.column].where(~drop)})
