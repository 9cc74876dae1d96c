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

**Paramagnetic rim lesions from susceptibility** (with a chi map, :func:`prl_scores`; NAIMS
consensus, Bagnato et al., Brain 2024): lesion masks drawn on FLAIR are a millimetre too large
or too small, and the rim (0.5-1.5 mm of iron-laden microglia) lies in the edge voxels the
``--min-fraction`` rule leaves out, so the chi columns use a **band that straddles the mask's
edge**: :data:`PRL_BAND_IN_VOXELS` layers of voxels inside the 50 % boundary (lesion fraction
>= 0.5; a layer is one voxel, the largest voxel dimension, of distance to the nearest voxel
outside) and the lesion's partial-volume voxels outside it (fraction > 0). The **shell** is the
white matter (``tissue``) more than one voxel outside, out to :data:`PRL_SHELL_MM`: the local
NAWM level ``N``. The **core** is the lesion deeper than the band (``chi_core_median``; often
empty). **Partial volume** is modelled voxel by voxel: without a rim a band voxel of lesion
fraction ``f`` holds ``f L + (1 - f) N``, with the lesion level ``L = N +`` the participant's
typical lesion-minus-NAWM chi (median over its lesions of the lesion's median less its shell's:
one offset for all its lesions, so that neither a rim nor a vein inside a small lesion raises its
own reference); the rim is the **excess** over that. R2* is supporting evidence: the same excess
computed on R2* (1/s) is added as :data:`PRL_CHI_PER_R2STAR` ppm per 1/s (the iron relation of
chi and R2*). **Vessels**, voxels :data:`CENTRAL_VEIN_PPM` or more above the higher of ``L`` and
``N`` and their face neighbours, are left out. The band is cut into :data:`PRL_SECTORS` sectors
by the direction from the lesion's centroid (mm); a sector's excess is the mean over its voxels.
``prl_score`` is the **median sector excess** (ppm): a rim covering more than half the surface
raises it, a vein crossing one or two sectors (a central vein, a vein beside the lesion) does
not. ``prl_rim_coverage`` is the share of sectors with an excess of at least
:data:`PRL_SCORE_PPM`, ``prl_candidate`` is ``prl_score >= PRL_SCORE_PPM``, and
``prl_central_vein`` flags a vessel voxel within :data:`CENTRAL_VEIN_MM` of the centroid: the
central vein sign, informative, not used by the score. Every lesion with a band and a NAWM shell
is scored, with or without a core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError
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
#: The PRL band: this many layers of voxels inside the lesion's 50 % edge (a layer is one
#: voxel -- the largest voxel dimension -- of distance to the nearest voxel outside), with the
#: lesion's partial-volume voxels outside the edge.
PRL_BAND_IN_VOXELS = 2
#: The NAWM shell of the PRL score: white matter more than one voxel outside the lesion, out to
#: this distance (mm).
PRL_SHELL_MM = 8.0
#: R2* as supporting evidence: a band excess of 1 1/s counts as this much chi (ppm s), the
#: ratio of iron-driven chi to iron-driven R2* in deep grey matter at 3 T (pallidum about
#: 0.18 ppm over 25 1/s above the iron-free 15 1/s; Langkammer et al. 2010 and 2012), so that
#: an iron rim's R2* and chi speak in one unit.
PRL_CHI_PER_R2STAR = 0.0072
#: Directions (sectors) the band is cut into: the 6 faces and 8 corners of a cube.
PRL_SECTORS = 14
#: A band sector is rim-positive, and a lesion a PRL candidate (``prl_score``, the median sector
#: excess), at this excess over partial-volume lesion and NAWM (ppm): specificity 0.92-0.94 and
#: sensitivity 0.80-0.84 in ``benchmarks/lesions.py --prl`` (22 patients, seeds 7 and 11).
PRL_SCORE_PPM = 0.01
#: Vessel (central vein, vein beside): a voxel this much above the lesion and NAWM levels (ppm).
CENTRAL_VEIN_PPM = 0.07
#: A vessel voxel of the lesion within this distance (mm) of its centroid is a central vein.
CENTRAL_VEIN_MM = 3.0
_SECTOR_DIRECTIONS = np.array(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    + [[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)],
    dtype=np.float64,
)
_SECTOR_DIRECTIONS /= np.linalg.norm(_SECTOR_DIRECTIONS, axis=1, keepdims=True)

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
    "chi_core_median",
    "chi_rim_median",
    "chi_shell_median",
    "prl_rim_coverage",
    "prl_central_vein",
    "prl_score",
    "prl_candidate",
)
#: The susceptibility columns of :data:`LESION_COLUMNS` (NaN without a chi map).
PRL_COLUMNS = LESION_COLUMNS[LESION_COLUMNS.index("chi_core_median") :]


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


def _median(values: NDArray[np.floating]) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def prl_scores(
    chi_ppm: NDArray[np.floating],
    lesion_fraction: NDArray[np.floating],
    labels: NDArray[np.integer],
    affine: NDArray[np.float64],
    *,
    tissue: NDArray[np.bool_] | None = None,
    r2star: NDArray[np.floating] | None = None,
) -> dict[int, dict]:
    """Susceptibility columns of every lesion: core, rim band, shell and the PRL score.

    See the module docstring for the band, shell, partial-volume reference and sectors.

    Parameters
    ----------
    chi_ppm : numpy.ndarray, shape (X, Y, Z)
        Susceptibility (ppm, any reference); NaN where not defined (outside the QSM mask).
    lesion_fraction : numpy.ndarray, shape (X, Y, Z)
        Share of each voxel inside the lesion mask, in [0, 1].
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Lesion (1..n) owning each voxel the mask touches, 0 elsewhere.
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner mm.
    tissue : numpy.ndarray of bool, shape (X, Y, Z), optional
        Where the band outside the lesion and the NAWM shell may lie (white matter); default
        anywhere.
    r2star : numpy.ndarray, shape (X, Y, Z), optional
        R2* (1/s): supporting evidence. Its band excess (the same partial-volume model) counts
        as :data:`PRL_CHI_PER_R2STAR` ppm per 1/s in the score.

    Returns
    -------
    dict
        Lesion label -> ``{column: value}`` for the columns of :data:`PRL_COLUMNS` (ppm;
        coverage a share in [0, 1]; ``prl_central_vein`` and ``prl_candidate`` bool). NaN
        scores (and ``prl_candidate`` False) where the lesion has no band or no NAWM shell with
        a finite chi.
    """
    chi_all = np.asarray(chi_ppm, dtype=np.float64)
    fraction_all = np.clip(np.nan_to_num(np.asarray(lesion_fraction, dtype=np.float64)), 0, 1)
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    step = float(voxel_mm.max())  # one layer of voxels (mm)
    margin = int(np.ceil(PRL_SHELL_MM / voxel_mm.min())) + 1
    allowed_all = np.ones(chi_all.shape, bool) if tissue is None else np.asarray(tissue, bool)
    tol = 1e-6
    parts: dict[int, dict] = {}
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        pad = tuple(
            slice(max(s.start - margin, 0), min(s.stop + margin, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        lab, frac, chi = labels[pad], fraction_all[pad], chi_all[pad]
        own = lab == index
        body = own & (frac >= 0.5)
        if not body.any():  # a lesion smaller than half a voxel everywhere: its fullest voxels
            body = own & (frac >= frac[own].max())
        finite = np.isfinite(chi)
        d_in = ndimage.distance_transform_edt(body, sampling=voxel_mm) / step
        d_out = ndimage.distance_transform_edt(~body, sampling=voxel_mm) / step
        inside = body & finite
        # the band straddles the 50 % edge: layers inside it and the lesion's partial voxels
        band = inside & (d_in <= PRL_BAND_IN_VOXELS + tol)
        band |= own & ~body & finite & (frac > 0)
        outside = ~body & ~((lab > 0) & ~own) & allowed_all[pad] & finite
        shell = outside & ~own & (d_out > 1 + tol) & (d_out * step <= PRL_SHELL_MM)
        core = inside & (d_in > PRL_BAND_IN_VOXELS + tol)
        ijk = np.argwhere(own).astype(np.float64)
        r2 = None if r2star is None else np.asarray(r2star, dtype=np.float64)[pad]
        if r2 is not None:
            parts.setdefault("_r2", {})[index] = {
                "lesion": _median(r2[inside]),
                "nawm": _median(r2[shell]),
            }
        parts[index] = {
            "r2": r2,
            "chi": chi,
            "frac": frac,
            "band": band,
            "body": inside,
            "centre": (ijk * frac[own][:, None]).sum(axis=0) / frac[own].sum(),
            "core": _median(chi[core]),
            "lesion": _median(chi[inside]),
            "nawm": _median(chi[shell]),
        }
    # The lesion level: the NAWM's plus the participant's typical lesion-minus-NAWM chi (median
    # over its lesions of the lesion's median less its shell's; 0 without any): one level for
    # every lesion, so that neither a rim nor a vein inside a small lesion raises its own.
    r2_levels = parts.pop("_r2", {})
    offset = _typical_offset(parts.values())
    r2_offset = _typical_offset(r2_levels.values())
    out: dict[int, dict] = {}
    for index, part in parts.items():
        nawm, chi, band = part["nawm"], part["chi"], part["band"]
        level = nawm + offset
        row = {
            "chi_core_median": part["core"],
            "chi_rim_median": _median(chi[band]),
            "chi_shell_median": nawm,
            "prl_rim_coverage": float("nan"),
            "prl_central_vein": False,
            "prl_score": float("nan"),
            "prl_candidate": False,
        }
        out[index] = row
        if not band.any() or not np.isfinite(nawm):
            continue
        # Partial volume of lesion and NAWM alone: f L + (1 - f) N; the rim is the excess.
        excess = chi - (part["frac"] * level + (1.0 - part["frac"]) * nawm)
        if part["r2"] is not None and np.isfinite(r2_levels[index]["nawm"]):
            # R2* as supporting evidence, its excess in ppm by the iron relation
            r2_nawm = r2_levels[index]["nawm"]
            r2_level = r2_nawm + r2_offset
            r2_excess = part["r2"] - (part["frac"] * r2_level + (1.0 - part["frac"]) * r2_nawm)
            excess = excess + PRL_CHI_PER_R2STAR * np.nan_to_num(r2_excess)
        # Vessels: voxels CENTRAL_VEIN_PPM or more above the higher level, with their face
        # neighbours (a vein's partial volume), are left out of the band.
        vessel = np.isfinite(chi) & (chi - max(level, nawm) >= CENTRAL_VEIN_PPM)
        kept = band & ~ndimage.binary_dilation(vessel, structure=_CROSS)
        kept = kept if kept.any() else band
        offset_mm = (np.argwhere(kept) - part["centre"]) @ affine[:3, :3].T
        norm = np.maximum(np.linalg.norm(offset_mm, axis=1, keepdims=True), 1e-9)
        sector = np.argmax((offset_mm / norm) @ _SECTOR_DIRECTIONS.T, axis=1)
        counts = np.bincount(sector, minlength=PRL_SECTORS)
        sums = np.bincount(sector, weights=excess[kept], minlength=PRL_SECTORS)
        means = sums[counts > 0] / counts[counts > 0]
        score = float(np.median(means))
        body_ijk = np.argwhere(part["body"]).astype(np.float64)
        distance = np.linalg.norm((body_ijk - part["centre"]) @ affine[:3, :3].T, axis=1)
        spike = vessel[part["body"]][distance <= CENTRAL_VEIN_MM]
        row.update(
            {
                "prl_rim_coverage": float(np.mean(means >= PRL_SCORE_PPM)),
                "prl_central_vein": bool(spike.any()),
                "prl_score": score,
                "prl_candidate": bool(score >= PRL_SCORE_PPM),
            }
        )
    return out


def _typical_offset(levels) -> float:
    """Median over lesions of lesion minus NAWM level (0 without any)."""
    offsets = [p["lesion"] - p["nawm"] for p in levels]
    offsets = [x for x in offsets if np.isfinite(x)]
    return float(np.median(offsets)) if offsets else 0.0


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
