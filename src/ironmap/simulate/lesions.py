"""White-matter lesions one by one: paramagnetic rims and the per-lesion truth.

A share of chronic MS lesions carry a rim of iron-laden microglia at their edge (paramagnetic
rim lesions): on R2* and phase images the rim is brighter than the core and shifts the local
field by a few hertz. Here a lesion gets a rim with probability :data:`RIM_PROBABILITY`: its
outer shell of :data:`RIM_THICKNESS_MM` (inside the lesion) has R2* :data:`RIM_R2STAR_FACTOR`
times the lesion's and an extra field of :data:`RIM_FIELD_HZ` (a local paramagnetic shift; no
dipole pattern is modelled). Rims are drawn from their own random stream, so a subject's other
draws (anatomy, texture, noise) are those it had before rims existed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "RIM_FIELD_HZ",
    "RIM_MIN_VOLUME_ML",
    "RIM_PROBABILITY",
    "RIM_R2STAR_FACTOR",
    "RIM_THICKNESS_MM",
    "lesion_rims",
    "lesion_truth",
]

#: Share of lesions with a paramagnetic rim.
RIM_PROBABILITY = 0.3
#: Rim R2* relative to the rest of the lesion.
RIM_R2STAR_FACTOR = 1.6
#: Thickness of the rim, inside the lesion (mm).
RIM_THICKNESS_MM = 1.0
#: Smallest lesion (mL) that gets a rim: rims are seen at the edge of larger chronic lesions.
RIM_MIN_VOLUME_ML = 0.1
#: Extra off-resonance of the rim (Hz, paramagnetic: positive).
RIM_FIELD_HZ = 3.0
#: Lesions are the 26-connected components of the lesion mask.
_STRUCTURE = np.ones((3, 3, 3), dtype=bool)
#: The rim is peeled by erosion with the 6-connected cross (a distance of one voxel per step).
_PEEL = ndimage.generate_binary_structure(3, 1)


def lesion_rims(
    lesions: NDArray[np.bool_],
    affine: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    probability: float = RIM_PROBABILITY,
    thickness_mm: float = RIM_THICKNESS_MM,
) -> NDArray[np.bool_]:
    """Rim voxels of the lesions drawn to have one (1 mm grid).

    Parameters
    ----------
    lesions : numpy.ndarray of bool, shape (X, Y, Z)
        Lesion mask on the fine grid.
    affine : numpy.ndarray, shape (4, 4)
        Its voxel -> mm affine (for the thickness in voxels).
    rng : numpy.random.Generator
    probability, thickness_mm : optional

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
        The outer shell (``thickness_mm`` thick) of every rim lesion; lesions smaller than
        :data:`RIM_MIN_VOLUME_ML` get none.
    """
    labels, n = ndimage.label(lesions, structure=_STRUCTURE)
    rims = np.zeros(lesions.shape, dtype=bool)
    if n == 0:
        return rims
    voxel_mm = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).mean())
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    steps = max(1, round(thickness_mm / voxel_mm))
    has_rim = rng.random(n) < probability
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if not has_rim[index - 1]:
            continue
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        lesion = labels[pad] == index
        if lesion.sum() * voxel_ml < RIM_MIN_VOLUME_ML:
            continue
        core = ndimage.binary_erosion(lesion, structure=_PEEL, iterations=steps)
        rims[pad] |= lesion & ~core
    return rims


def lesion_truth(
    lesions: NDArray[np.bool_],
    rims: NDArray[np.bool_] | None,
    r2star: NDArray[np.floating],
    affine: NDArray[np.float64],
) -> list[dict]:
    """One record per lesion (26-connected component) of the fine-grid truth.

    Returns
    -------
    list of dict
        ``centroid_mm`` (scanner RAS, mm), ``volume_ml``, ``rim`` (bool), ``r2star_mean`` (1/s,
        whole lesion), ``r2star_core_mean`` (1/s, lesion less its rim; the whole lesion without
        one); sorted by decreasing volume.
    """
    labels, _ = ndimage.label(lesions, structure=_STRUCTURE)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        lesion = labels[box] == index
        rim = np.zeros_like(lesion) if rims is None else rims[box] & lesion
        ijk = np.argwhere(lesion).mean(axis=0) + [s.start for s in box]
        centre = affine[:3, :3] @ ijk + affine[:3, 3]
        core = lesion & ~rim
        values = r2star[box]
        out.append(
            {
                "centroid_mm": [round(float(c), 3) for c in centre],
                "volume_ml": float(lesion.sum()) * voxel_ml,
                "rim": bool(rim.any()),
                "r2star_mean": float(values[lesion].mean()),
                "r2star_core_mean": float(values[core].mean()) if core.any() else None,
            }
        )
    return sorted(out, key=lambda r: -r["volume_ml"])
