"""Partial-volume-aware transfer of label images onto the R2* grid.

Each R2* voxel is sampled at ``n_x * n_y * n_z`` sub-points (``n`` = how many source voxels one
R2* voxel spans along each axis, 1 to 5); each sub-point takes the label of the source voxel it
falls in, through the two affines (scanner space). The fraction of sub-points carrying a label
is the fraction of the R2* voxel that label covers. A voxel then belongs to a structure only if
that fraction is high enough ("mostly inside"), so boundary voxels that mix a structure with its
neighbours do not bias its R2*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .labels import label_array

__all__ = ["label_fractions"]

#: Sub-points per slab, bounds memory (~30 bytes each).
_POINTS_PER_SLAB = 4_000_000
#: Nearest-voxel rounding offset: 0.5, plus a little so that ties blurred by rounding errors in
#: the affines still go upwards.
_TIE = 0.5 + 1e-6


def _subsamples(transform: NDArray[np.float64], max_sub: int) -> list[NDArray[np.float64]]:
    """Sub-point offsets (target voxel units) per target axis."""
    offsets = []
    for axis in range(3):
        span = float(np.linalg.norm(transform[:3, axis]))  # source voxels per target voxel
        n = int(np.clip(np.ceil(span - 1e-6), 1, max_sub))
        offsets.append((np.arange(n) + 0.5) / n - 0.5)
    return offsets


def label_fractions(
    labels: NDArray,
    source_affine: NDArray[np.float64],
    target_shape: Sequence[int],
    target_affine: NDArray[np.float64],
    groups: Mapping[str, Sequence[int]],
    *,
    source_name: str = "labels",
    max_sub: int = 5,
) -> dict[str, NDArray[np.float32]]:
    """Fraction of every target voxel covered by each group of label codes.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (I, J, K)
        Source label image: integers >= 0 (:func:`.labels.label_array`; whole-number floats
        are accepted). Memory depends on the number of distinct labels, not on their values.
    source_affine, target_affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner (mm) transforms of the two grids.
    target_shape : sequence of 3 int
        Shape of the target (R2*) grid.
    groups : mapping
        ``name -> label codes``; a voxel's fraction counts sub-points whose label is any of them.
    source_name : str, optional
        Named in the error raised when the grids do not overlap.
    max_sub : int, optional
        Largest number of sub-points per axis.

    Returns
    -------
    dict
        ``name -> float32 array of target_shape`` in [0, 1], plus ``"_inside"``: the fraction of
        each target voxel that lies inside the source field of view.

    Raises
    ------
    InputError
        If the two images do not overlap in scanner space, or a label is not an integer >= 0.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"{source_name}: expected a 3D label image, got shape {labels.shape}")
    labels = label_array(labels, source_name=source_name)
    transform = np.linalg.inv(source_affine) @ target_affine
    offsets = _subsamples(transform, max_sub)
    n_sub = [o.size for o in offsets]
    # Dense label numbering (position in ``present``, sized by the distinct codes, never by
    # the largest code): one bincount per slab counts every label in every target voxel.
    present = np.unique(labels)
    outside = present.size
    members = {
        name: np.flatnonzero(np.isin(present, np.asarray(codes, dtype=np.int64)))
        for name, codes in groups.items()
    }
    nx, ny, nz = (int(s) for s in target_shape)
    out = {name: np.zeros((nx, ny, nz), dtype=np.float32) for name in [*groups, "_inside"]}
    per_slice = nx * ny * int(np.prod(n_sub))
    slab = max(1, _POINTS_PER_SLAB // max(per_slice, 1))
    slab = max(1, min(slab, _POINTS_PER_SLAB // (nx * ny * (outside + 1))))  # label counts
    i = (np.arange(nx)[:, None] + offsets[0][None, :]).reshape(-1, 1, 1)
    j = (np.arange(ny)[:, None] + offsets[1][None, :]).reshape(1, -1, 1)
    shape_src = np.array(labels.shape)
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        k = (np.arange(z0, z1)[:, None] + offsets[2][None, :]).reshape(1, 1, -1)
        index = []
        for row in range(3):
            coord = transform[row, 0] * i + transform[row, 1] * j + transform[row, 2] * k
            # Nearest source voxel, ties (a sub-point on a voxel boundary) always upwards:
            # np.rint rounds ties to even, which on grids whose centres or boundaries coincide
            # samples every other source voxel twice and skips the rest.
            index.append(np.floor(coord + (transform[row, 3] + _TIE)).astype(np.int64))
        inside = np.ones(np.broadcast_shapes(*(a.shape for a in index)), dtype=bool)
        for axis in range(3):
            inside &= (index[axis] >= 0) & (index[axis] < shape_src[axis])
        dense = np.full(inside.shape, outside, dtype=np.int64)  # outside: in no group
        picked = [np.broadcast_to(a, inside.shape)[inside] for a in index]
        dense[inside] = np.searchsorted(present, labels[picked[0], picked[1], picked[2]])
        nzs = z1 - z0
        blocks = (nx, n_sub[0], ny, n_sub[1], nzs, n_sub[2])
        voxel = (
            np.arange(nx).reshape(-1, 1, 1, 1, 1, 1) * (ny * nzs)
            + np.arange(ny).reshape(1, 1, -1, 1, 1, 1) * nzs
            + np.arange(nzs).reshape(1, 1, 1, 1, -1, 1)
        )
        n_labels = outside + 1
        key = np.broadcast_to(voxel, blocks) * n_labels + dense.reshape(blocks)
        counts = np.bincount(key.ravel(), minlength=nx * ny * nzs * n_labels)
        counts = counts.reshape(nx, ny, nzs, n_labels) / float(np.prod(n_sub))
        out["_inside"][:, :, z0:z1] = 1.0 - counts[..., outside]
        for name, idx in members.items():
            out[name][:, :, z0:z1] = counts[..., idx].sum(axis=-1)
    if not out["_inside"].any():
        raise InputError(
            f"{source_name}: does not overlap the R2* image in scanner space; check that both "
            "affines map to the same scanner coordinates"
        )
    return out
