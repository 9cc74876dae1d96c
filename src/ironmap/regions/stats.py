"""Regional R2* statistics and volumes: the tidy tables of the participant stage.

Columns follow CONVENTIONS: ``regions.tsv`` rows are participant x region x hemisphere with
``r2star_median, r2star_mean, r2star_iqr`` (1/s), ``n_voxels`` (R2* voxels used) and
``volume_ml`` (from the segmentation on its own grid).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..defaults import MIN_FRACTION
from ..errors import IronmapWarning
from .labels import DEEP_GM, RegionCodes

__all__ = [
    "MIN_FRACTION",
    "REGION_COLUMNS",
    "VOLUME_COLUMNS",
    "erode",
    "region_groups",
    "regional_r2star",
    "volumes",
]

REGION_COLUMNS = [
    "participant_id",
    "region",
    "hemisphere",
    "r2star_median",
    "r2star_mean",
    "r2star_iqr",
    "n_voxels",
    "volume_ml",
]
VOLUME_COLUMNS = [
    "participant_id",
    "icv_ml",
    "brain_ml",
    "cortical_gm_ml",
    "nbv",
    "lesion_volume_ml",
    "lesion_count",
]
HEMISPHERES = ("left", "right", "both")


def region_groups(codes: RegionCodes) -> dict[str, tuple[int, ...]]:
    """``"region/hemisphere" -> codes`` for every deep GM region and cerebral WM (for NAWM)."""
    groups = {}
    for region in (*DEEP_GM, "cerebral_wm"):
        for hemi in HEMISPHERES:
            groups[f"{region}/{hemi}"] = codes.codes(region, hemi)
    return groups


def erode(mask: NDArray[np.bool_], voxel_mm: NDArray[np.float64], radius_mm: float) -> NDArray:
    """Binary erosion by a ball of ``radius_mm`` (anisotropic voxels handled)."""
    if radius_mm <= 0:
        return mask
    half = np.floor(radius_mm / np.asarray(voxel_mm)).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * v) ** 2 for g, v in zip(grid, voxel_mm, strict=True)) <= radius_mm**2
    return ndimage.binary_erosion(mask, structure=ball)


def _stats(values: NDArray[np.float64]) -> tuple[float, float, float, int]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan, 0
    q1, med, q3 = np.percentile(values, [25.0, 50.0, 75.0])
    return float(med), float(values.mean()), float(q3 - q1), int(values.size)


def regional_r2star(
    r2star: NDArray[np.float64],
    fractions: Mapping[str, NDArray[np.float32]],
    *,
    participant_id: str,
    region_volumes_ml: Mapping[str, float],
    lesion_fraction: NDArray[np.float32] | None,
    min_fraction: float = MIN_FRACTION,
    erode_mm: float = 0.0,
    voxel_mm: NDArray[np.float64] | None = None,
) -> pd.DataFrame:
    """One row per region x hemisphere (plus ``lesions`` and ``nawm``).

    A voxel counts for a structure when at least ``min_fraction`` of it lies inside (and, for
    deep GM and NAWM, no part of it inside a lesion); ``erode_mm`` shrinks each structure first.
    Regions the segmentation lacks, or with no usable voxel, get NaN with a warning.
    Lesion R2* uses voxels at least ``min_fraction`` inside the lesion mask.
    """
    clean = np.ones(r2star.shape, dtype=bool) if lesion_fraction is None else lesion_fraction == 0
    vox = np.ones(3) if voxel_mm is None else np.asarray(voxel_mm)
    rows = []
    empty = []
    for region in (*DEEP_GM, "nawm"):
        source = "cerebral_wm" if region == "nawm" else region
        hemispheres = ("both",) if region == "nawm" else HEMISPHERES
        for hemi in hemispheres:
            frac = fractions.get(f"{source}/{hemi}")
            if frac is None or not frac.any():
                med = mean = iqr = np.nan
                n = 0
            else:
                mask = erode((frac >= min_fraction) & clean, vox, erode_mm)
                med, mean, iqr, n = _stats(r2star[mask])
            if n == 0:
                empty.append(f"{region}/{hemi}")
            rows.append(
                (
                    participant_id,
                    region,
                    hemi,
                    med,
                    mean,
                    iqr,
                    n,
                    region_volumes_ml.get(f"{source}/{hemi}", np.nan),
                )
            )
    if lesion_fraction is not None:
        med, mean, iqr, n = _stats(r2star[lesion_fraction >= min_fraction])
        rows.append(
            (
                participant_id,
                "lesions",
                "both",
                med,
                mean,
                iqr,
                n,
                region_volumes_ml.get("lesions", np.nan),
            )
        )
    else:
        rows.append((participant_id, "lesions", "both", np.nan, np.nan, np.nan, 0, np.nan))
    if empty:
        warnings.warn(
            f"{participant_id}: no usable R2* voxels in {', '.join(empty)}; those rows are NaN",
            IronmapWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=REGION_COLUMNS)


def volumes(
    labels: NDArray,
    affine: NDArray[np.float64],
    codes: RegionCodes,
    *,
    participant_id: str,
    lesion_mask: NDArray | None = None,
    lesion_affine: NDArray[np.float64] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Subject volumes (CONVENTIONS ``subjects.tsv`` columns) and per-region volumes, in mL.

    Volumes are counted on each image's own grid: ICV = all labelled voxels, brain = ICV minus
    CSF and ventricles, NBV = brain / ICV; lesion count = 26-connected components of the mask.

    Returns
    -------
    subject : dict
        ``VOLUME_COLUMNS`` values.
    regions : dict
        ``"region/hemisphere" -> mL`` and ``"lesions" -> mL``.
    """
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    flat = np.asarray(labels).astype(np.int64).ravel()
    flat = flat[flat > 0]
    counts = np.bincount(flat) if flat.size else np.zeros(1, dtype=np.int64)

    def ml(code_list) -> float:
        return float(sum(counts[c] for c in code_list if 0 <= c < counts.size)) * voxel_ml

    icv = float(flat.size) * voxel_ml
    brain = icv - ml(codes.csf)
    region_ml = {key: ml(c) for key, c in region_groups(codes).items()}
    lesion_ml, n_lesions = np.nan, np.nan
    if lesion_mask is not None and lesion_affine is not None:
        mask = np.asarray(lesion_mask) != 0
        lesion_ml = float(mask.sum()) * abs(float(np.linalg.det(lesion_affine[:3, :3]))) / 1000.0
        n_lesions = int(ndimage.label(mask, structure=np.ones((3, 3, 3)))[1])
    region_ml["lesions"] = lesion_ml
    subject = {
        "participant_id": participant_id,
        "icv_ml": icv,
        "brain_ml": brain,
        "cortical_gm_ml": ml(codes.codes("cortex")),
        "nbv": brain / icv if icv > 0 else np.nan,
        "lesion_volume_ml": lesion_ml,
        "lesion_count": n_lesions,
    }
    return subject, region_ml
