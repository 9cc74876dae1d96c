"""Normative R2*: site harmonisation and age correction against healthy controls.

Per region, on ``log R2*`` (scanner differences in R2* are mostly multiplicative, and a log
makes them additive and the noise comparable across regions and sites):

1. **Age curve** (:mod:`.age_curve`). A quadratic spline of age with 1 to 4 knots (1 = a
   straight line), linear beyond the controls' 5th and 95th age percentiles, non-decreasing
   and concave in the iron-rich nuclei (:data:`~.age_curve.MONOTONE_REGIONS`), plus sex and
   site as fixed effects, fitted on controls; the number of knots with the smallest
   leave-one-out prediction error (PRESS) is kept (free curves: at most one knot per
   :data:`~.age_curve.CONTROLS_PER_KNOT` controls). This is the regression-spline form of
   ComBat-GAM's smooth age term, shape-constrained.
2. **Harmonisation.** ComBat (:mod:`.harmonize`) with that design, fitted on controls and
   applied to everyone: each site's location is removed, with empirical-Bayes pooling
   across regions, so sites with few controls borrow strength. The site's scale is not
   applied to R2* (it would shrink a disease effect at a noisy site with the noise) but
   enters the z-scores (``ComBatModel.delta_z``). A region without controls at a site is
   NaN for that site's participants only, with a warning. Sites without controls
   cannot be harmonised: their participants get NaN and are excluded (the caller records why).
3. **Age correction.** ``r2star_corrected = exp(h - f(age) + f(reference_age))`` where ``h``
   is the harmonised log R2* and ``f`` the controls' age curve: R2* (1/s) as if everyone were
   the controls' median age at the pooled (control-weighted) site.
4. **z-scores** from the prediction interval: ``(h - expected) / sqrt(delta_z) / sqrt(s^2 +
   var(curve) + var(site term))``, with ``delta_z`` the site's residual variance ratio and
   ``s`` the harmonised controls' residual SD (residual degrees of
   freedom counted), the curve's uncertainty at the participant's age and sex, and the
   posterior variance of the site's location. For the controls themselves (in the fit) the
   variances of the fit are subtracted instead of added, so their z-scores are standardised
   residuals. With fewer than ``MIN_RESIDUAL_DF`` residual degrees of freedom z is NaN.

Susceptibility (chi, ppm; :mod:`.measures`) goes through the same steps on chi itself instead
of its log (``fit_normative(..., log=False, measure="chi")``): chi is relative to a reference
region and can be negative, so site effects are additive offsets and ``exp`` is the identity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ..errors import IronmapWarning
from .age_curve import AGE_DF, MONOTONE_REGIONS, AgeCurve, age_limits, fit_age_curve
from .harmonize import ComBatModel, fit_combat

__all__ = [
    "AGE_DF",
    "MIN_CONTROLS",
    "MIN_CONTROLS_PER_SITE",
    "MIN_RESIDUAL_DF",
    "NormativeModel",
    "fit_normative",
    "spline_basis",
    "warn_small_sites",
]

#: Controls with R2* a region needs for a normative model.
MIN_CONTROLS = 8
#: Sites with fewer controls get no per-region scale (a variance from a handful of controls
#: inflates patients' z-scores: SD 1.15 at 6 controls in benchmarks/group_calibration.py) but
#: the site's scale pooled over regions, shrunk towards the pooled scale with a prior of
#: MIN_CONTROLS_PER_SITE - 1 degrees of freedom (harmonize.site_scale_z), with a warning;
#: their location is still estimated, with empirical-Bayes pooling.
MIN_CONTROLS_PER_SITE = 10
#: Residual degrees of freedom below which z-scores are not computed.
MIN_RESIDUAL_DF = 10


def spline_basis(age: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Natural cubic spline basis without intercept (Hastie et al., ESL eq. 5.4-5.5).

    The age curve of ironmap before issue 24 (knots at quantiles of the controls' ages, 1-3
    degrees of freedom by PRESS), kept for the comparison in ``benchmarks/age_curve.py``.

    Parameters
    ----------
    age : ndarray, shape (n,)
        Years.
    knots : ndarray, shape (K,)
        Increasing knots (years), ``K >= 2``; ``K = 2`` gives a straight line.

    Returns
    -------
    ndarray, shape (n, K - 1)
        Linear term (decades) and ``K - 2`` truncated-cubic terms, linear beyond the knots.
    """
    x = np.asarray(age, dtype=np.float64) / 10.0
    xi = np.asarray(knots, dtype=np.float64) / 10.0
    cols = [x]

    def d(k):
        return (np.maximum(x - xi[k], 0) ** 3 - np.maximum(x - xi[-1], 0) ** 3) / (xi[-1] - xi[k])

    for k in range(len(xi) - 2):
        cols.append(d(k) - d(len(xi) - 2))
    return np.column_stack(cols)


@dataclass
class NormativeModel:
    """Controls' normative model of every region (harmonisation + age curve).

    Attributes
    ----------
    regions : tuple of str
        The regions (features), in the order of the ComBat arrays.
    combat : ComBatModel
        Site location/scale on log R2*, fitted on controls.
    curves : dict
        Region -> its :class:`~.age_curve.AgeCurve` (knots, active basis, PRESS of every
        candidate).
    sex_levels : tuple of str
        Sex codes with a coefficient: all but the controls' most common code (the baseline).
    residual_sd : ndarray, shape (p,)
        SD of the harmonised controls' log R2* residuals.
    residual_df : ndarray, shape (p,)
    n_hc : ndarray, shape (p,)
    reference_age : float
        Years; the controls' median age.
    curve : list
        Per region, statsmodels OLS results of harmonised controls on the design (for the
        uncertainty of the expected value).
    age_limits : tuple of float
        The controls' age support (years): minimum, 5th and 95th percentile, maximum.
    log : bool
        The model is on the log of the measure (R2*: positive, multiplicative site effects);
        False: on the measure itself (susceptibility, which can be negative), where every
        "log R2*" of this module reads "chi" and ``exp`` is the identity.
    measure : str
        Prefix of :meth:`transform`'s outputs (``r2star``, ``chi``:
        :data:`ironmap.cohort.measures.MEASURES`).
    """

    regions: tuple[str, ...]
    combat: ComBatModel
    curves: dict[str, AgeCurve]
    sex_levels: tuple[str, ...]
    residual_sd: np.ndarray
    residual_df: np.ndarray
    n_hc: np.ndarray
    reference_age: float
    curve: list
    age_limits: tuple[float, float, float, float]
    log: bool = True
    measure: str = "r2star"

    @property
    def df(self) -> dict[str, int]:
        """Region -> knots of its age curve (1 = a line)."""
        return {region: c.df for region, c in self.curves.items()}

    def design(self, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
        """Per-region covariates, shape (p, n, q): age basis (zero-padded) and sex dummies."""
        return _design(age, sex, self.regions, self.curves, self.sex_levels)

    def _used(self, region: str) -> np.ndarray:
        return _used(self.curves[region], len(self.sex_levels))

    def age_term(self, age: np.ndarray) -> np.ndarray:
        """``f(age)``: the age part of the expected log R2*, shape (n, p)."""
        basis = self.design(np.asarray(age, float), np.full(np.shape(age), None, dtype=object))
        width = max(AGE_DF)
        return np.einsum("gnq,gq->ng", basis[:, :, :width], self.combat.beta[:, :width])

    def reference_log_r2star(self) -> np.ndarray:
        """Expected log R2* of a control at the reference age (baseline sex), shape (p,)."""
        return self.combat.grand_mean + self.age_term(np.array([self.reference_age]))[0]

    def transform(self, y: np.ndarray, age, sex, site, *, is_control) -> dict[str, np.ndarray]:
        """Harmonised, age-corrected R2* and z-scores of participants.

        Parameters
        ----------
        y : ndarray, shape (n, p)
            R2* (1/s) per region, NaN where missing.
        age, sex, site, is_control : array_like, shape (n,)

        Returns
        -------
        dict of ndarray, shape (n, p)
            ``r2star_harmonized`` (1/s, site location removed, age kept),
            ``r2star_corrected`` (1/s, also at the reference age), ``r2star_z`` (against the
            site's own residual scale, :attr:`.ComBatModel.delta_z`).
        """
        age = np.asarray(age, dtype=np.float64)
        design = self.design(age, np.asarray(sex, dtype=object))
        logy = _to_scale(y, log=self.log)
        # Location only: dividing by the site's scale would shrink a disease effect at a noisy
        # site as much as its noise (harmonize.py); the scale goes into z instead.
        h = self.combat.apply(logy, site, design, scale=False)
        idx = self.combat.site_index(site)
        known = idx >= 0
        delta = np.full_like(h, np.nan)
        delta[known] = self.combat.delta_z[idx[known]]
        residual = (h - self.combat.expected(design)) / np.sqrt(delta)
        curve_var = np.column_stack(
            [
                res.get_prediction(
                    sm.add_constant(design[g][:, self._used(region)], has_constant="add")
                ).se_mean
                ** 2
                for g, (region, res) in enumerate(zip(self.regions, self.curve, strict=True))
            ]
        )
        site_var = np.full_like(h, np.nan)
        c = self.combat
        site_var[known] = (c.gamma_var * c.var_pooled)[idx[known]] / delta[known]
        sign = np.where(np.asarray(is_control, dtype=bool), -1.0, 1.0)[:, None]
        variance = self.residual_sd**2 + sign * (curve_var + site_var)
        z = residual / np.sqrt(np.maximum(variance, 0.05 * self.residual_sd**2))
        z[:, self.residual_df < MIN_RESIDUAL_DF] = np.nan
        ref = self.age_term(np.array([self.reference_age]))
        back = np.exp if self.log else np.asarray
        corrected = back(h - self.age_term(age) + ref)
        m = self.measure
        return {f"{m}_harmonized": back(h), f"{m}_corrected": corrected, f"{m}_z": z}


def _to_scale(y: np.ndarray, *, log: bool) -> np.ndarray:
    """The model's scale: log of the positive values (NaN otherwise), or the values."""
    y = np.asarray(y, dtype=np.float64)
    return np.log(np.where(y > 0, y, np.nan)) if log else y


def _sex_dummies(sex: np.ndarray, levels: tuple[str, ...]) -> np.ndarray:
    return (
        np.column_stack([sex == level for level in levels])
        .astype(np.float64)
        .reshape(len(sex), len(levels))
    )


def _design(age, sex, regions, curves, sex_levels) -> np.ndarray:
    """Age basis (inactive columns zero, padded to ``max(AGE_DF)``) and sex dummies."""
    width = max(AGE_DF)
    out = np.zeros((len(regions), len(age), width + len(sex_levels)))
    dummies = _sex_dummies(np.asarray(sex, dtype=object), sex_levels)
    for g, region in enumerate(regions):
        basis = curves[region].basis(age)
        out[g, :, : basis.shape[1]] = basis
        out[g, :, width:] = dummies
    return out


def _used(curve: AgeCurve, n_sex: int) -> np.ndarray:
    """Columns of the padded design that a region's model uses (its active basis and sex)."""
    return np.r_[np.flatnonzero(curve.active), max(AGE_DF) + np.arange(n_sex)].astype(int)


def fit_normative(
    y: np.ndarray,
    *,
    age: np.ndarray,
    sex: np.ndarray,
    site: np.ndarray,
    regions: tuple[str, ...],
    reference_age: float | None = None,
    monotone: tuple[str, ...] = MONOTONE_REGIONS,
    curves: dict[str, AgeCurve] | None = None,
    log: bool = True,
    measure: str = "r2star",
) -> NormativeModel:
    """Fit the controls' normative model of every region.

    Parameters
    ----------
    y : ndarray, shape (n, p)
        Controls' R2* (1/s) per region (NaN where missing); each region needs
        ``MIN_CONTROLS`` values.
    age, sex, site : array_like, shape (n,)
        Years; sex codes (``M``, ``F``, ``O``); site names.
    regions : tuple of str, length p
    reference_age : float, optional
        Age (years) everyone is corrected to; default the controls' median age.
    monotone : tuple of str
        Regions whose age curve is constrained non-decreasing and concave.
    curves : dict, optional
        Region -> age curve to use instead of choosing one (any object with ``basis(age)``,
        ``active`` and ``df``, e.g. another method's, for comparisons in benchmarks).
    log : bool, optional
        Model the log of ``y`` (R2*, default) or ``y`` itself (susceptibility, ppm).
    measure : str, optional
        The measure's name, prefix of :meth:`NormativeModel.transform`'s outputs.

    Raises
    ------
    ValueError
        A region with fewer than ``MIN_CONTROLS`` controls.
    """
    logy = _to_scale(y, log=log)
    age = np.asarray(age, dtype=np.float64)
    sex = np.asarray(sex, dtype=object)
    site = np.asarray(site, dtype=object)
    sexes = pd.Series(sex).value_counts()
    sex_levels = tuple(sorted(sexes.index[1:]))
    dummies = _sex_dummies(sex, sex_levels)
    sites = sorted(set(site))
    onehot = (site[:, None] == np.array(sites, dtype=object)).astype(np.float64)
    given, curves = curves or {}, {}
    for g, region in enumerate(regions):
        ok = np.isfinite(logy[:, g])
        if ok.sum() < MIN_CONTROLS:
            raise ValueError(f"{region}: {ok.sum()} controls with R2*; need {MIN_CONTROLS}")
        here = onehot[ok][:, onehot[ok].any(axis=0)]  # sites with this region's R2*
        curves[region] = given.get(region) or fit_age_curve(
            logy[ok, g], age[ok], np.column_stack([here, dummies[ok]]), monotone=region in monotone
        )
    design = _design(age, sex, regions, curves, sex_levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        combat = fit_combat(
            logy, site, design, min_scale_n=MIN_CONTROLS_PER_SITE, features=regions
        )
    h = combat.apply(logy, site, design)
    curve, sd, rdf, n_hc = [], [], [], []
    for g, region in enumerate(regions):
        ok = np.isfinite(h[:, g])
        used = _used(curves[region], len(sex_levels))
        q = len(used)
        exog = sm.add_constant(design[g][ok][:, used], has_constant="add")
        curve.append(sm.OLS(h[ok, g], exog).fit())
        residual = h[ok, g] - combat.expected(design[:, ok])[:, g]
        dof = ok.sum() - q - len(set(site[ok]))  # sites with this region's R2*
        n_hc.append(int(ok.sum()))
        rdf.append(dof)
        sd.append(np.sqrt(np.sum(residual**2) / dof) if dof > 0 else np.nan)
    return NormativeModel(
        regions=tuple(regions),
        combat=combat,
        curves=curves,
        sex_levels=sex_levels,
        residual_sd=np.array(sd),
        residual_df=np.array(rdf, dtype=np.float64),
        n_hc=np.array(n_hc),
        reference_age=float(np.median(age) if reference_age is None else reference_age),
        curve=curve,
        age_limits=age_limits(age),
        log=log,
        measure=measure,
    )


def warn_small_sites(model: NormativeModel) -> None:
    """Warn about sites with fewer than ``MIN_CONTROLS_PER_SITE`` controls, and regions whose
    residual degrees of freedom are too few for z-scores."""
    thin = [
        r for r, d in zip(model.regions, model.residual_df, strict=True) if d < MIN_RESIDUAL_DF
    ]
    if thin:
        warnings.warn(
            f"{', '.join(thin)}: fewer than {MIN_RESIDUAL_DF} residual degrees of freedom in the "
            "control model (too few controls for the sites and covariates); z-scores are NaN",
            IronmapWarning,
            stacklevel=2,
        )
    counts = dict(zip(model.combat.sites, model.combat.n_site.max(axis=1), strict=True))
    small = {s: int(n) for s, n in counts.items() if n < MIN_CONTROLS_PER_SITE}
    if small:
        listed = ", ".join(f"{s} ({n})" for s, n in sorted(small.items()))
        warnings.warn(
            f"site(s) with fewer than {MIN_CONTROLS_PER_SITE} controls: {listed}; their scale is "
            "pooled over regions and shrunk towards the pooled scale, their location estimated "
            "with empirical-Bayes pooling",
            IronmapWarning,
            stacklevel=2,
        )
