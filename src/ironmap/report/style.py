"""The report's look, defined once: group order, the colour-blind-safe palette, fonts, CSS and
how a matplotlib figure becomes an embedded, captioned image and print files.

Figures are drawn at their print size: one (:data:`ONE_COLUMN_IN`, 89 mm) or two
(:data:`PAGE_WIDTH_IN`, 183 mm) journal columns wide, with every text at least
:data:`MIN_FONT_PT` (7 pt) at that size. :func:`export` writes each as SVG, PDF and a
:data:`RENDER_DPI` (300 dpi) PNG; the report embeds that PNG at :data:`DISPLAY_PX_PER_INCH` CSS
pixels per figure inch (a two-column figure is about 1080 px wide, a 7 pt label about 15 px).
"""

from __future__ import annotations

import base64
import html
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

__all__ = [
    "FIGURE_FORMATS",
    "GROUP_ORDER",
    "MARKERS",
    "MIN_FONT_PT",
    "ONE_COLUMN_IN",
    "PAGE_WIDTH_IN",
    "PALETTE",
    "STYLE",
    "embed",
    "export",
    "first_column",
    "labels",
    "new_figure",
    "plotting",
    "pretty_region",
]

#: Groups in the order of every table and figure: controls, MS phenotypes, MS without one, CIS.
GROUP_ORDER = ("HC", "RRMS", "SPMS", "PPMS", "MS", "CIS")

#: Okabe & Ito (2008) colour-blind-safe colours, one per group, for every figure. Assigned so
#: that controls differ most from every patient group and RRMS from the progressive phenotypes
#: also with protanopia and deuteranopia (CIELAB distance >= 50 under the Machado et al. 2009
#: simulation; tests/test_report.py); SPMS and PPMS, closer in colour, differ by marker.
PALETTE = {
    "HC": "#000000",  # black
    "RRMS": "#0072B2",  # blue
    "SPMS": "#D55E00",  # vermillion
    "PPMS": "#E69F00",  # orange
    "MS": "#CC79A7",  # reddish purple: MS without a recorded phenotype
    "CIS": "#009E73",  # bluish green
}
#: A second cue besides colour (greyscale prints, colour vision deficiency).
MARKERS = {"HC": "o", "RRMS": "s", "SPMS": "^", "PPMS": "D", "MS": "P", "CIS": "v"}

#: Journal column widths (mm): one column and two columns (the full text width).
COLUMN_MM = {1: 89.0, 2: 183.0}
#: A one-column figure's width in inches.
ONE_COLUMN_IN = COLUMN_MM[1] / 25.4
#: A two-column (full text width) figure's width in inches: the default of :func:`new_figure`.
PAGE_WIDTH_IN = COLUMN_MM[2] / 25.4
#: CSS pixels per figure inch in the report (183 mm -> 1081 px, within the page's 1240 px).
DISPLAY_PX_PER_INCH = 150
#: Resolution of the PNG files and of the PNG embedded in the report.
RENDER_DPI = 300
#: The smallest text of any figure at print size (points).
MIN_FONT_PT = 7.0
#: The files :func:`export` writes per figure, by extension.
FIGURE_FORMATS = ("svg", "pdf", "png")

_RC = {
    "font.size": 7.5,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7.5,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 4,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.constrained_layout.h_pad": 0.02,
    "figure.constrained_layout.w_pad": 0.02,
    "pdf.fonttype": 42,  # TrueType: text stays text (editable) in the PDF
    "svg.fonttype": "none",  # text as <text>, editable, font sizes in pt
    "svg.hashsalt": "ironmap",  # the same SVG ids every run
}

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1240px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; font-size: 15px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 2.2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.08em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 13.5px; margin: 0.4em 0 0.3em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; }
td, table.grid th { white-space: nowrap; } td.text, td:first-child { white-space: normal; }
.scroll { overflow-x: auto; }
th { background: #f3f3f3; vertical-align: bottom; }
td:first-child, th:first-child { text-align: left; }
p.caption { margin: 1.4em 0 0.2em; font-size: 14px; max-width: 1100px; }
figure { margin: 1em 0 1.5em; } img { max-width: 100%; height: auto; }
figcaption { font-size: 14px; max-width: 1200px; }
.small, .note { color: #555; font-size: 13px; } .flag { color: #b00020; font-weight: bold; }
.sig { font-weight: bold; } td.text, th.text { text-align: left; }
.methods p { max-width: 1100px; } .methods { text-align: justify; }
"""


def labels(frame: pd.DataFrame) -> pd.Series:
    """``HC``, the MS phenotype, or ``MS`` (MS without phenotype) of each row."""
    label = frame["phenotype"].astype(object).where(frame["phenotype"].notna(), "MS")
    return label.where(frame["group"] != "HC", "HC")


def pretty_region(region: str) -> str:
    """``substantia_nigra`` -> ``substantia nigra``; ``nawm`` -> ``NAWM``."""
    special = {"nawm": "NAWM", "lesions_nawm": "lesions - NAWM"}
    return special.get(region, region.replace("_", " "))


@contextmanager
def plotting() -> Iterator[None]:
    """matplotlib (Agg, no display) with the report's fonts: wrap drawing and saving in it."""
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(_RC):
        yield


def new_figure(ncols: int, nrows: int, *, height: float, width: float = PAGE_WIDTH_IN, **kw):
    """A figure of ``width`` x ``height`` per row inches and its axes, flattened."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes.ravel()


def first_column(ax) -> bool:
    """Whether ``ax`` starts a row of panels (where a row's shared y label goes)."""
    spec = ax.get_subplotspec()
    return spec is None or spec.is_first_col()


def _png_width(data: bytes) -> int:
    return struct.unpack(">I", data[16:20])[0]  # IHDR width


def _render(fig, fmt: str) -> bytes:
    """``fig`` as ``fmt`` bytes at its drawn size (PNG at :data:`RENDER_DPI`), no dates."""
    buffer = io.BytesIO()
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    fig.savefig(buffer, format=fmt, dpi=RENDER_DPI, metadata=metadata[fmt])
    return buffer.getvalue()


def export(fig, stem: Path) -> bytes:
    """Write ``stem.svg``, ``stem.pdf`` and ``stem.png`` (:data:`RENDER_DPI`) atomically.

    The files have the figure's drawn size (one or two journal columns wide). Returns the PNG.
    """
    from ..io import atomic_write_bytes

    png = b""
    for fmt in FIGURE_FORMATS:
        data = _render(fig, fmt)
        atomic_write_bytes(Path(stem).with_suffix(f".{fmt}"), data)
        png = data if fmt == "png" else png
    return png


def embed(fig, caption: str, number: int, alt: str, *, png: bytes | None = None) -> str:
    """``<figure>`` with the PNG (data URI) at display size and "Figure N. caption".

    ``png``: the figure already rendered by :func:`export` (else it is rendered here).
    """
    data = png if png is not None else _render(fig, "png")
    width = round(_png_width(data) * DISPLAY_PX_PER_INCH / RENDER_DPI)
    encoded = base64.b64encode(data).decode()
    return (
        f"<figure><img alt='{html.escape(alt, quote=True)}' width='{width}' "
        f"src='data:image/png;base64,{encoded}'><figcaption><b>Figure {number}.</b> {caption}"
        "</figcaption></figure>"
    )
