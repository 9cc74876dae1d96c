"""Lesions one by one across the cohort: ``group/lesion_models.tsv``.

The per-lesion rows of every MS participant (``sub-*_lesions.tsv``, baseline session) are
modelled with lesions nested in participants: a linear mixed model with a random intercept
per participant (statsmodels MixedLM, REML), so that a participant with many lesions does not
count as many independent observations. Two outcomes:

- ``lesion_r2star_pct``: the lesion's median R2* relative to the participant's NAWM,
  ``100 (R2*_lesion / R2*_NAWM - 1)`` (%): the ratio removes site and field-strength scaling;
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
column, the model has no location term.
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
)

_OUTCOMES = {
    "lesion_r2star_pct": "100 (lesion median R2* / NAWM median R2* - 1)",
    "rim_core_r2star": "rim minus core median R2* (1/s)",
}


_NUMERIC = ("volume_ml", "r2star_median", "r2star_nawm_median", "r2star_rim_core_diff")


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
        volume, numbers as floats, plus ``disease_duration`` (years), ``log2_volume`` (log2 mL,
        centred at the median), ``lesion_r2star_pct`` (%) and ``rim_core_r2star`` (1/s).
    """
    people = participants[["participant_id", "disease_duration"]].copy()
    # tables read back from TSV hold n/a: numbers may arrive as objects
    people["disease_duration"] = pd.to_numeric(people["disease_duration"], errors="coerce")
    lesions = lesions.copy()
    for column in _NUMERIC:
        lesions[column] = pd.to_numeric(lesions[column], errors="coerce")
    data = lesions.merge(people, on="participant_id", how="inner")
    data = data[(data["volume_ml"] > 0) & np.isfinite(data["disease_duration"])].copy()
    log_volume = np.log2(data["volume_ml"].astype(float))
    data["log2_volume"] = log_volume - (np.median(log_volume) if len(data) else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        data["lesion_r2star_pct"] = 100.0 * (
            data["r2star_median"] / data["r2star_nawm_median"] - 1.0
        )
    data["rim_core_r2star"] = data["r2star_rim_core_diff"]
    return data


def lesion_models(lesions: pd.DataFrame, participants: pd.DataFrame) -> pd.DataFrame:
    """Mixed models of lesion R2* on volume, disease duration (and location).

    Parameters
    ----------
    lesions : pandas.DataFrame
        The rows of the participants' ``_lesions.tsv`` (columns of
        :data:`ironmap.regions.lesions.LESION_COLUMNS`; an optional ``location`` column).
    participants : pandas.DataFrame
        ``participant_id`` and ``disease_duration`` (years; NaN for controls, who drop out).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LESION_MODEL_COLUMNS`, one row per outcome and fixed effect
        (``Intercept`` included). An outcome with fewer than :data:`MIN_LESIONS` lesions or
        :data:`MIN_PARTICIPANTS` participants gets one row with the reason in ``note``.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data = lesion_outcomes(lesions, participants)
    rows = []
    for outcome in _OUTCOMES:
        part = data[np.isfinite(data[outcome])]
        terms, note = ["log2_volume", "disease_duration"], ""
        location = _location_term(part)
        if location is not None:
            term, levels = location
            kept = part["location"].isin(levels)
            if not kept.all():
                note = (
                    f"{int((~kept).sum())} lesion(s) without a location or of a location with "
                    f"fewer than {MIN_LOCATION_LESIONS} lesions left out"
                )
            part = part[kept]
            terms.append(term)
        n, k = len(part), part["participant_id"].nunique()
        formula = f"{outcome} ~ " + " + ".join(terms)
        model = formula + " + (1 | participant)"
        if n < MIN_LESIONS or k < MIN_PARTICIPANTS:
            rows.append(
                {
                    "outcome": outcome,
                    "n_lesions": n,
                    "n_participants": k,
                    "model": model,
                    "note": f"too few lesions ({n}) or participants ({k}) with this outcome; "
                    f"needs {MIN_LESIONS} and {MIN_PARTICIPANTS}",
                }
            )
            continue
        with warnings.catch_warnings():
            # a participant variance at its boundary (0) is possible; the fit's own
            # convergence flag is reported
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            result = smf.mixedlm(formula, part, groups=part["participant_id"]).fit(reml=True)
        ci = result.conf_int()
        for term in result.fe_params.index:
            rows.append(
                {
                    "outcome": outcome,
                    "term": _term_name(term),
                    "estimate": float(result.fe_params[term]),
                    "ci_low": float(ci.loc[term, 0]),
                    "ci_high": float(ci.loc[term, 1]),
                    "p": float(result.pvalues[term]),
                    "n_lesions": n,
                    "n_participants": k,
                    "participant_sd": float(np.sqrt(max(result.cov_re.iloc[0, 0], 0.0))),
                    "converged": bool(result.converged),
                    "model": model,
                    "note": note,
                }
            )
    return pd.DataFrame(rows).reindex(columns=LESION_MODEL_COLUMNS)


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
