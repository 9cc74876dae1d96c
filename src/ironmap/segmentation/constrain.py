"""Make registered atlas labels follow the subject's own tissue: CSF by R2*, grey/white matter by
a T1w.

A template registration recovers the shape of the head, not every millimetre of a ventricle wall
or of the edge of a thin nucleus. In an atrophied brain (the periventricular atrophy of
progressive MS) the subject's lateral ventricles reach into what the warped atlas still calls
caudate, thalamus or white matter, and the caudate that is left is a thin rim whose registered
label spills into the white matter beside it. Two steps on the label grid correct this with the
subject's own evidence, after the registration and the refinement of the iron-rich nuclei:

1. :func:`follow_csf` (always): CSF is unmistakable on R2* (a few 1/s, against 15-45 1/s in the
   tissue around it). Every voxel of a deep grey-matter or cerebral white-matter label whose R2*
   (interpolated onto the label grid) is below half that label's tissue level
   (:func:`ironmap.regions.csf.tissue_level`; about the half-way iso-surface between CSF and
   tissue) becomes CSF: the label of the nearest voxel the atlas calls lateral ventricle or CSF.
2. :func:`follow_grey_white` (with a T1w registration target; with the first echo, only for the
   labels that step 1 showed to be atrophied, :func:`atrophied_codes`): caudate and putamen
   differ from the white matter around them on a T1w (darker; on a gradient echo the
   difference is smaller and either way, depending on flip angle and TR). Per label, the
   white-matter level is the median intensity of the atlas's white matter within 6 mm, the
   grey-matter level the other of two intensity classes of the label's voxels (1-D k-means
   with the white-matter class fixed, on the side of white matter where the label's quartile
   farther from it lies), and every voxel on the white-matter side of half-way between the two
   levels goes to the nearest structure that is neither caudate nor putamen nor an R2*-refined
   nucleus (white matter, mostly: the pallidum and the other iron-rich nuclei were drawn on R2*
   and are not grown here). A label whose contrast is under 10 % of white matter is kept as
   registered (``status`` ``no_contrast``).

A label with no voxel beyond its threshold is unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..regions.catalog import CATALOG, DEEP_GM, IRON_RICH, by_name
from ..regions.csf import CORE_RATIO, tissue_level
from ..regions.tissue import robust_tissue_level

__all__ = [
    "ATROPHY_PCT",
    "CSF_COLUMNS",
    "FOLLOWED",
    "GREY_WHITE_COLUMNS",
    "GREY_WHITE_FOLLOWED",
    "atrophied_codes",
    "csf_share",
    "follow_csf",
    "follow_grey_white",
]

#: Regions whose CSF-like voxels become CSF: deep grey matter and cerebral white matter.
FOLLOWED = (*DEEP_GM, "cerebral_wm")
#: Grey-matter regions whose white-matter-like voxels are given up (bordered by white matter and
#: unlike it on a T1w; the thalamus, whose T1w intensity lies between grey and white matter, and
#: the pallidum, refined on R2*, are not).
GREY_WHITE_FOLLOWED = ("caudate", "putamen")
#: Share (%) of a registered label that :func:`follow_csf` gave to the ventricles beyond which the
#: label is atrophied (:func:`atrophied_codes`): normal anatomy gives 0-3 % (caudate, thalamus),
#: ventricles 4 mm larger 19-46 % (caudate) and 5-8 % (thalamus).
ATROPHY_PCT = 10.0
#: Columns of the report of :func:`follow_csf`.
CSF_COLUMNS = ("region", "hemisphere", "code", "n_atlas", "n_csf", "r2star_tissue", "threshold")
#: Columns of the report of :func:`follow_grey_white` (``grey``, ``white``, ``threshold`` in
#: the image's units).
GREY_WHITE_COLUMNS = (
    "region",
    "hemisphere",
    "code",
    "n_atlas",
    "n_white",
    "grey",
    "white",
    "threshold",
    "status",
)

_CSF_CODES = tuple(c for r in CATALOG if r.kind == "csf" for c in r.codes)


def _box(mask: NDArray[np.bool_], reach: NDArray[np.int_]) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``reach`` voxels per axis (clipped)."""
    ijk = np.argwhere(mask)
    lo = np.maximum(ijk.min(axis=0) - reach, 0)
    hi = np.minimum(ijk.max(axis=0) + reach + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _take_nearest(
    out: NDArray[np.int16],
    labels: NDArray[np.integer],
    moved: NDArray[np.bool_],
    source: NDArray[np.bool_],
    voxel_mm: tuple[float, float, float],
    *,
    reach_mm: float = 30.0,
) -> bool:
    """Give every ``moved`` voxel of ``out`` the label of the nearest ``source`` voxel (within
    ``reach_mm`` of the moved voxels' box); False when there is no source voxel there."""
    box = _box(moved, np.ceil(reach_mm / np.asarray(voxel_mm)).astype(int))
    if not source[box].any():
        return False
    _, idx = ndimage.distance_transform_edt(~source[box], sampling=voxel_mm, return_indices=True)
    nearest = labels[box][tuple(idx)]
    view = out[box]  # basic slicing: a view into out
    view[moved[box]] = nearest[moved[box]]
    return True


def follow_csf(
    labels: NDArray[np.integer],
    r2star: NDArray[np.floating],
    *,
    voxel_mm: tuple[float, float, float],
    core_ratio: float = CORE_RATIO,
) -> tuple[NDArray[np.int16], pd.DataFrame]:
    """Relabel the CSF-like voxels of the :data:`FOLLOWED` labels as CSF (step 1 above).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Registered atlas labels (catalogue codes; not modified).
    r2star : numpy.ndarray of float, shape (X, Y, Z)
        R2* (1/s) on the same grid; non-finite voxels are never relabelled.
    voxel_mm : tuple of float
        Voxel size (mm), for the distance to the nearest CSF label.
    core_ratio : float, optional
        A voxel is CSF-like below this fraction of its label's tissue R2*.

    Returns
    -------
    relabelled : numpy.ndarray of int16, shape (X, Y, Z)
    report : pandas.DataFrame
        One row per followed code present, columns :data:`CSF_COLUMNS`: voxels before
        (``n_atlas``), voxels that became CSF (``n_csf``), tissue R2* and threshold (1/s).
    """
    labels = np.asarray(labels)
    r2 = np.asarray(r2star, dtype=np.float32)
    if labels.shape != r2.shape:
        raise ValueError(f"labels {labels.shape} and R2* {r2.shape} must share a grid")
    out = labels.astype(np.int16, copy=True)
    rows, moved = [], np.zeros(labels.shape, dtype=bool)
    for region in FOLLOWED:
        for code, side in zip(by_name(region).codes, ("left", "right"), strict=True):
            inside = labels == code
            if not inside.any():
                continue
            level = tissue_level(r2[inside], core_ratio=core_ratio)
            csf = inside & (r2 < core_ratio * level)  # NaN compares False
            moved |= csf
            rows.append((region, side, code, int(inside.sum()), int(csf.sum()), level))
    report = pd.DataFrame(
        [(*row, core_ratio * row[-1]) for row in rows], columns=list(CSF_COLUMNS)
    )
    if moved.any():
        csf_label = np.isin(labels, _CSF_CODES)
        if not _take_nearest(out, labels, moved, csf_label, voxel_mm):
            out[moved] = by_name("csf").codes[0]
    return out, report


def csf_share(report: pd.DataFrame, *, regions: tuple[str, ...]) -> pd.Series:
    """Share (%) of each label of ``regions`` that :func:`follow_csf` gave to CSF.

    Parameters
    ----------
    report : pandas.DataFrame
        The report of :func:`follow_csf` (columns :data:`CSF_COLUMNS`).
    regions : tuple of str
        Catalogue names to consider.

    Returns
    -------
    pandas.Series of float
        ``100 n_csf / n_atlas``, indexed like the report's rows of ``regions`` (labels with
        voxels only).
    """
    rows = report[report["region"].isin(regions) & (report["n_atlas"] > 0)]
    return 100.0 * rows["n_csf"].astype(float) / rows["n_atlas"].astype(float)


def atrophied_codes(
    report: pd.DataFrame, *, regions: tuple[str, ...], pct: float = ATROPHY_PCT
) -> tuple[int, ...]:
    """Codes of ``regions`` that lost more than ``pct`` % of their voxels to CSF
    (:func:`csf_share` of the report of :func:`follow_csf`), in the report's order."""
    share = csf_share(report, regions=regions)
    return tuple(int(c) for c in report.loc[share.index[share > pct], "code"])


def _grey_level(values: NDArray[np.floating], white: float) -> float:
    """The class of ``values`` other than ``white`` (two-class 1-D k-means, one class fixed):
    :func:`~ironmap.regions.tissue.robust_tissue_level` from the quartile of ``values`` farther
    from ``white``, on that side of the cut half-way between the two levels (10 steps)."""
    low, high = np.percentile(values, [25.0, 75.0])
    darker = white - low > high - white
    return robust_tissue_level(
        values,
        start_percentile=25.0 if darker else 75.0,
        above=not darker,
        reference=white,
        ratio=0.5,
        n_iter=10,
    )


def follow_grey_white(
    labels: NDArray[np.integer],
    image: NDArray[np.floating],
    *,
    voxel_mm: tuple[float, float, float],
    regions: tuple[str, ...] = GREY_WHITE_FOLLOWED,
    codes: tuple[int, ...] | None = None,
    white_mm: float = 6.0,
    min_contrast: float = 0.1,
) -> tuple[NDArray[np.int16], pd.DataFrame]:
    """Give up the white-matter-like voxels of grey-matter labels (step 2 above).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Atlas labels (catalogue codes; not modified).
    image : numpy.ndarray of float, shape (X, Y, Z)
        The subject's T1w or first echo (any units) on the same grid; non-finite voxels are
        kept.
    voxel_mm : tuple of float
        Voxel size (mm).
    regions : tuple of str, optional
        Grey-matter regions to follow (catalogue names).
    codes : tuple of int, optional
        Follow only these labels of ``regions`` (e.g. :func:`atrophied_codes`); the others are
        kept as registered, with no report row. Default: every label of ``regions``.
    white_mm : float, optional
        The white-matter level is the median intensity of the atlas's cerebral white matter
        within this distance (mm) of the label: local, so a receive bias does not move it.
    min_contrast : float, optional
        Least ``|white - grey| / white`` for a label to be followed.

    Returns
    -------
    relabelled : numpy.ndarray of int16, shape (X, Y, Z)
    report : pandas.DataFrame
        One row per followed code present, columns :data:`GREY_WHITE_COLUMNS`; ``status`` is
        ``followed`` or ``no_contrast`` (label kept as registered).
    """
    labels = np.asarray(labels)
    t1 = np.asarray(image, dtype=np.float32)
    if labels.shape != t1.shape:
        raise ValueError(f"labels {labels.shape} and image {t1.shape} must share a grid")
    out = labels.astype(np.int16, copy=True)
    voxel = np.asarray(voxel_mm, dtype=np.float64)
    white_matter = np.isin(labels, by_name("cerebral_wm").codes)
    followed = np.isin(labels, [c for r in regions for c in by_name(r).codes])
    rows, moved = [], np.zeros(labels.shape, dtype=bool)
    for region in regions:
        for code, side in zip(by_name(region).codes, ("left", "right"), strict=True):
            inside = labels == code
            if not inside.any() or (codes is not None and code not in codes):
                continue
            box = _box(inside, np.ceil(white_mm / voxel).astype(int) + 1)
            near = ndimage.distance_transform_edt(~inside[box], sampling=voxel) <= white_mm
            values = t1[box][inside[box]]
            values = values[np.isfinite(values)]
            white_values = t1[box][near & white_matter[box]]
            white_values = white_values[np.isfinite(white_values)]
            row = dict.fromkeys(GREY_WHITE_COLUMNS, np.nan)
            row.update(
                region=region, hemisphere=side, code=code, n_atlas=int(inside.sum()), n_white=0
            )
            row["status"] = "no_contrast"
            rows.append(row)
            if values.size < 10 or white_values.size < 10:
                continue
            white = float(np.median(white_values))
            grey = _grey_level(values, white)
            row.update(grey=grey, white=white, threshold=0.5 * (grey + white))
            if not abs(white - grey) > min_contrast * abs(white):
                continue
            if white > grey:
                white_like = inside & (t1 > row["threshold"])
            else:
                white_like = inside & (t1 < row["threshold"])
            moved |= white_like
            row.update(n_white=int(white_like.sum()), status="followed")
    report = pd.DataFrame(rows, columns=list(GREY_WHITE_COLUMNS))
    if moved.any():
        # What a label gives up: the label of the nearest voxel outside the followed labels and
        # the iron-rich nuclei (drawn on R2*, not grown on another contrast).
        nuclei = np.isin(labels, [c for codes in IRON_RICH.values() for c in codes])
        _take_nearest(out, labels, moved, ~(followed | nuclei), tuple(voxel))
    return out, report
