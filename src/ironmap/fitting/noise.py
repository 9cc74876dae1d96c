"""Estimating the noise standard deviation ``sigma`` of magnitude multi-echo data.

Two estimators, tried in this order by :class:`~ironmap.fitting.DecayModel`:

1. **Background** (:func:`sigma_from_background`): air outside the head holds pure noise, whose
   magnitude is Rayleigh distributed with median ``sigma sqrt(2 ln 2)``. Starting from the voxels
   whose first echo is below 5 % of the robust maximum, the cutoff is moved to 3.5 sigma and
   sigma re-estimated (accounting for the truncation) until both agree; the estimate is kept only
   if there are enough such voxels and their spread is Rayleigh-like (else the volume was
   cropped, masked or zero-filled and has no usable background).
2. **Residuals** (:func:`sigma_from_residuals`): in voxels well above the noise floor the
   residuals of a least-squares fit are Gaussian with variance ``sigma^2`` and
   ``n_echoes - 2`` degrees of freedom. Model misfit inflates this estimate, so it is an upper
   bound in tissue that is not mono-exponential. Needs >= 3 echoes.
   :func:`check_residual_sigma` compares it with the background level and flags the misfit.

:func:`noise_from_background` / :func:`diagnose_background` generalise the background estimator
to root-sum-of-squares images of ``N`` receive channels (central chi with ``2 N`` degrees of
freedom): they return the per-channel sigma *and* the effective channel count, handle exact zeros
and integer quantisation, report a spatially varying background, and never raise.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, signal, special, stats

__all__ = [
    "Background",
    "NoiseEstimate",
    "ResidualSigma",
    "background_level",
    "check_background",
    "check_residual_sigma",
    "diagnose_background",
    "noise_from_background",
    "rayleigh_sigma",
    "resolve_background",
    "sigma_from_background",
    "sigma_from_residuals",
]

#: Background voxels lie below this many sigma (99.8 % of the Rayleigh distribution).
_CUTOFF_SIGMAS = 3.5
_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))
#: Interquartile range over median of a Rayleigh distribution (scale free).
_RAYLEIGH_IQR_RATIO = float(
    (np.sqrt(2 * np.log(4)) - np.sqrt(2 * np.log(4 / 3))) / np.sqrt(2 * np.log(2))
)


def sigma_from_background(
    data: NDArray[np.floating],
    *,
    threshold: float = 0.05,
    min_voxels: int = 500,
    min_fraction: float = 0.02,
) -> float | None:
    """Noise SD from the Rayleigh-distributed background, or ``None`` if there is none.

    Parameters
    ----------
    data : numpy.ndarray, shape (..., n_echoes)
        Magnitude images (not modified).
    threshold : float, optional
        The search starts from voxels whose first echo is below ``threshold`` times the 99th
        percentile.
    min_voxels, min_fraction : optional
        Minimum size of the background, in voxels and as a fraction of all voxels.

    Returns
    -------
    float or None
        ``sigma`` in signal units, or ``None`` when the volume has no background that looks like
        pure noise (too few voxels, exact zeros, or a spread unlike a Rayleigh distribution).
        A background that is not Rayleigh but is the central chi distribution of a
        root-sum-of-squares image of ``N > 1`` channels gives the *per-channel* sigma of
        :func:`noise_from_background` (the magnitude SD is then about ``0.7 sigma`` and its mean
        ``sigma sqrt(2N - 1/2)``, not ``1.25 sigma``); integer-valued backgrounds are also
        delegated to it. Never raises.
    """
    sigma = rayleigh_sigma(data, threshold, min_voxels, min_fraction)
    if sigma is not None:
        return sigma
    estimate = noise_from_background(
        data, threshold=threshold, min_voxels=min_voxels, min_fraction=min_fraction
    )
    return None if estimate is None else estimate.sigma


def rayleigh_sigma(
    data: NDArray[np.floating],
    threshold: float = 0.05,
    min_voxels: int = 500,
    min_fraction: float = 0.02,
) -> float | None:
    """The Rayleigh (one receive channel) background estimator of :func:`sigma_from_background`.

    ``None`` if the background is not Rayleigh (or is integer-valued with sigma below 5, or
    absent); :func:`noise_from_background` is then the estimator to try. Never raises.
    """
    try:
        return _rayleigh_sigma(data, threshold, min_voxels, min_fraction)
    except (ValueError, TypeError, IndexError, ArithmeticError):
        return None


def _rayleigh_sigma(
    data: NDArray[np.floating], threshold: float, min_voxels: int, min_fraction: float
) -> float | None:
    """The Rayleigh background estimator (``None`` if the background is not Rayleigh)."""
    arr = np.asarray(data)
    if arr.ndim == 0 or arr.dtype.kind not in "biuf":
        return None
    first = arr[..., 0].astype(np.float64).ravel()
    first = first[np.isfinite(first) & (first > 0)]  # exact zeros: masked/zero-filled, not noise
    if first.size < min_voxels:
        return None
    top = float(np.percentile(first, 99.0))
    cutoff = threshold * top
    sigma = None
    for _ in range(20):
        values = first[first < cutoff]
        if values.size < max(min_voxels, min_fraction * first.size):
            return None
        sigma = _truncated_rayleigh_sigma(float(np.median(values)), cutoff)
        if sigma is None:
            return None
        new_cutoff = _CUTOFF_SIGMAS * sigma
        if new_cutoff > 0.5 * top:  # noise and signal not separable
            return None
        if abs(new_cutoff - cutoff) < 1e-3 * cutoff:
            break
        cutoff = new_cutoff
    values = first[first < cutoff]
    q25, q50, q75 = np.percentile(values, [25.0, 50.0, 75.0])
    # A background mixed with tissue, or made of constant values, has the wrong shape.
    if abs((q75 - q25) / q50 - _RAYLEIGH_IQR_RATIO) > 0.2 * _RAYLEIGH_IQR_RATIO:
        return None
    if sigma is not None and sigma < 5.0 and np.all(values == np.round(values)):
        return None  # coarse integer levels bias the median: use the interval fit instead
    return sigma


def _truncated_rayleigh_sigma(median: float, cutoff: float) -> float | None:
    """Rayleigh scale whose distribution truncated at ``cutoff`` has the given median.

    ``None`` if there is none: as sigma grows the truncated density tends to ``2 M / cutoff^2``,
    whose median ``cutoff / sqrt(2)`` is the largest a truncated Rayleigh can have. A median
    above it (a root-sum-of-squares background, ``N > 1``) used to make ``brentq`` raise.
    """
    if not (median > 0 and cutoff > median):
        return None
    if cutoff / median > 30:  # truncation irrelevant
        return median / _RAYLEIGH_MEDIAN

    def excess(sigma: float) -> float:
        cdf = -np.expm1(-0.5 * (median / sigma) ** 2)
        return cdf - 0.5 * -np.expm1(-0.5 * (cutoff / sigma) ** 2)

    # excess > 0 for small sigma; < 0 for large sigma only if median < cutoff / sqrt(2).
    if not excess(median / 50.0) > 0 > excess(median * 50.0):
        return None
    return float(optimize.brentq(excess, median / 50.0, median * 50.0, xtol=1e-12 * median))


def sigma_from_residuals(residual_ss: NDArray[np.float64], n_echoes: int) -> float | None:
    """Noise SD from per-voxel residual sums of squares of a mono-exponential fit.

    Parameters
    ----------
    residual_ss : numpy.ndarray, shape (n_voxels,)
        ``sum_i (M_i - S_i)^2`` of high-SNR voxels (Rician bias negligible).
    n_echoes : int
        Echoes per voxel (>= 3).

    Returns
    -------
    float or None
        ``sqrt(median(RSS) / median(chi2(n_echoes - 2)))``: the median makes it robust to the
        few voxels (vessels, edges) the model does not describe. ``None`` with < 3 echoes or
        no finite residuals.
    """
    dof = n_echoes - 2
    rss = residual_ss[np.isfinite(residual_ss)]
    if dof < 1 or rss.size == 0:
        return None
    sigma = float(np.sqrt(np.median(rss) / stats.chi2.median(dof)))
    return sigma if sigma > 0 else None


# ---------------------------------------------------------------------------------------------
# Background noise of multi-channel (root-sum-of-squares) magnitudes: central chi, 2N dof.
# ---------------------------------------------------------------------------------------------

#: Upper quantile of the fitted noise distribution used as the background cutoff.
_CHI_CUTOFF_QUANTILE = 0.999
#: Accept the fitted chi distribution if the Kolmogorov distance to the data is below this.
_MAX_KS_DISTANCE = 0.05
#: Values the Kolmogorov distance of continuous data is computed on (an evenly strided sample).
_KS_SAMPLE = 200_000
#: Report the background as spatially varying if block sigmas differ by more than this ratio.
_MAX_BLOCK_SPREAD = 1.2
_MIN_BLOCK_VALUES = 200
#: Effective channel counts the fit may return.
_COILS_RANGE = (0.5, 512.0)
#: Residual sigma more than this many times the background sigma flags model misfit.
_MISFIT_RATIO = 1.5


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
        return not self.spread > _MAX_BLOCK_SPREAD


class Background(enum.Enum):
    """The one value of a ``background`` argument that is not an estimate: analyse it here.

    The functions that use the image background (:meth:`~ironmap.fitting.DecayModel.fit`,
    :func:`~ironmap.fitting.effective_coils`, :func:`background_level`) take a
    :class:`NoiseEstimate` the caller already has, ``None`` (the image has no usable
    background), or ``Background.ANALYSE`` (the default): run :func:`noise_from_background` on
    the data when it is needed.
    """

    ANALYSE = "analyse"

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
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim < 2:
        arr = arr.reshape(-1, 1)
    spatial = arr.shape[:-1]
    first = arr[..., 0]
    finite = np.isfinite(first)
    zeros = finite & (first == 0)
    n_zeros = int(zeros.sum())
    usable = finite & (first > 0)
    n_usable = int(usable.sum())
    if n_usable < min_voxels:
        return None, f"only {n_usable} non-zero voxels ({n_zeros} exact zeros): no background"
    top = float(np.percentile(first[usable], 99.0))
    finite_values = arr[np.isfinite(arr) & (arr > 0)]
    quantised = bool(np.all(finite_values == np.round(finite_values)))
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
        values = arr[voxels]
        values = values[np.isfinite(values) & (values > lower) & (values < cutoff)]
        if quantised and _level_counts(values)[0].size < 3:
            return None, "fewer than 3 distinct background levels: cannot fit the noise"
        if not quantised and np.ptp(values) <= 0:
            return None, "constant background: not noise"
        fit = _fit_truncated_chi(values, lower, cutoff, quantised)
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
    if ks > _MAX_KS_DISTANCE:
        return None, (
            f"background is not chi distributed (Kolmogorov distance {ks:.3f} > "
            f"{_MAX_KS_DISTANCE}): tissue, artefacts or processing in the background"
        )
    voxels = usable & (first < cutoff)
    border = _border_share(voxels, usable)
    if border is not None and border < _MIN_BORDER_SHARE:
        return None, (
            f"only {100 * border:.0f} % of the non-zero voxels at the image's in-plane border "
            "are below the background cutoff: the low-intensity voxels are tissue, not a "
            "background around the head"
        )
    spread = _block_spread(arr, voxels, spatial, lower, cutoff, coils)
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
        f"{ks:.3f}" + ("" if estimate.uniform else f"; spatially varying (x{spread:.2f})")
    )
    return estimate, summary


#: A background surrounds the head: at least this share of the non-zero voxels on the image's
#: in-plane border (first two axes) must be background. Two tissue classes filling the field of
#: view otherwise pass for tissue plus background.
_MIN_BORDER_SHARE = 0.75


def _border_share(background: np.ndarray, usable: np.ndarray) -> float | None:
    """Share of the usable voxels on the border of the first two axes that are background
    (None for images with fewer than two axes or no usable border voxel)."""
    if background.ndim < 2 or min(background.shape[:2]) < 3:
        return None
    edge = np.zeros(background.shape, dtype=bool)
    edge[[0, -1]] = True
    edge[:, [0, -1]] = True
    on_edge = usable & edge
    if not on_edge.any():
        return None  # a zero-filled (masked) border: the zeros are the background
    return float((background & on_edge).sum() / on_edge.sum())


def _level_counts(values: NDArray[np.floating]) -> tuple[NDArray, NDArray[np.int64]]:
    """``(levels, counts)`` of integer-valued magnitudes, as ``np.unique(return_counts=True)``
    gives them, by counting (no sort) when the levels are small enough to index."""
    if values.size and float(values.min()) >= 0 and float(values.max()) < 2**20:
        counts = np.bincount(values.astype(np.int64))
        levels = np.flatnonzero(counts)
        return levels.astype(values.dtype), counts[levels]
    return np.unique(values, return_counts=True)


def _background_valley(first: NDArray[np.float64], quantised: bool) -> float | None:
    """Upper edge of the background peak of the first-echo magnitudes, or ``None``.

    The histogram of ``log M`` (integer levels spread over ``[k - 1/2, k + 1/2)`` so that they
    do not form a comb) is smoothed; its lowest prominent mode is the background and the
    minimum between it and the next prominent mode its upper edge. ``None`` without two
    prominent modes (no background, or no tissue peak).
    """
    if quantised:
        # Exact interval spreading: evaluate the piecewise-linear empirical CDF at the bin edges.
        levels, counts = _level_counts(first)
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


def _fit_truncated_chi(
    values: NDArray[np.float64], lower: float, upper: float, quantised: bool
) -> tuple[float, float, float] | None:
    """ML ``(N, sigma, Kolmogorov distance)`` of ``sigma chi_2N`` truncated to (lower, upper)."""
    m2 = float(np.mean(values**2))
    m4 = float(np.mean(values**4))
    if quantised:  # Sheppard's corrections for unit bins
        m2, m4 = m2 - 1.0 / 12.0, m4 - 0.5 * m2 + 7.0 / 240.0
    var = m4 - m2 * m2
    coils0 = float(np.clip(m2 * m2 / var, *_COILS_RANGE)) if var > 0 and m2 > 0 else 1.0
    sigma0 = math.sqrt(max(m2, 1e-300) / (2.0 * coils0))
    if quantised:
        levels, counts = _level_counts(values)
        lo_edges, hi_edges = levels - 0.5, levels + 0.5

        def nll(p: NDArray[np.float64]) -> float:
            k, s = 2.0 * math.exp(p[0]), math.exp(p[1])
            cdf = special.gammainc(0.5 * k, 0.5 * (np.array([lower, upper]) / s) ** 2)
            mass = special.gammainc(0.5 * k, 0.5 * (hi_edges / s) ** 2) - special.gammainc(
                0.5 * k, 0.5 * (lo_edges / s) ** 2
            )
            norm = cdf[1] - cdf[0]
            if not norm > 0:
                return math.inf
            # A level the model gives no mass (an outlier) costs a lot, but finitely.
            mass = np.maximum(mass, 1e-300)
            return float(-(counts @ np.log(mass)) + counts.sum() * math.log(norm))

    else:
        n = values.size
        s_log = float(np.sum(np.log(values)))
        s_sq = float(np.sum(values**2))

        def nll(p: NDArray[np.float64]) -> float:
            k, log_s = 2.0 * math.exp(p[0]), p[1]
            s = math.exp(log_s)
            cdf = special.gammainc(0.5 * k, 0.5 * (np.array([lower, upper]) / s) ** 2)
            norm = cdf[1] - cdf[0]
            if norm <= 0:
                return math.inf
            loglik = (
                (k - 1.0) * (s_log - n * log_s)
                - 0.5 * s_sq / (s * s)
                - n * ((0.5 * k - 1.0) * math.log(2.0) + special.gammaln(0.5 * k) + log_s)
                - n * math.log(norm)
            )
            return -loglik if math.isfinite(loglik) else math.inf

    lo_p, hi_p = math.log(_COILS_RANGE[0]), math.log(_COILS_RANGE[1])
    with np.errstate(all="ignore"):
        result = optimize.minimize(
            nll,
            x0=np.array([math.log(coils0), math.log(sigma0)]),
            method="Nelder-Mead",
            bounds=[(lo_p, hi_p), (None, None)],
            options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000},
        )
        if not np.all(np.isfinite(result.x)) or not math.isfinite(result.fun):
            return None
        coils, sigma = math.exp(result.x[0]), math.exp(result.x[1])
        ks = _ks_distance(values, lower, upper, coils, sigma, quantised)
    if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(ks)):
        return None
    return coils, sigma, ks


def _ks_distance(
    values: NDArray[np.float64],
    lower: float,
    upper: float,
    coils: float,
    sigma: float,
    quantised: bool,
) -> float:
    """Kolmogorov distance between the values and the truncated chi CDF (at level edges)."""
    if quantised:
        levels, counts = _level_counts(values)
        points = levels + 0.5
        empirical = np.cumsum(counts) / counts.sum()
    else:
        # An evenly strided sample of at most 200 000 values: its distance differs from the
        # full one by about 0.002, far below the acceptance limit, at a fraction of the sort.
        ordered = np.sort(values[:: max(1, values.size // _KS_SAMPLE)])
        points = ordered[:: max(1, ordered.size // 20000)]
        empirical = np.searchsorted(ordered, points, side="right") / ordered.size
    cdf = special.gammainc(coils, 0.5 * (np.concatenate([[lower, upper], points]) / sigma) ** 2)
    model = (cdf[2:] - cdf[0]) / (cdf[1] - cdf[0])
    return float(np.max(np.abs(empirical - model)))


def _block_spread(
    arr: NDArray[np.float64],
    voxels: NDArray[np.bool_],
    spatial: tuple[int, ...],
    lower: float,
    cutoff: float,
    coils: float,
) -> float:
    """Largest / smallest background sigma over a 2 x 2 (x 2) grid of spatial blocks."""
    axes = [i for i, size in enumerate(spatial) if size >= 4][:3]
    if len(spatial) < 2 or len(axes) < 2:
        return math.nan
    coords = np.nonzero(voxels)
    block = np.zeros(coords[0].size, dtype=np.int64)
    for i in axes:
        block = 2 * block + (2 * coords[i] >= spatial[i])
    values = arr[voxels]  # (n_voxels, n_echoes)
    keep = np.isfinite(values) & (values > lower) & (values < cutoff)
    sq = np.where(keep, values, 0.0) ** 2
    n_blocks = 2 ** len(axes)
    counts = np.bincount(block, weights=keep.sum(axis=1), minlength=n_blocks)
    sums = np.bincount(block, weights=sq.sum(axis=1), minlength=n_blocks)
    ok = counts >= _MIN_BLOCK_VALUES
    if ok.sum() < 2:
        return math.nan
    block_sigma = np.sqrt(sums[ok] / counts[ok] / (2.0 * coils))
    return float(block_sigma.max() / block_sigma.min())


# ---------------------------------------------------------------------------------------------
# Residual sigma versus the background: model misfit.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResidualSigma:
    """A residual-based sigma checked against the image background.

    Attributes
    ----------
    sigma : float
        Noise SD from fit residuals (signal units).
    background : float or None
        Noise SD suggested by the image background (signal units), ``None`` if there is none.
    ratio : float
        ``sigma / background`` (NaN without a background).
    misfit : bool
        ``ratio > tolerance``: the model does not describe the tissue and the residuals
        overestimate the noise (R2* noise-floor correction and ``r2star_sd`` too large).
    message : str
        One line for a warning (empty when ``misfit`` is False).
    """

    sigma: float
    background: float | None
    ratio: float
    misfit: bool
    message: str


def check_residual_sigma(
    sigma: float, background: float | None, *, tolerance: float = _MISFIT_RATIO
) -> ResidualSigma:
    """Flag a residual sigma that is larger than the background noise level.

    Parameters
    ----------
    sigma : float
        Noise SD from fit residuals, e.g. :func:`sigma_from_residuals` (signal units).
    background : float or None
        Noise SD from the background, e.g. :func:`background_level` (signal units).
    tolerance : float, optional
        Ratio above which the residual sigma is called inflated by misfit (default 1.5: the
        two estimators agree within a few per cent on mono-exponential data).

    Returns
    -------
    ResidualSigma
        Never raises; ``misfit`` is False when either value is missing or not positive.
    """
    sigma = float(sigma)
    ok = background is not None and math.isfinite(background) and background > 0
    ratio = sigma / float(background) if ok and math.isfinite(sigma) else math.nan
    misfit = bool(ratio > tolerance)
    message = (
        f"sigma from fit residuals ({sigma:.3g}) is {ratio:.1f} times the background level "
        f"({background:.3g}): model misfit inflates it; pass --sigma"
        if misfit
        else ""
    )
    return ResidualSigma(sigma, float(background) if ok else None, ratio, misfit, message)


def background_level(
    data: ArrayLike,
    *,
    threshold: float = 0.05,
    estimate: NoiseEstimate | Background | None = Background.ANALYSE,
) -> float | None:
    """Rough per-channel noise SD of the low-intensity region, even where no background is trusted.

    The accepted :func:`noise_from_background` estimate if there is one; else a chi fit (method
    of moments, truncated maximum likelihood) to the non-zero voxels whose first echo is below
    ``threshold`` times the 99th percentile, without the acceptance tests. It is an upper
    bound of the noise (tissue in the region only adds to it) and is meant only as the reference
    of :func:`check_residual_sigma`, not as a sigma to fit with.

    Parameters
    ----------
    data : array_like, shape (..., n_echoes) or (...,)
        Magnitude images (not modified).
    threshold : float, optional
        Fraction of the 99th percentile of the first echo below which voxels are used.
    estimate : NoiseEstimate, Background or None, optional
        The :func:`noise_from_background` result for ``data`` when the caller already has it
        (None: there is no usable background); the default ``Background.ANALYSE`` runs it here.

    Returns
    -------
    float or None
        Signal units; ``None`` with fewer than 100 such voxels. Never raises on the data
        (``TypeError`` when ``estimate`` is none of the above).
    """
    estimate = resolve_background(data, estimate, threshold=threshold, name="estimate")
    if estimate is not None:
        return estimate.sigma
    try:
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim < 2:
            arr = arr.reshape(-1, 1)
        first = arr[..., 0]
        usable = np.isfinite(first) & (first > 0)
        if usable.sum() < 100:
            return None
        cutoff = threshold * float(np.percentile(first[usable], 99.0))
        values = arr[usable & (first < cutoff)]
        quantised = bool(np.all(values == np.round(values)))
        lower = 0.5 if quantised else 0.0
        values = values[np.isfinite(values) & (values > lower) & (values < cutoff)]
        if values.size < 100 or np.unique(values).size < 3:
            return None
        fit = _fit_truncated_chi(values, lower, cutoff, quantised)
    except (ValueError, TypeError, ArithmeticError):
        return None
    return None if fit is None else fit[1]
