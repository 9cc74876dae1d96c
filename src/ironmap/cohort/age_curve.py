"""The controls' normative age curve: monotone where iron accumulates, linear where they are few.

Per region, on log R2*, with site (one-hot) and sex as fixed effects::

    f(age) = sum_j theta_j Phi_j(age),    Phi_j(x) = int_0^x L_j(u) du

``L_j`` is the piecewise-linear "hat" function of knot ``t_j`` (1 at ``t_j``, 0 at the other
knots, constant beyond the outer knots), so ``f'`` is the piecewise-linear interpolation of the
``theta_j`` between the knots: ``theta_j`` is the slope of the curve at knot ``t_j``
(log(1/s) per decade), ``f`` is a C1 quadratic spline between the outer knots and a straight
line beyond them. These are the quadratic I-splines of Ramsay (1988), extended linearly; such
a curve is non-decreasing *if and only if* every ``theta_j >= 0`` (Meyer 2008), so shape
constraints are bounds on coefficients (``scipy.optimize.lsq_linear``, ``method="bvls"``).

- **Linear tails.** The outer (boundary) knots are the controls' 5th and 95th age percentiles
  (:data:`BOUNDARY_PERCENTILES`); the knots between are equally spaced in percentile. Beyond
  them the curve cannot bend: a few old (or young) controls only tilt the tail, whose slope is
  the fitted slope at the boundary knot.
- **Rising and levelling off where the literature says so.** In the iron-rich deep grey
  matter (:data:`MONOTONE_REGIONS`: caudate, putamen, pallidum, substantia nigra, red nucleus,
  dentate nucleus) non-haem iron rises fast in the first decades and then more slowly or not
  at all, never falling in old age (Hallgren and Sourander 1958, post mortem, with a
  saturating exponential fit; R2* of the healthy controls of Ropele et al. 2014 and of the
  ageing cohort of Pirpamer et al. 2016, Neurobiology of Aging). The curve there is
  constrained non-decreasing and concave: ``theta_0 >= theta_1 >= ... >= 0``, written as
  non-negative coefficients ``delta_m`` of the cumulative basis ``Psi_m = sum_{j <= m} Phi_j``
  (``theta_j = sum_{m >= j} delta_m``). A spurious fall (inverted U) or upturn at the old end
  is impossible; a straight line is allowed. Thalamus and white matter are left free: their
  iron shows no consistent rise in adults and their R2* may fall in old age.
- **Knots.** ``K`` = 1 (a line) to 4 knots (:data:`AGE_DF`), the one with the smallest
  leave-one-out prediction error (PRESS, exact for least squares on the active basis). A free
  curve tries at most one knot per :data:`CONTROLS_PER_KNOT` controls (a line below 40), so
  that thin data keep it straight.

A constrained fit is the least-squares fit on its *active* basis functions (coefficient > 0:
the Karush-Kuhn-Tucker conditions make the residuals orthogonal to them), so the design ComBat
receives holds only the active columns (the others are zero), ComBat's least squares
reproduces the constrained curve exactly, and the curve's variance (``NormativeModel``) is
that of the active-set fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import lsq_linear

from ..regions.catalog import DEEP_GM

__all__ = [
    "AGE_DF",
    "AGE_SUPPORT_LEVELS",
    "BOUNDARY_PERCENTILES",
    "CONTROLS_PER_KNOT",
    "MONOTONE_REGIONS",
    "AgeCurve",
    "age_limits",
    "age_support",
    "curve_basis",
    "curve_knots",
    "fit_age_curve",
]

#: Candidate numbers of knots (= degrees of freedom of the age curve; 1 = a straight line).
AGE_DF = (1, 2, 3, 4)
#: A free (unconstrained) curve tries at most one knot per this many controls: its tail slope is
#: the slope of its last piece, which few controls per piece leave noisy (thalamus and NAWM in
#: benchmarks/age_curve.py, 45 controls: RMS error at 70-80 years 3.6 / 3.2 1/s with up to 4
#: knots, 2.7 / 1.7 with this cap; with 120 controls unchanged). Constrained curves cannot bend
#: and try every candidate.
CONTROLS_PER_KNOT = 20
#: Percentiles of the controls' ages at the outer knots: the curve is linear beyond them.
BOUNDARY_PERCENTILES = (5.0, 95.0)
#: Regions whose healthy R2* rises with age and levels off, never falls (Hallgren and
#: Sourander 1958; Ropele et al. 2014; Pirpamer et al. 2016): their curve is constrained
#: non-decreasing and concave: every deep grey-matter nucleus but the thalamus, whose R2*
#: falls again in later life.
MONOTONE_REGIONS = tuple(r for r in DEEP_GM if r != "thalamus")
#: ``age_support`` of a participant against the controls' ages.
AGE_SUPPORT_LEVELS = {
    "within": "within the controls' 5th-95th age percentile",
    "beyond_p5_p95": "within the controls' age range but beyond their 5th-95th percentile",
    "outside": "younger than every control or older than every control",
}
# a candidate needs this many residual degrees of freedom
_MIN_DOF = 3


def curve_knots(age: np.ndarray, df: int) -> np.ndarray:
    """Knots (years) of a ``df``-knot curve: percentiles 5 ... 95, equally spaced; empty for 1.

    Parameters
    ----------
    age : ndarray, shape (n,)
        The controls' ages (years).
    df : int
        Number of knots (>= 1).

    Returns
    -------
    ndarray, shape (df,) or (0,)
        Increasing knots; fewer than ``df`` when ages are tied (the caller skips the candidate).
    """
    if df < 2:
        return np.zeros(0)
    return np.unique(np.percentile(age, np.linspace(*BOUNDARY_PERCENTILES, df)))


def curve_basis(age: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """``Phi_j(age)``: integrals from age 0 of the knots' hat functions (module docstring).

    Parameters
    ----------
    age : ndarray, shape (n,)
        Years.
    knots : ndarray, shape (K,)
        Increasing knots (years); fewer than 2 gives the line ``age / 10``.

    Returns
    -------
    ndarray, shape (n, max(K, 1))
        Decades: column ``j`` has slope 1 at knot ``j`` and 0 at the others, constant slope
        beyond the outer knots.
    """
    x = np.asarray(age, dtype=np.float64) / 10.0
    if len(knots) < 2:
        return x[:, None]
    t = np.asarray(knots, dtype=np.float64) / 10.0
    k = len(t)
    hat = np.eye(k)  # row m: the hat functions' values at knot m
    h = np.diff(t)
    cum = np.vstack([np.zeros(k), np.cumsum(h[:, None] * (hat[:-1] + hat[1:]) / 2, axis=0)])
    y = np.clip(x, t[0], t[-1])
    i = np.clip(np.searchsorted(t, y, side="right") - 1, 0, k - 2)
    u = (y - t[i])[:, None]
    inside = cum[i] + u * hat[i] + u**2 / (2 * h[i, None]) * (hat[i + 1] - hat[i])
    below = np.minimum(x, t[0])[:, None] * hat[0]
    above = np.maximum(x - t[-1], 0.0)[:, None] * hat[-1]
    return below + inside + above


@dataclass(frozen=True)
class AgeCurve:
    """One region's chosen age curve.

    Attributes
    ----------
    df : int
        Knots of the chosen candidate (1 = a line).
    knots : ndarray, shape (df,) or (0,)
        Years; the first and last are the boundary knots (empty for a line).
    active : ndarray of bool, shape (max(df, 1),)
        Basis functions in the fit; a monotone fit drops those whose coefficient is bound at 0.
    monotone : bool
        Constrained non-decreasing and concave (basis ``Psi``, module docstring).
    press_rmse : dict
        ``df -> leave-one-out RMSE`` (log R2*) of every candidate that could be fitted.
    """

    df: int
    knots: np.ndarray
    active: np.ndarray
    monotone: bool
    press_rmse: dict[int, float]

    @property
    def name(self) -> str:
        """``linear`` or ``spline-dfK``, with ``-monotone`` when constrained."""
        base = "linear" if self.df == 1 else f"spline-df{self.df}"
        return base + ("-monotone" if self.monotone else "")

    def basis(self, age: np.ndarray) -> np.ndarray:
        """Basis at ``age``, inactive columns zero, shape (n, max(df, 1))."""
        return _shaped(curve_basis(age, self.knots), self.monotone) * self.active


def _shaped(basis: np.ndarray, monotone: bool) -> np.ndarray:
    """Monotone curves use ``Psi_m = sum_{j <= m} Phi_j``: non-negative coefficients
    ``delta_m`` give slopes ``theta_j = sum_{m >= j} delta_m``, non-negative and non-increasing
    (non-decreasing and concave), else the basis itself."""
    return np.cumsum(basis, axis=1) if monotone else basis


def _fit(y, fixed, basis, monotone) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``y`` on ``[fixed, basis]``, basis coefficients >= 0 if monotone.

    Returns the active basis columns and the squared leave-one-out residuals.
    """
    active = np.ones(basis.shape[1], dtype=bool)
    if monotone:
        exog = np.column_stack([fixed, basis])
        lower = np.r_[np.full(fixed.shape[1], -np.inf), np.zeros(basis.shape[1])]
        coef = lsq_linear(exog, y, bounds=(lower, np.inf), method="bvls").x
        active = coef[fixed.shape[1] :] > 0
    result = sm.OLS(y, np.column_stack([fixed, basis[:, active]])).fit()
    hat = result.get_influence().hat_matrix_diag
    return active, (result.resid / np.clip(1 - hat, 1e-6, None)) ** 2


def fit_age_curve(
    y: np.ndarray, age: np.ndarray, fixed: np.ndarray, *, monotone: bool
) -> AgeCurve:
    """Choose and fit one region's age curve on the controls.

    Parameters
    ----------
    y : ndarray, shape (n,)
        Controls' log R2* (finite).
    age : ndarray, shape (n,)
        Years.
    fixed : ndarray, shape (n, m)
        Other fixed effects, spanning the intercept: site one-hot columns and sex dummies.
    monotone : bool
        Constrain the curve non-decreasing and concave.

    Returns
    -------
    AgeCurve
    """
    loo, active = {}, {}
    most = max(AGE_DF) if monotone else max(1, len(y) // CONTROLS_PER_KNOT)
    for df in AGE_DF:
        knots = curve_knots(age, df)
        if df > most or (df > 1 and len(knots) < df) or len(y) - fixed.shape[1] - df < _MIN_DOF:
            continue
        basis = _shaped(curve_basis(age, knots), monotone)
        active[df], loo[df] = _fit(y, fixed, basis, monotone)
    if not loo:
        return AgeCurve(1, np.zeros(0), np.ones(1, bool), monotone, {})
    press = {df: float(np.sqrt(np.mean(e))) for df, e in loo.items()}
    df = min(press, key=press.get)
    return AgeCurve(df, curve_knots(age, df), active[df], monotone, press)


def age_limits(age: np.ndarray) -> tuple[float, float, float, float]:
    """The controls' age support: minimum, 5th and 95th percentile, maximum (years)."""
    age = np.asarray(age, dtype=np.float64)
    age = age[np.isfinite(age)]
    low, high = np.percentile(age, BOUNDARY_PERCENTILES)
    return float(age.min()), float(low), float(high), float(age.max())


def age_support(age, limits: tuple[float, float, float, float]) -> np.ndarray:
    """Each participant's place against the controls' ages (:data:`AGE_SUPPORT_LEVELS`).

    Parameters
    ----------
    age : array_like, shape (n,)
        Years (NaN allowed).
    limits : tuple of float
        :func:`age_limits` of the controls.

    Returns
    -------
    ndarray of object, shape (n,)
        ``within``, ``beyond_p5_p95``, ``outside``, or None where the age is missing.
    """
    age = pd.to_numeric(pd.Series(np.asarray(age)), errors="coerce").to_numpy(np.float64)
    low, p5, p95, high = limits
    out = np.full(age.shape, None, dtype=object)
    finite = np.isfinite(age)
    out[finite] = "within"
    out[finite & ((age < p5) | (age > p95))] = "beyond_p5_p95"
    out[finite & ((age < low) | (age > high))] = "outside"
    return out
