"""Per-participant quality-control page: R2* through the deep grey-matter nuclei.

:func:`qc_figure` writes one PNG of six slices in three orientations, each cut through a
group of structures near their centroid (:data:`QC_VIEWS`): axial through the basal ganglia
and thalamus, through substantia nigra (SN) and red nucleus (RN) and through the dentate
nuclei; coronal through the pallidum and through SN/RN; sagittal through the right SN/RN.
R2* is shown in grey (radiological convention, voxels at their true size), each structure as
a thin coloured line along its 50 % partial-volume boundary (:data:`OUTLINE_LEVEL`: the edges
of the voxels at least half inside it, so the line surrounds a 1-4-voxel nucleus instead of
covering it), voxels whose fit failed (NaN) in flat magenta and lesions tinted
(:data:`LESION_COLOUR`). With the first-echo magnitude, a third row shows it (axial, through
the most lesion voxels) and :data:`INSET_ZOOM`-times enlarged insets around SN/RN. The header
prints the share of intracranial voxels that failed and the noise sigma with its source.
:func:`~.qc_page.qc_page` writes the same numbers with the PNG into a small self-contained HTML
page, with the voxel count of each structure per hemisphere (:func:`~.qc_page.voxel_counts`).

The computing parts (:func:`choose_slices`, :func:`qc_panels`, :func:`qc_rgba`,
:func:`qc_text`) are separate from the drawing, so they are tested on arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    pass

__all__ = [
    "INSET_ZOOM",
    "LESION_COLOUR",
    "NAN_COLOUR",
    "OUTLINE_LEVEL",
    "QC_VIEWS",
    "QCNumbers",
    "QCPanel",
    "SliceView",
    "choose_slices",
    "qc_panels",
    "qc_rgba",
]

#: Flat colour of voxels whose fit failed (NaN inside the brain).
NAN_COLOUR = "#ff00ff"
#: Tint of lesion voxels, blended over the grey with :data:`LESION_ALPHA`.
LESION_COLOUR = "#00ffd0"
LESION_ALPHA = 0.55
#: Structures are outlined where their partial-volume fraction crosses this level.
OUTLINE_LEVEL = 0.5
#: Enlargement of the SN/RN insets over the slices they are cut from.
INSET_ZOOM = 4
#: Structures the insets are centred on: views of :data:`QC_VIEWS` with these get an inset.
INSET_REGIONS = ("substantia_nigra", "red_nucleus")
#: Panels the figure has room for (three rows of three): insets beyond it are left out.
MAX_PANELS = 9

#: Outline colour per structure: saturated colours, each drawn with a black edge, so they stay
#: visible on dark and bright grey alike (magenta is kept for failed fits; others in white).
OUTLINE_COLOURS = {
    "thalamus": "#42d4f4",
    "caudate": "#bfef45",
    "putamen": "#ffe119",
    "pallidum": "#f58231",
    "substantia_nigra": "#e6194b",
    "red_nucleus": "#4f7dff",
    "dentate_nucleus": "#3cb44b",
}

#: Slices of the figure: (label, axis of the RAS grid: 0 sagittal, 1 coronal, 2 axial, the
#: structures it cuts, the first always; see :func:`choose_slices`).
QC_VIEWS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("basal ganglia, thalamus", 2, ("pallidum", "putamen", "caudate", "thalamus")),
    ("SN, RN", 2, ("substantia_nigra", "red_nucleus")),
    ("dentate nuclei", 2, ("dentate_nucleus",)),
    ("pallidum, putamen", 1, ("pallidum", "putamen")),
    ("SN, RN", 1, ("substantia_nigra", "red_nucleus")),
    ("right SN, RN", 0, ("substantia_nigra", "red_nucleus")),
)

_PLANES = ("sagittal", "coronal", "axial")
#: Letters at the (left, right, bottom, top) edges of a panel, per slice axis, and where.
_EDGES = {0: ("A", "P", "I", "S"), 1: ("R", "L", "I", "S"), 2: ("R", "L", "P", "A")}
_EDGE_PLACES = ((0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center"),
                (0.5, 0.02, "center", "bottom"), (0.5, 0.98, "center", "top"))  # fmt: skip
_SIGMA_SOURCES = {
    "given": "given (--sigma)",
    "background": "estimated from the image background",
    "residuals": "estimated from the fit residuals",
    "map": "median of the local noise map (--sigma-map)",
}


@dataclass(frozen=True)
class SliceView:
    """One slice of the figure: ``index`` along ``axis`` of the RAS-oriented grid."""

    label: str
    axis: int
    index: int

    @property
    def plane(self) -> str:
        """``"sagittal"``, ``"coronal"`` or ``"axial"``."""
        return _PLANES[self.axis]


@dataclass(frozen=True)
class QCNumbers:
    """What the QC page prints: the fit's failures inside the brain and its noise level.

    Attributes
    ----------
    fit_voxels, failed_voxels : int
        Fitted voxels inside the intracranial volume and those that failed (NaN).
    failed_reasons : dict
        Failed voxels per reason (e.g. ``{"bad signal": 20}``).
    sigma : float or None
        Noise SD per channel (signal units); None when unknown.
    sigma_source : str
        ``"given"``, ``"background"``, ``"residuals"`` or ``"unknown"``.
    method : str
        The R2* estimator.
    """

    fit_voxels: int
    failed_voxels: int
    failed_reasons: dict[str, int] = field(default_factory=dict)
    sigma: float | None = None
    sigma_source: str = "unknown"
    method: str = ""

    @property
    def failed_percent(self) -> float:
        """Failed share of the fitted intracranial voxels, in % (NaN without any)."""
        return 100 * self.failed_voxels / self.fit_voxels if self.fit_voxels else float("nan")


@dataclass
class QCPanel:
    """One panel ready to draw: image rows bottom-up, columns in radiological order.

    ``outlines`` holds each structure's partial-volume fraction in the slice (those with a
    voxel at least :data:`OUTLINE_LEVEL` inside), ``lesions`` the lesion voxels (None without a
    lesion mask). ``kind`` is ``"r2star"``, ``"magnitude"`` or ``"inset"`` (a crop of panel
    ``parent``, its ``extent`` in that panel's coordinates).
    """

    view: SliceView
    rgba: NDArray[np.float64]  # (rows, cols, 4)
    outlines: dict[str, NDArray[np.float64]]  # region -> (rows, cols), only those in the slice
    extent: tuple[float, float, float, float]  # mm: left, right, bottom, top
    lesions: NDArray[np.bool_] | None = None  # (rows, cols)
    kind: str = "r2star"
    parent: int | None = None


def choose_slices(
    outlines: Mapping[str, NDArray[np.bool_]],
    shape: tuple[int, ...],
    *,
    views: tuple[tuple[str, int, tuple[str, ...]], ...] = QC_VIEWS,
) -> list[SliceView]:
    """The slices of ``views`` on the RAS grid.

    Each slice cuts the first of its structures present (the anchor) and as many of the others
    as one slice can, and of those slices is the nearest to the structures' centroid. A
    sagittal view takes the right half of its structures (the midline holds none of the
    bilateral ones). A view none of whose structures is in ``outlines`` is left out; with none
    left, three orthogonal slices through the centre of the grid.
    """
    chosen = []
    for label, axis, regions in views:
        masks = [outlines[r] for r in regions if r in outlines and outlines[r].any()]
        if not masks:
            continue
        if axis == 0:
            centre = np.argwhere(np.logical_or.reduce(masks))[:, 0].mean()
            right = [m & (np.arange(m.shape[0]) >= centre)[:, None, None] for m in masks]
            masks = [m for m in right if m.any()] if right[0].any() else masks
        others = tuple(b for b in range(3) if b != axis)
        cut = np.array([m.any(axis=others) for m in masks])  # (structures, slices)
        score = np.where(cut[0], cut.sum(axis=0), -1)
        centroid = np.argwhere(np.logical_or.reduce(masks))[:, axis].mean()
        best = np.flatnonzero(score == score.max())
        chosen.append(SliceView(label, axis, int(best[np.argmin(np.abs(best - centroid))])))
    if not chosen:
        chosen = [SliceView("centre", a, shape[a] // 2) for a in (2, 1, 0)]
    return chosen


def qc_rgba(
    values: NDArray[np.float64],
    *,
    failed: NDArray[np.bool_] | None = None,
    lesions: NDArray[np.bool_] | None = None,
    vmin: float = 0.0,
    vmax: float = 60.0,
) -> NDArray[np.float64]:
    """Grey-scale RGBA of ``values``: :data:`NAN_COLOUR` where ``failed``, black elsewhere
    outside the fit (NaN); every NaN counts as failed when ``failed`` is None. ``lesions``
    voxels are tinted: :data:`LESION_COLOUR` blended over them with :data:`LESION_ALPHA`."""
    from matplotlib.colors import to_rgba

    grey = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
    nan = np.isnan(values)
    rgba[nan] = (0.0, 0.0, 0.0, 1.0)
    rgba[nan if failed is None else failed & nan] = to_rgba(NAN_COLOUR)
    if lesions is not None:
        tint = np.asarray(to_rgba(LESION_COLOUR))
        rgba[lesions] = (1 - LESION_ALPHA) * rgba[lesions] + LESION_ALPHA * tint
    return rgba


def _to_ras(affine: NDArray[np.float64], shape: tuple[int, ...]):
    """Orientation transform of a grid to RAS and the voxel sizes (mm) along the RAS axes."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), axcodes2ornt("RAS"))
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    ras_sizes = np.empty(3)
    ras_sizes[transform[:, 0].astype(int)] = sizes
    return transform, ras_sizes


def _crop(reference: NDArray[np.bool_], pad: int = 2) -> tuple[slice, ...]:
    """The bounding box of ``reference`` plus ``pad`` voxels (the whole grid when empty)."""
    if not reference.any():
        return tuple(slice(None) for _ in reference.shape)
    coords = np.argwhere(reference)
    low = np.maximum(coords.min(axis=0) - pad, 0)
    high = np.minimum(coords.max(axis=0) + pad + 1, reference.shape)
    return tuple(slice(a, b) for a, b in zip(low, high, strict=True))


def _cut(volume: NDArray, axis: int, index: int, box: tuple[slice, ...]) -> NDArray:
    """Slice ``index`` along ``axis`` inside ``box``: rows bottom-up, columns R->L or A->P."""
    inside = tuple(s if a != axis else slice(None) for a, s in enumerate(box))
    plane = np.take(volume[inside], index, axis=axis)
    return plane.T[:, ::-1]


def qc_panels(
    r2star: NDArray[np.float64],
    outlines: Mapping[str, NDArray],
    *,
    affine: NDArray[np.float64] | None = None,
    failed: NDArray[np.bool_] | None = None,
    icv: NDArray[np.bool_] | None = None,
    vmax: float = 60.0,
    magnitude: NDArray[np.floating] | None = None,
    lesions: NDArray[np.bool_] | None = None,
) -> list[QCPanel]:
    """The panels of the QC figure, computed (see :func:`~.qc_page.render_qc` for the parameters).

    The grid is reoriented to RAS (``affine``, identity when None) and cropped to the
    intracranial volume (else the fitted voxels); failed voxels outside ``icv`` (its
    skull-and-background margin) are drawn as background. The slices are chosen on the voxels at
    least :data:`OUTLINE_LEVEL` inside each structure. After the :data:`QC_VIEWS` slices come,
    with ``magnitude``, an axial magnitude slice (through the most ``lesions`` voxels, else the
    first view's slice) and the :data:`INSET_ZOOM`-times insets around SN/RN.
    """
    from nibabel.orientations import apply_orientation

    transform, sizes = _to_ras(np.eye(4) if affine is None else affine, r2star.shape)

    def ras(array: NDArray) -> NDArray:
        return apply_orientation(np.asarray(array), transform)

    values = ras(r2star)
    fractions = {name: ras(f).astype(np.float64) for name, f in outlines.items()}
    masks = {name: f >= OUTLINE_LEVEL for name, f in fractions.items()}
    shown_failed = None if failed is None else np.asarray(failed, dtype=bool)
    if shown_failed is not None and icv is not None:
        shown_failed = shown_failed & np.asarray(icv, dtype=bool)
    shown_failed = None if shown_failed is None else ras(shown_failed)
    lesion = None if lesions is None else ras(np.asarray(lesions, dtype=bool))
    box = _crop(ras(icv).astype(bool) if icv is not None else np.isfinite(values))

    def panel(view: SliceView, volume: NDArray, kind: str, **grey: Any) -> QCPanel:
        a = view.axis
        kept = [b for b in range(3) if b != a]
        cut = _cut(volume, a, view.index, box)
        shown = None if lesion is None else _cut(lesion, a, view.index, box)
        rgba = qc_rgba(cut, lesions=shown, **grey)
        cuts = {name: _cut(f, a, view.index, box) for name, f in fractions.items()}
        rows, cols = cut.shape
        extent = (0.0, cols * sizes[kept[0]], 0.0, rows * sizes[kept[1]])
        kept_outlines = {k: v for k, v in cuts.items() if (v >= OUTLINE_LEVEL).any()}
        return QCPanel(view, rgba, kept_outlines, extent, lesions=shown, kind=kind)

    views = choose_slices(masks, values.shape)
    panels = [
        panel(
            view,
            values,
            "r2star",
            failed=None
            if shown_failed is None
            else _cut(shown_failed, view.axis, view.index, box),
            vmax=vmax,
        )
        for view in views
    ]
    if magnitude is None:
        return panels
    mag = ras(np.asarray(magnitude, dtype=np.float64))
    inside = ras(icv).astype(bool) if icv is not None else np.isfinite(values)
    top = float(np.percentile(mag[inside], 99.5)) if inside.any() else float(np.nanmax(mag))
    axial = next((v.index for v in views if v.axis == 2), values.shape[2] // 2)
    label = "first-echo magnitude"
    if lesion is not None and (lesion & inside).any():
        axial = int(np.argmax((lesion & inside).sum(axis=(0, 1))))
        label = "first-echo magnitude, most lesions"
    view = SliceView(label, 2, axial)
    panels.append(panel(view, mag, "magnitude", failed=np.zeros(1, bool), vmax=top or 1.0))
    # the views chosen for SN/RN first: a registered atlas's SN/RN may show in more views
    meant = {label for label, _, names in QC_VIEWS if set(names) & set(INSET_REGIONS)}
    parents = sorted(enumerate(list(panels)), key=lambda item: item[1].view.label not in meant)
    for i, parent in parents:
        if len(panels) == MAX_PANELS:
            break
        if parent.kind == "r2star" and parent.view.axis != 0:
            inset = _inset(parent, i)
            if inset is not None:
                panels.append(inset)
    return panels


def _inset(parent: QCPanel, index: int) -> QCPanel | None:
    """An :data:`INSET_ZOOM`-times enlarged crop of ``parent`` centred on its SN/RN voxels
    (None when it shows neither): the same aspect, so it fills an axes of the same size."""
    shown = [parent.outlines[r] >= OUTLINE_LEVEL for r in INSET_REGIONS if r in parent.outlines]
    if not shown:
        return None
    rows, cols = parent.rgba.shape[:2]
    where = np.argwhere(np.logical_or.reduce(shown))
    low, high = where.min(axis=0), where.max(axis=0) + 1
    size = [max(int(np.ceil(n / INSET_ZOOM)), int(h - lo) + 4) for n, lo, h in
            zip((rows, cols), low, high, strict=True)]  # fmt: skip
    start = [
        int(np.clip((lo + h) // 2 - s // 2, 0, max(n - s, 0)))
        for n, lo, h, s in zip((rows, cols), low, high, size, strict=True)
    ]
    crop = tuple(slice(b, b + s) for b, s in zip(start, size, strict=True))
    left, right, bottom, top = parent.extent
    dx, dy = (right - left) / cols, (top - bottom) / rows
    extent = (
        left + crop[1].start * dx,
        left + min(crop[1].stop, cols) * dx,
        bottom + crop[0].start * dy,
        bottom + min(crop[0].stop, rows) * dy,
    )
    view = SliceView(f"{parent.view.label} ×{INSET_ZOOM}", parent.view.axis, parent.view.index)
    return QCPanel(
        view,
        parent.rgba[crop],
        {k: v[crop] for k, v in parent.outlines.items() if (v[crop] >= OUTLINE_LEVEL).any()},
        extent,
        lesions=None if parent.lesions is None else parent.lesions[crop],
        kind="inset",
        parent=index,
    )
