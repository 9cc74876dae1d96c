"""QC of paramagnetic rim lesion candidates: lesion-centred susceptibility and local-field
patches (:func:`prl_montage`) and their section on the participant's QC page
(:func:`prl_montage_html`)."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .qc import LESION_COLOUR, _to_ras

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
