"""Deep grey matter without a user segmentation: registered atlas refined on R2*.

:func:`atlas_segmentation` registers the bundled template to a subject image
(:mod:`.register`), pulls the atlas labels onto the R2* grid and re-draws the iron-rich nuclei on
the subject's own R2* map (:mod:`.refine`). Needs the optional extra ``ironmap[atlas]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .atlas import ATLAS_LABELS, IRON_RICH, load_atlas
from .refine import REFINE_COLUMNS, refine_nuclei
from .register import register_atlas

__all__ = ["AtlasSegmentation", "atlas_segmentation", "label_table"]


@dataclass(frozen=True)
class AtlasSegmentation:
    """A subject's atlas-based segmentation on the R2* grid.

    Attributes
    ----------
    labels : numpy.ndarray of int16, shape (X, Y, Z)
        Codes of :data:`~.atlas.ATLAS_LABELS`, 0 outside the brain.
    refinement : pandas.DataFrame
        One row per iron-rich nucleus: ``region``, ``hemisphere`` and the columns of
        :data:`~.refine.REFINE_COLUMNS`.
    seconds : dict
        Wall time of ``registration`` and ``refinement``.
    sources : dict
        Template and atlas files used.
    """

    labels: NDArray[np.int16]
    refinement: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def label_table(labels: NDArray[np.integer] | None = None) -> pd.DataFrame:
    """The ``dseg.tsv`` (``index``, ``name``) of the atlas codes (those present in ``labels``)."""
    codes = sorted(ATLAS_LABELS)
    if labels is not None:
        present = set(np.unique(labels).tolist())
        codes = [c for c in codes if c in present]
    return pd.DataFrame({"index": codes, "name": [ATLAS_LABELS[c] for c in codes]})


def atlas_segmentation(
    r2star: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    target: NDArray[np.floating],
    target_affine: NDArray[np.float64],
    refine: bool = True,
    search_mm: float = 4.0,
    n_threads: int | None = None,
) -> AtlasSegmentation:
    """Segment deep grey matter on the R2* grid by atlas registration and R2* refinement.

    Parameters
    ----------
    r2star : numpy.ndarray, shape (X, Y, Z)
        R2* map (1/s), NaN where the fit failed.
    affine : numpy.ndarray, shape (4, 4)
        Its voxel-to-scanner affine.
    target, target_affine : numpy.ndarray
        Image the template is registered to (a T1w, or the first-echo magnitude) and its affine;
        any grid in the same scanner space.
    refine : bool, optional
        Re-draw pallidum, substantia nigra, red nucleus and dentate nucleus on R2*.
    search_mm : float, optional
        How far (mm) a refined nucleus may extend beyond its registered atlas label.
    n_threads : int, optional
        ITK threads for the registration.

    Returns
    -------
    AtlasSegmentation
    """
    atlas = load_atlas()
    reg = register_atlas(
        target,
        target_affine,
        reference_shape=r2star.shape,
        reference_affine=affine,
        atlas=atlas,
        n_threads=n_threads,
    )
    start = time.perf_counter()
    labels = reg.labels
    voxel_mm = tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    codes = tuple(c for pair in IRON_RICH.values() for c in pair)
    if refine:
        labels, report = refine_nuclei(
            labels, r2star, codes=codes, voxel_mm=voxel_mm, search_mm=search_mm
        )
    else:
        counts = [int(np.sum(labels == c)) for c in codes]
        report = pd.DataFrame(columns=list(REFINE_COLUMNS), index=range(len(codes)))
        report = report.assign(code=codes, n_atlas=counts, n_refined=counts, status="not_refined")
    names = {
        c: (region, side)
        for region, pair in IRON_RICH.items()
        for c, side in zip(pair, ("left", "right"), strict=True)
    }
    report.insert(0, "region", [names[c][0] for c in report["code"]])
    report.insert(1, "hemisphere", [names[c][1] for c in report["code"]])
    return AtlasSegmentation(
        labels=labels.astype(np.int16),
        refinement=report,
        seconds={"registration": reg.seconds, "refinement": time.perf_counter() - start},
        sources=dict(atlas.sources),
    )
