"""Macroscopic field-gradient correction of multi-echo magnitudes.

A voxel in which the B0 off-resonance ``f`` (Hz) varies linearly with gradient ``g_k`` (Hz per
voxel) along each axis ``k`` dephases as a whole: its magnitude is multiplied by

    F(TE) = prod_k |sinc(g_k TE)|,    sinc(x) = sin(pi x) / (pi x)

(Yablonskiy 1998 for the through-slice direction; Dahnke & Schaeffter 2005 per axis). Near
air-tissue interfaces this extra decay inflates R2*, more so for thick slices and long echoes,
and differently between sites.

The correction enters the fit as a known factor of the model (``DecayModel.fit(...,
decay_factor=F)``). The field map comes from the phase of consecutive echoes:
``f = angle(S_2 conj(S_1)) / (2 pi (TE_2 - TE_1))``, averaged over echo pairs with magnitude
weights. This needs no spatial unwrapping as long as ``|f| < 1 / (2 dTE)`` (±100 Hz at 5 ms
spacing); beyond, the gradients still hold because they are taken from wrapped differences of
neighbouring voxels.

The gradients come from the unsmoothed field map where the field is steep (fourth-order
central differences between neighbours whose phase is a sample of the field): near an air
cavity the dipole field curves on the scale of a few voxels, and smoothing the map first
underestimates the gradient exactly where the correction matters (on a susceptibility phantom,
``benchmarks/field_gradients.py``, a 1-voxel smoothing left 20 % of the bias at 5-8 Hz/mm and
29 % at 8-15 Hz/mm, none of it flagged). Where the field is flat the smoothed map is used, so
that phase noise does not read as dephasing. A voxel whose correction cannot be trusted fails
(NaN factor, counted in ``unreliable``): too little signal left (``F < 0.3`` at some echo), a
field that changes by more than a cycle per voxel at the last echo between the samples around
it, or a steep field next to a neighbour that samples nothing (noise, air, or tissue dephased
beyond its echoes), whose side of the voxel is then unknown.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

__all__ = ["field_map", "fine_gradients", "gradient_correction", "gradient_decay"]

#: Below this predicted signal fraction the correction is not trusted (voxel is NaN).
MIN_FRACTION = 0.3
#: Smoothing (voxels) of the field map for the gradients where the field is flat:
#: differentiating amplifies phase noise, and noise in the gradient always reads as extra
#: dephasing (sinc is concave at 0).
SMOOTH_VOXELS = 1.0
#: Dephasing across a voxel at the last echo (cycles, ``max_k |g_k| TE_max``) up to which the
#: gradients of the smoothed field map are used, and from which those of the unsmoothed one
#: (:func:`fine_gradients`); blended linearly in between.
BLEND_CYCLES = (0.1, 0.3)
#: Mean resultant length of the unit phase steps of a voxel's echo pairs below which its field
#: is not a sample of the field (noise, or a voxel dephased beyond its echoes).
MIN_COHERENCE = 0.6
#: A neighbour whose signal weight (summed ``|S_n S_n+1|``) is below this fraction of the
#: voxel's own is not used as a sample of the field around it (noise, or far more dephased).
MIN_RELATIVE_WEIGHT = 0.1
#: A field step between adjacent samples (Hz per voxel) times the last echo time above this:
#: the field around the voxel changes faster than the correction can follow.
MAX_STEP_CYCLES = 1.0
#: A voxel whose first echo is below this fraction of the 90th percentile of the first echo
#: of the voxels whose field is a sample is noise, not tissue: it is left uncorrected
#: (factor 1) and never counted as beyond the correction.
SIGNAL_FRACTION = 0.15
#: Voxel-echoes per block when reducing the echo pairs (bounds the complex temporaries).
_BLOCK = 1 << 22


def _field_and_coherence(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Field (Hz), summed pair weight ``sum |S_n+1 S_n|`` and the pairs' phase coherence.

    Each of shape (X, Y, Z). The coherence is the mean resultant length of the unit phase
    steps ``S_n+1 conj(S_n) / |S_n+1 S_n|``: 1 for a phase that advances steadily, about
    ``1 / sqrt(n_pairs)`` for noise.
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    mag, ph = np.asarray(magnitude), np.asarray(phase)
    shape = mag.shape[:-1]
    mag, ph = mag.reshape(-1, te.size), ph.reshape(-1, te.size)
    field, total, coherence = (np.empty(mag.shape[0]) for _ in range(3))
    step = max(_BLOCK // max(te.size, 1), 1)
    for start in range(0, mag.shape[0], step):
        block = slice(start, start + step)
        z = mag[block].astype(np.float64) * np.exp(1j * ph[block].astype(np.float64))
        pairs = z[:, 1:] * np.conj(z[:, :-1])
        weight = np.abs(pairs)
        freq = np.angle(pairs) / (2 * np.pi * np.diff(te))  # one estimate per echo pair
        total[block] = np.sum(weight, axis=-1)
        np.divide(pairs, weight, out=pairs, where=weight > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            field[block] = np.sum(freq * weight, axis=-1) / total[block]
            coherence[block] = np.abs(np.sum(pairs, axis=-1)) / pairs.shape[1]
    return field.reshape(shape), total.reshape(shape), coherence.reshape(shape)


def field_map(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike, *, smooth_voxels: float = 0.0
) -> NDArray[np.float64]:
    """Off-resonance frequency (Hz) from multi-echo phase, by echo differences.

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians) of the same echoes.
    echo_times_s : array_like, shape (n_echoes,)
    smooth_voxels : float, optional
        SD (voxels) of a signal-weighted Gaussian smoothing of the map; 0 keeps it raw.

    Returns
    -------
    numpy.ndarray, shape (X, Y, Z)
        Frequency in Hz (positive = faster precession).
    """
    field, weight, _ = _field_and_coherence(magnitude, phase, echo_times_s)
    if smooth_voxels > 0:
        field = _smooth(field, weight, smooth_voxels)
    return field


def _smooth(field: NDArray, weight: NDArray, sd_voxels: float) -> NDArray[np.float64]:
    """Signal-weighted Gaussian smoothing: noisy (dark) voxels count less."""
    w = np.where(np.isfinite(field), weight, 0.0)
    num = ndimage.gaussian_filter(np.nan_to_num(field) * w, sd_voxels)
    den = ndimage.gaussian_filter(w, sd_voxels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(field), num / den, np.nan)


def _smooth_gradient(gradient: NDArray, weight: NDArray) -> NDArray[np.float64]:
    """Signal-weighted Gaussian average (:data:`SMOOTH_VOXELS`) of a gradient map; NaN (no
    difference) counts as missing. Normalised within the image, so a uniform gradient stays
    exact up to its edges; 0 where nothing is near."""
    w = np.where(np.isfinite(gradient), np.nan_to_num(weight), 0.0)
    num = ndimage.gaussian_filter(np.nan_to_num(gradient) * w, SMOOTH_VOXELS, mode="constant")
    den = ndimage.gaussian_filter(w, SMOOTH_VOXELS, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


def gradient_decay(field_hz: NDArray, echo_times_s: ArrayLike) -> NDArray[np.float64]:
    """Signal fraction ``F(TE)`` left by intravoxel dephasing, shape (X, Y, Z, n_echoes).

    Parameters
    ----------
    field_hz : numpy.ndarray, shape (X, Y, Z)
        Off-resonance map (Hz); its gradients per voxel (central differences) define ``g_k``.
    echo_times_s : array_like, shape (n_echoes,)
    """
    field = np.asarray(field_hz, dtype=np.float64)
    grads = [np.gradient(field, axis=k) for k in range(field.ndim) if field.shape[k] > 1]
    return _sinc_decay(grads, echo_times_s, field.shape)


def _sinc_decay(
    gradients: list[NDArray], echo_times_s: ArrayLike, shape: tuple[int, ...]
) -> NDArray[np.float64]:
    """``prod_k |sinc(g_k TE)|`` for gradients in Hz per voxel, shape (*shape, n_echoes)."""
    te = np.asarray(echo_times_s, dtype=np.float64)
    decay = np.ones((*shape, te.size))
    for g in gradients:
        decay *= np.abs(np.sinc(g[..., None] * te))
    return decay


def _shift(a: NDArray, axis: int, step: int, fill: float | bool) -> NDArray:
    """``out[i] = a[i + step]`` along ``axis``, ``fill`` beyond the edge."""
    out = np.full_like(a, fill)
    src, dst = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    if step > 0:
        src[axis], dst[axis] = slice(step, None), slice(None, -step)
    else:
        src[axis], dst[axis] = slice(None, step), slice(-step, None)
    out[tuple(dst)] = a[tuple(src)]
    return out


def fine_gradients(
    field_hz: NDArray,
    sample: NDArray,
    *,
    weight: NDArray | None = None,
    period_hz: float = np.inf,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Gradients of an unsmoothed field map from the neighbours that sample it.

    Along each axis: fourth-order central differences ``(8 (f+1 - f-1) - (f+2 - f-2)) / 12``
    where two neighbours on each side sample the field, else central ``(f+1 - f-1) / 2``, else
    one-sided differences (second order where two neighbours on that side do) when the voxel
    itself samples it. Every difference is taken between adjacent samples and wrapped into
    ``±period_hz / 2``, so an aliased field map (beyond ``±1 / (2 dTE)``) keeps its gradients.

    Parameters
    ----------
    field_hz : numpy.ndarray, shape (X, Y, Z)
        Off-resonance (Hz), unsmoothed.
    sample : numpy.ndarray of bool, shape (X, Y, Z)
        Voxels whose field is a sample of the field (not noise).
    weight : numpy.ndarray, shape (X, Y, Z), optional
        Signal weight of each voxel's field (e.g. summed ``|S_n S_n+1|``): a neighbour below
        :data:`MIN_RELATIVE_WEIGHT` times the voxel's own does not serve it (a dark, noisy or
        dephased sample).
    period_hz : float, optional
        Period of the field map's ambiguity, ``1 / dTE`` (Hz); infinite: no wrapping.

    Returns
    -------
    gradients : numpy.ndarray, shape (3, X, Y, Z)
        Hz per voxel along each axis; NaN where no difference could be taken (0 along an axis
        of length 1).
    steps : numpy.ndarray, shape (X, Y, Z)
        Largest absolute difference between adjacent samples used (Hz per voxel).
    gaps : numpy.ndarray of bool, shape (3, X, Y, Z)
        Whether a neighbour inside the image along each axis was not a usable sample (the
        difference is one-sided or missing for want of it, not for the image's edge).
    """
    ok = np.asarray(sample, dtype=bool) & np.isfinite(field_hz)
    f = np.where(ok, np.asarray(field_hz, dtype=np.float64), 0.0)
    w = np.ones(f.shape) if weight is None else np.nan_to_num(np.asarray(weight, np.float64))
    floor = MIN_RELATIVE_WEIGHT * w
    w = np.where(ok, w, 0.0)  # only samples serve as neighbours

    def wrap(d: NDArray) -> NDArray:
        return d if not np.isfinite(period_hz) else d - period_hz * np.round(d / period_hz)

    gradients = np.zeros((f.ndim, *f.shape))
    steps = np.zeros(f.shape)
    gaps = np.zeros((f.ndim, *f.shape), dtype=bool)
    for axis in range(f.ndim):
        if f.shape[axis] < 2:
            continue
        up1, down1, up2, down2 = (_shift(w, axis, k, 0.0) > floor for k in (1, -1, 2, -2))
        up2 &= up1
        down2 &= down1
        f_up1, f_down1 = _shift(f, axis, 1, 0.0), _shift(f, axis, -1, 0.0)
        # differences between adjacent samples, each wrapped; the centre cancels from the
        # central differences and is skipped where it is no sample
        step_up, step_down = wrap(f_up1 - f), wrap(f - f_down1)  # f+1 - f0, f0 - f-1
        span = np.where(ok, step_up + step_down, wrap(f_up1 - f_down1))  # f+1 - f-1
        outer_up = wrap(_shift(f, axis, 2, 0.0) - f_up1)  # f+2 - f+1
        outer_down = wrap(f_down1 - _shift(f, axis, -2, 0.0))  # f-1 - f-2
        three = up1 & down1
        five = three & up2 & down2
        g = np.where(five, (7 * span - (outer_up + outer_down)) / 12, span / 2)
        up_only, down_only = ok & up1 & ~three, ok & down1 & ~up1
        up = np.where(up2, (3 * step_up - outer_up) / 2, step_up)
        down = np.where(down2, (3 * step_down - outer_down) / 2, step_down)
        g = np.where(three, g, np.where(up_only, up, np.where(down_only, down, np.nan)))
        gradients[axis] = g
        inner = np.where(
            three & ok,
            np.maximum(np.abs(step_up), np.abs(step_down)),
            np.where(three, np.abs(span) / 2, 0.0),
        )
        inner = np.where(up_only, np.abs(step_up), np.where(down_only, np.abs(step_down), inner))
        outer = np.maximum(
            np.where(five | (up_only & up2), np.abs(outer_up), 0.0),
            np.where(five | (down_only & down2), np.abs(outer_down), 0.0),
        )
        steps = np.maximum(steps, np.maximum(inner, outer))
        edge_up, edge_down = (_shift(np.zeros(f.shape, bool), axis, k, True) for k in (1, -1))
        gaps[axis] = ~(up1 | edge_up) | ~(down1 | edge_down)
    return gradients, steps, gaps


def gradient_correction(
    magnitude: NDArray, phase: NDArray, echo_times_s: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The dephasing factor to fit with, from the phase of the echoes.

    Use it as ``DecayModel(te).fit(magnitude, decay_factor=factor)``: the decay model becomes
    ``S0 exp(-R2* TE) F(TE)`` and the noise stays that of the measured magnitudes (dividing the
    magnitudes by ``F`` instead would amplify the Rician noise floor of dephased echoes).

    The gradients ``g_k`` (Hz per voxel) are those of the unsmoothed field map
    (:func:`fine_gradients`) where the field is steep and their signal-weighted Gaussian average
    (:data:`SMOOTH_VOXELS`, which also fills voxels without a difference) where it is flat,
    blended as ``max_k |g_k| TE_max`` (either estimate) goes from ``BLEND_CYCLES[0]`` to
    ``BLEND_CYCLES[1]`` cycles. Voxels whose first echo is below :data:`SIGNAL_FRACTION` of the
    sampled voxels' 90th percentile are noise (air, background): factor 1, never flagged.

    Parameters
    ----------
    magnitude, phase : numpy.ndarray, shape (X, Y, Z, n_echoes)
        Magnitudes and phases (radians) of the same echoes.
    echo_times_s : array_like, shape (n_echoes,)

    Returns
    -------
    factor : numpy.ndarray, shape (X, Y, Z, n_echoes)
        ``F(TE)``; NaN where the voxel fails (``unreliable``) or has no field estimate.
    field_hz : numpy.ndarray, shape (X, Y, Z)
        The unsmoothed field map (Hz).
    unreliable : numpy.ndarray of bool, shape (X, Y, Z)
        Voxels with signal beyond the correction (exactly those of them with a NaN factor):
        ``F <`` :data:`MIN_FRACTION` at some echo; a step between adjacent field samples of
        their gradient above :data:`MAX_STEP_CYCLES` ``/ TE_max`` Hz; or, where the field is
        steep (``BLEND_CYCLES[0]``), a neighbour inside the image that is no sample of the
        field (:data:`MIN_COHERENCE`, :data:`MIN_RELATIVE_WEIGHT`) or their own phase no
        sample either (both of these also where it is flat).
    """
    te = np.asarray(echo_times_s, dtype=np.float64)
    te_max = float(np.max(te))
    field, weight, coherence = _field_and_coherence(magnitude, phase, te)
    finite = np.isfinite(field)
    spacing = np.diff(te)
    period = 1.0 / float(np.min(spacing)) if spacing.size else np.inf
    sample = finite & (coherence >= MIN_COHERENCE)
    fine, steps, gaps = fine_gradients(field, sample, weight=weight, period_hz=period)
    # tissue, not noise: a first echo of at least a fraction of the bright samples'
    first = np.asarray(magnitude)[..., 0].astype(np.float64)
    reference = np.percentile(first[sample], 90) if sample.any() else np.inf
    signal = first >= SIGNAL_FRACTION * reference
    coarse = np.stack([_smooth_gradient(g, weight) for g in fine])
    fine = np.where(np.isnan(fine), coarse, fine)  # no neighbour to sample: smoothed only
    steep = np.max(np.maximum(np.abs(fine), np.abs(coarse)), axis=0) * te_max  # cycles
    low, high = BLEND_CYCLES
    blend = np.clip((steep - low) / (high - low), 0.0, 1.0)
    decay = _sinc_decay(list((1 - blend) * coarse + blend * fine), te, field.shape)
    beyond = gaps.any(axis=0)  # some neighbour is no sample: the field may change there
    odd = ~sample & signal  # tissue whose own phase does not advance steadily
    unreliable = (finite & signal) & (
        (decay < MIN_FRACTION).any(axis=-1)
        | (steps * te_max > MAX_STEP_CYCLES)
        | ((blend > 0) & (beyond | odd))
        | (beyond & odd)
    )
    decay[~signal] = 1.0  # noise: nothing to correct, nothing to count
    factor = np.where((unreliable | ~finite)[..., None], np.nan, decay)
    return factor, field, unreliable
