"""``--segmentation hybrid``: the participant's dseg, with the deep grey-matter structures it
lacks (substantia nigra, red nucleus, dentate nucleus of FreeSurfer, FastSurfer or SynthSeg)
from the registered atlas (:func:`fill_from_atlas`, :class:`HybridDseg`). Moved from
:mod:`.strategies`, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import IronmapError
from ..fitting import DecayFit
from ..io import MultiEchoImage, SessionInputs, load_volume
from ..regions import (
    DEEP_GM,
    label_fractions,
    region_codes,
    region_groups,
)
from ..regions.catalog import LABEL_NAMES
from .result import Segmentation, missing_structures, warn_unlabelled
from .user_dseg import UserDseg

__all__ = [
    "HybridDseg",
    "fill_from_atlas",
]


def fill_from_atlas(
    segmentation: Segmentation,
    missing: list[str],
    *,
    image: MultiEchoImage,
    fit: DecayFit,
    inputs: SessionInputs,
    n_threads: int = 1,
) -> Segmentation:
    """Add the deep grey-matter regions ``missing`` from the dseg, from the registered atlas.

    The atlas is registered and its iron-rich nuclei refined on R2* exactly as by
    ``--segmentation atlas`` (:func:`~.autoseg.atlas_segmentation`, to the T1w when there is
    one, else the first echo; with one ITK thread, :data:`HYBRID_THREADS`, reproducible).
    On the R2* grid
    the dseg wins: an atlas region's partial-volume fraction in a voxel is at most what the
    dseg's deep grey-matter structures and CSF leave of it (1 minus their fractions). The
    filled regions' ``volume_ml`` is the sum of these fractions times the R2* voxel volume.

    Parameters
    ----------
    segmentation : Segmentation
        The dseg on the R2* grid (:func:`transfer_segmentation`); updated in place.
    missing : list of str
        Canonical deep grey-matter regions to fill (:func:`missing_structures`).
    image, fit : MultiEchoImage, DecayFit
        The GRE and its R2* fit.
    inputs : SessionInputs
        The participant's inputs (T1w, names for messages).
    n_threads : int, optional
        ITK threads for the registration.

    Returns
    -------
    Segmentation
        ``segmentation`` with ``fractions``, ``region_ml``, ``label_source`` (``"atlas"``) and
        ``seconds`` of the filled regions. Without the atlas extra, or when the registration
        fails, it is returned unchanged with a warning (:func:`warn_unlabelled`): the rows of
        ``missing`` are NaN.

    Warns
    -----
    IronmapWarning
        When ``missing`` could not be filled, naming the dseg, the structures and why.
    """
    if inputs.t1w is not None:
        target, target_affine = load_volume(inputs.t1w)
        target_name = str(inputs.t1w)
    else:
        target, target_affine = image.data[..., 0], image.affine
        target_name = f"{inputs.echoes[0]} (first echo)"
    try:
        from .autoseg import atlas_segmentation
        from .register import check_ants

        check_ants()
        seg = atlas_segmentation(
            fit.r2star,
            image.affine,
            target=target,
            target_affine=target_affine,
            n_threads=n_threads,
            target_name=target_name,
        )
    except (ImportError, IronmapError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warn_unlabelled(missing, inputs=inputs, why=f"; the atlas could not fill them: {reason}")
        segmentation.unlabelled = tuple(missing)
        return segmentation
    groups = {
        key: codes
        for key, codes in region_groups(region_codes(LABEL_NAMES)).items()
        if key.split("/")[0] in missing
    }
    grid = image.data.shape[:3]
    # registered to the T1w: in the dseg's scanner space, moved to the GRE's with the dseg
    # when the dseg was registered (Segmentation.carry); to the first echo: already there
    atlas_affine = segmentation.carry(seg.affine) if inputs.t1w is not None else seg.affine
    atlas = label_fractions(
        seg.labels, atlas_affine, grid, image.affine, groups, source_name=f"{target_name} atlas"
    )
    claimed = np.zeros(grid, dtype=np.float32)
    for region in DEEP_GM:
        if region in segmentation.label_source and f"{region}/both" in segmentation.fractions:
            claimed += segmentation.fractions[f"{region}/both"]
    if "_csf" in segmentation.fractions:
        claimed += segmentation.fractions["_csf"]
    room = np.clip(1.0 - claimed, 0.0, 1.0).astype(np.float32)
    voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    for key in groups:
        fraction = np.minimum(atlas[key], room)
        segmentation.fractions[key] = fraction
        segmentation.region_ml[key] = float(fraction.sum(dtype=np.float64)) * voxel_ml
    for region in missing:
        if any(segmentation.region_ml[f"{region}/{h}"] > 0 for h in ("left", "right")):
            segmentation.label_source[region] = "atlas"
    for step, seconds in seg.seconds.items():
        segmentation.seconds[step] = segmentation.seconds.get(step, 0.0) + seconds
    left = missing_structures(segmentation)
    if left:
        warn_unlabelled(
            left,
            inputs=inputs,
            why="; the registered atlas has none of them outside the dseg's own structures",
        )
        segmentation.unlabelled = tuple(left)
    return segmentation


@dataclass
class HybridDseg(UserDseg):
    """The participant's dseg, with the deep grey-matter structures it lacks from the atlas.

    ``--segmentation hybrid``: the fit mask, the lesion mask, the volumes and the alignment
    check are the dseg's (:class:`UserDseg`); the structures no dseg label covers (the
    substantia nigra, red nucleus and dentate nucleus of a FreeSurfer, FastSurfer or SynthSeg
    segmentation) come from :func:`fill_from_atlas`.
    """

    name: ClassVar[str] = "hybrid"
    n_threads: int = 1

    def input_files(self) -> list[Path]:
        return [*super().input_files(), *([self.inputs.t1w] if self.inputs.t1w else [])]

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        if self._segmentation is None:
            self.fit_mask(image)
        missing = missing_structures(self._segmentation)
        if not missing:
            return self._segmentation
        return fill_from_atlas(
            self._segmentation,
            missing,
            image=image,
            fit=fit,
            inputs=self.inputs,
            n_threads=self.n_threads,
        )
