"""The participant's segmentation as it came, with the image it was made on.

:func:`segmentation_source` says where the labels of a participant (session) come from (a BIDS
dseg, a FreeSurfer or FastSurfer subject folder, a SynthSeg output; found by
:func:`ironmap.io.find_inputs`, :mod:`ironmap.io.freesurfer`) and which image they were made
on; :func:`read_segmentation_source` reads both, each with its own affine (scanner space: an
``.mgz`` through nibabel's vox2ras). The labels need not share the GRE's grid: they reach it
through the two affines (:func:`ironmap.segmentation.strategies.transfer_segmentation`,
partial-volume, :mod:`ironmap.regions.resample`). When the T1w moved between the two scans,
a rigid registration of ``image`` to the GRE (``ironmap.segmentation.coregister``) gives the
transform to compose with ``affine`` before that transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from ..io import SessionInputs, load_volume
from ..io.freesurfer import FREESURFER_LABELS, SYNTHSEG_SUFFIX
from ..regions import read_label_table
from ..regions.labels import label_array

__all__ = [
    "SOURCE_KINDS",
    "SegmentationSource",
    "SourceImages",
    "read_segmentation_source",
    "segmentation_source",
]

#: Where a participant's segmentation comes from.
SOURCE_KINDS = ("bids", "freesurfer", "fastsurfer", "synthseg")

#: A file of FastSurfer's beside its labels tells its subject folder from FreeSurfer's.
_FASTSURFER_MARK = "aparc.DKTatlas+aseg.deep.mgz"


@dataclass(frozen=True)
class SegmentationSource:
    """A participant's segmentation files as they came.

    Attributes
    ----------
    labels : Path
        The label image (``*_dseg.nii.gz``, ``mri/aseg.mgz``, ``*_synthseg.nii.gz`` ...).
    image : Path or None
        The image the labels were made on (FreeSurfer's ``orig.mgz``, SynthSeg's input), the
        source of a registration to the GRE; None when unknown.
    lut : Path or None
        The ``dseg.tsv`` naming the codes; None: FreeSurfer LUT (aseg) codes.
    kind : {"bids", "freesurfer", "fastsurfer", "synthseg"}
        Which tool's layout it came in (:data:`SOURCE_KINDS`).
    """

    labels: Path
    image: Path | None
    lut: Path | None
    kind: Literal["bids", "freesurfer", "fastsurfer", "synthseg"]


@dataclass(frozen=True)
class SourceImages:
    """A :class:`SegmentationSource` read.

    Attributes
    ----------
    labels : numpy.ndarray of int, shape (I, J, K)
        Label codes (integers >= 0).
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> scanner mm of ``labels``.
    table : dict of int to str or None
        ``code -> name`` from the ``dseg.tsv``; None: FreeSurfer LUT (aseg) codes.
    image : numpy.ndarray of float, shape (L, M, N), or None
        The image the labels were made on.
    image_affine : numpy.ndarray, shape (4, 4), or None
        Its voxel -> scanner mm.
    """

    labels: NDArray[np.integer]
    affine: NDArray[np.float64]
    table: dict[int, str] | None
    image: NDArray[np.floating] | None = None
    image_affine: NDArray[np.float64] | None = None


def segmentation_source(inputs: SessionInputs) -> SegmentationSource | None:
    """Where ``inputs``' segmentation comes from (None without one)."""
    if inputs.dseg is None:
        return None
    labels = inputs.dseg
    kind = "bids"
    if labels.name in FREESURFER_LABELS and labels.parent.name == "mri":
        fastsurfer = (labels.parent / _FASTSURFER_MARK).is_file()
        kind = "fastsurfer" if fastsurfer else "freesurfer"
    elif labels.name.split(".nii")[0].endswith(SYNTHSEG_SUFFIX):
        kind = "synthseg"
    return SegmentationSource(labels, inputs.dseg_image, inputs.dseg_tsv, kind)


def read_segmentation_source(source: SegmentationSource) -> SourceImages:
    """The labels (and the image they were made on) of ``source``, each with its affine.

    Raises
    ------
    InputError
        One line naming the file: unreadable, not 3D, labels that are not integers >= 0, or a
        bad ``dseg.tsv`` (:func:`ironmap.regions.read_label_table`).
    """
    labels, affine = load_volume(source.labels)
    labels = label_array(labels, source_name=str(source.labels))
    table = read_label_table(source.lut) if source.lut is not None else None
    image, image_affine = (None, None)
    if source.image is not None:
        image, image_affine = load_volume(source.image)
        image = np.asarray(image, dtype=np.float32)
    return SourceImages(labels, affine, table, image, image_affine)
