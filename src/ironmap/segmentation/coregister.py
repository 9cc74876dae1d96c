"""Rigid registration of a segmentation's own image (T1w, FLAIR, FreeSurfer's orig.mgz) to the GRE.

A dseg or lesion mask is drawn on another acquisition than the multi-echo GRE: minutes apart,
with head motion between them. Its affine maps its voxels to the scanner space *of its own
session*; when the head moved, that is not the GRE's. :func:`register_rigid` registers the image
the segmentation was made on (the *moving* image) rigidly (6 degrees of freedom: 3 rotations,
3 translations) to the GRE's first echo (or S0) with ANTs (Mattes mutual information: the
contrasts differ). The result is a world transform ``T`` (4 x 4, RAS mm) that maps a point of
the moving image's scanner space onto the same anatomy in the GRE's scanner space.

Labels and masks are carried through it *exactly*, without resampling them: their affine
becomes ``T @ affine`` (:meth:`Coregistration.carry`), and the pipeline's partial-volume
transfer (:func:`ironmap.regions.label_fractions`) then samples them once onto the R2* grid, as
for any dseg. Deterministic: a fixed random seed, and a given ITK thread count.

Entry point for other segmentation sources (FreeSurfer's ``orig.mgz`` / ``T1.mgz``, SynthSeg):
:func:`coregister_segmentation` takes the moving image, the GRE, and the affines of the label
images and masks made on the moving image, and returns them carried onto the GRE's space.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from ..errors import InputError, IronmapError
from ..io import SessionInputs
from .register import _LPS, _ants, seeded, to_ants

__all__ = [
    "DEFAULT_REGISTER_SEGMENTATION",
    "REGISTER_SEGMENTATION",
    "Coregistration",
    "coregister_segmentation",
    "register_rigid",
    "rigid_transform",
    "same_grid",
    "segmentation_image",
]

#: ``--register-segmentation`` choices: ``auto`` registers the segmentation's own image to the
#: GRE when the alignment check doubts the dseg or that image is another acquisition (another
#: grid than the GRE's); ``always`` whenever there is such an image; ``never``: the dseg's
#: affine is trusted as it is (:data:`DEFAULT_REGISTER_SEGMENTATION`).
REGISTER_SEGMENTATION = ("auto", "always", "never")

#: Default of ``--register-segmentation``.
DEFAULT_REGISTER_SEGMENTATION = "auto"

_NIFTI = re.compile(r"\.(nii(\.gz)?|mgz)$")

#: Grids whose affines differ by less than this (mm) are the same grid.
_SAME_GRID_MM = 1e-3


def rigid_transform(
    rotation_deg: Sequence[float],
    translation_mm: Sequence[float],
    *,
    centre_mm: Sequence[float] = (0.0, 0.0, 0.0),
) -> NDArray[np.float64]:
    """A 4 x 4 rigid world transform (RAS mm): rotation about ``centre_mm``, then translation.

    Parameters
    ----------
    rotation_deg : sequence of 3 float
        Rotations about the x, y, z axes (degrees; extrinsic, applied x then y then z).
    translation_mm : sequence of 3 float
        Translation (mm).
    centre_mm : sequence of 3 float, optional
        Fixed point of the rotation (scanner mm).

    Returns
    -------
    numpy.ndarray, shape (4, 4)
        ``x' = R (x - c) + c + t``.
    """
    rotation = Rotation.from_euler("xyz", rotation_deg, degrees=True).as_matrix()
    centre = np.asarray(centre_mm, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = centre - rotation @ centre + np.asarray(translation_mm, dtype=np.float64)
    return out


def same_grid(
    shape_a: Sequence[int],
    affine_a: NDArray[np.float64],
    shape_b: Sequence[int],
    affine_b: NDArray[np.float64],
) -> bool:
    """True when two images share their voxel grid (shape, and affine to :data:`_SAME_GRID_MM`)."""
    return tuple(shape_a)[:3] == tuple(shape_b)[:3] and bool(
        np.allclose(affine_a, affine_b, atol=_SAME_GRID_MM)
    )


@dataclass(frozen=True)
class Coregistration:
    """A rigid registration of a segmentation's image to the GRE.

    Attributes
    ----------
    transform : numpy.ndarray, shape (4, 4)
        World transform (RAS mm): a point of the moving image's scanner space -> the GRE's.
    metric : float
        Final Mattes mutual-information metric of ANTs (negative; lower fits better).
    seconds : float
        Wall time of the registration.
    moving_name : str
        The moving image (its file).
    """

    transform: NDArray[np.float64]
    metric: float
    seconds: float
    moving_name: str = ""

    @property
    def rotation_deg(self) -> NDArray[np.float64]:
        """Rotations about x, y, z (degrees, as :func:`rigid_transform` takes them)."""
        return Rotation.from_matrix(self.transform[:3, :3]).as_euler("xyz", degrees=True)

    @property
    def angle_deg(self) -> float:
        """Total rotation angle (degrees)."""
        return float(np.degrees(Rotation.from_matrix(self.transform[:3, :3]).magnitude()))

    def displacement_mm(self, centre_mm: Sequence[float]) -> NDArray[np.float64]:
        """Displacement (mm) of the point ``centre_mm`` (e.g. the brain's centre)."""
        point = np.append(np.asarray(centre_mm, dtype=np.float64), 1.0)
        return (self.transform @ point)[:3] - point[:3]

    def carry(self, affine: NDArray[np.float64]) -> NDArray[np.float64]:
        """The affine of an image made on the moving image, in the GRE's scanner space."""
        return self.transform @ np.asarray(affine, dtype=np.float64)

    def record(self, *, centre_mm: Sequence[float] | None = None) -> dict:
        """JSON-ready summary: transform, rotations (deg), translation (mm), metric, time."""
        record = {
            "moving_image": self.moving_name,
            "transform": np.round(self.transform, 6).tolist(),
            "rotation_deg": np.round(self.rotation_deg, 3).tolist(),
            "angle_deg": round(self.angle_deg, 3),
            "translation_mm": np.round(self.transform[:3, 3], 3).tolist(),
            "metric": round(self.metric, 5),
            "seconds": round(self.seconds, 2),
        }
        if centre_mm is not None:
            record["displacement_mm"] = np.round(self.displacement_mm(centre_mm), 3).tolist()
        return record


def _matrix_from_itk(path: str) -> NDArray[np.float64]:
    """RAS world 4 x 4 of an ANTs/ITK rigid transform file (which maps fixed -> moving, LPS)."""
    ants = _ants()
    tx = ants.read_transform(path)
    params = np.asarray(tx.parameters, dtype=np.float64)
    centre = np.asarray(tx.fixed_parameters, dtype=np.float64)
    matrix = params[:9].reshape(3, 3)
    offset = params[9:12] + centre - matrix @ centre
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = matrix, offset
    flip = np.diag([*np.diag(_LPS), 1.0])
    return flip @ lps @ flip


def register_rigid(
    moving: NDArray[np.floating],
    moving_affine: NDArray[np.float64],
    fixed: NDArray[np.floating],
    fixed_affine: NDArray[np.float64],
    *,
    moving_name: str = "the segmentation's image",
    grid_mm: float = 2.0,
    n_threads: int | None = None,
    seed: int = 20140601,
) -> Coregistration:
    """Register ``moving`` rigidly to ``fixed`` (Mattes mutual information, ANTs).

    Parameters
    ----------
    moving : numpy.ndarray, shape (I, J, K)
        The image the segmentation was made on (T1w, FLAIR, ...; NaN treated as 0).
    moving_affine : numpy.ndarray, shape (4, 4)
        Its voxel -> scanner (RAS mm) affine.
    fixed : numpy.ndarray, shape (X, Y, Z)
        The GRE's first echo (or S0).
    fixed_affine : numpy.ndarray, shape (4, 4)
        Its affine.
    moving_name : str, optional
        Named in errors and in the record.
    grid_mm : float, optional
        A finer moving image is smoothed and resampled to this voxel size (mm) first.
    n_threads : int, optional
        ITK threads (read once per process, at ANTsPy's first import).
    seed : int, optional
        Random seed of ANTs' metric sampling.

    Returns
    -------
    Coregistration

    Raises
    ------
    IronmapError
        ANTsPy missing (``pip install 'ironmap[atlas]'``), or an image without positive values.
    """
    ants = _ants(n_threads)
    images = []
    for name, data in ((moving_name, moving), ("the GRE's first echo", fixed)):
        data = np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0)
        if data.ndim != 3 or not np.any(data > 0):
            raise IronmapError(f"{name}: registration needs a 3D image with positive values")
        images.append(data)
    start = time.perf_counter()
    fixed_img = to_ants(images[1], fixed_affine)
    moving_img = to_ants(images[0], moving_affine)
    spacing = np.asarray(moving_img.spacing)
    if np.any(spacing < grid_mm):
        coarse = np.maximum(spacing, grid_mm)
        sigma = np.sqrt(np.maximum(coarse**2 - spacing**2, 0.0)) / 2.355
        moving_img = ants.resample_image(
            ants.smooth_image(moving_img, tuple(sigma), sigma_in_physical_coordinates=True),
            tuple(coarse),
            use_voxels=False,
            interp_type=0,
        )
    transforms: list[str] = []
    try:
        with seeded(ants, seed):
            result = ants.registration(
                fixed_img,
                moving_img,
                type_of_transform="Rigid",
                aff_metric="mattes",
                aff_sampling=32,
                aff_random_sampling_rate=0.2,
                aff_iterations=(100, 50, 20),
                aff_shrink_factors=(4, 2, 1),
                aff_smoothing_sigmas=(2, 1, 0),
                random_seed=seed,
            )
        transforms = [*result["fwdtransforms"], *result["invtransforms"]]
        fixed_to_moving = _matrix_from_itk(result["fwdtransforms"][0])
        metric = float(
            ants.image_similarity(
                fixed_img, result["warpedmovout"], metric_type="MattesMutualInformation"
            )
        )
    finally:
        for path in set(transforms):  # ANTsPy leaves its transforms in the temp folder
            if os.path.isfile(path) and path.startswith(tempfile.gettempdir()):
                os.remove(path)
    return Coregistration(
        transform=np.linalg.inv(fixed_to_moving),
        metric=metric,
        seconds=time.perf_counter() - start,
        moving_name=moving_name,
    )


def coregister_segmentation(
    moving: NDArray[np.floating],
    moving_affine: NDArray[np.float64],
    fixed: NDArray[np.floating],
    fixed_affine: NDArray[np.float64],
    affines: Mapping[str, NDArray[np.float64]],
    *,
    moving_name: str = "the segmentation's image",
    n_threads: int | None = None,
) -> tuple[Coregistration, dict[str, NDArray[np.float64]]]:
    """Register a segmentation's own image to the GRE and carry its label images and masks.

    The entry point for any source of segmentations that comes with the image it was made on
    (a T1w / FLAIR with a BIDS dseg, FreeSurfer's ``orig.mgz`` with ``aseg.mgz``, ...).

    Parameters
    ----------
    moving, moving_affine
        The image the segmentation was made on, and its voxel -> scanner (RAS mm) affine.
    fixed, fixed_affine
        The GRE's first echo (or S0), shape (X, Y, Z), and its affine.
    affines : mapping of str to numpy.ndarray, shape (4, 4)
        Affines of the label images and masks made on ``moving`` (e.g. ``{"dseg": ...,
        "lesion": ...}``), in the moving image's scanner space.

    Returns
    -------
    Coregistration
        The registration (:meth:`Coregistration.record` for provenance).
    dict of str to numpy.ndarray, shape (4, 4)
        The same keys, their affines in the GRE's scanner space: give the label images with
        these affines to :func:`ironmap.regions.label_fractions` (partial volume) or any
        resampler; their voxels are not touched.
    """
    registration = register_rigid(
        moving, moving_affine, fixed, fixed_affine, moving_name=moving_name, n_threads=n_threads
    )
    return registration, {key: registration.carry(a) for key, a in affines.items()}


def segmentation_image(
    inputs: SessionInputs,
    *,
    shape: Sequence[int],
    affine: NDArray[np.float64],
    of: Path | None = None,
) -> Path | None:
    """The image the participant's dseg (or ``of``: its lesion mask) was made on, or None.

    In this order: for the dseg, the image its segmenter read when discovery found one
    (``inputs.dseg_image``: FreeSurfer's ``mri/orig.mgz``, SynthSeg's input,
    :mod:`ironmap.io.freesurfer`); the files named in the JSON sidecar ``Sources`` of the dseg
    (or ``of``; BIDS
    URIs ``bids:<dataset>:<path>``, or paths relative to the raw dataset, to the dseg's
    derivatives dataset, or absolute), the first that exists; else the session's T1w, then its
    FLAIR (``*_FLAIR.nii[.gz]`` beside the echoes; FLAIR first for a lesion mask), the first
    whose grid is the dseg's (``shape``, ``affine``).
    """
    import nibabel as nib

    from ..io.bids import session_name

    of = inputs.dseg if of is None else of
    if of is None:
        return None
    made_on = getattr(inputs, "dseg_image", None)  # FreeSurfer's orig.mgz, SynthSeg's input
    if of == inputs.dseg and made_on is not None and Path(made_on).is_file():
        return Path(made_on)
    name = session_name(inputs.subject, inputs.session)
    levels = 3 if inputs.session else 2  # sub-x[/ses-y]/anat
    files = [*inputs.echoes[:1], of]
    roots = [p.absolute().parents[levels] for p in files if len(p.absolute().parents) > levels]
    sidecar = of.with_name(_NIFTI.sub("", of.name) + ".json")
    if sidecar.is_file():
        try:
            sources = json.loads(sidecar.read_text()).get("Sources", [])
        except (ValueError, AttributeError):
            raise InputError(f"{sidecar}: not a readable JSON object") from None
        for source in [sources] if isinstance(sources, str) else sources:
            relative = re.sub(r"^bids:[^:]*:", "", str(source))
            path = Path(relative)
            for candidate in [path] if path.is_absolute() else [r / path for r in roots]:
                if candidate.is_file() and _NIFTI.search(relative):
                    return candidate
    flairs = sorted(inputs.echoes[0].parent.glob(f"{name}*_FLAIR.nii*")) if inputs.echoes else []
    t1ws = [inputs.t1w] if inputs.t1w else []
    for candidate in [*flairs, *t1ws] if of == inputs.lesion_mask else [*t1ws, *flairs]:
        img = nib.load(candidate)
        if same_grid(img.shape, img.affine, shape, affine):
            return candidate
    return None
