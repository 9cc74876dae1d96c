"""Opening NIfTI files safely: the header is checked against the file before any data are read.

FreeSurfer's MGH images (``.mgz``, ``.mgh``: ``aseg.mgz``, ``orig.mgz`` ...) are opened the same
way; their affine is nibabel's ``vox2ras`` (scanner RAS, the space of the NIfTI sform), not the
tkr-RAS of FreeSurfer's surfaces.

A corrupt or hostile header never causes a huge allocation or a traceback: every problem is an
:class:`~ironmap.errors.InputError` with one line naming the file and saying what to do.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

__all__ = [
    "MAX_GZIP_RATIO",
    "MAX_VOXELS",
    "MGH_SUFFIXES",
    "error_reason",
    "load_image",
    "load_volume",
    "read_data",
]

#: Largest image read, in voxels (2^30: 4 GiB as float32, ~8x a 0.5 mm whole-brain 12-echo GRE).
MAX_VOXELS = 2**30
#: Deflate compresses at most ~1032:1, so a ``.nii.gz`` holds at most this many times its size.
MAX_GZIP_RATIO = 1100
#: File endings read as FreeSurfer MGH images, and whether each is gzip-compressed.
MGH_SUFFIXES = {".mgz": True, ".mgh": False}


def load_image(path: str | Path, *, complex_ok: bool = False) -> nib.Nifti1Image | nib.MGHImage:
    """Open a NIfTI (or FreeSurfer MGH) file and check its header against the file; reads no
    image data.

    The header must describe real numbers (integers or floats), at least one and at most
    :data:`MAX_VOXELS` voxels, a finite invertible affine, and no more data than the file can
    hold: after ``vox_offset`` in a ``.nii``, at most :data:`MAX_GZIP_RATIO` times the file
    size in a ``.nii.gz`` (deflate's limit), so a corrupt header never causes a huge allocation.
    ``complex_ok=True`` also accepts complex data (a complex-valued multi-echo image,
    :func:`ironmap.io.phase.load_complex`).

    Raises
    ------
    InputError
        One line naming the file, for a missing, unreadable or implausible file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: No such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a NIfTI file (.nii or .nii.gz)")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        kind = "FreeSurfer MGH" if path.suffix.lower() in MGH_SUFFIXES else "NIfTI"
        raise InputError(f"{path}: cannot read as {kind} ({error_reason(exc)})") from exc
    mgh = path.suffix.lower() in MGH_SUFFIXES and isinstance(img, nib.MGHImage)
    if not (mgh or isinstance(img, nib.Nifti1Image | nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI (or .mgz) image; convert it to .nii.gz first")
    try:
        _check_header(img, path, complex_ok=complex_ok)
    except InputError:
        raise
    except Exception as exc:  # a header nibabel parses but cannot interpret
        raise InputError(f"{path}: corrupt NIfTI header ({error_reason(exc)})") from exc
    return img


def error_reason(exc: BaseException) -> str:
    """``"Type: first line"`` of an exception, for one-line messages."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_header(img: nib.Nifti1Image, path: Path, *, complex_ok: bool = False) -> None:
    header = img.header
    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = header.get_data_dtype()
    claim = " x ".join(map(str, shape)) or "no"
    if not shape or min(shape) < 1:
        raise InputError(f"{path}: the header describes {claim} voxels; the image is empty")
    n_voxels = int(np.prod(shape, dtype=object))
    if n_voxels > MAX_VOXELS:
        raise InputError(
            f"{path}: header claims {claim} = {n_voxels} voxels, more than the {MAX_VOXELS} "
            "ironmap reads; fix the header or crop the image"
        )
    if dtype.fields is not None or dtype.kind not in ("biufc" if complex_ok else "biuf"):
        raise InputError(
            f"{path}: data type {dtype} is not a real number; save it as int or float"
        )
    needed = int(header.get_data_offset()) + n_voxels * dtype.itemsize
    size = path.stat().st_size
    gzipped = _gzipped(path)
    bound = MAX_GZIP_RATIO * size if gzipped else size
    if path.suffix.lower() not in (".nii", ".gz", *MGH_SUFFIXES):
        bound = None
    if bound is not None and needed > bound:
        holds = f"{size} bytes" + (" compressed" if gzipped else "")
        raise InputError(
            f"{path}: header claims {claim} voxels of {dtype} ({needed} bytes) but the file has "
            f"{holds}; it is truncated or its header is wrong, export it again"
        )
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)) or np.linalg.det(affine[:3, :3]) == 0:
        raise InputError(
            f"{path}: the voxel-to-scanner affine (sform/qform, pixdim) is not finite and "
            "invertible; fix the header"
        )


def _gzipped(path: Path) -> bool:
    """Whether ``path`` is gzip-compressed by its name (``.nii.gz``, ``.mgz``)."""
    return path.suffix == ".gz" or MGH_SUFFIXES.get(path.suffix.lower(), False)


def read_data(img: nib.Nifti1Image, path: Path, dtype: type | None = None) -> NDArray:
    """The image data, with one-line errors for corrupt, truncated or too large files."""
    try:
        if _gzipped(path):  # decompress once, to the end, so that gzip checks its CRC
            img = type(img).from_bytes(_decompress(path))
        with np.errstate(all="ignore"):  # overflow in scl_slope: Inf, counted by the callers
            return np.asarray(img.dataobj, dtype=dtype)
    except MemoryError:
        raise InputError(
            f"{path}: not enough memory to read its {img.shape} image; use a machine with more "
            "memory or crop the image"
        ) from None
    except InputError:
        raise
    except Exception as exc:  # gzip, zlib, EOF and nibabel errors of a damaged file
        raise InputError(
            f"{path}: truncated or corrupt image data ({error_reason(exc)}); "
            "export or copy it again"
        ) from exc


def _decompress(path: Path) -> bytes:
    """The whole decompressed stream: reading to the end makes gzip check its CRC (nibabel
    alone stops after the image data and misses a corrupt tail)."""
    with gzip.open(path, "rb") as stream:
        return stream.read()


def load_volume(path: str | Path) -> tuple[NDArray, NDArray[np.float64]]:
    """Data and affine of a 3D image (a 4D image holding one volume is accepted)."""
    path = Path(path)
    img = load_image(path)
    shape = tuple(int(n) for n in img.shape)  # MGH headers hold numpy integers
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] != 1):
        raise InputError(f"{path}: expected a 3D image, got shape {shape}")
    data = read_data(img, path)
    return data.reshape(data.shape[:3]), img.affine.copy()
