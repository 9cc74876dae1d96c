"""Refine iron-rich nuclei of a registered atlas on the subject's own R2* map.

Pallidum, substantia nigra, red nucleus and dentate nucleus are R2*-hyperintense against what
surrounds them, and an atlas warped from a template rarely fits them to the millimetre (the
Talairach nuclei are also coarse). Each nucleus is re-drawn inside a search region, the atlas
label dilated by ``search_mm`` and split between neighbouring nuclei by nearest atlas label:

1. the nucleus level is the median R2* of the brightest part of the search region half as large
   as the atlas label, the background level the median of the search region less its brightest
   atlas-sized part (robust to an atlas label that misses the nucleus by a few millimetres);
2. where the nucleus is clearly brighter (contrast above ``min_contrast`` times the noise SD,
   from differences of neighbouring voxels, and above 10 % of the background), the nucleus is
   the part of the search region above the half-way threshold that is connected to the atlas
   label, plus its largest connected part, holes filled; otherwise the atlas label is kept and
   the row of the report says why.

Voxels a nucleus gives up take the label of the nearest voxel that is not an iron-rich nucleus.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["REFINE_COLUMNS", "refine_nuclei"]

#: Columns of the refinement report.
REFINE_COLUMNS = (
    "code",
    "n_atlas",
    "n_refined",
    "r2star_nucleus",
    "r2star_background",
    "threshold",
    "status",
)


def _robust_sd(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def refine_nuclei(
    labels: NDArray[np.integer],
    r2star: NDArray[np.floating],
    *,
    codes: tuple[int, ...],
    voxel_mm: tuple[float, float, float],
    search_mm: float = 4.0,
    min_contrast: float = 3.0,
    noise_lag: int = 1,
) -> tuple[NDArray[np.int16], pd.DataFrame]:
    """Re-draw the nuclei ``codes`` of ``labels`` on ``r2star`` (same grid).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Registered atlas labels (not modified).
    r2star : numpy.ndarray of float, shape (X, Y, Z)
        R2* map (1/s) on the same grid; NaN where the fit failed (never part of a nucleus).
    codes : tuple of int
        Label codes of the R2*-hyperintense nuclei to refine.
    voxel_mm : tuple of float
        Voxel size (mm).
    search_mm : float, optional
        How far (mm) a nucleus may grow beyond its atlas label.
    min_contrast : float, optional
        Smallest nucleus-minus-background contrast, in noise SDs, to refine.
    noise_lag : int, optional
        Voxel distance (first axis) of the differences the noise SD is estimated from; the
        upsampling factor when ``r2star`` was interpolated onto a finer grid (its neighbouring
        voxels are then not independent).

    Returns
    -------
    refined : numpy.ndarray of int16, shape (X, Y, Z)
    report : pandas.DataFrame
        One row per code, columns :data:`REFINE_COLUMNS`; ``status`` is ``refined``,
        ``absent`` (no atlas voxel), ``no_contrast`` or ``no_data`` (too few finite R2* voxels).
    """
    labels = np.asarray(labels)
    r2 = np.asarray(r2star, dtype=np.float32)
    if labels.shape != r2.shape:
        raise ValueError(f"labels {labels.shape} and R2* {r2.shape} must share a grid")
    out = labels.astype(np.int16, copy=True)
    voxel = np.asarray(voxel_mm, dtype=np.float64)
    iron = np.isin(labels, list(codes))
    if not iron.any():
        return out, pd.DataFrame(
            [_row(c, 0, "absent") for c in codes], columns=list(REFINE_COLUMNS)
        )
    # Work in the box around the nuclei and their search regions (plus a margin for filling).
    reach = np.ceil(2.0 * search_mm / voxel).astype(int) + 2
    ijk = np.argwhere(iron)
    lo = np.maximum(ijk.min(axis=0) - reach, 0)
    hi = np.minimum(ijk.max(axis=0) + reach + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    refined, rows = _refine_box(
        labels[box], r2[box], codes, voxel, search_mm, min_contrast, max(int(noise_lag), 1)
    )
    out[box] = refined
    for c in codes:  # a nucleus entirely outside the box cannot exist; counts are global
        rows[c]["n_atlas"] = int(np.sum(labels == c))
        if rows[c]["status"] != "refined":
            rows[c]["n_refined"] = rows[c]["n_atlas"]
    return out, pd.DataFrame([rows[c] for c in codes], columns=list(REFINE_COLUMNS))


def _row(code: int, n_atlas: int, status: str) -> dict:
    row = dict.fromkeys(REFINE_COLUMNS, np.nan)
    row.update(code=int(code), n_atlas=n_atlas, n_refined=n_atlas, status=status)
    return row


def _refine_box(labels, r2, codes, voxel, search_mm, min_contrast, lag):
    """:func:`refine_nuclei` inside a box: (refined labels, {code: report row})."""
    out = labels.astype(np.int16, copy=True)
    finite = np.isfinite(r2)
    smooth = np.where(finite, r2, 0.0)
    present = [c for c in codes if np.any(labels == c)]
    dist = {c: ndimage.distance_transform_edt(labels != c, sampling=voxel) for c in present}
    nearest = None
    if present:
        nearest = np.asarray(present)[np.stack([dist[c] for c in present]).argmin(axis=0)]
    rows: dict[int, dict] = {}
    new_masks = {}
    for c in codes:
        n_atlas = int(np.sum(labels == c))
        if c not in dist:
            rows[c] = _row(c, n_atlas, "absent")
            continue
        prior = labels == c
        search = (dist[c] <= search_mm) & (nearest == c) & finite
        n_in = int(np.sum(prior & finite))
        values = np.sort(smooth[search])
        if n_in < 3 or values.size < 2 * n_in + 10:
            rows[c] = _row(c, n_atlas, "no_data")
            continue
        # The brightest part of the search region half the atlas label's size, against the rest
        # beyond the atlas label's size: robust to an atlas label that misses the nucleus by a
        # few millimetres, or is larger than it.
        level_in = float(np.median(values[-max(n_in // 2, 2) :]))
        level_out = float(np.median(values[:-n_in]))
        pairs = search[lag:] & search[:-lag]
        spread = _robust_sd((smooth[lag:] - smooth[:-lag])[pairs]) / np.sqrt(2.0)  # noise SD
        threshold = 0.5 * (level_in + level_out)
        row = _row(c, n_atlas, "no_contrast")
        row.update(r2star_nucleus=level_in, r2star_background=level_out, threshold=threshold)
        rows[c] = row
        if level_in - level_out <= max(min_contrast * spread, 0.1 * level_out):
            continue
        candidate = search & (smooth > threshold)
        parts, n_parts = ndimage.label(candidate, structure=np.ones((3, 3, 3)))
        if n_parts == 0:
            continue
        sizes = np.bincount(parts.ravel())
        sizes[0] = 0
        keep = np.unique(parts[candidate & prior])  # what touches the atlas label
        keep = np.union1d(keep[keep > 0], [int(sizes.argmax())])  # and the largest part
        mask = ndimage.binary_fill_holes(np.isin(parts, keep)) & search
        new_masks[c] = mask
        row.update(n_refined=int(mask.sum()), status="refined")
    if new_masks:
        iron = np.isin(labels, list(codes))
        # What a nucleus gives up: the label of the nearest voxel that is not a nucleus.
        _, idx = ndimage.distance_transform_edt(iron, sampling=voxel, return_indices=True)
        fill = labels[tuple(idx)]
        for c, mask in new_masks.items():
            lost = (labels == c) & ~mask
            out[lost] = fill[lost]
        for c, mask in new_masks.items():
            out[mask] = c
    return out, rows
