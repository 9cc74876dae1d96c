"""The result of :meth:`~ironmap.fitting.DecayModel.fit`: :class:`DecayFit` and :class:`FitStatus`.

A :class:`DecayFit` holds one dense ``[S0, R2*]`` parameter array and a status code per voxel;
the maps (T2*, the Cramer-Rao SD of R2*, the residual RMS) are cached properties computed from
them, in voxel chunks that bound memory.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .crlb import r2star_crlb_sd

if TYPE_CHECKING:
    from .models import DecayModel

__all__ = ["DecayFit", "FitStatus"]


class FitStatus(enum.IntEnum):
    """Why a voxel has no value (stored per voxel in :attr:`DecayFit.status`)."""

    OK = 0
    #: Outside the mask: not fitted (NaN, but not a failure).
    NOT_FITTED = 1
    #: Some echo is non-finite or negative, or an echo is 0 (for ``auto`` with sigma known: the
    #: first echo), so no decay can be fitted.
    BAD_SIGNAL = 2
    #: The fit found no decay (R2* * TE_max <= 1e-6, e.g. rising signal) or a non-finite value.
    NO_DECAY = 3
    #: First echo below ``min_snr`` times the noise SD: nothing but noise.
    NO_SIGNAL = 4
    #: The iterative solver did not converge.
    NOT_CONVERGED = 5


def iter_blocks(
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
        Noise standard deviation used (signal units); the median over the mask of
        ``sigma_map`` when a map was used.
    sigma_source : {"given", "background", "residuals", "map", "unknown"}
    sigma_map : numpy.ndarray of shape (...), or None
        Noise SD per voxel when the fit used a noise map (``DecayModel.fit(sigma_map=...)``).
    coils_source : {"given", "background", "default"}
        Where the number of receive channels came from (set by the caller that resolved it,
        e.g. :func:`~.models.effective_coils`; ``"given"`` by default).
    coils : int
        Receive channels combined by root-sum-of-squares (the model's ``coils``; 1: Rician).
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
        sigma_map: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.params = params
        self.status = status
        self.sigma = sigma
        self.sigma_source = sigma_source
        self.sigma_map = sigma_map
        self.coils_source = "given"
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
    def decay_factor(self) -> np.ndarray | None:
        """The known signal factor the fit was given (``DecayModel.fit(decay_factor=)``)."""
        return self._factor

    @property
    def coils(self) -> int:
        """Receive channels combined by root-sum-of-squares, as given to the model (1: Rician)."""
        return self.model.coils

    @property
    def method_description(self) -> str:
        """One-line description of the estimator, for provenance sidecars."""
        solver = self.model.solver
        if self.model.n_echoes == 2 and solver.noise_model == "rician":
            return (
                "closed form R2* = ln(S1/S2) / (TE2 - TE1) on noise-corrected magnitudes, "
                "refined by maximum likelihood under the magnitude noise model where that gives "
                "a finite decay (two echoes)"
            )
        return solver.description

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

        The Cramer-Rao bound at the fitted parameters, under the solver's noise model: Rician
        (noncentral chi for ``coils > 1``) information for ``auto``, Gaussian otherwise. NaN
        when sigma is unknown.
        """
        if self.sigma is None:
            return np.full(self.status.shape, np.nan)
        te, sigma = self.model.echo_times_s, self.sigma
        rician = self.model.solver.noise_model == "rician"
        coils = self.model.coils if rician else 1
        return self._per_voxel(
            lambda p, _, f, s: r2star_crlb_sd(
                p[:, 0],
                p[:, 1],
                te,
                sigma if s is None else s,
                rician=rician,
                factor=f,
                coils=coils,
            )
        )

    @cached_property
    def rmse(self) -> NDArray[np.float64]:
        """Root-mean-square residual ``sqrt(mean_i (M_i - S_i)^2)`` (signal units), shape (...)."""
        te = self.model.echo_times_s

        def rms(p, y, f, _) -> NDArray[np.float64]:
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
        """Apply ``func(params, data, factor, sigma)`` blockwise over the fitted voxels.

        ``factor`` and ``sigma`` (the noise map's values) are None when the fit had none.
        """
        out = np.full(self.status.shape, np.nan)
        ok = self.status == FitStatus.OK
        for index, block in iter_blocks(self._data, ok, self.model.chunk_size):
            factor = sigma = None
            if self._factor is not None:
                factor = np.asarray(self._factor[index], np.float64).reshape(block.shape)
            if self.sigma_map is not None:
                sigma = np.asarray(self.sigma_map[index], np.float64).reshape(-1)
            values = func(self.params[index].reshape(-1, 2), block, factor, sigma)
            out[index] = values.reshape(out[index].shape)
        return out
