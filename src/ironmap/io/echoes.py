"""Reading multi-echo gradient-echo magnitudes and their echo times.

Two inputs are accepted: one 4D NIfTI with the echoes on the 4th axis plus echo times given by
the user, or per-echo BIDS ``..._echo-<n>[_part-mag]_MEGRE.nii[.gz]`` files whose JSON sidecars
carry ``EchoTime`` in seconds. Every problem raises :class:`~ironmap.errors.InputError` with one
line naming the file and saying what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = [
    "MultiEchoImage",
    "load_bids_echoes",
    "load_image",
    "load_multiecho",
    "load_volume",
    "read_sidecar",
    "sidecar_path",
    "validate_echo_times",
]

#: Largest plausible echo time of a gradient-echo acquisition, in seconds.
MAX_TE_S = 0.5


@dataclass(frozen=True)
class MultiEchoImage:
    """Magnitudes of all echoes on one grid.

    Attributes
    ----------
    data : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes (float32).
    affine : numpy.ndarray, shape (4, 4)
        Voxel to scanner (RAS, mm) transform.
    header : nibabel.Nifti1Header
        Header of the first file (voxel sizes, units).
    echo_times_s : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds, increasing.
    sources : tuple of pathlib.Path
        The files read.
    field_strength_t : float or None
        ``MagneticFieldStrength`` (T) from the first echo's sidecar; None when absent or not a
        number (and always for ``ironmap fit MAG --te``).
    """

    data: NDArray[np.float32]
    affine: NDArray[np.float64]
    header: nib.Nifti1Header
    echo_times_s: NDArray[np.float64]
    sources: tuple[Path, ...]
    field_strength_t: float | None = None


def load_image(path: str | Path) -> nib.Nifti1Image:
    """Open a NIfTI file, with one-line errors for missing or unreadable files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: No such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a NIfTI file (.nii or .nii.gz)")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read as NIfTI ({reason})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"{path}: not a NIfTI image; convert it to .nii.gz first")
    return img


def load_volume(path: str | Path) -> tuple[NDArray, NDArray[np.float64]]:
    """Data and affine of a 3D image (a 4D image holding one volume is accepted)."""
    img = load_image(path)
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D image, got shape {data.shape}")
    return data, img.affine.copy()


def validate_echo_times(
    echo_times_s: ArrayLike, *, n_volumes: int, source: str | Path, hint: str = ""
) -> NDArray[np.float64]:
    """Check echo times (seconds) against the data; return them as a float64 array.

    Parameters
    ----------
    echo_times_s : array_like, shape (n_echoes,)
    n_volumes : int
        Number of echo volumes in the data.
    source : str or Path
        Named in error messages.
    hint : str, optional
        How to fix ms-looking values (differs between 4D input and BIDS sidecars).
    """
    te = np.asarray(echo_times_s, dtype=np.float64).ravel()
    if te.size != n_volumes:
        raise InputError(
            f"{source}: {n_volumes} echo volumes but {te.size} echo times; "
            "give one echo time per volume"
        )
    if te.size < 2:
        raise InputError(f"{source}: R2* needs at least 2 echoes, got {te.size}")
    if not np.all(np.isfinite(te)) or np.any(te <= 0):
        raise InputError(f"{source}: echo times must be positive numbers, got {te.tolist()}")
    if te.max() > 1.0:
        raise InputError(
            f"{source}: echo times {te.tolist()} look like milliseconds; {hint or 'give seconds'}"
        )
    if te.max() > MAX_TE_S:
        raise InputError(f"{source}: echo time {te.max()} s is implausibly long for a GRE echo")
    steps = np.diff(te)
    if np.any(steps == 0):
        dup = te[1:][steps == 0][0]
        raise InputError(f"{source}: duplicate echo time {dup} s; each echo must be unique")
    if np.any(steps < 0):
        raise InputError(
            f"{source}: echo times {te.tolist()} are not increasing; list them in order"
        )
    return te


def load_multiecho(
    path: str | Path, echo_times: Sequence[float], *, te_unit: str = "s"
) -> MultiEchoImage:
    """Load one 4D NIfTI (echoes on axis 4) with the given echo times.

    Parameters
    ----------
    path : str or Path
    echo_times : sequence of float
        One per volume, in ``te_unit``.
    te_unit : {"s", "ms"}
    """
    if te_unit not in ("s", "ms"):
        raise InputError(f"--te-unit must be 's' or 'ms', got {te_unit!r}")
    path = Path(path)
    img = load_image(path)
    if img.ndim != 4:
        raise InputError(
            f"{path}: expected a 4D image with echoes on the 4th axis, got shape {img.shape}; "
            "for one file per echo use --bids-echoes"
        )
    te = np.asarray(echo_times, dtype=np.float64) * (1e-3 if te_unit == "ms" else 1.0)
    te = validate_echo_times(te, n_volumes=img.shape[3], source=path, hint="pass --te-unit ms")
    return MultiEchoImage(
        data=_finite(_as_float32(img, path), path),
        affine=img.affine.copy(),
        header=img.header.copy(),
        echo_times_s=te,
        sources=(path,),
    )


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a NIfTI file (``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    name = re.sub(r"\.nii(\.gz)?$", "", path.name)
    return path.with_name(name + ".json")


def read_sidecar(path: str | Path) -> tuple[dict, list[Path]]:
    """Metadata of a BIDS file under the inheritance principle.

    JSON files with the same suffix whose entities are a subset of the file's, from the dataset
    root (the folder holding ``dataset_description.json``, at most 5 levels up) down to the
    file's folder, are merged in that order: deeper files override.

    Returns
    -------
    metadata : dict
    files : list of Path
        The JSON files read, top level first.
    """
    from .bids import parse_entities  # bids.py imports nothing from this module

    path = Path(path)
    entities, suffix = parse_entities(path.name)
    found: list[Path] = []
    folder = path.parent
    for _ in range(5):
        for candidate in sorted(folder.glob("*.json")):
            cand_entities, cand_suffix = parse_entities(candidate.name)
            if cand_suffix == suffix and all(
                entities.get(k) == v for k, v in cand_entities.items()
            ):
                found.append(candidate)
        if (folder / "dataset_description.json").exists() or folder.parent == folder:
            break
        folder = folder.parent
    found.reverse()
    merged: dict = {}
    for side in found:
        try:
            content = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise InputError(f"{side}: not valid JSON ({reason})") from exc
        if not isinstance(content, dict):
            raise InputError(f"{side}: a JSON sidecar must hold an object")
        merged.update(content)
    return merged, found


def _field_strength(meta: dict) -> float | None:
    """``MagneticFieldStrength`` in tesla, None when absent or not a number."""
    try:
        value = float(meta["MagneticFieldStrength"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _echo_time_from_sidecar(path: Path) -> tuple[float, dict]:
    """``(EchoTime in s, the merged sidecar metadata)`` of one echo file."""
    side = sidecar_path(path)
    meta, files = read_sidecar(path)
    if not files:
        raise InputError(
            f"{side}: No such file; every echo needs a JSON sidecar with EchoTime (s)"
        )
    if "EchoTime" not in meta:
        raise InputError(
            f"{side}: no 'EchoTime' key; add EchoTime in seconds (BIDS) "
            "or use 'ironmap fit MAG --te ...'"
        )
    value = meta["EchoTime"]
    if isinstance(value, str):  # seen in the wild ("0.02"); accept plain numbers only
        try:
            value = float(value)
        except ValueError:
            value = meta["EchoTime"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{side}: EchoTime must be a number in seconds, got {value!r}")
    return float(value), meta


def load_bids_echoes(paths: Sequence[str | Path], *, part: str = "mag") -> MultiEchoImage:
    """Load per-echo BIDS MEGRE files; echo times come from their sidecars.

    Parameters
    ----------
    paths : sequence of str or Path
        One file per echo, in any order (sorted by echo time here).
    part : {"mag", "phase"}
        What the files must be: magnitudes (default) or phases in radians.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("no echo files given; pass the ..._echo-<n>_part-mag_MEGRE.nii.gz files")
    for f in files:
        if part == "mag" and "_part-phase" in f.name:
            raise InputError(f"{f}: a phase image; R2* needs magnitudes, pass the part-mag files")
        if part == "phase" and "_part-phase" not in f.name:
            raise InputError(f"{f}: not a part-phase image")
    images = [load_image(f) for f in files]
    tes, metas = zip(*(_echo_time_from_sidecar(f) for f in files), strict=True)
    first = images[0]
    volumes = []
    for f, img in zip(files, images, strict=True):
        if img.ndim == 4 and img.shape[3] == 1:
            img = img.slicer[..., 0]
        if img.ndim != 3:
            raise InputError(f"{f}: expected one 3D volume per echo, got shape {img.shape}")
        if img.shape[:3] != first.shape[:3] or not np.allclose(
            img.affine, first.affine, atol=1e-4
        ):
            raise InputError(
                f"{f}: grid (shape {img.shape[:3]}, affine) differs from {files[0].name}; "
                "all echoes must share one grid"
            )
        volumes.append(np.asarray(img.dataobj, dtype=np.float32))
    order = np.argsort(tes, kind="stable")
    te = validate_echo_times(
        np.asarray(tes)[order],
        n_volumes=len(files),
        source=sidecar_path(files[order[0]]).parent / "*.json",
        hint="BIDS EchoTime is in seconds; fix the sidecars",
    )
    data = _finite(np.stack([volumes[i] for i in order], axis=-1), files[0])
    if part == "phase" and np.nanmax(np.abs(data)) > np.pi + 1e-3:
        raise InputError(
            f"{files[0]}: phase values up to {np.nanmax(np.abs(data)):.4g}; phase images must be "
            "in radians (-pi..pi), rescale them or set scl_slope"
        )
    return MultiEchoImage(
        data=data,
        affine=first.affine.copy(),
        header=first.header.copy(),
        echo_times_s=te,
        sources=tuple(files[i] for i in order),
        field_strength_t=_field_strength(metas[order[0]]),
    )


def _finite(data: NDArray[np.float32], path: Path) -> NDArray[np.float32]:
    if not np.isfinite(data).any():
        raise InputError(f"{path}: no finite values (all NaN or Inf); check the conversion")
    return data


def _as_float32(img: nib.Nifti1Image, path: Path) -> NDArray[np.float32]:
    try:
        return np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the image data ({exc})") from exc
