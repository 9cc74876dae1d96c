"""Longitudinal analysis: how R2* changes over time, by group and with disability.

For participants scanned more than once (``ses-*``, timed by ``sub-<label>_sessions.tsv``,
:mod:`.sessions`), per region (deep grey matter and NAWM):

1. **Site harmonisation with the cross-sectional model.** The controls' normative model of the
   baseline sessions (:mod:`.age`: ComBat on log R2*) gives every session, at its own age,
   ``r2star_harmonized`` (site location and scale removed, as ``group/regions.tsv``) and
   ``r2star_site_adjusted``: R2* divided by the site's multiplicative offset (ComBat's
   location) only. The models fit the latter. ComBat's scale is the ratio of a site's
   between-participant variance to the pooled one, estimated from some ten controls per
   site; applied to repeated scans it rescales each participant's change by that noisy
   factor, an error the models' CIs do not carry (``benchmarks/longitudinal.py``: coverage of
   the yearly change of MS 0.82-0.85 in caudate and red nucleus with it, 0.88 without).
   A participant's site is constant, so the location alone removes the scanner from the
   change in 1/s.
2. **Linear mixed models** of ``r2star_site_adjusted`` (statsmodels MixedLM, REML) with a
   random intercept and a random slope on time per participant, on the time since baseline
   ``t`` (years), with ``arm`` HC, RRMS, SPMS, PPMS, CIS or MS without a recorded phenotype,
   and baseline age, sex and site as in the cross-sectional comparisons:

   - ``annual_change``: ``y ~ t + arm + t:arm + age0 + C(sex) + C(site) + (1 + t | id)``.
     Each arm's mean yearly change at its participants' own ages (1/s per year): normal
     ageing in controls, ageing and disease in patients. ``MS``: the clinically definite
     phenotypes (RRMS, SPMS, PPMS, MS without phenotype; CIS not pooled in, as in ``MS-HC``)
     averaged with weights proportional to their participants with follow-up.
   - ``time_x_group``: the same with the yearly change a smooth function of baseline age,
     ``+ t:ns(age0) + ns(age0)`` (natural cubic spline, :data:`AGE_RATE_DF` degrees of
     freedom, shared by the arms): each arm's yearly change minus the controls' at equal
     age. Normal ageing of R2* is fast in youth and slow later (the simulated pallidum rises
     0.37 1/s per year at 18, 0.05 at 40), so an arm younger than the controls rises faster
     without any disease, and a single slope per arm would credit age to disease.
   - ``edss_change``: clinically definite MS with an EDSS at baseline and a follow-up, the
     ``time_x_group`` model with ``+ edss_change + edss0``, ``edss_change`` the EDSS of the
     session minus the baseline EDSS and ``edss0`` the baseline EDSS: the change of R2* (1/s)
     per EDSS point gained, over and above the yearly change.

Participants with one session (or whose later sessions cannot be timed) stay in the models
with their baseline: they inform the intercepts, not the slopes; ``n_longitudinal`` counts
those with two or more sessions. An arm needs :data:`MIN_LONGITUDINAL` participants with two
or more sessions, else it is left out of the models (named in ``note``). Wald 95 % CIs and
p-values (normal); ``p_fdr`` is Benjamini-Hochberg across regions within each term and arm.
Sums of coefficients (an arm's slope, the pooled MS) are statsmodels ``t_test`` contrasts. The
models are fitted on standardised outcome and time (MixedLM's optimiser often stops early on
raw 1/s and years) and reported in 1/s and years.

By job: :mod:`.longitudinal_sessions` (the harmonised sessions), :mod:`.longitudinal_fit`
(one model's design and fit); their public names are re-exported here.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..defaults import MIN_VOXELS
from ..errors import IronmapWarning
from .age import NormativeModel
from .compare import group_label
from .longitudinal_fit import (
    AGE_RATE_DF,
    OUTCOME,
    _combination,
    _design,
    _fit,
    _model_text,
    _robust,
    _trajectory,
    scanner_epochs,
)
from .longitudinal_sessions import (
    SESSION_VALUE_COLUMNS,
    _keys,
    _small_sessions,
    harmonise_sessions,
)
from .stats import fdr

__all__ = [
    "AGE_RATE_DF",
    "LONGITUDINAL_COLUMNS",
    "MIN_LONGITUDINAL",
    "OUTCOME",
    "RANDOM_INTERCEPT",
    "RANDOM_SLOPE",
    "ROBUST_FALLBACK",
    "SESSION_VALUE_COLUMNS",
    "TERMS",
    "LongitudinalAnalysis",
    "analyse_longitudinal",
    "fit_longitudinal",
    "harmonise_sessions",
    "scanner_epochs",
]

#: Participants with two or more timed sessions an arm needs.
MIN_LONGITUDINAL = 3


#: Terms of ``group/longitudinal.tsv``.
TERMS = ("annual_change", "time_x_group", "edss_change")
#: Arms of the models, in table order; ``MS-unspecified``: MS without a recorded phenotype
#: (in the pooled MS only).
_ARMS = ("HC", "RRMS", "SPMS", "PPMS", "MS-unspecified", "CIS")
_POOLED = ("RRMS", "SPMS", "PPMS", "MS-unspecified")
#: Columns of ``group/longitudinal.tsv``.
LONGITUDINAL_COLUMNS = [
    "region",
    "term",
    "arm",
    "estimate",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "units",
    "se",
    "n_participants",
    "n_longitudinal",
    "n_sessions",
    "followup_years",
    "slope_sd",
    "residual_sd",
    "converged",
    "model",
    "note",
    "random_effects",
    "fallback",
    "scanner_terms",
]


#: ``random_effects`` of a model with a random slope on time, and of its fallback.
RANDOM_SLOPE, RANDOM_INTERCEPT = "intercept + slope", "intercept"


_PER_YEAR = "1/s per year"
_PER_EDSS = "1/s per EDSS point"


@dataclass
class LongitudinalAnalysis:
    """The longitudinal tables and what the report draws.

    Attributes
    ----------
    table : pandas.DataFrame
        ``group/longitudinal.tsv`` (:data:`LONGITUDINAL_COLUMNS`).
    values : pandas.DataFrame
        ``group/longitudinal_sessions.tsv`` (:data:`SESSION_VALUE_COLUMNS`): every analysed
        session's R2*, harmonised and site-adjusted R2*.
    trajectories : pandas.DataFrame
        Fitted mean trajectory of each arm of the ``annual_change`` model: ``region, arm,
        time_years, r2star_site_adjusted`` (1/s; mean over the arm's participants of the
        fixed-effect prediction) at baseline and at the arm's longest follow-up.
    untimed : dict
        ``participant_id`` -> why its later sessions were left out.
    reason : str
        Why no longitudinal model was fitted ('' when one was), in words for the report and
        ``group/provenance.json``.
    """

    table: pd.DataFrame
    values: pd.DataFrame
    trajectories: pd.DataFrame = field(default_factory=pd.DataFrame)
    untimed: dict[str, str] = field(default_factory=dict)
    reason: str = ""


#: Whether a random-intercept fallback's inference comes from GEE with participant-clustered
#: (sandwich, bias-reduced) standard errors (:func:`_robust`) rather than the model's own.
ROBUST_FALLBACK = True


def _counts(part: pd.DataFrame) -> dict:
    """Participants, those with follow-up, sessions and median follow-up (years) of ``part``."""
    times = part.groupby("participant_id")["time_years"]
    followup = times.max()[times.size() > 1]
    return {
        "n_participants": int(part["participant_id"].nunique()),
        "n_longitudinal": len(followup),
        "n_sessions": len(part),
        "followup_years": float(followup.median()) if len(followup) else np.nan,
    }


def _arms_of(part: pd.DataFrame, arms: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Arms with enough participants with 2+ sessions, and the others present (in order)."""
    sizes = part.groupby("participant_id")["time"].size()
    longitudinal = part[part["participant_id"].isin(sizes.index[sizes > 1])]
    counts = longitudinal.drop_duplicates("participant_id")["arm"].value_counts()
    present = [a for a in arms if a in set(part["arm"])]
    kept = [a for a in present if counts.get(a, 0) >= MIN_LONGITUDINAL]
    return kept, [a for a in present if a not in kept]


def _left_out(dropped: list[str]) -> str:
    if not dropped:
        return ""
    return f"left out (fewer than {MIN_LONGITUDINAL} participants with follow-up): " + ", ".join(
        dropped
    )


def _pooled(arms: list[str], counts: dict[str, dict], offset: bool) -> dict[str, float]:
    """Weights of the pooled MS: its phenotypes' coefficients by participants with follow-up."""
    members = [a for a in arms if a in _POOLED]
    total = sum(counts[a]["n_longitudinal"] for a in members)
    weights: dict[str, float] = {}
    for a in members:
        w = counts[a]["n_longitudinal"] / total
        k = arms.index(a)
        if offset:
            weights["time"] = weights.get("time", 0.0) + w
        if k:
            weights[f"ta{k}"] = w
    return weights


def _model_rows(region: str, term: str, part: pd.DataFrame):
    """Rows (and, for ``annual_change``, trajectories) of one region and term."""
    edss = term == "edss_change"
    arms, dropped = _arms_of(part, ("MS",) if edss else _ARMS)
    if not arms or (term == "time_x_group" and (arms[0] != "HC" or len(arms) < 2)):
        return [], []
    if edss and part["edss_change"].abs().max() == 0:
        return [], []  # nobody's EDSS changed: its coefficient is not identifiable
    data, formula, scales = _design(part[part["arm"].isin(arms)], arms, term)
    _, y_sd, t_sd = scales
    result, random = _fit(data, formula)
    base = {"region": region, "term": term}
    if result is None:
        note = "the mixed model could not be fitted (singular design)"
        return [{**base, "arm": a, "note": note} for a in arms], []
    notes = [_left_out(dropped)]
    fallback = random == " + (1 | participant)"
    inference = result
    if fallback:
        robust = _robust(data, formula) if ROBUST_FALLBACK else None
        if robust is not None:
            inference = robust
            notes.append(
                "random slope dropped: the fit was singular; estimates and CIs from GEE "
                "(exchangeable correlation) with participant-clustered bias-reduced sandwich "
                "standard errors, valid if yearly changes vary between participants"
            )
        else:
            notes.append(
                "random slope dropped: the fit was singular; a random-intercept model's CIs "
                "are too narrow if yearly changes vary between participants"
            )
    if not result.converged:
        notes.append("the fit did not converge (lbfgs and powell tried): not marked significant")
    n_epochs = sum(name.startswith("sc") for name in result.fe_params.index)
    slope_var = result.cov_re.loc["time", "time"] if "time" in result.cov_re.columns else 0.0
    fit = {
        **base,
        "slope_sd": float(np.sqrt(max(slope_var, 0.0))) * y_sd / t_sd,
        "residual_sd": float(np.sqrt(result.scale)) * y_sd,
        "converged": bool(result.converged),
        "model": _model_text(formula, arms, random)
        + (" [GEE, robust SE]" if inference is not result else ""),
        "note": "; ".join(n for n in notes if n),
        "random_effects": RANDOM_INTERCEPT if fallback else RANDOM_SLOPE,
        "fallback": fallback,
        "scanner_terms": n_epochs,
    }
    per_year = y_sd / t_sd
    counts = {a: _counts(data[data["arm"] == a]) for a in arms}
    pooled = [a for a in arms if a in _POOLED]
    rows, lines = [], []
    if edss:
        rows.append(
            {
                **fit,
                "arm": "MS",
                "units": _PER_EDSS,
                **_combination(inference, {"edss_change": 1.0}, y_sd),
                **_counts(data),
            }
        )
        return rows, lines
    ms_part = data[data["arm"].isin(pooled)]
    for arm in [a for a in arms if a != "MS-unspecified"] + (["MS"] if pooled else []):
        if term == "time_x_group" and arm == "HC":
            continue
        if arm == "MS":
            weights = _pooled(arms, counts, offset=term == "annual_change")
            arm_counts = _counts(ms_part)
        else:
            k = arms.index(arm)
            weights = {} if k == 0 else {f"ta{k}": 1.0}
            if term == "annual_change":
                weights["time"] = 1.0
            arm_counts = counts[arm]
        label = arm if term == "annual_change" else f"{arm}-HC"
        if term == "time_x_group":
            arm_counts = _counts(
                data[data["arm"].isin(["HC", *(pooled if arm == "MS" else [arm])])]
            )
        rows.append(
            {
                **fit,
                "arm": label,
                "units": _PER_YEAR,
                **_combination(inference, weights, per_year),
                **arm_counts,
            }
        )
        if term == "annual_change":
            members = ms_part if arm == "MS" else data[data["arm"] == arm]
            for point in _trajectory(result, data, members, weights, scales):
                lines.append({"region": region, "arm": arm, **point})
    return rows, lines


def fit_longitudinal(
    values: pd.DataFrame, subjects: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The mixed models of every region and term.

    Parameters
    ----------
    values : pandas.DataFrame
        :func:`harmonise_sessions` rows.
    subjects : pandas.DataFrame
        ``participant_id, group, phenotype, age, sex, site`` (age at baseline, years).

    Returns
    -------
    table : pandas.DataFrame
        ``group/longitudinal.tsv`` rows (:data:`LONGITUDINAL_COLUMNS`).
    trajectories : pandas.DataFrame
        See :class:`LongitudinalAnalysis`.
    """
    info = subjects[["participant_id", "group", "phenotype", "age", "sex", "site"]]
    data = values.merge(
        info.rename(columns={"age": "age_baseline"}), on="participant_id", how="inner"
    ).dropna(subset=["sex", "site"])
    label = group_label(data["group"], data["phenotype"])
    data = data.assign(
        time=data["time_years"].astype(np.float64),
        arm=label.where(label != "MS", "MS-unspecified"),
    )
    baseline = data[data["time"] == 0].drop_duplicates("participant_id")
    edss0 = data["participant_id"].map(baseline.set_index("participant_id")["edss"])
    data = data.assign(edss0=edss0, edss_change=data["edss"] - edss0)
    rows, lines = [], []
    for region, sub in data.groupby("region", sort=False):
        for term in TERMS:
            part = sub.dropna(subset=[OUTCOME])
            if term == "edss_change":
                part = part[part["arm"].isin(_POOLED)].dropna(subset=["edss", "edss0"])
                part = part.assign(arm="MS", edss0=part["edss0"] - part["edss0"].mean())
            new, traj = _model_rows(region, term, part)
            rows += new
            lines += traj
    table = pd.DataFrame(rows).reindex(columns=LONGITUDINAL_COLUMNS)
    if len(table):
        for col in ("n_participants", "n_longitudinal", "n_sessions"):
            table[col] = table[col].fillna(0).astype(int)
        table["note"] = table["note"].astype(object).where(table["note"].notna(), "")
        for _, idx in table.groupby(["term", "arm"], sort=False).groups.items():
            table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    return table, pd.DataFrame(lines)


def analyse_longitudinal(
    regions: pd.DataFrame,
    timing: pd.DataFrame,
    subjects: pd.DataFrame,
    normative: NormativeModel,
    *,
    excluded: Collection[str] = (),
    untimed: dict[str, str] | None = None,
    min_voxels: int = MIN_VOXELS,
) -> LongitudinalAnalysis:
    """Harmonise every session and fit the longitudinal models.

    Parameters
    ----------
    regions : pandas.DataFrame
        Participant-stage rows of every session (:func:`~.tables.collect_all_sessions`).
    timing : pandas.DataFrame
        :func:`~.sessions.collect_timing` of those sessions.
    subjects : pandas.DataFrame
        ``group/subjects.tsv`` rows.
    normative : NormativeModel
        The cross-sectional analysis' model (baseline controls).
    excluded : collection of str
        Participants the cross-sectional analysis excluded (left out here too).
    untimed : dict, optional
        ``participant_id`` -> why its later sessions cannot be timed (one warning).
    min_voxels : int
        The minimum-voxel rule, applied to every session (:func:`harmonise_sessions`; one
        warning counts the sessions x structures it leaves out of the models).

    Warns
    -----
    IronmapWarning
        When some participant's later sessions cannot be timed, and when participants have
        several sessions but no arm has :data:`MIN_LONGITUDINAL` of them.
    """
    analysed = subjects[~subjects["participant_id"].isin(set(excluded))]
    keep = set(analysed["participant_id"])
    untimed = {pid: why for pid, why in (untimed or {}).items() if pid in keep}
    if untimed:
        first = "; ".join(f"{pid}: {why}" for pid, why in list(untimed.items())[:2])
        more = f"; and {len(untimed) - 2} more" if len(untimed) > 2 else ""
        warnings.warn(
            f"{len(untimed)} participant(s) have several sessions but no time between them "
            f"({first}{more}): only their baseline enters the longitudinal analysis; give every "
            "session an acq_time or age in sub-<label>/sub-<label>_sessions.tsv",
            IronmapWarning,
            stacklevel=2,
        )
    values = harmonise_sessions(regions, timing, analysed, normative, min_voxels=min_voxels)
    several = values.groupby("participant_id")["session"].nunique() if len(values) else None
    if several is None or not (several > 1).any():
        empty = pd.DataFrame(columns=LONGITUDINAL_COLUMNS)
        reason = (
            f"{len(untimed)} participant(s) have several sessions but none with known times "
            "(acq_time or age in sub-<label>_sessions.tsv)"
            if untimed
            else "one session per participant"
        )
        return LongitudinalAnalysis(empty, values, untimed=untimed, reason=reason)
    lost = values.loc[_keys(values).isin(_small_sessions(regions, min_voxels)), "region"]
    if len(lost):
        per = ", ".join(f"{r} {n}" for r, n in lost.value_counts(sort=False).items())
        warnings.warn(
            f"minimum-voxel rule: {len(lost)} session(s) x structure with fewer than "
            f"{min_voxels} voxels in a hemisphere are left out of the longitudinal models "
            f"({per})",
            IronmapWarning,
            stacklevel=2,
        )
    table, trajectories = fit_longitudinal(values, analysed)
    reason = ""
    if table.empty:
        reason = (
            f"{int((several > 1).sum())} participant(s) have two or more timed sessions, but no "
            f"group has {MIN_LONGITUDINAL}"
        )
        warnings.warn(f"{reason}: no longitudinal model was fitted", IronmapWarning, stacklevel=2)
    return LongitudinalAnalysis(table, values, trajectories, untimed, reason)
