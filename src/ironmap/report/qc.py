"""Per-participant quality-control figure: R2* slices with the deep grey-matter outlines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..io import atomic_write_bytes

__all__ = ["qc_figure"]

_COLOURS = ("#1f77b4", "#2ca02c", "#17becf", "#d62728", "#9467bd", "#ff7f0e", "#e377c2")


def qc_figure(
    r2star: NDArray[np.float64],
    outlines: Mapping[str, NDArray[np.bool_]],
    path: str | Path,
    *,
    title: str,
    vmax: float = 60.0,
    slices: Sequence[int] | None = None,
) -> Path:
    """Axial R2* slices (through the structures) with region outlines, as a PNG.

    Parameters
    ----------
    r2star : numpy.ndarray, shape (X, Y, Z)
        R2* map in 1/s (NaN shown black).
    outlines : mapping
        ``region -> bool mask`` on the same grid.
    path : str or Path
        PNG to write (atomically).
    title : str
    vmax : float, optional
        Upper end of the colour scale (1/s).
    slices : sequence of int, optional
        Axial slices to show (default: the 15th, 50th and 85th percentile of the outlined
        slices).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    union = np.zeros(r2star.shape, dtype=bool)
    for mask in outlines.values():
        union |= mask
    zs = np.flatnonzero(union.any(axis=(0, 1)))
    if slices is not None:
        picks = np.unique(np.clip(np.asarray(slices, dtype=int), 0, r2star.shape[2] - 1))
    elif zs.size:
        picks = np.unique(np.percentile(zs, [15, 50, 85]).round().astype(int))
    else:
        picks = np.array([r2star.shape[2] // 2])
    fig = Figure(figsize=(3.2 * len(picks) + 1.4, 3.6))
    axes = fig.subplots(1, len(picks), squeeze=False)[0]
    shown = None
    for ax, z in zip(axes, picks, strict=True):
        shown = ax.imshow(
            np.rot90(np.nan_to_num(r2star[:, :, z])),
            cmap="inferno",
            vmin=0,
            vmax=vmax,
            interpolation="nearest",
        )
        for colour, mask in zip(_COLOURS * 3, outlines.values(), strict=False):
            if mask[:, :, z].any():
                ax.contour(
                    np.rot90(mask[:, :, z]).astype(float),
                    levels=[0.5],
                    colors=[colour],
                    linewidths=0.8,
                )
        ax.set_title(f"z = {z}", fontsize=9)
        ax.axis("off")
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=colour, label=name)
        for colour, name in zip(_COLOURS * 3, outlines, strict=False)
    ]
    names = list(outlines)
    if handles:
        fig.legend(
            handles, names, loc="lower center", ncol=min(len(names), 7), fontsize=7, frameon=False
        )
    if shown is not None:
        fig.colorbar(shown, ax=list(axes), fraction=0.025, pad=0.01, label="R2* (1/s)")
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
