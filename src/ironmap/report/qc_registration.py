"""QC of a registered segmentation: the before/after figure and its HTML section on the
participant's QC page (:func:`registration_figure`, :func:`registration_html`)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..io import atomic_write_bytes
from .qc import _to_ras

if TYPE_CHECKING:
    pass


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
