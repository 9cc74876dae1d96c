"""Where a participant's regions come from: the user's dseg, the registered atlas, or none.

A strategy answers two questions in pipeline order:

1. :meth:`fit_mask` — which voxels to fit R2* in (before the fit);
2. :meth:`segment` — the segmentation on the R2* grid, after the fit (the atlas path refines
   its iron-rich nuclei on the fitted R2* map), as a :class:`Segmentation`, or None.

:func:`choose_strategy` picks one from ``--segmentation`` (:data:`SEGMENTATIONS`) and what the
participant's inputs hold. Adding a source of segmentations is one class and one entry there.

``hybrid`` (:class:`HybridDseg`) is the participant's dseg for every structure it labels and the
registered atlas (:class:`AtlasStrategy`'s registration and R2* refinement) for the deep
grey-matter structures it lacks: whole-brain segmenters (FreeSurfer, FastSurfer, SynthSeg) never
label the substantia nigra, red nucleus or dentate nucleus. Where an atlas nucleus and one of the
dseg's deep grey-matter or CSF labels share a voxel, the dseg wins
(:func:`fill_from_atlas`). Each region's source is :attr:`Segmentation.label_source`, the
``label_source`` column of ``_regions.tsv``.
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

from ..errors import InputError, IronmapError, IronmapWarning
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
from ..regions.catalog import LABEL_NAMES, MEASURED_ROWS
from .alignment import check_alignment
from .constrain import ATROPHY_PCT, csf_share
from .coregister import DEFAULT_REGISTER_SEGMENTATION

__all__ = [
    "NOT_IN_WHOLE_BRAIN_SEGMENTERS",
    "REGISTRATION_THREADS",
    "SEGMENTATIONS",
    "AtlasStrategy",
    "DsegImage",
    "HybridDseg",
    "NoSegmentation",
    "Segmentation",
    "SegmentationStrategy",
    "UserDseg",
    "choose_strategy",
    "fill_from_atlas",
    "head_mask",
    "missing_structures",
    "transfer_segmentation",
    "warn_atrophy_without_t1w",
    "warn_unlabelled",
]

#: ``--segmentation`` choices: ``auto`` uses the participant's dseg when there is one (else no
#: regions), ``atlas`` registers the bundled atlas, ``hybrid`` the dseg with the deep grey-matter
#: structures it lacks from the registered atlas (:class:`HybridDseg`), ``none`` writes maps only.
SEGMENTATIONS = ("auto", "atlas", "hybrid", "none")

#: Deep grey-matter structures that whole-brain segmenters (FreeSurfer aseg, FastSurfer,
#: SynthSeg) do not label: ``--segmentation hybrid`` takes them from the registered atlas.
NOT_IN_WHOLE_BRAIN_SEGMENTERS = ("substantia_nigra", "red_nucleus", "dentate_nucleus")

#: ITK threads of every registration of a participant (atlas, hybrid, a user dseg's): with one
#: (and the seed of :func:`~.register.register_atlas`) a rerun gives the same labels; with
#: several, ITK's multi-threaded metric sums differ between runs (two atlas registrations of
#: one image with 2 threads: 268 of 67,262 labelled voxels apart; issue 28: 866 voxels, 0.19 %
#: of a regional median). Participants run in parallel instead (``--n-jobs``).
REGISTRATION_THREADS = 1

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
            if record.get("registered") or lesion_record:  # a step only when one ran
                seconds = record.get("seconds", 0.0) + lesion_record.get("seconds", 0.0)
                self._segmentation.seconds = {"registration": seconds}
        if world is not None:
            self._segmentation.moved = (labels, seg_affine, world @ seg_affine)
        return ndimage.binary_dilation(self._segmentation.fractions["icv"] >= 0.5)

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        if self._segmentation is None:
            self.fit_mask(image)
        missing = missing_structures(self._segmentation)
        if missing:
            warn_unlabelled(
                missing,
                inputs=self.inputs,
                why="; --segmentation hybrid fills them from the registered atlas",
            )
            self._segmentation.unlabelled = tuple(missing)
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


def fill_from_atlas(
    segmentation: Segmentation,
    missing: list[str],
    *,
    image: MultiEchoImage,
    fit: DecayFit,
    inputs: SessionInputs,
    n_threads: int = 1,
) -> Segmentation:
    """Add the deep grey-matter regions ``missing`` from the dseg, from the registered atlas.

    The atlas is registered and its iron-rich nuclei refined on R2* exactly as by
    ``--segmentation atlas`` (:func:`~.autoseg.atlas_segmentation`, to the T1w when there is
    one, else the first echo; with one ITK thread, :data:`HYBRID_THREADS`, reproducible).
    On the R2* grid
    the dseg wins: an atlas region's partial-volume fraction in a voxel is at most what the
    dseg's deep grey-matter structures and CSF leave of it (1 minus their fractions). The
    filled regions' ``volume_ml`` is the sum of these fractions times the R2* voxel volume.

    Parameters
    ----------
    segmentation : Segmentation
        The dseg on the R2* grid (:func:`transfer_segmentation`); updated in place.
    missing : list of str
        Canonical deep grey-matter regions to fill (:func:`missing_structures`).
    image, fit : MultiEchoImage, DecayFit
        The GRE and its R2* fit.
    inputs : SessionInputs
        The participant's inputs (T1w, names for messages).
    n_threads : int, optional
        ITK threads for the registration.

    Returns
    -------
    Segmentation
        ``segmentation`` with ``fractions``, ``region_ml``, ``label_source`` (``"atlas"``) and
        ``seconds`` of the filled regions. Without the atlas extra, or when the registration
        fails, it is returned unchanged with a warning (:func:`warn_unlabelled`): the rows of
        ``missing`` are NaN.

    Warns
    -----
    IronmapWarning
        When ``missing`` could not be filled, naming the dseg, the structures and why.
    """
    if inputs.t1w is not None:
        target, target_affine = load_volume(inputs.t1w)
        target_name = str(inputs.t1w)
    else:
        target, target_affine = image.data[..., 0], image.affine
        target_name = f"{inputs.echoes[0]} (first echo)"
    try:
        from .autoseg import atlas_segmentation
        from .register import check_ants

        check_ants()
        seg = atlas_segmentation(
            fit.r2star,
            image.affine,
            target=target,
            target_affine=target_affine,
            n_threads=n_threads,
            target_name=target_name,
        )
    except (ImportError, IronmapError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warn_unlabelled(missing, inputs=inputs, why=f"; the atlas could not fill them: {reason}")
        segmentation.unlabelled = tuple(missing)
        return segmentation
    groups = {
        key: codes
        for key, codes in region_groups(region_codes(LABEL_NAMES)).items()
        if key.split("/")[0] in missing
    }
    grid = image.data.shape[:3]
    # registered to the T1w: in the dseg's scanner space, moved to the GRE's with the dseg
    # when the dseg was registered (Segmentation.carry); to the first echo: already there
    atlas_affine = segmentation.carry(seg.affine) if inputs.t1w is not None else seg.affine
    atlas = label_fractions(
        seg.labels, atlas_affine, grid, image.affine, groups, source_name=f"{target_name} atlas"
    )
    claimed = np.zeros(grid, dtype=np.float32)
    for region in DEEP_GM:
        if region in segmentation.label_source and f"{region}/both" in segmentation.fractions:
            claimed += segmentation.fractions[f"{region}/both"]
    if "_csf" in segmentation.fractions:
        claimed += segmentation.fractions["_csf"]
    room = np.clip(1.0 - claimed, 0.0, 1.0).astype(np.float32)
    voxel_ml = abs(float(np.linalg.det(image.affine[:3, :3]))) / 1000.0
    for key in groups:
        fraction = np.minimum(atlas[key], room)
        segmentation.fractions[key] = fraction
        segmentation.region_ml[key] = float(fraction.sum(dtype=np.float64)) * voxel_ml
    for region in missing:
        if any(segmentation.region_ml[f"{region}/{h}"] > 0 for h in ("left", "right")):
            segmentation.label_source[region] = "atlas"
    for step, seconds in seg.seconds.items():
        segmentation.seconds[step] = segmentation.seconds.get(step, 0.0) + seconds
    left = missing_structures(segmentation)
    if left:
        warn_unlabelled(
            left,
            inputs=inputs,
            why="; the registered atlas has none of them outside the dseg's own structures",
        )
        segmentation.unlabelled = tuple(left)
    return segmentation


@dataclass
class HybridDseg(UserDseg):
    """The participant's dseg, with the deep grey-matter structures it lacks from the atlas.

    ``--segmentation hybrid``: the fit mask, the lesion mask, the volumes and the alignment
    check are the dseg's (:class:`UserDseg`); the structures no dseg label covers (the
    substantia nigra, red nucleus and dentate nucleus of a FreeSurfer, FastSurfer or SynthSeg
    segmentation) come from :func:`fill_from_atlas`.
    """

    name: ClassVar[str] = "hybrid"
    n_threads: int = 1

    def input_files(self) -> list[Path]:
        return [*super().input_files(), *([self.inputs.t1w] if self.inputs.t1w else [])]

    def segment(self, image: MultiEchoImage, fit: DecayFit) -> Segmentation:
        if self._segmentation is None:
            self.fit_mask(image)
        missing = missing_structures(self._segmentation)
        if not missing:
            return self._segmentation
        return fill_from_atlas(
            self._segmentation,
            missing,
            image=image,
            fit=fit,
            inputs=self.inputs,
            n_threads=self.n_threads,
        )


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
            label_source="atlas",
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
    register_segmentation: str = DEFAULT_REGISTER_SEGMENTATION,
) -> SegmentationStrategy:
    """The strategy for ``--segmentation`` (:data:`SEGMENTATIONS`) and these inputs;
    ``register_segmentation``: ``--register-segmentation`` for a user dseg (:mod:`.coregister`).
    Its registrations run on :data:`REGISTRATION_THREADS` ITK threads (reproducible).

    ``auto`` without a dseg warns that only maps are written; ``hybrid`` without one warns and
    registers the atlas for every structure.
    """
    n_threads = REGISTRATION_THREADS
    if segmentation == "atlas":
        return AtlasStrategy(inputs, n_threads=n_threads)
    if segmentation == "hybrid" and inputs.dseg is not None:
        return HybridDseg(inputs, register=register_segmentation, n_threads=n_threads)
    if segmentation == "hybrid":
        warnings.warn(
            f"{inputs.name}: --segmentation hybrid needs a dseg, none found; registering the "
            "atlas for every structure (--segmentation atlas)",
            IronmapWarning,
            stacklevel=2,
        )
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
