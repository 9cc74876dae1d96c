"""``--segmentation auto`` with a dseg: the participant's own segmentation (:class:`UserDseg`),
checked for alignment with the GRE and, when needed, carried by the rigid registration of
the image it was made on (:mod:`.coregister`). Moved from :mod:`.strategies`, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import InputError
from ..fitting import DecayFit
from ..io import MultiEchoImage, SessionInputs, load_image, load_volume
from ..regions import (
    read_label_table,
    region_codes,
)
from .alignment import check_alignment
from .coregister import DEFAULT_REGISTER_SEGMENTATION
from .result import (
    Segmentation,
    missing_structures,
    transfer_segmentation,
    warn_unlabelled,
)

__all__ = [
    "UserDseg",
]


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
