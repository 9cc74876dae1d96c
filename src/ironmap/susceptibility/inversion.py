"""Dipole inversion: susceptibility (ppm) from the local field (ppm).

``tkd``: truncated k-space division (Shmueli et al., MRM 2009; Wharton et al., MRM 2010), the
closed-form baseline: ``chi = F^-1[ F(delta) / D ]`` with ``1/D`` replaced by
``sign(D) / threshold`` where ``|D| < threshold`` (the cone of ill-conditioned frequencies).
The truncation underestimates susceptibility by a known factor; it is not corrected here.

``l2``: closed-form L2 gradient regularisation (Bilgic et al., J Magn Reson Imaging 2014):
``chi = F^-1[ D F(delta) / (D^2 + lambda |G|^2) ]`` with ``G`` the finite-difference gradient;
one FFT pair, fast; smooth.

``medi``: the morphology-enabled dipole inversion model (Liu T et al., NeuroImage 2011 / MRM
2012; de Rochefort et al., MRM 2010): ``min 1/2 ||W (D chi - delta)||^2 + lambda ||M grad chi||_1``
with ``W`` the inverse noise SD of the field (normalised to mean 1 in the mask) and ``M`` the
magnitude edge mask (0 on the ``MEDI_EDGE_FRACTION`` of mask voxels with the steepest magnitude
gradient: edges in the magnitude are allowed in chi). Solved by ADMM with a data split, as in
FANSI (Milovic et al., MRM 2018; Bilgic et al., MRM 2014), every sub-problem in closed form: per
iteration four real FFTs, no inner loops. The data term here is linear in the field (MEDI's
nonlinear ``exp(i D chi)`` term is not used). With ``smv_radius_mm`` the forward model is
``(1 - SMV) D`` and the data the SMV high-passed total field (:func:`.background.smv_highpass`):
single-step QSM (Chatnuntawech et al., NMR Biomed 2017), background removal and inversion in one
problem; the data mask is the eroded mask, chi is solved on the whole grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from . import _fft
from .background import _ball_half
from .dipole import dipole_kernel, padded_shape

__all__ = [
    "L2_LAMBDA",
    "MEDI_EDGE_FRACTION",
    "MEDI_ITERATIONS",
    "MEDI_LAMBDA",
    "TKD_THRESHOLD",
    "edge_mask",
    "l2",
    "medi",
    "tkd",
]

#: Truncation of ``|D|`` for :func:`tkd` (0.19 is a common choice: Wharton et al. 2010).
TKD_THRESHOLD = 0.19
#: Regularisation weight of :func:`l2` (gradients per mm).
L2_LAMBDA = 0.02
#: TV weight of :func:`medi` (field and chi in ppm, gradients per mm, W of mean 1).
MEDI_LAMBDA = 5e-5
#: ADMM iterations of :func:`medi`.
MEDI_ITERATIONS = 25
#: Share of mask voxels :func:`edge_mask` marks as edges (MEDI's default keeps 90 % smooth).
MEDI_EDGE_FRACTION = 0.1


def tkd(
    local_field_ppm: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    threshold: float = TKD_THRESHOLD,
    pad: int = 16,
) -> NDArray[np.float64]:
    """Truncated k-space division.

    Parameters
    ----------
    local_field_ppm : numpy.ndarray, shape (X, Y, Z)
        Local (background-removed) field in ppm; values outside ``mask`` are ignored.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
        Where the local field is defined.
    voxel_mm : sequence of 3 float
    direction : sequence of 3 float, optional
        B0 in voxel axes (:func:`~.dipole.b0_direction`).
    threshold : float, optional
        ``|D|`` below which the kernel is truncated, in (0, 1/3).
    pad : int, optional
        Zero padding (voxels per side).

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Susceptibility in ppm inside ``mask``, 0 outside (mean not referenced).
    """
    if not 0 < threshold < 1 / 3:
        raise ValueError(f"TKD threshold must be in (0, 1/3), got {threshold}")
    field = np.where(mask, np.nan_to_num(np.asarray(local_field_ppm, dtype=np.float64)), 0.0)
    big = padded_shape(field.shape, pad)
    kernel = dipole_kernel(big, voxel_mm, direction=direction)
    inverse = np.where(
        np.abs(kernel) >= threshold,
        1.0 / np.where(kernel == 0, 1.0, kernel),
        np.sign(kernel) / threshold,
    )
    chi = np.fft.ifftn(inverse * np.fft.fftn(field, s=big, axes=(0, 1, 2))).real
    return np.where(mask, chi[: field.shape[0], : field.shape[1], : field.shape[2]], 0.0)


def l2(
    local_field_ppm: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    regularisation: float = L2_LAMBDA,
    pad: int = 16,
) -> NDArray[np.float64]:
    """Closed-form L2 gradient-regularised inversion (Bilgic et al., J Magn Reson Imaging 2014).

    Parameters
    ----------
    local_field_ppm : numpy.ndarray, shape (X, Y, Z)
        Local field in ppm; values outside ``mask`` are ignored.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float
    direction : sequence of 3 float, optional
        B0 in voxel axes.
    regularisation : float, optional
        ``lambda`` (``|G|^2`` in 1/mm^2).
    pad : int, optional

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Susceptibility (ppm) inside ``mask``, 0 outside (mean not referenced).
    """
    field = np.where(mask, np.nan_to_num(np.asarray(local_field_ppm, dtype=np.float64)), 0.0)
    shape = field.shape
    big = _fft.fast_shape(shape, pad)
    kernel = _fft.dipole_half(big, voxel_mm, direction)
    denominator = kernel**2 + regularisation * _fft.gradient_power(big, voxel_mm)
    denominator.flat[0] = 1.0
    chi = _fft.irfft(kernel / denominator * _fft.rfft(field, big), big, shape)
    return np.where(mask, chi, 0.0)


def edge_mask(
    magnitude: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    fraction: float = MEDI_EDGE_FRACTION,
) -> NDArray[np.float64]:
    """MEDI's gradient mask: 0 on the ``fraction`` of ``mask`` voxels with the steepest
    magnitude gradient (edges), 1 elsewhere (also outside ``mask``).

    Parameters
    ----------
    magnitude : numpy.ndarray, shape (X, Y, Z)
        A magnitude image (e.g. the root sum of squares over echoes).
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float
    fraction : float, optional
    """
    mag = np.nan_to_num(np.asarray(magnitude, dtype=np.float64))
    grads = np.gradient(mag, *voxel_mm)
    norm = np.sqrt(sum(g**2 for g in grads))
    inside = np.asarray(mask, bool)
    if not inside.any() or fraction <= 0:
        return np.ones(mag.shape)
    threshold = np.quantile(norm[inside], 1.0 - fraction)
    return np.where(inside & (norm > threshold), 0.0, 1.0)


def _grad(x, inverse_step):
    """Forward differences with periodic wrap (the ``G`` of :func:`_fft.gradient_power`);
    ``inverse_step``: 1 / voxel size (1/mm) per axis."""
    return [(np.roll(x, -1, axis=a) - x) * h for a, h in enumerate(inverse_step)]


def _grad_adjoint(gs, inverse_step):
    return sum(
        (np.roll(g, 1, axis=a) - g) * h
        for a, (g, h) in enumerate(zip(gs, inverse_step, strict=True))
    )


def medi(
    local_field_ppm: NDArray,
    mask: NDArray[np.bool_],
    voxel_mm: Sequence[float],
    *,
    magnitude: NDArray | None = None,
    weight: NDArray | None = None,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    regularisation: float = MEDI_LAMBDA,
    iterations: int = MEDI_ITERATIONS,
    edge_fraction: float = MEDI_EDGE_FRACTION,
    pad: int = 8,
    smv_radius_mm: float | Sequence[float] | None = None,
    full_mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """Weighted-TV (MEDI model) dipole inversion with a magnitude edge prior, by ADMM.

    Parameters
    ----------
    local_field_ppm : numpy.ndarray, shape (X, Y, Z)
        Local field in ppm; values outside ``mask`` are ignored.
    mask : numpy.ndarray of bool, shape (X, Y, Z)
    voxel_mm : sequence of 3 float
    magnitude : numpy.ndarray, shape (X, Y, Z), optional
        Magnitude image for :func:`edge_mask`; default none (plain TV).
    weight : numpy.ndarray, shape (X, Y, Z), optional
        Data weight (1 / noise SD of the field); normalised to mean 1 in ``mask``.
    direction : sequence of 3 float, optional
    regularisation : float, optional
        TV weight ``lambda``.
    iterations : int, optional
        ADMM iterations.
    edge_fraction : float, optional
        See :func:`edge_mask`.
    pad : int, optional
    smv_radius_mm : float or sequence of float, optional
        Single-step mode: ``local_field_ppm`` is the *total* field on ``mask``; for each radius
        (mm) a data term compares its SMV high-pass (on ``mask`` eroded by that sphere) with
        ``(1 - SMV) D chi``. Several radii give the deep voxels the low frequencies of the
        large sphere and the edge voxels the small one's data (as V-SHARP does).
    full_mask : numpy.ndarray of bool, shape (X, Y, Z), optional
        Where chi is returned (default ``mask``).

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Susceptibility (ppm) inside ``full_mask``, 0 outside (mean not referenced).
    """
    mask = np.asarray(mask, bool)
    out_mask = mask if full_mask is None else np.asarray(full_mask, bool)
    shape = mask.shape
    big = _fft.fast_shape(shape, pad)
    crop = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    dipole = _fft.dipole_half(big, voxel_mm, direction)
    field = np.zeros(big)
    field[crop] = np.where(mask, np.nan_to_num(np.asarray(local_field_ppm, float)), 0.0)
    w = np.ones(shape) if weight is None else np.nan_to_num(np.asarray(weight, float))
    w = np.where(mask, w, 0.0)
    edges = np.ones(big)
    if magnitude is not None:
        edges[crop] = edge_mask(magnitude, out_mask, voxel_mm, fraction=edge_fraction)
    # one data term per sphere: (data, weight^2, kernel) on the padded grid
    terms = []
    if smv_radius_mm is None:
        terms.append((field, w, mask, dipole))
    else:
        field_k = sfft.rfftn(field, workers=1)
        mask_big = np.zeros(big)
        mask_big[crop] = mask
        mask_k = sfft.rfftn(mask_big, workers=1)
        for radius in np.atleast_1d(smv_radius_mm):
            smv = _ball_half(big, float(radius), voxel_mm)
            inner = sfft.irfftn(smv * mask_k, s=big, workers=1)[crop] > 1.0 - 1e-6
            inner &= mask
            high = sfft.irfftn((1.0 - smv) * field_k, s=big, workers=1)
            data = np.zeros(big)
            data[crop] = np.where(inner, high[crop], 0.0)
            terms.append((data, np.where(inner, w, 0.0), inner, dipole * (1.0 - smv)))
    mu2 = 1.0
    mu1 = 100.0 * regularisation
    denominator = mu1 * _fft.gradient_power(big, voxel_mm)
    for *_, kernel in terms:
        denominator = denominator + mu2 * kernel**2
    denominator.flat[0] = np.inf  # the mean of chi is not determined: keep it 0
    f32 = np.float32
    gradient_gain = (1.0 / denominator).astype(f32)
    threshold = (regularisation * edges / mu1).astype(f32)
    data_terms = []
    for data, weight_small, inner, kernel in terms:
        w2 = np.zeros(big, f32)
        if inner.any() and weight_small[inner].mean() > 0:
            w2[crop] = (weight_small / weight_small[inner].mean()) ** 2
        data = data.astype(f32)
        data_terms.append(
            {
                "w2_delta": w2 * data,
                "w2": w2,
                "gain": (mu2 * kernel / denominator).astype(f32),
                "kernel": kernel.astype(f32),
                "y": w2 * data / (w2 + f32(mu2)),
                "t": np.zeros(big, f32),
            }
        )
    z = [np.zeros(big, f32) for _ in range(3)]
    s = [np.zeros(big, f32) for _ in range(3)]
    chi = np.zeros(big, f32)
    step = [f32(1.0 / d) for d in voxel_mm]

    def fwd(x):
        return sfft.rfftn(x, workers=1)

    def inv(k):
        return sfft.irfftn(k, s=big, workers=1)

    for _ in range(int(iterations)):
        rhs = f32(mu1) * _grad_adjoint([zi - si for zi, si in zip(z, s, strict=True)], step)
        chi_k = fwd(rhs) * gradient_gain
        for term in data_terms:
            chi_k += fwd(term["y"] - term["t"]) * term["gain"]
        chi = inv(chi_k)
        g = _grad(chi, step)
        for a in range(3):
            v = g[a] + s[a]
            z[a] = np.sign(v) * np.maximum(np.abs(v) - threshold, f32(0.0))
            s[a] = v - z[a]
        for term in data_terms:
            dchi = inv(term["kernel"] * chi_k)
            term["y"] = (term["w2_delta"] + f32(mu2) * (dchi + term["t"])) / (
                term["w2"] + f32(mu2)
            )
            term["t"] += dchi - term["y"]
    return np.where(out_mask, chi[crop].astype(np.float64), 0.0)
