"""The Methods' regions paragraph: where the segmentation came from (dseg, atlas, hybrid,
registration to the GRE), lesions, partial volume, CSF exclusion, erosion, the
smallest structures and the iron calibration, from ``group/participant_qc.tsv``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..iron import CALIBRATIONS
from ..regions.catalog import CATALOG
from ..regions.csf import CORE_RATIO, RIM_RATIO, WALL_RATIO
from ..regions.labels import DEEP_GM
from .references import _Citations
from .sentences import _differs, _join
from .style import pretty_region


def _atlas_sources(cite: _Citations, *, only: Iterable[str] | None = None) -> str:
    """Which atlas labelled which deep grey-matter structure (from the region catalogue);
    ``only`` these structures when given."""
    keep = set(DEEP_GM if only is None else only)
    ho = [r.name for r in CATALOG if r.name in keep and r.harvard_oxford]
    tal = [r.name for r in CATALOG if r.name in keep and r.talairach is not None]
    parts = []
    if ho:
        parts.append(
            f"{_join(pretty_region(r) for r in ho)} from the Harvard-Oxford subcortical atlas"
        )
    if tal:
        parts.append(
            f"{_join(pretty_region(r) for r in tal)} from the Talairach daemon labels, "
            f"{cite('lancaster2000', 'lancaster2007')}"
        )
    return "; ".join(parts)


def _registered(qc: pd.DataFrame) -> str:
    """The sentence on dsegs whose own image was registered to the GRE (empty when none was:
    ``segmentation_registered`` of participant_qc.tsv)."""
    if "segmentation_registered" not in qc.columns:
        return ""
    done = qc["segmentation_registered"].map(lambda v: v in (True, "True", "yes"))
    if not done.any():
        return ""
    return (
        f" For {int(done.sum())} of {len(qc)} participants the image the segmentation was made "
        "on (T1w or FLAIR) was registered rigidly (6 degrees of freedom; ANTs, Mattes mutual "
        "information) to the first echo, and the segmentation and lesion mask were carried onto "
        "the GRE by that transform (head motion between the scans; registration_shift_mm in "
        "participant_qc.tsv)."
    )


def _segmentation_source(qc: pd.DataFrame) -> pd.Series:
    """``segmentation_source`` of each participant; for a table without it (made before the
    column), ``atlas`` for ``--segmentation atlas`` and ``dseg`` for ``auto`` (which writes
    regions only from a dseg)."""
    if "segmentation_source" in qc.columns:
        return qc["segmentation_source"]
    return qc["segmentation"].map(
        lambda s: np.nan if pd.isna(s) else ("atlas" if s == "atlas" else "dseg")
    )


def _regions(qc: pd.DataFrame, cite: _Citations) -> str:
    labels = qc["label_source"] if "label_source" in qc.columns else pd.Series(None, qc.index)
    filled = qc["atlas_regions"] if "atlas_regions" in qc.columns else pd.Series(None, qc.index)
    source = pd.Series(
        [
            s
            if s not in ("dseg", "hybrid")
            else f"dseg:{'' if pd.isna(label) else label}"
            + ("" if s == "dseg" or pd.isna(atlas) else f"|{atlas}")
            for s, label, atlas in zip(_segmentation_source(qc), labels, filled, strict=True)
        ],
        index=qc.index,
        dtype=object,
    )

    def say(value: str) -> str:
        if "|" in value:  # --segmentation hybrid: the dseg, the atlas for what it lacks
            value, atlas = value.split("|")
            regions = atlas.split(";")
            return (
                say(value) + f"; the {_join(pretty_region(r) for r in regions)}, which it does "
                "not label, from the bundled atlas registered to the participant and refined on "
                f"R2* ({_atlas_sources(cite, only=regions)}), the participant's own label kept "
                "where both labelled a voxel"
            )
        if value == "atlas":
            return (
                "from the bundled atlas registered to each participant and refined on R2* ("
                + _atlas_sources(cite)
                + ")"
            )
        how = {
            "dseg:dseg.tsv": "; labels matched by name from its dseg.tsv",
            "dseg:aseg codes": "; labels read as FreeSurfer aseg codes, without a dseg.tsv",
        }.get(value, "")
        tool = {
            "dseg:freesurfer": ("FreeSurfer or FastSurfer aseg", ("fischl2002", "henschel2020")),
            "dseg:synthseg": ("SynthSeg", ("billot2023",)),
        }.get(value)
        if tool is not None:
            return (
                f"from each participant's own segmentation ({tool[0]}; {cite(*tool[1])}), "
                "labels read as FreeSurfer LUT codes, resampled to the R2* grid"
            )
        return (
            "from each participant's own segmentation (BIDS dseg image of the input "
            f"derivatives{how}), resampled to the R2* grid"
        )

    text = _differs(
        source,
        "The source of the segmentation",
        say,
        lambda s: f"Deep grey matter and white matter were taken {s}",
    )
    if "lesion_mask" in qc.columns:
        mask = qc["lesion_mask"].map(lambda v: None if pd.isna(v) else v in (True, "True"))
        with_mask = int(mask.fillna(False).astype(bool).sum())
        if with_mask:
            text += (
                f" Lesions were taken from the participants' lesion masks (label-lesion_mask; "
                f"{with_mask} of {len(qc)} participants)."
            )
        elif mask.notna().any():
            text += " No participant had a lesion mask."
    text += _registered(qc)
    text += " " + _differs(
        qc["min_fraction"],
        "The partial-volume threshold",
        lambda f: f"{float(f) * 100:.0f} %",
        lambda f: (
            f"A voxel counted for a structure when at least {f} of it lay in the "
            "structure (partial-volume threshold) and, for deep grey matter and NAWM, no part of "
            "it in a lesion"
        ),
    )
    text += _csf(qc)
    erode = qc["erode_mm"].dropna().astype(float)
    if len(erode) and (erode > 0).any():
        text += " " + _differs(
            qc["erode_mm"],
            "The erosion of the structures",
            lambda e: f"{float(e):g} mm",
            lambda e: f"Structures were first eroded by {e}",
        )
    text += (
        " Regional R2* is the median over the voxels of each structure, both hemispheres "
        "pooled; NAWM is cerebral white matter minus lesions."
    )
    counts = {
        r: qc[f"min_voxels_{r}"].dropna() for r in DEEP_GM if f"min_voxels_{r}" in qc.columns
    }
    counts = {r: c for r, c in counts.items() if len(c)}
    if counts:
        small = sorted(counts, key=lambda r: counts[r].median())[:2]
        text += (
            " The smallest structures rested on few voxels (smaller hemisphere, median over "
            "participants): "
            + _join(
                f"the {pretty_region(r)} {counts[r].median():.0f} voxels "
                f"(minimum {counts[r].min():.0f})"
                for r in small
            )
            + "."
        )
    calibrations = qc["iron_calibration"].dropna().astype(str)
    used = [c for c in dict.fromkeys(calibrations) if c in CALIBRATIONS]
    for name in used:
        cal = CALIBRATIONS[name]
        text += (
            f" R2* was converted to iron concentration (mg/kg wet tissue) with the post-mortem "
            f"calibration R2* = {cal.slope:g} [Fe] + {cal.intercept:g} 1/s at "
            f"{cal.field_t:g} T ({cite('langkammer')}; {int((calibrations == name).sum())} of "
            f"{len(qc)} participants)."
        )
    return text


def _csf(qc: pd.DataFrame) -> str:
    """The CSF-like voxels left out (``--csf-exclusion``), with the thresholds of
    :mod:`ironmap.regions.csf` and the shares of ``csf_excluded_pct_<region>``."""
    if "csf_exclusion" not in qc.columns or qc["csf_exclusion"].isna().all():
        return ""
    on = qc["csf_exclusion"].astype(str).eq("on")
    how = (
        "voxels whose R2* indicated cerebrospinal fluid were then left out of each deep "
        "grey-matter structure and NAWM: with T the structure's tissue R2* (the median of its "
        "voxels above "
        f"{CORE_RATIO:g} times their 90th percentile), the voxels below {CORE_RATIO:g} T, their "
        f"neighbours below {RIM_RATIO:g} T and the voxels next to the segmentation's CSF below "
        f"{WALL_RATIO:g} T (partial volume with CSF)"
    )
    if on.all():
        text = f" {how[0].upper()}{how[1:]}."
    elif not on.any():
        return " Voxels with CSF-like R2* were not left out (CSF exclusion off)."
    else:
        text = f" In {int(on.sum())} of {len(qc)} participants (CSF exclusion on), {how}."
    columns = [f"csf_excluded_pct_{r}" for r in DEEP_GM if f"csf_excluded_pct_{r}" in qc]
    shares = qc.loc[on, columns].apply(pd.to_numeric, errors="coerce")
    if shares.notna().any().any():
        stacked = shares.stack()
        touched = int((shares > 0).any(axis=1).sum())
        worst = stacked.idxmax()
        region = pretty_region(worst[1].removeprefix("csf_excluded_pct_"))
        text += (
            f" This removed voxels in {touched} of {int(on.sum())} participants, at most "
            f"{stacked.max():.1f} % of a structure ({region}, "
            f"{html.escape(str(qc.at[worst[0], 'participant_id']))})."
            if touched
            else " No voxel of a deep grey-matter structure was CSF-like."
        )
    return text
