"""Where a participant's regions come from: the user's dseg, the registered atlas, or none.

A strategy answers two questions in pipeline order:

1. :meth:`fit_mask` — which voxels to fit R2* in (before the fit);
2. :meth:`segment` — the segmentation on the R2* grid, after the fit (the atlas path refines
   its iron-rich nuclei on the fitted R2* map), as a :class:`Segmentation`, or None.

:func:`choose_strategy` picks one from ``--segmentation`` (:data:`SEGMENTATIONS`) and what the
participant's inputs hold. Adding a source of segmentations is one class and one entry there.
"""

from __future__ import annotations

import json
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
from ..io import MultiEchoImage, SessionInputs, load_image, load_volume
from ..regions import (
    DEEP_GM,
    label_fractions,
    read_label_table,
    region_codes,
    region_groups,
    volumes,
)
from .alignment import check_alignment
from .constrain import ATROPHY_PCT, csf_share
from .coregister import DEFAULT_REGISTER_SEGMENTATION

__all__ = [
    "SEGMENTATIONS",
    "AtlasStrategy",
    "DsegImage",
    "NoSegmentation",
    "Segmentation",
    "SegmentationStrategy",
    "UserDseg",
    "choose_strategy",
    "head_mask",
    "transfer_segmentation",
    "warn_atrophy_without_t1w",
]

#: ``--segmentation`` choices: ``auto`` uses the participant's dseg when there is one (else no
#: regions), ``atlas`` registers the bundled atlas, ``none`` writes maps only.
SEGMENTATIONS = ("auto", "atlas", "none")

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


def warn_atrophy_without_t1w(csf: pd.DataFrame, *, name: str) -> str | None:
    """Warn when the ventricles took much of the atlas caudate or thalamus and there is no T1w.

    ``csf`` is the report of :func:`~.constrain.follow_csf`; the threshold is
    :data:`~.constrain.ATROPHY_PCT`. Enlarged ventricles (the periventricular atrophy of
    progressive MS) leave a thin caudate whose registered label also covers white matter.
    Without a T1w that edge is drawn on the first echo, whose grey/white contrast is weaker and
    protocol-dependent (docs/atlas.md#periventricular-atrophy). Returns the message (None when
    nothing was said).
    """
    if csf is None or csf.empty:
        return None
    share = csf_share(csf, regions=("caudate", "thalamus"))
    worst = share.idxmax() if len(share) else None
    if worst is None or not share[worst] > ATROPHY_PCT:
        return None
    message = (
        f"{name}: {share[worst]:.0f} % of the atlas {csf.loc[worst, 'hemisphere']} "
        f"{csf.loc[worst, 'region']} is ventricle on R2* (enlarged ventricles); without a T1w "
        "its edge against white matter is drawn on the first echo, whose contrast is weaker "
        "(docs/atlas.md); add the participant's T1w to its anat folder"
    )
    warnings.warn(message, IronmapWarning, stacklevel=3)
    return message


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
    return Segmentation(
        fractions, lesion_fraction, subject_volumes, region_ml, world=world,
        lesion_world=world if lesion_world is None else lesion_world,
    )  # fmt: skip


@dataclass
class UserDseg:
    """The participant's own segmentation (``*_dseg.nii.gz`` with an optional ``.tsv``)."""

    name: ClassVar[str] = "dseg"
    inputs: SessionInputs
    _segmentation: Segmentation | None = None
    #: ``--register-segmentation`` (:data:`~.coregister.REGISTER_SEGMENTATION`).
    register: str = DEFAULT_REGISTER_SEGMENTATION
    n_threads: int = 1

    def input_files(self) -> list[Path]:
        files = [p for p in (self.inputs.dseg, self.inputs.dseg_tsv) if p is not None]
        if self.register != "never" and self.inputs.dseg is not None:
            moving = [self._moving_image()]
            if self.inputs.lesion_mask is not None:
                moving.append(self._moving_image(self.inputs.lesion_mask))
            files += [p for p in dict.fromkeys(moving) if p is not None]
        return files

    def _moving_image(self, of: Path | None = None) -> Path | None:
        """The image the dseg (or ``of``: the lesion mask) was made on
        (:func:`~.coregister.segmentation_image`)."""
        from .coregister import segmentation_image

        header = load_image(self.inputs.dseg if of is None else of)
        return segmentation_image(self.inputs, shape=header.shape, affine=header.affine, of=of)

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        """The intracranial volume of the dseg on the R2* grid, dilated by one voxel.

        Raises
        ------
        InputError
            When the dseg does not overlap the GRE or clearly does not fit it
            (:func:`~ironmap.segmentation.alignment.check_alignment`, which warns when the fit
            is doubtful).
        """
        labels, seg_affine = load_volume(self.inputs.dseg)
        dseg_tsv = self.inputs.dseg_tsv
        table = read_label_table(dseg_tsv) if dseg_tsv is not None else None
        world, record = self._registration(labels, seg_affine, table, image)
        lesion_world, lesion_record = self._lesion_registration(world, record, image)
        self._segmentation = transfer_segmentation(
            labels,
            seg_affine,
            table,
            image=image,
            lesion_mask=self.inputs.lesion_mask,
            participant_id=f"sub-{self.inputs.subject}",
            source_name=str(self.inputs.dseg),
            world=world,
            lesion_world=lesion_world,
        )
        alignment = check_alignment(
            labels,
            self._segmentation.carry(seg_affine),
            region_codes(table),
            image.data,
            image.affine,
            source_name=str(self.inputs.dseg),
        )
        self._segmentation.qc = alignment.qc()
        if record:
            record["alignment_after"] = alignment.qc() if world is not None else None
            if lesion_record:
                record["lesion_mask"] = lesion_record
            self._segmentation.registration = record
            seconds = record.get("seconds", 0.0) + lesion_record.get("seconds", 0.0)
            self._segmentation.seconds = {"registration": seconds}
        if world is not None:
            self._segmentation.moved = (labels, seg_affine, world @ seg_affine)
        return ndimage.binary_dilation(self._segmentation.fractions["icv"] >= 0.5)

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        if self._segmentation is None:
            self.fit_mask(image)
        return self._segmentation

    def _lesion_registration(
        self, world: NDArray[np.float64] | None, record: dict, image: MultiEchoImage
    ) -> tuple[NDArray[np.float64] | None, dict]:
        """The lesion mask's world transform: its own image's registration when it was made on
        another image than the dseg (a FLAIR, found as for the dseg) on another grid than the
        GRE, else the dseg's ``world``; with its record (empty when it follows the dseg)."""
        from .coregister import register_rigid, same_grid

        mask = self.inputs.lesion_mask
        if self.register == "never" or mask is None or not record:
            return world, {}
        moving = self._moving_image(mask)
        dseg_image = record.get("moving_image")
        if moving is None or (dseg_image and moving.resolve() == Path(dseg_image).resolve()):
            return world, {}
        data, moving_affine = load_volume(moving)
        first = image.data[..., 0]
        if self.register == "auto" and same_grid(
            data.shape, moving_affine, first.shape, image.affine
        ):
            return world, {}
        registration = register_rigid(
            data, moving_affine, first, image.affine, moving_name=str(moving),
            n_threads=self.n_threads,
        )  # fmt: skip
        centre = image.affine @ np.append((np.asarray(first.shape) - 1) / 2.0, 1.0)
        return registration.transform, {
            "registered": True,
            "reason": "the lesion mask was made on another image than the dseg",
            **registration.record(centre_mm=centre[:3]),
        }

    def _registration(
        self, labels, seg_affine, table, image: MultiEchoImage
    ) -> tuple[NDArray[np.float64] | None, dict]:
        """Whether to register the dseg's own image to the first echo (``register``), and the
        world transform (None: the dseg's affine as it is) with its provenance record."""
        from .alignment import measure_alignment
        from .coregister import register_rigid, same_grid

        if self.register == "never":
            return None, {}
        moving = self._moving_image()
        if moving is None:
            if self.register == "always":
                raise InputError(
                    f"{self.inputs.dseg}: --register-segmentation always, but the image it was "
                    "made on was not found (name it in the dseg's JSON sidecar 'Sources', or give "
                    "the session's T1w/FLAIR on the dseg's grid)"
                )
            return None, {"registered": False, "reason": "no image of the dseg found"}
        data, moving_affine = load_volume(moving)
        first = image.data[..., 0]
        reason = "always"
        if self.register == "auto":
            if not same_grid(data.shape, moving_affine, first.shape, image.affine):
                reason = "another acquisition than the GRE (another grid)"
            else:
                check = measure_alignment(
                    labels, seg_affine, region_codes(table), image.data, image.affine
                )
                if check.outcome == "ok":
                    return None, {
                        "registered": False,
                        "reason": "same grid as the GRE and the alignment check found it ok",
                        "moving_image": str(moving),
                    }
                reason = f"the alignment check found it {check.outcome}"
        from .register import check_ants

        check_ants(
            "--register-segmentation needs ANTsPy; install the atlas extra with "
            "`pip install 'ironmap[atlas]'` or pass --register-segmentation never"
        )
        registration = register_rigid(
            data, moving_affine, first, image.affine, moving_name=str(moving),
            n_threads=self.n_threads,
        )  # fmt: skip
        centre = image.affine @ np.append((np.asarray(first.shape) - 1) / 2.0, 1.0)
        record = registration.record(centre_mm=centre[:3])
        record = {"registered": True, "reason": reason, **record}
        return registration.transform, record


@dataclass
class AtlasStrategy:
    """The bundled atlas registered to the T1w (else the first echo), nuclei refined on R2*."""

    name: ClassVar[str] = "atlas"
    inputs: SessionInputs
    n_threads: int = 1

    def input_files(self) -> list[Path]:
        return [self.inputs.t1w] if self.inputs.t1w is not None else []

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        """The head: R2* is fitted before the atlas is refined on it."""
        return head_mask(image.data[..., 0])

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        from .autoseg import atlas_segmentation, label_table

        if self.inputs.t1w is not None:
            target, target_affine = load_volume(self.inputs.t1w)
            target_name = str(self.inputs.t1w)
        else:
            target, target_affine = image.data[..., 0], image.affine
            target_name = f"{self.inputs.echoes[0]} (first echo)"
        seg = atlas_segmentation(
            fit.r2star,
            image.affine,
            target=target,
            target_affine=target_affine,
            n_threads=self.n_threads,
            target_name=target_name,
            follow_grey_white_matter=True if self.inputs.t1w is not None else "atrophied",
        )
        if self.inputs.t1w is None:
            warn_atrophy_without_t1w(seg.csf, name=self.inputs.name)
        table = label_table(seg.labels)
        written = DsegImage(
            labels=seg.labels.astype(np.int16),
            affine=seg.affine,
            table=table,
            sidecar=self._sidecar(image, seg, target_name),
        )
        result = transfer_segmentation(
            written.labels,
            seg.affine,
            dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True)),
            image=image,
            lesion_mask=self.inputs.lesion_mask,
            participant_id=f"sub-{self.inputs.subject}",
            source_name=f"{self.inputs.name} atlas segmentation",
        )
        result.written = written
        result.seconds = dict(seg.seconds)
        return result

    def _sidecar(self, image: MultiEchoImage, seg, target_name: str) -> dict:
        from ..io import ParticipantOutputs

        r2star = ParticipantOutputs(Path(), self.inputs.subject, self.inputs.session).maps
        return {
            "Units": "1",
            "Description": "Deep grey matter from the bundled atlas registered to the subject "
            "(ANTs affine + SyN), iron-rich nuclei refined on R2*, voxels with CSF-like R2* "
            "relabelled as CSF, with a T1w target caudate and putamen voxels that look like white "
            "matter on it given up; on the R2* grid subdivided to about 1 mm; codes and names in "
            "the .tsv",
            "EstimationAlgorithm": "ironmap --segmentation atlas (docs/atlas.md)",
            "EchoTime": [float(te) for te in image.echo_times_s],
            "Sources": [
                *(str(p) for p in image.sources),  # echo-time order, as EchoTime
                *([str(self.inputs.t1w)] if self.inputs.t1w else []),
            ],
            "RegistrationTarget": target_name,
            # BIDS: the image it is aligned to (its grid subdivides the R2* map's)
            "SpatialReference": f"bids::{r2star['R2starmap'].as_posix()}",
            "Atlas": seg.sources,
            "Refinement": json.loads(seg.refinement.to_json(orient="records")),
            "CSFRelabelled": json.loads(seg.csf.to_json(orient="records")),
            "GreyWhite": json.loads(seg.grey_white.to_json(orient="records")),
        }


@dataclass
class NoSegmentation:
    """No regions: R2* maps in a head mask from the magnitudes."""

    name: ClassVar[str] = "none"
    inputs: SessionInputs

    def input_files(self) -> list[Path]:
        return []

    def fit_mask(self, image: MultiEchoImage) -> NDArray[np.bool_]:
        return head_mask(image.data[..., 0])

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> None:
        return None


def choose_strategy(
    inputs: SessionInputs,
    *,
    segmentation: str,
    n_threads: int = 1,
    register_segmentation: str = DEFAULT_REGISTER_SEGMENTATION,
) -> SegmentationStrategy:
    """The strategy for ``--segmentation`` (:data:`SEGMENTATIONS`) and these inputs;
    ``register_segmentation``: ``--register-segmentation`` for a user dseg (:mod:`.coregister`).

    ``auto`` without a dseg warns that only maps are written.
    """
    if segmentation == "atlas":
        return AtlasStrategy(inputs, n_threads=n_threads)
    if segmentation == "auto" and inputs.dseg is not None:
        return UserDseg(inputs, register=register_segmentation, n_threads=n_threads)
    if segmentation == "auto":
        warnings.warn(
            f"{inputs.name}: no segmentation (dseg) found; writing maps only, no regional R2*",
            IronmapWarning,
            stacklevel=2,
        )
    return NoSegmentation(inputs)
