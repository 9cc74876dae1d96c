"""Per-participant quality-control page: R2* through the deep grey-matter nuclei.

:func:`qc_figure` writes one PNG of six slices in three orientations, each cut through a
group of structures near their centroid (:data:`QC_VIEWS`): axial through the basal ganglia
and thalamus, through substantia nigra (SN) and red nucleus (RN) and through the dentate
nuclei; coronal through the pallidum and through SN/RN; sagittal through the right SN/RN.
R2* is shown in grey (radiological convention, voxels at their true size), each structure as
a coloured, black-edged outline, and voxels whose fit failed (NaN) in flat magenta. The
header prints the share of intracranial voxels that failed and the noise sigma with its source.
:func:`qc_page` writes the same numbers with the PNG into a small self-contained HTML page.

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
from numpy.typing import NDArray

from ..io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "NAN_COLOUR",
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
]

#: Flat colour of voxels whose fit failed (NaN inside the brain).
NAN_COLOUR = "#ff00ff"

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
    """One panel ready to draw: image rows bottom-up, columns in radiological order."""

    view: SliceView
    rgba: NDArray[np.float64]  # (rows, cols, 4)
    outlines: dict[str, NDArray[np.bool_]]  # region -> (rows, cols), only those in the slice
    extent: tuple[float, float, float, float]  # mm: left, right, bottom, top


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
    vmin: float = 0.0,
    vmax: float = 60.0,
) -> NDArray[np.float64]:
    """Grey-scale RGBA of ``values``: :data:`NAN_COLOUR` where ``failed``, black elsewhere
    outside the fit (NaN); every NaN counts as failed when ``failed`` is None."""
    from matplotlib.colors import to_rgba

    grey = np.clip((np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
    nan = np.isnan(values)
    rgba[nan] = (0.0, 0.0, 0.0, 1.0)
    rgba[nan if failed is None else failed & nan] = to_rgba(NAN_COLOUR)
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
    outlines: Mapping[str, NDArray[np.bool_]],
    *,
    affine: NDArray[np.float64] | None = None,
    failed: NDArray[np.bool_] | None = None,
    icv: NDArray[np.bool_] | None = None,
    vmax: float = 60.0,
) -> list[QCPanel]:
    """The panels of the QC figure, computed (see :func:`render_qc` for the parameters).

    The grid is reoriented to RAS (``affine``, identity when None) and cropped to the
    intracranial volume (else the fitted voxels); failed voxels outside ``icv`` (its
    skull-and-background margin) are drawn as background.
    """
    from nibabel.orientations import apply_orientation

    transform, sizes = _to_ras(np.eye(4) if affine is None else affine, r2star.shape)

    def ras(array: NDArray) -> NDArray:
        return apply_orientation(np.asarray(array), transform)

    values = ras(r2star)
    masks = {name: ras(mask).astype(bool) for name, mask in outlines.items()}
    shown_failed = None if failed is None else np.asarray(failed, dtype=bool)
    if shown_failed is not None and icv is not None:
        shown_failed = shown_failed & np.asarray(icv, dtype=bool)
    shown_failed = None if shown_failed is None else ras(shown_failed)
    box = _crop(ras(icv).astype(bool) if icv is not None else np.isfinite(values))
    panels = []
    for view in choose_slices(masks, values.shape):
        a = view.axis
        kept = [b for b in range(3) if b != a]
        cut = _cut(values, a, view.index, box)
        rgba = qc_rgba(
            cut,
            failed=None if shown_failed is None else _cut(shown_failed, a, view.index, box),
            vmax=vmax,
        )
        cuts = {name: _cut(m, a, view.index, box) for name, m in masks.items()}
        rows, cols = cut.shape
        extent = (0.0, cols * sizes[kept[0]], 0.0, rows * sizes[kept[1]])
        panels.append(QCPanel(view, rgba, {k: v for k, v in cuts.items() if v.any()}, extent))
    return panels


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
    """One slice: the RGBA image, black-edged outlines, its title and edge letters."""
    from matplotlib import patheffects

    edge = [patheffects.withStroke(linewidth=3.0, foreground="black")]
    ax.imshow(panel.rgba, origin="lower", extent=panel.extent, interpolation="nearest")
    line = {"levels": [0.5], "linewidths": 1.4, "extent": panel.extent, "origin": "lower"}
    for name, mask in panel.outlines.items():  # 4x nearest upsampling: outlines hug voxels
        fine = mask.repeat(4, axis=0).repeat(4, axis=1).astype(float)
        ax.contour(fine, colors=[colours[name]], **line).set(path_effects=edge)
    text = {"transform": ax.transAxes, "fontsize": 10, "color": "#ffe119", "path_effects": edge}
    for letter, (x, y, ha, va) in zip(_EDGES[panel.view.axis], _EDGE_PLACES, strict=True):
        ax.text(x, y, letter, ha=ha, va=va, **text)
    ax.set_title(f"{panel.view.plane} {panel.view.index}: {panel.view.label}", fontsize=10)
    ax.axis("off")


def qc_figure(
    r2star: NDArray[np.float64],
    outlines: Mapping[str, NDArray[np.bool_]],
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
    outlines: Mapping[str, NDArray[np.bool_]],
    *,
    title: str,
    numbers: QCNumbers | None = None,
    affine: NDArray[np.float64] | None = None,
    failed: NDArray[np.bool_] | None = None,
    icv: NDArray[np.bool_] | None = None,
    vmax: float = 60.0,
) -> Figure:
    """R2* in six slices through the deep grey-matter nuclei with their outlines (Agg figure;
    text of 9 pt or more, 1100 x 860 pixels at 100 dpi).

    Parameters
    ----------
    r2star : numpy.ndarray, shape (X, Y, Z)
        R2* map in 1/s; NaN where not fitted or failed.
    outlines : mapping
        ``region -> bool mask`` on the same grid (the :data:`QC_VIEWS` structures choose the
        slices; every structure is outlined).
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
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = qc_panels(r2star, outlines, affine=affine, failed=failed, icv=icv, vmax=vmax)
    colours = {name: OUTLINE_COLOURS.get(name, "#ffffff") for name in outlines}
    fig = Figure(figsize=(11.0, 8.6), dpi=100)  # a fixed layout: constrained costs 0.7 s
    fig.text(0.01, 0.99, title, fontsize=12, fontweight="bold", va="top")
    lines = qc_text(numbers) if numbers is not None else []
    fig.text(0.01, 0.962, "\n".join(lines), fontsize=10, va="top", linespacing=1.4)
    grid = fig.add_gridspec(
        2, 3, left=0.01, right=0.91, bottom=0.075, top=0.88, wspace=0.04, hspace=0.1
    )
    axes = [fig.add_subplot(grid[i // 3, i % 3]) for i in range(len(panels))]
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, colours)
    handles = [
        Line2D([], [], color=colours[n], linewidth=2.5, label=n.replace("_", " "))
        for n in outlines
    ]
    handles.append(Patch(facecolor=NAN_COLOUR, edgecolor="black", label="failed fit (NaN)"))
    fig.legend(
        handles=handles, loc="lower center", bbox_to_anchor=(0.46, 0.0), ncol=4, fontsize=10,
        frameon=False,
    )  # fmt: skip
    shown = ScalarMappable(Normalize(0.0, vmax), cmap="gray")
    bar = fig.colorbar(shown, cax=fig.add_axes((0.93, 0.3, 0.015, 0.4)), extend="max")
    bar.set_label("R2* (1/s)", fontsize=10)
    bar.ax.tick_params(labelsize=9)
    return fig


def qc_page(png: str | Path, path: str | Path, *, title: str, numbers: QCNumbers) -> Path:
    """A self-contained HTML page: the QC PNG (embedded) and a table of ``numbers``."""
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
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}}th{{text-align:left;padding-right:2em}}
td{{text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table>
{table}
</table>
<p><img src="data:image/png;base64,{image}" alt="R2* slices with structure outlines"></p>
</body></html>
"""
    atomic_write_bytes(path, page.encode("utf-8"))
    return Path(path)
