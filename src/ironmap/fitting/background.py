"""The image background: per-channel noise sigma and effective channel count ``N``.

Air outside the head holds pure noise. For a root-sum-of-squares image of ``N`` receive channels
its magnitude is central chi with ``2 N`` degrees of freedom (``N = 1``: Rayleigh).
:func:`diagnose_background` finds the background (histogram valley, self-consistent cutoff),
fits ``N`` and ``sigma`` (:func:`~.chi.fit_truncated_chi`), and accepts the estimate only if the
low-intensity voxels are noise around the head, not tissue (Kolmogorov distance, the image
border, the absence of decay over the echoes). :class:`NoiseEstimate` is its result and
:data:`Background.ANALYSE` the sentinel of the functions that analyse the background on demand.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import signal, stats

from .background_checks import (
    MAX_BLOCK_SPREAD,
    MAX_ECHO_DRIFT,
    MIN_BORDER_SHARE,
    MIN_ONE_SIDED_SHARE,
    block_spread,
    border_share,
    echo_drift,
)
from .chi import MAX_KS_DISTANCE, fit_truncated_chi, level_counts

__all__ = [
    "Background",
    "NoiseEstimate",
    "check_background",
    "diagnose_background",
    "noise_from_background",
    "resolve_background",
]

#: Upper quantile of the fitted noise distribution used as the background cutoff.
_CHI_CUTOFF_QUANTILE = 0.999


@dataclass(frozen=True)
class NoiseEstimate:
    """Background noise of a magnitude volume: a central chi distribution with ``2 N`` dof.

    Attributes
    ----------
    sigma : float
        Noise SD per channel (real and imaginary part of one receive channel), in signal units.
    coils : float
        Effective number of receive channels ``N`` (1: Rayleigh, single channel or adaptive
        combine; 12 for a 12-channel root-sum-of-squares image without noise correlation;
        correlated channels give a non-integer, smaller ``N``).
    n_voxels : int
        Background voxels used (each contributes all its echoes).
    n_values : int
        Background magnitudes used (voxels times echoes, exact zeros excluded).
    n_zeros : int
        Voxels whose first echo is exactly 0 (masked or zero-filled; excluded).
    quantised : bool
        The magnitudes are integers: they were treated as intervals ``[k - 1/2, k + 1/2)``.
    ks_distance : float
        Kolmogorov distance between the data and the fitted (truncated) distribution, the
        quality of the fit (0: perfect; estimates above 0.05 are refused).
    spread : float
        Largest over smallest sigma of up to 8 spatial blocks of the background (NaN when the
        data have no spatial layout or too few voxels per block); > 1.2 means the noise varies
        in space (parallel-imaging g-factor, intensity normalisation) and ``sigma`` is an
        average.
    cutoff : float
        The background holds the values below this magnitude (signal units).
    source : str
        How the estimate was made, for logs and sidecars.
    """

    sigma: float
    coils: float
    n_voxels: int
    n_values: int
    n_zeros: int
    quantised: bool
    ks_distance: float
    spread: float
    cutoff: float
    source: str = "background"

    @property
    def n_coils(self) -> int:
        """``coils`` rounded to the nearest integer >= 1."""
        return max(1, round(self.coils))

    @property
    def uniform(self) -> bool:
        """False when the background noise varies in space (see ``spread``)."""
        return not self.spread > MAX_BLOCK_SPREAD


class Background(enum.Enum):
    """The one value of a ``background`` argument that is not an estimate: analyse it here.

    The functions that use the image background (:meth:`~ironmap.fitting.DecayModel.fit`,
    :func:`~ironmap.fitting.effective_coils`, :func:`background_level`) take a
    :class:`NoiseEstimate` the caller already has, ``None`` (the image has no usable
    background), or ``Background.ANALYSE`` (the default): run :func:`noise_from_background` on
    the data when it is needed.
    """

    ANALYSE = enum.auto()  # not a string: no data or option value can stand for it

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


def check_background(background: object, name: str = "background") -> None:
    """Raise ``TypeError`` unless ``background`` is a NoiseEstimate, None or Background.ANALYSE."""
    if background is None or isinstance(background, NoiseEstimate | Background):
        return
    raise TypeError(
        f"{name} must be a NoiseEstimate, None (no usable background) or "
        f"ironmap.fitting.Background.ANALYSE (analyse the background here), got {background!r}"
    )


def resolve_background(
    data: ArrayLike,
    background: NoiseEstimate | Background | None,
    *,
    threshold: float = 0.05,
    name: str = "background",
) -> NoiseEstimate | None:
    """The :func:`noise_from_background` estimate ``background`` stands for.

    ``Background.ANALYSE``: computed here from ``data`` (with ``threshold``); a
    :class:`NoiseEstimate` or None: itself. Anything else raises ``TypeError``
    (:func:`check_background`, naming the argument ``name``).
    """
    if background is Background.ANALYSE:
        return noise_from_background(data, threshold=threshold)
    check_background(background, name)
    return background


def noise_from_background(
    data: ArrayLike, *, threshold: float = 0.05, min_voxels: int = 500, min_fraction: float = 0.02
) -> NoiseEstimate | None:
    """Per-channel noise SD and effective channel count from the image background.

    Shorthand for ``diagnose_background(data)[0]``; see :func:`diagnose_background`.

    Parameters
    ----------
    data : array_like, shape (..., n_echoes) or (...,)
        Magnitude images (not modified); a volume without an echo axis is one echo.
    threshold, min_voxels, min_fraction : optional
        See :func:`diagnose_background`.

    Returns
    -------
    NoiseEstimate or None
        ``None`` when the volume has no usable background. Never raises.
    """
    return diagnose_background(
        data, threshold=threshold, min_voxels=min_voxels, min_fraction=min_fraction
    )[0]


def diagnose_background(
    data: ArrayLike, *, threshold: float = 0.05, min_voxels: int = 500, min_fraction: float = 0.02
) -> tuple[NoiseEstimate | None, str]:
    """Fit a central chi distribution with ``2 N`` degrees of freedom to the background.

    The background of a root-sum-of-squares image of ``N`` receive channels, each with
    Gaussian noise of SD ``sigma`` in its real and imaginary part, is ``M = sigma chi_2N``
    (``N = 1``: Rayleigh). With ``u = M^2 / sigma^2 ~ chi^2(2N)``, ``E[u] = 2N`` and
    ``Var[u] = 4N``, so ``E[M^2] = 2N sigma^2`` and ``E[M^4] = 4N(N + 1) sigma^4``; hence
    ``N = E[M^2]^2 / (E[M^4] - E[M^2]^2)`` and ``sigma^2 = E[M^2] / (2N)
    = (E[M^4] - E[M^2]^2) / (2 E[M^2])`` (method of moments, the starting point).

    Steps (all vectorised):

    1. exact zeros (masking, zero-filling) are excluded and counted; non-finite values ignored;
    2. the background is the voxels whose first echo is below a cutoff, starting at the valley
       above the lowest mode of the smoothed histogram of ``log M`` (the background peak, found
       whatever ``N`` and the SNR; ``threshold`` times the 99th percentile if the histogram has
       fewer than two prominent modes) but at most 3.2 medians of the voxels below it, then
       moved to the 99.9 % quantile of the fitted distribution until self-consistent; every
       echo of those voxels below the cutoff is used;
    3. ``N`` and ``sigma`` are the maximum-likelihood fit of the chi distribution *truncated* to
       ``(lower, cutoff)``, started from the moments above (Sheppard-corrected for integer
       data). Truncation is thus exact, not approximated; continuous data enter through their
       sufficient statistics ``sum log M`` and ``sum M^2``; integer data (scanner DICOM/NIfTI
       with small backgrounds, e.g. median 2) are treated as intervals ``[k - 1/2, k + 1/2)``
       with the lower bound at ``1/2`` (a genuine noise value rounded to 0 cannot be told from
       a masked 0, so the zeros are modelled as truncated, not as data);
    4. the fit is refused if the Kolmogorov distance to the data exceeds 0.05, if noise and
       signal are not separable, or with too few voxels or distinct levels; a spatially varying
       background is reported (``spread``), not refused.

    Parameters
    ----------
    data : array_like, shape (..., n_echoes) or (...,)
        Magnitude images in signal units (not modified). With two or more spatial axes the
        blocks of step 4 are spatial; a 1-D array is one echo of unordered voxels.
    threshold : float, optional
        Start of the cutoff search, as a fraction of the 99th percentile of the first echo, when
        the histogram shows no separate background peak.
    min_voxels : int, optional
        Minimum number of background voxels.
    min_fraction : float, optional
        Minimum background size as a fraction of the non-zero voxels.

    Returns
    -------
    estimate : NoiseEstimate or None
        ``None`` when there is no usable background.
    reason : str
        Why ``estimate`` is ``None`` (for logs), or a one-line summary of the estimate.

    Notes
    -----
    Never raises for array-like input: all zeros, constants, NaN, tiny or integer volumes give
    ``(None, reason)``.
    """
    try:
        return _diagnose_background(data, threshold, min_voxels, min_fraction)
    except (ValueError, TypeError, FloatingPointError, ArithmeticError) as exc:  # pragma: no cover
        return None, f"background noise estimation failed: {exc}"


def _diagnose_background(
    data: ArrayLike, threshold: float, min_voxels: int, min_fraction: float
) -> tuple[NoiseEstimate | None, str]:
    arr = np.asarray(data)
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        return None, "no numeric magnitudes"
    if arr.ndim < 2:
        arr = arr.reshape(-1, 1)
    # ``arr`` keeps its dtype (no float64 copy of the whole volume); every subset taken from
    # it below is converted, exactly (float32 and integers are exact in float64).
    spatial = arr.shape[:-1]
    first = arr[..., 0].astype(np.float64)
    finite = np.isfinite(first)
    zeros = finite & (first == 0)
    n_zeros = int(zeros.sum())
    usable = finite & (first > 0)
    n_usable = int(usable.sum())
    if n_usable < min_voxels:
        return None, f"only {n_usable} non-zero voxels ({n_zeros} exact zeros): no background"
    top = float(np.percentile(first[usable], 99.0))
    quantised = _integer_valued(arr)
    lower = 0.5 if quantised else 0.0
    # Start at the valley above the lowest mode of the log-intensity histogram (the background
    # peak, wherever N and the SNR put it); without two modes, at ``threshold`` times the 99th
    # percentile. Tissue edges inflate the fourth moment: start at most 3.2 medians of the low
    # region, above the 99.9 % quantile of any chi distribution (3.16 medians for Rayleigh,
    # less for N > 1).
    valley = _background_valley(first[usable], quantised)
    cutoff = threshold * top if valley is None else valley
    low = first[usable & (first < cutoff)]
    if low.size:
        cutoff = min(cutoff, 3.2 * float(np.median(low)) + (1.0 if quantised else 0.0))
    if quantised:  # coarse levels (sigma of about one unit): start with at least three of them
        cutoff = max(cutoff, lower + 3.0)
    fit: tuple[float, float, float] | None = None
    for _ in range(30):
        voxels = usable & (first < cutoff)
        n_voxels = int(voxels.sum())
        if n_voxels < max(min_voxels, min_fraction * n_usable):
            return None, (
                f"{n_voxels} voxels below the background cutoff {cutoff:.4g}: too few "
                f"(need {max(min_voxels, math.ceil(min_fraction * n_usable))})"
            )
        values = arr[voxels].astype(np.float64)
        values = values[np.isfinite(values) & (values > lower) & (values < cutoff)]
        if quantised and level_counts(values)[0].size < 3:
            return None, "fewer than 3 distinct background levels: cannot fit the noise"
        if not quantised and np.ptp(values) <= 0:
            return None, "constant background: not noise"
        fit = fit_truncated_chi(values, lower, cutoff, quantised)
        if fit is None:
            return None, "the background does not follow a chi distribution"
        coils, sigma, _ = fit
        new_cutoff = sigma * math.sqrt(stats.chi2.ppf(_CHI_CUTOFF_QUANTILE, 2.0 * coils))
        if quantised:  # keep the level holding the quantile, and at least 3 levels
            new_cutoff = max(math.floor(new_cutoff + 0.5) + 0.5, lower + 3.0)
        if new_cutoff > 0.5 * top:
            return None, "noise and signal are not separable (no background below the tissue)"
        if abs(new_cutoff - cutoff) <= 1e-3 * cutoff:
            break
        cutoff = new_cutoff
    assert fit is not None
    coils, sigma, ks = fit
    if ks > MAX_KS_DISTANCE:
        return None, (
            f"background is not chi distributed (Kolmogorov distance {ks:.3f} > "
            f"{MAX_KS_DISTANCE}): tissue, artefacts or processing in the background"
        )
    voxels = usable & (first < cutoff)
    border = border_share(voxels, usable)
    one_sided = border is not None and border < MIN_BORDER_SHARE
    if one_sided:
        # Air on one side of the field of view only (the head cut by it): accepted when the
        # voxels hold noise, whose level does not change over the echoes; tissue decays.
        drift = echo_drift(arr, voxels)
        flat = drift is not None and abs(drift[0]) <= MAX_ECHO_DRIFT + 3.0 * drift[1]
        if border < MIN_ONE_SIDED_SHARE or not flat:
            decay = (
                ""
                if drift is None or border < MIN_ONE_SIDED_SHARE
                else f" and their mean magnitude changes by {100 * drift[0]:+.0f} % from the "
                "second to the last echo (decay)"
            )
            return None, (
                f"only {100 * border:.0f} % of the non-zero voxels at the image's in-plane "
                f"border are below the background cutoff{decay}: the low-intensity voxels are "
                "tissue, not a background around the head"
            )
    spread = block_spread(arr, voxels, spatial, lower, cutoff, coils)
    estimate = NoiseEstimate(
        sigma=sigma,
        coils=coils,
        n_voxels=int(voxels.sum()),
        n_values=int(values.size),
        n_zeros=n_zeros,
        quantised=quantised,
        ks_distance=ks,
        spread=spread,
        cutoff=cutoff,
        source="background (chi, 2N dof" + (", integer levels" if quantised else "") + ")",
    )
    summary = (
        f"background noise sigma {sigma:.4g} per channel, N = {coils:.2f} effective channels, "
        f"{estimate.n_voxels} voxels ({n_zeros} exact zeros excluded), Kolmogorov distance "
        f"{ks:.3f}"
        + ("" if estimate.uniform else f"; spatially varying (x{spread:.2f})")
        + (
            f"; on one side of the image ({100 * border:.0f} % of its in-plane border), "
            "constant over the echoes"
            if one_sided
            else ""
        )
    )
    return estimate, summary


def _integer_valued(arr: np.ndarray) -> bool:
    """All finite positive values are integers (integer dtypes: always). A float volume is
    first checked on an evenly strided sample of 10 000 values: one non-integer there answers
    without rounding the whole volume."""
    if arr.dtype.kind in "biu":
        return True
    flat = arr.reshape(-1)
    for values in (flat[:: max(1, flat.size // 10_000)], flat):
        values = values[np.isfinite(values) & (values > 0)]
        if not np.all(values == np.round(values)):
            return False
    return True


def _background_valley(first: NDArray[np.float64], quantised: bool) -> float | None:
    """Upper edge of the background peak of the first-echo magnitudes, or ``None``.

    The histogram of ``log M`` (integer levels spread over ``[k - 1/2, k + 1/2)`` so that they
    do not form a comb) is smoothed; its lowest prominent mode is the background and the
    minimum between it and the next prominent mode its upper edge. ``None`` without two
    prominent modes (no background, or no tissue peak).
    """
    if quantised:
        # Exact interval spreading: evaluate the piecewise-linear empirical CDF at the bin edges.
        levels, counts = level_counts(first)
        knots = np.concatenate([[levels[0] - 0.5], levels + 0.5])
        knots = np.maximum(knots, 0.5)
        cdf_knots = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)])
        lo, hi = math.log(knots[0]), math.log(float(np.percentile(first, 99.9)) + 0.5)
    else:
        logs = np.log(first)
        lo, hi = (float(v) for v in np.percentile(logs, [0.1, 99.9]))
    if not hi > lo:
        return None
    n_bins = int(np.clip(math.sqrt(first.size), 32, 200))
    edges = np.linspace(lo, hi, n_bins + 1)
    if quantised:
        hist = np.diff(np.interp(np.exp(edges), knots, cdf_knots))
    else:
        hist = np.histogram(logs, bins=edges)[0].astype(np.float64)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    smooth = np.convolve(np.pad(hist, 6, mode="edge"), kernel / kernel.sum(), mode="valid")
    peaks, _ = signal.find_peaks(
        np.concatenate([[0.0], smooth, [0.0]]), prominence=0.05 * float(smooth.max())
    )
    peaks = peaks - 1
    if peaks.size < 2:
        return None
    between = smooth[peaks[0] : peaks[1] + 1]
    valley = peaks[0] + int(np.argmin(between))
    return float(math.exp(0.5 * (edges[valley] + edges[valley + 1])))
