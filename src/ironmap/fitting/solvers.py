"""Vectorised mono-exponential decay solvers.

Every solver takes a matrix of magnitudes ``signal`` of shape ``(n_voxels, n_echoes)`` (float64,
strictly positive and finite: the caller screens voxels) and the echo times ``te`` of shape
``(n_echoes,)`` in seconds, and returns ``(s0, r2star)``, two arrays of shape ``(n_voxels,)``
(``s0`` in signal units, ``r2star`` in 1/s). All voxels are solved at once; there is no
per-voxel Python loop. Non-finite results are left for the caller to flag.

Signal model: ``S(t) = S0 exp(-R2* t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from .rician import bessel_terms, fast_bessel_ratio, rician_information_factor

__all__ = [
    "arlo",
    "arlo_invert_discretisation",
    "arlo_t2star",
    "loglin",
    "nlls",
    "rician_ml",
    "two_point",
    "wls",
]

Array = NDArray[np.float64]


def _weighted_line(y: Array, te: Array, w: Array) -> tuple[Array, Array]:
    """Weighted least-squares line ``y = u - r te`` per row; returns ``(u, r)``."""
    # Two matrix products instead of five passes over the (n, n_echoes) arrays.
    sw, swt, swtt = (w @ np.stack([np.ones_like(te), te, te * te], axis=1)).T
    swy, swty = ((w * y) @ np.stack([np.ones_like(te), te], axis=1)).T
    det = sw * swtt - swt**2
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (swtt * swy - swt * swty) / det
        slope = (sw * swty - swt * swy) / det
    return u, -slope


def two_point(signal: Array, te: Array) -> tuple[Array, Array]:
    """Closed form for exactly two echoes (the dual-echo protocol).

    ``R2* = ln(S1 / S2) / (t2 - t1)`` and ``S0 = S1 exp(R2* t1)``; with two data and two
    parameters this is also the least-squares and maximum-likelihood (Gaussian) solution.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.log(signal[:, 0] / signal[:, 1]) / (te[1] - te[0])
    s0 = signal[:, 0] * np.exp(r2 * te[0])
    return s0, r2


def loglin(signal: Array, te: Array) -> tuple[Array, Array]:
    """Ordinary least squares on ``log S`` (equal weights for all echoes).

    Fast and exact on noise-free data, but log-transforming noisy late echoes gives them far
    too much weight: biased low near the noise floor.
    """
    design = np.column_stack([np.ones_like(te), -te])
    coef = np.log(signal) @ np.linalg.pinv(design).T
    return np.exp(coef[:, 0]), coef[:, 1]


def wls(signal: Array, te: Array, *, n_iter: int = 3) -> tuple[Array, Array]:
    """Iteratively reweighted log-linear least squares, weights ``S^2``.

    ``var(log M) ~ sigma^2 / S^2``, so the inverse-variance weights are ``S^2``: the first pass
    weights by the observed ``M^2``, later passes by the fitted ``S(t)^2``.
    """
    y = np.log(signal)
    w = signal**2
    u, r2 = _weighted_line(y, te, w)
    for _ in range(n_iter - 1):
        w = np.exp(2.0 * (u[:, None] - r2[:, None] * te[None, :]))
        u, r2 = _weighted_line(y, te, w)
    return np.exp(u), r2


def arlo_t2star(signal: Array, delta_te: float) -> Array:
    """T2* by ARLO (Pei et al., MRM 2015; with the 2019 erratum), equally spaced echoes.

    With Simpson integrals ``s_i = dt/3 (S_{i-2} + 4 S_{i-1} + S_i)`` and differences
    ``d_i = S_{i-2} - S_i`` (``i = 3..n``)::

        T2* = (sum s_i^2 + dt/3 sum s_i d_i) / (dt/3 sum d_i^2 + sum s_i d_i)

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_voxels, n_echoes)
        Magnitudes, ``n_echoes >= 3``.
    delta_te : float
        Echo spacing in seconds.

    Returns
    -------
    numpy.ndarray, shape (n_voxels,)
        ARLO T2* in seconds. On noise-free data it equals
        ``dt/3 (1 + 4q + q^2) / (1 - q^2)`` with ``q = exp(-dt R2*)`` (Simpson's rule error),
        which :func:`arlo_invert_discretisation` undoes.
    """
    third = delta_te / 3.0
    s = third * (signal[:, :-2] + 4.0 * signal[:, 1:-1] + signal[:, 2:])
    d = signal[:, :-2] - signal[:, 2:]
    sd = np.einsum("ij,ij->i", s, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.einsum("ij,ij->i", s, s) + third * sd) / (
            third * np.einsum("ij,ij->i", d, d) + sd
        )


def arlo_invert_discretisation(t2star_arlo: Array, delta_te: float) -> Array:
    """Exact R2* (1/s) from an ARLO T2*, removing Simpson's-rule error.

    Solves ``T = dt/3 (1 + 4q + q^2) / (1 - q^2)`` for ``q = exp(-dt R2*)``:
    ``q = (sqrt(3 dt^2 + 9 T^2) - 2 dt) / (dt + 3 T)``. ``T <= dt/3`` has no decaying solution
    and gives NaN. Without this step ARLO is biased by up to ~0.1 % at ``dt R2* = 0.5``.
    """
    t = np.asarray(t2star_arlo, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.sqrt(3.0 * delta_te**2 + 9.0 * t**2) - 2.0 * delta_te) / (delta_te + 3.0 * t)
        r2 = -np.log(q) / delta_te
    return np.where((t > delta_te / 3.0) & (q > 0) & (q < 1), r2, np.nan)


def equal_spacing(te: Array, *, rtol: float = 1e-4) -> float:
    """Echo spacing in seconds, or raise if the echoes are not equally spaced (ARLO needs it)."""
    if te.size < 3:
        raise InputError(
            f"ARLO needs >= 3 equally spaced echoes, got {te.size}; "
            "use method 'auto' or 'loglin' (--fit-method) for dual-echo data"
        )
    steps = np.diff(te)
    if not np.allclose(steps, steps[0], rtol=rtol, atol=0.0):
        spacing = ", ".join(f"{x * 1e3:.4g}" for x in steps)
        raise InputError(
            f"ARLO needs equally spaced echoes, got spacings {spacing} ms; "
            "use method 'auto', 'wls' or 'nlls' (--fit-method) instead"
        )
    return float(steps.mean())


def best_amplitude(signal: Array, te: Array, r2star: Array) -> Array:
    """Least-squares ``S0`` for given R2*: ``sum S_i e_i / sum e_i^2``, ``e_i = exp(-R2* t_i)``."""
    e = np.exp(-r2star[:, None] * te[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.einsum("ij,ij->i", signal, e) / np.einsum("ij,ij->i", e, e)


def arlo(signal: Array, te: Array) -> tuple[Array, Array]:
    """ARLO R2* with the discretisation inverted, and the least-squares S0 for it."""
    dt = equal_spacing(te)
    r2 = arlo_invert_discretisation(arlo_t2star(signal, dt), dt)
    return best_amplitude(signal, te, r2), r2


# ---------------------------------------------------------------------------------------------
# Iterative solvers: a vectorised Levenberg-Marquardt over (u = ln S0, R2*).
# ---------------------------------------------------------------------------------------------

#: ``(u, r2, idx) -> (objective, state)`` per voxel; ``state`` (voxels first, or None) is what
#: the objective computed that the linearisation at the same point can reuse.
Objective = Callable[[Array, Array, NDArray[np.intp]], tuple[Array, Array | None]]
#: ``(u, r2, idx, state) -> (gradient (n, 2), metric (n, 3) as [a, b, c] of [[a, b], [b, c]])``.
Linearisation = Callable[[Array, Array, NDArray[np.intp], Array | None], tuple[Array, Array]]


@np.errstate(over="ignore", invalid="ignore", divide="ignore")
def _levenberg_marquardt(
    u: Array,
    r2: Array,
    objective: Objective,
    linearise: Linearisation,
    *,
    max_iter: int,
    tol: float,
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Minimise ``objective`` per voxel from ``(u, r2)``; returns ``(u, r2, converged)``.

    Each voxel carries its own damping ``lambda``: a step that lowers its objective is kept and
    ``lambda`` shrinks, otherwise the step is rejected and ``lambda`` grows. Only voxels still
    moving are evaluated, so easy voxels stop costing time after a few iterations. The state
    the objective returns at each voxel's current point is kept and handed to ``linearise``.
    Overflow (a corrupt echo of 1e30) gives infinite or NaN steps and objectives: the step is
    rejected, the damping grows and the voxel ends not converged, without numpy's warnings.
    """
    n = u.size
    u, r2 = u.copy(), r2.copy()
    lam = np.full(n, 1e-3)
    converged = np.zeros(n, dtype=bool)
    active = np.flatnonzero(np.isfinite(u) & np.isfinite(r2))
    f_cur = np.full(n, np.inf)
    state: Array | None = None
    if active.size:
        f_cur[active], first = objective(u[active], r2[active], active)
        if first is not None:
            state = np.empty((n, *first.shape[1:]))
            state[active] = first
    for _ in range(max_iter):
        if active.size == 0:
            break
        g, h = linearise(u[active], r2[active], active, None if state is None else state[active])
        a = h[:, 0] * (1.0 + lam[active])
        c = h[:, 2] * (1.0 + lam[active])
        b = h[:, 1]
        det = a * c - b * b
        du = (c * g[:, 0] - b * g[:, 1]) / det
        dr = (a * g[:, 1] - b * g[:, 0]) / det
        u_new, r_new = u[active] + du, r2[active] + dr
        f_new, s_new = objective(u_new, r_new, active)
        better = np.isfinite(f_new) & (f_new <= f_cur[active])
        # A step below tolerance means the voxel sits at its optimum, whether or not rounding
        # let it lower the objective; a heavily damped step proves nothing, hence the lambda cap.
        small = (np.abs(du) < tol) & (np.abs(dr) < tol * np.maximum(np.abs(r_new), 1.0))
        small &= lam[active] < 1e4
        idx = active[better]
        u[idx], r2[idx], f_cur[idx] = u_new[better], r_new[better], f_new[better]
        if state is not None and s_new is not None:
            state[idx] = s_new[better]
        lam[idx] *= 0.1
        lam[active[~better]] *= 10.0
        converged[active[small]] = True
        active = active[~(small | (lam[active] > 1e10))]
    return u, r2, converged


def nlls(
    signal: Array, te: Array, *, max_iter: int = 50, tol: float = 1e-8
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Non-linear least squares on the magnitudes (Gaussian noise), warm-started from :func:`wls`.

    Returns ``(s0, r2star, converged)``.
    """
    s0, r2 = wls(signal, te)

    def objective(u: Array, r: Array, idx: NDArray[np.intp]) -> tuple[Array, None]:
        pred = np.exp(u[:, None] - r[:, None] * te[None, :])
        return np.sum((signal[idx] - pred) ** 2, axis=1), None

    def linearise(u: Array, r: Array, idx: NDArray[np.intp], state: None) -> tuple[Array, Array]:
        pred = np.exp(u[:, None] - r[:, None] * te[None, :])
        res = signal[idx] - pred
        # Jacobian of pred w.r.t. (u, r): (pred, -te * pred)
        jt = -te[None, :] * pred
        grad = np.column_stack([np.sum(pred * res, 1), np.sum(jt * res, 1)])
        metric = np.column_stack([np.sum(pred**2, 1), np.sum(pred * jt, 1), np.sum(jt**2, 1)])
        return grad, metric

    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = np.log(s0)
    u, r2, ok = _levenberg_marquardt(u0, r2, objective, linearise, max_iter=max_iter, tol=tol)
    return np.exp(u), r2, ok


def rician_ml(
    signal: Array,
    te: Array,
    sigma: float | Array,
    *,
    s0: Array,
    r2star: Array,
    factor: Array | None = None,
    coils: int = 1,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Maximum-likelihood fit under Rician noise (Newton, then damped Newton / Fisher scoring).

    The score of one echo is ``(M r(A M / sigma^2) - A) / sigma^2`` with ``r = I1 / I0``, or
    ``r = I_N / I_{N-1}`` for ``N = coils`` channels combined by root-sum-of-squares (noncentral
    chi noise; observed curvature through ``r' = 1 - (2N - 1) r / z - r^2``). The Bessel terms
    come from :func:`~ironmap.fitting.rician.bessel_terms` (tabulated, error below 1e-8).

    Two stages, both vectorised over voxels:

    1. plain Newton steps with the observed information from the start given; a voxel is done
       when its step falls below ``sqrt(tol)`` (Newton converges quadratically, so the error
       left is of order ``tol``) with the information positive definite. Most voxels, started
       from the noise-corrected WLS fit, need two or three steps and no likelihood evaluation;
    2. every other voxel (information not positive definite, no convergence in
       :data:`NEWTON_STEPS` steps, or a step leaving the finite range) restarts from its start
       under Levenberg-Marquardt damping, stepping with the observed information where it is
       positive definite and with the expected (Fisher) information ``f(A / sigma) / sigma^2``
       elsewhere, each step kept only if it lowers the negative log-likelihood.

    Asymptotically efficient: its variance reaches the Rician Cramer-Rao bound.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_voxels, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.
    sigma : float or numpy.ndarray of shape (n_voxels,)
        Noise standard deviation per channel, in signal units (one value, or one per voxel).
    s0, r2star : numpy.ndarray, shape (n_voxels,)
        Starting values.
    factor : numpy.ndarray, shape (n_voxels, n_echoes), optional
        Known signal factor per echo (amplitude model ``S0 exp(-R2* TE) F``).
    coils : int, optional
        Receive channels ``N`` combined by root-sum-of-squares (default 1: Rician).
    max_iter, tol : optional
        Iterations and step tolerance of the damped stage (``tol`` on ``ln S0`` and relative
        on R2*).

    Returns
    -------
    s0, r2star : numpy.ndarray, shape (n_voxels,)
    converged : numpy.ndarray of bool, shape (n_voxels,)
    """
    inv_var = np.broadcast_to(1.0 / np.asarray(sigma, dtype=np.float64) ** 2, r2star.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = np.log(s0)
    terms = _RicianTerms(signal, te, inv_var, factor, coils)
    u, r2, done = _newton(u0, r2star, terms, tol=np.sqrt(tol))
    rest = np.flatnonzero(~done)
    ok = done.copy()
    if rest.size:
        sub = _RicianTerms(
            signal[rest], te, inv_var[rest], None if factor is None else factor[rest], coils
        )
        u[rest], r2[rest], ok[rest] = _levenberg_marquardt(
            u0[rest], r2star[rest], sub.objective, sub.linearise, max_iter=max_iter, tol=tol
        )
    return np.exp(u), r2, ok


#: Plain Newton steps :func:`rician_ml` tries before its damped stage.
NEWTON_STEPS = 6


class _RicianTerms:
    """Likelihood, score and information of the noncentral-chi decay model for some voxels."""

    def __init__(
        self, signal: Array, te: Array, inv_var: Array, factor: Array | None, coils: int
    ) -> None:
        self.signal, self.te, self.factor, self.coils = signal, te, factor, coils
        self.inv_var = inv_var[:, None]  # (n, 1)
        self.ones = np.ones(te.size)
        self.moments = np.stack([self.ones, -te, te * te], axis=1)  # (n_echoes, 3)
        self.order = 2 * coils - 1  # r' = 1 - (2N - 1) r / z - r^2

    def amplitude(self, u: Array, r: Array, idx: NDArray[np.intp]) -> Array:
        amp = np.exp(u[:, None] - r[:, None] * self.te[None, :])
        if self.factor is not None:
            amp *= self.factor[idx]
        return amp

    def objective(self, u: Array, r: Array, idx: NDArray[np.intp]) -> tuple[Array, Array]:
        """Negative log-likelihood up to a constant, and ``(A, r_N)`` for the linearisation."""
        amp = self.amplitude(u, r, idx)
        inv_var = self.inv_var[idx]
        ratio, log_term = bessel_terms(amp * self.signal[idx] * inv_var, coils=self.coils)
        # A^2 / (2 sigma^2) - log(I_{N-1}(z) / z^(N-1)) per echo
        value = (0.5 * inv_var * amp**2 - log_term) @ self.ones
        return value, np.stack([amp, ratio], axis=1)

    def linearise(
        self, u: Array, r: Array, idx: NDArray[np.intp], state: Array
    ) -> tuple[Array, Array]:
        """Gradient and information (observed, or expected where not positive definite)."""
        amp, ratio = state[:, 0], state[:, 1]
        grad, metric = self.newton(amp, ratio, idx)
        indefinite = ~_positive_definite(metric)
        if indefinite.any():  # expected (Fisher) information: always positive definite
            a_ind = amp[indefinite]
            snr = a_ind * np.sqrt(self.inv_var[idx][indefinite])
            ia2 = rician_information_factor(snr, coils=self.coils) * snr**2
            te = self.te
            metric[indefinite] = np.column_stack([ia2 @ self.ones, ia2 @ -te, ia2 @ te**2])
        return grad, metric

    def newton(
        self,
        amp: Array,
        ratio: Array,
        idx: NDArray[np.intp],
        *,
        z: Array | None = None,
        mag: Array | None = None,
        mag_var: Array | None = None,
    ) -> tuple[Array, Array]:
        """Gradient ``(n, 2)`` and observed information ``(n, 3)`` at amplitudes ``amp``.

        ``z = A M / sigma^2``, ``mag = M`` and ``mag_var = M / sigma^2`` of the voxels ``idx``
        when the caller has them (computed here otherwise)."""
        inv_var = self.inv_var[idx]
        if mag is None:
            mag = self.signal[idx]
        if mag_var is None:
            mag_var = mag * inv_var
        if z is None:
            z = amp * mag_var
        score = mag_var * ratio - amp * inv_var  # -d(negloglik)/dA per echo
        amp_score = amp * score
        grad = amp_score @ self.moments[:, :2]  # dA/du = A: [sum, -sum te]
        # d2(negloglik)/dA2 = 1/sigma^2 - M^2/sigma^4 r'(z), r' = 1 - (2N-1) r/z - r^2.
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = ratio / z if self.order == 1 else self.order * ratio / z
        slope += ratio * ratio
        slope -= 1.0  # -r'
        slope *= mag_var * mag_var
        slope += inv_var  # the curvature
        slope *= amp * amp
        slope -= amp_score  # + second derivatives of A (dA/dR = -te A) times dL/dA
        return grad, slope @ self.moments  # [sum, -sum te, sum te^2]


def _positive_definite(metric: Array) -> NDArray[np.bool_]:
    return (metric[:, 0] > 0) & (metric[:, 0] * metric[:, 2] > metric[:, 1] ** 2)


def _newton(
    u: Array, r2: Array, terms: _RicianTerms, *, tol: float
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Undamped Newton steps; returns ``(u, r2, done)``, unchanged where not ``done``."""
    u, r2 = u.copy(), r2.copy()
    done = np.zeros(u.size, dtype=bool)
    active = np.flatnonzero(np.isfinite(u) & np.isfinite(r2))
    u_new, r_new = u.copy(), r2.copy()
    for _ in range(NEWTON_STEPS):
        if active.size == 0:
            break
        ua, ra = u_new[active], r_new[active]
        amp = terms.amplitude(ua, ra, active)
        mag = terms.signal[active]
        mag_var = mag * terms.inv_var[active]
        z = amp * mag_var
        ratio = fast_bessel_ratio(z, coils=terms.coils)
        g, h = terms.newton(amp, ratio, active, z=z, mag=mag, mag_var=mag_var)
        det = h[:, 0] * h[:, 2] - h[:, 1] ** 2
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            du = (h[:, 2] * g[:, 0] - h[:, 1] * g[:, 1]) / det
            dr = (h[:, 0] * g[:, 1] - h[:, 1] * g[:, 0]) / det
        ua, ra = ua + du, ra + dr
        keep = _positive_definite(h) & np.isfinite(ua) & np.isfinite(ra)
        small = keep & (np.abs(du) < tol) & (np.abs(dr) < tol * np.maximum(np.abs(ra), 1.0))
        u_new[active], r_new[active] = ua, ra
        finished = active[small]
        u[finished], r2[finished], done[finished] = ua[small], ra[small], True
        active = active[keep & ~small]
    return u, r2, done
