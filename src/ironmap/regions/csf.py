"""CSF-like voxels inside a region, by the subject's own R2*.

A segmentation that does not follow the subject's ventricles (an atlas in an atrophied brain, a
user's segmentation on another grid) puts cerebrospinal fluid into caudate, thalamus or white
matter. CSF has an R2* of a few 1/s at any field strength, against 15-45 1/s in deep grey matter
at 3 T, so its voxels drag a region's median down: a false "iron loss" that grows with
ventricular enlargement, i.e. with the disease. :func:`csf_like` finds them in one region:

1. the region's tissue level ``T`` is the median R2* of its voxels above ``core_ratio`` times
   their 90th percentile (twice: robust when most of the region is CSF);
2. the *core* is every voxel below ``core_ratio x T`` (default one half: more than half of the
   voxel's signal is CSF);
3. the *rim* is every voxel next to the core (26-neighbours, one voxel) below
   ``rim_ratio x T`` (default 0.75): the partial-volume layer between CSF and tissue;
4. with the segmentation's CSF (``csf``: the voxels that are mostly ventricle or CSF by its
   labels, outside the region), the *wall* is every voxel of the region next to them below
   ``wall_ratio x T`` (default 0.85).

The wall is the layer a segmentation misplaces by a fraction of a voxel. A voxel passes the
label test (``--min-fraction``, 0.9) with up to a tenth of it labelled otherwise; but where
the labels do not follow the subject's ventricle wall to the millimetre (a registered atlas, a
segmentation drawn on another grid or resampled), a voxel wholly "caudate" by its labels can
hold 10-30 % ventricle, and CSF weighs more in its signal than its volume (longer T2*, higher
proton density): R2* 15-35 % below the tissue's. Against an enlarged ventricle such voxels are
a large share of a thin caudate (in ``benchmarks/atlas_atrophy.py`` at 4 mm, 13-35 % of an
atlas caudate's voxels held more than 5 % true ventricle, median R2* 20-31 % low). A clean
wall voxel is below 0.85 T only by noise and texture (a 5 % SD puts 0.1 % of them there).

A region without a voxel below half its tissue level and without CSF beside it is left
exactly as it is (no core, no rim, no wall), and so is tissue whose R2* is low for a
biological reason (iron loss of 10-20 %, even next to CSF, loses at most the one-voxel layer
against it). S0 is not used: in a spoiled gradient echo CSF is brighter or darker than tissue
depending on the flip angle and TR (long T1), while its R2* is low with every protocol.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .tissue import robust_tissue_level

__all__ = ["CORE_RATIO", "MIN_VOXELS", "RIM_RATIO", "WALL_RATIO", "csf_like", "tissue_level"]

#: Voxels below this fraction of the region's tissue R2* are CSF-like.
CORE_RATIO = 0.5
#: Neighbours of a CSF-like voxel below this fraction of the tissue R2* are CSF partial volume.
RIM_RATIO = 0.75
#: Voxels next to the segmentation's CSF below this fraction of the tissue R2* are CSF
#: partial volume (the wall, step 4).
WALL_RATIO = 0.85
#: Regions with fewer finite voxels are not examined.
MIN_VOXELS = 10


def tissue_level(values: NDArray[np.floating], *, core_ratio: float = CORE_RATIO) -> float:
    """Robust tissue R2* of a region's voxels: the median of those not CSF-like.

    :func:`~ironmap.regions.tissue.robust_tissue_level` from the 90th percentile, twice, with
    the cut at ``core_ratio`` times the level (CSF at 0 1/s).

    Parameters
    ----------
    values : numpy.ndarray of float, shape (N,)
        R2* (1/s) of the region's voxels; non-finite values are ignored.
    core_ratio : float, optional
        Voxels below this fraction of the level are left out of it.

    Returns
    -------
    float
        Tissue R2* (1/s); NaN without a finite value.
    """
    values = np.asarray(values, dtype=np.float64)
    return robust_tissue_level(values, start_percentile=90.0, ratio=core_ratio, n_iter=2)


def csf_like(
    r2star: NDArray[np.floating],
    mask: NDArray[np.bool_],
    *,
    csf: NDArray[np.bool_] | None = None,
    core_ratio: float = CORE_RATIO,
    rim_ratio: float = RIM_RATIO,
    wall_ratio: float = WALL_RATIO,
    min_voxels: int = MIN_VOXELS,
) -> NDArray[np.bool_]:
    """Voxels of ``mask`` whose R2* says CSF (see the module docstring).

    Parameters
    ----------
    r2star : numpy.ndarray of float, shape (X, Y, Z)
        R2* map (1/s); non-finite voxels are never CSF-like (they are left out anyway).
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        The region's voxels.
    csf : numpy.ndarray of bool, shape (X, Y, Z), optional
        The segmentation's CSF on the same grid (e.g. voxels at least half ventricle or CSF by
        its labels); the region's voxels next to it are examined as its wall (step 4). Its
        voxels inside ``mask`` are ignored. None: no wall.
    core_ratio, rim_ratio, wall_ratio : float, optional
        Fractions of the region's tissue R2* below which a voxel is CSF (core), a neighbour of
        the core is CSF partial volume (rim), and a neighbour of ``csf`` is (wall);
        ``0 < core_ratio <= rim_ratio < 1`` and ``0 < wall_ratio < 1``.
    min_voxels : int, optional
        A region with fewer finite voxels is returned untouched (all False).

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
        CSF-like voxels, a subset of ``mask``.

    Raises
    ------
    ValueError
        If the ratios are not ordered inside (0, 1), or the shapes differ.
    """
    if not 0.0 < core_ratio <= rim_ratio < 1.0:
        raise ValueError(f"need 0 < core_ratio <= rim_ratio < 1, got {core_ratio}, {rim_ratio}")
    if not 0.0 < wall_ratio < 1.0:
        raise ValueError(f"need 0 < wall_ratio < 1, got {wall_ratio}")
    r2 = np.asarray(r2star)
    mask = np.asarray(mask, dtype=bool)
    if r2.shape != mask.shape or (csf is not None and np.shape(csf) != mask.shape):
        raise ValueError(
            f"R2* {r2.shape}, mask {mask.shape} and csf {np.shape(csf)} must share a grid"
        )
    out = np.zeros(mask.shape, dtype=bool)
    region = mask & np.isfinite(r2)
    if region.sum() < min_voxels:
        return out
    # Work in the region's bounding box (plus one voxel for rim and wall): small regions, big
    # maps.
    ijk = np.argwhere(region)
    lo = np.maximum(ijk.min(axis=0) - 1, 0)
    hi = np.minimum(ijk.max(axis=0) + 2, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    inside, values = region[box], r2[box]
    level = tissue_level(values[inside], core_ratio=core_ratio)
    if not level > 0:
        return out
    cube = np.ones((3, 3, 3), dtype=bool)
    core = inside & (values < core_ratio * level)  # NaN compares False
    found = core.copy()
    if core.any():
        near = ndimage.binary_dilation(core, structure=cube)
        found |= near & inside & (values < rim_ratio * level)
    if csf is not None:
        outside = np.asarray(csf, dtype=bool)[box] & ~mask[box]
        if outside.any():
            wall = ndimage.binary_dilation(outside, structure=cube) & inside
            found |= wall & (values < wall_ratio * level)
    out[box] = found
    return out
