"""Model -> Fit interface for R2* mapping (the dipy ``reconst`` pattern).

>>> model = DecayModel([0.004, 0.008, 0.012], method="auto")   # echo times in seconds
>>> fit = model.fit(magnitude, mask=brain)                      # doctest: +SKIP
>>> fit.r2star                                                  # doctest: +SKIP

The model holds what does not depend on the data (echo times, method, noise level); ``fit``
solves all voxels of the mask at once, in chunks that bound memory, and returns a
:class:`DecayFit` whose maps are cached properties computed from one dense parameter array.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError, IronmapWarning
from . import solvers
from .crlb import r2star_crlb_sd, r2star_ml_bias
from .noise import sigma_from_background, sigma_from_residuals

__all__ = ["METHODS", "DecayFit", "DecayModel", "FitStatus"]

Method = Literal["auto", "loglin", "wls", "nlls", "arlo"]
METHODS: tuple[str, ...] = ("auto", "loglin", "wls", "nlls", "arlo")

_DESCRIPTIONS = {
    "auto": "Rician maximum likelihood below the noise floor, noise-corrected WLS above it",
    "loglin": "log-linear ordinary least squares",
    "wls": "log-linear least squares weighted by S^2 (iterated)",
    "nlls": "mono-exponential non-linear least squares (Levenberg-Marquardt)",
    "arlo": "ARLO (Pei et al. 2015) with exact Simpson-rule inversion",
    "two_point": "closed form for two echoes: R2* = ln(S1/S2) / (TE2 - TE1)",
}

#: Sigma below which the fitted last echo sends a voxel to the Rician fit (see docs/fitting.md).
RICIAN_CUTOFF_SNR = 10.0


class FitStatus(enum.IntEnum):
    """Why a voxel has no value (stored per voxel in :attr:`DecayFit.status`)."""

    OK = 0
    #: Outside the mask: not fitted (NaN, but not a failure).
    NOT_FITTED = 1
    #: Some echo is non-finite or <= 0, so no decay can be fitted.
    BAD_SIGNAL = 2
    #: The fit found no decay (R2* * TE_max <= 1e-6, e.g. rising signal) or a non-finite value.
    NO_DECAY = 3
    #: First echo below ``min_snr`` times the noise SD: nothing but noise.
    NO_SIGNAL = 4
    #: The iterative solver did not converge.
    NOT_CONVERGED = 5


class DecayModel:
    """Mono-exponential decay ``S(TE) = S0 exp(-R2* TE)`` of multi-echo magnitude data.

    Parameters
    ----------
    echo_times_s : array_like, shape (n_echoes,)
        Echo times in **seconds**, strictly increasing, at least two.
    method : {"auto", "loglin", "wls", "nlls", "arlo"}, optional
        Estimator. ``auto`` (default) is noise-floor aware: Rician maximum likelihood for voxels
        whose decay reaches the noise floor, log-linear WLS on noise-corrected magnitudes
        ``sqrt(M^2 - sigma^2)`` elsewhere. With exactly two echoes every method except ``arlo``
        (which needs three) uses the closed form, Rician-refined under ``auto``.
    sigma : float, optional
        Noise standard deviation per channel, in signal units. Default: estimated from the
        image background, else from fit residuals (>= 3 echoes), else unknown (no noise-floor
        correction, ``r2star_sd`` NaN, with a warning).
    min_snr : float, optional
        Voxels whose first echo is below ``min_snr * sigma`` hold only noise and fail with
        :attr:`FitStatus.NO_SIGNAL`. Default 3.
    chunk_size : int, optional
        Voxels solved at once; bounds memory (about ``chunk_size * n_echoes * 80`` bytes).

    Raises
    ------
    InputError
        Echo times that are not increasing, look like milliseconds, or do not suit the method.
    """

    def __init__(
        self,
        echo_times_s: ArrayLike,
        *,
        method: Method | str = "auto",
        sigma: float | None = None,
        min_snr: float = 3.0,
        chunk_size: int = 65536,
    ) -> None:
        te = np.asarray(echo_times_s, dtype=np.float64)
        if te.ndim != 1 or te.size < 2:
            raise InputError(f"need at least 2 echo times as a 1-D sequence, got {te.tolist()}")
        if not np.all(np.isfinite(te)) or np.any(te <= 0):
            raise InputError(f"echo times must be finite and > 0 s, got {te.tolist()}")
        if np.any(np.diff(te) <= 0):
            raise InputError(
                f"echo times must be strictly increasing with no duplicates, got {te.tolist()}"
            )
        if te.max() > 1.0:
            raise InputError(
                f"echo times {te.tolist()} look like milliseconds; give them in seconds "
                "(or --te-unit ms on the command line)"
            )
        if method not in METHODS:
            raise InputError(f"unknown fit method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "arlo":
            solvers.equal_spacing(te)
        if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
            raise InputError(f"noise sigma must be a positive number, got {sigma!r}")
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        self.echo_times_s = te
        self.echo_times_s.flags.writeable = False
        self.method = str(method)
        self.sigma = None if sigma is None else float(sigma)
        self.min_snr = float(min_snr)
        self.chunk_size = int(chunk_size)

    def __repr__(self) -> str:
        te_ms = ", ".join(f"{t * 1e3:.4g}" for t in self.echo_times_s)
        return f"DecayModel(TE=[{te_ms}] ms, method={self.method!r}, sigma={self.sigma})"

    @property
    def n_echoes(self) -> int:
        """Number of echoes."""
        return self.echo_times_s.size

    @property
    def solver_name(self) -> str:
        """The estimator actually used: ``two_point`` for dual-echo data, else ``method``."""
        if self.n_echoes == 2 and self.method != "auto":
            return "two_point"
        return self.method

    def fit(
        self,
        data: ArrayLike,
        mask: ArrayLike | None = None,
        *,
        decay_factor: ArrayLike | None = None,
    ) -> DecayFit:
        """Fit every voxel of ``mask``.

        Parameters
        ----------
        data : array_like, shape (..., n_echoes)
            Magnitude images, echoes on the last axis; any float or integer dtype. Not modified.
        mask : array_like of bool, shape (...), optional
            Voxels to fit (default: all).
        decay_factor : array_like, shape (..., n_echoes), optional
            Known extra signal factor per voxel and echo, e.g. the dephasing of macroscopic
            field gradients (:mod:`~ironmap.fitting.gradients`): the model becomes
            ``S0 exp(-R2* TE) F(TE)``, the noise stays that of ``data``. Voxels where it is not
            finite or not > 0 fail (``BAD_SIGNAL``).

        Returns
        -------
        DecayFit
        """
        data = np.asarray(data)
        if np.iscomplexobj(data):
            raise InputError("complex data given; R2* fitting needs magnitudes: pass np.abs(data)")
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise InputError(f"data must be numeric, got dtype {data.dtype}")
        if data.ndim < 1 or data.shape[-1] != self.n_echoes:
            raise InputError(
                f"data has {data.shape[-1] if data.ndim else 0} volumes on its last axis but "
                f"{self.n_echoes} echo times were given; echoes must be on the last axis"
            )
        spatial = data.shape[:-1]
        if mask is None:
            mask = np.ones(spatial, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != spatial:
                raise InputError(
                    f"mask shape {mask.shape} does not match the image grid {spatial}"
                )
            mask = mask.astype(bool)

        if decay_factor is not None:
            decay_factor = np.asarray(decay_factor)
            if decay_factor.shape != data.shape:
                raise InputError(
                    f"decay_factor shape {decay_factor.shape} does not match the data {data.shape}"
                )
        sigma, sigma_source = self._resolve_sigma(data, mask)
        params = np.full((*spatial, 2), np.nan)
        status = np.full(spatial, FitStatus.NOT_FITTED, dtype=np.uint8)
        for index, block in _blocks(data, mask, self.chunk_size):
            factor = None
            if decay_factor is not None:
                factor = np.asarray(decay_factor[index], dtype=np.float64).reshape(block.shape)
            s0, r2, st = self._fit_block(block, sigma, factor)
            params[index] = np.column_stack([s0, r2]).reshape(params[index].shape)
            status[index] = st.reshape(status[index].shape)
        fit = DecayFit(
            self, data, params, status, sigma=sigma, sigma_source=sigma_source, factor=decay_factor
        )
        _warn_failures(status)
        return fit

    # -- internals ----------------------------------------------------------------------------

    def _resolve_sigma(self, data: np.ndarray, mask: np.ndarray) -> tuple[float | None, str]:
        if self.sigma is not None:
            return self.sigma, "given"
        sigma = sigma_from_background(data)
        if sigma is not None:
            return sigma, "background"
        if self.n_echoes >= 3:
            sigma = self._sigma_from_residuals(data, mask)
            if sigma is not None:
                return sigma, "residuals"
        warnings.warn(
            "cannot estimate the noise sigma (no image background"
            + (" and only two echoes" if self.n_echoes == 2 else "")
            + "); R2* is not corrected for the noise floor and r2star_sd is NaN: "
            "pass sigma (--sigma) to fix",
            IronmapWarning,
            stacklevel=3,
        )
        return None, "unknown"

    def _sigma_from_residuals(self, data: np.ndarray, mask: np.ndarray) -> float | None:
        """Residual-based sigma from an evenly strided sample of at most 20 000 voxels."""
        te = self.echo_times_s
        idx = np.nonzero(mask)
        stride = max(1, idx[0].size // 20000)
        sample = np.asarray(data[tuple(i[::stride] for i in idx)], dtype=np.float64)
        sample = sample[np.all(np.isfinite(sample) & (sample > 0), axis=1)]
        if sample.shape[0] < 10:
            return None
        s0, r2, _ = solvers.nlls(sample, te)
        pred = s0[:, None] * np.exp(-r2[:, None] * te)
        rss = np.sum((sample - pred) ** 2, axis=1)
        sigma = sigma_from_residuals(rss, self.n_echoes)
        # Keep voxels whose last echo is far above the noise floor (Gaussian residuals).
        for _ in range(3):
            if sigma is None:
                return None
            high = pred[:, -1] > 10.0 * sigma
            if high.sum() < 10:
                break
            sigma = sigma_from_residuals(rss[high], self.n_echoes)
        return sigma

    def _fit_block(
        self,
        block: NDArray[np.float64],
        sigma: float | None,
        factor: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.uint8]]:
        """Fit one ``(n, n_echoes)`` block; returns ``(s0, r2star, status)``, NaN on failure."""
        te = self.echo_times_s
        n = block.shape[0]
        s0 = np.full(n, np.nan)
        r2 = np.full(n, np.nan)
        status = np.full(n, FitStatus.OK, dtype=np.uint8)
        good = np.all(np.isfinite(block) & (block > 0), axis=1)
        if factor is not None:
            good &= np.all(np.isfinite(factor) & (factor > 0), axis=1)
        status[~good] = FitStatus.BAD_SIGNAL
        if sigma is not None:
            weak = good & (block[:, 0] < self.min_snr * sigma)
            status[weak] = FitStatus.NO_SIGNAL
            good &= ~weak
        y = block[good]
        f = None if factor is None else factor[good]
        converged = np.ones(y.shape[0], dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            name = self.solver_name
            if f is not None and name != "auto":
                y = y / f  # Gaussian-noise methods: fit the corrected decay
            if name == "two_point":
                a, r = solvers.two_point(y, te)
            elif name == "loglin":
                a, r = solvers.loglin(y, te)
            elif name == "wls":
                a, r = solvers.wls(y, te)
            elif name == "arlo":
                a, r = solvers.arlo(y, te)
            elif name == "nlls":
                a, r, converged = solvers.nlls(y, te)
            else:
                a, r, converged = _auto(y, te, sigma, f)
        s0[good], r2[good] = a, r
        fitted = np.flatnonzero(good)
        # "No decay": less than 1 ppm of signal lost over the echo train (or rising signal).
        no_decay = ~(np.isfinite(r) & (r * te[-1] > 1e-6) & np.isfinite(a) & (a > 0))
        status[fitted[~converged]] = FitStatus.NOT_CONVERGED
        status[fitted[no_decay]] = FitStatus.NO_DECAY
        bad = status != FitStatus.OK
        s0[bad] = np.nan
        r2[bad] = np.nan
        return s0, r2, status


def _auto(
    y: NDArray[np.float64],
    te: NDArray[np.float64],
    sigma: float | None,
    factor: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """The default estimator; see :class:`DecayModel` and docs/fitting.md."""
    first = solvers.two_point if te.size == 2 else solvers.wls
    if sigma is None:
        a, r = first(y if factor is None else y / factor, te)
        return a, r, np.ones(y.shape[0], dtype=bool)
    # Above the noise floor: sqrt(M^2 - sigma^2) is unbiased to second order in sigma / A.
    corrected = np.sqrt(np.maximum(y**2 - sigma**2, (0.5 * sigma) ** 2))
    if factor is not None:
        corrected /= factor
    a, r = first(corrected, te)
    converged = np.ones(y.shape[0], dtype=bool)
    last = a * np.exp(-r * te[-1]) * (1.0 if factor is None else factor[:, -1])
    low = ~(last >= RICIAN_CUTOFF_SNR * sigma)  # NaN starts go to the Rician fit as well
    if low.any():
        start_a, start_r = a[low], r[low]
        broken = ~(np.isfinite(start_a) & np.isfinite(start_r) & (start_a > 0))
        if broken.any():  # fall back to a crude start from the first two echoes
            start_a[broken], start_r[broken] = solvers.two_point(y[low][broken][:, :2], te[:2])
        f_low = None if factor is None else factor[low]
        a_ml, r_ml, converged[low] = solvers.rician_ml(
            y[low], te, sigma, s0=start_a, r2star=start_r, factor=f_low
        )
        a[low], r[low] = a_ml, r_ml - r2star_ml_bias(a_ml, r_ml, te, sigma, factor=f_low)
    return a, r, converged


def _blocks(
    data: np.ndarray, mask: np.ndarray, chunk_size: int
) -> Iterator[tuple[tuple[NDArray[np.intp], ...], NDArray[np.float64]]]:
    """Yield ``(voxel index tuple, float64 block (n, n_echoes))`` over the mask, in chunks."""
    if data.ndim == 1:  # a single voxel
        if mask:
            yield (), np.asarray(data, dtype=np.float64)[None, :]
        return
    idx = np.nonzero(mask)
    total = idx[0].size
    for start in range(0, total, chunk_size):
        index = tuple(i[start : start + chunk_size] for i in idx)
        yield index, np.asarray(data[index], dtype=np.float64)


def _warn_failures(status: NDArray[np.uint8]) -> None:
    counts = np.bincount(status.ravel(), minlength=len(FitStatus))
    fitted = status.size - counts[FitStatus.NOT_FITTED]
    failed = fitted - counts[FitStatus.OK]
    if failed:
        reasons = ", ".join(
            f"{counts[s]} {s.name.lower().replace('_', ' ')}"
            for s in FitStatus
            if s not in (FitStatus.OK, FitStatus.NOT_FITTED) and counts[s]
        )
        warnings.warn(
            f"{failed} of {fitted} voxels could not be fitted and are NaN ({reasons}); "
            "see fit.status",
            IronmapWarning,
            stacklevel=3,
        )


class DecayFit:
    """Result of :meth:`DecayModel.fit`: one dense parameter array and maps derived from it.

    Attributes
    ----------
    model : DecayModel
    params : numpy.ndarray, shape (..., 2)
        ``[S0, R2*]`` per voxel (signal units, 1/s); NaN where not fitted or failed.
    status : numpy.ndarray of uint8, shape (...)
        :class:`FitStatus` code per voxel.
    sigma : float or None
        Noise standard deviation used (signal units).
    sigma_source : {"given", "background", "residuals", "unknown"}
    """

    def __init__(
        self,
        model: DecayModel,
        data: np.ndarray,
        params: NDArray[np.float64],
        status: NDArray[np.uint8],
        *,
        sigma: float | None,
        sigma_source: str,
        factor: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.params = params
        self.status = status
        self.sigma = sigma
        self.sigma_source = sigma_source
        self._data = data
        self._factor = factor

    def __repr__(self) -> str:
        n_ok = int(np.sum(self.status == FitStatus.OK))
        return f"DecayFit(shape={self.status.shape}, fitted={n_ok}, method={self.method!r})"

    @property
    def method(self) -> str:
        """Estimator used (``two_point`` for dual-echo data under non-``auto`` methods)."""
        return self.model.solver_name

    @property
    def method_description(self) -> str:
        """One-line description of the estimator, for provenance sidecars."""
        return _DESCRIPTIONS[self.method]

    @cached_property
    def s0(self) -> NDArray[np.float64]:
        """Signal at TE = 0 (signal units), shape (...)."""
        return self.params[..., 0]

    @cached_property
    def r2star(self) -> NDArray[np.float64]:
        """R2* in 1/s, shape (...); NaN where not fitted or failed."""
        return self.params[..., 1]

    @cached_property
    def t2star(self) -> NDArray[np.float64]:
        """T2* = 1 / R2* in seconds, shape (...)."""
        return 1.0 / self.r2star

    @cached_property
    def failed(self) -> NDArray[np.bool_]:
        """True where a voxel inside the mask could not be fitted, shape (...)."""
        return (self.status != FitStatus.OK) & (self.status != FitStatus.NOT_FITTED)

    @cached_property
    def n_echoes_used(self) -> NDArray[np.int16]:
        """Echoes that entered each voxel's fit (0 where not fitted or failed), shape (...)."""
        return np.where(self.status == FitStatus.OK, self.model.n_echoes, 0).astype(np.int16)

    @cached_property
    def r2star_sd(self) -> NDArray[np.float64]:
        """Per-voxel standard deviation of R2* (1/s) from the Fisher information.

        The Cramer-Rao bound at the fitted parameters: Rician information for ``auto``,
        Gaussian otherwise. NaN when sigma is unknown.
        """
        if self.sigma is None:
            return np.full(self.status.shape, np.nan)
        te, sigma, rician = self.model.echo_times_s, self.sigma, self.method == "auto"
        return self._per_voxel(
            lambda p, _, f: r2star_crlb_sd(p[:, 0], p[:, 1], te, sigma, rician=rician, factor=f)
        )

    @cached_property
    def rmse(self) -> NDArray[np.float64]:
        """Root-mean-square residual ``sqrt(mean_i (M_i - S_i)^2)`` (signal units), shape (...)."""
        te = self.model.echo_times_s

        def rms(p, y, f) -> NDArray[np.float64]:
            pred = p[:, :1] * np.exp(-p[:, 1:] * te) * (1.0 if f is None else f)
            return np.sqrt(np.mean((y - pred) ** 2, axis=1))

        return self._per_voxel(rms)

    def predict(self, echo_times_s: ArrayLike | None = None) -> NDArray[np.float64]:
        """Noise-free signal ``S0 exp(-R2* TE)`` at the model's (or given) echo times.

        Returns
        -------
        numpy.ndarray, shape (..., n_te)
        """
        te = self.model.echo_times_s if echo_times_s is None else np.asarray(echo_times_s)
        return self.s0[..., None] * np.exp(-self.r2star[..., None] * te)

    def _per_voxel(self, func: Callable[..., NDArray[np.float64]]) -> NDArray[np.float64]:
        """Apply ``func(params_block, data_block, factor_block)`` over fitted voxels in chunks."""
        out = np.full(self.status.shape, np.nan)
        ok = self.status == FitStatus.OK
        for index, block in _blocks(self._data, ok, self.model.chunk_size):
            factor = None
            if self._factor is not None:
                factor = np.asarray(self._factor[index], np.float64).reshape(block.shape)
            values = func(self.params[index].reshape(-1, 2), block, factor)
            out[index] = values.reshape(out[index].shape)
        return out
