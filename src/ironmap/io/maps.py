"""Writing NIfTI maps with JSON sidecars: atomic, reproducible, never overwriting by accident.

Files are written to a temporary name in the target directory and moved into place with
:func:`os.replace`, so a killed run never leaves a half-written file under the final name.
``.nii.gz`` files are gzip-compressed with a zero timestamp and no embedded file name, so equal
images give byte-identical files.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike

from .. import __version__
from ..errors import InputError, IronmapError, IronmapWarning
from .echoes import sidecar_path

__all__ = [
    "atomic_write_bytes",
    "check_writable",
    "decay_map_paths",
    "save_nifti",
    "write_decay_maps",
    "write_error",
    "write_json",
    "write_nifti",
]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def check_writable(paths: Iterable[Path], *, force: bool) -> None:
    """Refuse (one line) if any of ``paths`` exists and ``force`` is false."""
    if force:
        return
    for path in paths:
        if Path(path).exists():
            raise InputError(f"{path} exists; pass --force to overwrite")


#: What to do about an operating-system error while writing, by ``errno``.
_WRITE_ADVICE = {
    errno.ENOSPC: "free space on that disk or choose another output folder",
    errno.EDQUOT: "free space within your disk quota or choose another output folder",
    errno.EACCES: "choose an output folder you can write to",
    errno.EPERM: "choose an output folder you can write to",
    errno.EROFS: "choose an output folder on a writable disk",
}


def write_error(path: str | Path, exc: OSError) -> IronmapError:
    """One-line :class:`~ironmap.errors.IronmapError` for ``exc`` raised writing ``path``.

    Names ``path`` (not a temporary file) and says what to do, e.g. ``OUT/x.nii.gz: cannot
    write: No space left on device; free space on that disk or choose another output folder``.
    """
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None and blocker != path:
        return IronmapError(
            f"{path}: cannot write: {blocker} is a file, not a folder; choose another output path"
        )
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _WRITE_ADVICE.get(exc.errno, "check that folder or choose another output folder")
    return IronmapError(f"{path}: cannot write: {reason}; {advice}")


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file + rename in the same directory).

    Raises
    ------
    IronmapError
        The folder cannot be created or written (disk full, permissions, a file in the way):
        one line naming ``path`` and what to do (:func:`write_error`). No temporary file is
        left behind.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs are for sharing
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def write_json(path: str | Path, content: dict[str, Any]) -> None:
    """Write a JSON document atomically (indented, keys in insertion order)."""
    atomic_write_bytes(path, (json.dumps(content, indent=2, allow_nan=False) + "\n").encode())


def save_nifti(img: nib.Nifti1Image, path: str | Path) -> None:
    """Save ``img`` atomically; ``.nii.gz`` output is byte-reproducible."""
    path = Path(path)
    raw = img.to_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.compress(raw, compresslevel=6, mtime=0)
    atomic_write_bytes(path, raw)


def write_nifti(
    data: ArrayLike,
    affine: ArrayLike,
    path: str | Path,
    *,
    sidecar: dict[str, Any],
    force: bool = False,
    header: nib.Nifti1Header | None = None,
    dtype: type = np.float32,
) -> Path:
    """Write a 3D map and its JSON sidecar.

    Parameters
    ----------
    data : array_like, shape (X, Y, Z)
        Values; NaN is kept (failed voxels are NaN by contract).
    affine : array_like, shape (4, 4)
    path : str or Path
        ``.nii.gz`` target; the sidecar goes beside it as ``.json``.
    sidecar : dict
        Sidecar content (``Units`` etc.).
    force : bool, optional
        Overwrite existing files.
    header : nibabel.Nifti1Header, optional
        Template header (voxel sizes, orientation codes); data type and shape are reset.
    dtype : numpy dtype, optional
        Stored data type (float32 by default).
    """
    path = Path(path)
    check_writable([path, sidecar_path(path)], force=force)
    arr = _stored(data, dtype, path)
    hdr = header.copy() if header is not None else None
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64), header=hdr)
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.header["scl_slope"], img.header["scl_inter"] = np.nan, np.nan
    save_nifti(img, path)
    write_json(sidecar_path(path), sidecar)
    return path


def _stored(data: ArrayLike, dtype: type, path: Path) -> np.ndarray:
    """``data`` as ``dtype``; finite values beyond a float type's range become +/-inf, counted
    in one :class:`~ironmap.errors.IronmapWarning` naming ``path`` (not numpy's "overflow
    encountered in cast")."""
    values = np.asarray(data)
    if not (np.issubdtype(dtype, np.floating) and np.issubdtype(values.dtype, np.floating)):
        return np.asarray(values, dtype=dtype)
    limit = np.finfo(dtype).max
    with np.errstate(over="ignore", invalid="ignore"):
        beyond = int(np.count_nonzero(np.isfinite(values) & (np.abs(values) > limit)))
        arr = np.asarray(values, dtype=dtype)
    if beyond:
        warnings.warn(
            f"{path}: {beyond} value(s) beyond the {np.dtype(dtype).name} range (|x| > "
            f"{limit:.3g}) stored as +/-inf; the input's intensity scale or a corrupt voxel "
            "is extreme",
            IronmapWarning,
            stacklevel=3,
        )
    return arr


#: Suffixes of the maps :func:`write_decay_maps` writes (docs/conventions.md names).
DECAY_MAPS = ("R2starmap", "T2starmap", "S0map", "desc-sd_R2starmap", "desc-failed_mask")


def decay_map_paths(prefix: str | Path) -> dict[str, Path]:
    """``{suffix: PREFIX_suffix.nii.gz}`` for every map of :data:`DECAY_MAPS`."""
    prefix = Path(prefix)
    return {key: prefix.with_name(f"{prefix.name}_{key}.nii.gz") for key in DECAY_MAPS}


def write_decay_maps(
    fit,
    affine: ArrayLike,
    prefix: str | Path,
    *,
    echo_times_s: ArrayLike,
    sources: Iterable[str | Path],
    force: bool = False,
    header: nib.Nifti1Header | None = None,
    extra_sidecar: dict[str, Any] | None = None,
    skull_stripped: bool = False,
) -> list[Path]:
    """Write the maps of a :class:`~ironmap.fitting.DecayFit` under ``prefix``.

    Writes ``PREFIX_R2starmap.nii.gz`` (1/s), ``PREFIX_T2starmap.nii.gz`` (s),
    ``PREFIX_S0map.nii.gz``, ``PREFIX_desc-sd_R2starmap.nii.gz`` (1/s) and
    ``PREFIX_desc-failed_mask.nii.gz`` (1 where the fit failed), each with a JSON sidecar.
    Nothing is written if any target exists and ``force`` is false.

    The maps' sidecars carry BIDS ``SkullStripped`` (required of derivative images but masks
    and segmentations): ``skull_stripped``, False by default since voxels outside the fit
    mask are NaN rather than zero and the fit mask keeps CSF and, around a segmentation's
    intracranial volume, a one-voxel rim of skull; a head mask keeps the whole skull. Pass
    True for a fit restricted to a brain mask. ``extra_sidecar`` may also set it.

    Returns
    -------
    list of Path
        The NIfTI files written.
    """
    maps = {
        "R2starmap": (fit.r2star, "1/s", "R2* = 1/T2*", np.float32),
        "T2starmap": (fit.t2star, "s", "T2* = 1/R2*", np.float32),
        "S0map": (fit.s0, "arbitrary", "signal extrapolated to TE = 0", np.float32),
        "desc-sd_R2starmap": (
            fit.r2star_sd,
            "1/s",
            "per-voxel standard deviation of R2* (Cramer-Rao bound at the estimate)",
            np.float32,
        ),
        "desc-failed_mask": (
            fit.failed.astype(np.uint8),
            "1",
            "1 where the fit failed (maps are NaN there)",
            np.uint8,
        ),
    }
    targets = decay_map_paths(prefix)
    check_writable([p for t in targets.values() for p in (t, sidecar_path(t))], force=force)
    common = {
        "EstimationAlgorithm": f"ironmap {fit.method}: {fit.method_description}",
        "EchoTime": [float(t) for t in np.asarray(echo_times_s)],
        "Sources": [str(s) for s in sources],
        "NoiseSigma": fit.sigma,
        "NoiseSigmaSource": fit.sigma_source,
        **_sigma_map_keys(fit),
        "ReceiveCoilsEffective": fit.coils,
        "SoftwareName": "ironmap",
        "SoftwareVersion": __version__,
        "SkullStripped": bool(skull_stripped),
        **(extra_sidecar or {}),
    }
    written = []
    for key, (values, units, description, dtype) in maps.items():
        sidecar = {"Units": units, "Description": description, **common}
        if key.endswith("_mask"):  # BIDS asks SkullStripped of images, not of masks
            sidecar.pop("SkullStripped")
        written.append(
            write_nifti(
                values,
                affine,
                targets[key],
                sidecar=sidecar,
                force=True,
                header=header,
                dtype=dtype,
            )
        )
    return written


def _sigma_map_keys(fit: Any) -> dict:
    """``NoiseSigmaRange``: 5th and 95th percentile of a noise map over the fitted voxels."""
    if getattr(fit, "sigma_map", None) is None:
        return {}
    inside = fit.sigma_map[np.isfinite(fit.r2star)]
    inside = inside[np.isfinite(inside)]
    if inside.size == 0:
        return {}
    low, high = np.percentile(inside, [5.0, 95.0])
    return {"NoiseSigmaRange": [round(float(low), 6), round(float(high), 6)]}
