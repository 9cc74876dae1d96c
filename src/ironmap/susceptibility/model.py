"""QSM as a model and its fit: multi-echo magnitude and phase -> susceptibility (ppm).

:class:`QSMModel` holds the acquisition (echo times, voxel size, field strength, B0 direction)
and the methods of each step; :meth:`QSMModel.fit` runs the steps in the order SEPIA, MEDI and
QSMxT use -- brain mask, total field from the echoes, background field removal, dipole
inversion, referencing -- and returns a :class:`QSMFit`.

Step methods (names in :data:`BACKGROUND_METHODS`, :data:`INVERSION_METHODS`,
:data:`REFERENCES`):

- brain mask: given (the pipeline passes the segmentation's), else :func:`brain_mask`;
- total field: Laplacian unwrapping of each echo's phase referenced to the first echo and a
  weighted (optimum-weights) fit over the echoes, with its noise SD
  (:func:`.field.total_field`);
- background: ``smv`` (default; single-step: only the SMV high-pass here, the rest inside
  ``medi``), ``vsharp``, ``pdf``, ``sharp`` (:mod:`.background`);
- inversion: ``medi`` (default), ``tkd``, ``l2`` (:mod:`.inversion`);
- reference: ``brain`` (default; the mean over the final mask is 0), ``csf`` / ``wm`` (the mean
  over ``fit(..., reference_mask=...)`` is 0), ``none``.

The whole fit runs on the mask's bounding box (plus :data:`CROP_MARGIN` voxels).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..errors import InputError
from .background import SMV_RADII_MM, pdf, sharp, smv_highpass, vsharp
from .dipole import forward_field, hz_per_ppm
from .field import UNWRAP_METHODS, total_field
from .inversion import l2, medi, tkd

__all__ = [
    "BACKGROUND_METHODS",
    "INVERSION_METHODS",
    "REFERENCES",
    "QSMFit",
    "QSMModel",
    "brain_mask",
]

BACKGROUND_METHODS = ("vsharp", "pdf", "sharp", "smv")
INVERSION_METHODS = ("tkd", "l2", "medi")
REFERENCES = ("brain", "csf", "wm", "none")
#: Default steps of the pipeline: single-step QSM (SMV high-pass + MEDI model), about 0.7-0.9 s
#: per participant at 2 mm (72 x 88 x 72, 4 echoes) on one core (benchmarks/qsm.py).
DEFAULT_BACKGROUND = "smv"
DEFAULT_INVERSION = "medi"
DEFAULT_REFERENCE = "brain"
#: Step functions whose keywords ``QSMModel(options=...)`` may set as ``"<name>.<keyword>"``.
_STEP_FUNCTIONS = ("sharp", "vsharp", "pdf", "tkd", "l2", "medi")
#: Brain mask: first-echo magnitude above this fraction of its 99th percentile.
MASK_FRACTION = 0.15
#: Voxels of margin kept around the mask's bounding box when the grid is cropped for speed.
CROP_MARGIN = 2


def brain_mask(magnitude: NDArray) -> NDArray[np.bool_]:
    """Head/brain mask from the first echo: a threshold, the largest component, holes filled.

    Parameters
    ----------
    magnitude : numpy.ndarray, shape (X, Y, Z, n_echoes) or (X, Y, Z)

    Returns
    -------
    numpy.ndarray of bool, shape (X, Y, Z)
    """
    first = np.asarray(magnitude)
    first = first[..., 0] if first.ndim == 4 else first
    first = np.nan_to_num(first)
    mask = first > MASK_FRACTION * np.percentile(first[first > 0], 99)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    return ndimage.binary_fill_holes(mask)


@dataclass(frozen=True)
class QSMFit:
    """A susceptibility map and what it was computed from.

    Attributes
    ----------
    chi_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        Susceptibility (ppm) relative to the reference; NaN outside ``mask``.
    local_field_ppm : numpy.ndarray of float32, shape (X, Y, Z)
        Background-removed field (ppm); NaN outside ``mask``.
    field_hz : numpy.ndarray of float32, shape (X, Y, Z)
        Total field (Hz) from the echoes; NaN where it could not be estimated.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Where ``chi_ppm`` is defined (the brain mask after background removal).
    parameters : dict
        Methods and parameters of every step, for provenance and the sidecar.
    noise_hz : numpy.ndarray of float32, shape (X, Y, Z), or None
        SD (Hz) of ``field_hz`` from the magnitudes and the noise (the inversion's data
        weight is its inverse); NaN outside the brain mask.
    """

    chi_ppm: NDArray[np.float32]
    local_field_ppm: NDArray[np.float32]
    field_hz: NDArray[np.float32]
    mask: NDArray[np.bool_]
    parameters: dict = field(default_factory=dict)
    noise_hz: NDArray[np.float32] | None = None


class QSMModel:
    """Quantitative susceptibility mapping of one multi-echo GRE acquisition.

    Parameters
    ----------
    echo_times_s : array_like, shape (n_echoes,)
        Echo times (s), at least 2.
    voxel_mm : sequence of 3 float
        Voxel size (mm).
    field_strength_t : float
        Main field (T).
    direction : sequence of 3 float, optional
        B0 in voxel axes (:func:`~.dipole.b0_direction` of the image affine).
    background : {"smv", "vsharp", "pdf", "sharp"}, optional
        Background field removal (:mod:`.background`); ``smv`` (single-step) needs ``medi``.
    inversion : {"medi", "tkd", "l2"}, optional
        Dipole inversion (:mod:`.inversion`).
    reference : {"brain", "csf", "wm", "none"}, optional
        Zero of the susceptibility scale: the mean over the final mask (``brain``), over a
        given ``reference_mask`` (``csf``: e.g. the lateral ventricles; ``wm``: e.g. white
        matter), or none (the inversion's own, arbitrary mean).
    unwrap : {"laplacian", "quality"}, optional
        Spatial phase unwrapper (:func:`.field.total_field`; ``quality`` needs scikit-image).
    options : dict, optional
        Keyword options of the step functions: ``"<function>.<keyword>"`` for one function
        (e.g. ``{"tkd.threshold": 0.15, "medi.regularisation": 1e-4}``), a plain keyword for
        every step function that has it (e.g. ``{"iterations": 40}``); ``"radii_mm"``: the
        SMV radii of ``background="smv"`` (:data:`~.background.SMV_RADII_MM`).
    """

    def __init__(
        self,
        echo_times_s: ArrayLike,
        voxel_mm: Sequence[float],
        *,
        field_strength_t: float,
        direction: Sequence[float] = (0.0, 0.0, 1.0),
        background: str = DEFAULT_BACKGROUND,
        inversion: str = DEFAULT_INVERSION,
        reference: str = DEFAULT_REFERENCE,
        unwrap: str = "laplacian",
        options: dict | None = None,
    ) -> None:
        for name, value, allowed in (
            ("background", background, BACKGROUND_METHODS),
            ("inversion", inversion, INVERSION_METHODS),
            ("reference", reference, REFERENCES),
            ("unwrap", unwrap, UNWRAP_METHODS),
        ):
            if value not in allowed:
                raise InputError(f"QSM {name} must be one of {', '.join(allowed)}, got {value!r}")
        if not field_strength_t or field_strength_t <= 0:
            raise InputError(f"QSM needs the field strength in tesla, got {field_strength_t!r}")
        self.echo_times_s = np.asarray(echo_times_s, dtype=float)
        self.voxel_mm = tuple(float(v) for v in voxel_mm)
        self.field_strength_t = float(field_strength_t)
        self.direction = tuple(float(v) for v in direction)
        self.background = background
        self.inversion = inversion
        self.reference = reference
        self.unwrap = unwrap
        self.options = dict(options or {})

    def _kwargs(self, function) -> dict:
        names = inspect.signature(function).parameters
        plain = {k: v for k, v in self.options.items() if k in names}
        prefix = f"{function.__name__}."
        scoped = {
            k[len(prefix) :]: v
            for k, v in self.options.items()
            if k.startswith(prefix) and k[len(prefix) :] in names
        }
        unknown = [k for k in self.options if "." in k and k.split(".")[0] not in _STEP_FUNCTIONS]
        if unknown:
            raise InputError(f"QSM options name unknown steps: {', '.join(unknown)}")
        return {**plain, **scoped}

    def fit(
        self,
        magnitude: NDArray,
        phase: NDArray,
        *,
        mask: NDArray[np.bool_] | None = None,
        reference_mask: NDArray[np.bool_] | None = None,
    ) -> QSMFit:
        """Susceptibility from magnitudes and phases (radians) of the echoes.

        Parameters
        ----------
        magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
            Phase in radians, positive = faster precession (paramagnetic).
        mask : numpy.ndarray of bool, shape (X, Y, Z), optional
            Brain mask (e.g. from the segmentation); default :func:`brain_mask` of the first
            echo.
        reference_mask : numpy.ndarray of bool, shape (X, Y, Z), optional
            Reference region for ``reference="csf"`` or ``"wm"`` (required there).

        Returns
        -------
        QSMFit
        """
        magnitude = np.asarray(magnitude)
        phase = np.asarray(phase)
        if magnitude.ndim == 3:
            magnitude, phase = magnitude[..., None], phase[..., None]
        if mask is None:
            mask = brain_mask(magnitude)
        mask = np.asarray(mask, bool)
        if mask.shape != magnitude.shape[:3]:
            raise InputError(f"QSM mask shape {mask.shape} != image shape {magnitude.shape[:3]}")
        if self.background == "smv" and self.inversion != "medi":
            raise InputError("QSM background='smv' (single-step) works with inversion='medi' only")
        if self.reference in ("csf", "wm") and reference_mask is None:
            raise InputError(f"QSM reference={self.reference!r} needs a reference_mask")
        if not mask.any():
            raise InputError("QSM brain mask is empty")
        full_shape = mask.shape
        box = _bounding_box(mask, CROP_MARGIN)
        mag, ph, m = magnitude[box], phase[box], mask[box]
        field_hz, noise_hz = total_field(mag, ph, self.echo_times_s, m, unwrap=self.unwrap)
        scale = hz_per_ppm(self.field_strength_t)
        total_ppm = field_hz / scale
        with np.errstate(divide="ignore"):
            weight = np.where(m & np.isfinite(noise_hz), 1.0 / noise_hz, 0.0)
        radii = tuple(np.atleast_1d(self.options.get("radii_mm", SMV_RADII_MM)))
        if self.background == "smv":
            # the final mask: eroded by the smallest sphere; the data terms are made in medi
            _, final = smv_highpass(total_ppm, m, self.voxel_mm, radius_mm=min(radii))
            local = total_ppm
        elif self.background == "vsharp":
            local, final = vsharp(total_ppm, m, self.voxel_mm, **self._kwargs(vsharp))
        elif self.background == "sharp":
            local, final = sharp(total_ppm, m, self.voxel_mm, **self._kwargs(sharp))
        else:
            local, final = pdf(
                total_ppm,
                m,
                self.voxel_mm,
                direction=self.direction,
                weight=weight,
                **self._kwargs(pdf),
            )
        if self.inversion == "tkd":
            chi = tkd(local, final, self.voxel_mm, direction=self.direction, **self._kwargs(tkd))
        elif self.inversion == "l2":
            chi = l2(local, final, self.voxel_mm, direction=self.direction, **self._kwargs(l2))
        else:
            rss = np.sqrt(np.sum(np.nan_to_num(mag.astype(np.float64)) ** 2, axis=-1))
            single = {}
            if self.background == "smv":
                single = {"smv_radius_mm": radii, "full_mask": final}
            chi = medi(
                local,
                m if self.background == "smv" else final,
                self.voxel_mm,
                magnitude=rss,
                weight=weight,
                direction=self.direction,
                **single,
                **self._kwargs(medi),
            )
        if self.background == "smv":
            # the local field the inversion explains (the high-pass itself is not a local field)
            explained = forward_field(
                np.where(final, chi, 0.0), self.voxel_mm, direction=self.direction
            )
            local = np.where(final, explained, 0.0)
        chi_full = np.zeros(full_shape)
        chi_full[box] = chi
        final_full = np.zeros(full_shape, bool)
        final_full[box] = final
        local_full = np.zeros(full_shape)
        local_full[box] = local
        field_full = np.full(full_shape, np.nan)
        field_full[box] = np.where(m, field_hz, np.nan)
        noise_full = np.full(full_shape, np.nan)
        noise_full[box] = np.where(m, noise_hz, np.nan)
        offset = self._reference_offset(chi_full, final_full, reference_mask)
        chi_full = chi_full - offset
        nan = np.float32(np.nan)
        return QSMFit(
            chi_ppm=np.where(final_full, chi_full, nan).astype(np.float32),
            local_field_ppm=np.where(final_full, local_full, nan).astype(np.float32),
            field_hz=field_full.astype(np.float32),
            mask=final_full,
            parameters={
                "field": f"weighted echo fit, {self.unwrap} unwrapping",
                "background": self.background,
                "inversion": self.inversion,
                "reference": self.reference,
                "reference_offset_ppm": float(offset),
                "field_strength_t": self.field_strength_t,
                "b0_direction": list(self.direction),
                "echo_times_s": [float(t) for t in self.echo_times_s],
                "options": dict(self.options),
                "description": self.describe(),
            },
            noise_hz=noise_full.astype(np.float32),
        )

    def describe(self) -> str:
        """One paragraph for a Methods section: the steps, their methods and citations."""
        unwrap = {
            "laplacian": "Laplacian (least-squares) unwrapping (Ghiglia & Romero 1994)",
            "quality": "quality-guided unwrapping (Herraez et al. 2002, scikit-image)",
        }[self.unwrap]
        background = {
            "smv": "a spherical-mean-value high-pass (radius {r} mm) inside the inversion "
            "(single-step QSM, Chatnuntawech et al. 2017)",
            "vsharp": "V-SHARP (Li et al. 2011; Wu et al. 2012)",
            "pdf": "projection onto dipole fields (Liu et al. 2011)",
            "sharp": "SHARP (Schweser et al. 2011)",
        }[self.background]
        radii = np.atleast_1d(self.options.get("radii_mm", SMV_RADII_MM))
        background = background.format(r=", ".join(f"{r:g}" for r in radii))
        inversion = {
            "medi": "the MEDI model (weighted total variation with a magnitude edge mask; Liu et "
            "al. 2011) solved by ADMM (Milovic et al. 2018)",
            "tkd": "truncated k-space division (Shmueli et al. 2009; Wharton et al. 2010)",
            "l2": "closed-form L2 gradient regularisation (Bilgic et al. 2014)",
        }[self.inversion]
        reference = {
            "brain": "the mean over the brain mask",
            "csf": "the mean over the CSF reference region (lateral ventricles)",
            "wm": "the mean over the white-matter reference region",
            "none": "no reference region",
        }[self.reference]
        return (
            f"Susceptibility (ppm) was computed from {self.echo_times_s.size} echoes: phase "
            f"referenced to the first echo, {unwrap}, and a magnitude-weighted fit over the "
            f"echoes (optimum weights, Robinson et al. 2017); background field removal by "
            f"{background}; dipole inversion by {inversion}; chi referenced to {reference}."
        )

    def _reference_offset(self, chi, final, reference_mask) -> float:
        """The value subtracted from chi so that the reference region's mean is 0."""
        if self.reference == "none":
            return 0.0
        if self.reference == "brain":
            region = final
        else:
            region = np.asarray(reference_mask, bool) & final
            if not region.any():
                raise InputError(
                    f"QSM reference={self.reference!r}: the reference mask has no voxel inside "
                    "the final (background-removed) mask"
                )
        return float(chi[region].mean())


def _bounding_box(mask: NDArray[np.bool_], margin: int) -> tuple[slice, slice, slice]:
    where = np.argwhere(mask)
    lo = np.maximum(where.min(axis=0) - margin, 0)
    hi = np.minimum(where.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
