"""Deep grey matter without a user segmentation: registered atlas refined on R2*.

:func:`atlas_segmentation` registers the bundled template to a subject image
(:mod:`.register`), pulls the atlas labels onto the R2* grid subdivided to about 1 mm and
re-draws the iron-rich nuclei on the subject's own R2* map (:mod:`.refine`). Needs the optional
extra ``ironmap[atlas]``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import IronmapWarning
from .atlas import ATLAS_LABELS, IRON_RICH, load_atlas
from .refine import REFINE_COLUMNS, refine_nuclei
from .register import register_atlas

__all__ = ["AtlasSegmentation", "atlas_segmentation", "label_table"]


@dataclass(frozen=True)
class AtlasSegmentation:
    """A subject's atlas-based segmentation on the subdivided R2* grid.

    Attributes
    ----------
    labels : numpy.ndarray of int16, shape (kx X, ky Y, kz Z)
        Codes of :data:`~.atlas.ATLAS_LABELS`, 0 outside the brain, on the R2* grid subdivided
        into about 1 mm voxels.
    affine : numpy.ndarray, shape (4, 4)
        Voxel-to-scanner affine of ``labels``.
    refinement : pandas.DataFrame
        One row per iron-rich nucleus: ``region``, ``hemisphere`` and the columns of
        :data:`~.refine.REFINE_COLUMNS`.
    seconds : dict
        Wall time of ``registration`` and ``refinement``.
    sources : dict
        Template and atlas files used.
    """

    labels: NDArray[np.int16]
    affine: NDArray[np.float64]
    refinement: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def _subdivision(factor: np.ndarray) -> NDArray[np.float64]:
    """Fine voxel -> coarse voxel: ``k`` sub-voxels per coarse voxel and axis, centred."""
    out = np.eye(4)
    out[:3, :3] = np.diag(1.0 / factor)
    out[:3, 3] = (1.0 / factor - 1.0) / 2.0
    return out


def _upsample(values: np.ndarray, factor: np.ndarray) -> NDArray[np.float32]:
    """Trilinear interpolation onto the subdivided grid; NaN stays out of the average (NaN
    where most of the interpolation weight would be NaN)."""
    finite = np.isfinite(values)
    coords = [
        (np.arange(n * k) + 0.5) / k - 0.5 for n, k in zip(values.shape, factor, strict=True)
    ]
    grid = np.meshgrid(*coords, indexing="ij", sparse=True)
    points = np.broadcast_arrays(*grid)

    def interp(a: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(a, points, order=1, mode="nearest").astype(np.float32)

    weight = interp(finite.astype(np.float32))
    total = interp(np.where(finite, values, 0.0).astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0.5, total / weight, np.nan).astype(np.float32)


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
    fine_mm: float = 1.0,
    n_threads: int | None = None,
    target_name: str = "the registration target",
) -> AtlasSegmentation:
    """Segment deep grey matter by atlas registration and R2* refinement.

    The labels are drawn on the R2* grid subdivided to about ``fine_mm`` (each R2* voxel split
    into an integer number of sub-voxels per axis), and the nuclei refined on R2* interpolated
    (trilinear) onto it: boundaries then fall within R2* voxels, and the participant stage's
    partial-volume fractions (``--min-fraction``) apply to an atlas segmentation exactly as to a
    user's 1 mm segmentation.

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
    fine_mm : float, optional
        Target voxel size (mm) of the label grid.
    n_threads : int, optional
        ITK threads for the registration.
    target_name : str, optional
        How errors name the target (its file).

    Returns
    -------
    AtlasSegmentation
        ``labels`` and ``affine`` on the fine grid.
    """
    atlas = load_atlas()
    r2star = np.asarray(r2star, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    factor = np.maximum(np.rint(voxel / fine_mm), 1).astype(int)
    fine_affine = affine @ _subdivision(factor)
    fine_shape = tuple(int(n * k) for n, k in zip(r2star.shape, factor, strict=True))
    reg = register_atlas(
        target,
        target_affine,
        reference_shape=fine_shape,
        reference_affine=fine_affine,
        atlas=atlas,
        n_threads=n_threads,
        name=target_name,
    )
    start = time.perf_counter()
    labels = reg.labels
    voxel_ml = float(abs(np.linalg.det(fine_affine[:3, :3]))) / 1000.0
    brain_ml = float(reg.brain.sum()) * voxel_ml
    if brain_ml > 2500.0:
        warnings.warn(
            f"the registered template brain covers {brain_ml:.0f} mL of the R2* image (adults: "
            "1000-1800 mL with CSF); the registration may have failed; check the QC figure",
            IronmapWarning,
            stacklevel=2,
        )
    codes = tuple(c for pair in IRON_RICH.values() for c in pair)
    if refine:
        labels, report = refine_nuclei(
            labels,
            _upsample(r2star, factor),
            codes=codes,
            voxel_mm=tuple(float(v) for v in voxel / factor),
            search_mm=search_mm,
            noise_lag=int(factor[0]),
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
        affine=fine_affine,
        refinement=report,
        seconds={"registration": reg.seconds, "refinement": time.perf_counter() - start},
        sources=dict(atlas.sources),
    )
