"""Reading multi-echo phase: the one place where phase becomes radians.

Every phase input goes through :func:`load_phase` (a 4D file or per-echo BIDS ``part-phase``
files), :func:`load_real_imag` (BIDS ``part-real``/``part-imag`` pairs) or
:func:`load_complex` (a complex-valued 4D NIfTI), and comes out as a :class:`PhaseImage`:
wrapped phase in radians, in ironmap's sign convention, with the per-echo readout offsets
corrected where asked. Phase is never checked as a magnitude.

Units (:func:`detect_phase_units`, from the values of all echoes together, after the NIfTI
``scl_slope``/``scl_inter``):

- ``rad``: the values lie within -pi..pi (or 0..2pi) and span at least
  :data:`RADIAN_SPAN` of a cycle; used as they are.
- ``siemens``: integers within -4096..4095 spanning at least :data:`RADIAN_SPAN` of it
  (Siemens DICOM, dcm2niix without scaling); radians = value x pi / 4096.
- ``siemens_unsigned``: integers within 0..4095 spanning at least :data:`RADIAN_SPAN` of it;
  radians = value x 2 pi / 4096 - pi. (Integers that span less, e.g. milliradians
  -3142..3142, are ``scaled``.)
- ``scaled``: any other range whose values fill it evenly as wrapped phase does (each of
  :data:`UNIFORM_BINS` equal bins of the range holds at least :data:`MIN_BIN_SHARE` of its even
  share): the range is one cycle, radians = value x 2 pi / (max - min), with an
  :class:`~ironmap.errors.IronmapWarning` naming the factor. The real phase of
  ``../shared/data/invivo_megre_crop`` (+/-0.00367) reads as a factor of 855.
- anything else (a field map, unwrapped phase, a magnitude image, a constant) is refused
  with a one-line :class:`~ironmap.errors.InputError` naming the file.

A sidecar that declares ``"Units": "rad"`` (BIDS) decides what the values alone cannot:
values within -pi..pi (or 0..2pi) that span little of the cycle unevenly (phase with the receive
offset removed, a small field of view) are then radians; values beyond one cycle contradict it
and are refused. It does not override the rules above (values that fill a narrow range evenly
are ``scaled`` whatever the sidecar says: the real crop ships so).

Sign: ironmap's field is positive where the spins precess faster than the reference, i.e. the
phase ``phi(TE) = phi_0 + 2 pi f TE`` grows with TE for ``f > 0``; a paramagnetic source
(iron, deoxygenated blood) gives a positive field inside and along B0 from it. Scanners differ in
the sign they store; ``sign=-1`` (``--phase-sign -1``, or ``"PhaseSign": -1`` in the phase's
JSON sidecar for ``auto``) flips it. The R2* field-gradient correction does not depend on the
sign; the lesions' local field and susceptibility do.

Per-echo offsets: the field is estimated from echo differences (:mod:`ironmap.fitting.gradients`)
so a phase offset common to all echoes (the receive-coil phase ``phi_0(r)``) cancels. A bipolar
readout (``readout="bipolar"``, ``--readout bipolar``, or ``"ReadoutPolarity": "bipolar"`` in the
sidecar for ``auto``) adds ``(-1)^n beta(r)`` to echo ``n``; :func:`bipolar_offset` estimates
``beta`` as a constant plus a linear gradient in space from the second differences of three
consecutive, equally spaced echoes (the odd/even model of Li et al., MRM 2015,
doi:10.1002/mrm.25197; Feng et al. 2012, doi:10.1002/mrm.24123) and removes it. The constant is
known modulo pi/2 (the second difference measures ``4 beta``); curvature of ``beta`` beyond the
linear term is not modelled.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..defaults import PHASE_SIGNS, READOUTS
from ..errors import InputError, IronmapWarning
from .echoes import (
    MultiEchoImage,
    load_bids_echoes,
    read_sidecar,
    sidecar_path,
    validate_echo_times,
)
from .nifti import load_image, read_data

__all__ = [
    "PHASE_SIGNS",
    "READOUTS",
    "PhaseImage",
    "PhaseUnits",
    "bipolar_offset",
    "detect_phase_units",
    "load_complex",
    "load_phase",
    "load_real_imag",
]

#: Share of a cycle that values within -pi..pi must span to be taken as radians (and of the
#: integer range, Siemens integers).
RADIAN_SPAN = 0.9
#: Tolerance (radians) on the -pi..pi (0..2pi) limits of radian phase.
RADIAN_TOL = 1e-3
#: Siemens DICOM phase: integers -4096..4095 (signed) or 0..4095 (unsigned).
SIEMENS_LEVELS = 4096
#: Bins of the observed range whose occupancy tells wrapped phase of another scale.
UNIFORM_BINS = 16
#: Least share of its even share that each bin of wrapped phase holds (the real crop's
#: emptiest bin holds 0.63 of it, a magnitude image's none).
MIN_BIN_SHARE = 0.25


@dataclass(frozen=True)
class PhaseUnits:
    """How stored phase values become radians: ``radians = value * scale + offset``.

    Attributes
    ----------
    units : {"rad", "siemens", "siemens_unsigned", "scaled", "complex"}
    scale : float
        Radians per stored unit.
    offset : float
        Radians added after scaling (-pi for ``siemens_unsigned``, else 0).
    """

    units: str
    scale: float
    offset: float = 0.0

    def to_radians(self, data: NDArray) -> NDArray[np.float32]:
        """Wrapped phase (radians, -pi..pi) of ``data`` in these units."""
        rad = np.asarray(data, dtype=np.float64) * self.scale + self.offset
        return np.angle(np.exp(1j * rad)).astype(np.float32)


@dataclass(frozen=True)
class PhaseImage:
    """Multi-echo phase in radians, ironmap's sign, readout offsets removed.

    Attributes
    ----------
    data : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Wrapped phase (radians, float32, -pi..pi); NaN where the input was not finite.
    echo_times_s : numpy.ndarray, shape (n_echoes,)
    affine : numpy.ndarray, shape (4, 4)
    sources : tuple of pathlib.Path
        The files read (echo-time order).
    units : PhaseUnits
        The units detected (or ``complex`` for real/imaginary and complex inputs).
    sign : int
        +1 or -1: the factor applied to the stored phase.
    readout : {"unipolar", "bipolar"}
        ``bipolar``: the odd/even offset of :func:`bipolar_offset` was removed.
    meta : dict
        The (first) phase file's JSON sidecar, merged under BIDS inheritance (e.g.
        ``MagneticFieldStrength``); empty without one.
    """

    data: NDArray[np.float32]
    echo_times_s: NDArray[np.float64]
    affine: NDArray[np.float64]
    sources: tuple[Path, ...]
    units: PhaseUnits
    sign: int = 1
    readout: str = "unipolar"
    meta: dict = field(default_factory=dict, repr=False)

    def sidecar(self) -> dict:
        """The keys recorded in the maps' sidecars: ``PhaseUnits``, ``PhaseScale`` (radians
        per stored unit), ``PhaseSign`` and ``ReadoutPolarity``."""
        return {
            "PhaseUnits": self.units.units,
            "PhaseScale": float(f"{self.units.scale:.6g}"),
            "PhaseSign": self.sign,
            "ReadoutPolarity": self.readout,
        }


#: ``Units`` values of a phase sidecar that declare radians.
RADIAN_UNITS = ("rad", "radian", "radians")


def detect_phase_units(
    data: ArrayLike, *, source: str | Path, declared: str | None = None
) -> PhaseUnits:
    """The units of stored phase values (see the module docstring for the rules).

    Parameters
    ----------
    data : array_like
        Phase values of all echoes (any shape; non-finite values are ignored).
    source : str or Path
        Named in the warning and in errors.
    declared : str, optional
        The sidecar's ``Units``; radians (:data:`RADIAN_UNITS`) are trusted within -pi..2pi.

    Warns
    -----
    IronmapWarning
        ``scaled`` units, naming the factor to radians.

    Raises
    ------
    InputError
        Values that are not wrapped phase of any scale, with how to fix it.
    """
    values = np.asarray(data, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError(f"{source}: no finite phase values; check the conversion")
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    within = lo >= -np.pi - RADIAN_TOL and hi <= 2 * np.pi + RADIAN_TOL
    if within and RADIAN_SPAN * 2 * np.pi <= span <= 2 * np.pi + RADIAN_TOL:
        return PhaseUnits("rad", 1.0)
    integer = bool(np.all(values == np.round(values)))
    if integer and lo >= -SIEMENS_LEVELS and hi <= SIEMENS_LEVELS - 1:
        if lo < 0 and span >= RADIAN_SPAN * (2 * SIEMENS_LEVELS - 1):
            return PhaseUnits("siemens", np.pi / SIEMENS_LEVELS)
        if lo >= 0 and span >= RADIAN_SPAN * (SIEMENS_LEVELS - 1):
            return PhaseUnits("siemens_unsigned", 2 * np.pi / SIEMENS_LEVELS, -np.pi)
    counts = np.histogram(values, bins=UNIFORM_BINS, range=(lo, hi))[0] if span > 0 else [0]
    if span > 0 and np.min(counts) >= MIN_BIN_SHARE * values.size / UNIFORM_BINS:
        scale = 2 * np.pi / span
        warnings.warn(
            f"{source}: phase values span {lo:.4g}..{hi:.4g}, not radians (-pi..pi) nor Siemens "
            f"integers; they fill the range as wrapped phase does, so it is read as one cycle: "
            f"radians = value x {scale:.4g} (PhaseScale in the sidecars); convert the phase to "
            "radians to silence this",
            IronmapWarning,
            stacklevel=3,
        )
        return PhaseUnits("scaled", scale)
    if declared is not None and str(declared).lower() in RADIAN_UNITS:
        if within and span <= 2 * np.pi + RADIAN_TOL:
            return PhaseUnits("rad", 1.0)
        raise InputError(
            f"{source}: the sidecar declares Units {declared!r} but the values span "
            f"{lo:.4g}..{hi:.4g}, beyond one cycle of radians; fix the conversion or the sidecar"
        )
    raise InputError(
        f"{source}: phase values {lo:.4g}..{hi:.4g} are neither radians (-pi..pi), Siemens "
        "integers (-4096..4095, 0..4095) nor wrapped phase of another scale (they do not fill "
        "their range evenly: unwrapped phase, a field map or not a phase image?); give the "
        "wrapped phase, e.g. in radians"
    )


def _choice(option: str, meta: dict, key: str, source: Path, allowed: dict) -> object:
    """An option's value, or for ``auto`` the sidecar's ``key`` (the first allowed value when
    absent); one-line errors for values not in ``allowed``."""
    if option != "auto":
        if option not in allowed:
            raise InputError(f"unknown value {option!r}; give one of {', '.join(allowed)}")
        return allowed[option]
    if key not in meta:
        return next(iter(allowed.values()))
    value = str(meta[key]).lower()
    if value not in allowed:
        raise InputError(
            f"{sidecar_path(source)}: {key} {meta[key]!r} is not one of {', '.join(allowed)}"
        )
    return allowed[value]


_SIGNS = {"+1": 1, "-1": -1, "1": 1}
_READOUTS = {"unipolar": "unipolar", "bipolar": "bipolar", "monopolar": "unipolar"}


def _finish(
    rad: NDArray[np.float32],
    *,
    te: NDArray[np.float64],
    affine: NDArray[np.float64],
    sources: tuple[Path, ...],
    units: PhaseUnits,
    meta: dict,
    magnitude: NDArray | None,
    sign: str,
    readout: str,
) -> PhaseImage:
    """Sign and readout from the options (or the sidecar ``meta`` for ``auto``)."""
    s = int(_choice(str(sign), meta, "PhaseSign", sources[0], _SIGNS))
    polarity = str(_choice(readout, meta, "ReadoutPolarity", sources[0], _READOUTS))
    if s < 0:
        rad = -rad
    if polarity == "bipolar":
        if magnitude is None:
            raise InputError(f"{sources[0]}: the bipolar correction needs the magnitudes")
        beta = bipolar_offset(magnitude, rad, te, source=sources[0])
        n = np.arange(te.size)
        rad = np.angle(np.exp(1j * (rad - ((-1.0) ** n) * beta[..., None]))).astype(np.float32)
    return PhaseImage(rad, te, affine, sources, units, s, polarity, meta)


def load_phase(
    paths: str | Path | Sequence[str | Path],
    *,
    echo_times_s: ArrayLike,
    magnitude: NDArray | None = None,
    sign: str = "auto",
    readout: str = "auto",
) -> PhaseImage:
    """Multi-echo phase in radians from one 4D file or per-echo BIDS ``part-phase`` files.

    Parameters
    ----------
    paths : str, Path or sequence of them
        One 4D NIfTI (echoes on axis 4, in the order of ``echo_times_s``) or one
        ``..._echo-<n>_part-phase_MEGRE.nii[.gz]`` per echo (echo times from the sidecars,
        which must equal ``echo_times_s``).
    echo_times_s : array_like, shape (n_echoes,)
        Echo times (s) of the magnitudes the phase belongs to.
    magnitude : numpy.ndarray, shape (X, Y, Z, n_echoes), optional
        The magnitudes; needed for the bipolar correction, and the grid is checked against it.
    sign : {"auto", "+1", "-1"}
        Factor on the stored phase; ``auto`` reads ``PhaseSign`` from the (first) sidecar,
        +1 without one.
    readout : {"auto", "unipolar", "bipolar"}
        ``auto`` reads ``ReadoutPolarity`` from the sidecar, unipolar without one.

    Returns
    -------
    PhaseImage

    Raises
    ------
    InputError
        Unreadable files, echo times or grid that differ from the magnitudes', or values that
        are not wrapped phase (:func:`detect_phase_units`).
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if len(files) == 1:
        path = files[0]
        img = load_image(path)
        if len(img.shape) != 4:
            raise InputError(
                f"{path}: expected a 4D phase image with echoes on the 4th axis, got shape "
                f"{img.shape}"
            )
        validate_echo_times(te, n_volumes=img.shape[3], source=path)
        raw = read_data(img, path, np.float32)
        affine = img.affine.copy()
        sources = (path,)
        side = sidecar_path(path)
        meta = read_sidecar(path)[0] if side.exists() else {}
    else:
        echoes = load_bids_echoes(files, part="phase")
        if echoes.data.shape[-1] != te.size or not np.allclose(echoes.echo_times_s, te):
            raise InputError(
                f"{files[0]}: phase echo times {echoes.echo_times_s.tolist()} s differ from the "
                f"magnitudes' {te.tolist()} s"
            )
        raw, affine, sources = echoes.data, echoes.affine, echoes.sources
        meta = read_sidecar(sources[0])[0]
    if magnitude is not None and raw.shape != np.shape(magnitude):
        raise InputError(
            f"{sources[0]}: phase shape {raw.shape} differs from the magnitudes "
            f"{np.shape(magnitude)}"
        )
    units = detect_phase_units(raw, source=sources[0], declared=meta.get("Units"))
    return _finish(
        units.to_radians(raw),
        te=te,
        affine=affine,
        sources=sources,
        units=units,
        meta=meta,
        magnitude=magnitude,
        sign=sign,
        readout=readout,
    )


def load_real_imag(
    reals: Sequence[str | Path],
    imags: Sequence[str | Path],
    *,
    sign: str = "auto",
    readout: str = "auto",
) -> tuple[MultiEchoImage, PhaseImage]:
    """Magnitudes and phase from BIDS ``part-real`` and ``part-imag`` files (one per echo).

    Parameters
    ----------
    reals, imags : sequence of str or Path
        ``..._echo-<n>_part-real_MEGRE`` and ``..._part-imag_MEGRE`` files; echo times from
        their sidecars, which must agree.
    sign, readout
        As for :func:`load_phase`.

    Returns
    -------
    magnitude : MultiEchoImage
        ``hypot(real, imag)``; its ``sources`` are the real files.
    phase : PhaseImage
        ``atan2(imag, real)``, units ``complex``.
    """
    re = load_bids_echoes(reals, part="real")
    im = load_bids_echoes(imags, part="imag")
    if re.data.shape != im.data.shape or not np.allclose(re.echo_times_s, im.echo_times_s):
        raise InputError(
            f"{im.sources[0]}: imaginary echoes do not match the real ones (grid or EchoTime)"
        )
    if not np.allclose(re.affine, im.affine, atol=1e-4):
        raise InputError(f"{im.sources[0]}: grid differs from {re.sources[0]}")
    return _split(
        re.data.astype(np.float64) + 1j * im.data.astype(np.float64),
        re,
        sources=re.sources + im.sources,
        meta=read_sidecar(im.sources[0])[0],
        sign=sign,
        readout=readout,
    )


def load_complex(
    path: str | Path,
    *,
    echo_times_s: ArrayLike,
    sign: str = "auto",
    readout: str = "auto",
) -> tuple[MultiEchoImage, PhaseImage]:
    """Magnitudes and phase from one complex-valued 4D NIfTI (echoes on axis 4).

    Parameters
    ----------
    path : str or Path
    echo_times_s : array_like, shape (n_echoes,)
    sign, readout
        As for :func:`load_phase`.
    """
    path = Path(path)
    img = load_image(path, complex_ok=True)
    if len(img.shape) != 4:
        raise InputError(f"{path}: expected a 4D complex image with echoes on the 4th axis")
    te = validate_echo_times(echo_times_s, n_volumes=img.shape[3], source=path)
    z = read_data(img, path, np.complex128)
    image = MultiEchoImage(
        data=np.zeros(z.shape, np.float32),
        affine=img.affine.copy(),
        header=img.header.copy(),
        echo_times_s=te,
        sources=(path,),
    )
    side = sidecar_path(path)
    meta = read_sidecar(path)[0] if side.exists() else {}
    return _split(z, image, sources=(path,), meta=meta, sign=sign, readout=readout)


def _split(
    z: NDArray[np.complex128],
    image: MultiEchoImage,
    *,
    sources: tuple[Path, ...],
    meta: dict,
    sign: str,
    readout: str,
) -> tuple[MultiEchoImage, PhaseImage]:
    magnitude = np.abs(z).astype(np.float32)
    if not np.isfinite(magnitude).any():
        raise InputError(f"{sources[0]}: no finite values (all NaN or Inf); check the conversion")
    image = MultiEchoImage(
        data=magnitude,
        affine=image.affine,
        header=image.header,
        echo_times_s=image.echo_times_s,
        sources=image.sources,
        field_strength_t=image.field_strength_t,
    )
    phase = _finish(
        np.angle(z).astype(np.float32),
        te=image.echo_times_s,
        affine=image.affine,
        sources=sources,
        units=PhaseUnits("complex", 1.0),
        meta=meta,
        magnitude=magnitude,
        sign=sign,
        readout=readout,
    )
    return image, phase


def bipolar_offset(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike, *, source: str | Path = ""
) -> NDArray[np.float64]:
    """The odd/even phase offset ``beta(r)`` (radians) of a bipolar readout.

    With ``phi_n = phi_0 + 2 pi f TE_n + (-1)^n beta`` and equally spaced echoes, the second
    difference ``phi_n+1 - 2 phi_n + phi_n-1 = -4 (-1)^n beta`` is free of the field and of
    ``phi_0``. Its complex form ``S_n+1 S_n-1 conj(S_n)^2`` (magnitude-weighted) is summed over
    the echo triples, its mean phase step along each axis gives the linear part of ``4 beta``
    and the demodulated sum its constant (modulo 2 pi, so ``beta`` modulo pi/2).

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians).
    echo_times_s : array_like, shape (n_echoes,)
        At least 3, equally spaced.
    source : str or Path
        Named in errors.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        ``beta`` in radians: constant plus linear in the voxel indices.
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    if te.size < 3 or not np.allclose(np.diff(te), np.diff(te)[0], rtol=1e-3):
        raise InputError(
            f"{source}: the bipolar correction needs >= 3 equally spaced echoes, got TE "
            f"{te.tolist()} s; use --readout unipolar"
        )
    z = np.nan_to_num(np.asarray(magnitude, np.float64)) * np.exp(
        1j * np.nan_to_num(np.asarray(phase, np.float64))
    )
    total = np.zeros(z.shape[:3], np.complex128)
    for n in range(1, te.size - 1):
        triple = z[..., n + 1] * z[..., n - 1] * np.conj(z[..., n]) ** 2
        total += triple if n % 2 else np.conj(triple)
    grids = np.indices(total.shape, dtype=np.float64)
    slopes = []
    for axis in range(3):
        ahead = np.take(total, np.arange(1, total.shape[axis]), axis=axis)
        behind = np.take(total, np.arange(total.shape[axis] - 1), axis=axis)
        slopes.append(float(np.angle(np.sum(ahead * np.conj(behind)))))
    linear = sum(s * g for s, g in zip(slopes, grids, strict=True))
    constant = float(np.angle(np.sum(total * np.exp(-1j * linear))))
    return (constant + linear) / 4.0
