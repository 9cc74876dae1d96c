"""Fitting one longitudinal mixed model: its design (standardised outcome and time, arms, the
age spline, scanner epochs), MixedLM with its fallbacks, GEE-robust inference and contrasts of
the fixed effects. Moved from :mod:`.longitudinal`, unchanged.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from numpy.typing import NDArray
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .age import spline_basis

__all__ = [
    "AGE_RATE_DF",
    "OUTCOME",
    "scanner_epochs",
]

#: Degrees of freedom of the spline of baseline age that the yearly change follows in the
#: ``time_x_group`` and ``edss_change`` models; fewer with fewer than 15 participants with
#: follow-up per degree of freedom.
AGE_RATE_DF = 3


#: The outcome of the mixed models: R2* without the site's multiplicative offset.
OUTCOME = "r2star_site_adjusted"


#: The fits tried in turn: random part (``~time``: random slope) and optimizers.
_ATTEMPTS = (("~time", ["lbfgs"]), ("~time", ["powell"]), ("1", ["lbfgs", "powell"]))


@dataclass
class _Inference:
    """Fixed effects and their contrasts (what :func:`_combination` needs) from another fit."""

    fe_params: pd.Series
    t_test: object


@contextlib.contextmanager
def _fit_warnings_silenced():
    """statsmodels' convergence, boundary and numerical warnings off: each fit's own flags
    (converged, finite SEs) are checked and reported instead."""
    with warnings.catch_warnings():
        for category in (ConvergenceWarning, RuntimeWarning, UserWarning):
            warnings.simplefilter("ignore", category)
        yield


def _robust(data: pd.DataFrame, formula: str) -> _Inference | None:
    """GEE with exchangeable working correlation (the random-intercept model's marginal form)
    and Mancl-DeRouen bias-reduced sandwich covariance, clustered by participant: valid CIs
    for the fixed effects whatever the participants' slopes do. None when it cannot be fitted.
    """
    import statsmodels.api as sm

    with _fit_warnings_silenced():
        try:
            result = smf.gee(
                formula,
                groups="participant_id",
                data=data,
                cov_struct=sm.cov_struct.Exchangeable(),
            ).fit(cov_type="bias_reduced")
        except (np.linalg.LinAlgError, ValueError):
            return None
    if not np.all(np.isfinite(np.asarray(result.bse, dtype=float))):
        return None
    return _Inference(fe_params=result.params, t_test=result.t_test)


def _fit(data: pd.DataFrame, formula: str):
    """MixedLM, random intercept and slope (random intercept only if that cannot be fitted).

    Returns the result and the random part of the formula (None, "" when nothing fits).
    """
    fallback = None
    for re_formula, method in _ATTEMPTS:
        # a random-slope variance at its boundary (no slope variation) is expected with
        # short follow-up; the fit's own convergence flag is reported
        with _fit_warnings_silenced():
            try:
                model = smf.mixedlm(
                    formula, data, groups=data["participant_id"], re_formula=re_formula
                )
                result = model.fit(reml=True, method=method)
                usable = np.all(np.isfinite(result.bse_fe))  # a singular Hessian gives NaN
            except (np.linalg.LinAlgError, ValueError):
                continue
        if not usable:
            continue
        random = " + (1 + time | participant)" if re_formula == "~time" else " + (1 | participant)"
        if result.converged:
            return result, random
        fallback = fallback or (result, random)
    return fallback if fallback is not None else (None, "")


def _design(part: pd.DataFrame, arms: list[str], term: str):
    """The model's data (standardised), its formula, and the outcome's mean and SD and the
    time's scale (the model sees ``(y - mean) / sd`` and ``time / scale``)."""
    data = part.reset_index(drop=True)
    y = data[OUTCOME]
    y_mean, y_sd = float(y.mean()), float(y.std()) or 1.0
    t_sd = max(float(data["time"].max()), 0.5)  # time in [0, 1]: MixedLM's lbfgs converges
    data = data.assign(y=(y - y_mean) / y_sd, time=data["time"] / t_sd)
    terms = ["time"]
    for k, arm in enumerate(arms[1:], start=1):
        dummy = (data["arm"] == arm).astype(np.float64)
        data[f"a{k}"] = dummy
        data[f"ta{k}"] = dummy * data["time"]
        terms += [f"a{k}", f"ta{k}"]
    if term == "annual_change":
        data["age0"] = (data["age_baseline"] - data["age_baseline"].mean()) / 10.0
        terms.append("age0")
    else:
        followed = data.groupby("participant_id")["time"].transform("size") > 1
        n_followed = data.loc[followed, "participant_id"].nunique()
        df = int(np.clip(n_followed // 15, 1, AGE_RATE_DF))
        ages = data.loc[followed, "age_baseline"].drop_duplicates().to_numpy(np.float64)
        knots = np.quantile(ages, np.linspace(0.0, 1.0, df + 1)) if df > 1 else [0.0, 1.0]
        basis = spline_basis(data["age_baseline"].to_numpy(np.float64), np.asarray(knots))
        for j in range(basis.shape[1]):
            column = basis[:, j] - basis[:, j].mean()
            data[f"b{j + 1}"] = column
            data[f"tb{j + 1}"] = column * data["time"]
            terms += [f"b{j + 1}", f"tb{j + 1}"]
    if term == "edss_change":
        terms += ["edss_change", "edss0"]
    if data["sex"].nunique() > 1:
        terms.append("C(sex)")
    if data["site"].nunique() > 1:
        terms.append("C(site)")
    for k, dummy in enumerate(scanner_epochs(data), start=1):
        data[f"sc{k}"] = dummy
        terms.append(f"sc{k}")
    return data, "y ~ " + " + ".join(terms), (y_mean, y_sd, t_sd)


def scanner_epochs(data: pd.DataFrame) -> list[NDArray[np.float64]]:
    """Indicators of the scanner epochs after the first at each site (session-level effects).

    Parameters
    ----------
    data : pandas.DataFrame
        Session rows with ``site``, ``scanner`` (label or NaN: unknown) and ``time`` (years;
        0 at baseline).

    Returns
    -------
    list of numpy.ndarray, each shape (n_rows,)
        One 0/1 column per scanner of a site other than its reference scanner (the one most
        of its baseline sessions used; ties and sites without a known baseline scanner: the
        label first in sort order among its commonest), sites and labels in sort order;
        sessions of unknown scanner count as the reference. An epoch holding none or all of
        its site's sessions (not separable from the site) is left out.
    """
    if "scanner" not in data.columns or data["scanner"].isna().all():
        return []
    columns = []
    scanner = data["scanner"].astype(object)
    for site in sorted(data["site"].dropna().unique(), key=str):
        at_site = (data["site"] == site).to_numpy()
        known = scanner[at_site].dropna().astype(str)
        if known.nunique() < 2:
            continue
        base = scanner[at_site & (data["time"] == 0).to_numpy()].dropna().astype(str)
        counts = (base if len(base) else known).value_counts()
        reference = sorted(counts.index[counts == counts.max()])[0]
        for label in sorted(set(known) - {reference}):
            dummy = at_site & (scanner == label).to_numpy()
            if 0 < dummy.sum() < at_site.sum():
                columns.append(dummy.astype(np.float64))
    return columns


def _combination(result, weights: dict[str, float], factor: float) -> dict:
    """Estimate, SE, CI and p of a weighted sum of fixed effects, times ``factor``."""
    names = list(result.fe_params.index)
    vector = np.zeros((1, len(names)))
    for name, w in weights.items():
        vector[0, names.index(name)] = w
    with warnings.catch_warnings():  # a usable fit (finite SEs) has a usable contrast
        warnings.simplefilter("ignore", RuntimeWarning)
        test = result.t_test(vector)
    low, high = np.asarray(test.conf_int()).ravel() * factor
    return {
        "estimate": float(np.asarray(test.effect).ravel()[0]) * factor,
        "se": float(np.asarray(test.sd).ravel()[0]) * factor,
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(np.asarray(test.pvalue).ravel()[0]),
    }


def _model_text(formula: str, arms: list[str], random: str) -> str:
    """The formula in words: ``<outcome> ~ time + arm + time:arm + ...``."""
    text = formula.replace("y ~ ", f"{OUTCOME} ~ ")
    arm_terms = " + ".join(f"a{k} + ta{k}" for k in range(1, len(arms)))
    if arm_terms:
        text = text.replace(arm_terms, "arm + time:arm")
    epochs = [name for name in formula.split(" + ") if name.startswith("sc")]
    if epochs:
        text = text.replace(" + ".join(epochs), f"scanner_epoch[{len(epochs)}]")
    splines = " + ".join(f"b{j} + tb{j}" for j in range(1, AGE_RATE_DF + 1))
    for df in range(AGE_RATE_DF, 0, -1):
        spline = " + ".join(splines.split(" + ")[: 2 * df])
        if spline in text:
            text = text.replace(spline, f"ns(age0, df={df}) + time:ns(age0, df={df})")
            break
    return text + random


def _trajectory(result, data, members, weights, scales) -> list[dict]:
    """Mean fixed-effect prediction of ``members`` at baseline and at their last follow-up.

    ``data`` is the model's (standardised) data, ``weights`` the fixed effects whose sum is
    the members' slope, ``scales`` :func:`_design`'s.
    """
    y_mean, y_sd, t_sd = scales
    fe = result.fe_params
    first = members.sort_values("time").drop_duplicates("participant_id")
    exog = pd.DataFrame(
        result.model.exog[data.index.get_indexer(first.index)], columns=result.model.exog_names
    )
    timed = [c for c in exog.columns if c == "time" or (c.startswith("ta") and c[2:].isdigit())]
    exog[timed] = 0.0
    level = float(np.mean(exog.to_numpy() @ fe[exog.columns].to_numpy()))
    slope = sum(w * fe[name] for name, w in weights.items())
    end = float(members["time"].max())
    return [
        {"time_years": t * t_sd, OUTCOME: y_mean + (level + slope * t) * y_sd} for t in (0.0, end)
    ]
