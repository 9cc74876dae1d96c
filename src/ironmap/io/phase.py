"""Reading multi-echo phase: the one place where phase becomes radians.

Every phase input goes through :func:`load_phase` (a 4D file or per-echo BIDS ``part-phase``
files), :func:`load_real_imag` (BIDS ``part-real``/``part-imag`` pairs) or
:func:`load_complex` (a complex-valued 4D NIfTI), and comes out as a :class:`PhaseImage`:
wrapped phase in radians, in ironmap's sign convention, with the per-echo readout offsets
corrected where asked. Phase is never checked as a magnitude.

Units are detected in :mod:`.phase_units` (:func:`detect_phase_units`) and the bipolar
readout offset is estimated in :mod:`.bipolar` (:func:`bipolar_offset`).

Sign: ironmap's field is positive where the spins precess faster than the reference, i.e. the
phase ``phi(TE) = phi_0 + 2 pi f TE`` grows with TE for ``f > 0``; a paramagnetic source
(iron, deoxygenated blood) gives a positive field inside and along B0 from it. Scanners differ in
the sign they store; ``sign=-1`` (``--phase-sign -1``, or ``"PhaseSign": -1`` in the phase's
JSON sidecar for ``auto``) flips it. The R2* field-gradient correction does not depend on the
sign; the lesions' local field and susceptibility do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..defaults import PHASE_SIGNS, READOUTS
from ..errors import InputError
from .bipolar import bipolar_offset
from .echoes import (
    MultiEchoImage,
    load_bids_echoes,
    read_sidecar,
    sidecar_path,
    validate_echo_times,
)
from .nifti import load_image, read_data
from .phase_units import PhaseUnits, detect_phase_units

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
