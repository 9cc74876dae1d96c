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
from .rician import bessel_ratio, rician_information_factor, rician_negloglik

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
    sw = w.sum(axis=1)
    swt = w @ te
    swtt = w @ te**2
    swy = np.einsum("ij,ij->i", w, y)
    swty = np.einsum("ij,ij->i", w * y, np.broadcast_to(te, y.shape))
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

#: ``(u, r2) -> objective`` per voxel.
Objective = Callable[[Array, Array, NDArray[np.intp]], Array]
#: ``(u, r2) -> (gradient (n, 2), metric (n, 3) as [a, b, c] of [[a, b], [b, c]])``.
Linearisation = Callable[[Array, Array, NDArray[np.intp]], tuple[Array, Array]]


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
    moving are evaluated, so easy voxels stop costing time after a few iterations.
    """
    n = u.size
    u, r2 = u.copy(), r2.copy()
    lam = np.full(n, 1e-3)
    converged = np.zeros(n, dtype=bool)
    active = np.flatnonzero(np.isfinite(u) & np.isfinite(r2))
    f_cur = np.full(n, np.inf)
    if active.size:
        f_cur[active] = objective(u[active], r2[active], active)
    for _ in range(max_iter):
        if active.size == 0:
            break
        g, h = linearise(u[active], r2[active], active)
        a = h[:, 0] * (1.0 + lam[active])
        c = h[:, 2] * (1.0 + lam[active])
        b = h[:, 1]
        det = a * c - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            du = (c * g[:, 0] - b * g[:, 1]) / det
            dr = (a * g[:, 1] - b * g[:, 0]) / det
        u_new, r_new = u[active] + du, r2[active] + dr
        f_new = objective(u_new, r_new, active)
        better = np.isfinite(f_new) & (f_new <= f_cur[active])
        # A step below tolerance means the voxel sits at its optimum, whether or not rounding
        # let it lower the objective; a heavily damped step proves nothing, hence the lambda cap.
        small = (np.abs(du) < tol) & (np.abs(dr) < tol * np.maximum(np.abs(r_new), 1.0))
        small &= lam[active] < 1e4
        idx = active[better]
        u[idx], r2[idx], f_cur[idx] = u_new[better], r_new[better], f_new[better]
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

    def objective(u: Array, r: Array, idx: NDArray[np.intp]) -> Array:
        pred = np.exp(u[:, None] - r[:, None] * te[None, :])
        return np.sum((signal[idx] - pred) ** 2, axis=1)

    def linearise(u: Array, r: Array, idx: NDArray[np.intp]) -> tuple[Array, Array]:
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
    sigma: float,
    *,
    s0: Array,
    r2star: Array,
    factor: Array | None = None,
    coils: int = 1,
    max_iter: int = 50,
    tol: float = 1e-8,
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Maximum-likelihood fit under Rician noise (damped Newton / Fisher scoring).

    The score of one echo is ``(M r(A M / sigma^2) - A) / sigma^2`` with ``r = I1 / I0``, or
    ``r = I_N / I_{N-1}`` for ``N = coils`` channels combined by root-sum-of-squares (noncentral
    chi noise; observed curvature through ``r' = 1 - (2N - 1) r / z - r^2``). Each
    voxel steps with the observed information (Newton: quadratic convergence) where it is
    positive definite and with the expected (Fisher) information ``f(A / sigma) / sigma^2``
    elsewhere, under Levenberg-Marquardt damping. Asymptotically efficient: its variance
    reaches the Rician Cramer-Rao bound.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_voxels, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.
    sigma : float
        Noise standard deviation per channel, in signal units.
    s0, r2star : numpy.ndarray, shape (n_voxels,)
        Starting values.
    factor : numpy.ndarray, shape (n_voxels, n_echoes), optional
        Known signal factor per echo (amplitude model ``S0 exp(-R2* TE) F``).
    coils : int, optional
        Receive channels ``N`` combined by root-sum-of-squares (default 1: Rician).

    Returns
    -------
    s0, r2star : numpy.ndarray, shape (n_voxels,)
    converged : numpy.ndarray of bool, shape (n_voxels,)
    """
    inv_var = 1.0 / sigma**2
    order = 2 * coils - 1  # r' = 1 - (2N - 1) r / z - r^2

    def amplitude(u: Array, r: Array, idx: NDArray[np.intp]) -> Array:
        amp = np.exp(u[:, None] - r[:, None] * te[None, :])
        return amp if factor is None else amp * factor[idx]

    def objective(u: Array, r: Array, idx: NDArray[np.intp]) -> Array:
        amp = amplitude(u, r, idx)
        return np.sum(rician_negloglik(amp, signal[idx], sigma, coils=coils), axis=1)

    def linearise(u: Array, r: Array, idx: NDArray[np.intp]) -> tuple[Array, Array]:
        amp = amplitude(u, r, idx)
        mag = signal[idx]
        z = amp * mag * inv_var
        ratio = bessel_ratio(z, coils=coils)
        score = (mag * ratio - amp) * inv_var  # -d(negloglik)/dA per echo
        jt = -te[None, :] * amp  # dA/dR; dA/du = A
        grad = np.column_stack([np.sum(amp * score, 1), np.sum(jt * score, 1)])
        # Observed information (Newton): quadratic convergence near the optimum.
        # d2(negloglik)/dA2 = 1/sigma^2 - M^2/sigma^4 r'(z), r' = 1 - (2N-1) r/z - r^2.
        slope = 1.0 - order * ratio / z - ratio**2
        curv = inv_var - (mag * inv_var) ** 2 * slope
        ca2 = curv * amp**2 - score * amp  # + second derivatives of A times dL/dA
        metric = np.column_stack([ca2.sum(1), ca2 @ -te, ca2 @ te**2])
        indefinite = ~((metric[:, 0] > 0) & (metric[:, 0] * metric[:, 2] > metric[:, 1] ** 2))
        if indefinite.any():  # expected (Fisher) information: always positive definite
            a_ind = amp[indefinite]
            info = rician_information_factor(a_ind / sigma, coils=coils)
            ia2 = info * inv_var * a_ind**2
            metric[indefinite] = np.column_stack([ia2.sum(1), ia2 @ -te, ia2 @ te**2])
        return grad, metric

    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = np.log(s0)
    u, r2, ok = _levenberg_marquardt(u0, r2star, objective, linearise, max_iter=max_iter, tol=tol)
    return np.exp(u), r2, ok
