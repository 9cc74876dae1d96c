"""The whole cohort analysis on tidy tables: normative model, comparisons, determinants.

:func:`analyse_cohort` is what the group stage runs between reading the participant-stage
tables and writing ``group/``; the calibration benchmark runs it on simulated tables. It
accounts for every participant it does not analyse (``CohortAnalysis.exclusions``).
Its parts with a module of their own: the minimum-voxel rule (:mod:`.min_voxels`), the
participant flow (:mod:`.flow`) and the normative model's tables (:mod:`.normative_tables`).
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
    MIN_CONTROLS,
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
from .flow import FLOW_COLUMNS, participant_flow
from .measures import MEASURES, Measure
from .min_voxels import SMALL_COLUMNS as SMALL_COLUMNS
from .min_voxels import _apply_min_voxels, small_regions
from .normative_tables import _age_model_table, _harmonization_table, harmonization_description

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
