"""What a segmentation strategy hands the pipeline (:class:`Segmentation` on the R2* grid), how
a segmentation's labels land on that grid (:func:`transfer_segmentation`), the head mask
without one, and which deep grey-matter structures it leaves unlabelled.

The strategies themselves are in :mod:`.strategies` (moved from there, unchanged).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError, IronmapWarning
from ..fitting import DecayFit, sigma_from_background
from ..fitting.noise import noise_from_background
from ..io import MultiEchoImage, SessionInputs, load_volume
from ..regions import (
    DEEP_GM,
    label_fractions,
    region_codes,
    region_groups,
    volumes,
)
from ..regions.catalog import MEASURED_ROWS

__all__ = [
    "MIN_OVERLAP",
    "NOT_IN_WHOLE_BRAIN_SEGMENTERS",
    "DsegImage",
    "Segmentation",
    "SegmentationStrategy",
    "head_mask",
    "missing_structures",
    "transfer_segmentation",
    "warn_unlabelled",
]

#: Deep grey-matter structures that whole-brain segmenters (FreeSurfer aseg, FastSurfer,
#: SynthSeg) do not label: ``--segmentation hybrid`` takes them from the registered atlas.
NOT_IN_WHOLE_BRAIN_SEGMENTERS = ("substantia_nigra", "red_nucleus", "dentate_nucleus")

#: Below this share of the R2* image inside the segmentation, the two do not overlap.
MIN_OVERLAP = 0.05


@dataclass(frozen=True)
class DsegImage:
    """A segmentation ironmap made and writes as ``desc-ironmap_dseg`` (the atlas path).

    Attributes
    ----------
    labels : numpy.ndarray of int, shape (X, Y, Z)
        Codes of :data:`ironmap.regions.catalog.LABEL_NAMES`.
    affine : numpy.ndarray, shape (4, 4)
    table : pandas.DataFrame
        The ``dseg.tsv`` (``index``, ``name``).
    sidecar : dict
        JSON sidecar content.
    """

    labels: NDArray[np.integer]
    affine: NDArray[np.float64]
    table: pd.DataFrame
    sidecar: dict


@dataclass
class Segmentation:
    """A segmentation (and lesion mask) transferred to the R2* grid.

    Attributes
    ----------
    fractions : dict of str to numpy.ndarray of float32, shape (X, Y, Z)
        Share of each R2* voxel inside ``"region/hemisphere"`` (:func:`region_groups` keys),
        ``"lateral_ventricle/both"`` (for the lesions' location), ``"_csf"`` (ventricles and
        other CSF: the wall of :func:`~ironmap.regions.csf.csf_like`), ``"icv"`` (all labels)
        and ``"_inside"`` (the segmentation's field of view).
    lesion_fraction : numpy.ndarray of float32 or None
        Share of each voxel inside the lesion mask (None without one).
    subject_volumes : dict
        ``subjects.tsv`` volume columns (mL), counted on the segmentation's own grid.
    region_ml : dict of str to float
        ``"region/hemisphere" -> mL`` and ``"lesions" -> mL``.
    written : DsegImage or None
        A segmentation ironmap made, to be written with the outputs.
    seconds : dict of str to float
        Time of the strategy's own steps (e.g. ``registration``).
    qc : dict of str to float or str
        Quality checks of the segmentation: for a user dseg, the alignment check
        (:meth:`ironmap.segmentation.alignment.Alignment.qc`: ``alignment`` = ``ok`` or
        ``doubtful``, ``alignment_score``, ``alignment_shift_mm``, ``alignment_flip_score``);
        empty for the atlas path (it is registered to the subject).
    registration : dict
        For a user dseg, whether its own image was registered to the GRE, why, and the
        transform (:meth:`~.coregister.Coregistration.record`); empty otherwise.
    world : numpy.ndarray, shape (4, 4), or None
        The rigid world transform applied to the dseg's affine (None: none).
    lesion_world : numpy.ndarray, shape (4, 4), or None
        The one applied to the lesion mask's (the dseg's, or its own image's registration).
    moved : tuple or None
        ``(labels, affine before, affine after)`` of a registered dseg, for the QC overlay.
    label_source : dict of str to str
        Where each catalogue region of :data:`~ironmap.regions.catalog.MEASURED_ROWS` (its
        ``source``, e.g. ``"substantia_nigra"``, ``"cerebral_wm"``) was labelled: ``"dseg"``
        (the participant's segmentation) or ``"atlas"`` (the registered bundled atlas); a
        region the segmentation lacks is absent (its rows are NaN).
    unlabelled : tuple of str
        Deep grey-matter regions no label covers, already named in a warning
        (:func:`warn_unlabelled`): their NaN rows get no second warning.
    """

    fractions: dict[str, NDArray[np.float32]]
    lesion_fraction: NDArray[np.float32] | None
    subject_volumes: dict
    region_ml: dict[str, float]
    written: DsegImage | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    qc: dict[str, float | str] = field(default_factory=dict)
    registration: dict = field(default_factory=dict)
    world: NDArray[np.float64] | None = None
    moved: tuple | None = None
    lesion_world: NDArray[np.float64] | None = None

    def carry(self, affine: NDArray[np.float64]) -> NDArray[np.float64]:
        """``affine`` of an image in the dseg's scanner space, in the GRE's (:attr:`world`)."""
        return affine if self.world is None else self.world @ affine

    def carry_lesion(self, affine: NDArray[np.float64]) -> NDArray[np.float64]:
        """The lesion mask's ``affine`` in the GRE's scanner space (:attr:`lesion_world`)."""
        return affine if self.lesion_world is None else self.lesion_world @ affine

    label_source: dict[str, str] = field(default_factory=dict)
    unlabelled: tuple[str, ...] = ()


class SegmentationStrategy(Protocol):
    """Where the regions come from (see the module docstring)."""

    name: ClassVar[str]

    def input_files(self) -> list[Path]:
        """Files the result depends on (hashed for provenance), besides the echoes."""
        ...

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        """Voxels to fit, shape (X, Y, Z)."""
        ...

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation | None:
        """The segmentation on the R2* grid (None: maps only)."""
        ...


def head_mask(first_echo: NDArray[np.floating]) -> NDArray[np.bool_]:
    """Head mask from magnitudes when there is no segmentation.

    Above 5 background sigma (and, for root-sum-of-squares data from several receive channels,
    above the background distribution's 99.9 % quantile, which 5 sigma does not reach), largest
    connected component, holes filled; everything when the image has no background.
    """
    sigma = sigma_from_background(first_echo[..., None])
    if sigma is None:
        return np.ones(first_echo.shape, dtype=bool)
    level = 5.0 * sigma
    noise = noise_from_background(first_echo[..., None])
    if noise is not None and noise.n_coils > 1:
        level = max(level, float(noise.cutoff))
    mask = first_echo > level
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == (np.argmax(sizes) + 1)
    return ndimage.binary_fill_holes(mask)


def transfer_segmentation(
    labels: NDArray[np.integer],
    seg_affine: NDArray[np.float64],
    table: dict[int, str] | None,
    *,
    image: MultiEchoImage,
    lesion_mask: Path | None,
    participant_id: str,
    source_name: str,
    world: NDArray[np.float64] | None = None,
    lesion_world: NDArray[np.float64] | None = None,
    label_source: str = "dseg",
) -> Segmentation:
    """Label fractions of every region on the R2* grid, lesion fraction and volumes.

    Parameters
    ----------
    labels : numpy.ndarray of int, shape (I, J, K)
        Label map on its own grid; ``table`` names its codes (None: FreeSurfer aseg codes).
    seg_affine : numpy.ndarray, shape (4, 4)
        Its voxel -> scanner mm transform.
    image : MultiEchoImage
        The GRE whose grid receives the fractions.
    lesion_mask : Path or None
        Lesion mask (any grid, same scanner space).
    participant_id, source_name : str
        For the volumes table and for messages.
    world : numpy.ndarray, shape (4, 4), optional
        Rigid world transform from the segmentation's scanner space to the GRE's (its
        registration, :mod:`.coregister`), applied to ``seg_affine`` and the lesion mask's affine.
    lesion_world : numpy.ndarray, shape (4, 4), optional
        The lesion mask's own (when it was made on another image, e.g. a FLAIR); default
        ``world``.
    label_source : str, optional
        :attr:`Segmentation.label_source` of every measured region ``labels`` holds.

    Raises
    ------
    InputError
        When the segmentation covers under 5 % of the R2* image.
    """
    grid, affine = image.data.shape[:3], image.affine
    if world is not None:
        seg_affine = world @ seg_affine
    codes = region_codes(table)
    if not any(codes.codes(r) for r in DEEP_GM):
        warnings.warn(
            f"{source_name}: no known deep grey-matter structure "
            f"({'see its .tsv' if table else 'no .tsv, so FreeSurfer aseg codes'}); "
            "regional rows are NaN",
            IronmapWarning,
            stacklevel=3,
        )
    present = np.unique(labels)
    groups = {
        **region_groups(codes),
        "lateral_ventricle/both": codes.codes("lateral_ventricle"),  # lesion location
        "_csf": codes.csf,  # the wall of the CSF exclusion
        "icv": tuple(int(c) for c in present if c > 0),
    }
    fractions = label_fractions(labels, seg_affine, grid, affine, groups, source_name=source_name)
    if fractions["_inside"].mean() < MIN_OVERLAP:
        raise InputError(
            f"{source_name}: covers only {100 * fractions['_inside'].mean():.1f} % of the "
            "R2* image; check that its affine maps to the same scanner space"
        )
    lesion, lesion_affine, lesion_fraction = None, None, None
    if lesion_mask is not None:
        lesion, lesion_affine = load_volume(lesion_mask)
        lesion_world = world if lesion_world is None else lesion_world
        lesion_affine = lesion_affine if lesion_world is None else lesion_world @ lesion_affine
        lesion = np.nan_to_num(lesion) != 0
        lesion_fraction = label_fractions(
            lesion.astype(np.uint8),
            lesion_affine,
            grid,
            affine,
            {"lesion": (1,)},
            source_name=str(lesion_mask),
        )["lesion"]
    subject_volumes, region_ml = volumes(
        labels,
        seg_affine,
        codes,
        participant_id=participant_id,
        lesion_mask=lesion,
        lesion_affine=lesion_affine,
        labels_name=source_name,
        lesion_name=str(lesion_mask),
    )
    labelled = {
        row.source: label_source
        for row in MEASURED_ROWS
        if np.isin(codes.codes(row.source), present).any()
    }
    return Segmentation(
        fractions, lesion_fraction, subject_volumes, region_ml, world=world,
        lesion_world=world if lesion_world is None else lesion_world, label_source=labelled,
    )  # fmt: skip


def missing_structures(segmentation: Segmentation) -> list[str]:
    """Deep grey-matter regions (:data:`~ironmap.regions.catalog.DEEP_GM`, in order) that no
    label of ``segmentation`` covers."""
    return [r for r in DEEP_GM if r not in segmentation.label_source]


def warn_unlabelled(missing: list[str], *, inputs: SessionInputs, why: str) -> str:
    """Warn, naming the dseg, the structures and the ``_regions.tsv``, that ``missing`` have
    explicit NaN rows; ``why`` ends the message (what was tried, what to do). Returns it."""
    from ..io import ParticipantOutputs

    regions = ParticipantOutputs(Path(), inputs.subject, inputs.session).regions.name
    names = ", ".join(r.replace("_", " ") for r in missing)
    usual = set(missing) <= set(NOT_IN_WHOLE_BRAIN_SEGMENTERS)
    message = (
        f"{inputs.dseg}: no {names} labels"
        + (" (FreeSurfer, FastSurfer and SynthSeg do not label them)" if usual else "")
        + f"; their rows of {regions} are NaN{why}"
    )
    warnings.warn(message, IronmapWarning, stacklevel=3)
    return message
