"""The chi (susceptibility) analysis of the group stage.

The cohort statistics on regional chi (``chi_median``), through the same code path as R2*
(:func:`ironmap.cohort.analysis.analyse_cohort` with ``measure="chi"``), its warnings given once
beside R2*'s, and chi's columns beside R2*'s in ``group/regions.tsv``. No statistics live here.
Called by :func:`ironmap.workflows.group.run_group`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pandas as pd
from threadpoolctl import threadpool_limits

from ..cohort.analysis import CohortAnalysis, analyse_cohort
from ..cohort.measures import MEASURES
from ..errors import InputError, IronmapWarning

if TYPE_CHECKING:
    from .group import GroupConfig


@contextmanager
def _noting(said: list[str]) -> Iterator[list[str]]:
    """Note in ``said`` the text of every warning shown while the block runs; they are shown
    as they would be (``warnings.showwarning`` is the documented hook for this)."""
    shown = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None) -> None:
        said.append(str(message))
        shown(message, category, filename, lineno, file, line)

    warnings.showwarning = note
    try:
        yield said
    finally:
        warnings.showwarning = shown


def _chi_analysis(
    config: GroupConfig,
    regions: pd.DataFrame,
    subjects: pd.DataFrame,
    said: list[str],
) -> tuple[CohortAnalysis | None, str]:
    """The cohort statistics on regional chi (``chi_median``) when the regions tables have it:
    the analysis of R2*, through the same code path (:func:`analyse_cohort` with
    ``measure="chi"``); its warnings that R2*'s did not already give (``said``: the texts of
    the warnings shown during the R2* analysis) are given once, prefixed ``chi:``; its other
    warnings (numerical ones, R2*'s again) are not repeated. ``(None, why not)`` otherwise."""
    column = MEASURES["chi"].column
    if column not in regions or not regions[column].notna().any():
        return None, (
            "no regional chi (chi_median) in the regions tables: no phase echoes or external "
            "Chimap, or --qsm off"
        )
    known = set(said)
    try:
        with (
            threadpool_limits(limits=1, user_api="blas"),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always", IronmapWarning)
            chi = analyse_cohort(
                regions, subjects, mixed=config.mixed, min_voxels=config.min_voxels, measure="chi"
            )
    except InputError as err:  # e.g. too few controls with chi: R2* is analysed all the same
        warnings.warn(f"chi: not analysed: {err}", IronmapWarning, stacklevel=3)
        return None, f"not analysed: {err}"
    for w in caught:
        if issubclass(w.category, IronmapWarning) and str(w.message) not in known:
            warnings.warn(f"chi: {w.message}", IronmapWarning, stacklevel=3)
    return chi, ""


def _with_chi(regions: pd.DataFrame, chi: CohortAnalysis | None) -> pd.DataFrame:
    """``group/regions.tsv``: the R2* analysis's rows with chi's harmonised, corrected and
    z-scored columns beside them (when chi was analysed)."""
    if chi is None:
        return regions
    new = [c for c in chi.regions.columns if c.startswith("chi_") and c not in regions]
    keys = ["participant_id", "region", "hemisphere"]
    keys += ["session"] if "session" in regions and "session" in chi.regions else []
    return regions.merge(chi.regions[[*keys, *new]], on=keys, how="left")
