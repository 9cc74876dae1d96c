"""The report's look, defined once: group order, the colour-blind-safe palette, fonts, CSS and
how a matplotlib figure becomes an embedded, captioned image.

Figures are drawn at the size they are shown: :data:`DISPLAY_PX_PER_INCH` CSS pixels per figure
inch (figure width :data:`PAGE_WIDTH_IN` = the page's text width), rendered at
:data:`RENDER_DPI` for sharp zooming and printing, so a 9.5 pt figure label reads as about 10 pt
at 100 % zoom.
"""

from __future__ import annotations

import base64
import html
import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd

__all__ = [
    "GROUP_ORDER",
    "MARKERS",
    "PAGE_WIDTH_IN",
    "PALETTE",
    "STYLE",
    "embed",
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

#: Text width of the page in figure inches (CSS pixels / :data:`DISPLAY_PX_PER_INCH`).
PAGE_WIDTH_IN = 12.0
DISPLAY_PX_PER_INCH = 100
RENDER_DPI = 150

_RC = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
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


def _png_width(data: bytes) -> int:
    return struct.unpack(">I", data[16:20])[0]  # IHDR width


def embed(fig, caption: str, number: int, alt: str) -> str:
    """``<figure>`` with the PNG (data URI) at display size and "Figure N. caption"."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=RENDER_DPI)
    data = buffer.getvalue()
    width = round(_png_width(data) * DISPLAY_PX_PER_INCH / RENDER_DPI)
    encoded = base64.b64encode(data).decode()
    return (
        f"<figure><img alt='{html.escape(alt, quote=True)}' width='{width}' "
        f"src='data:image/png;base64,{encoded}'><figcaption><b>Figure {number}.</b> {caption}"
        "</figcaption></figure>"
    )
