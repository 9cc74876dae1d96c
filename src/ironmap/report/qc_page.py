"""The participant's QC figure and page: the text, the drawn panels (:func:`qc_figure`,
:func:`render_qc`) and the HTML page with its voxel counts (:func:`qc_page`,
:func:`voxel_counts`); the panels themselves are cut in :mod:`.qc`."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
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

from .qc import (
    _EDGE_PLACES,
    _EDGES,
    _SIGMA_SOURCES,
    INSET_ZOOM,
    LESION_COLOUR,
    NAN_COLOUR,
    OUTLINE_COLOURS,
    OUTLINE_LEVEL,
    QCNumbers,
    QCPanel,
    qc_panels,
)

__all__ = ["qc_figure", "qc_page", "qc_text", "render_qc", "voxel_counts"]


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
    (e.g. :func:`~.qc_registration.registration_html`)."""
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
