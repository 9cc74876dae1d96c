"""The whole cohort analysis on tidy tables: normative model, comparisons, determinants.

:func:`analyse_cohort` is what the group stage runs between reading the participant-stage
tables and writing ``group/``; the calibration benchmark runs it on simulated tables. It
accounts for every participant it does not analyse (``CohortAnalysis.exclusions``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..defaults import MIN_VOXELS
from ..errors import InputError, IronmapWarning
from ..regions.labels import DEEP_GM
from .age import (
    AGE_DF,
    MIN_CONTROLS,
    MIN_CONTROLS_PER_SITE,
    NormativeModel,
    fit_normative,
    warn_small_sites,
)
from .age_curve import age_support
from .compare import MS_LABELS, N_BOOTSTRAP, compare_groups, compare_groups_mixed, group_label
from .determinants import (
    DETERMINANT_COLUMNS,
    FCR_COLUMNS,
    LESION_OUTCOMES,
    MIN_LESION_VOXELS,
    UNIT_COLUMNS,
    determinants,
    predictor_values,
)
from .measures import MEASURES, Measure

__all__ = [
    "ANALYSIS_TABLES",
    "CORRECTED_REGIONS",
    "FLOW_COLUMNS",
    "CohortAnalysis",
    "analyse_cohort",
    "analyses_run",
    "harmonization_description",
    "participant_flow",
    "small_regions",
]

#: Regions with a normative (control) model: deep grey matter and NAWM.
CORRECTED_REGIONS = (*DEEP_GM, "nawm")
NORMATIVE_COLUMNS = ("r2star_harmonized", "r2star_corrected", "r2star_z")
#: The group stage's optional analyses and their tables (``GROUP_TABLES`` keys): the tables of an
#: analysis that did not run are not written (:func:`analyses_run` says why).
ANALYSIS_TABLES = {
    "comparison_mixed": ("comparison_mixed", "comparison_mixed_chi"),
    "lesion_models": ("lesion_models",),
    "longitudinal": ("longitudinal", "longitudinal_sessions"),
    "chi": ("age_model_chi", "harmonization_chi", "comparison_chi", "comparison_mixed_chi",
            "determinants_chi"),
}  # fmt: skip
FLOW_COLUMNS = ["participant_id", "group", "phenotype", "site", "status", "reason", "note"]


@dataclass
class CohortAnalysis:
    """Tables of the group stage (pandas DataFrames; columns in docs/conventions.md)."""

    regions: pd.DataFrame
    normative: NormativeModel
    age_model: pd.DataFrame
    harmonization: pd.DataFrame
    comparison: pd.DataFrame
    comparison_mixed: pd.DataFrame
    determinants: pd.DataFrame
    exclusions: dict[str, str]
    age_support: pd.Series  # participant_id -> level of AGE_SUPPORT_LEVELS (None: no age)
    #: :func:`small_regions`: the structures the minimum-voxel rule left out, and its threshold
    small: pd.DataFrame = field(default_factory=lambda: small_regions(pd.DataFrame()))
    min_voxels: int = MIN_VOXELS
    measure: Measure = MEASURES["r2star"]


def _age_model_table(model: NormativeModel, reference: np.ndarray) -> pd.DataFrame:
    """One row per region; on a linear scale (chi) ``residual_sd`` is in the measure's unit
    and ``residual_sd_log`` is NaN."""
    rows = []
    width = max(AGE_DF)
    for g, region in enumerate(model.regions):
        curve = model.curves[region]
        df = curve.df
        beta = model.combat.beta[g]
        rows.append(
            {
                "region": region,
                "model": curve.name,
                "n_hc": int(model.n_hc[g]),
                "residual_sd": float(model.residual_sd[g] * (reference[g] if model.log else 1)),
                "reference_age": model.reference_age,
                "reference_site": "pooled",
                "scale": "log" if model.log else "linear",
                "residual_sd_log": float(model.residual_sd[g]) if model.log else np.nan,
                "residual_df": float(model.residual_df[g]),
                f"reference_{model.measure}": float(reference[g]),
                "knots": " ".join(f"{k:.1f}" for k in curve.knots) if df > 1 else "",
                "monotone": bool(curve.monotone),
                "age_df": int(np.sum(curve.active)),
                **{f"press_rmse_df{k}": curve.press_rmse.get(k, np.nan) for k in AGE_DF},
                "param_intercept": float(model.combat.grand_mean[g]),
                **{f"param_age{k + 1}": float(beta[k]) for k in range(df)},
                **{
                    f"param_sex_{s}": float(beta[width + i])
                    for i, s in enumerate(model.sex_levels)
                },
            }
        )
    return pd.DataFrame(rows)


def _harmonization_table(model: NormativeModel) -> pd.DataFrame:
    """One row per region and site; on a linear scale (chi) the location is ``location`` in
    the measure's unit (``location_sd`` its SD) and the percent columns are NaN."""
    c = model.combat
    rows = []
    for g, region in enumerate(model.regions):
        sd = np.sqrt(c.var_pooled[g])
        for i, site in enumerate(c.sites):
            linear = {}
            if not model.log:
                linear = {
                    "location": c.gamma_star[i, g] * sd,
                    "location_sd": np.sqrt(c.gamma_var[i, g]) * sd,
                }
            rows.append(
                {
                    "region": region,
                    "site": site,
                    "n_hc": int(c.n_site[i, g]),
                    "location_percent": 100 * np.expm1(c.gamma_star[i, g] * sd)
                    if model.log
                    else np.nan,
                    "scale": float(np.sqrt(c.delta_star[i, g])),
                    "gamma_hat": c.gamma_hat[i, g],
                    "gamma_star": c.gamma_star[i, g],
                    "delta_hat": c.delta_hat[i, g],
                    "delta_star": c.delta_star[i, g],
                    "location_sd_percent": 100 * np.sqrt(c.gamma_var[i, g]) * sd
                    if model.log
                    else np.nan,
                    "scale_pooled": bool(c.n_site[i].max() < MIN_CONTROLS_PER_SITE),
                    "z_scale": float(np.sqrt(c.delta_z[i, g])),
                    "z_scale_df": float(c.delta_z_df[i, g])
                    if np.isfinite(c.delta_z_df[i, g])
                    else np.nan,
                    **linear,
                }
            )
    return pd.DataFrame(rows)


def _exclude(long: pd.DataFrame, exclusions: dict[str, str]) -> None:
    no_sex = long.loc[long["sex"].isna(), "participant_id"].unique()
    for pid in no_sex:
        exclusions.setdefault(pid, "sex missing: the analyses adjust for sex")
    known = long[long["sex"].notna()]
    hc_sites = set(known.loc[known["group"] == "HC", "site"])
    lonely = known[~known["site"].isin(hc_sites)].drop_duplicates("participant_id")
    for pid, site in zip(lonely["participant_id"], lonely["site"], strict=True):
        exclusions.setdefault(
            pid, f"site {site} has no controls: its R2* cannot be harmonised to the others"
        )
    if len(lonely):
        sites = ", ".join(sorted(lonely["site"].astype(str).unique()))
        warnings.warn(
            f"site(s) {sites} have no controls: their {len(lonely)} participant(s) cannot be "
            "harmonised and are excluded (see group/participant_flow.tsv)",
            IronmapWarning,
            stacklevel=3,
        )


def _modelled_regions(long: pd.DataFrame, measure: Measure) -> tuple[str, ...]:
    """Regions with enough controls for a normative model (one warning for the others)."""
    hc = long[(long["group"] == "HC") & long["sex"].notna() & long[measure.column].notna()]
    counts = hc["region"].value_counts()
    present = [r for r in CORRECTED_REGIONS if r in set(long["region"])]
    thin = [r for r in present if counts.get(r, 0) < MIN_CONTROLS]
    kept = tuple(r for r in present if r not in thin)
    if not kept:
        raise InputError(
            f"fewer than {MIN_CONTROLS} controls with {measure.label} and a recorded sex in every "
            "region; the "
            "group stage needs controls (group HC) to correct for age and site"
        )
    if thin:
        warnings.warn(
            f"{', '.join(thin)}: fewer than {MIN_CONTROLS} controls with {measure.label} and sex; "
            f"no normative model, no age-corrected {measure.label} and no comparisons for these "
            "regions",
            IronmapWarning,
            stacklevel=3,
        )
    return kept


def _normative(long: pd.DataFrame, regions: tuple[str, ...], measure: Measure):
    part = long[long["region"].isin(regions)]
    wide = part.pivot(index="participant_id", columns="region", values=measure.column)
    wide = wide.reindex(columns=list(regions))
    info = part.drop_duplicates("participant_id").set_index("participant_id").loc[wide.index]
    ok = info["sex"].notna().to_numpy()
    hc = (info["group"] == "HC").to_numpy() & ok
    model = fit_normative(
        wide.to_numpy(float)[hc],
        age=info["age"].to_numpy(float)[hc],
        sex=info["sex"].to_numpy(object)[hc],
        site=info["site"].to_numpy(object)[hc],
        regions=regions,
        log=measure.log,
        measure=measure.name,
    )
    warn_small_sites(model)
    values = model.transform(
        wide.to_numpy(float)[ok],
        info["age"].to_numpy(float)[ok],
        info["sex"].to_numpy(object)[ok],
        info["site"].to_numpy(object)[ok],
        is_control=hc[ok],
    )
    frames = []
    for name, array in values.items():
        frame = pd.DataFrame(array, index=wide.index[ok], columns=pd.Index(regions, name="region"))
        frames.append(frame.stack(future_stack=True).rename(name))
    return model, pd.concat(frames, axis=1).reset_index()


SMALL_COLUMNS = ["participant_id", "region", "n_voxels_left", "n_voxels_right"]


def small_regions(regions: pd.DataFrame, min_voxels: int = MIN_VOXELS) -> pd.DataFrame:
    """Participant x deep grey-matter structure with fewer than ``min_voxels`` in a hemisphere.

    Parameters
    ----------
    regions : pandas.DataFrame
        ``regions.tsv`` rows (``participant_id, region, hemisphere, n_voxels``); structures
        without both a ``left`` and a ``right`` row with a count are never listed (nothing is
        known about them).
    min_voxels : int
        The minimum-voxel rule's threshold (:data:`ironmap.defaults.MIN_VOXELS`).

    Returns
    -------
    pandas.DataFrame
        :data:`SMALL_COLUMNS`: one row per participant x structure the rule leaves out, with the
        two hemispheres' voxel counts; sorted by region (as :data:`DEEP_GM`) and participant.
        With a ``session`` column in ``regions`` (several sessions), one row per participant x
        session x structure, ``session`` after ``participant_id``.
    """
    keys = ["participant_id", *(["session"] if "session" in regions.columns else []), "region"]
    columns = [*keys, *SMALL_COLUMNS[2:]]
    needed = {"participant_id", "region", "hemisphere", "n_voxels"}
    if regions.empty or not needed <= set(regions.columns):
        return pd.DataFrame(columns=columns)
    sides = regions[
        regions["region"].isin(DEEP_GM) & regions["hemisphere"].isin(["left", "right"])
    ]
    sides = sides.assign(n=pd.to_numeric(sides["n_voxels"], errors="coerce"))
    if "session" in keys:  # sessionless rows of a table with sessions: "" (not dropped)
        session = sides["session"].astype(object)
        sides = sides.assign(session=session.where(session.notna(), ""))
    counts = sides.pivot_table(index=keys, columns="hemisphere", values="n", aggfunc="min")
    if not {"left", "right"} <= set(counts.columns):
        return pd.DataFrame(columns=columns)
    counts = counts[["left", "right"]].dropna()
    low = counts[(counts < min_voxels).any(axis=1)].astype(int).reset_index()
    low.columns = columns
    order = low["region"].map({r: i for i, r in enumerate(DEEP_GM)})
    low = low.assign(order=order).sort_values(["order", *keys[:-1]])
    return low[columns].reset_index(drop=True)


def _apply_min_voxels(
    long: pd.DataFrame, small: pd.DataFrame, min_voxels: int, measure: Measure
) -> pd.DataFrame:
    """``long`` (bilateral rows) with the small structures' measure NaN, and one warning."""
    if small.empty:
        return long
    key = pd.MultiIndex.from_frame(long[["participant_id", "region"]])
    drop = key.isin(pd.MultiIndex.from_frame(small[["participant_id", "region"]]))
    per_region = small["region"].value_counts(sort=False)
    listed = ", ".join(f"{region} {n} participant(s)" for region, n in per_region.items())
    warnings.warn(
        f"minimum-voxel rule: fewer than {min_voxels} voxels in a hemisphere, so that structure "
        f"enters no group statistics ({listed}); the participants' other structures are "
        "analysed (--min-voxels; note in group/participant_flow.tsv)",
        IronmapWarning,
        stacklevel=3,
    )
    return long.assign(**{measure.column: long[measure.column].where(~drop)})


def _lesion_outcomes(ms: pd.DataFrame, measure: Measure) -> pd.DataFrame:
    lesions = ms[ms["region"] == "lesions"].copy()
    small = lesions["n_voxels"].fillna(0) < MIN_LESION_VOXELS
    if small.any():
        warnings.warn(
            f"lesions: {int(small.sum())} MS participant(s) have fewer than {MIN_LESION_VOXELS} "
            f"lesion voxels; their lesion {measure.label} is left out of the determinants",
            IronmapWarning,
            stacklevel=3,
        )
    lesions["y"] = lesions[measure.column].where(~small)
    nawm = ms[ms["region"] == "nawm"].set_index("participant_id")[measure.column]
    relative = lesions.assign(
        region="lesions_nawm", y=lesions["y"] - lesions["participant_id"].map(nawm)
    )
    return pd.concat([lesions, relative], ignore_index=True)


def analyse_cohort(
    regions: pd.DataFrame,
    subjects: pd.DataFrame,
    *,
    mixed: bool = True,
    clinical: bool = True,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = 0,
    min_voxels: int = MIN_VOXELS,
    measure: str = "r2star",
) -> CohortAnalysis:
    """Run the cohort statistics.

    Parameters
    ----------
    regions : pandas.DataFrame
        ``group/regions.tsv`` rows (all hemispheres) of the analysed participants.
    subjects : pandas.DataFrame
        ``group/subjects.tsv`` rows (participants.tsv joined with the volumes).
    mixed : bool
        Also fit the random-site-intercept sensitivity analysis.
    clinical : bool
        Also fit the determinants (MS only).
    n_bootstrap : int
        0: no CI of Cohen's d (see :func:`~ironmap.cohort.compare.compare_groups`) and no
        stepwise bootstrap of the determinants (their ``inclusion_frequency`` is NaN).
    seed : int
        Seed of the bootstraps.
    min_voxels : int
        Minimum-voxel rule: a participant's deep grey-matter structure with fewer R2* voxels
        than this in either hemisphere (``n_voxels`` of its ``left``/``right`` rows) enters no
        statistics, the normative model included: its harmonised, corrected R2* and z-score
        are NaN, its measured ``r2star_median`` is kept (:func:`small_regions`, warned once).
    measure : str
        The measure analysed, a key of :data:`~.measures.MEASURES`: ``r2star`` (log scale) or
        ``chi`` (``chi_median``, ppm, linear scale: the same harmonisation, normative model,
        comparisons and determinants; the output columns are named ``chi_*``).
    """
    m = MEASURES[measure]
    exclusions: dict[str, str] = {}
    both = regions[regions["hemisphere"] == "both"]
    small = small_regions(regions, min_voxels)
    long = _apply_min_voxels(
        both.merge(subjects, on="participant_id", how="inner"), small, min_voxels, m
    )
    _exclude(long, exclusions)
    present = _modelled_regions(long, m)
    model, values = _normative(long, present, m)
    keyed = regions.merge(values.assign(hemisphere="both"), how="left")
    long = keyed[keyed["hemisphere"] == "both"].merge(subjects, on="participant_id")
    reference = model.reference_log_r2star()
    reference = np.exp(reference) if m.log else reference
    support = age_support(subjects["age"], model.age_limits)
    long["age_support"] = long["participant_id"].map(
        dict(zip(subjects["participant_id"], support, strict=True))
    )
    outcome = f"{m.name}_corrected"
    comparison = compare_groups(
        long[long["region"].isin(present)], seed=seed, n_bootstrap=n_bootstrap, outcome=outcome
    )
    mixed_table = (
        compare_groups_mixed(
            long[long["region"].isin(present)], reference=comparison, outcome=outcome
        )
        if mixed
        else pd.DataFrame()
    )
    table = (
        _clinical(long, present, seed, stepwise_bootstrap=n_bootstrap > 0, measure=m)
        if clinical
        else pd.DataFrame(columns=[*DETERMINANT_COLUMNS, *UNIT_COLUMNS, *FCR_COLUMNS])
    )
    return CohortAnalysis(
        regions=keyed,
        normative=model,
        age_model=_age_model_table(model, reference),
        harmonization=_harmonization_table(model),
        comparison=comparison,
        comparison_mixed=mixed_table,
        determinants=table,
        exclusions=exclusions,
        age_support=pd.Series(support, index=subjects["participant_id"].to_numpy(), dtype=object),
        small=small,
        min_voxels=min_voxels,
        measure=m,
    )


def _clinical(
    long: pd.DataFrame,
    present: tuple[str, ...],
    seed: int,
    *,
    stepwise_bootstrap: bool = True,
    measure: Measure = MEASURES["r2star"],
) -> pd.DataFrame:
    """Determinants in clinically definite MS: corrected deep-GM/NAWM R2* and lesion R2*."""
    label = group_label(long["group"], long["phenotype"])
    ms = long[label.isin(MS_LABELS)].copy()
    transformed = predictor_values(ms)
    ms[list(transformed.columns)] = transformed  # on the scale their betas refer to
    dgm = ms[ms["region"].isin(present)].assign(y=lambda d: d[f"{measure.name}_corrected"])
    data = pd.concat([dgm, _lesion_outcomes(ms, measure)], ignore_index=True)
    extra = {} if stepwise_bootstrap else {"n_bootstrap": 0}
    table = determinants(data, seed=seed, **extra)
    return table[table["region"].isin((*present, *LESION_OUTCOMES))].reset_index(drop=True)


def participant_flow(
    participants: pd.DataFrame,
    exclusions: dict[str, str],
    *,
    age_support: pd.Series | None = None,
    age_limits: tuple[float, float, float, float] | None = None,
    small: pd.DataFrame | None = None,
    min_voxels: int = MIN_VOXELS,
) -> pd.DataFrame:
    """Every row of ``participants.tsv``: ``analysed``, or ``excluded`` with the reason.

    ``small`` (:func:`small_regions` at ``min_voxels``) adds to an analysed participant's
    ``note`` each structure the minimum-voxel rule left out, with its voxel counts (warned by
    :func:`analyse_cohort`).

    Warns once, with the count of each reason, when anyone is excluded, and once, with their
    number, when analysed participants are younger or older than every control
    (``age_support``, participant_id -> level of ``AGE_SUPPORT_LEVELS``, against the controls'
    ``age_limits`` in years: minimum, 5th, 95th percentile, maximum); their ``note`` says so.
    """
    flow = participants[["participant_id", "group", "phenotype", "site"]].copy()
    flow["reason"] = flow["participant_id"].map(lambda pid: exclusions.get(pid, ""))
    flow["status"] = np.where(flow["reason"] == "", "analysed", "excluded")
    flow["note"] = _age_notes(flow, age_support, age_limits)
    if small is not None and len(small):
        flow["note"] = _join_notes(flow["note"], _voxel_notes(flow, small, min_voxels))
    excluded = flow[flow["status"] == "excluded"]
    if len(excluded):
        kinds = excluded["reason"].str.split(":").str[0].value_counts()
        listed = "; ".join(f"{n} x {reason}" for reason, n in kinds.items())
        warnings.warn(
            f"{len(excluded)} of {len(flow)} participants excluded ({listed}); "
            "see group/participant_flow.tsv",
            IronmapWarning,
            stacklevel=2,
        )
    return flow[FLOW_COLUMNS]


def _voxel_notes(flow: pd.DataFrame, small: pd.DataFrame, min_voxels: int) -> pd.Series:
    """The flow's ``note`` of the minimum-voxel rule, per analysed participant ('' if none)."""
    text = small.assign(
        words=small["region"]
        + ": left "
        + small["n_voxels_left"].astype(int).astype(str)
        + ", right "
        + small["n_voxels_right"].astype(int).astype(str)
        + f" voxels (fewer than {min_voxels} in a hemisphere): left out of the group statistics"
    )
    per = text.groupby("participant_id", sort=False)["words"].agg("; ".join)
    notes = flow["participant_id"].map(per).fillna("")
    return notes.where(flow["status"] == "analysed", "")


def _join_notes(first: pd.Series, second: pd.Series) -> pd.Series:
    """Two note columns joined with '; ' (either may be empty)."""
    both = (first != "") & (second != "")
    return (first + np.where(both, "; ", "") + second).astype(object)


def _age_notes(flow: pd.DataFrame, support: pd.Series | None, limits) -> pd.Series:
    """The flow's ``note``: analysed participants beyond the controls' age support, warned."""
    notes = pd.Series("", index=flow.index, dtype=object)
    if support is None or limits is None:
        return notes
    level = flow["participant_id"].map(support).where(flow["status"] == "analysed")
    low, p5, p95, high = limits
    text = {
        "outside": f"age outside the controls' range ({low:.1f}-{high:.1f} years)",
        "beyond_p5_p95": f"age beyond the controls' 5th-95th percentile ({p5:.1f}-{p95:.1f} "
        "years)",
    }
    tail = ": analysed; its age-corrected R2* rests on the linear tail of the age curve"
    for key, words in text.items():
        notes[level == key] = words + tail
    outside = int((level == "outside").sum())
    if outside:
        warnings.warn(
            f"{outside} analysed participant(s) are outside the controls' age range "
            f"({low:.1f}-{high:.1f} years) and {int((level == 'beyond_p5_p95').sum())} beyond "
            f"its 5th-95th percentile ({p5:.1f}-{p95:.1f}); their age-corrected R2* and z-scores "
            "rest on the linear tails of the controls' age curves (age_support in "
            "group/subjects.tsv, note in group/participant_flow.tsv)",
            IronmapWarning,
            stacklevel=3,
        )
    return notes


def analyses_run(
    *, mixed: bool, lesions: pd.DataFrame, lesion_models: pd.DataFrame, longitudinal_reason: str
) -> dict[str, dict]:
    """Whether each of :data:`ANALYSIS_TABLES` ran, and why not, for ``group/provenance.json``.

    Parameters
    ----------
    mixed : bool
        The mixed-model sensitivity analysis was asked for.
    lesions, lesion_models : pandas.DataFrame
        The analysed participants' ``_lesions.tsv`` rows and the lesion models fitted on them.
    longitudinal_reason : str
        ``LongitudinalAnalysis.reason`` ('' when its models were fitted).

    Returns
    -------
    dict
        Analysis name -> ``{"ran": bool, "reason": str}`` (``reason`` only when it did not run).
    """

    def entry(ran: bool, reason: str) -> dict:
        return {"ran": True} if ran else {"ran": False, "reason": reason}

    return {
        "comparison_mixed": entry(mixed, "not requested (mixed=False)"),
        "lesion_models": entry(
            not lesion_models.empty,
            "no lesion tables (sub-*_lesions.tsv: no lesion masks)"
            if lesions.empty
            else "no lesion model could be fitted",
        ),
        "longitudinal": entry(not longitudinal_reason, longitudinal_reason),
    }


def harmonization_description(model: NormativeModel) -> dict:
    """What was done to remove site effects, for ``group/harmonization.json``."""
    c = model.combat
    return {
        "Method": "ComBat (Johnson et al. 2007; Fortin et al. 2018), empirical Bayes"
        if c.eb
        else "ComBat without empirical Bayes",
        "Scale": "log R2*",
        "FittedOn": "healthy controls (group HC); applied to every participant",
        "Covariates": [
            "quadratic spline of age, linear beyond the controls' 5th/95th age percentiles, "
            "non-decreasing in the iron-rich nuclei (knots per region)",
            "sex",
        ],
        "AgeSplineDegreesOfFreedom": model.df,
        "Sites": list(c.sites),
        "ControlsPerSite": {s: int(n) for s, n in zip(c.sites, c.n_site.max(axis=1), strict=True)},
        "PooledScaleBelowControls": MIN_CONTROLS_PER_SITE,
        "SitesWithPooledScale": [
            s
            for s, n in zip(c.sites, c.n_site.max(axis=1), strict=True)
            if n < MIN_CONTROLS_PER_SITE
        ],
        "SiteScale": "not applied to R2*: only the site's location is removed, so a disease "
        "effect at a noisy site keeps its size; the site's residual SD relative to the pooled "
        "one (z_scale) enters the z-scores instead",
        "SmallSiteZScale": "sites with fewer controls than PooledScaleBelowControls: the site's "
        "variance ratio pooled over regions (correlation discounted) and shrunk towards the "
        f"pooled scale with a prior of {MIN_CONTROLS_PER_SITE - 1} degrees of freedom",
        "MissingRegions": "a region without controls at a site is NaN for that site's "
        "participants; their other regions are harmonised",
        "ReferenceAge": model.reference_age,
        "ReferenceSite": "pooled (control-weighted mean of the sites)",
        "Validation": "benchmarks/harmonize_reference.py (neuroHarmonize 2.5.2)",
    }
