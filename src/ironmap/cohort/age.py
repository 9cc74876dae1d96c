"""Normative ageing of R2* in healthy controls, with site as a fixed effect.

For each region three models of ``R2*(age, site)`` are fitted on controls only (statsmodels
OLS; the exponential one profiles its rate on a grid):

- ``linear``: ``R2* ~ age + C(site)``
- ``quadratic``: ``R2* ~ age + age^2 + C(site)``
- ``exponential``: ``R2* ~ c + a (1 - exp(-b age)) + C(site)`` (Hallgren-Sourander iron curve)

and the one with the smallest 5-fold cross-validated RMSE is kept. Everyone's age-corrected R2*
is then ``observed - predicted(age, site) + predicted(reference_age, reference_site)`` and the
z-score ``(observed - predicted(age, site)) / residual_sd``. A site without controls gets the
control-weighted mean of the site effects (the pooled site term), with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

from ..errors import IronmapWarning

__all__ = ["AGE_MODELS", "NormativeModel", "age_correct", "fit_normative"]

AGE_MODELS = ("linear", "quadratic", "exponential")
_RATES = np.geomspace(0.005, 0.5, 40)  # 1/year, for the exponential model


def _features(kind: str, age: np.ndarray, rate: float | None) -> dict[str, np.ndarray]:
    if kind == "linear":
        return {"age": age}
    if kind == "quadratic":
        return {"age": age, "age2": age**2}
    return {"rise": -np.expm1(-rate * age)}


@dataclass
class NormativeModel:
    """One region's fitted control model.

    Attributes
    ----------
    kind : {"linear", "quadratic", "exponential"}
    params : dict
        ``Intercept`` and feature coefficients (1/s per unit).
    rate : float or None
        ``b`` of the exponential model (1/year).
    site_effects : dict
        Site -> additive effect (1/s) relative to the baseline site (0).
    pooled_site_effect : float
        Control-weighted mean site effect, used for sites without controls.
    residual_sd : float
        SD of the control residuals (1/s), with the model's degrees of freedom.
    n_hc : int
    cv_rmse : dict
        Cross-validated RMSE (1/s) of every candidate.
    """

    kind: str
    params: dict[str, float]
    rate: float | None
    site_effects: dict[str, float]
    pooled_site_effect: float
    residual_sd: float
    n_hc: int
    cv_rmse: dict[str, float] = field(default_factory=dict)

    def predict(self, age, site) -> np.ndarray:
        """Expected control R2* (1/s) at ``age`` (years) and ``site`` (arrays or scalars)."""
        age = np.asarray(age, dtype=np.float64)
        feats = _features(self.kind, age, self.rate)
        value = self.params["Intercept"] + sum(self.params[k] * v for k, v in feats.items())
        sites = np.broadcast_to(np.asarray(site, dtype=object), np.shape(value))
        effect = np.array(
            [self.site_effects.get(s, self.pooled_site_effect) for s in sites.ravel()],
            dtype=np.float64,
        ).reshape(np.shape(value))
        return value + effect


def _fit_one(kind: str, hc: pd.DataFrame, rate: float | None):
    data = pd.DataFrame({"y": hc["y"].to_numpy(), "site": hc["site"].to_numpy()})
    for name, values in _features(kind, hc["age"].to_numpy(float), rate).items():
        data[name] = values
    terms = " + ".join(_features(kind, np.zeros(1), rate))
    formula = f"y ~ {terms}" + (" + C(site)" if data["site"].nunique() > 1 else "")
    return smf.ols(formula, data=data).fit()


def _model_from(kind: str, result, hc: pd.DataFrame, rate: float | None) -> NormativeModel:
    params = {k: float(v) for k, v in result.params.items() if not k.startswith("C(site)")}
    sites = sorted(hc["site"].unique())
    effects = {s: 0.0 for s in sites}
    for key, value in result.params.items():
        if key.startswith("C(site)[T."):
            effects[key[len("C(site)[T.") : -1]] = float(value)
    counts = hc["site"].value_counts()
    pooled = float(sum(effects[s] * counts[s] for s in sites) / counts.sum())
    return NormativeModel(
        kind=kind,
        params=params,
        rate=rate,
        site_effects=effects,
        pooled_site_effect=pooled,
        residual_sd=float(np.sqrt(result.scale)),
        n_hc=len(hc),
    )


def _fit_kind(kind: str, hc: pd.DataFrame) -> NormativeModel:
    if kind != "exponential":
        return _model_from(kind, _fit_one(kind, hc, None), hc, None)
    best = min(_RATES, key=lambda b: _fit_one(kind, hc, b).ssr)
    return _model_from(kind, _fit_one(kind, hc, best), hc, best)


def _cv_rmse(kind: str, hc: pd.DataFrame, *, folds: int = 5, seed: int = 0) -> float:
    order = np.random.default_rng(seed).permutation(len(hc))
    errors = []
    for k in range(folds):
        test = np.zeros(len(hc), dtype=bool)
        test[order[k::folds]] = True
        train = hc[~test]
        if len(train) < 6:
            return np.nan
        model = _fit_kind(kind, train)
        pred = model.predict(hc.loc[test, "age"], hc.loc[test, "site"])
        errors.append(hc.loc[test, "y"].to_numpy() - pred)
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def fit_normative(hc: pd.DataFrame, *, region: str = "") -> NormativeModel:
    """Choose and fit the control model of one region.

    Parameters
    ----------
    hc : pandas.DataFrame
        Controls with columns ``y`` (R2*, 1/s), ``age`` (years) and ``site``.
    """
    hc = hc.dropna(subset=["y", "age", "site"]).reset_index(drop=True)
    if len(hc) < 8:
        raise ValueError(f"{region}: {len(hc)} controls with R2*; need at least 8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cv = {kind: _cv_rmse(kind, hc) for kind in AGE_MODELS}
    finite = {k: v for k, v in cv.items() if np.isfinite(v)}
    kind = min(finite, key=finite.get) if finite else "linear"
    model = _fit_kind(kind, hc)
    model.cv_rmse = cv
    return model


def age_correct(
    data: pd.DataFrame,
    model: NormativeModel,
    *,
    reference_age: float,
    reference_site: str,
    region: str = "",
    warn: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Age/site-corrected R2* and z-scores for ``data`` (columns ``y``, ``age``, ``site``).

    ``warn=False`` leaves the warning about sites without controls to the caller.
    """
    unknown = sorted(set(data["site"].dropna()) - set(model.site_effects))
    if unknown and warn:
        warnings.warn(
            f"{region}: site(s) {', '.join(unknown)} have no controls; their R2* is corrected "
            "with the pooled site term",
            IronmapWarning,
            stacklevel=2,
        )
    expected = model.predict(data["age"].to_numpy(float), data["site"].to_numpy(object))
    residual = data["y"].to_numpy(float) - expected
    reference = float(model.predict(reference_age, reference_site))
    return residual + reference, residual / model.residual_sd
