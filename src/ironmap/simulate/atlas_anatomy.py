"""A realistic digital head: the bundled atlas, randomly deformed per subject (``ironmap[atlas]``).

Each subject is the atlas anatomy of :func:`ironmap.segmentation.atlas.load_atlas` pulled through a
random smooth deformation: a 12-parameter affine (head size, per-axis scaling, rotation,
translation) composed with a smooth displacement field at two scales (brain-shape variation,
about 2.5 mm RMS, and local variation, about 0.8 mm RMS). This tests template registration
against a known deformation with realistic anatomy, which the ellipsoid phantom cannot.

So that the truth is not simply the atlas warped, the iron-rich nuclei of the truth differ from the
atlas's own nuclei: the coarse Talairach nuclei are smoothed (Gaussian, ``nucleus_smoothing_mm``)
and re-thresholded at a random volume within about 10 % of the atlas's. A segmentation method
sees the atlas nuclei, the truth has these.

The label codes are those of :data:`ironmap.segmentation.atlas.ATLAS_LABELS` (the phantom's codes).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..regions.catalog import by_name
from ..regions.catalog import label_code as code
from ..segmentation.atlas import IRON_RICH, load_atlas
from .anatomy import Anatomy, _lesions, enlarge_ventricles

__all__ = ["ATLAS_FINE_AFFINE", "ATLAS_FINE_SHAPE", "make_atlas_anatomy"]

#: The subject's 1 mm grid (RAS mm): room for a head up to about 10 % larger than MNI152.
ATLAS_FINE_SHAPE = (156, 192, 162)
ATLAS_FINE_AFFINE = np.array(
    [
        [1.0, 0.0, 0.0, -77.5],
        [0.0, 1.0, 0.0, -111.5],
        [0.0, 0.0, 1.0, -75.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
_CENTRE_MM = np.array([0.0, -16.0, 5.0])  # centre of the MNI152 brain

#: Iron-rich nucleus -> the white matter that takes over what the re-drawn nucleus gives up
#: (default ``cerebral_wm``).
SURROUNDING_WM: dict[str, str] = {"dentate_nucleus": "cerebellum_wm"}
#: Iron-rich nucleus -> nuclei its re-drawn shape must not overwrite.
KEEP_OUT: dict[str, tuple[str, ...]] = {"substantia_nigra": ("red_nucleus",)}


def _smooth_displacement(
    rng: np.random.Generator, shape: tuple[int, ...], *, rms_mm: float, scale_mm: float
) -> NDArray[np.float32]:
    """Random smooth displacement (3, *shape) in mm: Gaussian-filtered noise on a coarse grid."""
    step = max(int(scale_mm / 2), 1)
    coarse_shape = tuple(n // step + 3 for n in shape)
    out = np.empty((3, *shape), dtype=np.float32)
    for c in range(3):
        noise = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), scale_mm / step)
        noise *= rms_mm / noise.std()
        zoom = [n / m for n, m in zip(shape, coarse_shape, strict=True)]
        out[c] = ndimage.zoom(noise, zoom, order=1, grid_mode=True, mode="grid-constant")[
            : shape[0], : shape[1], : shape[2]
        ]
    return out


def _random_affine(rng: np.random.Generator) -> NDArray[np.float64]:
    """Subject mm -> template mm, about the brain centre."""
    size = rng.normal(0.93, 0.03)
    stretch = size * (1.0 + rng.normal(0.0, 0.03, size=3))
    a, b, c = rng.normal(0.0, np.deg2rad(4.0), size=3)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    forward = rz @ ry @ rx @ np.diag(stretch)  # template -> subject
    shift = rng.normal(0.0, 3.0, size=3)
    out = np.eye(4)
    out[:3, :3] = np.linalg.inv(forward)
    out[:3, 3] = _CENTRE_MM - out[:3, :3] @ (_CENTRE_MM + shift)
    return out


def _truth_labels(rng: np.random.Generator, *, nucleus_smoothing_mm: float) -> np.ndarray:
    """The atlas labels with re-shaped iron-rich nuclei (template grid)."""
    atlas = load_atlas()
    labels = atlas.labels.copy()
    for region, codes in IRON_RICH.items():
        if by_name(region).harvard_oxford:
            continue  # a Harvard-Oxford structure (pallidum), already smooth
        keep = [c for other in KEEP_OUT.get(region, ()) for c in by_name(other).codes]
        for nucleus, side in zip(codes, ("left", "right"), strict=True):
            if not np.any(labels == nucleus):
                continue
            box = _box(labels == nucleus, margin=int(np.ceil(4.0 * nucleus_smoothing_mm)) + 2)
            view = labels[box]
            mask = view == nucleus
            # Smoothing within the nucleus's bounding box (plus the kernel's reach): the same
            # values as over the whole volume, 50x faster.
            core = ndimage.gaussian_filter(mask.astype(np.float32), nucleus_smoothing_mm)
            # Rounder than the atlas's coarse slices, volume within about +-10 % of the atlas's.
            n_new = int(mask.sum() * np.clip(rng.normal(1.0, 0.1), 0.8, 1.2))
            level = np.partition(core.ravel(), core.size - n_new)[core.size - n_new]
            new = core >= level
            fill = code(SURROUNDING_WM.get(region, "cerebral_wm"), side)
            view[mask & ~new] = fill  # what the nucleus gives up becomes white matter
            view[new & ~np.isin(view, keep)] = nucleus
    return labels


def _box(mask: NDArray[np.bool_], *, margin: int) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels (clipped to the array)."""
    index = np.nonzero(mask)
    return tuple(
        slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n))
        for i, n in zip(index, mask.shape, strict=True)
    )


def make_atlas_anatomy(
    rng: np.random.Generator,
    *,
    lesion_count: int = 0,
    lesion_radius_mm: float = 3.0,
    nucleus_smoothing_mm: float = 1.5,
    ventricle_margin_mm: float = 0.0,
) -> Anatomy:
    """Draw one subject's anatomy from the deformed atlas.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the deformation and the nuclei shapes.
    lesion_count, lesion_radius_mm : optional
        White-matter lesions as in :func:`~.anatomy.make_anatomy`.
    nucleus_smoothing_mm : float, optional
        Gaussian SD (mm) that turns the coarse atlas nuclei into the truth's nuclei.
    ventricle_margin_mm : float, optional
        Periventricular atrophy: the lateral ventricles of the deformed atlas grow by this
        margin (mm) into caudate, thalamus and cerebral white matter
        (:func:`~.anatomy.enlarge_ventricles`), before the lesions are drawn; no random draws,
        so every margin gives the same subject otherwise.

    Returns
    -------
    Anatomy
        On :data:`ATLAS_FINE_SHAPE` / :data:`ATLAS_FINE_AFFINE`.
    """
    atlas = load_atlas()
    template_labels = _truth_labels(rng, nucleus_smoothing_mm=nucleus_smoothing_mm)
    shape = ATLAS_FINE_SHAPE
    affine = _random_affine(rng)
    disp = _smooth_displacement(rng, shape, rms_mm=2.5, scale_mm=20.0)
    disp += _smooth_displacement(rng, shape, rms_mm=0.8, scale_mm=5.0)
    # subject voxel -> subject mm -> template mm (+ displacement) -> template voxel
    to_template_vox = np.linalg.inv(atlas.affine) @ affine @ ATLAS_FINE_AFFINE
    labels = np.empty(shape, dtype=np.int16)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    m = to_template_vox[:3, :3]
    d_vox = np.linalg.inv(atlas.affine[:3, :3])  # mm displacement -> template voxels
    for k in range(shape[2]):  # slab by slab: bounded memory
        pts = (
            m[:, 0, None, None] * ii + m[:, 1, None, None] * jj + m[:, 2, None, None] * k
        ) + to_template_vox[:3, 3, None, None]
        pts = pts + np.tensordot(d_vox, disp[:, :, :, k], axes=1)
        labels[:, :, k] = ndimage.map_coordinates(
            template_labels, pts, order=0, mode="constant", cval=0
        )
    brain = labels > 0
    outside = ndimage.distance_transform_edt(~brain)
    labels[(outside > 0) & (outside <= 2.0)] = code("csf", "midline")  # a rim of CSF,
    head = (outside <= 2.0) | ((outside > 6.0) & (outside <= 11.0))  # skull (no signal), scalp
    enlarge_ventricles(labels, ventricle_margin_mm, affine=ATLAS_FINE_AFFINE)
    lesions = _lesions(labels, lesion_count, lesion_radius_mm, rng, ATLAS_FINE_AFFINE)
    return Anatomy(labels=labels, head=head, lesions=lesions, affine=ATLAS_FINE_AFFINE.copy())
