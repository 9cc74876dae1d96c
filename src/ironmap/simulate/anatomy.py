"""A digital head phantom: a FreeSurfer-style label map on a 1 mm grid.

Every structure is a smooth, slightly irregular ellipsoid (random low-order surface modulation,
small rotation, size and position jitter per subject) at a plausible position in RAS scanner
coordinates (mm, origin near the anterior commissure). Painting order resolves overlaps: brain
white matter, cortical ribbon, cerebellum, brainstem, ventricles, deep grey matter.

The label codes are those of the region catalogue (:mod:`ironmap.regions.catalog`), looked up
by region name and side (:func:`code`): FreeSurfer aseg codes where they exist, 101-106 for
substantia nigra, red nucleus and dentate nucleus, which are named in the ``dseg.tsv``. Only the
geometry lives here: the deep grey-matter shapes of :data:`DEEP_SHAPES`, keyed by region name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..regions.catalog import DEEP_GM, LABEL_NAMES, by_name
from ..regions.catalog import label_code as code

__all__ = [
    "DEEP_SHAPES",
    "FINE_AFFINE",
    "FINE_SHAPE",
    "LABEL_NAMES",
    "Anatomy",
    "enlarge_ventricles",
    "make_anatomy",
]

#: The fine (1 mm isotropic) grid: 144 x 176 x 144 mm, RAS, centred on the origin.
FINE_SHAPE = (144, 176, 144)
FINE_AFFINE = np.array(
    [
        [1.0, 0.0, 0.0, -71.5],
        [0.0, 1.0, 0.0, -95.5],
        [0.0, 0.0, 1.0, -63.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


#: Deep grey-matter region -> (centre mm, radii mm) of its right-hemisphere ellipsoid, mirrored
#: in x for the left. Every catalogue deep grey-matter region needs one; they are painted in the
#: catalogue's order (a later structure overwrites an earlier one where they overlap).
DEEP_SHAPES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "thalamus": ((11.0, -16.0, 6.0), (9.0, 15.0, 10.0)),
    "caudate": ((14.0, 12.0, 14.0), (5.5, 15.0, 8.0)),
    "putamen": ((25.0, 3.0, 1.0), (6.5, 17.0, 10.0)),
    "pallidum": ((19.0, -1.0, -1.0), (4.5, 9.0, 6.0)),
    "substantia_nigra": ((10.0, -19.0, -11.0), (3.5, 7.0, 3.0)),
    "red_nucleus": ((5.0, -21.0, -7.0), (3.5, 3.5, 3.5)),
    "dentate_nucleus": ((14.0, -58.0, -30.0), (5.0, 7.0, 5.0)),
}


def _deep_shape(region: str):
    try:
        return DEEP_SHAPES[region]
    except KeyError:
        raise KeyError(
            f"the phantom has no shape for deep grey-matter region {region!r}: add its centre "
            "and radii to DEEP_SHAPES in ironmap/simulate/anatomy.py"
        ) from None


@dataclass(frozen=True)
class Anatomy:
    """One subject's label map on the fine grid.

    Attributes
    ----------
    labels : numpy.ndarray of int16, shape FINE_SHAPE
        Codes of :data:`LABEL_NAMES`; 0 outside the brain (scalp and air).
    head : numpy.ndarray of bool, shape FINE_SHAPE
        Head (scalp included): where there is MR signal.
    lesions : numpy.ndarray of bool, shape FINE_SHAPE
        White-matter lesions (inside cerebral white matter; the labels keep them as WM).
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> RAS mm.
    lesion_rims : numpy.ndarray of bool, shape FINE_SHAPE, or None
        Paramagnetic rims of the lesions that have one (:mod:`.lesions`), inside ``lesions``.
    """

    labels: NDArray[np.int16]
    head: NDArray[np.bool_]
    lesions: NDArray[np.bool_]
    affine: NDArray[np.float64]
    lesion_rims: NDArray[np.bool_] | None = None


_SIDES = ((-1.0, "left"), (1.0, "right"))  # x sign of each hemisphere (RAS)


def _coords(shape=FINE_SHAPE, affine=FINE_AFFINE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis coordinates (mm) of a 1 mm RAS grid."""
    axes = [np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    return axes[0], axes[1], axes[2]


def _blob(
    centre: NDArray[np.float64],
    radii: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    wobble: float = 0.08,
    grid: tuple = (FINE_SHAPE, FINE_AFFINE),
) -> tuple[tuple[slice, slice, slice], NDArray[np.bool_]]:
    """A smooth irregular ellipsoid: ``(bounding-box slices, mask inside the box)``.

    The surface is ``|u|^2 < 1 + wobble * q(u)`` in the ellipsoid's normalised, slightly rotated
    coordinates ``u``, with ``q`` a random quadratic form: smooth bumps, no voxel noise.
    """
    xs, ys, zs = _coords(*grid)
    reach = radii.max() * (1.0 + wobble) + 2.0
    box = []
    for axis, c in zip((xs, ys, zs), centre, strict=True):
        lo = int(np.searchsorted(axis, c - reach))
        hi = int(np.searchsorted(axis, c + reach))
        box.append(slice(max(lo, 0), min(hi, axis.size)))
    gx, gy, gz = np.meshgrid(xs[box[0]], ys[box[1]], zs[box[2]], indexing="ij", sparse=True)
    angles = rng.normal(scale=np.deg2rad(6.0), size=3)
    rot = _rotation(*angles)
    d = [gx - centre[0], gy - centre[1], gz - centre[2]]
    u = [(rot[k, 0] * d[0] + rot[k, 1] * d[1] + rot[k, 2] * d[2]) / radii[k] for k in range(3)]
    q = rng.normal(size=6)
    bumps = (
        q[0] * u[0] * u[1]
        + q[1] * u[1] * u[2]
        + q[2] * u[0] * u[2]
        + q[3] * u[0]
        + q[4] * u[1]
        + q[5] * u[2]
    )
    inside = u[0] ** 2 + u[1] ** 2 + u[2] ** 2 < 1.0 + wobble * bumps
    return (box[0], box[1], box[2]), inside


def _rotation(a: float, b: float, c: float) -> NDArray[np.float64]:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _paint(
    labels: np.ndarray,
    code: int,
    centre,
    radii,
    rng: np.random.Generator,
    *,
    where: np.ndarray | None = None,
    wobble: float = 0.08,
) -> None:
    box, inside = _blob(np.asarray(centre, float), np.asarray(radii, float), rng, wobble=wobble)
    if where is not None:
        inside &= where[box]
    labels[box][inside] = code  # basic slicing: a view into labels


def make_anatomy(
    rng: np.random.Generator,
    *,
    atrophy: float = 0.0,
    lesion_count: int = 0,
    lesion_radius_mm: float = 3.0,
    ventricle_margin_mm: float = 0.0,
) -> Anatomy:
    """Draw one subject's anatomy.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all per-subject variation (size, position, shape).
    atrophy : float, optional
        0 for a healthy brain; 0.1 means 10 % enlargement of ventricles beyond the healthy
        size scaled by 5, 10 % thinner cortex and 2 % smaller deep grey matter.
    lesion_count : int, optional
        Number of white-matter lesions (periventricular and deep WM).
    lesion_radius_mm : float, optional
        Mean lesion radius; each lesion's radius is drawn around it.
    ventricle_margin_mm : float, optional
        Periventricular atrophy: the lateral ventricles grow by this margin (mm) into the
        caudate, thalamus and cerebral white matter around them (:func:`enlarge_ventricles`),
        before the lesions are drawn. Draws no random numbers: 0 gives the same subject as
        without it, and every margin the same subject otherwise.

    Returns
    -------
    Anatomy
    """
    labels = np.zeros(FINE_SHAPE, dtype=np.int16)
    xs, ys, zs = _coords()
    size = rng.normal(1.0, 0.04)  # head size varies ~4 % (ICV ~12 %)
    gx, gy, gz = np.meshgrid(xs, ys, zs, indexing="ij", sparse=True)

    def ellipsoid(radii, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
        r = np.asarray(radii) * size
        return (
            ((gx - centre[0]) / r[0]) ** 2
            + ((gy - centre[1]) / r[1]) ** 2
            + ((gz - centre[2]) / r[2]) ** 2
        ) < 1.0

    head = ellipsoid((70.0, 87.0, 62.0), (0.0, -8.0, 2.0))
    intracranial = ellipsoid((64.0, 80.0, 56.0), (0.0, -8.0, 4.0))
    brain = ellipsoid((62.0, 78.0, 54.0), (0.0, -8.0, 4.0))
    csf = code("csf", "midline")
    labels[intracranial] = csf
    hemisphere_left = np.broadcast_to(gx < 0, FINE_SHAPE)
    thickness = 8.0 * (1.0 - atrophy)  # effective ribbon of a folded cortex (~450 mL)
    inner = ellipsoid((62.0 - thickness, 78.0 - thickness, 54.0 - thickness), (0.0, -8.0, 4.0))
    cortex = brain & ~inner
    labels[cortex & hemisphere_left] = code("cortex", "left")
    labels[cortex & ~hemisphere_left] = code("cortex", "right")
    labels[inner & hemisphere_left] = code("cerebral_wm", "left")
    labels[inner & ~hemisphere_left] = code("cerebral_wm", "right")
    fissure = brain & (np.abs(gx) < 1.0) & (gz > 8.0)
    labels[fissure] = csf

    for sign, side in _SIDES:
        centre = np.array([sign * 24.0, -58.0, -28.0]) + rng.normal(scale=1.5, size=3)
        gm, wm = code("cerebellum_cortex", side), code("cerebellum_wm", side)
        _paint(labels, gm, centre, np.array([26.0, 24.0, 17.0]) * size, rng, where=intracranial)
        _paint(labels, wm, centre, np.array([12.0, 10.0, 8.0]) * size, rng)
    stem = code("brainstem", "midline")
    _paint(labels, stem, (0.0, -28.0, -28.0), np.array([11.0, 12.0, 24.0]) * size, rng)

    ventricle_scale = (1.0 + 5.0 * atrophy) ** (1.0 / 3.0)
    for sign, side in _SIDES:
        centre = np.array([sign * 11.0, 2.0, 16.0]) + rng.normal(scale=1.0, size=3)
        radii = np.array([7.0, 28.0, 10.0]) * size * ventricle_scale * rng.normal(1.0, 0.1)
        _paint(labels, code("lateral_ventricle", side), centre, radii, rng)

    deep_scale = 1.0 - 0.2 * atrophy
    for region in DEEP_GM:
        centre, radii = _deep_shape(region)
        for sign, side in _SIDES:
            c = np.array([sign * centre[0], centre[1], centre[2]]) * size
            c = c + rng.normal(scale=1.0, size=3)
            r = np.array(radii) * size * deep_scale * rng.normal(1.0, 0.05, size=3)
            _paint(labels, code(region, side), c, r, rng, wobble=0.06)

    enlarge_ventricles(labels, ventricle_margin_mm, affine=FINE_AFFINE)
    lesions = _lesions(labels, lesion_count, lesion_radius_mm, rng)
    return Anatomy(labels=labels, head=head, lesions=lesions, affine=FINE_AFFINE.copy())


#: Regions the lateral ventricles grow into with periventricular atrophy.
PERIVENTRICULAR = ("caudate", "thalamus", "cerebral_wm")


def enlarge_ventricles(
    labels: NDArray[np.integer], margin_mm: float, *, affine: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Grow the lateral ventricles by ``margin_mm`` at the expense of :data:`PERIVENTRICULAR`.

    Every caudate, thalamus or cerebral white-matter voxel whose centre lies within
    ``margin_mm`` of a lateral-ventricle voxel centre becomes ventricle, of the side of the
    nearest one (the periventricular atrophy of progressive MS: the ventricle wall moves into
    the tissue around it). Other structures (putamen, pallidum, cortex, CSF) are left as they
    are.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Label map (codes of :data:`LABEL_NAMES`), modified in place.
    margin_mm : float
        Enlargement (mm); 0 or less changes nothing.
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> RAS mm of ``labels`` (its voxel size sets the distances).

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
        The voxels that became ventricle.
    """
    grown = np.zeros(labels.shape, dtype=bool)
    ventricle = np.isin(labels, by_name("lateral_ventricle").codes)
    if margin_mm <= 0 or not ventricle.any():
        return grown
    voxel = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    reach = np.ceil(margin_mm / voxel).astype(int) + 1
    ijk = np.argwhere(ventricle)
    lo = np.maximum(ijk.min(axis=0) - reach, 0)
    hi = np.minimum(ijk.max(axis=0) + reach + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    view = labels[box]  # basic slicing: a view into labels
    dist, idx = ndimage.distance_transform_edt(
        ~ventricle[box], sampling=voxel, return_indices=True
    )
    tissue = np.isin(view, [c for r in PERIVENTRICULAR for c in by_name(r).codes])
    take = tissue & (dist <= margin_mm)
    view[take] = view[tuple(i[take] for i in idx)]
    grown[box] = take
    return grown


def _lesions(
    labels: np.ndarray,
    count: int,
    radius: float,
    rng: np.random.Generator,
    affine: NDArray[np.float64] = FINE_AFFINE,
) -> NDArray[np.bool_]:
    """Ovoid lesions centred in cerebral white matter (1 mm grid), mostly periventricular."""
    grid = (labels.shape, affine)
    lesions = np.zeros(labels.shape, dtype=bool)
    if count == 0:
        return lesions
    wm = np.isin(labels, by_name("cerebral_wm").codes)
    near_ventricles = np.zeros(labels.shape, dtype=bool)
    vent = np.argwhere(np.isin(labels, by_name("lateral_ventricle").codes))
    if vent.size:
        lo, hi = vent.min(0) - 6, vent.max(0) + 6
        near_ventricles[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    candidates = [np.argwhere(wm & near_ventricles), np.argwhere(wm)]
    xs, ys, zs = _coords(*grid)
    for _ in range(count):
        pool = candidates[0] if (rng.random() < 0.6 and candidates[0].size) else candidates[1]
        i, j, k = pool[rng.integers(pool.shape[0])]
        centre = np.array([xs[i], ys[j], zs[k]])
        radii = radius * rng.lognormal(0.0, 0.3) * np.array([1.0, 1.6, 1.0])  # ovoid along y
        box, inside = _blob(centre, radii, rng, wobble=0.1, grid=grid)
        lesions[box] |= inside
    return lesions & wm
