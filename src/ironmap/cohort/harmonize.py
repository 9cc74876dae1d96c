"""ComBat site harmonisation fitted on controls and applied to everyone.

The location/scale model of Johnson et al. (2007), as used for neuroimaging by Fortin et al.
(2018) and, with a nonlinear age term, Pomponio et al. (2020, ComBat-GAM)::

    y_ig = alpha_g + x_i' beta_g + gamma_sg + sqrt(delta_sg) * sigma_g * e_ig

for participant ``i`` at site ``s`` and feature ``g`` (here: a region's log R2*), with
covariates ``x`` (age basis, sex). ``gamma_sg`` (location) and ``delta_sg`` (scale) are
shrunk towards their site's mean over features by parametric empirical Bayes (normal prior on
``gamma``, inverse-gamma prior on ``delta``). Everything is estimated on controls only, so a
disease effect can never be taken for a site effect; patients are harmonised with their site's
parameters. Participants at sites without controls cannot be harmonised (NaN).

**Missing values.** A feature that no control of a site has (e.g. a region not segmented at
one scanner) leaves that site's other features untouched: the site's empirical-Bayes prior is
computed from the features present (NaN-aware), the missing feature's site parameters are NaN
(its participants at that site get NaN in that feature only), and one ``IronmapWarning`` names
the feature and the site.

**Location only, and the site scale in z-scores.** :meth:`ComBatModel.apply` divides each
participant's deviation from the site's expectation by ``sqrt(delta)`` (``scale=True``, the
reference behaviour). When a site's extra variance is measurement noise, that also shrinks a
disease effect at that site by ``sqrt(delta)`` (17 % at ``delta = 1.41`` in
``tests/test_harmonize.py``). ``apply(..., scale=False)`` removes the location only;
:attr:`ComBatModel.delta_z` is then the site's variance ratio for z-scores: ``delta_star`` at
sites with at least ``min_scale_n`` controls, and at smaller sites the site's ratio pooled over
features (weighted by their degrees of freedom, the features' correlation discounted) and
shrunk towards the pooled scale (1) with a prior worth ``min_scale_n - 1`` degrees of freedom.

Conventions follow the reference implementation (neuroCombat / neuroHarmonize), against which
``benchmarks/harmonize_reference.py`` checks this one: ``alpha`` is the control-weighted mean of
the site intercepts, ``sigma^2`` the mean squared residual (divisor ``n``), ``delta`` the
within-site variance with divisor ``n_s - 1``. Missing values (NaN) are allowed: each feature
is fitted on its observed rows. A design may differ per feature (``covariates`` of shape
``(n, q)`` or ``(p, n, q)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..errors import IronmapWarning

__all__ = ["ComBatModel", "fit_combat", "site_scale_z"]

_CONVERGENCE = 1e-4
_MAX_ITER = 1000


@dataclass(frozen=True)
class ComBatModel:
    """Fitted ComBat parameters (``k`` sites with controls, ``p`` features, ``q`` covariates).

    Attributes
    ----------
    sites : tuple of str
        Sites with controls, in the order of the rows of the site arrays.
    n_site : ndarray, shape (k, p)
        Controls per site and feature.
    beta : ndarray, shape (p, q)
        Covariate coefficients per feature (units of ``y`` per covariate unit).
    grand_mean : ndarray, shape (p,)
        ``alpha``: control-weighted mean of the site intercepts.
    var_pooled : ndarray, shape (p,)
        ``sigma^2``: mean squared residual of the controls.
    gamma_hat, delta_hat : ndarray, shape (k, p)
        Per-site location (standardised units) and scale (variance ratio) before pooling.
    gamma_star, delta_star : ndarray, shape (k, p)
        After empirical-Bayes pooling (equal to the ``_hat`` values with ``eb=False``).
    gamma_var : ndarray, shape (k, p)
        Posterior variance of ``gamma`` (standardised units): the uncertainty of the site term.
    eb : bool
    delta_z : ndarray, shape (k, p)
        Variance ratio of each site's residuals for z-scores of location-only harmonised
        values (:func:`site_scale_z`); NaN where a site has no control with the feature.
    delta_z_df : ndarray, shape (k, p)
        Degrees of freedom behind ``delta_z`` (inf: ``delta_star`` is used).
    """

    sites: tuple[str, ...]
    n_site: NDArray[np.float64]
    beta: NDArray[np.float64]
    grand_mean: NDArray[np.float64]
    var_pooled: NDArray[np.float64]
    gamma_hat: NDArray[np.float64]
    delta_hat: NDArray[np.float64]
    gamma_star: NDArray[np.float64]
    delta_star: NDArray[np.float64]
    gamma_var: NDArray[np.float64]
    eb: bool
    delta_z: NDArray[np.float64]
    delta_z_df: NDArray[np.float64]

    def site_index(self, site: ArrayLike) -> NDArray[np.intp]:
        """Row of each participant's site in the site arrays; -1 for a site without controls."""
        lookup = {s: i for i, s in enumerate(self.sites)}
        return np.array([lookup.get(s, -1) for s in np.asarray(site, dtype=object)], np.intp)

    def expected(self, covariates: ArrayLike) -> NDArray[np.float64]:
        """``alpha + x' beta``: the site-free expectation, shape (n, p)."""
        design = _per_feature(covariates, self.beta.shape[0])
        return self.grand_mean + np.einsum("gnq,gq->ng", design, self.beta)

    def apply(
        self, y: ArrayLike, site: ArrayLike, covariates: ArrayLike, *, scale: bool = True
    ) -> NDArray[np.float64]:
        """Harmonise ``y`` (n, p): remove each site's location and (``scale``) scale.

        Rows at sites without controls are NaN, and so is a feature at a site where no control
        has it. ``scale=False`` removes the location only: a participant's deviation from the
        site's expectation (disease effects included) keeps its size.
        """
        y = np.asarray(y, dtype=np.float64)
        idx = self.site_index(site)
        known = idx >= 0
        stand = self.expected(covariates)
        sd = np.sqrt(self.var_pooled)
        s = (y - stand) / sd
        out = np.full_like(y, np.nan)
        rows = idx[known]
        divisor = np.sqrt(self.delta_star[rows]) if scale else 1.0
        out[known] = (s[known] - self.gamma_star[rows]) / divisor
        return out * sd + stand


def _per_feature(covariates: ArrayLike, p: int) -> NDArray[np.float64]:
    design = np.asarray(covariates, dtype=np.float64)
    if design.ndim == 1:
        design = design[:, None]
    if design.ndim == 2:
        design = np.broadcast_to(design, (p, *design.shape))
    return design


def _posterior(g_hat, d_hat, n, s_sq, g_bar, tau2, a, b):
    """Parametric EB for one site (Johnson et al. 2007, eqs. 3.1-3.2), iterated to a fixed point.

    ``s_sq(g)`` returns the sum over participants of ``(s - g)^2`` per feature.
    """
    g_old, d_old = g_hat, d_hat
    for _ in range(_MAX_ITER):
        g_new = (n * tau2 * g_hat + d_old * g_bar) / (n * tau2 + d_old)
        d_new = (0.5 * s_sq(g_new) + b) / (n / 2.0 + a - 1.0)
        change = max(
            np.nanmax(np.abs(g_new - g_old) / np.abs(g_old)),
            np.nanmax(np.abs(d_new - d_old) / d_old),
        )
        g_old, d_old = g_new, d_new
        if change < _CONVERGENCE:
            break
    return g_old, d_old


def _moments_prior(d_hat: NDArray[np.float64]) -> tuple[float, float]:
    """Inverse-gamma hyper-parameters from the mean and variance of the scale estimates."""
    m, v = np.nanmean(d_hat), np.nanvar(d_hat, ddof=1)
    return (2 * v + m**2) / v, (m * v + m**3) / v


def fit_combat(
    y: ArrayLike,
    site: ArrayLike,
    covariates: ArrayLike,
    *,
    eb: bool = True,
    min_scale_n: int = 2,
    features: Sequence[str] | None = None,
) -> ComBatModel:
    """Fit ComBat on controls.

    Parameters
    ----------
    y : array_like, shape (n, p)
        Controls' features (e.g. log R2* per region); NaN where missing.
    site : array_like, shape (n,)
        Site of each control.
    covariates : array_like, shape (n, q) or (p, n, q)
        Covariates to preserve (no intercept, no site columns), common or per feature.
    eb : bool
        Empirical-Bayes pooling of site parameters across features (needs p >= 2).
    min_scale_n : int
        Sites with fewer controls than this keep the pooled scale (``delta_star = 1``; their
        ``delta_z`` is the shrunk site-wide scale of :func:`site_scale_z`); their
        location is still estimated. 2 reproduces ComBat; a variance from a handful of
        controls is too noisy to divide patients by. Also the threshold of :func:`site_scale_z`.
    features : sequence of str, optional
        Names of the features (length p) for warnings; default ``feature 0``, ...

    Returns
    -------
    ComBatModel
    """
    y = np.asarray(y, dtype=np.float64)
    _n, p = y.shape
    site = np.asarray(site, dtype=object)
    sites = tuple(sorted(set(site)))
    onehot = (site[:, None] == np.array(sites, dtype=object)[None, :]).astype(np.float64)
    design = _per_feature(covariates, p)
    k, q = len(sites), design.shape[2]
    beta = np.zeros((p, q))
    grand = np.zeros(p)
    var_pooled = np.zeros(p)
    n_site = np.zeros((k, p))
    for g in range(p):
        ok = np.isfinite(y[:, g])
        full = np.column_stack([onehot[ok], design[g][ok]])
        coef = np.linalg.lstsq(full, y[ok, g], rcond=None)[0]
        n_site[:, g] = onehot[ok].sum(0)
        grand[g] = n_site[:, g] @ coef[:k] / ok.sum()
        beta[g] = coef[k:]
        var_pooled[g] = np.mean((y[ok, g] - full @ coef) ** 2)
    s = (y - grand - np.einsum("gnq,gq->ng", design, beta)) / np.sqrt(var_pooled)
    gamma_hat = np.full((k, p), np.nan)
    delta_hat = np.full((k, p), np.nan)
    _warn_missing(n_site, sites, features)
    present = n_site > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, as intended
        for i in range(k):
            rows = s[onehot[:, i] > 0]
            gamma_hat[i] = np.nanmean(rows, axis=0)
            delta_hat[i] = np.where(n_site[i] > 1, np.nanvar(rows, axis=0, ddof=1), np.nan)
    gamma_star, delta_star = gamma_hat.copy(), delta_hat.copy()
    small = n_site.max(axis=1) < min_scale_n
    delta_z, delta_z_df = site_scale_z(s, onehot, n_site, delta_hat, min_scale_n=min_scale_n)
    # Without pooling, the site mean is known to within its sampling variance.
    gamma_var = np.where(small[:, None], delta_z, delta_hat) / np.maximum(n_site, 1)
    if eb and p >= 2:
        for i in range(k):
            rows = s[onehot[:, i] > 0]
            # The site's prior from the features it has (a missing one must not void the rest).
            g_bar, tau2 = np.nanmean(gamma_hat[i]), np.nanvar(gamma_hat[i], ddof=1)
            finite = np.isfinite(delta_hat[i])
            if n_site[i].max() < min_scale_n:
                finite[:] = False
            if finite.sum() >= 2 and np.nanvar(delta_hat[i], ddof=1) > 0:
                a, b = _moments_prior(delta_hat[i])
                d0 = np.where(finite, delta_hat[i], b / (a - 1))
            else:  # too few controls for a per-feature scale: the site's pooled one
                a, b, d0 = np.inf, np.nan, np.where(np.isfinite(delta_z[i]), delta_z[i], 1.0)

            def s_sq(g, rows=rows):
                return np.nansum((rows - g) ** 2, axis=0)

            if np.isfinite(a):
                g_star, d_star = _posterior(gamma_hat[i], d0, n_site[i], s_sq, g_bar, tau2, a, b)
            else:
                g_star = (n_site[i] * tau2 * gamma_hat[i] + d0 * g_bar) / (n_site[i] * tau2 + d0)
                d_star = d0
            gamma_star[i], delta_star[i] = g_star, d_star
            gamma_var[i] = tau2 * d_star / (n_site[i] * tau2 + d_star)
    delta_star[small] = 1.0
    delta_star = np.where(np.isfinite(delta_star), delta_star, 1.0)
    gamma_var = np.where(np.isfinite(gamma_var), gamma_var, 1.0)
    delta_z = np.where(small[:, None], delta_z, delta_star)
    # No control of the site has the feature: nothing to harmonise it with.
    for array in (gamma_star, delta_star, gamma_var, delta_z):
        array[~present] = np.nan
    return ComBatModel(
        sites=sites,
        n_site=n_site,
        beta=beta,
        grand_mean=grand,
        var_pooled=var_pooled,
        gamma_hat=gamma_hat,
        delta_hat=delta_hat,
        gamma_star=gamma_star,
        delta_star=delta_star,
        gamma_var=gamma_var,
        eb=eb,
        delta_z=delta_z,
        delta_z_df=delta_z_df,
    )


def _warn_missing(
    n_site: NDArray[np.float64], sites: tuple[str, ...], features: Sequence[str] | None
) -> None:
    """One warning per feature that some site's controls all lack."""
    names = (
        list(features)
        if features is not None
        else [f"feature {g}" for g in range(n_site.shape[1])]
    )
    for g in np.flatnonzero((n_site == 0).any(axis=0) & (n_site > 0).any(axis=0)):
        where = ", ".join(str(sites[i]) for i in np.flatnonzero(n_site[:, g] == 0))
        warnings.warn(
            f"{names[g]}: no control has a value at site(s) {where}; {names[g]} cannot be "
            "harmonised there (NaN for that site's participants), their other regions are",
            IronmapWarning,
            stacklevel=3,
        )


def site_scale_z(
    s: NDArray[np.float64],
    onehot: NDArray[np.float64],
    n_site: NDArray[np.float64],
    delta_hat: NDArray[np.float64],
    *,
    min_scale_n: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each site's residual variance ratio for z-scores, shrunk where the site has few controls.

    Sites with at least ``min_scale_n`` controls keep ComBat's ``delta_star`` (per feature,
    empirical-Bayes pooled over features). At a smaller site a per-feature variance is too
    noisy (a variance from 3 degrees of freedom makes z heavy-tailed), and the pooled scale
    (``delta = 1``) ignores a noisy scanner (z SD 1.24 at 4 controls and twice the noise). The
    site's ratio is then pooled over features,
    ``D = sum_g (n_g - 1) delta_hat_g / sum_g (n_g - 1)``, with ``nu = sum_g (n_g - 1) / deff``
    degrees of freedom, where ``deff = sum_gh r_gh^2 / p`` is the design effect of the features'
    correlation ``r`` (controls' residuals; 1 for independent features, ``p`` for identical
    ones), and shrunk towards the pooled scale as a scaled-inverse-chi-square posterior with
    a prior of ``nu0 = min_scale_n - 1`` degrees of freedom centred on 1:
    ``delta_z = (nu0 + nu D) / (nu0 + nu)`` (the same for every feature of the site).

    Parameters
    ----------
    s : ndarray, shape (n, p)
        Controls' standardised residuals (before removing the site location); NaN allowed.
    onehot : ndarray, shape (n, k)
        Site membership of the controls.
    n_site, delta_hat : ndarray, shape (k, p)
        As in :class:`ComBatModel`.
    min_scale_n : int
        Controls from which a site keeps its own ``delta_star``.

    Returns
    -------
    delta_z : ndarray, shape (k, p)
        Variance ratio at the sites with fewer than ``min_scale_n`` controls (NaN at the
        others, which use ``delta_star``). At such a site the posterior of the location
        ``gamma`` and its variance use it too (instead of ``delta = 1``).
    delta_z_df : ndarray, shape (k, p)
        Its degrees of freedom, ``nu0 + nu`` (inf at the other sites).
    """
    k, p = n_site.shape
    delta_z = np.full((k, p), np.nan)
    delta_z_df = np.full((k, p), np.inf)
    # The features' correlation within sites: residuals around each site's own mean.
    ok = np.isfinite(s)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (onehot.T @ np.where(ok, s, 0.0)) / (onehot.T @ ok)
    centred = s - onehot @ np.nan_to_num(means)
    corr = pd.DataFrame(centred).corr(min_periods=3).to_numpy()
    nu0 = float(min_scale_n - 1)
    for i in np.flatnonzero(n_site.max(axis=1) < min_scale_n):
        have = np.flatnonzero((n_site[i] > 1) & np.isfinite(delta_hat[i]))
        dof = n_site[i, have] - 1.0
        if dof.sum() > 0:
            r = corr[np.ix_(have, have)]
            deff = max(float(np.nansum(r**2)) / len(have), 1.0)
            nu = dof.sum() / deff
            pooled = dof @ delta_hat[i, have] / dof.sum()
        else:
            nu, pooled = 0.0, 1.0
        delta_z[i] = (nu0 + nu * pooled) / (nu0 + nu)
        delta_z_df[i] = nu0 + nu
    return delta_z, delta_z_df
