"""Paramagnetic rim lesions (PRL) scored from susceptibility: the ``chi_*`` and ``prl_*``
columns of ``sub-<label>_lesions.tsv`` (:mod:`.lesions` lists the lesions; this module scores
them).

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

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "CENTRAL_VEIN_MM",
    "CENTRAL_VEIN_PPM",
    "PRL_BAND_IN_VOXELS",
    "PRL_CHI_PER_R2STAR",
    "PRL_COLUMNS",
    "PRL_SCORE_PPM",
    "PRL_SECTORS",
    "PRL_SHELL_MM",
    "prl_scores",
]

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

_CROSS = ndimage.generate_binary_structure(3, 1)

#: The susceptibility columns of ``sub-<label>_lesions.tsv`` (the last columns of
#: :data:`~.lesions.LESION_COLUMNS`; NaN without a chi map).
PRL_COLUMNS = (
    "chi_core_median",
    "chi_rim_median",
    "chi_shell_median",
    "prl_rim_coverage",
    "prl_central_vein",
    "prl_score",
    "prl_candidate",
)


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
