"""Reading multi-echo gradient-echo magnitudes and their echo times.

Two inputs are accepted: one 4D NIfTI with the echoes on the 4th axis plus echo times given by
the user, or per-echo BIDS ``..._echo-<n>[_part-mag]_MEGRE.nii[.gz]`` files whose JSON sidecars
carry ``EchoTime`` in seconds. Every problem raises :class:`~ironmap.errors.InputError` with one
line naming the file and saying what to do.
"""

from __future__ import annotations

import itertools
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError, IronmapWarning
from .nifti import error_reason as _reason
from .nifti import load_image, load_volume, read_data

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
#: Largest JSON sidecar read, in bytes.
MAX_SIDECAR_BYTES = 16 * 2**20


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
    path: str | Path, echo_times: Sequence[float], *, te_unit: str = "s", part: str = "mag"
) -> MultiEchoImage:
    """Load one 4D NIfTI (echoes on axis 4) with the given echo times.

    Parameters
    ----------
    path : str or Path
    echo_times : sequence of float
        One per volume, in ``te_unit``.
    te_unit : {"s", "ms"}
    part : {"mag", "phase"}
        ``mag`` warns about negative values (impossible in magnitudes); ``phase`` does not.
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
    data = read_data(img, path, np.float32)
    if part == "mag":
        _check_magnitudes([(path, data)])
    return MultiEchoImage(
        data=_finite(data, path),
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
        merged.update(_read_json(side))
    return merged, found


def _read_json(side: Path) -> dict:
    """One JSON sidecar: an object, at most :data:`MAX_SIDECAR_BYTES`, nested < ~1000 deep."""
    try:
        if side.stat().st_size > MAX_SIDECAR_BYTES:
            raise InputError(
                f"{side}: {side.stat().st_size} bytes, more than the {MAX_SIDECAR_BYTES} a JSON "
                "sidecar may have; is it the right file?"
            )
        content = json.loads(side.read_bytes().decode("utf-8-sig"))
    except InputError:
        raise
    except RecursionError:
        raise InputError(f"{side}: JSON nested too deeply; a sidecar is a flat object") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{side}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    except (UnicodeDecodeError, ValueError, OSError) as exc:  # ValueError: a 5,000-digit int
        raise InputError(f"{side}: not valid JSON ({_reason(exc)})") from exc
    if not isinstance(content, dict):
        raise InputError(f"{side}: a JSON sidecar must hold an object")
    return content


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
    te = float(value) if abs(value) < 1e300 else float("inf")  # a 400-digit int overflows
    if not np.isfinite(te) or te <= 0:
        raise InputError(f"{side}: EchoTime must be a positive number of seconds, got {value!r}")
    if te > 1.0:
        raise InputError(
            f"{side}: EchoTime {te:g}: values above 1 s look like milliseconds; "
            "BIDS EchoTime is in seconds, fix the sidecar"
        )
    if te > MAX_TE_S:
        raise InputError(f"{side}: echo time {te:g} s is implausibly long for a GRE echo")
    return te, meta


def _echo_order(path: Path, meta: dict) -> dict[str, int]:
    """The echo's position as its ``echo-<n>`` entity and its sidecar ``EchoNumber`` say."""
    from .bids import parse_entities

    order = {}
    entity = parse_entities(path.name)[0].get("echo", "")
    if entity.isdigit():
        order["echo-"] = int(entity)
    number = meta.get("EchoNumber")
    if isinstance(number, int) and not isinstance(number, bool):
        order["EchoNumber "] = number
    return order


def _check_echo_order(files: list[Path], tes: Sequence[float], metas: Sequence[dict]) -> None:
    """Refuse echo times that contradict the echo entities or EchoNumbers, or repeat."""
    by_te = sorted(range(len(files)), key=lambda i: tes[i])
    for a, b in itertools.pairwise(by_te):
        if tes[a] == tes[b]:
            raise InputError(
                f"{sidecar_path(files[a])} and {sidecar_path(files[b])}: duplicate echo time "
                f"{tes[a]:g} s; each echo must have its own EchoTime"
            )
    orders = [_echo_order(f, m) for f, m in zip(files, metas, strict=True)]
    for key in ("echo-", "EchoNumber "):
        ranked = [i for i in by_te if key in orders[i]]
        for a, b in itertools.pairwise(ranked):
            if orders[a][key] >= orders[b][key]:  # b has the longer echo time
                first, second = sorted((a, b), key=lambda i: (orders[i][key], tes[i]))
                raise InputError(
                    f"{files[first]} ({key}{orders[first][key]}, EchoTime {tes[first]:g} s) "
                    f"and {files[second]} ({key}{orders[second][key]}, EchoTime "
                    f"{tes[second]:g} s): the echo times contradict the echo order; fix the "
                    "sidecars' EchoTime or the file names"
                )


def load_bids_echoes(paths: Sequence[str | Path], *, part: str = "mag") -> MultiEchoImage:
    """Load per-echo BIDS MEGRE files; echo times come from their sidecars.

    Parameters
    ----------
    paths : sequence of str or Path
        One file per echo, in any order (sorted by echo time here).
    part : {"mag", "phase", "real", "imag"}
        What the files must be: magnitudes (default), or ``part-phase``/``part-real``/
        ``part-imag`` files whose values are returned as stored (after ``scl_slope``); phase
        becomes radians in :func:`ironmap.io.phase.load_phase`, never here.

    Raises
    ------
    InputError
        Besides unreadable files and sidecars: echo times that contradict the order of the
        ``echo-<n>`` entities or of the sidecars' ``EchoNumber``, or that repeat.

    Warns
    -----
    IronmapWarning
        Magnitudes with negative values (int16 wraparound, wrong ``scl_slope``/``scl_inter``);
        the values are kept and the fit marks those voxels failed.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise InputError("no echo files given; pass the ..._echo-<n>_part-mag_MEGRE.nii.gz files")
    for f in files:
        if part == "mag" and "_part-phase" in f.name:
            raise InputError(f"{f}: a phase image; R2* needs magnitudes, pass the part-mag files")
        if part == "mag" and re.search(r"_part-(real|imag)_", f.name):
            raise InputError(f"{f}: a real/imaginary image; pass the part-mag files")
        if part != "mag" and f"_part-{part}_" not in f.name:
            raise InputError(f"{f}: not a part-{part} image")
    images = [load_image(f) for f in files]
    tes, metas = zip(*(_echo_time_from_sidecar(f) for f in files), strict=True)
    _check_echo_order(files, tes, metas)
    first = images[0]
    for f, img in zip(files, images, strict=True):
        if len(img.shape) not in (3, 4) or (len(img.shape) == 4 and img.shape[3] != 1):
            raise InputError(f"{f}: expected one 3D volume per echo, got shape {img.shape}")
        if img.shape[:3] != first.shape[:3] or not np.allclose(
            img.affine, first.affine, atol=1e-4
        ):
            raise InputError(
                f"{f}: grid (shape {img.shape[:3]}, affine) differs from {files[0].name}; "
                f"all echoes must share one grid (compared with {files[0]})"
            )
    volumes = [
        read_data(img, f, np.float32).reshape(first.shape[:3])
        for f, img in zip(files, images, strict=True)
    ]
    if part == "mag":
        _check_magnitudes(list(zip(files, volumes, strict=True)))
    order = np.argsort(tes, kind="stable")
    te = validate_echo_times(
        np.asarray(tes)[order],
        n_volumes=len(files),
        source=sidecar_path(files[0]) if len(files) == 1 else files[0].parent / "*.json",
        hint="BIDS EchoTime is in seconds; fix the sidecars",
    )
    data = _finite(np.stack([volumes[i] for i in order], axis=-1), files[0])
    return MultiEchoImage(
        data=data,
        affine=first.affine.copy(),
        header=first.header.copy(),
        echo_times_s=te,
        sources=tuple(files[i] for i in order),
        field_strength_t=_field_strength(metas[order[0]]),
    )


def _check_magnitudes(arrays: Sequence[tuple[Path, NDArray[np.float32]]]) -> None:
    """One warning naming each file with negative magnitudes, their count and likely cause."""
    found = []
    for path, data in arrays:
        negative = int(np.count_nonzero(data < 0))
        if negative:
            bad = int(data.size - np.count_nonzero(np.isfinite(data)))
            also = f" and {bad} non-finite" if bad else ""
            found.append(f"{path}: {negative} negative magnitude voxel value(s){also}")
    if found:
        warnings.warn(
            "; ".join(found) + " (magnitudes cannot be negative: typical of int16 wraparound "
            "or a wrong scl_slope/scl_inter; those voxels are marked failed, check the "
            "conversion)",
            IronmapWarning,
            stacklevel=3,
        )


def _finite(data: NDArray[np.float32], path: Path) -> NDArray[np.float32]:
    if not np.isfinite(data).any():
        raise InputError(f"{path}: no finite values (all NaN or Inf); check the conversion")
    return data
