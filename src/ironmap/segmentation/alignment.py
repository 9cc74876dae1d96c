"""Does a user segmentation fit the GRE it is applied to? A cheap image-based alignment check.

A dseg whose affine does not map to the GRE's scanner space (another session's header, a wrong
transform, a left-right flip) still overlaps the R2* image and gives plausible but wrong
regional R2*. The check runs before the fit, on the magnitudes:

1. the labels become a coarse tissue-class map (:data:`TISSUE_CLASSES`) at the voxel centres of
   the R2* grid (subsampled to about 2 mm when finer), padded by :data:`SEARCH_MM`;
2. the first and the last echo (tissue/CSF and iron contrast) are cut into 12 quantile bins
   each; the fit of a class map is the mutual information (MI, nats) between its classes and
   the joint intensity bins over the whole grid;
3. the class map is displaced by whole voxels (1-3 along each axis, then a pattern search up to
   :data:`SEARCH_MM`), and mirrored across the midline of the labelled volume (left-right, with
   a search of its own). An aligned segmentation fits best where it is; a misaligned one is
   beaten by a displacement, which estimates the misalignment (to a fraction of a voxel, by a
   parabola through the best voxel and its neighbours).

The **score** is how much better the best displacement fits than the segmentation as given, in
units of the *spread*: how much the best loses, on average, when displaced by 1-3 voxels along
each axis (0: the given alignment is the best). The **flip score** is how much better the best
mirrored map fits than the best unmirrored one, in the same units (negative when aligned).

Outcomes: ``misaligned`` (:func:`check_alignment` raises an InputError) when the estimated
displacement is at least :data:`REFUSE_SHIFT_MM` and the score at least :data:`REFUSE_SCORE`;
``doubtful`` (an IronmapWarning) from :data:`WARN_SHIFT_MM` and :data:`WARN_SCORE`, or when the
flip score reaches :data:`FLIP_SCORE`; otherwise ``ok``. Sensitivity: docs/regions.md.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError, IronmapWarning
from ..regions.labels import RegionCodes

__all__ = [
    "FLIP_SCORE",
    "REFUSE_SCORE",
    "REFUSE_SHIFT_MM",
    "SEARCH_MM",
    "TISSUE_CLASSES",
    "WARN_SCORE",
    "WARN_SHIFT_MM",
    "Alignment",
    "check_alignment",
    "measure_alignment",
    "tissue_class_lut",
]

#: Tissue classes of the class map, in code order; ``other``: labelled voxels of structures the
#: catalogue does not know (hippocampus, ...).
TISSUE_CLASSES = ("outside", "csf", "white_matter", "cortex", "deep_gm", "iron_rich", "other")
_CLASS_REGIONS = {
    1: ("lateral_ventricle", "csf"),
    2: ("cerebral_wm", "cerebellum_wm", "brainstem"),
    3: ("cortex", "cerebellum_cortex"),
    4: ("thalamus", "caudate", "putamen"),
    5: ("pallidum", "substantia_nigra", "red_nucleus", "dentate_nucleus"),
}

#: Farthest displacement searched along each axis (mm).
SEARCH_MM = 40.0
#: Doubtful (a warning) from this estimated displacement (mm) and score.
WARN_SHIFT_MM = 2.0
WARN_SCORE = 0.25
#: Refused (InputError) from this estimated displacement (mm) and score.
REFUSE_SHIFT_MM = 5.0
REFUSE_SCORE = 0.8
#: Doubtful as flipped left-right from this flip score. On a segmenter's labels of the
#: near-symmetric phantom the flip score without a flip is -0.14 +- 0.09 (at most 0.07 of 72;
#: 0.03 warned 2.8 % of them), on the asymmetric atlas anatomy at most -1.1, mirrored 3.4-16
#: (benchmarks/alignment_false_alarms.py, docs/regions.md).
FLIP_SCORE = 0.2

_N_BINS = 12  # quantile bins per echo
_GRID_MM = 2.0  # finer R2* grids are subsampled to about this voxel size
_RING = (1, 2, 3)  # whole-voxel displacements along each axis that measure the spread
_AXES = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (-1, 0, 0), (0, -1, 0), (0, 0, -1))
_NEIGHBOURS = tuple(
    (a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1) if a or b or c
)

Shift = tuple[int, int, int]


@dataclass(frozen=True)
class Alignment:
    """How well a segmentation fits the image (see the module docstring).

    Attributes
    ----------
    outcome : {"ok", "doubtful", "misaligned"}
    score : float
        Gain of the best displacement over the given alignment, in units of the spread (>= 0).
    shift_mm : numpy.ndarray of float, shape (3,)
        Estimated displacement of the labels relative to the image (scanner mm): the
        segmentation fits best when moved by ``-shift_mm``.
    flip_score : float
        Gain of the best mirrored map over the best unmirrored one, in units of the spread.
    mutual_information : float
        MI (nats) of the segmentation as given.
    seconds : float
        Time of the check.
    """

    outcome: str
    score: float
    shift_mm: NDArray[np.float64]
    flip_score: float
    mutual_information: float
    seconds: float

    @property
    def shift_norm_mm(self) -> float:
        """Length of :attr:`shift_mm` (mm)."""
        return float(np.linalg.norm(self.shift_mm))

    @property
    def flipped(self) -> bool:
        """True when the left-right mirror of the labels fits better (:data:`FLIP_SCORE`)."""
        return bool(self.flip_score >= FLIP_SCORE)

    def qc(self) -> dict[str, float | str]:
        """QC values: ``alignment`` (the outcome), ``alignment_score``, ``alignment_shift_mm``
        (length of the estimated displacement) and ``alignment_flip_score``."""
        return {
            "alignment": self.outcome,
            "alignment_score": round(self.score, 3),
            "alignment_shift_mm": round(self.shift_norm_mm, 2),
            "alignment_flip_score": round(self.flip_score, 3),
        }

    def describe(self) -> str:
        """One phrase: the estimated displacement and score (and the flip, if any)."""
        x, y, z = np.round(self.shift_mm, 1) + 0.0  # + 0.0: no "-0.0"
        text = (
            f"it appears displaced by {self.shift_norm_mm:.1f} mm (x {x:+.1f}, y {y:+.1f}, "
            f"z {z:+.1f}) from the GRE (alignment score {self.score:.2f})"
        )
        if self.flipped:
            text += f", and flipped left-right (flip score {self.flip_score:.2f})"
        return text


def tissue_class_lut(top: int, codes: RegionCodes) -> NDArray[np.int8]:
    """Tissue class (index into :data:`TISSUE_CLASSES`) of every label code ``0..top``.

    Parameters
    ----------
    top : int
        Largest label code.
    codes : RegionCodes
        The segmentation's codes per catalogue region.

    Returns
    -------
    numpy.ndarray of int8, shape (top + 1,)
        0 (``outside``) for code 0, ``other`` for codes of no catalogue region.
    """
    lut = np.full(top + 1, TISSUE_CLASSES.index("other"), dtype=np.int8)
    lut[0] = 0
    for tissue, regions in _CLASS_REGIONS.items():
        lut[[c for r in regions for c in codes.codes(r) if 0 < c <= top]] = tissue
    return lut


def _class_map(labels, seg_affine, codes, shape, affine, pad) -> NDArray[np.int8]:
    """Classes at the voxel centres of grid ``(shape, affine)`` padded by ``pad`` voxels.

    Nearest label voxel, shape ``shape + 2 * pad``, 0 outside the label image; a centre on a
    label voxel boundary rounds up or down in a checkerboard (no half-voxel bias).
    """
    transform = (np.linalg.inv(seg_affine) @ affine).astype(np.float32)
    axes = [np.arange(-p, n + p, dtype=np.float32) for n, p in zip(shape, pad, strict=True)]
    i, j, k = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    sign = [np.where(np.arange(a.size) % 2 == 0, 1.0, -1.0).astype(np.float32) for a in axes]
    tie = np.float32(1e-3) * sign[0][:, None, None] * (sign[1][:, None] * sign[2])[None]
    full = tuple(a.size for a in axes)
    flat = np.zeros(full, dtype=np.intp)
    inside = np.ones(full, dtype=bool)
    for r, n in enumerate(labels.shape):
        row = transform[r]
        index = np.floor(row[0] * i + row[1] * j + row[2] * k + (row[3] + 0.5 + tie))
        inside &= (index >= 0) & (index < n)
        flat = flat * n + np.clip(index, 0, n - 1).astype(np.intp)
    sampled = np.where(inside, np.asarray(labels).ravel()[flat], 0)
    sampled = np.clip(np.nan_to_num(sampled), 0, None).astype(np.int64)  # NaN, < 0: outside
    return tissue_class_lut(int(sampled.max(initial=0)), codes)[sampled]


def _quantile_bins(values: NDArray[np.floating]) -> NDArray[np.int16]:
    """Quantile bin (0 to ``_N_BINS - 1``) of every value (quantiles of every 7th value)."""
    flat = np.nan_to_num(np.asarray(values, dtype=np.float32)).ravel()
    edges = np.quantile(flat[::7], np.linspace(0.0, 1.0, _N_BINS + 1)[1:-1])
    return np.searchsorted(edges, flat, side="right").astype(np.int16).reshape(values.shape)


class _Fit:
    """MI between a padded class map displaced by whole voxels and the joint intensity bins."""

    def __init__(self, padded: NDArray[np.int8], bins: NDArray[np.int16], pad) -> None:
        self.n_bins = _N_BINS * _N_BINS
        self.offsets = padded.astype(np.int16) * np.int16(self.n_bins)  # class * n_bins
        self.bins, self.pad = bins, np.asarray(pad)
        self.p_bins = np.bincount(bins.ravel(), minlength=self.n_bins) / bins.size
        self.cache: dict[Shift, float] = {}

    def __call__(self, shift: Shift) -> float:
        """MI (nats) of the class map moved by ``shift`` voxels (-inf beyond the padding)."""
        if shift not in self.cache:
            if np.any(np.abs(shift) > self.pad):
                return -np.inf
            window = tuple(
                slice(p - s, p - s + n)
                for p, s, n in zip(self.pad, shift, self.bins.shape, strict=True)
            )
            joint = np.bincount(
                (self.offsets[window] + self.bins).ravel(),
                minlength=len(TISSUE_CLASSES) * self.n_bins,
            )
            p = joint.reshape(len(TISSUE_CLASSES), self.n_bins) / self.bins.size
            expected = p.sum(axis=1, keepdims=True) * self.p_bins[None, :]
            nz = p > 0
            self.cache[shift] = float(np.sum(p[nz] * np.log(p[nz] / expected[nz])))
        return self.cache[shift]


def _ascend(fit: _Fit, best: Shift, step: int, moves) -> Shift:
    """Move to the best of ``best + step * move`` while that improves the MI."""
    while True:
        cand = max(
            ((best[0] + step * d[0], best[1] + step * d[1], best[2] + step * d[2]) for d in moves),
            key=fit,
        )
        if fit(cand) <= fit(best):
            return best
        best = cand


def _climb(fit: _Fit, start: Shift, step: int) -> Shift:
    """Pattern search: steps of ``step`` voxels along the axes, halved down to one voxel, then
    the 26 neighbours (diagonal moves)."""
    best = start
    while step > 1:
        best = _ascend(fit, best, step, _AXES)
        step //= 2
    return _ascend(fit, _ascend(fit, best, 1, _AXES), 1, _NEIGHBOURS)


def _ring(centre: Shift) -> list[Shift]:
    """``centre`` displaced by each of :data:`_RING` voxels along each axis."""
    return [
        (centre[0] + s * d[0], centre[1] + s * d[1], centre[2] + s * d[2])
        for d in _AXES
        for s in _RING
    ]


def _subvoxel(fit: _Fit, centre: Shift) -> NDArray[np.float64]:
    """Vertex of the parabola through ``centre`` and its two neighbours, per axis (voxels)."""
    out = np.asarray(centre, dtype=np.float64)
    for axis, step in enumerate(np.eye(3, dtype=int)):
        lo, mid, hi = (fit(tuple(int(v) for v in centre + s * step)) for s in (-1, 0, 1))
        curvature = lo - 2.0 * mid + hi
        if np.isfinite(curvature) and curvature < 0:
            out[axis] += float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5))
    return out


def _mirror(padded: NDArray[np.int8], axis: int, centre2: int) -> NDArray[np.int8]:
    """``padded`` mirrored across the plane ``index = centre2 / 2`` (padded indices)."""
    n = padded.shape[axis]
    source = centre2 - np.arange(n)
    shape = [1, 1, 1]
    shape[axis] = n
    valid = ((source >= 0) & (source < n)).reshape(shape)
    return np.where(valid, np.take(padded, np.clip(source, 0, n - 1), axis=axis), np.int8(0))


def measure_alignment(
    labels: NDArray[np.integer],
    seg_affine: NDArray[np.float64],
    codes: RegionCodes,
    magnitude: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    search_mm: float = SEARCH_MM,
) -> Alignment:
    """How well a segmentation fits a multi-echo image (see the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (I, J, K)
        The segmentation on its own grid.
    seg_affine : numpy.ndarray, shape (4, 4)
        Its voxel -> scanner (mm) transform.
    codes : RegionCodes
        Its codes per catalogue region (:func:`ironmap.regions.region_codes`).
    magnitude : numpy.ndarray, shape (X, Y, Z, n_echoes)
        The GRE magnitudes (any units); the first and the last echo are used.
    affine : numpy.ndarray, shape (4, 4)
        Their voxel -> scanner (mm) transform.
    search_mm : float, optional
        Farthest displacement searched along each axis (mm).

    Returns
    -------
    Alignment
        With its ``outcome`` from the thresholds of this module.
    """
    start = time.perf_counter()
    voxel = np.linalg.norm(affine[:3, :3], axis=0)
    stride = np.maximum(np.round(_GRID_MM / voxel), 1).astype(int)
    magnitude = np.asarray(magnitude)[:: stride[0], :: stride[1], :: stride[2]]
    affine = affine @ np.diag([*stride, 1.0])
    voxel = voxel * stride
    pad = np.maximum(np.ceil(search_mm / voxel).astype(int), max(_RING) + 1)
    padded = _class_map(labels, seg_affine, codes, magnitude.shape[:3], affine, pad)
    bins = _quantile_bins(magnitude[..., 0]) * np.int16(_N_BINS)
    fit = _Fit(padded, bins + _quantile_bins(magnitude[..., -1]), pad)
    zero = (0, 0, 0)
    best = _climb(fit, max([zero, *_ring(zero)], key=fit), int(np.ceil(8.0 / voxel.min())))
    ring = np.array([fit(s) for s in _ring(best)])
    spread = fit(best) - ring[np.isfinite(ring)].mean()
    scale = spread if spread > 0 else np.inf  # no contrast: every score 0
    score = float(max((fit(best) - fit(zero)) / scale, 0.0))
    shift_mm = -(affine[:3, :3] @ _subvoxel(fit, best))
    # The mirror across the midline of the labelled volume along the left-right axis.
    lr = int(np.argmax(np.abs(affine[0, :3]) / voxel))
    profile = (padded > 0).sum(axis=tuple(a for a in range(3) if a != lr))
    centre2 = round(2.0 * float(profile @ np.arange(profile.size)) / max(profile.sum(), 1))
    mirrored = _Fit(_mirror(padded, lr, centre2), fit.bins, pad)
    flip_best = _climb(mirrored, max([zero, best], key=mirrored), 1)
    flip_score = float((mirrored(flip_best) - fit(best)) / scale)
    shift = float(np.linalg.norm(shift_mm))
    if shift >= REFUSE_SHIFT_MM and score >= REFUSE_SCORE:
        outcome = "misaligned"
    elif (shift >= WARN_SHIFT_MM and score >= WARN_SCORE) or flip_score >= FLIP_SCORE:
        outcome = "doubtful"
    else:
        outcome = "ok"
    seconds = time.perf_counter() - start
    return Alignment(outcome, score, shift_mm, flip_score, fit(zero), seconds)


def check_alignment(
    labels: NDArray[np.integer],
    seg_affine: NDArray[np.float64],
    codes: RegionCodes,
    magnitude: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    source_name: str,
) -> Alignment:
    """:func:`measure_alignment`, then warn (doubtful) or refuse (misaligned).

    Parameters are those of :func:`measure_alignment`; ``source_name`` (the dseg file) is named
    in the messages.

    Returns
    -------
    Alignment
        ``ok``, or ``doubtful`` after an :class:`~ironmap.errors.IronmapWarning`.

    Raises
    ------
    InputError
        When the segmentation clearly does not fit: one line naming the file, the estimated
        displacement and what to check.
    """
    result = measure_alignment(labels, seg_affine, codes, magnitude, affine)
    advice = "check that its affine maps to the same scanner space as the GRE"
    if result.outcome == "misaligned":
        raise InputError(f"{source_name}: does not fit the GRE: {result.describe()}; {advice}")
    if result.outcome == "doubtful":
        warnings.warn(
            f"{source_name}: may not fit the GRE: {result.describe()}; {advice} "
            "(regional R2* may be biased)",
            IronmapWarning,
            stacklevel=2,
        )
    return result
