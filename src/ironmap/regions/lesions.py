"""Lesions one by one: the rows of ``sub-<label>_lesions.tsv``.

A lesion is a 26-connected component of the lesion mask on its own grid
(:func:`lesion_components`: two lesions a millimetre apart stay two on a coarser R2* grid),
carried to the R2* grid on its own; every R2* voxel goes to the lesion covering most of it, and
volume and centroid are measured on the mask's grid. (Without the mask's grid, a lesion is a
component of the R2* voxels the mask touches at all, its volume the sum of their lesion
fractions times the voxel volume.) A lesion's R2* voxels are those of the pooled ``lesions``
row of ``regions.tsv`` (lesion fraction >= ``--min-fraction``) it owns, so every pooled voxel
belongs to exactly one lesion and the rows add up to the pooled row (``n_voxels``;
``r2star_mean`` weighted by ``n_voxels``). A lesion is listed when
it has at least :data:`MIN_LESION_VOXELS` such voxels. Per lesion:

- **core**: its R2* voxels eroded by :data:`RIM_VOXELS` voxel (6-connected cross: one voxel of
  distance); **rim**: the R2* voxels less the core, along the lesion's edge inside it (all of
  them when nothing is left after erosion: ``n_core`` 0, core statistics NaN);
- **shell**: the voxels within :data:`SHELL_VOXELS` voxels outside the lesion, not touched by
  any lesion, with a finite R2* (and inside ``tissue`` when given, e.g. white matter);
- the participant's NAWM median R2* as the reference;
- with a field map (phase echoes): the median *local* field (Hz) of rim and core, the field less
  its Gaussian-smoothed version (SD :data:`LOCAL_FIELD_SD_MM`), which removes the smooth
  background field (an approximation for QC and ranking, not a susceptibility map);
- with a lateral-ventricle mask: ``ventricle_distance_mm``, the smallest distance (mm, between
  voxel centres of the R2* grid, voxel sizes applied) from any voxel the lesion touches to a
  ventricle voxel (0 when they overlap, one voxel size when adjacent), and ``location``:
  ``periventricular`` within :data:`PERIVENTRICULAR_MM`, else ``deep_white_matter``.

A paramagnetic rim lesion has a rim brighter than its core on R2* and a positive local field
in the rim; ``r2star_rim_core_diff`` (1/s) is the rim-core contrast.

Paramagnetic rim lesions are scored from susceptibility in :mod:`.prl` (the ``chi_*`` and
``prl_*`` columns, :func:`~.prl.prl_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError
from .prl import (
    CENTRAL_VEIN_MM,
    CENTRAL_VEIN_PPM,
    PRL_BAND_IN_VOXELS,
    PRL_CHI_PER_R2STAR,
    PRL_COLUMNS,
    PRL_SCORE_PPM,
    PRL_SECTORS,
    PRL_SHELL_MM,
    _median,
    prl_scores,
)
from .resample import label_fractions

__all__ = [
    "CENTRAL_VEIN_MM",
    "CENTRAL_VEIN_PPM",
    "LESION_COLUMNS",
    "LOCAL_FIELD_SD_MM",
    "LOCATIONS",
    "MIN_LESION_VOXELS",
    "PERIVENTRICULAR_MM",
    "PRL_BAND_IN_VOXELS",
    "PRL_CHI_PER_R2STAR",
    "PRL_COLUMNS",
    "PRL_SCORE_PPM",
    "PRL_SECTORS",
    "PRL_SHELL_MM",
    "RIM_VOXELS",
    "SHELL_VOXELS",
    "LesionComponents",
    "lesion_components",
    "lesion_table",
    "local_field",
    "prl_scores",
]

#: Smallest lesion listed: R2* voxels (lesion fraction >= min_fraction) inside it.
MIN_LESION_VOXELS = 1
#: Thickness (voxels) of the rim inside the lesion.
RIM_VOXELS = 1
#: Thickness (voxels) of the shell outside the lesion.
SHELL_VOXELS = 2
#: SD (mm) of the Gaussian whose smoothing of the field map is removed to get the local field.
LOCAL_FIELD_SD_MM = 6.0
#: A lesion is periventricular when a voxel it touches lies within this distance (mm, voxel
#: centre to voxel centre on the R2* grid) of a lateral-ventricle voxel. The MAGNIMS/McDonald
#: criteria call a lesion periventricular when it touches the lateral ventricle with no white
#: matter in between (Filippi et al., Lancet Neurol 2016; Thompson et al., Lancet Neurol 2018).
#: On a 2-3 mm R2* grid, a lesion touching the ventricle on the mask's grid shares a voxel with
#: it (distance 0) or lies in the voxel next to it (one voxel, 2-3 mm): 3 mm allows that one
#: voxel of partial volume and no more (two voxels of 2 mm, 4 mm, are deep white matter).
PERIVENTRICULAR_MM = 3.0
#: Values of the ``location`` column (``n/a`` without a ventricle mask).
LOCATIONS = ("periventricular", "deep_white_matter")
_COMPONENTS = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
_CROSS = ndimage.generate_binary_structure(3, 1)

#: Columns of ``sub-<label>_lesions.tsv``, in order (documented in io/_table_columns.py).
LESION_COLUMNS = (
    "participant_id",
    "lesion_id",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "n_voxels",
    "volume_ml",
    "r2star_median",
    "r2star_mean",
    "n_core",
    "r2star_core_median",
    "n_rim",
    "r2star_rim_median",
    "r2star_rim_core_diff",
    "n_shell",
    "r2star_shell_median",
    "r2star_nawm_median",
    "field_core_hz",
    "field_rim_hz",
    "field_rim_core_diff_hz",
    "ventricle_distance_mm",
    "location",
    *PRL_COLUMNS,
)


def local_field(
    field_hz: NDArray[np.floating], voxel_mm: NDArray[np.float64] | tuple[float, ...]
) -> NDArray[np.float64]:
    """The field less its smooth background: ``f - G * f`` (normalised over finite voxels).

    Parameters
    ----------
    field_hz : numpy.ndarray, shape (X, Y, Z)
        Off-resonance (Hz); NaN where unknown.
    voxel_mm : sequence of 3 float
        Voxel size (mm), for the Gaussian SD :data:`LOCAL_FIELD_SD_MM` in voxels.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Local field (Hz), NaN where ``field_hz`` is.
    """
    field = np.asarray(field_hz, dtype=np.float64)
    finite = np.isfinite(field)
    sd = [LOCAL_FIELD_SD_MM / float(v) for v in voxel_mm]
    weight = ndimage.gaussian_filter(finite.astype(np.float64), sd, mode="constant")
    smooth = ndimage.gaussian_filter(np.where(finite, field, 0.0), sd, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, field - smooth / weight, np.nan)


@dataclass(frozen=True)
class LesionComponents:
    """The lesions of a lesion mask, found on its own grid and carried to the R2* grid.

    Attributes
    ----------
    owner : numpy.ndarray of int32, shape (X, Y, Z)
        On the R2* grid: the lesion (1..n) covering most of each voxel, 0 where none does.
    volume_ml : numpy.ndarray, shape (n,)
        Each lesion's volume on the mask's own grid (mL).
    centroid_mm : numpy.ndarray, shape (n, 3)
        Each lesion's centroid on the mask's own grid, scanner RAS (mm).
    """

    owner: NDArray[np.int32]
    volume_ml: NDArray[np.float64]
    centroid_mm: NDArray[np.float64]


def lesion_components(
    mask: NDArray,
    mask_affine: NDArray[np.float64],
    shape: tuple[int, int, int],
    affine: NDArray[np.float64],
    *,
    source_name: str = "lesion mask",
) -> LesionComponents:
    """Split a lesion mask into lesions on its own grid and carry each to the R2* grid.

    Lesions are the 26-connected components of ``mask != 0`` at the mask's resolution (two
    lesions a voxel apart on a coarse R2* grid stay two). Each is transferred on its own
    (:func:`~.resample.label_fractions` in its bounding box), and every R2* voxel goes to the
    lesion that covers most of it.

    Parameters
    ----------
    mask : numpy.ndarray, shape (I, J, K)
        Lesion mask (non-zero = lesion) on its own grid.
    mask_affine, affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner mm of the mask's and of the R2* grid.
    shape : tuple of 3 int
        Shape of the R2* grid.
    source_name : str, optional
        Named in errors.
    """
    labels, n = ndimage.label(
        np.nan_to_num(np.asarray(mask, dtype=np.float64)) != 0, structure=_COMPONENTS
    )
    owner = np.zeros(shape, dtype=np.int32)
    best = np.zeros(shape, dtype=np.float32)
    native_ml = float(abs(np.linalg.det(mask_affine[:3, :3]))) / 1000.0
    to_target = np.linalg.inv(affine) @ mask_affine
    volumes, centroids = np.zeros(n), np.zeros((n, 3))
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        lesion = labels[box] == index
        start = np.array([s.start for s in box], dtype=np.float64)
        volumes[index - 1] = lesion.sum() * native_ml
        centroids[index - 1] = (
            mask_affine[:3, :3] @ (np.argwhere(lesion).mean(0) + start) + (mask_affine[:3, 3])
        )
        # the box's corners on the R2* grid, one voxel of margin
        corners = np.array(np.meshgrid(*[[s.start - 1, s.stop] for s in box], indexing="ij"))
        ijk = to_target[:3, :3] @ corners.reshape(3, -1) + to_target[:3, 3:4]
        low = np.maximum(np.floor(ijk.min(axis=1)).astype(int) - 1, 0)
        high = np.minimum(np.ceil(ijk.max(axis=1)).astype(int) + 2, shape)
        if np.any(high <= low):
            continue  # outside the R2* image
        shift = np.eye(4)
        shift[:3, 3] = start
        target = affine.copy()
        target[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
        window = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        try:
            fraction = label_fractions(
                lesion.astype(np.uint8),
                mask_affine @ shift,
                tuple(high - low),
                target,
                {"lesion": (1,)},
                source_name=source_name,
            )["lesion"]
        except InputError:
            continue
        better = fraction > best[window]
        owner[window][better] = index
        best[window][better] = fraction[better]
    return LesionComponents(owner=owner, volume_ml=volumes, centroid_mm=centroids)


def lesion_table(
    lesion_fraction: NDArray[np.floating],
    r2star: NDArray[np.floating],
    affine: NDArray[np.float64],
    *,
    participant_id: str,
    min_fraction: float,
    nawm_median: float = float("nan"),
    tissue: NDArray[np.bool_] | None = None,
    field_hz: NDArray[np.floating] | None = None,
    components: LesionComponents | None = None,
    min_voxels: int = MIN_LESION_VOXELS,
    ventricles: NDArray[np.bool_] | None = None,
    chi_ppm: NDArray[np.floating] | None = None,
) -> pd.DataFrame:
    """One row per lesion (columns :data:`LESION_COLUMNS`; see the module docstring).

    Parameters
    ----------
    lesion_fraction : numpy.ndarray, shape (X, Y, Z)
        Share of each R2* voxel inside the lesion mask, in [0, 1].
    r2star : numpy.ndarray, shape (X, Y, Z)
        R2* (1/s); NaN where not fitted.
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner (RAS) mm of the R2* grid.
    participant_id : str
    min_fraction : float
        A voxel's R2* counts for a lesion at this lesion fraction or more (``--min-fraction``,
        as for the pooled row).
    nawm_median : float, optional
        The participant's NAWM median R2* (1/s), copied to every row as the reference.
    tissue : numpy.ndarray of bool, shape (X, Y, Z), optional
        Where the outside shell may lie (e.g. white matter); default anywhere.
    field_hz : numpy.ndarray, shape (X, Y, Z), optional
        Field map (Hz) from the phase echoes; its local part gives the field columns (NaN
        without it).
    components : LesionComponents, optional
        The lesions found on the lesion mask's own grid (:func:`lesion_components`): each R2*
        voxel belongs to the lesion covering most of it, and volumes and centroids are those
        of the mask's grid. Default: components of the R2* voxels the mask touches, volumes
        from the lesion fractions.
    min_voxels : int, optional
        Smallest lesion listed (R2* voxels).
    ventricles : numpy.ndarray of bool, shape (X, Y, Z), optional
        The lateral ventricles on the R2* grid (e.g. their label fraction >= 0.5). Gives
        ``ventricle_distance_mm`` (mm, voxel centres, from the lesion's nearest voxel: every
        voxel the lesion touches, any lesion fraction) and ``location`` (``periventricular``
        within :data:`PERIVENTRICULAR_MM`, else ``deep_white_matter``); both NaN without it
        or when it holds no voxel.
    chi_ppm : numpy.ndarray, shape (X, Y, Z), optional
        Susceptibility map (ppm) on the R2* grid, NaN outside its mask: the chi and PRL columns
        (:func:`prl_scores`, band and shell in ``tissue``); NaN without it.

    Returns
    -------
    pandas.DataFrame
        Lesions in order of decreasing volume, ``lesion_id`` 1, 2, ...; no rows (but the
        columns) without lesions. Centroids (fraction-weighted) in scanner mm, volumes in mL.
    """
    fraction = np.nan_to_num(np.asarray(lesion_fraction, dtype=np.float64))
    r2star = np.asarray(r2star, dtype=np.float64)
    touched = fraction > 0
    pooled = fraction >= min_fraction
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    if components is not None:
        labels = np.where(touched, components.owner, 0)
    else:
        labels, _ = ndimage.label(touched, structure=_COMPONENTS)
    allowed = np.isfinite(r2star) & ~touched
    if tissue is not None:
        allowed &= np.asarray(tissue, dtype=bool)
    local = None if field_hz is None else local_field(field_hz, voxel_mm)
    distance = None
    if ventricles is not None and np.shape(ventricles) != r2star.shape:
        raise InputError(
            f"ventricle mask shape {np.shape(ventricles)} differs from the R2* map "
            f"{r2star.shape}; give the lateral ventricles on the R2* grid"
        )
    if ventricles is not None and np.asarray(ventricles).any():
        # one transform for every lesion: distance (mm) of each voxel centre to the nearest
        # ventricle voxel centre
        distance = ndimage.distance_transform_edt(
            ~np.asarray(ventricles, dtype=bool), sampling=voxel_mm
        )
    prl = {}
    if chi_ppm is not None:
        if np.shape(chi_ppm) != r2star.shape:
            raise InputError(
                f"chi map shape {np.shape(chi_ppm)} differs from the R2* map {r2star.shape}; "
                "give the susceptibility on the R2* grid"
            )
        prl = prl_scores(chi_ppm, fraction, labels, affine, tissue=tissue, r2star=r2star)
    margin = SHELL_VOXELS + 1
    rows = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        pad = tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, n))
            for s, n in zip(box, touched.shape, strict=True)
        )
        extent = labels[pad] == index
        lesion = extent & pooled[pad]
        n_voxels = int(lesion.sum())
        if n_voxels < min_voxels:
            continue
        weights = fraction[pad][extent]
        core = ndimage.binary_erosion(lesion, structure=_CROSS, iterations=RIM_VOXELS)
        rim = lesion & ~core
        grown = ndimage.binary_dilation(extent, structure=_CROSS, iterations=SHELL_VOXELS)
        shell = grown & ~extent & allowed[pad]
        values = r2star[pad]
        if components is not None:
            centre = components.centroid_mm[index - 1]
            volume = float(components.volume_ml[index - 1])
        else:
            ijk = (np.argwhere(extent) * weights[:, None]).sum(axis=0) / weights.sum()
            centre = affine[:3, :3] @ (ijk + [s.start for s in pad]) + affine[:3, 3]
            volume = float(weights.sum()) * voxel_ml
        core_median, rim_median = _median(values[core]), _median(values[rim])
        inside = values[lesion]
        row = {
            "participant_id": participant_id,
            "centroid_x_mm": float(centre[0]),
            "centroid_y_mm": float(centre[1]),
            "centroid_z_mm": float(centre[2]),
            "n_voxels": n_voxels,
            "volume_ml": volume,
            "r2star_median": _median(inside),
            "r2star_mean": float(inside[np.isfinite(inside)].mean())
            if np.isfinite(inside).any()
            else float("nan"),
            "n_core": int(core.sum()),
            "r2star_core_median": core_median,
            "n_rim": int(rim.sum()),
            "r2star_rim_median": rim_median,
            "r2star_rim_core_diff": rim_median - core_median,
            "n_shell": int(shell.sum()),
            "r2star_shell_median": _median(values[shell]),
            "r2star_nawm_median": float(nawm_median),
            "field_core_hz": float("nan"),
            "field_rim_hz": float("nan"),
            "field_rim_core_diff_hz": float("nan"),
            "ventricle_distance_mm": float("nan"),
            "location": float("nan"),
            **prl.get(index, dict.fromkeys(PRL_COLUMNS, float("nan"))),
        }
        if local is not None:
            part = local[pad]
            row["field_core_hz"] = _median(part[core])
            row["field_rim_hz"] = _median(part[rim])
            row["field_rim_core_diff_hz"] = row["field_rim_hz"] - row["field_core_hz"]
        if distance is not None:
            nearest = float(distance[pad][extent].min())
            row["ventricle_distance_mm"] = nearest
            row["location"] = LOCATIONS[0] if nearest <= PERIVENTRICULAR_MM else LOCATIONS[1]
        rows.append(row)
    rows.sort(key=lambda r: (-r["volume_ml"], r["centroid_x_mm"], r["centroid_y_mm"]))
    for lesion_id, row in enumerate(rows, start=1):
        row["lesion_id"] = lesion_id
    return pd.DataFrame(rows, columns=list(LESION_COLUMNS))
