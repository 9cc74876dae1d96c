"""White-matter lesions one by one: paramagnetic rims and the per-lesion truth.

A share of chronic MS lesions carry a rim of iron-laden microglia at their edge (paramagnetic
rim lesions, NAIMS consensus, Bagnato et al., Brain 2024): on R2*, phase and QSM images the rim
is brighter than the core. Here a lesion of at least :data:`RIM_MIN_VOLUME_ML` gets a rim with
probability :data:`RIM_PROBABILITY` (:func:`lesion_rim_shells`): a susceptibility shell of
:data:`RIM_CHI_PPM` (+0.03 to +0.09 ppm above the lesion), :data:`RIM_THICKNESS_RANGE_MM`
(0.5-1.5 mm) thick inside the lesion's edge, covering :data:`RIM_COVERAGE_RANGE` (65-100 %) of
its surface (the rest is a spherical cap of the lesion, seen from its centre, left bare). Each
1 mm voxel gets the rim's partial-volume occupancy; where it is at least one half the voxel's
R2* is :data:`RIM_R2STAR_FACTOR` times the lesion's (:func:`lesion_rims`). The rim's *field* is
the dipole field of its chi (:mod:`.susceptibility`), not an offset: no susceptibility
distribution shifts the field uniformly in a shell. Rims are drawn from their own random
stream, so a subject's other draws (anatomy, texture, noise) are those it had before rims
existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "RIM_CHI_PPM",
    "RIM_COVERAGE_RANGE",
    "RIM_MIN_VOLUME_ML",
    "RIM_PROBABILITY",
    "RIM_R2STAR_FACTOR",
    "RIM_THICKNESS_MM",
    "RIM_THICKNESS_RANGE_MM",
    "RimShells",
    "lesion_rim_shells",
    "lesion_rims",
    "lesion_truth",
]

#: Share of lesions with a paramagnetic rim.
RIM_PROBABILITY = 0.3
#: Rim R2* relative to the rest of the lesion.
RIM_R2STAR_FACTOR = 1.6
#: Thickness of the rim, inside the lesion (mm): the default of :func:`lesion_rims`' fixed
#: thickness (``thickness_mm``); simulated subjects draw it from RIM_THICKNESS_RANGE_MM.
RIM_THICKNESS_MM = 1.0
#: Range of a rim's drawn thickness (mm, uniform), inside the lesion's edge.
RIM_THICKNESS_RANGE_MM = (0.5, 1.5)
#: Range of the share of the lesion's surface the rim covers (uniform).
RIM_COVERAGE_RANGE = (0.65, 1.0)
#: Range of the rim's susceptibility above the lesion (ppm, uniform).
RIM_CHI_PPM = (0.03, 0.09)
#: Smallest lesion (mL) that gets a rim: rims are seen at the edge of larger chronic lesions.
RIM_MIN_VOLUME_ML = 0.1
#: Lesions are the 26-connected components of the lesion mask.
_STRUCTURE = np.ones((3, 3, 3), dtype=bool)
#: The rim is peeled by erosion with the 6-connected cross (a distance of one voxel per step).
_PEEL = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class RimShells:
    """The paramagnetic rims of a lesion mask (1 mm grid).

    Attributes
    ----------
    occupancy : numpy.ndarray of float32, shape (X, Y, Z)
        Share of each voxel inside a rim, in [0, 1].
    chi_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        The rims' susceptibility above the lesion (ppm), ``occupancy`` times the rim's chi.
    records : list of dict
        Per lesion (26-connected component, label order): ``rim`` (bool) and for a rim
        ``rim_chi_ppm``, ``rim_thickness_mm``, ``rim_coverage`` (share of the surface, drawn)
        and ``rim_coverage_measured`` (share of the lesion's edge voxels the rim reaches).
    """

    occupancy: NDArray[np.float32]
    chi_ppm: NDArray[np.float32]
    records: list[dict] = field(default_factory=list)


def lesion_rim_shells(
    lesions: NDArray[np.bool_],
    affine: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    probability: float = RIM_PROBABILITY,
    thickness_mm: tuple[float, float] = RIM_THICKNESS_RANGE_MM,
    coverage: tuple[float, float] = RIM_COVERAGE_RANGE,
    chi_ppm: tuple[float, float] = RIM_CHI_PPM,
) -> RimShells:
    """Draw the rims: which lesions, how thick, how much of the surface, what chi.

    A rim fills the lesion's outer ``t`` mm: a voxel whose centre lies ``d`` mm inside the
    lesion (Euclidean distance to the nearest voxel outside it; 1 for an edge voxel) spans
    depths ``[d - 0.5, d + 0.5]`` from the surface at ``0.5``, so its occupancy is the overlap
    of that interval with ``[0.5, 0.5 + t]``. A cap of the surface, ``1 - coverage`` of the
    solid angle seen from the lesion's centre around a random direction, is left bare.

    Parameters
    ----------
    lesions : numpy.ndarray of bool, shape (X, Y, Z)
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> mm (isotropic voxels expected; the mean voxel size is used).
    rng : numpy.random.Generator
        The rims' own stream: ``rng.random(n)`` draws which lesions have one first (as before
        the shells had a thickness, coverage and chi), then per rim lesion its draws.
    probability : float, optional
    thickness_mm, coverage, chi_ppm : (float, float), optional
        Uniform ranges (mm; share of the surface; ppm). Give ``(x, x)`` for a fixed value.

    Returns
    -------
    RimShells
    """
    labels, n = ndimage.label(lesions, structure=_STRUCTURE)
    occupancy = np.zeros(lesions.shape, dtype=np.float32)
    chi = np.zeros(lesions.shape, dtype=np.float32)
    records: list[dict] = []
    if n == 0:
        return RimShells(occupancy, chi, records)
    voxel_mm = float(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)).mean())
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    has_rim = rng.random(n) < probability
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        lesion = labels[pad] == index
        if not has_rim[index - 1] or lesion.sum() * voxel_ml < RIM_MIN_VOLUME_ML:
            records.append({"rim": False})
            continue
        t = float(rng.uniform(*thickness_mm))
        share = float(rng.uniform(*coverage))
        value = float(rng.uniform(*chi_ppm))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        depth = ndimage.distance_transform_edt(lesion) * voxel_mm
        low, high = 0.5 * voxel_mm, 0.5 * voxel_mm + t
        occ = (
            np.clip(
                np.minimum(depth + 0.5 * voxel_mm, high) - np.maximum(depth - 0.5 * voxel_mm, low),
                0.0,
                None,
            )
            / voxel_mm
        )
        occ = np.where(lesion, occ, 0.0)
        ijk = np.argwhere(lesion)
        centre = ijk.mean(axis=0)
        offset = np.stack(
            np.meshgrid(*(np.arange(s.stop - s.start) for s in pad), indexing="ij"), -1
        )
        offset = offset - centre
        cos = (offset @ direction) / np.maximum(np.linalg.norm(offset, axis=-1), 1e-9)
        occ = np.where(cos <= 1.0 - 2.0 * (1.0 - share), occ, 0.0)
        occupancy[pad] = np.maximum(occupancy[pad], occ)
        chi[pad] += (value * occ).astype(np.float32)
        edge = lesion & ~ndimage.binary_erosion(lesion, structure=_PEEL)
        records.append(
            {
                "rim": True,
                "rim_chi_ppm": value,
                "rim_thickness_mm": t,
                "rim_coverage": share,
                "rim_coverage_measured": float((occ[edge] > 0).mean()),
            }
        )
    return RimShells(occupancy, chi, records)


def lesion_rims(
    lesions: NDArray[np.bool_],
    affine: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    probability: float = RIM_PROBABILITY,
    thickness_mm: float = RIM_THICKNESS_MM,
) -> NDArray[np.bool_]:
    """Rim voxels of the lesions drawn to have one (1 mm grid): a full shell of fixed thickness.

    :func:`lesion_rim_shells` with the whole surface covered and ``thickness_mm``; a voxel is
    rim where at least half of it is.

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
    shells = lesion_rim_shells(
        lesions,
        affine,
        rng,
        probability=probability,
        thickness_mm=(thickness_mm, thickness_mm),
        coverage=(1.0, 1.0),
    )
    return shells.occupancy >= 0.5


def lesion_truth(
    lesions: NDArray[np.bool_],
    rims: NDArray[np.bool_] | None,
    r2star: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    shells: RimShells | None = None,
    chi_ppm: NDArray[np.floating] | None = None,
    central_vein: NDArray[np.bool_] | None = None,
    vein_beside: NDArray[np.bool_] | None = None,
) -> list[dict]:
    """One record per lesion (26-connected component) of the fine-grid truth.

    Parameters
    ----------
    lesions, rims : numpy.ndarray of bool, shape (X, Y, Z)
        Lesion mask and the voxels that are rim (R2*), or None.
    r2star : numpy.ndarray, shape (X, Y, Z)
        True R2* (1/s).
    affine : numpy.ndarray, shape (4, 4)
    shells : RimShells, optional
        The rims' susceptibility truth (:func:`lesion_rim_shells`): its records are added.
    chi_ppm : numpy.ndarray, shape (X, Y, Z), optional
        True susceptibility (ppm, relative to CSF): ``chi_core_median`` (lesion less its rim
        voxels) and ``chi_rim_median`` (the rim voxels: occupancy >= 0.5; None without a
        rim); medians, so that a central vein's few voxels do not move them.
    central_vein, vein_beside : numpy.ndarray of bool, shape (n_lesions,), optional
        Per lesion (label order): a central vein runs through it; a vein runs beside it.

    Returns
    -------
    list of dict
        ``centroid_mm`` (scanner RAS, mm), ``volume_ml``, ``rim`` (bool), ``r2star_mean`` (1/s,
        whole lesion), ``r2star_core_mean`` (1/s, lesion less its rim; the whole lesion without
        one), and with the keywords the rim's ``rim_chi_ppm``, ``rim_thickness_mm``,
        ``rim_coverage``, ``rim_coverage_measured``, ``chi_core_median``, ``chi_rim_median`` (ppm)
        ``central_vein`` and ``vein_beside``; sorted by decreasing volume.
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
        record = out[-1]
        if shells is not None:
            record.update({k: v for k, v in shells.records[index - 1].items() if k != "rim"})
            record["rim"] = bool(shells.records[index - 1]["rim"])
        if chi_ppm is not None:
            chi = chi_ppm[box]
            record["chi_core_median"] = float(np.median(chi[core])) if core.any() else None
            record["chi_rim_median"] = float(np.median(chi[lesion & rim])) if rim.any() else None
        if central_vein is not None:
            record["central_vein"] = bool(central_vein[index - 1])
        if vein_beside is not None:
            record["vein_beside"] = bool(vein_beside[index - 1])
    return sorted(out, key=lambda r: -r["volume_ml"])
