"""Lesions one by one across the cohort: ``group/lesion_models.tsv``.

The per-lesion rows of every MS participant (``sub-*_lesions.tsv``, baseline session) are
modelled with lesions nested in participants: a linear mixed model with a random intercept
per participant (statsmodels MixedLM, REML), so that a participant with many lesions does not
count as many independent observations. Two outcomes:

- ``lesion_r2star_pct``: the median R2* of the lesion's **core** (its R2* voxels less the rim
  band of :data:`ironmap.regions.lesions.RIM_VOXELS` voxel along its edge, ``r2star_core_median``)
  relative to the participant's NAWM, ``100 (R2*_core / R2*_NAWM - 1)`` (%): the ratio removes
  site and field-strength scaling; the core leaves out the edge voxels, which mix lesion with
  NAWM (partial volume) and hold the paramagnetic rim, so that the whole-lesion median rises
  with the rim's share and with volume. Lesions without a core (``n_core`` 0: too small to
  erode) have no rim-free value and leave this model (counted in ``note``); the rim is
  reported apart:
- ``rim_core_r2star``: the rim-core contrast (1/s), high in paramagnetic rim lesions (lesions
  with a core only).

Fixed effects: ``log2_volume`` (log2 of the lesion volume in mL, centred at the cohort median:
the estimate is the change per doubling of volume), ``disease_duration`` (years) and, when the
lesion rows carry a ``location`` (``periventricular`` / ``deep_white_matter``,
:func:`ironmap.regions.lesions.lesion_table`) with at least two locations of
:data:`MIN_LOCATION_LESIONS` lesions or more among the lesions of an outcome, ``location`` as a
categorical covariate against :data:`LOCATION_REFERENCE` (term ``location[periventricular]``:
periventricular minus deep white-matter lesions). Lesions of that outcome without a location or
of a rarer location then drop out of its model (counted in ``note``); with one location, or no
column, the model has no location term. Covariates as in the cross-sectional models: ``age``
(years, centred at the cohort mean, so the intercept stays at the mean age), ``C(sex)`` and
``C(site)`` when they take two or more values among the outcome's participants (participants
without them leave the model).

**Convergence and the boundary.** The REML fit is run with each of :data:`OPTIMIZERS` (the
last only when the others give no usable fit; one may stop at the boundary where another
finds the maximum: L-BFGS alone does on raw percentages) and the usable fit with the highest
REML log-likelihood is kept (``optimizer`` names it). A fit is usable when it converged, its
fixed-effect standard errors are finite and the Hessian of the REML log-likelihood is negative
definite. When the participant variance
ends on its boundary (0: the lesions of a participant are no more alike than those of
different participants) the mixed model reduces to ordinary least squares, which is fitted
instead with standard errors clustered by participant (t with participants - 1 degrees of
freedom; ``model`` and ``note`` say so). When no optimizer gives a usable fit, the outcome's
rows keep the counts, ``converged`` False and NaN estimates, with the reason in ``note``:
never a number from a failed fit.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf

__all__ = [
    "LESION_MODEL_COLUMNS",
    "LOCATION_REFERENCE",
    "MIN_LESIONS",
    "MIN_LOCATION_LESIONS",
    "MIN_PARTICIPANTS",
    "OPTIMIZERS",
    "lesion_models",
    "lesion_outcomes",
]

#: Fewest lesions and participants a model is fitted on.
MIN_LESIONS = 20
MIN_PARTICIPANTS = 5
#: Fewest lesions of a location for it to be a level of ``location``.
MIN_LOCATION_LESIONS = 10
#: The level ``location`` terms are measured against (when present; else the commonest).
LOCATION_REFERENCE = "deep_white_matter"

#: Columns of ``group/lesion_models.tsv``.
LESION_MODEL_COLUMNS = (
    "outcome",
    "term",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "n_lesions",
    "n_participants",
    "participant_sd",
    "converged",
    "model",
    "note",
    "optimizer",
)
#: Optimizers of the REML fit, tried in turn until one converges (statsmodels names).
OPTIMIZERS = ("lbfgs", "powell", "nm")
#: Participant variance below this share of the residual variance counts as on the boundary.
BOUNDARY_SHARE = 1e-6

_OUTCOMES = {
    "lesion_r2star_pct": "100 (lesion core median R2* / NAWM median R2* - 1)",
    "rim_core_r2star": "rim minus core median R2* (1/s)",
}


_NUMERIC = (
    "volume_ml",
    "r2star_median",
    "r2star_core_median",
    "r2star_nawm_median",
    "r2star_rim_core_diff",
)
#: Participant covariates of the models (when present and varying).
_COVARIATES = ("age", "sex", "site")


def lesion_outcomes(lesions: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """The lesion rows the models see, with their outcomes and covariates.

    Parameters
    ----------
    lesions, participants : pandas.DataFrame
        As for :func:`lesion_models`.

    Returns
    -------
    pandas.DataFrame
        The lesion rows of participants with a disease duration and lesions of positive
        volume, numbers as floats, plus ``disease_duration`` (years), ``age`` (years, centred
        at the mean; NaN without one), ``sex`` and ``site`` (where ``participants`` has
        them), ``log2_volume`` (log2 mL, centred at the median), ``lesion_r2star_pct`` (%, the
        core: NaN for lesions without one), ``lesion_whole_r2star_pct`` (%, the whole lesion,
        rim included: for comparison) and ``rim_core_r2star`` (1/s).
    """
    columns = ["participant_id", "disease_duration"]
    columns += [c for c in _COVARIATES if c in participants.columns]
    people = participants[columns].copy()
    # tables read back from TSV hold n/a: numbers may arrive as objects
    people["disease_duration"] = pd.to_numeric(people["disease_duration"], errors="coerce")
    if "age" in people:
        people["age"] = pd.to_numeric(people["age"], errors="coerce")
    lesions = lesions.copy()
    for column in _NUMERIC:
        if column not in lesions:
            lesions[column] = np.nan
        lesions[column] = pd.to_numeric(lesions[column], errors="coerce")
    data = lesions.drop(columns=[c for c in _COVARIATES if c in lesions.columns]).merge(
        people, on="participant_id", how="inner"
    )
    data = data[(data["volume_ml"] > 0) & np.isfinite(data["disease_duration"])].copy()
    log_volume = np.log2(data["volume_ml"].astype(float))
    data["log2_volume"] = log_volume - (np.median(log_volume) if len(data) else 0.0)
    if "age" in data:
        data["age"] = data["age"] - data["age"].mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        data["lesion_r2star_pct"] = 100.0 * (
            data["r2star_core_median"] / data["r2star_nawm_median"] - 1.0
        )
        data["lesion_whole_r2star_pct"] = 100.0 * (
            data["r2star_median"] / data["r2star_nawm_median"] - 1.0
        )
    data["rim_core_r2star"] = data["r2star_rim_core_diff"]
    return data


def _covariate_terms(part: pd.DataFrame) -> list[str]:
    """Formula terms of the participant covariates that are present and vary in ``part``."""
    terms = []
    if "age" in part and part["age"].notna().all() and part["age"].nunique() > 1:
        terms.append("age")
    for name in ("sex", "site"):
        if name in part and part[name].notna().all() and part[name].nunique() > 1:
            terms.append(f"C({name})")
    return terms


def _mixed_fit(formula: str, part: pd.DataFrame):
    """The best usable REML fit over :data:`OPTIMIZERS`.

    Every optimizer but the last is tried, the last (Nelder-Mead, slow) only when none of the
    others gave a usable fit (one may stop at the boundary where another finds the maximum:
    L-BFGS on raw percentages does); of the usable fits (converged, finite fixed-effect
    standard errors, positive definite Hessian) the one with the highest REML log-likelihood
    is kept. Returns ``(result, optimizer, why)``: ``result`` None when no fit was usable
    (``why`` says what failed); ``why`` is ``"boundary"`` when the participant variance of the
    kept fit is on its boundary.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    best, failures = None, {}
    for optimizer in OPTIMIZERS:
        if optimizer == OPTIMIZERS[-1] and best is not None:
            break  # the last (slow) optimizer only when the others gave nothing usable
        with warnings.catch_warnings():
            # failures are judged below from the result itself
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                model = smf.mixedlm(formula, part, groups=part["participant_id"])
                result = model.fit(reml=True, method=[optimizer])
                hessian, singular = model.hessian(result.params_object)
                bse = np.asarray(result.bse_fe, dtype=float)  # NaN (warned) when singular
            except (np.linalg.LinAlgError, ValueError) as error:
                failures[optimizer] = f"failed ({error})"
                continue
        if not result.converged:
            failures[optimizer] = "did not converge"
            continue
        if not np.isfinite(result.llf) or not np.isfinite(result.scale):
            failures[optimizer] = "stopped at a non-finite likelihood"
            continue
        if not np.all(np.isfinite(bse)):
            failures[optimizer] = "singular (standard errors not finite)"
            continue
        boundary = float(result.cov_re.iloc[0, 0]) <= BOUNDARY_SHARE * float(result.scale)
        if not boundary and (singular or np.any(np.linalg.eigvalsh(-hessian) <= 0)):
            failures[optimizer] = "Hessian not positive definite"
            continue
        if best is None or result.llf > best[0].llf:
            best = (result, optimizer, "boundary" if boundary else "")
    if best is not None:
        return best
    reasons = sorted(set(failures.values()))
    if reasons == ["did not converge"]:
        return None, "", f"the fit did not converge ({', '.join(OPTIMIZERS)} tried)"
    listed = ", ".join(f"{o}: {why}" for o, why in failures.items())
    return None, "", f"no usable fit ({listed})"


def lesion_models(lesions: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """Mixed models of lesion R2* on volume, disease duration (and location), adjusted for age,
    sex and site.

    Parameters
    ----------
    lesions : pandas.DataFrame
        The rows of the participants' ``_lesions.tsv`` (columns of
        :data:`ironmap.regions.lesions.LESION_COLUMNS`; an optional ``location`` column).
    participants : pandas.DataFrame
        ``participant_id`` and ``disease_duration`` (years; NaN for controls, who drop out);
        ``age`` (years), ``sex`` and ``site`` when present are covariates.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LESION_MODEL_COLUMNS`, one row per outcome and fixed effect
        (``Intercept`` included; ``age``, ``C(sex)[T..]``, ``C(site)[T..]`` too). An outcome
        with fewer than :data:`MIN_LESIONS` lesions or :data:`MIN_PARTICIPANTS` participants
        gets one row with the reason in ``note``; one whose fit is unusable (see the module
        docstring) keeps its rows with NaN estimates and the reason in ``note``.
    """
    data = lesion_outcomes(lesions, participants)
    rows = []
    for outcome in _OUTCOMES:
        part = data[np.isfinite(data[outcome])]
        notes = []
        if outcome == "lesion_r2star_pct":
            no_core = int((data[outcome].isna() & data["lesion_whole_r2star_pct"].notna()).sum())
            if no_core:
                notes.append(f"{no_core} lesion(s) without a core (rim only) left out")
        terms = ["log2_volume", "disease_duration"]
        location = _location_term(part)
        if location is not None:
            term, levels = location
            kept = part["location"].isin(levels)
            if not kept.all():
                notes.append(
                    f"{int((~kept).sum())} lesion(s) without a location or of a location with "
                    f"fewer than {MIN_LOCATION_LESIONS} lesions left out"
                )
            part = part[kept]
            terms.append(term)
        covariates = [c for c in _COVARIATES if c in part]
        missing = part[covariates].isna().any(axis=1) if covariates else None
        if missing is not None and missing.any():
            notes.append(
                f"{part.loc[missing, 'participant_id'].nunique()} participant(s) without "
                f"{'/'.join(covariates)} left out"
            )
            part = part[~missing]
        terms += _covariate_terms(part)
        n, k = len(part), part["participant_id"].nunique()
        formula = f"{outcome} ~ " + " + ".join(terms)
        model = formula + " + (1 | participant)"
        base = {"outcome": outcome, "n_lesions": n, "n_participants": k, "model": model}
        if n < MIN_LESIONS or k < MIN_PARTICIPANTS:
            notes.append(
                f"too few lesions ({n}) or participants ({k}) with this outcome; "
                f"needs {MIN_LESIONS} and {MIN_PARTICIPANTS}"
            )
            rows.append({**base, "note": "; ".join(notes)})
            continue
        part = part.reset_index(drop=True)
        result, optimizer, why = _mixed_fit(formula, part)
        if result is None:
            names = smf.ols(formula, part).fit().params.index  # the terms, for the rows
            notes.append(f"not estimated: {why}")
            for term in names:
                rows.append(
                    {
                        **base,
                        "term": _term_name(term),
                        "converged": False,
                        "note": "; ".join(notes),
                        "optimizer": "",
                    }
                )
            continue
        if why == "boundary":
            # no participant variance: the mixed model is OLS; lesions of a participant are
            # still not independent draws, hence participant-clustered standard errors
            groups = pd.factorize(part["participant_id"])[0]
            result = smf.ols(formula, part).fit(
                cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
            )
            params, ci, p, sd = result.params, result.conf_int(), result.pvalues, 0.0
            model = formula + " (OLS, participant-clustered SE)"
            notes.append(
                "participant variance on its boundary (0): ordinary least squares with "
                f"participant-clustered standard errors (t, {k - 1} df)"
            )
        else:
            params = result.fe_params
            with warnings.catch_warnings():  # the variance parameters' SE may be NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                ci, p = result.conf_int(), result.pvalues
            sd = float(np.sqrt(max(result.cov_re.iloc[0, 0], 0.0)))
        for term in params.index:
            rows.append(
                {
                    **base,
                    "term": _term_name(term),
                    "estimate": float(params[term]),
                    "ci_low": float(ci.loc[term, 0]),
                    "ci_high": float(ci.loc[term, 1]),
                    "p": float(p[term]),
                    "participant_sd": sd,
                    "converged": True,
                    "model": model,
                    "note": "; ".join(notes),
                    "optimizer": optimizer,
                }
            )
    table = pd.DataFrame(rows).reindex(columns=LESION_MODEL_COLUMNS)
    table["note"] = table["note"].fillna("")
    return table


def _location_term(part: pd.DataFrame) -> tuple[str, list[str]] | None:
    """The formula term of ``location`` and the levels it keeps (those with at least
    :data:`MIN_LOCATION_LESIONS` lesions), or None without two such levels."""
    if "location" not in part:
        return None
    counts = part["location"].dropna().astype(str).value_counts()
    levels = sorted(counts.index[counts >= MIN_LOCATION_LESIONS])
    if len(levels) < 2:
        return None
    reference = LOCATION_REFERENCE if LOCATION_REFERENCE in levels else counts[levels].idxmax()
    return f"C(location, Treatment({reference!r}))", levels


def _term_name(term: str) -> str:
    """``C(location, Treatment('x'))[T.periventricular]`` -> ``location[periventricular]``."""
    if term.startswith("C(location, Treatment("):
        return "location[" + term.split("[T.", 1)[1]
    return term
