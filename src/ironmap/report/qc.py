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
:func:`qc_page` writes the same numbers with the PNG into a small self-contained HTML page,
with the voxel count of each structure per hemisphere (:func:`voxel_counts`).

The computing parts (:func:`choose_slices`, :func:`qc_panels`, :func:`qc_rgba`,
:func:`qc_text`) are separate from the drawing, so they are tested on arrays.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..cohort.qc import MIN_REGION_VOXELS
from ..io import atomic_write_bytes
from ..regions.labels import DEEP_GM

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    "qc_figure",
    "qc_page",
    "qc_panels",
    "qc_rgba",
    "qc_text",
    "render_qc",
    "voxel_counts",
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
    """The panels of the QC figure, computed (see :func:`render_qc` for the parameters).

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


def qc_text(numbers: QCNumbers) -> list[str]:
    """The lines the figure prints under its title: failed fits and noise sigma."""
    if numbers.fit_voxels:
        why = ", ".join(f"{reason} {n:,}" for reason, n in numbers.failed_reasons.items())
        failed = (
            f"failed fits (NaN): {numbers.failed_voxels:,} of {numbers.fit_voxels:,} "
            f"intracranial voxels ({numbers.failed_percent:.2f} %){': ' + why if why else ''}"
        )
    else:
        failed = "failed fits (NaN): no fitted intracranial voxels"
    source = _SIGMA_SOURCES.get(numbers.sigma_source, numbers.sigma_source)
    sigma = (
        f"noise sigma: {numbers.sigma:.4g} (signal units; {source})"
        if numbers.sigma is not None
        else "noise sigma: unknown"
    )
    method = f"estimator: {numbers.method}; " if numbers.method else ""
    return [failed, f"{method}{sigma}"]


def _draw_panel(ax, panel: QCPanel, colours: dict[str, str]) -> None:
    """One slice: the RGBA image, thin outlines along the :data:`OUTLINE_LEVEL` partial-volume
    boundary (on the fraction upsampled without interpolation, so they run along the edges of
    the voxels at least half inside), its title and edge letters."""
    from matplotlib import patheffects

    edge = [patheffects.withStroke(linewidth=3.0, foreground="black")]
    ax.imshow(panel.rgba, origin="lower", extent=panel.extent, interpolation="nearest")
    width = 1.6 if panel.kind == "inset" else 0.9
    line = {"levels": [OUTLINE_LEVEL], "linewidths": width, "extent": panel.extent}
    for name, fraction in panel.outlines.items():
        fine = np.asarray(fraction, dtype=float).repeat(8, axis=0).repeat(8, axis=1)
        ax.contour(fine, colors=[colours[name]], origin="lower", **line)
    text = {"transform": ax.transAxes, "fontsize": 10, "color": "#ffe119", "path_effects": edge}
    for letter, (x, y, ha, va) in zip(_EDGES[panel.view.axis], _EDGE_PLACES, strict=True):
        ax.text(x, y, letter, ha=ha, va=va, **text)
    what = {"r2star": "", "magnitude": "", "inset": "R2* "}[panel.kind]
    ax.set_title(f"{what}{panel.view.plane} {panel.view.index}: {panel.view.label}", fontsize=10)
    ax.axis("off")


def _mark_inset(ax, inset: QCPanel) -> None:
    """The area of ``inset`` as a white box on its parent's axes."""
    from matplotlib.patches import Rectangle

    left, right, bottom, top = inset.extent
    box = Rectangle(
        (left, bottom), right - left, top - bottom, fill=False, linewidth=0.8,
        edgecolor="white", linestyle="--",
    )  # fmt: skip
    ax.add_patch(box)


def qc_figure(
    r2star: NDArray[np.float64],
    outlines: Mapping[str, NDArray],
    path: str | Path,
    **options: Any,
) -> Path:
    """:func:`render_qc` written to ``path`` (PNG at 100 dpi, atomically); returns ``path``.

    ``options`` are those of :func:`render_qc` (``title`` is required).
    """
    buffer = io.BytesIO()
    render_qc(r2star, outlines, **options).savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def render_qc(
    r2star: NDArray[np.float64],
    outlines: Mapping[str, NDArray],
    *,
    title: str,
    numbers: QCNumbers | None = None,
    affine: NDArray[np.float64] | None = None,
    failed: NDArray[np.bool_] | None = None,
    icv: NDArray[np.bool_] | None = None,
    vmax: float = 60.0,
    magnitude: NDArray[np.floating] | None = None,
    lesions: NDArray[np.bool_] | None = None,
) -> Figure:
    """R2* in six slices through the deep grey-matter nuclei with their outlines (Agg figure;
    text of 9 pt or more, 1100 x 860 pixels at 100 dpi; 1100 x 1220 with ``magnitude``, whose
    third row holds the magnitude and the SN/RN insets).

    Parameters
    ----------
    r2star : numpy.ndarray, shape (X, Y, Z)
        R2* map in 1/s; NaN where not fitted or failed.
    outlines : mapping
        ``region -> fraction`` of each voxel inside the structure (float in [0, 1]) or a bool
        mask, on the same grid; outlined at :data:`OUTLINE_LEVEL` (the :data:`QC_VIEWS`
        structures choose the slices; every structure is outlined).
    title : str
        First line of the header.
    numbers : QCNumbers, optional
        Failed voxels and noise sigma, printed in the header (:func:`qc_text`).
    affine : numpy.ndarray, shape (4, 4), optional
        Voxel-to-world affine: orientation and voxel sizes (default: 1 mm RAS voxels).
    failed : numpy.ndarray of bool, optional
        Voxels whose fit failed, drawn in :data:`NAN_COLOUR` (default: every NaN).
    icv : numpy.ndarray of bool, optional
        Intracranial volume: the panels are cropped to it and only its failures are coloured.
    vmax : float, optional
        R2* (1/s) drawn white.
    magnitude : numpy.ndarray, shape (X, Y, Z), optional
        First-echo magnitude (signal units), drawn up to its 99.5th percentile in ``icv``.
    lesions : numpy.ndarray of bool, shape (X, Y, Z), optional
        Lesion voxels, tinted :data:`LESION_COLOUR` in every panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = qc_panels(
        r2star, outlines, affine=affine, failed=failed, icv=icv, vmax=vmax,
        magnitude=magnitude, lesions=lesions,
    )  # fmt: skip
    colours = {name: OUTLINE_COLOURS.get(name, "#ffffff") for name in outlines}
    n_rows = 3 if len(panels) > 6 else 2
    height = 12.2 if n_rows == 3 else 8.6
    fig = Figure(figsize=(11.0, height), dpi=100)  # a fixed layout: constrained costs 0.7 s
    inch = 1 / height  # figure fraction per inch of height: the header keeps its size
    fig.text(0.01, 1 - 0.086 * inch, title, fontsize=12, fontweight="bold", va="top")
    lines = qc_text(numbers) if numbers is not None else []
    lines.append(
        f"outlines: {int(100 * OUTLINE_LEVEL)} % partial-volume boundary (voxels at least half "
        "inside)" + (f"; insets ×{INSET_ZOOM} (dashed box)" if n_rows == 3 else "")
    )
    fig.text(0.01, 1 - 0.33 * inch, "\n".join(lines), fontsize=10, va="top", linespacing=1.4)
    grid = fig.add_gridspec(
        n_rows, 3, left=0.01, right=0.91, bottom=0.645 * inch, top=1 - 1.2 * inch,
        wspace=0.04, hspace=0.1 * 2 / n_rows,
    )  # fmt: skip
    axes = [fig.add_subplot(grid[i // 3, i % 3]) for i in range(len(panels))]
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, colours)
        if panel.parent is not None:
            _mark_inset(axes[panel.parent], panel)
    handles = [
        Line2D([], [], color=colours[n], linewidth=2.5, label=n.replace("_", " "))
        for n in outlines
    ]
    handles.append(Patch(facecolor=NAN_COLOUR, edgecolor="black", label="failed fit (NaN)"))
    if any(p.lesions is not None and p.lesions.any() for p in panels):
        handles.append(Patch(facecolor=LESION_COLOUR, edgecolor="black", label="lesion"))
    fig.legend(
        handles=handles, loc="lower center", bbox_to_anchor=(0.46, 0.0), ncol=5, fontsize=10,
        frameon=False,
    )  # fmt: skip
    shown = ScalarMappable(Normalize(0.0, vmax), cmap="gray")
    bar = fig.colorbar(shown, cax=fig.add_axes((0.93, 0.3, 0.015, 0.4)), extend="max")
    bar.set_label("R2* (1/s)", fontsize=10)
    bar.ax.tick_params(labelsize=9)
    return fig


def voxel_counts(regions: pd.DataFrame) -> pd.DataFrame:
    """R2* voxels of each deep grey-matter structure per hemisphere: ``n_voxels`` of
    ``_regions.tsv`` as a table with one row per structure (in :data:`DEEP_GM` order) and the
    columns ``left``, ``right`` and ``both`` (NaN where a row is missing)."""
    deep = regions[regions["region"].isin(DEEP_GM)]
    table = deep.pivot_table(
        index="region", columns="hemisphere", values="n_voxels", aggfunc="first"
    )
    order = [r for r in DEEP_GM if r in table.index]
    return table.reindex(index=order, columns=["left", "right", "both"]).rename_axis(
        index="structure", columns=None
    )


def qc_page(
    png: str | Path,
    path: str | Path,
    *,
    title: str,
    numbers: QCNumbers,
    counts: pd.DataFrame | None = None,
    extra: str = "",
) -> Path:
    """A self-contained HTML page: the QC PNG (embedded), a table of ``numbers`` and, with
    ``counts`` (:func:`voxel_counts`), the voxels per structure and hemisphere, those under
    :data:`~ironmap.cohort.qc.MIN_REGION_VOXELS` in red; ``extra``: HTML sections appended
    (e.g. :func:`registration_html`)."""
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    sigma = "unknown" if numbers.sigma is None else f"{numbers.sigma:.4g}"
    rows = [
        ("intracranial voxels fitted", f"{numbers.fit_voxels:,}"),
        ("failed fits (NaN)", f"{numbers.failed_voxels:,} ({numbers.failed_percent:.2f} %)"),
        *((f"&nbsp;&nbsp;{html.escape(r)}", f"{n:,}") for r, n in numbers.failed_reasons.items()),
        ("noise sigma (signal units)", sigma),
        ("noise sigma source", html.escape(numbers.sigma_source)),
        ("estimator", html.escape(numbers.method or "unknown")),
    ]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    voxels = "" if counts is None else _counts_html(counts)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}th{{text-align:left;padding-right:2em}}
td{{text-align:right;padding-left:1em}}img{{max-width:100%}}td.flag{{background:#fdd;color:#a00}}
.side{{display:inline-block;vertical-align:top;margin-right:3em;max-width:34em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<div class="side"><table>
{table}
</table></div>
{voxels}
<p><img src="data:image/png;base64,{image}" alt="R2* slices with structure outlines"></p>
{extra}</body></html>
"""
    atomic_write_bytes(path, page.encode("utf-8"))
    return Path(path)


def _counts_html(counts: pd.DataFrame) -> str:
    """The voxel-count table of :func:`qc_page`."""
    head = "<tr><th>R2* voxels</th>" + "".join(f"<th>{c}</th>" for c in counts.columns) + "</tr>"
    body = []
    for region, row in counts.iterrows():
        cells = []
        for column, value in row.items():
            low = column != "both" and pd.notna(value) and value < MIN_REGION_VOXELS
            text = "" if pd.isna(value) else f"{int(value):,}"
            cells.append(f"<td class='flag'>{text}</td>" if low else f"<td>{text}</td>")
        body.append(
            f"<tr><th>{html.escape(str(region).replace('_', ' '))}</th>{''.join(cells)}</tr>"
        )
    note = (
        "<p>R2* voxels: those at least <code>--min-fraction</code> inside the structure, the "
        "ones its statistics use (the figure outlines those at least half inside).<br>In red: "
        f"fewer than {MIN_REGION_VOXELS} voxels in a hemisphere (the regional median rests on "
        "few voxels).</p>"
    )
    return f"<div class='side'><table>\n{head}\n" + "\n".join(body) + f"\n</table>{note}</div>"


# -- registration of a user dseg to the GRE (issue 26) ------------------------------------------

#: Colours of the dseg's label boundaries before and after its registration to the GRE.
REGISTRATION_COLOURS = {"before": "#ff7f0e", "after": "#00e5ff"}


def _nearest_labels(
    labels: NDArray, label_affine: NDArray[np.float64], shape, affine: NDArray[np.float64]
) -> NDArray[np.int32]:
    """Labels at the voxel centres of a grid (nearest voxel; 0 outside the label image)."""
    grid = np.indices(tuple(shape[:3]), dtype=np.float64).reshape(3, -1)
    ijk = (np.linalg.inv(label_affine) @ affine)[:3] @ np.vstack([grid, np.ones(grid.shape[1])])
    ijk = np.floor(ijk + 0.5).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(labels.shape)[:, None]), axis=0)
    out = np.zeros(grid.shape[1], np.int32)
    out[inside] = np.asarray(labels)[tuple(ijk[:, inside])]
    return out.reshape(tuple(shape[:3]))


def _edges(plane: NDArray) -> NDArray[np.bool_]:
    """Pixels of a label plane whose right or upper neighbour carries another label."""
    edge = np.zeros(plane.shape, bool)
    edge[:-1] |= plane[:-1] != plane[1:]
    edge[:, :-1] |= plane[:, :-1] != plane[:, 1:]
    return edge


def registration_figure(
    magnitude: NDArray[np.floating],
    affine: NDArray[np.float64],
    labels: NDArray,
    before_affine: NDArray[np.float64],
    after_affine: NDArray[np.float64],
    path: str | Path,
    *,
    title: str,
) -> Path:
    """The dseg's label boundaries on the first echo, before and after its registration.

    Two rows (axial and coronal slices through the labelled volume's centre, R on the left) and
    two columns (the dseg's own affine; the registered one); a PNG (100 dpi, atomically).

    Parameters
    ----------
    magnitude : numpy.ndarray, shape (X, Y, Z)
        First-echo magnitude.
    affine : numpy.ndarray, shape (4, 4)
        Its voxel -> scanner (mm) affine.
    labels : numpy.ndarray of int, shape (I, J, K)
        The dseg on its own grid.
    before_affine, after_affine : numpy.ndarray, shape (4, 4)
        Its affine as given and after the registration (:mod:`ironmap.segmentation.coregister`).
    path : str or Path
        PNG written.
    title : str
        Figure title.
    """
    from matplotlib.figure import Figure
    from nibabel.orientations import apply_orientation

    transform, sizes = _to_ras(affine, magnitude.shape)
    image = apply_orientation(np.nan_to_num(np.asarray(magnitude, np.float64)), transform)
    maps = {
        key: apply_orientation(_nearest_labels(labels, a, magnitude.shape, affine), transform)
        for key, a in (("before", before_affine), ("after", after_affine))
    }
    centre = np.round(np.argwhere(maps["after"] > 0).mean(axis=0)).astype(int)
    vmax = float(np.percentile(image[image > 0], 99.5)) if np.any(image > 0) else 1.0
    fig = Figure(figsize=(9.0, 9.6), dpi=100)
    fig.suptitle(title, fontsize=11)
    views = (("axial", 2), ("coronal", 1))
    for row, (view, axis) in enumerate(views):
        for col, key in enumerate(("before", "after")):
            ax = fig.add_axes((0.02 + 0.49 * col, 0.5 - 0.47 * row, 0.47, 0.42))
            cut = [slice(None)] * 3
            cut[axis] = int(np.clip(centre[axis], 0, image.shape[axis] - 1))
            # rows top-down (anterior / superior first), columns R -> L as the panels above
            plane = image[tuple(cut)].T[::-1, ::-1]
            edge = _edges(maps[key][tuple(cut)].T[::-1, ::-1])
            other = [a for a in range(3) if a != axis]
            aspect = sizes[other[1]] / sizes[other[0]]
            ax.imshow(plane, cmap="gray", vmin=0.0, vmax=vmax, aspect=aspect)
            overlay = np.zeros((*edge.shape, 4))
            overlay[edge] = to_rgba_array(REGISTRATION_COLOURS[key])
            ax.imshow(overlay, aspect=aspect, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{view} (R on the left), labels {key} registration", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def to_rgba_array(colour: str) -> NDArray[np.float64]:
    """RGBA of a matplotlib colour (opaque)."""
    from matplotlib.colors import to_rgba

    return np.asarray(to_rgba(colour))


def registration_html(png: str | Path, record: Mapping[str, Any]) -> str:
    """The QC page's section on a dseg registered to the GRE: its record (provenance's
    ``segmentation_registration``) and the before/after figure (:func:`registration_figure`)."""
    image = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    after = record.get("alignment_after") or {}
    rows = [
        ("image registered", html.escape(Path(str(record.get("moving_image", ""))).name)),
        ("why", html.escape(str(record.get("reason", "")))),
        ("rotation x, y, z (deg)", ", ".join(f"{v:+.2f}" for v in record["rotation_deg"])),
        ("displacement of the GRE's centre (mm)", ", ".join(
            f"{v:+.2f}" for v in record.get("displacement_mm", record["translation_mm"])
        )),
        ("final metric (Mattes MI)", f"{record['metric']:.4f}"),
        ("alignment check after", html.escape(str(after.get("alignment", "n/a")))),
        ("alignment score after", str(after.get("alignment_score", "n/a"))),
        ("registration time (s)", f"{record['seconds']:.1f}"),
    ]  # fmt: skip
    lesion = record.get("lesion_mask") or {}
    if lesion.get("registered"):  # the lesion mask's own image, registered on its own
        shift = lesion.get("displacement_mm", lesion["translation_mm"])
        rows += [
            ("lesion mask: image registered", html.escape(Path(lesion["moving_image"]).name)),
            ("lesion mask: rotation x, y, z (deg)",
             ", ".join(f"{v:+.2f}" for v in lesion["rotation_deg"])),
            ("lesion mask: displacement (mm)", ", ".join(f"{v:+.2f}" for v in shift)),
        ]  # fmt: skip
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (
        "<h2>Segmentation registered to the GRE</h2>\n<p>The image the dseg was made on was "
        "registered rigidly to the first echo; the dseg and lesion mask were carried by the "
        "transform. Label boundaries before (orange) and after (cyan) on the first echo.</p>\n"
        f"<table>\n{table}\n</table>\n"
        f'<p><img src="data:image/png;base64,{image}" alt="dseg boundaries on the first echo '
        'before and after registration"></p>\n'
    )


# -- paramagnetic rim lesion montage (issue 27) -------------------------------------------------

#: Candidates shown in the PRL montage (highest ``prl_score`` first).
PRL_MONTAGE_MAX = 8
#: Half-width (mm) of each lesion-centred patch.
PRL_PATCH_MM = 16.0
#: Grey range of the chi patches (ppm) and of the local-field patches (ppm).
PRL_CHI_RANGE_PPM = 0.05
PRL_FIELD_RANGE_PPM = 0.03


def prl_montage(
    lesions: pd.DataFrame,
    chi_ppm: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    lesion_fraction: NDArray[np.floating] | None = None,
    local_field_ppm: NDArray[np.floating] | None = None,
) -> Figure | None:
    """Lesion-centred axial patches of the PRL candidates: chi, and the local field.

    Parameters
    ----------
    lesions : pandas.DataFrame
        Rows of ``_lesions.tsv`` (``prl_candidate``, ``prl_score``, centroids in mm).
    chi_ppm : numpy.ndarray, shape (X, Y, Z)
        Susceptibility map (ppm) on ``affine``'s grid.
    affine : numpy.ndarray, shape (4, 4)
    lesion_fraction : numpy.ndarray, shape (X, Y, Z), optional
        Lesion fraction: its 50 % boundary is outlined on every patch.
    local_field_ppm : numpy.ndarray, shape (X, Y, Z), optional
        Background-removed field (ppm): a second row of patches.

    Returns
    -------
    matplotlib.figure.Figure or None
        At most :data:`PRL_MONTAGE_MAX` candidates (highest ``prl_score`` first), each a column
        of ``2 PRL_PATCH_MM`` mm patches through its centroid, RAS (anterior up, right on the
        left); None without a candidate.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if "prl_candidate" not in lesions.columns:
        return None
    flags = lesions["prl_candidate"].map({True: True, "True": True}).fillna(False).astype(bool)
    chosen = lesions[flags].sort_values("prl_score", ascending=False).head(PRL_MONTAGE_MAX)
    if chosen.empty:
        return None
    transform, sizes = _to_ras(affine, np.shape(chi_ppm))
    from nibabel.orientations import apply_orientation

    def ras(volume):
        return None if volume is None else apply_orientation(np.asarray(volume), transform)

    maps = [("chi (ppm)", ras(chi_ppm), PRL_CHI_RANGE_PPM)]
    if local_field_ppm is not None:
        maps.append(("local field (ppm)", ras(local_field_ppm), PRL_FIELD_RANGE_PPM))
    fraction = ras(lesion_fraction)
    # voxel (RAS-reoriented grid) of each centroid: through the original voxel indices
    inverse = np.linalg.inv(affine)
    shape = np.shape(chi_ppm)
    n = len(chosen)
    height = 1.75 * len(maps) + 0.9
    fig = Figure(figsize=(max(1.6 * n + 0.4, 5.0), height), dpi=100)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.02, top=1 - 0.85 / height, hspace=0.1)
    half = np.ceil(PRL_PATCH_MM / sizes).astype(int)
    for column, row in enumerate(chosen.itertuples(index=False)):
        xyz = np.array([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm, 1.0])
        ijk = np.rint(inverse @ xyz)[:3]
        # the same voxel on the RAS-reoriented grid
        ras_ijk = np.empty(3)
        for axis, (target, flip) in enumerate(transform):
            value = ijk[axis]
            ras_ijk[int(target)] = shape[axis] - 1 - value if flip < 0 else value
        i, j, k = (int(v) for v in ras_ijk)
        box = (
            slice(max(i - half[0], 0), i + half[0] + 1),
            slice(max(j - half[1], 0), j + half[1] + 1),
        )
        for r, (label, volume, limit) in enumerate(maps):
            ax = fig.add_subplot(len(maps), n, r * n + column + 1)
            k_in = min(max(k, 0), volume.shape[2] - 1)
            plane = volume[box[0], box[1], k_in].T[::-1, ::-1]  # anterior up, right on the left
            ax.imshow(plane, cmap="gray", vmin=-limit, vmax=limit, interpolation="nearest",
                      aspect=sizes[1] / sizes[0])  # fmt: skip
            if fraction is not None:
                outline = fraction[box[0], box[1], k_in].T[::-1, ::-1]
                ax.contour(outline, levels=[0.5], colors=[LESION_COLOUR], linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"#{int(row.lesion_id)} {row.prl_score:+.3f}", fontsize=9)
            if column == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(
        f"PRL candidates: lesion #, prl_score (ppm)\naxial {2 * PRL_PATCH_MM:.0f} mm patches, "
        f"grey +-{PRL_CHI_RANGE_PPM:g} ppm chi"
        + (f", +-{PRL_FIELD_RANGE_PPM:g} ppm field" if local_field_ppm is not None else ""),
        fontsize=9,
    )
    return fig


def prl_montage_html(
    lesions: pd.DataFrame, chi_ppm: NDArray[np.floating] | None, affine, **options: Any
) -> str:
    """The QC page's PRL section (:func:`prl_montage` embedded as PNG; ``options`` are its
    keywords): empty without a chi map, a sentence when there is no candidate."""
    if chi_ppm is None or "prl_candidate" not in lesions.columns:
        return ""
    fig = prl_montage(lesions, chi_ppm, affine, **options)
    if fig is None:
        return "<h2>Paramagnetic rim lesions</h2><p>No PRL candidate.</p>\n"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    flags = lesions["prl_candidate"].map({True: True, "True": True}).fillna(False)
    return (
        "<h2>Paramagnetic rim lesions</h2>"
        f"<p>{int(flags.sum())} candidate(s) of {len(lesions)} lesions "
        "(prl_candidate of _lesions.tsv); lesion outline: 50 % of the lesion mask.</p>\n"
        f'<p><img src="data:image/png;base64,{image}" alt="PRL candidates: chi patches"></p>\n'
    )
