"""Noise that varies in space: a local map of sigma from the fit residuals.

Parallel imaging (SENSE/GRAPPA g-factor), coil sensitivity and intensity normalisation make the
noise of real head images vary across the field of view, often by a factor of two between the
centre and the edge of the head. One global sigma then under-corrects the noise floor where the
noise is high and over-corrects it where it is low. The image background cannot tell (it lies
outside the head), so the map is built from the tissue itself:

1. every voxel of the mask is fitted by non-linear least squares (Gaussian noise); its residual
   sum of squares over ``n_echoes - 2`` degrees of freedom estimates ``sigma^2`` where the decay
   stays well above the noise floor (there the magnitude noise is Gaussian with the SD of one
   channel, whatever the number of channels);
2. only voxels whose fitted last echo is above :data:`HIGH_SNR` times the local sigma enter
   (two passes: first against a global residual sigma, then against the first map);
3. their ``sigma^2`` estimates, without outliers beyond the 99.9 % point of
   ``chi^2(n_echoes - 2)``, are averaged in a box of ``size`` voxels around each voxel
   (a normalised box filter), and the square root is the map. Where a box holds fewer than
   :data:`MIN_SAMPLES` such voxels the box grows (x2, x4), and beyond that the global value is
   used.

The map is smooth on the scale of ``size`` (default 9 voxels), which suits g-factor and coil
profiles (tens of millimetres) and averages about ``size^3 (n_echoes - 2)`` squared residuals,
so its relative standard error is a few per cent. Like every residual-based estimate it is
inflated where the decay is not mono-exponential (multi-compartment tissue, fat, flow): the
caller compares it with the background level
(:func:`~ironmap.fitting.misfit.check_residual_sigma`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, stats

from ..errors import InputError
from . import solvers
from .residuals import MIN_RESIDUAL_ECHOES, sigma_from_residuals

__all__ = ["HIGH_SNR", "MIN_SAMPLES", "SigmaMap", "local_sigma_map"]

#: Voxels whose fitted last echo is above this many sigma enter the map (Gaussian residuals).
HIGH_SNR = 10.0
#: Fewest high-SNR voxels a box must hold before it is trusted (else it grows).
MIN_SAMPLES = 20


@dataclass(frozen=True)
class SigmaMap:
    """A local noise map and how it was made.

    Attributes
    ----------
    sigma : numpy.ndarray, shape (...)
        Noise SD per voxel and channel (signal units); NaN outside the mask.
    global_sigma : float
        The residual sigma of all high-SNR voxels together (signal units).
    samples : int
        High-SNR voxels the map was averaged from.
    filled : float
        Share of the mask where even the largest box held too few samples (global value used).
    """

    sigma: NDArray[np.float64]
    global_sigma: float
    samples: int
    filled: float

    @property
    def spread(self) -> float:
        """95th over 5th percentile of the map inside the mask (1: uniform noise)."""
        inside = self.sigma[np.isfinite(self.sigma)]
        if inside.size == 0:
            return float("nan")
        low, high = np.percentile(inside, [5.0, 95.0])
        return float(high / low)


def local_sigma_map(
    data: ArrayLike,
    echo_times_s: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    size: int = 9,
    source: str | os.PathLike[str] | None = None,
) -> SigmaMap | None:
    """Noise SD per voxel from the local spread of the fit residuals.

    Parameters
    ----------
    data : array_like, shape (X, Y, Z, n_echoes) (or any spatial shape, echoes last)
        Magnitudes in signal units (not modified).
    echo_times_s : array_like, shape (n_echoes,)
        Echo times in seconds; at least 3 echoes (two leave no residual).
    mask : array_like of bool, shape (X, Y, Z), optional
        Voxels to map (default: all voxels with finite, positive echoes).
    size : int, optional
        Edge of the averaging box, in voxels (odd, >= 3; default 9).
    source : str or path-like, optional
        The file the data came from (the workflows pass it): fewer than 3 echoes are then
        refused with a message that names it and the ``--sigma-map`` option.

    Returns
    -------
    SigmaMap or None
        ``None`` when fewer than :data:`MIN_SAMPLES` voxels decay slowly enough to give
        Gaussian residuals.
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    arr = np.asarray(data)
    if te.ndim != 1 or te.size < MIN_RESIDUAL_ECHOES:
        need = f"needs >= {MIN_RESIDUAL_ECHOES} echoes, got {te.size}"
        if source is not None:
            raise InputError(f"{os.fspath(source)}: --sigma-map local {need}; use --sigma-map off")
        raise InputError(f"a local noise map {need}")
    if arr.ndim < 2 or arr.shape[-1] != te.size:
        raise InputError(
            f"data shape {arr.shape} does not end with the {te.size} echoes of echo_times_s"
        )
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 3:
        raise InputError(f"size must be an integer >= 3 voxels, got {size!r}")
    spatial = arr.shape[:-1]
    usable = np.all(np.isfinite(arr) & (arr > 0), axis=-1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial:
            raise InputError(f"mask shape {mask.shape} does not match the image grid {spatial}")
        usable &= mask
    idx = np.nonzero(usable)
    if idx[0].size < MIN_SAMPLES:
        return None
    signal = np.asarray(arr[idx], dtype=np.float64)
    s0, r2, converged = solvers.nlls(signal, te)
    pred = s0[:, None] * np.exp(-r2[:, None] * te)
    dof = te.size - 2
    var = np.sum((signal - pred) ** 2, axis=1) / dof  # sigma^2 per voxel, Gaussian residuals
    valid = converged & np.isfinite(var)
    last = pred[:, -1]

    global_sigma = sigma_from_residuals(var[valid] * dof, te.size)
    if global_sigma is None:
        return None
    high = valid & (last > HIGH_SNR * global_sigma)
    for _ in range(3):  # refine the global value on the voxels it selects
        if high.sum() < MIN_SAMPLES:
            return None
        global_sigma = sigma_from_residuals(var[high] * dof, te.size) or global_sigma
        high = valid & (last > HIGH_SNR * global_sigma)

    # Squared residuals beyond the 99.9 % point of chi2(dof) / dof are outliers the model does
    # not describe (vessels, partial volume at edges): they would pull a local mean up.
    clip = stats.chi2.ppf(0.999, dof) / dof
    sigma_vox = np.full(idx[0].size, global_sigma)
    filled = np.zeros(idx[0].size, dtype=bool)
    for _ in range(2):  # select against the global value, then against the first map
        high &= var < clip * sigma_vox**2
        if high.sum() < MIN_SAMPLES:
            return None
        local, enough = _box_average(var, high, idx, spatial, size)
        sigma_vox = np.where(enough, np.sqrt(local), global_sigma)
        filled = ~enough
        high = valid & (last > HIGH_SNR * sigma_vox)
    high &= var < clip * sigma_vox**2
    out = np.full(spatial, np.nan)
    out[idx] = sigma_vox
    return SigmaMap(
        sigma=out,
        global_sigma=global_sigma,
        samples=int(high.sum()),
        filled=float(filled.mean()),
    )


def _box_average(
    var: NDArray[np.float64],
    high: NDArray[np.bool_],
    idx: tuple[NDArray[np.intp], ...],
    spatial: tuple[int, ...],
    size: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Mean of ``var`` over the ``high`` voxels in a box around each voxel, growing the box
    (x2, x4) where it holds fewer than :data:`MIN_SAMPLES`; returns ``(mean, enough)``."""
    values = np.zeros(spatial)
    weight = np.zeros(spatial)
    values[tuple(i[high] for i in idx)] = var[high]
    weight[tuple(i[high] for i in idx)] = 1.0
    mean = np.full(idx[0].size, np.nan)
    enough = np.zeros(idx[0].size, dtype=bool)
    for factor in (1, 2, 4):
        box = [min(size * factor, n) for n in spatial]
        count = ndimage.uniform_filter(weight, box, mode="constant")[idx]
        total = ndimage.uniform_filter(values, box, mode="constant")[idx]
        volume = float(np.prod(box))
        ok = ~enough & (count * volume >= MIN_SAMPLES - 1e-6)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[ok] = total[ok] / count[ok]
        enough |= ok
        if enough.all():
            break
    return mean, enough
