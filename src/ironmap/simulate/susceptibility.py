"""The susceptibility truth of a simulated head and the field it produces.

Sources, on the 1 mm grid of the anatomy, in ppm relative to CSF (SI units):

- **tissue**: a value per tissue (:data:`TISSUE_CHI_PPM`: white matter diamagnetic from myelin,
  about -0.03 ppm; cortex slightly paramagnetic). Deep grey matter follows its **iron**: the
  simulator plants R2* per tissue (:mod:`.tissue`), and iron raises both R2* and chi linearly
  (Langkammer et al., Radiology 2010 and NeuroImage 2012), so a deep grey-matter voxel gets
  ``chi = CHI_AT_45 * (R2* - R2STAR_IRON_FREE) / (R2*_45 - R2STAR_IRON_FREE)``: the literature
  value of :data:`DEEP_GM_CHI_AT_45_PPM` (3 T, relative to CSF; e.g. Deistung et al.,
  NeuroImage 2013; Li et al., NeuroImage 2014) at the healthy age-45 R2* of that structure, and
  proportional to the iron-driven part of R2* (above :data:`R2STAR_IRON_FREE`) otherwise. A
  subject with 10 % more iron-driven R2* in putamen has 10 % more putamen chi, voxel by voxel
  (texture included); R2* and chi agree.
- **lesions**: demyelinated, :data:`LESION_CHI_PPM` above the white matter they replace.
- **paramagnetic rims** (:mod:`.lesions`): a shell of :data:`RIM_CHI_PPM` (+0.03 to +0.09) at
  the lesion's edge, 0.5-1.5 mm thick, covering 65-100 % of its surface (a partial-volume
  occupancy per 1 mm voxel).
- **veins**: thin paramagnetic tubes (deoxygenated blood, :data:`VEIN_CHI_PPM` 0.3-0.45 ppm,
  radius 0.2-0.4 mm, sub-voxel occupancy): medullary veins running outward from the lateral
  ventricles, two internal cerebral veins, a central vein through
  :data:`CENTRAL_VEIN_PROBABILITY` of the lesions (the central vein sign) and a vein beside
  :data:`ADJACENT_VEIN_PROBABILITY` of them.
- **air**: +:data:`AIR_CHI_PPM` relative to tissue in the air cavities (frontal sinus, mastoid
  air cells) drawn inside the head but outside the intracranial space (:func:`air_cavities`),
  and outside the head (no signal; its boundary with an ellipsoidal head gives a uniform field
  inside, which the shim takes up: :func:`field_hz`). The cavities give the background field.

The field (:func:`field_hz`) is the dipole convolution of the whole distribution on the fine
grid (the kernel of :func:`ironmap.susceptibility.dipole.forward_field`), less its mean and
first-order (linear) variation over the brain: the scanner's shim. It goes to the complex
multi-echo signal of every 1 mm voxel before averaging to the acquisition grid
(:func:`.signal.acquire`), so a rim's field is a dipole pattern (about zero in the cavity of a
closed shell), not an offset. The random draws (veins, cavity jitter) come from a stream of
their own: a subject's other draws are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np
import scipy.fft
from numpy.typing import NDArray
from scipy import ndimage

from ..regions.catalog import by_name
from ..susceptibility.dipole import dipole_kernel, hz_per_ppm, padded_shape
from .anatomy import Anatomy
from .tissue import CODE_TISSUE, TISSUES

__all__ = [
    "ADJACENT_VEIN_PROBABILITY",
    "AIR_CHI_PPM",
    "CENTRAL_VEIN_PROBABILITY",
    "DEEP_GM_CHI_AT_45_PPM",
    "FIELD_STRENGTH_T",
    "LESION_CHI_PPM",
    "MEDULLARY_VEINS",
    "R2STAR_IRON_FREE",
    "TISSUE_CHI_PPM",
    "VEIN_CHI_PPM",
    "SusceptibilityTruth",
    "air_cavities",
    "field_hz",
    "susceptibility_map",
    "tissue_chi",
    "vein_tubes",
]

#: Main field (T) of every simulated site (the sidecars say 3 T).
FIELD_STRENGTH_T = 3.0
#: Air relative to tissue (ppm): +9.4 (air +0.36, tissue about -9.05 ppm, SI).
AIR_CHI_PPM = 9.4
#: Deep grey matter at the healthy age-45 R2* (ppm, 3 T, relative to CSF).
DEEP_GM_CHI_AT_45_PPM: Mapping[str, float] = MappingProxyType(
    {
        "pallidum": 0.18,
        "putamen": 0.09,
        "caudate": 0.07,
        "thalamus": 0.03,
        "substantia_nigra": 0.17,
        "red_nucleus": 0.12,
        "dentate_nucleus": 0.12,
    }
)
#: R2* (1/s) of deep grey matter without iron: the intercept of R2* against iron.
R2STAR_IRON_FREE = 15.0
#: The other tissues (ppm, relative to CSF): myelinated white matter is diamagnetic.
TISSUE_CHI_PPM: Mapping[str, float] = MappingProxyType(
    {
        "cerebral_wm": -0.03,
        "cerebellum_wm": -0.03,
        "brainstem": -0.03,
        "cortex": 0.01,
        "cerebellum_cortex": 0.01,
        "csf": 0.0,
        "scalp": 0.0,
    }
)
#: Lesion tissue above the white matter it replaces (ppm): myelin lost.
LESION_CHI_PPM = 0.02
#: Deoxygenated venous blood (ppm), range of a vein's draw.
VEIN_CHI_PPM = (0.30, 0.45)
#: Vein radius (mm), range of a draw.
VEIN_RADIUS_MM = (0.2, 0.4)
#: Medullary veins per subject.
MEDULLARY_VEINS = 40
#: Share of lesions with a central vein through their long axis.
CENTRAL_VEIN_PROBABILITY = 0.4
#: Share of lesions with a vein running beside them (1-3 mm outside the edge).
ADJACENT_VEIN_PROBABILITY = 0.25


@dataclass(frozen=True)
class SusceptibilityTruth:
    """A subject's susceptibility sources on the fine grid.

    Attributes
    ----------
    chi_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        Tissue susceptibility relative to CSF (ppm), veins and rims included; 0 in air.
    air : numpy.ndarray of bool, shape (X, Y, Z)
        Air: outside the head and in the air cavities.
    cavities : numpy.ndarray of bool, shape (X, Y, Z)
        The air cavities inside the head (no MR signal there).
    veins : numpy.ndarray of float32, shape (X, Y, Z)
        Vein occupancy of each voxel, in [0, 1].
    central_vein : numpy.ndarray of bool, shape (n_lesions,)
        Per lesion (26-connected component, label order): a central vein was drawn.
    vein_beside : numpy.ndarray of bool, shape (n_lesions,)
        Per lesion: a vein beside it was drawn.
    """

    chi_ppm: NDArray[np.float32]
    air: NDArray[np.bool_]
    cavities: NDArray[np.bool_]
    veins: NDArray[np.float32]
    central_vein: NDArray[np.bool_]
    vein_beside: NDArray[np.bool_] | None = None


def tissue_chi(
    labels: NDArray[np.integer], r2star: NDArray[np.floating], lesions: NDArray[np.bool_]
) -> NDArray[np.float32]:
    """Tissue susceptibility (ppm, relative to CSF): per tissue, deep grey matter from its R2*.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Label codes (:data:`~.tissue.CODE_TISSUE`).
    r2star : numpy.ndarray, shape (X, Y, Z)
        True R2* (1/s) on the same grid (the subject's iron, texture included).
    lesions : numpy.ndarray of bool, shape (X, Y, Z)

    Returns
    -------
    numpy.ndarray of float32, shape (X, Y, Z)
    """
    lut = np.zeros(max(CODE_TISSUE) + 1, dtype=np.float32)
    slope = np.zeros_like(lut)  # ppm per 1/s of iron-driven R2*
    for code, tissue in CODE_TISSUE.items():
        if tissue in DEEP_GM_CHI_AT_45_PPM:
            r45 = float(TISSUES[tissue].age(45.0))
            slope[code] = DEEP_GM_CHI_AT_45_PPM[tissue] / (r45 - R2STAR_IRON_FREE)
        else:
            lut[code] = TISSUE_CHI_PPM.get(tissue, 0.0)
    iron = np.maximum(np.asarray(r2star, dtype=np.float32) - np.float32(R2STAR_IRON_FREE), 0)
    chi = lut[labels] + slope[labels] * iron
    chi[lesions] += np.float32(LESION_CHI_PPM)
    return chi.astype(np.float32)


def _ellipsoid(shape, affine, centre, radii) -> NDArray[np.bool_]:
    axes = [np.arange(n) * affine[i, i] + affine[i, 3] for i, n in enumerate(shape)]
    g = np.meshgrid(*axes, indexing="ij", sparse=True)
    return sum(((gi - c) / r) ** 2 for gi, c, r in zip(g, centre, radii, strict=True)) < 1.0


def air_cavities(anatomy: Anatomy, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Frontal sinus and mastoid air cells: air inside the head, outside the intracranial space.

    Ellipsoids (centres jittered by ~2 mm) in front of and below the frontal lobe (y +64,
    z -32 mm) and behind the ears (x +-48, y -28, z -36 mm), less the intracranial labels
    dilated by 3 mm: the cavities' fields reach the orbitofrontal and temporal brain as at 3 T.
    """
    shape, affine = anatomy.labels.shape, anatomy.affine
    inside = ndimage.binary_dilation(anatomy.labels > 0, iterations=3)
    air = np.zeros(shape, dtype=bool)
    for centre, radii in (
        ((0.0, 64.0, -32.0), (14.0, 8.0, 10.0)),
        ((48.0, -28.0, -36.0), (9.0, 11.0, 9.0)),
        ((-48.0, -28.0, -36.0), (9.0, 11.0, 9.0)),
    ):
        c = np.asarray(centre) + rng.normal(scale=2.0, size=3)
        air |= _ellipsoid(shape, affine, c, radii)
    return air & anatomy.head & ~inside


def _tube(
    start: NDArray, end: NDArray, radius: float, affine: NDArray, shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], NDArray[np.float32]]:
    """A straight tube's voxel occupancy ``clip(radius + 0.5 - distance, 0, 1)`` (the partial
    volume of a 1 mm voxel, distance from the voxel centre to the segment): its box and values."""
    inv = np.linalg.inv(affine)
    a = inv[:3, :3] @ start + inv[:3, 3]
    b = inv[:3, :3] @ end + inv[:3, 3]
    reach = radius + 1.5
    lo = np.maximum(np.floor(np.minimum(a, b) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(np.maximum(a, b) + reach).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return (slice(0, 0),) * 3, np.zeros((0, 0, 0), dtype=np.float32)
    box = tuple(slice(int(x), int(y)) for x, y in zip(lo, hi, strict=True))
    g = np.stack(np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij"), -1)
    d = b - a
    t = np.clip(((g - a) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)
    dist = np.linalg.norm(g - (a + t[..., None] * d), axis=-1)
    return box, np.clip(radius + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def vein_tubes(
    anatomy: Anatomy,
    rng: np.random.Generator,
    *,
    lesion_probability: float = CENTRAL_VEIN_PROBABILITY,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_]]:
    """Veins: occupancy, their chi (ppm) where they are, and which lesions have a central vein.

    Medullary veins: :data:`MEDULLARY_VEINS` straight tubes in cerebral white matter, from a
    point near a lateral ventricle outward (away from the ventricle's centre), 12-30 mm long.
    Internal cerebral veins: two tubes along y above the thalami. Central veins: through the
    lesion's centre along its long (y) axis, 4 mm beyond each end, in ``lesion_probability`` of
    the lesions (26-connected components, label order); a vein beside the lesion, parallel to its
    long axis 1-3 mm outside its edge, in :data:`ADJACENT_VEIN_PROBABILITY` of them.

    Returns
    -------
    occupancy : numpy.ndarray of float32, shape (X, Y, Z)
        Partial-volume share of each 1 mm voxel inside a vein, in [0, 1].
    chi : numpy.ndarray of float32, shape (X, Y, Z)
        Blood susceptibility (ppm) of the vein covering the voxel, 0 elsewhere.
    central_vein, vein_beside : numpy.ndarray of bool, shape (n_lesions,)
    """
    shape, affine = anatomy.labels.shape, anatomy.affine
    occupancy = np.zeros(shape, dtype=np.float32)
    chi = np.zeros(shape, dtype=np.float32)

    def add(start, end, radius, value):
        box, piece = _tube(np.asarray(start, float), np.asarray(end, float), radius, affine, shape)
        take = piece > occupancy[box]
        occupancy[box][take] = piece[take]
        chi[box][take] = value

    wm = np.isin(anatomy.labels, by_name("cerebral_wm").codes)
    ventricle = np.isin(anatomy.labels, by_name("lateral_ventricle").codes)
    near = wm & ndimage.binary_dilation(ventricle, iterations=4) if ventricle.any() else wm
    pool = np.argwhere(near)
    if ventricle.any():
        vc = affine[:3, :3] @ np.argwhere(ventricle).mean(axis=0) + affine[:3, 3]
    else:
        vc = affine[:3, :3] @ (np.asarray(shape) / 2.0) + affine[:3, 3]
    if pool.size:
        for _ in range(MEDULLARY_VEINS):
            start = affine[:3, :3] @ pool[rng.integers(pool.shape[0])] + affine[:3, 3]
            out = start - vc
            out = out / max(np.linalg.norm(out), 1e-6) + rng.normal(scale=0.3, size=3)
            out /= np.linalg.norm(out)
            length = rng.uniform(12.0, 30.0)
            add(
                start,
                start + length * out,
                rng.uniform(*VEIN_RADIUS_MM),
                rng.uniform(*VEIN_CHI_PPM),
            )
    for sign in (-1.0, 1.0):  # internal cerebral veins
        x = sign * 2.5
        add((x, -30.0, 12.0), (x, 8.0, 14.0), 1.0, rng.uniform(*VEIN_CHI_PPM))
    labels, n = ndimage.label(anatomy.lesions, structure=np.ones((3, 3, 3), dtype=bool))
    central = rng.random(n) < lesion_probability
    radii = rng.uniform(*VEIN_RADIUS_MM, size=n)
    values = rng.uniform(*VEIN_CHI_PPM, size=n)
    shapes = _lesion_shapes(labels, affine)
    for index, (mm, centre, axis) in enumerate(shapes):
        if not central[index]:
            continue
        half = float(np.abs((mm - centre) @ axis).max()) + 4.0
        add(centre - half * axis, centre + half * axis, radii[index], values[index])
    # Veins beside lesions: parallel to the long axis, 1-3 mm outside the edge.
    beside = rng.random(n) < ADJACENT_VEIN_PROBABILITY
    sides = rng.normal(size=(n, 3))
    gaps = rng.uniform(1.0, 3.0, size=n)
    for index, (mm, centre, axis) in enumerate(shapes):
        if not beside[index]:
            continue
        side = sides[index] - (sides[index] @ axis) * axis
        side /= max(np.linalg.norm(side), 1e-9)
        reach = float(((mm - centre) @ side).max()) + gaps[index] + radii[index]
        half = float(np.abs((mm - centre) @ axis).max()) + 6.0
        start = centre + reach * side - half * axis
        add(start, start + 2 * half * axis, radii[index], values[index])
    inside = anatomy.labels > 0
    occupancy[~inside] = 0.0
    chi[~inside] = 0.0
    return occupancy, chi, central, beside


def _lesion_shapes(labels: NDArray[np.integer], affine: NDArray[np.float64]) -> list[tuple]:
    """Per labelled lesion: its voxel centres (mm, (n, 3)), their centroid and the lesion's
    long axis (the principal direction of its voxels; y for lesions of 1-2 voxels)."""
    shapes = []
    for index, box in enumerate(ndimage.find_objects(labels)):
        ijk = np.argwhere(labels[box] == index + 1) + [s.start for s in box]
        mm = ijk @ affine[:3, :3].T + affine[:3, 3]
        centre = mm.mean(axis=0)
        axis = (
            np.linalg.svd(mm - centre, full_matrices=False)[2][0]
            if len(mm) > 2
            else np.array([0.0, 1.0, 0.0])
        )
        shapes.append((mm, centre, axis))
    return shapes


def susceptibility_map(
    anatomy: Anatomy,
    r2star: NDArray[np.floating],
    rng: np.random.Generator,
    *,
    rim_chi_ppm: NDArray[np.floating] | None = None,
) -> SusceptibilityTruth:
    """All susceptibility sources of a subject on the fine grid (see the module docstring).

    Parameters
    ----------
    anatomy : Anatomy
    r2star : numpy.ndarray, shape (X, Y, Z)
        True R2* (1/s): deep grey-matter chi follows its iron.
    rng : numpy.random.Generator
        The stream of the veins and cavities (its own, not the subject's).
    rim_chi_ppm : numpy.ndarray, shape (X, Y, Z), optional
        The rims' chi (ppm, occupancy included) from :func:`.lesions.lesion_rim_shells`.

    Returns
    -------
    SusceptibilityTruth
    """
    chi = tissue_chi(anatomy.labels, r2star, anatomy.lesions)
    if rim_chi_ppm is not None:
        chi += np.asarray(rim_chi_ppm, dtype=np.float32)
    cavities = air_cavities(anatomy, rng)
    occupancy, vein_chi, central, beside = vein_tubes(anatomy, rng)
    chi = (1.0 - occupancy) * chi + occupancy * vein_chi
    air = ~anatomy.head | cavities
    chi[air] = 0.0
    return SusceptibilityTruth(
        chi_ppm=chi.astype(np.float32),
        air=air,
        cavities=cavities,
        veins=occupancy,
        central_vein=central,
        vein_beside=beside,
    )


@lru_cache(maxsize=4)
def _half_kernel(shape: tuple[int, ...], voxel_mm: tuple[float, ...]) -> NDArray[np.float32]:
    """The dipole kernel (:func:`~ironmap.susceptibility.dipole.dipole_kernel`) on the
    half-spectrum of :func:`scipy.fft.rfftn` (the kernel is even in k)."""
    return dipole_kernel(shape, voxel_mm)[..., : shape[2] // 2 + 1].astype(np.float32)


def _forward_field_fast(source: NDArray[np.float32], voxel_mm: tuple[float, ...]) -> NDArray:
    """:func:`~ironmap.susceptibility.dipole.forward_field` (B0 along z, 16 voxels of padding)
    in single precision with real FFTs and a cached kernel: the simulator calls it once per
    subject on the same grid (agrees to ~1e-6 of the field's range)."""
    big = padded_shape(source.shape, 16)
    spectrum = scipy.fft.rfftn(source, s=big, workers=1)
    spectrum *= _half_kernel(big, voxel_mm)
    out = scipy.fft.irfftn(spectrum, s=big, workers=1)
    return out[: source.shape[0], : source.shape[1], : source.shape[2]]


def field_hz(
    truth: SusceptibilityTruth,
    anatomy: Anatomy,
    *,
    field_strength_t: float = FIELD_STRENGTH_T,
    shim: bool = True,
) -> NDArray[np.float32]:
    """The off-resonance (Hz) of ``truth`` on the fine grid, B0 along the grid's z.

    The source is ``chi`` relative to tissue, :data:`AIR_CHI_PPM` in the air cavities; the field
    is its dipole convolution (the kernel of
    :func:`~ironmap.susceptibility.dipole.dipole_kernel`, zero-padded by 16 voxels) times
    :func:`~ironmap.susceptibility.dipole.hz_per_ppm`. The head's own boundary with the air
    around it is left out: the phantom's head is an ellipsoid, whose field inside is uniform
    and taken up by the shim (on the finite grid it would be cut by the grid's faces and see
    the FFT's periodic neighbours, neither of them physical). With ``shim``, the field's mean
    and linear variation over the brain (labels > 0) are removed, as the scanner's first-order
    shim does.

    Returns
    -------
    numpy.ndarray of float32, shape (X, Y, Z)
    """
    source = np.where(truth.cavities, np.float32(AIR_CHI_PPM), truth.chi_ppm).astype(np.float32)
    voxel = tuple(float(v) for v in np.sqrt((anatomy.affine[:3, :3] ** 2).sum(axis=0)))
    ppm = _forward_field_fast(source, voxel)
    hz = ppm * hz_per_ppm(field_strength_t)
    if shim:
        brain = anatomy.labels > 0
        ijk = np.argwhere(brain).astype(np.float64)
        design = np.column_stack([np.ones(len(ijk)), ijk - ijk.mean(axis=0)])
        coef = np.linalg.lstsq(design, hz[brain], rcond=None)[0]
        axes = [
            np.arange(n, dtype=np.float64) - m
            for n, m in zip(hz.shape, ijk.mean(axis=0), strict=True)
        ]
        hz = hz - coef[0]
        for k in range(3):
            shape = [1, 1, 1]
            shape[k] = -1
            hz = hz - coef[k + 1] * axes[k].reshape(shape)
    return hz.astype(np.float32)
