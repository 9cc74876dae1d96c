"""Model -> Fit interface for R2* mapping (the dipy ``reconst`` pattern).

>>> model = DecayModel([0.004, 0.008, 0.012], method="auto")   # echo times in seconds
>>> fit = model.fit(magnitude, mask=brain)                      # doctest: +SKIP
>>> fit.r2star                                                  # doctest: +SKIP

The model holds what does not depend on the data (echo times, method, noise level); ``fit``
solves all voxels of the mask at once, in chunks that bound memory, and returns a
:class:`DecayFit` whose maps are cached properties computed from one dense parameter array.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from ..errors import InputError, IronmapWarning
from . import solvers
from .background import Background, NoiseEstimate, check_background, resolve_background
from .misfit import background_level, check_residual_sigma
from .rayleigh import rayleigh_sigma
from .registry import METHODS, SOLVERS, Solver, get_solver
from .residuals import MIN_RESIDUAL_ECHOES, sigma_from_residuals
from .results import DecayFit, FitStatus, iter_blocks

__all__ = ["METHODS", "DecayFit", "DecayModel", "FitStatus", "effective_coils"]


def effective_coils(
    data: ArrayLike,
    coils: int | None,
    *,
    background: NoiseEstimate | Background | None = Background.ANALYSE,
) -> tuple[int, str]:
    """Receive channels to model: ``(coils, source)``.

    ``coils`` given: itself, ``"given"``. None: the effective number of root-sum-of-squares
    channels estimated from the image background (:func:`~.noise.noise_from_background`),
    ``"background"``; 1 (Rician) with ``"default"`` when the image has no usable background.

    Parameters
    ----------
    data : array_like, shape (..., n_echoes)
        Magnitudes.
    coils : int or None
    background : NoiseEstimate, Background or None, optional
        :func:`~.noise.noise_from_background` of ``data`` if already computed (pass the same
        to :meth:`DecayModel.fit`, so the background is analysed once; None: the image has no
        usable background); by default (``Background.ANALYSE``) it is computed here.
    """
    check_background(background)
    if coils is not None:
        return int(coils), "given"
    estimate = resolve_background(data, background)
    if estimate is None:
        return 1, "default"
    return estimate.n_coils, "background"


class DecayModel:
    """Mono-exponential decay ``S(TE) = S0 exp(-R2* TE)`` of multi-echo magnitude data.

    Parameters
    ----------
    echo_times_s : array_like, shape (n_echoes,)
        Echo times in **seconds**, strictly increasing, at least two.
    method : {"auto", "loglin", "wls", "nlls", "arlo"}, optional
        Estimator: a public name in :data:`~ironmap.fitting.registry.SOLVERS` (listed in
        :data:`~ironmap.fitting.METHODS`). ``auto`` (default) is noise-floor aware: Rician
        maximum likelihood for voxels whose decay reaches the noise floor, log-linear WLS on
        noise-corrected magnitudes ``sqrt(M^2 - sigma^2)`` elsewhere. With exactly two echoes
        every method except ``arlo`` (which needs three) uses the closed form, Rician-refined
        under ``auto``.
    sigma : float, optional
        Noise standard deviation per channel, in signal units. Default: estimated from the
        image background, else from fit residuals (>= 3 echoes), else unknown (no noise-floor
        correction, ``r2star_sd`` NaN, with a warning).
    min_snr : float, optional
        Voxels whose first echo is below ``min_snr * sigma`` hold only noise and fail with
        :attr:`FitStatus.NO_SIGNAL`. Default 3.
    chunk_size : int, optional
        Voxels solved at once; bounds memory (about ``chunk_size * n_echoes * 80`` bytes).
    coils : int, optional
        Receive channels ``N`` combined by root-sum-of-squares into the magnitudes (default 1:
        a single channel or a complex combination, Rician noise). For ``N > 1`` the noise is
        noncentral chi with ``2N`` degrees of freedom and ``auto`` models it (noise floor,
        likelihood, bias correction and ``r2star_sd``); ``sigma`` stays the noise SD of one
        channel. The Gaussian-noise methods do not depend on it. The background estimate of
        sigma assumes one channel, so for ``N > 1`` sigma comes from ``sigma=`` or the fit
        residuals.

    Raises
    ------
    InputError
        Echo times that are not increasing, look like milliseconds, or do not suit the method;
        ``coils`` not an integer >= 1, or > 1 for a Rician method that cannot model it.
    """

    def __init__(
        self,
        echo_times_s: ArrayLike,
        *,
        method: str = "auto",
        sigma: float | None = None,
        min_snr: float = 3.0,
        chunk_size: int = 65536,
        coils: int = 1,
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
        record = get_solver(method)
        record.validate_echo_times(te)
        if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
            raise InputError(f"noise sigma must be a positive number, got {sigma!r}")
        if chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        if isinstance(coils, bool) or not isinstance(coils, int | np.integer) or coils < 1:
            raise InputError(f"coils must be an integer >= 1, got {coils!r}")
        if coils > 1 and record.noise_model == "rician" and not record.multi_coil:
            raise InputError(
                f"fit method {method!r} models one receive channel only; got coils={coils}"
            )
        self.echo_times_s = te
        self.echo_times_s.flags.writeable = False
        self.method = str(method)
        self._record = record
        self.sigma = None if sigma is None else float(sigma)
        self.min_snr = float(min_snr)
        self.chunk_size = int(chunk_size)
        self.coils = int(coils)

    def __repr__(self) -> str:
        te_ms = ", ".join(f"{t * 1e3:.4g}" for t in self.echo_times_s)
        coils = f", coils={self.coils}" if self.coils > 1 else ""
        return f"DecayModel(TE=[{te_ms}] ms, method={self.method!r}, sigma={self.sigma}{coils})"

    @property
    def n_echoes(self) -> int:
        """Number of echoes."""
        return self.echo_times_s.size

    @property
    def solver(self) -> Solver:
        """The estimator actually used: the record's ``dual_echo`` solver for two echoes.

        That is ``two_point`` for every method but ``auto`` on dual-echo data, else the record
        of ``method``.
        """
        if self.n_echoes == 2 and self._record.dual_echo is not None:
            return SOLVERS[self._record.dual_echo]
        return self._record

    @property
    def solver_name(self) -> str:
        """Name of :attr:`solver`: ``two_point`` for dual-echo data, else ``method``."""
        return self.solver.name

    def fit(
        self,
        data: ArrayLike,
        mask: ArrayLike | None = None,
        *,
        decay_factor: ArrayLike | None = None,
        sigma_map: ArrayLike | None = None,
        background: NoiseEstimate | Background | None = Background.ANALYSE,
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
        sigma_map : array_like, shape (...), optional
            Noise SD per voxel and channel (signal units), for noise that varies in space
            (parallel-imaging g-factor, coil sensitivity), e.g. from
            :func:`~ironmap.fitting.sigma_map.local_sigma_map`. It replaces the model's
            ``sigma``; voxels of the mask where it is not finite and > 0 fail (``BAD_SIGNAL``).
            ``fit.sigma`` is then its median over the mask and ``fit.sigma_source`` ``"map"``.
        background : NoiseEstimate, Background or None, optional
            :func:`~ironmap.fitting.noise.noise_from_background` of ``data`` when the caller
            already has it (e.g. from :func:`effective_coils`), so the background is analysed
            once (None: the image has no usable background); by default
            (``Background.ANALYSE``) it is analysed here when sigma is needed.

        Returns
        -------
        DecayFit
        """
        # The solvers' matrix products are tall and thin (voxels x echoes times echoes x <= 4):
        # BLAS threads gain nothing there, and their spin-waiting costs more than the products
        # (floor mix, default threading, 2 busy cores: 1.9x the CPU time of one thread).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(
                data, mask, decay_factor=decay_factor, sigma_map=sigma_map, background=background
            )

    def _fit(
        self,
        data: ArrayLike,
        mask: ArrayLike | None,
        *,
        decay_factor: ArrayLike | None,
        sigma_map: ArrayLike | None,
        background: NoiseEstimate | Background | None,
    ) -> DecayFit:
        """:meth:`fit` (warnings point at the caller of :meth:`fit`: stacklevel 4)."""
        check_background(background)
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
        if sigma_map is not None:
            sigma_map = np.asarray(sigma_map, dtype=np.float64)
            if sigma_map.shape != spatial:
                raise InputError(
                    f"sigma_map shape {sigma_map.shape} does not match the image grid {spatial}"
                )
            inside = sigma_map[mask]
            inside = inside[np.isfinite(inside) & (inside > 0)]
            sigma = float(np.median(inside)) if inside.size else None
            sigma_source = "map"
        else:
            sigma, sigma_source = self._resolve_sigma(data, mask, background)
        params = np.full((*spatial, 2), np.nan)
        status = np.full(spatial, FitStatus.NOT_FITTED, dtype=np.uint8)
        for index, block in iter_blocks(data, mask, self.chunk_size):
            factor = None
            if decay_factor is not None:
                factor = np.asarray(decay_factor[index], dtype=np.float64).reshape(block.shape)
            block_sigma: float | np.ndarray | None = sigma
            if sigma_map is not None:
                block_sigma = np.asarray(sigma_map[index], dtype=np.float64).reshape(-1)
            s0, r2, st = self._fit_block(block, block_sigma, factor)
            params[index] = np.column_stack([s0, r2]).reshape(params[index].shape)
            status[index] = st.reshape(status[index].shape)
        fit = DecayFit(
            self,
            data,
            params,
            status,
            sigma=sigma,
            sigma_source=sigma_source,
            factor=decay_factor,
            sigma_map=sigma_map,
        )
        _warn_failures(status)
        return fit

    # -- internals ----------------------------------------------------------------------------

    def _resolve_sigma(
        self, data: np.ndarray, mask: np.ndarray, background: NoiseEstimate | Background | None
    ) -> tuple[float | None, str]:
        if self.sigma is not None:
            return self.sigma, "given"
        # One analysis of the background serves every step below (it is the costly part).
        sigma = rayleigh_sigma(data) if self.coils == 1 else None
        if sigma is not None:
            return sigma, "background"
        background = resolve_background(data, background)
        if background is not None:  # root-sum-of-squares of N channels: central chi
            return background.sigma, "background"
        if self.n_echoes >= MIN_RESIDUAL_ECHOES:
            sigma = self._sigma_from_residuals(data, mask)
            if sigma is not None:
                check = check_residual_sigma(sigma, background_level(data, estimate=background))
                if check.misfit:
                    warnings.warn(check.message, IronmapWarning, stacklevel=4)
                return sigma, "residuals"
        warnings.warn(
            "cannot estimate the noise sigma (no image background"
            + (" and only two echoes" if self.n_echoes == 2 else "")
            + "); R2* is not corrected for the noise floor and r2star_sd is NaN: "
            "pass sigma (--sigma) to fix",
            IronmapWarning,
            stacklevel=4,
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
        sigma: float | NDArray[np.float64] | None,
        factor: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.uint8]]:
        """Fit one ``(n, n_echoes)`` block; returns ``(s0, r2star, status)``, NaN on failure.

        ``sigma`` is one value or, from a noise map, one per voxel (shape (n,)).
        """
        te = self.echo_times_s
        n = block.shape[0]
        s0 = np.full(n, np.nan)
        r2 = np.full(n, np.nan)
        status = np.full(n, FitStatus.OK, dtype=np.uint8)
        solver = self.solver
        # Under the magnitude noise model an exact zero after the first echo is an observation
        # like any other where the decay has reached the noise floor (integer images store
        # magnitudes below 0.5 as 0: late echoes of iron-rich tissue at low SNR). A zero next
        # to or before an echo far above the floor is a dropout: the voxel fails. The log-based
        # methods cannot take zeros at all.
        zeros_ok = sigma is not None and solver.noise_model == "rician"
        finite = np.isfinite(block)
        zero = np.empty(0, dtype=np.intp)
        if zeros_ok:
            good = np.all(finite & (block >= 0), axis=1) & (block[:, 0] > 0)
            zero = np.flatnonzero(np.any(block[:, 1:] == 0, axis=1))
            if zero.size:  # only voxels with a zero after the first echo need the check
                rows = block[zero]
                # max over echoes j-1.. of each echo j (the echo before a zero and all after it)
                after = np.maximum.accumulate(rows[:, ::-1], axis=1)[:, ::-1]
                level = _FLOOR_ZERO_SNR * (sigma[zero, None] if np.ndim(sigma) else sigma)
                good[zero] &= ~np.any((rows[:, 1:] == 0) & (after[:, :-1] > level), axis=1)
        else:
            good = np.all(finite & (block > 0), axis=1)
        if factor is not None:
            good &= np.all(np.isfinite(factor) & (factor > 0), axis=1)
        per_voxel = sigma is not None and np.ndim(sigma) > 0
        if per_voxel:
            good &= np.isfinite(sigma) & (sigma > 0)
        status[~good] = FitStatus.BAD_SIGNAL
        if sigma is not None:
            weak = good & (block[:, 0] < self.min_snr * sigma)
            status[weak] = FitStatus.NO_SIGNAL
            good &= ~weak
        y = block[good]
        if zeros_ok and zero.size:
            y = np.maximum(y, _TINY)
        f = None if factor is None else factor[good]
        if per_voxel:
            sigma = sigma[good]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if f is not None and solver.noise_model == "gaussian":
                y, f = y / f, None  # Gaussian-noise methods: fit the corrected decay
            coils = {"coils": self.coils} if solver.multi_coil else {}
            a, r, converged = solver.function(y, te, sigma=sigma, factor=f, **coils)
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


#: An exact zero is taken as an observation only where the echo before it and all after it
#: are at most this many sigma: a genuine zero right after an echo of 20 sigma needs a signal
#: falling 40-fold within one echo spacing (R2* near 800 1/s at 4.6 ms).
_FLOOR_ZERO_SNR = 20.0
#: Stands in for exact zeros under the magnitude noise model: any positive value far below the
#: noise gives the same likelihood, and it keeps ``log`` and the Bessel ratio over ``z`` finite.
_TINY = 1e-200


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
            stacklevel=4,
        )
