"""Where a participant's regions come from: the user's dseg, the registered atlas, or none.

A strategy answers two questions in pipeline order:

1. :meth:`fit_mask` — which voxels to fit R2* in (before the fit);
2. :meth:`segment` — the segmentation on the R2* grid, after the fit (the atlas path refines
   its iron-rich nuclei on the fitted R2* map), as a :class:`Segmentation`, or None.

:func:`choose_strategy` picks one from ``--segmentation`` (:data:`SEGMENTATIONS`) and what the
participant's inputs hold. Adding a source of segmentations is one class and one entry there.

``hybrid`` (:class:`HybridDseg`) is the participant's dseg for every structure it labels and the
registered atlas (:class:`AtlasStrategy`'s registration and R2* refinement) for the deep
grey-matter structures it lacks: whole-brain segmenters (FreeSurfer, FastSurfer, SynthSeg) never
label the substantia nigra, red nucleus or dentate nucleus. Where an atlas nucleus and one of the
dseg's deep grey-matter or CSF labels share a voxel, the dseg wins
(:func:`fill_from_atlas`). Each region's source is :attr:`Segmentation.label_source`, the
``label_source`` column of ``_regions.tsv``.

The pieces live by job (their names are re-exported here): :mod:`.result` (the
:class:`Segmentation` record and :func:`transfer_segmentation`), :mod:`.user_dseg`
(:class:`UserDseg`), :mod:`.hybrid` (:class:`HybridDseg`, :func:`fill_from_atlas`); the atlas
and no-segmentation strategies and :func:`choose_strategy` are here.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..errors import IronmapWarning
from ..fitting import DecayFit
from ..io import MultiEchoImage, SessionInputs, load_volume
from .constrain import ATROPHY_PCT, csf_share
from .coregister import DEFAULT_REGISTER_SEGMENTATION
from .hybrid import HybridDseg, fill_from_atlas
from .result import (
    NOT_IN_WHOLE_BRAIN_SEGMENTERS,
    DsegImage,
    Segmentation,
    SegmentationStrategy,
    head_mask,
    missing_structures,
    transfer_segmentation,
    warn_unlabelled,
)
from .user_dseg import UserDseg

__all__ = [
    "NOT_IN_WHOLE_BRAIN_SEGMENTERS",
    "REGISTRATION_THREADS",
    "SEGMENTATIONS",
    "AtlasStrategy",
    "DsegImage",
    "HybridDseg",
    "NoSegmentation",
    "Segmentation",
    "SegmentationStrategy",
    "UserDseg",
    "choose_strategy",
    "fill_from_atlas",
    "head_mask",
    "missing_structures",
    "transfer_segmentation",
    "warn_atrophy_without_t1w",
    "warn_unlabelled",
]

#: ``--segmentation`` choices: ``auto`` uses the participant's dseg when there is one (else no
#: regions), ``atlas`` registers the bundled atlas, ``hybrid`` the dseg with the deep grey-matter
#: structures it lacks from the registered atlas (:class:`HybridDseg`), ``none`` writes maps only.
SEGMENTATIONS = ("auto", "atlas", "hybrid", "none")


#: ITK threads of every registration of a participant (atlas, hybrid, a user dseg's): with one
#: (and the seed of :func:`~.register.register_atlas`) a rerun gives the same labels; with
#: several, ITK's multi-threaded metric sums differ between runs (two atlas registrations of
#: one image with 2 threads: 268 of 67,262 labelled voxels apart; issue 28: 866 voxels, 0.19 %
#: of a regional median). Participants run in parallel instead (``--n-jobs``).
REGISTRATION_THREADS = 1


def warn_atrophy_without_t1w(csf: pd.DataFrame, *, name: str) -> str | None:
    """Warn when the ventricles took much of the atlas caudate or thalamus and there is no T1w.

    ``csf`` is the report of :func:`~.constrain.follow_csf`; the threshold is
    :data:`~.constrain.ATROPHY_PCT`. Enlarged ventricles (the periventricular atrophy of
    progressive MS) leave a thin caudate whose registered label also covers white matter.
    Without a T1w that edge is drawn on the first echo, whose grey/white contrast is weaker and
    protocol-dependent (docs/atlas.md#periventricular-atrophy). Returns the message (None when
    nothing was said).
    """
    if csf is None or csf.empty:
        return None
    share = csf_share(csf, regions=("caudate", "thalamus"))
    worst = share.idxmax() if len(share) else None
    if worst is None or not share[worst] > ATROPHY_PCT:
        return None
    message = (
        f"{name}: {share[worst]:.0f} % of the atlas {csf.loc[worst, 'hemisphere']} "
        f"{csf.loc[worst, 'region']} is ventricle on R2* (enlarged ventricles); without a T1w "
        "its edge against white matter is drawn on the first echo, whose contrast is weaker "
        "(docs/atlas.md); add the participant's T1w to its anat folder"
    )
    warnings.warn(message, IronmapWarning, stacklevel=3)
    return message


@dataclass
class AtlasStrategy:
    """The bundled atlas registered to the T1w (else the first echo), nuclei refined on R2*."""

    name: ClassVar[str] = "atlas"
    inputs: SessionInputs
    n_threads: int = 1

    def input_files(self) -> list[Path]:
        return [self.inputs.t1w] if self.inputs.t1w is not None else []

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        """The head: R2* is fitted before the atlas is refined on it."""
        return head_mask(image.data[..., 0])

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        from .autoseg import atlas_segmentation, label_table

        if self.inputs.t1w is not None:
            target, target_affine = load_volume(self.inputs.t1w)
            target_name = str(self.inputs.t1w)
        else:
            target, target_affine = image.data[..., 0], image.affine
            target_name = f"{self.inputs.echoes[0]} (first echo)"
        seg = atlas_segmentation(
            fit.r2star,
            image.affine,
            target=target,
            target_affine=target_affine,
            n_threads=self.n_threads,
            target_name=target_name,
            follow_grey_white_matter=True if self.inputs.t1w is not None else "atrophied",
        )
        if self.inputs.t1w is None:
            warn_atrophy_without_t1w(seg.csf, name=self.inputs.name)
        table = label_table(seg.labels)
        written = DsegImage(
            labels=seg.labels.astype(np.int16),
            affine=seg.affine,
            table=table,
            sidecar=self._sidecar(image, seg, target_name),
        )
        result = transfer_segmentation(
            written.labels,
            seg.affine,
            dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True)),
            image=image,
            lesion_mask=self.inputs.lesion_mask,
            participant_id=f"sub-{self.inputs.subject}",
            source_name=f"{self.inputs.name} atlas segmentation",
            label_source="atlas",
        )
        result.written = written
        result.seconds = dict(seg.seconds)
        return result

    def _sidecar(self, image: MultiEchoImage, seg, target_name: str) -> dict:
        from ..io import ParticipantOutputs

        r2star = ParticipantOutputs(Path(), self.inputs.subject, self.inputs.session).maps
        return {
            "Units": "1",
            "Description": "Deep grey matter from the bundled atlas registered to the subject "
            "(ANTs affine + SyN), iron-rich nuclei refined on R2*, voxels with CSF-like R2* "
            "relabelled as CSF, with a T1w target caudate and putamen voxels that look like white "
            "matter on it given up; on the R2* grid subdivided to about 1 mm; codes and names in "
            "the .tsv",
            "EstimationAlgorithm": "ironmap --segmentation atlas (docs/atlas.md)",
            "EchoTime": [float(te) for te in image.echo_times_s],
            "Sources": [
                *(str(p) for p in image.sources),  # echo-time order, as EchoTime
                *([str(self.inputs.t1w)] if self.inputs.t1w else []),
            ],
            "RegistrationTarget": target_name,
            # BIDS: the image it is aligned to (its grid subdivides the R2* map's)
            "SpatialReference": f"bids::{r2star['R2starmap'].as_posix()}",
            "Atlas": seg.sources,
            "Refinement": json.loads(seg.refinement.to_json(orient="records")),
            "CSFRelabelled": json.loads(seg.csf.to_json(orient="records")),
            "GreyWhite": json.loads(seg.grey_white.to_json(orient="records")),
        }


@dataclass
class NoSegmentation:
    """No regions: R2* maps in a head mask from the magnitudes."""

    name: ClassVar[str] = "none"
    inputs: SessionInputs

    def input_files(self) -> list[Path]:
        return []

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        return head_mask(image.data[..., 0])

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> None:
        return None


def choose_strategy(
    inputs: SessionInputs,
    *,
    segmentation: str,
    register_segmentation: str = DEFAULT_REGISTER_SEGMENTATION,
) -> SegmentationStrategy:
    """The strategy for ``--segmentation`` (:data:`SEGMENTATIONS`) and these inputs;
    ``register_segmentation``: ``--register-segmentation`` for a user dseg (:mod:`.coregister`).
    Its registrations run on :data:`REGISTRATION_THREADS` ITK threads (reproducible).

    ``auto`` without a dseg warns that only maps are written; ``hybrid`` without one warns and
    registers the atlas for every structure.
    """
    n_threads = REGISTRATION_THREADS
    if segmentation == "atlas":
        return AtlasStrategy(inputs, n_threads=n_threads)
    if segmentation == "hybrid" and inputs.dseg is not None:
        return HybridDseg(inputs, register=register_segmentation, n_threads=n_threads)
    if segmentation == "hybrid":
        warnings.warn(
            f"{inputs.name}: --segmentation hybrid needs a dseg, none found; registering the "
            "atlas for every structure (--segmentation atlas)",
            IronmapWarning,
            stacklevel=2,
        )
        return AtlasStrategy(inputs, n_threads=n_threads)
    if segmentation == "auto" and inputs.dseg is not None:
        return UserDseg(inputs, register=register_segmentation, n_threads=n_threads)
    if segmentation == "auto":
        warnings.warn(
            f"{inputs.name}: no segmentation (dseg) found; writing maps only, no regional R2*",
            IronmapWarning,
            stacklevel=2,
        )
    return NoSegmentation(inputs)
