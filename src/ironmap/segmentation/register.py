"""Template-to-subject registration with ANTs (optional extra ``ironmap[atlas]``).

The bundled template (:func:`~.atlas.load_atlas`) is registered to a subject image (a T1w when
there is one, else the first-echo magnitude or the S0 map) in three stages, as in
``antsRegistrationSyN.sh`` but tuned for a 1-2 mm subject grid:

1. affine, Mattes mutual information (handles the T1w-template to PD/T2*-weighted contrast),
   on the whole image;
2. affine again, the metric restricted to the template brain warped by step 1 and dilated by
   three voxels, so that scalp in the subject image no longer pulls on the brain's edge;
3. symmetric normalisation (SyN) with local cross-correlation (radius 2 voxels), the metric
   restricted to the template brain warped by step 2, dilated by two voxels.

The labels are then pulled onto a reference grid (the R2* grid) with ANTs' label-preserving
``genericLabel`` interpolator. Registration is made deterministic with a fixed random seed and a
given thread count (with several threads ITK may differ in the last digits between runs).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..errors import IronmapError
from .atlas import Atlas, load_atlas

__all__ = ["Registration", "check_ants", "register_atlas", "to_ants"]

_LPS = np.diag([-1.0, -1.0, 1.0])  # ITK's physical space is LPS, NIfTI's is RAS


_MISSING = (
    "--segmentation atlas needs ANTsPy; install the atlas extra with "
    "`pip install 'ironmap[atlas]'`"
)


def check_ants(message: str = _MISSING) -> None:
    """Raise a one-line :class:`IronmapError` (``message``) when ANTsPy is not installed
    (without importing it: ITK's thread count must be set before its first import)."""
    if importlib.util.find_spec("ants") is None:
        raise IronmapError(message)


def _ants(n_threads: int | None = None):
    """Import ANTsPy; ITK reads its thread count once, so it is set before the first import."""
    if n_threads is not None:
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(max(int(n_threads), 1)))
    try:
        import ants
    except ImportError as exc:
        raise IronmapError(_MISSING) from exc
    return ants


@contextmanager
def seeded(ants, seed: int) -> Iterator[None]:
    """ANTs registrations with a fixed random seed inside the block.

    ANTsPy 0.6 ignores ``ants.registration(random_seed=...)`` (it lands in ``**kwargs``) and
    passes ``--random-seed`` only from ``ants.config._random_seed``; this sets that for the
    block and restores it after (``ants.set_ants_deterministic`` would also change the global
    thread count and NumPy's seed).
    """
    config = getattr(ants, "config", None)
    if config is None or not hasattr(config, "_random_seed"):
        yield
        return
    previous = config._random_seed
    config._random_seed = int(seed)
    try:
        yield
    finally:
        config._random_seed = previous


def to_ants(data: np.ndarray, affine: np.ndarray):
    """An ``ants.ANTsImage`` of a 3D array with a NIfTI (RAS) voxel-to-mm affine."""
    ants = _ants()
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = _LPS @ affine[:3, :3] / spacing
    return ants.from_numpy(
        np.ascontiguousarray(data, dtype=np.float32),
        origin=tuple(float(v) for v in _LPS @ affine[:3, 3]),
        spacing=tuple(float(v) for v in spacing),
        direction=direction,
    )


@dataclass(frozen=True)
class Registration:
    """Atlas labels pulled onto a subject grid.

    Attributes
    ----------
    labels : numpy.ndarray of int16, shape (X, Y, Z)
        Atlas codes (:data:`~.atlas.ATLAS_LABELS`) on the reference grid.
    brain : numpy.ndarray of bool, shape (X, Y, Z)
        Template brain mask on the reference grid.
    seconds : float
        Wall time of the registration.
    """

    labels: NDArray[np.int16]
    brain: NDArray[np.bool_]
    seconds: float


def register_atlas(
    fixed: NDArray[np.floating],
    fixed_affine: NDArray[np.float64],
    *,
    reference_shape: tuple[int, int, int] | None = None,
    reference_affine: NDArray[np.float64] | None = None,
    atlas: Atlas | None = None,
    iterations: tuple[int, ...] = (50, 30, 10),
    grid_mm: float = 2.0,
    min_brain_ml: float = 800.0,
    name: str = "the registration target",
    n_threads: int | None = None,
    seed: int = 20140601,
) -> Registration:
    """Register the template to ``fixed`` and pull the atlas labels onto the reference grid.

    Parameters
    ----------
    fixed : numpy.ndarray, shape (X, Y, Z)
        Subject image the template is registered to (any contrast; NaN treated as 0).
    fixed_affine : numpy.ndarray, shape (4, 4)
        Its voxel-to-scanner (RAS mm) affine.
    reference_shape, reference_affine : optional
        Grid to pull the labels onto (default: the fixed image's grid).
    atlas : Atlas, optional
        Default :func:`~.atlas.load_atlas`.
    iterations : tuple of int, optional
        SyN iterations per resolution level (coarse to fine).
    grid_mm : float, optional
        Finer targets (e.g. a 1 mm T1w) are smoothed and resampled to this voxel size (mm) for
        the registration; the labels still land on the reference grid.
    min_brain_ml : float, optional
        Least brain volume (mL, after the first affine stage) the target must cover.
    name : str, optional
        How errors name the target (its file).
    n_threads : int, optional
        ITK threads, when ANTsPy is first imported and ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``
        is not set (ITK reads it once per process).
    seed : int, optional
        Random seed of ANTs' metric sampling, also set as ``ANTS_RANDOM_SEED`` (what makes two
        runs with one thread give the same labels).

    Returns
    -------
    Registration

    Raises
    ------
    IronmapError
        No positive values in the target, or a target that covers too little brain.
    """
    ants = _ants(n_threads)
    # ANTsPy's random_seed alone left runs differing (68,093 of 183,766 brain voxels of a demo
    # participant, one thread); ANTs also reads its seed from the environment
    os.environ["ANTS_RANDOM_SEED"] = str(int(seed))
    atlas = load_atlas() if atlas is None else atlas
    fixed = np.nan_to_num(np.asarray(fixed, dtype=np.float32), nan=0.0, posinf=0.0)
    if fixed.ndim != 3 or not np.any(fixed > 0):
        raise IronmapError("the registration target must be a 3D image with positive values")
    reference_shape = fixed.shape if reference_shape is None else tuple(reference_shape)
    reference_affine = fixed_affine if reference_affine is None else reference_affine
    start = time.perf_counter()
    transforms: set[str] = set()
    try:
        fixed_img = to_ants(fixed, fixed_affine)
        spacing = np.asarray(fixed_img.spacing)
        if np.any(spacing < grid_mm):  # e.g. a 1 mm T1w: register at grid_mm, 8x fewer voxels
            coarse = np.maximum(spacing, grid_mm)
            sigma = np.sqrt(np.maximum(coarse**2 - spacing**2, 0.0)) / 2.355  # mm, anti-alias
            smoothed = ants.smooth_image(
                fixed_img, tuple(sigma), sigma_in_physical_coordinates=True
            )
            fixed_img = ants.resample_image(
                smoothed, tuple(coarse), use_voxels=False, interp_type=0
            )
        moving = to_ants(atlas.template, atlas.affine)
        brain_img = to_ants(atlas.brain.astype(np.float32), atlas.affine)

        def brain_mask(chain: list[str], dilate: int):
            warped = ants.apply_transforms(fixed_img, brain_img, chain, interpolator="linear")
            mask = ndimage.binary_dilation(warped.numpy() > 0.5, iterations=dilate)
            return fixed_img.new_image_like(mask.astype(np.float32))

        whole = ants.registration(
            fixed_img, moving, type_of_transform="Affine", aff_metric="mattes", random_seed=seed
        )
        transforms.update(whole["fwdtransforms"])
        covered = brain_mask(whole["fwdtransforms"], 0).numpy().sum() * np.prod(fixed_img.spacing)
        if covered / 1000.0 < min_brain_ml:
            raise IronmapError(
                f"{name}: covers only {covered / 1000.0:.0f} mL of the registered template brain; "
                "atlas segmentation needs a whole-brain image (give a T1w, or a whole-brain GRE)"
            )
        affine_reg = ants.registration(  # again, within the brain: scalp no longer pulls
            fixed_img,
            moving,
            type_of_transform="Affine",
            aff_metric="mattes",
            initial_transform=whole["fwdtransforms"][0],
            mask=brain_mask(whole["fwdtransforms"], 3),
            random_seed=seed,
        )
        transforms.update(affine_reg["fwdtransforms"])
        syn = ants.registration(
            fixed_img,
            moving,
            type_of_transform="SyNOnly",
            initial_transform=affine_reg["fwdtransforms"][0],
            syn_metric="CC",
            syn_sampling=2,
            reg_iterations=tuple(iterations),
            mask=brain_mask(affine_reg["fwdtransforms"], 2),
            random_seed=seed,
        )
        transforms.update(syn["fwdtransforms"], syn["invtransforms"])
        reference = to_ants(np.zeros(reference_shape, np.float32), reference_affine)
        labels = ants.apply_transforms(
            reference,
            to_ants(atlas.labels.astype(np.float32), atlas.affine),
            syn["fwdtransforms"],
            interpolator="genericLabel",
        ).numpy()
        brain_ref = ants.apply_transforms(
            reference, brain_img, syn["fwdtransforms"], interpolator="linear"
        ).numpy()
    finally:
        for path in transforms:  # ANTsPy leaves its transforms in the temp folder
            if os.path.isfile(path) and path.startswith(tempfile.gettempdir()):
                os.remove(path)
    return Registration(
        labels=np.rint(labels).astype(np.int16),
        brain=brain_ref > 0.5,
        seconds=time.perf_counter() - start,
    )
