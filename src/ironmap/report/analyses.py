"""Report sentences on what the group stage left out: the minimum-voxel rule, analyses not run.

:func:`min_voxel_rule` states the rule under Table 2 with the participants it took from each
structure (:func:`ironmap.cohort.analysis.small_regions` on the analysed participants'
``regions.tsv`` rows, the same selection the group statistics made) and the small-nuclei
caveat; :func:`not_run` says why an optional analysis did not run (``analyses`` of
``group/provenance.json``, :func:`ironmap.cohort.analysis.analyses_run`).
"""

from __future__ import annotations

import html

import pandas as pd

from ..cohort.analysis import small_regions
from ..cohort.qc import MIN_REGION_VOXELS
from ..defaults import MIN_VOXELS
from .style import pretty_region

__all__ = [
    "NOT_RUN_HEADINGS",
    "SMALL_NUCLEI",
    "min_voxel_methods",
    "min_voxel_rule",
    "not_run",
    "without_small",
]

#: The nuclei the caveat names (few voxels per hemisphere at 2-3 mm).
SMALL_NUCLEI = ("substantia_nigra", "red_nucleus")

#: Section heading, start and end of the sentence saying why an optional analysis did not run.
NOT_RUN_HEADINGS = {
    "longitudinal": (
        "Change over time",
        "The longitudinal analysis was not run",
        " The results above are cross-sectional (each participant's baseline session); "
        "group/longitudinal.tsv and longitudinal_sessions.tsv are not written.",
    ),
    "lesion_models": (
        "Lesions one by one",
        "The lesion models were not run",
        " group/lesion_models.tsv is not written.",
    ),
}


def without_small(long: pd.DataFrame, result) -> pd.DataFrame:
    """``long`` (bilateral rows of the analysed participants) with ``r2star_median`` NaN where
    the minimum-voxel rule left the structure out, so that the report's descriptive columns
    (Table 2's mean (SD)) count the participants its statistics count."""
    threshold = int(getattr(result, "min_voxels", MIN_VOXELS))
    small = small_regions(result.regions, threshold)
    if small.empty:
        return long
    drop = pd.MultiIndex.from_frame(long[["participant_id", "region"]]).isin(
        pd.MultiIndex.from_frame(small[["participant_id", "region"]])
    )
    measured = [c for c in ("r2star_median", "chi_median") if c in long]  # chi: same voxels
    return long.assign(**{c: long[c].where(~drop) for c in measured})


def _has_counts(regions: pd.DataFrame) -> bool:
    """Whether the table has per-hemisphere voxel counts (the rule can be applied)."""
    return "n_voxels" in regions.columns and regions["hemisphere"].isin(["left"]).any()


def _lost(result) -> pd.Series:
    """Participants the rule left out per structure (analysed participants; DEEP_GM order)."""
    analysed = result.subjects.loc[result.subjects["analysed"].astype(bool), "participant_id"]
    regions = result.regions[result.regions["participant_id"].isin(set(analysed))]
    threshold = int(getattr(result, "min_voxels", MIN_VOXELS))
    return small_regions(regions, threshold)["region"].value_counts(sort=False)


def min_voxel_methods(result) -> str:
    """The Methods sentence of the minimum-voxel rule ('' without per-hemisphere counts)."""
    if not _has_counts(result.regions):
        return ""
    threshold = int(getattr(result, "min_voxels", MIN_VOXELS))
    lost = _lost(result)
    listed = (
        " (" + ", ".join(f"{pretty_region(r)}: {n} participant(s)" for r, n in lost.items()) + ")"
        if len(lost)
        else " (no participant)"
    )
    return (
        f" A participant's structure with fewer than {threshold} R2* voxels in either "
        f"hemisphere was left out of the group statistics{listed}."
    )


def min_voxel_rule(result) -> str:
    """The rule, the participants it left out per structure, and the small-nuclei caveat (HTML).

    ``result`` is the :class:`~ironmap.workflows.group.GroupResult` (``regions``, ``subjects``
    with ``analysed``, ``min_voxels``). '' without per-hemisphere voxel counts.
    """
    threshold = int(getattr(result, "min_voxels", MIN_VOXELS))
    regions = result.regions
    if not _has_counts(regions):
        return ""
    analysed = result.subjects.loc[result.subjects["analysed"].astype(bool), "participant_id"]
    regions = regions[regions["participant_id"].isin(set(analysed))]
    lost = _lost(result)
    listed = (
        "; left out: "
        + ", ".join(f"{pretty_region(r)} {n} participant(s)" for r, n in lost.items())
        if len(lost)
        else "; no participant was left out"
    )
    text = (
        f"<p class='note'>Minimum-voxel rule: a participant's structure with fewer than "
        f"{threshold} R2* voxels in either hemisphere enters no group statistics (NaN for that "
        f"structure only; --min-voxels, chosen in benchmarks/min_voxels.py){listed} (per "
        "participant: note in group/participant_flow.tsv; counts: group/participant_qc.tsv)."
    )
    sides = regions[regions["region"].isin(SMALL_NUCLEI) & regions["hemisphere"].ne("both")]
    medians = pd.to_numeric(sides["n_voxels"], errors="coerce").groupby(sides["region"]).median()
    medians = medians.reindex([r for r in SMALL_NUCLEI if r in medians.index])
    few = medians[medians < MIN_REGION_VOXELS]
    if len(few):
        counts = ", ".join(f"{pretty_region(r)} {m:.0f}" for r, m in few.items())
        text += (
            f" <b>Small nuclei</b>: at this resolution the median R2* voxels per hemisphere "
            f"are {html.escape(counts)} (fewer than {MIN_REGION_VOXELS}); their regional "
            "medians carry more measurement error and partial volume than the larger "
            "structures', so their results are less certain than the CIs alone suggest."
        )
    return text + "</p>"


def not_run(result, name: str) -> str:
    """A section saying why optional analysis ``name`` did not run ('' when it ran or unknown)."""
    record = (getattr(result, "analyses", None) or {}).get(name)
    if not record or record.get("ran", True):
        return ""
    heading, words, tail = NOT_RUN_HEADINGS[name]
    return (
        f"<h2>{heading}</h2><p>{words}: "
        f"{html.escape(str(record.get('reason', 'no reason recorded')))}.{tail}</p>"
    )
