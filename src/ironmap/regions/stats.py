"""Regional R2* statistics and volumes: the tidy tables of the participant stage.

Columns follow docs/conventions.md: ``regions.tsv`` rows are participant x region x hemisphere with
``r2star_median, r2star_mean, r2star_iqr`` (1/s), ``n_voxels`` (R2* voxels used),
``volume_ml`` (from the segmentation on its own grid), ``n_csf_excluded`` (voxels of the region
left out because their R2* says CSF, :func:`.csf.csf_like`) and, with a susceptibility map, its
statistics over the same voxels (``chi_median, chi_mean, chi_sd`` in ppm, ``chi_n_voxels``).

The partial-volume threshold (``--min-fraction``) is applied in one place, :func:`region_masks`;
the statistics and the QC outlines both use its masks.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from dataclasses import astuple, dataclass, fields

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError, IronmapWarning
from .catalog import HEMISPHERES, MEASURED_ROWS
from .csf import csf_like
from .labels import RegionCodes, label_array

__all__ = [
    "REGION_COLUMNS",
    "VOLUME_COLUMNS",
    "erode",
    "region_groups",
    "region_masks",
    "regional_r2star",
    "volumes",
]

#: A lesion mask above this volume (mL) is refused when there is no brain volume to compare.
MAX_LESION_ML = 2000.0


@dataclass(frozen=True)
class _RegionRow:
    """One row of ``regions.tsv``; the field order is :data:`REGION_COLUMNS`."""

    participant_id: str
    region: str
    hemisphere: str
    r2star_median: float
    r2star_mean: float
    r2star_iqr: float
    n_voxels: int
    volume_ml: float
    n_csf_excluded: int = 0
    chi_median: float = np.nan
    chi_mean: float = np.nan
    chi_sd: float = np.nan
    chi_n_voxels: int = 0


@dataclass(frozen=True)
class _Summary:
    """R2* summary of one set of voxels (NaN and 0 when it has no finite value)."""

    median: float = np.nan
    mean: float = np.nan
    iqr: float = np.nan
    n: int = 0
    sd: float = np.nan


#: Columns of ``regions.tsv``, in order.
REGION_COLUMNS = [f.name for f in fields(_RegionRow)]
#: Columns of ``volumes.tsv`` (``subjects.tsv``), in order.
VOLUME_COLUMNS = [
    "participant_id",
    "icv_ml",
    "brain_ml",
    "cortical_gm_ml",
    "nbv",
    "lesion_volume_ml",
    "lesion_count",
]


def region_groups(codes: RegionCodes) -> dict[str, tuple[int, ...]]:
    """Label codes of every structure measured in ``regions.tsv``, per hemisphere.

    Parameters
    ----------
    codes : RegionCodes
        The segmentation's codes per canonical region (:func:`.labels.region_codes`).

    Returns
    -------
    dict
        ``"source/hemisphere" -> codes`` for every source region of
        :data:`.catalog.MEASURED_ROWS` (the deep grey-matter regions, then ``cerebral_wm`` for
        NAWM) and every hemisphere ``left``, ``right``, ``both``; empty tuples where the
        segmentation lacks the structure.
    """
    sources = dict.fromkeys(row.source for row in MEASURED_ROWS)
    return {
        f"{source}/{hemi}": codes.codes(source, hemi) for source in sources for hemi in HEMISPHERES
    }


def region_masks(
    fractions: Mapping[str, NDArray[np.floating]], *, min_fraction: float
) -> dict[str, NDArray[np.bool_]]:
    """Voxels mostly inside each structure: the one place the partial-volume threshold applies.

    Parameters
    ----------
    fractions : mapping
        ``key -> fraction`` of each R2* voxel covered by the structure, arrays of shape
        (X, Y, Z) in [0, 1] (:func:`.resample.label_fractions`); keys such as
        ``"thalamus/left"``, ``"cerebral_wm/both"`` or ``"lesions"``.
    min_fraction : float
        A voxel belongs to a structure when at least this fraction of it lies inside
        (inclusive); in (0, 1]. The default lives in :data:`ironmap.defaults.MIN_FRACTION`.

    Returns
    -------
    dict
        ``key -> bool array of shape (X, Y, Z)``, ``fraction >= min_fraction``, for every key
        of ``fractions`` in the same order.

    Raises
    ------
    InputError
        If ``min_fraction`` is not in (0, 1].
    """
    if not 0.0 < min_fraction <= 1.0:
        raise InputError(f"min_fraction must be in (0, 1], got {min_fraction}")
    return {key: np.asarray(frac) >= min_fraction for key, frac in fractions.items()}


def erode(
    mask: NDArray[np.bool_], voxel_mm: NDArray[np.float64], radius_mm: float
) -> NDArray[np.bool_]:
    """Binary erosion by a ball of ``radius_mm`` (anisotropic voxels handled).

    Parameters
    ----------
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Voxels to erode; voxels outside the array count as outside the mask.
    voxel_mm : array-like, shape (3,)
        Voxel size along each axis (mm).
    radius_mm : float
        Ball radius (mm); 0 or less returns ``mask`` unchanged. A voxel survives when every
        voxel whose centre lies within ``radius_mm`` of its centre is in ``mask``.

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
    """
    if radius_mm <= 0:
        return mask
    half = np.floor(radius_mm / np.asarray(voxel_mm)).astype(int)
    grid = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    ball = sum((g * v) ** 2 for g, v in zip(grid, voxel_mm, strict=True)) <= radius_mm**2
    return ndimage.binary_erosion(mask, structure=ball)


def _stats(values: NDArray[np.float64]) -> _Summary:
    """Median, mean, IQR (25th to 75th percentile, linear) and count of the finite values."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return _Summary()
    q1, med, q3 = np.percentile(values, [25.0, 50.0, 75.0])
    sd = float(values.std(ddof=1)) if values.size > 1 else np.nan
    return _Summary(float(med), float(values.mean()), float(q3 - q1), int(values.size), sd)


def _row(
    participant_id: str,
    region: str,
    hemisphere: str,
    summary: _Summary,
    volume_ml: float,
    n_csf: int = 0,
    chi: _Summary | None = None,
) -> _RegionRow:
    chi = chi or _Summary()
    return _RegionRow(
        participant_id=participant_id,
        region=region,
        hemisphere=hemisphere,
        r2star_median=summary.median,
        r2star_mean=summary.mean,
        r2star_iqr=summary.iqr,
        n_voxels=summary.n,
        volume_ml=volume_ml,
        n_csf_excluded=n_csf,
        chi_median=chi.median,
        chi_mean=chi.mean,
        chi_sd=chi.sd,
        chi_n_voxels=chi.n,
    )


def regional_r2star(
    r2star: NDArray[np.float64],
    masks: Mapping[str, NDArray[np.bool_]],
    *,
    participant_id: str,
    region_volumes_ml: Mapping[str, float],
    lesion_free: NDArray[np.bool_] | None = None,
    erode_mm: float = 0.0,
    voxel_mm: NDArray[np.float64] | None = None,
    exclude_csf: bool = False,
    csf: NDArray[np.bool_] | None = None,
    unlabelled: Collection[str] = (),
    chi: NDArray[np.float64] | None = None,
) -> pd.DataFrame:
    """R2* statistics of every region x hemisphere of ``regions.tsv``, then ``lesions``.

    Parameters
    ----------
    r2star : numpy.ndarray of float, shape (X, Y, Z)
        R2* map (1/s); non-finite voxels are left out of every statistic.
    masks : mapping
        ``"source/hemisphere" -> bool array of shape (X, Y, Z)`` from :func:`region_masks`, plus
        ``"lesions"`` when there is a lesion mask.
    participant_id : str
        Value of the ``participant_id`` column (``sub-<label>``).
    region_volumes_ml : mapping
        ``"source/hemisphere"`` and ``"lesions"`` -> volume (mL) on the segmentation's own grid
        (:func:`volumes`); NaN where absent.
    lesion_free : numpy.ndarray of bool, shape (X, Y, Z), optional
        True where no part of the voxel lies in a lesion (lesion fraction 0); deep grey matter
        and NAWM use only these voxels. None: no lesion mask, every voxel is lesion-free.
    erode_mm : float, optional
        Radius (mm) of the ball each region (after removing lesions) is eroded by; 0 keeps it.
    voxel_mm : array-like, shape (3,), optional
        R2* voxel size (mm) for the erosion; None means 1 mm isotropic.
    exclude_csf : bool, optional
        Leave out the voxels of each deep grey-matter region and NAWM (after removing lesions,
        before the erosion) whose R2* says CSF (:func:`.csf.csf_like`: below half the region's
        tissue R2*, and their partial-volume neighbours; with ``csf``, also its wall voxels
        below 0.85 x the tissue R2*); a region without such voxels is unchanged. The
        participant stage turns it on (``--csf-exclusion``, default ``on``).
    csf : numpy.ndarray of bool, shape (X, Y, Z), optional
        The segmentation's CSF on the R2* grid (voxels at least half ventricle or CSF by its
        labels), for the wall of :func:`.csf.csf_like`; only with ``exclude_csf``.
    unlabelled : collection of str, optional
        Catalogue regions the segmentation does not label, whose NaN rows the caller has
        already warned about: left out of this function's warning.
    chi : numpy.ndarray of float, shape (X, Y, Z), optional
        Susceptibility map (ppm) on the R2* grid; its statistics (``chi_*``) are taken over the
        very voxels the R2* statistics use (lesions removed, CSF-like voxels by R2* left out,
        eroded) that are finite in both maps. None (no QSM): the ``chi_*`` columns are NaN
        and ``chi_n_voxels`` 0, without a warning.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REGION_COLUMNS`: one row per :data:`.catalog.MEASURED_ROWS` row and
        hemisphere, in order, then ``lesions/both`` (R2* of ``masks["lesions"]``, not eroded).
        ``r2star_*`` in 1/s, ``n_voxels`` the R2* voxels used, ``volume_ml`` from
        ``region_volumes_ml``, ``n_csf_excluded`` the voxels left out as CSF-like (0 with
        ``exclude_csf=False`` and on the ``lesions`` row, which is not examined),
        ``chi_median, chi_mean, chi_sd`` (ppm) and ``chi_n_voxels`` of ``chi``.

    Warns
    -----
    IronmapWarning
        Once, naming every measured region with no usable voxel (a missing mask key, an empty
        mask, or no finite R2* left); those rows are NaN with ``n_voxels`` 0. The ``lesions``
        row is NaN (``volume_ml`` too) without a ``"lesions"`` mask, without a warning.

    Raises
    ------
    InputError
        If a mask or ``lesion_free`` does not have the shape of ``r2star``.
    """
    r2star = np.asarray(r2star)
    for key, mask in (*masks.items(), ("lesion_free", lesion_free), ("csf", csf), ("chi", chi)):
        if mask is not None and np.shape(mask) != r2star.shape:
            raise InputError(
                f"{key}: mask shape {np.shape(mask)} differs from the R2* map {r2star.shape}"
            )
    clean = np.ones(r2star.shape, dtype=bool) if lesion_free is None else np.asarray(lesion_free)
    vox = np.ones(3) if voxel_mm is None else np.asarray(voxel_mm, dtype=float)
    rows: list[_RegionRow] = []
    empty: list[str] = []

    def summaries(voxels: NDArray[np.bool_]) -> tuple[_Summary, _Summary]:
        """R2* and chi of the same voxels: one code path for both maps."""
        if chi is None:
            return _stats(r2star[voxels]), _Summary()
        return _stats(r2star[voxels]), _stats(np.where(np.isfinite(r2star), chi, np.nan)[voxels])

    for measured in MEASURED_ROWS:
        for hemi in measured.hemispheres:
            key = f"{measured.source}/{hemi}"
            mask = masks.get(key)
            summary, chi_summary, n_csf = _Summary(), _Summary(), 0
            if mask is not None and mask.any():
                used = mask & clean
                if exclude_csf:
                    like = csf_like(r2star, used, csf=csf)
                    n_csf = int(like.sum())
                    used &= ~like
                summary, chi_summary = summaries(erode(used, vox, erode_mm))
            if summary.n == 0 and measured.source not in unlabelled:
                empty.append(f"{measured.name}/{hemi}")
            volume = region_volumes_ml.get(key, np.nan)
            rows.append(
                _row(participant_id, measured.name, hemi, summary, volume, n_csf, chi_summary)
            )
    if "lesions" in masks:
        summary, chi_summary = summaries(masks["lesions"])
        volume = region_volumes_ml.get("lesions", np.nan)
        rows.append(_row(participant_id, "lesions", "both", summary, volume, chi=chi_summary))
    else:
        rows.append(_row(participant_id, "lesions", "both", _Summary(), np.nan))
    if empty:
        warnings.warn(
            f"{participant_id}: no usable R2* voxels in {', '.join(empty)}; those rows are NaN",
            IronmapWarning,
            stacklevel=2,
        )
    return pd.DataFrame([astuple(row) for row in rows], columns=REGION_COLUMNS)


def volumes(
    labels: NDArray,
    affine: NDArray[np.float64],
    codes: RegionCodes,
    *,
    participant_id: str,
    lesion_mask: NDArray | None = None,
    lesion_affine: NDArray[np.float64] | None = None,
    labels_name: str = "segmentation",
    lesion_name: str = "lesion mask",
) -> tuple[dict[str, float], dict[str, float]]:
    """Subject volumes (``subjects.tsv`` columns) and per-region volumes, in mL.

    Volumes are counted on each image's own grid: ICV = all labelled (non-zero) voxels, brain =
    ICV minus CSF and ventricles (``codes.csf``), cortical GM = ``cortex`` codes, NBV = brain /
    ICV; lesion count = 26-connected components of the lesion mask. ICV, brain and NBV need a
    whole-brain segmentation, one with both cerebral cortex and cerebral white matter voxels
    (``codes``); cortical GM needs cortex. Otherwise (e.g. FSL FIRST's deep grey matter only,
    or a ``dseg.tsv`` of unknown names) they are NaN, with a warning.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (I, J, K)
        Segmentation label image (integers >= 0; any value, counted without a lookup table).
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner (mm) transform of ``labels``.
    codes : RegionCodes
        The segmentation's codes per canonical region.
    participant_id : str
        Value of the ``participant_id`` column.
    lesion_mask : numpy.ndarray, shape (L, M, N), optional
        Lesion mask (non-zero = lesion) on its own grid.
    lesion_affine : numpy.ndarray, shape (4, 4), optional
        Voxel -> scanner (mm) transform of ``lesion_mask``; lesion volume and count are NaN
        unless both are given.
    labels_name, lesion_name : str, optional
        The segmentation and lesion mask files, named in warnings and errors.

    Returns
    -------
    subject : dict
        ``VOLUME_COLUMNS`` values (mL, NBV a ratio, lesion count an int or NaN).
    regions : dict
        ``"region/hemisphere" -> mL`` for :func:`region_groups` keys and ``"lesions" -> mL``.

    Warns
    -----
    IronmapWarning
        Once, naming the segmentation and the tissue it lacks, when whole-brain volumes are NaN.

    Raises
    ------
    InputError
        A label that is not an integer >= 0 (naming ``labels_name``), or a lesion mask larger
        than the brain; without a brain volume, one with every voxel set or above
        :data:`MAX_LESION_ML` (naming ``lesion_name``).
    """
    labels = label_array(labels, source_name=labels_name)
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    present, counts = np.unique(labels[labels > 0], return_counts=True)
    count = dict(zip(present.tolist(), counts.tolist(), strict=True))

    def ml(code_list) -> float:
        return float(sum(count.get(int(c), 0) for c in code_list)) * voxel_ml

    icv = float(counts.sum()) * voxel_ml
    brain = icv - ml(codes.csf)
    cortex = ml(codes.codes("cortex"))
    tissues = {"cerebral cortex": "cortex", "cerebral white matter": "cerebral_wm"}
    missing = [name for name, region in tissues.items() if ml(codes.codes(region)) == 0]
    if missing:
        icv = brain = np.nan
        cortex = np.nan if "cerebral cortex" in missing else cortex
        columns = (
            "icv_ml, brain_ml, cortical_gm_ml, nbv"
            if np.isnan(cortex)
            else ("icv_ml, brain_ml, nbv")
        )
        warnings.warn(
            f"{labels_name}: no {' and '.join(missing)} labels; {columns} are n/a (they need "
            "a whole-brain segmentation such as FreeSurfer aseg or SynthSeg); the regional "
            "volumes are kept",
            IronmapWarning,
            stacklevel=2,
        )
    region_ml = {key: ml(c) for key, c in region_groups(codes).items()}
    lesion_ml, n_lesions = np.nan, np.nan
    if lesion_mask is not None and lesion_affine is not None:
        mask = np.nan_to_num(np.asarray(lesion_mask)) != 0
        lesion_ml = float(mask.sum()) * abs(float(np.linalg.det(lesion_affine[:3, :3]))) / 1000.0
        _check_lesion_volume(mask, lesion_ml, brain, lesion_name, labels_name)
        n_lesions = int(ndimage.label(mask, structure=np.ones((3, 3, 3)))[1])
    region_ml["lesions"] = lesion_ml
    subject = {
        "participant_id": participant_id,
        "icv_ml": icv,
        "brain_ml": brain,
        "cortical_gm_ml": cortex,
        "nbv": brain / icv if icv > 0 else np.nan,
        "lesion_volume_ml": lesion_ml,
        "lesion_count": n_lesions,
    }
    return subject, region_ml


def _check_lesion_volume(
    mask: NDArray[np.bool_], lesion_ml: float, brain_ml: float, lesion_name: str, labels_name: str
) -> None:
    """Refuse a lesion mask larger than the brain (or implausible when the brain is unknown)."""
    fix = "non-zero voxels must mark lesions only (a brain mask, or an inverted mask?)"
    if np.isfinite(brain_ml):
        if lesion_ml > brain_ml:
            raise InputError(
                f"{lesion_name}: lesion volume {lesion_ml:.6g} mL exceeds the brain volume "
                f"{brain_ml:.6g} mL of {labels_name}; {fix}"
            )
    elif mask.size > 1 and mask.all():
        raise InputError(
            f"{lesion_name}: every voxel of the mask is set ({lesion_ml:.6g} mL); {fix}"
        )
    elif lesion_ml > MAX_LESION_ML:
        raise InputError(
            f"{lesion_name}: lesion volume {lesion_ml:.6g} mL, above {MAX_LESION_ML:.0f} mL "
            f"(larger than any brain); {fix}"
        )
