"""Deep grey matter without a user segmentation: registered atlas refined on R2*.

:func:`atlas_segmentation` registers the bundled template to a subject image
(:mod:`.register`), pulls the atlas labels onto the R2* grid subdivided to about 1 mm and
re-draws the iron-rich nuclei on the subject's own R2* map (:mod:`.refine`), then makes the labels
follow the subject's own tissue (:mod:`.constrain`): deep grey matter and white matter give up to
CSF what the subject's R2* shows to be CSF (enlarged ventricles of an atrophied brain), and, with
a T1w target, caudate and putamen give up what the T1w shows to be white matter. Needs the
optional extra ``ironmap[atlas]``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import IronmapWarning
from .atlas import ATLAS_LABELS, IRON_RICH, load_atlas
from .constrain import (
    CSF_COLUMNS,
    GREY_WHITE_COLUMNS,
    GREY_WHITE_FOLLOWED,
    atrophied_codes,
    follow_csf,
    follow_grey_white,
)
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
    csf : pandas.DataFrame
        One row per deep grey-matter and cerebral white-matter label: the voxels that became
        CSF by the subject's R2* (columns :data:`~.constrain.CSF_COLUMNS`); empty when not
        done.
    grey_white : pandas.DataFrame
        One row per caudate and putamen label: the voxels given up as white matter by the
        T1w target's contrast (columns :data:`~.constrain.GREY_WHITE_COLUMNS`); empty when not
        done.
    """

    labels: NDArray[np.int16]
    affine: NDArray[np.float64]
    refinement: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    csf: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(CSF_COLUMNS)))
    grey_white: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(GREY_WHITE_COLUMNS))
    )


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


def _resample(
    image: np.ndarray, image_affine: np.ndarray, shape: tuple[int, ...], affine: np.ndarray
) -> NDArray[np.float32]:
    """Trilinear copy of ``image`` onto the grid ``(shape, affine)`` (NaN outside it)."""
    to_image = np.linalg.inv(image_affine) @ affine  # grid voxel -> image voxel
    data = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    out = np.empty(shape, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    m = to_image[:3, :3]
    for k in range(shape[2]):  # slab by slab: bounded memory
        pts = (
            m[:, 0, None, None] * ii + m[:, 1, None, None] * jj + m[:, 2, None, None] * k
        ) + to_image[:3, 3, None, None]
        out[:, :, k] = ndimage.map_coordinates(data, pts, order=1, mode="constant", cval=np.nan)
    return out


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
    follow_ventricles: bool = True,
    follow_grey_white_matter: bool | Literal["atrophied"] = False,
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
    follow_ventricles : bool, optional
        Relabel as CSF the voxels of deep grey matter and cerebral white matter whose R2* is
        below half their label's tissue level (:func:`~.constrain.follow_csf`).
    follow_grey_white_matter : bool or "atrophied", optional
        Caudate and putamen give up their voxels that ``target`` shows to be white matter
        (beyond half-way between their own level and the white matter's beside them;
        :func:`~.constrain.follow_grey_white`). True for a T1w target. ``"atrophied"`` (for a
        gradient-echo first echo, whose grey/white contrast is weaker, blurred at 2 mm and
        protocol-dependent): only the labels that lost more than
        :data:`~.constrain.ATROPHY_PCT` % of their voxels to the ventricles
        (:func:`~.constrain.atrophied_codes`), whose thinned label spills into white matter;
        needs ``follow_ventricles``. A label whose contrast is under 10 % is kept either way.
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
    fine_voxel = tuple(float(v) for v in voxel / factor)
    fine_r2 = _upsample(r2star, factor) if refine or follow_ventricles else None
    if refine:
        labels, report = refine_nuclei(
            labels,
            fine_r2,
            codes=codes,
            voxel_mm=fine_voxel,
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
    csf = pd.DataFrame(columns=list(CSF_COLUMNS))
    if follow_ventricles:
        labels, csf = follow_csf(labels, fine_r2, voxel_mm=fine_voxel)
    grey_white = pd.DataFrame(columns=list(GREY_WHITE_COLUMNS))
    codes = None
    if follow_grey_white_matter == "atrophied":
        codes = atrophied_codes(csf, regions=GREY_WHITE_FOLLOWED)
    elif follow_grey_white_matter is not True and follow_grey_white_matter is not False:
        raise ValueError(
            "follow_grey_white_matter must be True, False or 'atrophied', got "
            f"{follow_grey_white_matter!r}"
        )
    if follow_grey_white_matter is True or codes:
        image = _resample(target, np.asarray(target_affine, float), fine_shape, fine_affine)
        labels, grey_white = follow_grey_white(labels, image, voxel_mm=fine_voxel, codes=codes)
    return AtlasSegmentation(
        labels=labels.astype(np.int16),
        affine=fine_affine,
        refinement=report,
        seconds={"registration": reg.seconds, "refinement": time.perf_counter() - start},
        sources=dict(atlas.sources),
        csf=csf,
        grey_white=grey_white,
    )
