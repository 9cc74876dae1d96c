"""Table-level cohorts (no images): regional R2* per participant with known truth.

For the statistics of the group stage: calibration (false-positive rate, z-scores, coverage,
power) is measured over thousands of seeded cohorts, which image simulation cannot afford.
Each participant's regional R2* (1/s) is::

    (healthy(age) + biological offset + MS effect) * site bias + measurement noise * site noise

with the healthy ageing curves of :mod:`.tissue` (NAWM: cerebral white matter). Site bias is
multiplicative (scanner R2* differences scale with R2*), a site may be noisier, patients may
be older than controls and concentrated at some sites, and a phenotype may be more variable.

:func:`simulate_table_sessions` follows such a cohort over several sessions, with the change
the image simulator plants (:mod:`.cohort`): healthy ageing, in patients the planted change per
year of disease and per EDSS point gained, a biological random slope, a scan-rescan factor,
unequal intervals and drop-out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..regions.catalog import MEASURED_ROWS
from .cohort import EDSS_PROGRESSION, INTERVAL_JITTER, SCAN_RESCAN_CV, SLOPE_SD, edss_course
from .tissue import BIOLOGICAL_SD, TISSUES, ms_r2star_change, tissue_of

__all__ = [
    "CHI_HEALTHY",
    "PREDICTOR_REF",
    "ClinicalModel",
    "TableSite",
    "add_chi",
    "planted_change",
    "simulate_table_cohort",
    "simulate_table_sessions",
]

#: The measured rows of ``regions.tsv`` (deep grey matter, then NAWM), from the catalogue.
REGIONS = tuple(row.name for row in MEASURED_ROWS)
# regions.tsv row -> tissue of :data:`.tissue.TISSUES` it is drawn from (NAWM: cerebral_wm).
_TISSUE = {row.name: tissue_of(row.source) for row in MEASURED_ROWS}


@dataclass(frozen=True)
class TableSite:
    """A site: its multiplicative R2* bias, noise factor and participants per group label."""

    name: str
    bias: float = 1.0
    noise: float = 1.0
    n: dict[str, int] = field(default_factory=dict)  # label (HC, RRMS, ...) -> count
    #: Region -> extra multiplicative bias of that region (on top of ``bias``; default 1).
    region_bias: dict[str, float] = field(default_factory=dict)
    #: Years added to the ages of this site's patients (not its controls).
    patient_age_shift: float = 0.0
    #: Additive R2* bias (1/s) of every region at this site (non-multiplicative scanner bias).
    offset: float = 0.0


@dataclass(frozen=True)
class ClinicalModel:
    """How patients' clinical and MRI predictors are drawn, and their planted R2* effects.

    Per patient (ages in years)::

        duration = clip(duration_per_age_year (age - onset_age) + N(0, duration_sd),
                        0.5, age - 16)
        EDSS     = clip(round_0.5(edss_base + edss_per_year duration + N(0, edss_sd)), 0, 9.5)
        cortical = cortical_ref - cortical_per_year duration - cortical_per_edss EDSS
                   - cortical_per_age (age - 40) + N(0, cortical_sd)     (% of ICV)
        NBV      = nbv_ref - nbv_per_year duration - 0.001 (age - 40) + N(0, nbv_sd)
        lesion volume = exp(1.5 + 0.05 duration + N(0, 0.8))             (mL)
        ICV ~ N(1450, 120) mL; cortical_gm_ml = cortical / 100 x ICV; brain_ml = NBV x ICV
        n_prl ~ Poisson(prl_rate[phenotype])    (only with prl_rate; controls 0)

    and the planted change of a patient's true R2* in region ``r`` (1/s)::

        sum over predictors p of slopes[r][p] x (x_p - PREDICTOR_REF[p])

    with ``x_p`` on the scale of :data:`ironmap.cohort.determinants.TRANSFORMS` (years, EDSS
    points, log(1 + mL), fraction of ICV, % of ICV): the slopes are the coefficients the
    determinants estimate (before age correction and harmonisation rescale them).
    ``cortical_sd`` sets the cortical-duration collinearity (0.8: r ~ -0.9; 2.5: r ~ -0.6).
    """

    onset_age: float = 25.0
    duration_per_age_year: float = 0.5
    duration_sd: float = 5.0
    edss_base: float = 1.0
    edss_per_year: float = 0.15
    edss_sd: float = 1.0
    cortical_ref: float = 33.0
    cortical_per_year: float = 0.2
    cortical_per_edss: float = 0.1
    cortical_per_age: float = 0.03
    cortical_sd: float = 0.8
    nbv_ref: float = 0.85
    nbv_per_year: float = 0.002
    nbv_sd: float = 0.015
    slopes: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Phenotype -> mean PRL count (Poisson, its own random stream): patients get ``n_prl``
    #: (controls 0), and ``slopes`` may name ``n_prl`` (per PRL); empty: no ``n_prl`` column.
    prl_rate: dict[str, float] = field(default_factory=dict)


#: Controls' volumes under a :class:`ClinicalModel` (no clinical predictors).
_HC_VOLUMES = {
    "disease_duration": np.nan,
    "edss": np.nan,
    "icv_ml": 1450.0,
    "brain_ml": 0.86 * 1450.0,
    "cortical_gm_ml": 0.33 * 1450.0,
    "nbv": 0.86,
    "lesion_volume_ml": 0.0,
    "lesion_count": 0,
}

#: Predictor values at which the planted determinant effects of :class:`ClinicalModel` are 0.
PREDICTOR_REF = {
    "disease_duration": 10.0,
    "edss": 3.0,
    "lesion_volume_ml": 2.0,
    "nbv": 0.83,
    "cortical_gm_ml": 31.0,
    "n_prl": 1.0,
}


def _clinical_draws(model: ClinicalModel, age: float, rng: np.random.Generator) -> dict:
    """One patient's predictors (participants.tsv and subjects.tsv columns) under ``model``."""
    dd = model.duration_per_age_year * (age - model.onset_age) + rng.normal(0, model.duration_sd)
    dd = float(np.clip(dd, 0.5, max(age - 16.0, 0.5)))
    edss = model.edss_base + model.edss_per_year * dd + rng.normal(0.0, model.edss_sd)
    edss = float(np.clip(np.round(edss * 2) / 2, 0.0, 9.5)) + 0.0
    cortical = (
        model.cortical_ref
        - model.cortical_per_year * dd
        - model.cortical_per_edss * edss
        - model.cortical_per_age * (age - 40.0)
        + rng.normal(0.0, model.cortical_sd)
    )
    nbv = (
        model.nbv_ref
        - model.nbv_per_year * dd
        - 0.001 * (age - 40.0)
        + rng.normal(0.0, model.nbv_sd)
    )
    lesion = float(np.exp(1.5 + 0.05 * dd + rng.normal(0.0, 0.8)))
    icv = float(rng.normal(1450.0, 120.0))
    return {
        "disease_duration": round(dd, 1),
        "edss": edss,
        "icv_ml": icv,
        "brain_ml": nbv * icv,
        "cortical_gm_ml": cortical / 100.0 * icv,
        "nbv": nbv,
        "lesion_volume_ml": lesion,
        "lesion_count": 3,
    }


def planted_change(model: ClinicalModel, region: str, x: dict) -> float:
    """Planted R2* change (1/s) of a patient with predictors ``x`` (:func:`_clinical_draws`)."""
    scaled = {
        "disease_duration": x["disease_duration"],
        "edss": x["edss"],
        "lesion_volume_ml": float(np.log1p(x["lesion_volume_ml"])),
        "nbv": x["nbv"],
        "cortical_gm_ml": 100.0 * x["cortical_gm_ml"] / x["icv_ml"],
        "n_prl": float(x.get("n_prl", PREDICTOR_REF["n_prl"])),
    }
    slopes = model.slopes.get(region, {})
    return float(sum(b * (scaled[p] - PREDICTOR_REF[p]) for p, b in slopes.items()))


def simulate_table_cohort(
    sites: list[TableSite],
    *,
    seed: int,
    effects: dict[str, dict[str, float]] | None = None,
    bio_sd: float = BIOLOGICAL_SD,
    noise_sd: float = 0.4,
    extra_sd: dict[str, float] | None = None,
    age: dict[str, tuple[float, float]] | None = None,
    regions: tuple[str, ...] = REGIONS,
    clinical: ClinicalModel | None = None,
    shared_sd: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw one cohort.

    Parameters
    ----------
    sites : list of TableSite
    seed : int
    effects : dict, optional
        Label -> {region: additive R2* change (1/s)}; default none (a null cohort).
    bio_sd : float
        Between-subject SD as a fraction of the healthy value at age 45.
    noise_sd : float
        Measurement noise SD (1/s) at a site with ``noise = 1``.
    extra_sd : dict, optional
        Label -> extra between-subject SD factor (e.g. ``{"PPMS": 2.0}``).
    age : dict, optional
        Label -> (mean, SD) of age in years; default HC (40, 12), patients (42, 10).
    regions : tuple of str
    clinical : ClinicalModel, optional
        Draw the patients' disease duration, EDSS and volumes from this model (its own random
        stream: the other draws are those of ``clinical=None``) and plant its determinant
        slopes; default: duration and EDSS independent of age and of everything else, no
        volumes, nothing planted.
    shared_sd : float
        Part of ``bio_sd`` shared by all regions of a participant (fraction of the healthy
        value at 45; e.g. :data:`.tissue.BIOLOGICAL_SD_SHARED`): regions correlate with
        ``r ~ shared_sd^2 / bio_sd^2``. Drawn from its own stream; 0 (default): independent
        regions, the draws of earlier versions.

    Returns
    -------
    long : pandas.DataFrame
        ``participant_id, region, hemisphere ("both"), r2star_median, n_voxels, truth`` where
        ``truth`` is the participant's site-free, noise-free R2* (1/s).
    participants : pandas.DataFrame
        ``participants.tsv`` columns; with ``clinical`` also the ``subjects.tsv`` volumes
        (``icv_ml, brain_ml, cortical_gm_ml, nbv, lesion_volume_ml, lesion_count``; controls:
        ICV 1450 mL, NBV 0.86, cortical GM 33 % of ICV, no lesions).
    """
    rng = np.random.default_rng(seed)
    crng = np.random.default_rng([seed, 2014])  # the clinical model's own stream
    shared_rng = np.random.default_rng([seed, 24])  # the shared effect's own stream
    prl_rng = np.random.default_rng([seed, 27])  # the PRL counts' own stream
    if not 0.0 <= shared_sd <= bio_sd:
        raise ValueError(f"shared_sd {shared_sd} outside [0, bio_sd = {bio_sd}]")
    effects = effects or {}
    extra_sd = extra_sd or {}
    age = {"HC": (40.0, 12.0), **(age or {})}
    people, rows = [], []
    count = 0
    for site in sites:
        for label, n in site.n.items():
            mean, sd = age.get(label, (42.0, 10.0))
            ages = np.clip(rng.normal(mean, sd, n), 18.0, 80.0).round(1)
            if label != "HC" and site.patient_age_shift:
                ages = np.clip(ages + site.patient_age_shift, 18.0, 80.0).round(1)
            for a in ages:
                count += 1
                pid = f"sub-{count:04d}"
                ms = label != "HC"
                dd = float(min(rng.gamma(4.0, 2.5), a - 16.0)) if ms else np.nan
                person = {
                    "participant_id": pid,
                    "age": a,
                    "sex": "F" if rng.random() < (0.68 if ms else 0.55) else "M",
                    "group": "MS" if ms else "HC",
                    "phenotype": label if ms else np.nan,
                    "disease_duration": round(dd, 1) if ms else np.nan,
                    "edss": float(np.clip(np.round(rng.normal(3, 1.5) * 2) / 2, 0, 9.5))
                    if ms
                    else np.nan,
                    "site": site.name,
                }
                if clinical is not None:
                    person.update(_clinical_draws(clinical, float(a), crng) if ms else _HC_VOLUMES)
                    if clinical.prl_rate:
                        rate = clinical.prl_rate.get(label, 0.0) if ms else 0.0
                        person["n_prl"] = float(prl_rng.poisson(rate))
                people.append(person)
                shared = shared_rng.normal() if shared_sd else 0.0
                own_sd = np.sqrt(bio_sd**2 - shared_sd**2) if shared_sd else bio_sd
                for region in regions:
                    model = TISSUES[_TISSUE[region]].age
                    sd_bio = own_sd * float(model(45.0)) * extra_sd.get(label, 1.0)
                    truth = (
                        float(model(a))
                        + rng.normal(0.0, sd_bio)
                        + effects.get(label, {}).get(region, 0.0)
                    )
                    if clinical is not None and ms:
                        truth += planted_change(clinical, region, person)
                    if shared_sd:
                        truth += shared_sd * float(model(45.0)) * extra_sd.get(label, 1.0) * shared
                    bias = site.bias * site.region_bias.get(region, 1.0)
                    observed = truth * bias + site.offset + rng.normal(0.0, noise_sd * site.noise)
                    rows.append((pid, region, "both", observed, 200, truth))
    long = pd.DataFrame(
        rows,
        columns=["participant_id", "region", "hemisphere", "r2star_median", "n_voxels", "truth"],
    )
    return long, pd.DataFrame(people)


#: Healthy regional susceptibility (ppm, relative to CSF): value at age 45 and change per decade,
#: of the size QSM studies of the deep grey matter report (iron-rich nuclei higher, increasing
#: with age; white matter diamagnetic). For table cohorts of the chi analysis.
CHI_HEALTHY: dict[str, tuple[float, float]] = {
    "thalamus": (0.00, 0.002),
    "caudate": (0.06, 0.008),
    "putamen": (0.05, 0.012),
    "pallidum": (0.15, 0.010),
    "substantia_nigra": (0.12, 0.006),
    "red_nucleus": (0.09, 0.006),
    "dentate_nucleus": (0.10, 0.006),
    "nawm": (-0.02, 0.000),
}


def add_chi(
    long: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    seed: int,
    effects: dict[str, dict[str, float]] | None = None,
    bio_sd: float = 0.012,
    noise_sd: float = 0.004,
    site_offset: dict[str, float] | None = None,
) -> pd.DataFrame:
    """A table cohort's regional susceptibility, beside its R2* (its own random stream).

    Each participant's ``chi_median`` (ppm) is::

        healthy(age) + N(0, bio_sd) + effect + site offset + N(0, noise_sd)

    with ``healthy`` from :data:`CHI_HEALTHY` (linear in age), an additive site offset (chi is
    relative to a reference region, so scanner differences shift it rather than scale it) and
    ``effect`` the planted change of the participant's group label (phenotype, or ``HC``).

    Parameters
    ----------
    long, participants : pandas.DataFrame
        The tables of :func:`simulate_table_cohort`.
    seed : int
    effects : dict, optional
        Label -> {region: additive chi change (ppm)}; default none.
    bio_sd, noise_sd : float
        Between-subject and measurement SD (ppm).
    site_offset : dict, optional
        Site -> additive chi offset (ppm).

    Returns
    -------
    pandas.DataFrame
        ``long`` with ``chi_median`` (ppm), ``chi_n_voxels`` (= ``n_voxels``) and
        ``chi_truth`` (site-free, noise-free chi, ppm).
    """
    rng = np.random.default_rng([seed, 27])
    effects, site_offset = effects or {}, site_offset or {}
    info = participants.set_index("participant_id")
    label = info["phenotype"].where(info["group"] != "HC", "HC")
    rows = long.reset_index(drop=True)
    base = rows["region"].map(lambda r: CHI_HEALTHY[r][0]).to_numpy(float)
    slope = rows["region"].map(lambda r: CHI_HEALTHY[r][1]).to_numpy(float)
    age = rows["participant_id"].map(info["age"]).to_numpy(float)
    own = rows["participant_id"].map(label)
    effect = np.array(
        [effects.get(lab, {}).get(r, 0.0) for lab, r in zip(own, rows["region"], strict=True)]
    )
    truth = base + slope * (age - 45.0) / 10.0 + rng.normal(0.0, bio_sd, len(rows)) + effect
    offset = rows["participant_id"].map(info["site"]).map(site_offset).fillna(0.0).to_numpy()
    observed = truth + offset + rng.normal(0.0, noise_sd, len(rows))
    return rows.assign(chi_median=observed, chi_n_voxels=rows["n_voxels"], chi_truth=truth)


def simulate_table_sessions(
    sites: list[TableSite],
    *,
    seed: int,
    sessions: int = 3,
    interval_years: float = 2.0,
    dropout: float = 0.0,
    planted: bool = True,
    bio_sd: float = BIOLOGICAL_SD,
    slope_sd: float = SLOPE_SD,
    noise_sd: float = 0.4,
    scan_rescan_cv: float = SCAN_RESCAN_CV,
    age: dict[str, tuple[float, float]] | None = None,
    regions: tuple[str, ...] = REGIONS,
    upgrades: dict[str, tuple[float, float]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw one longitudinal cohort: regional R2* of every session, with the planted truth.

    A participant's R2* at ``t`` years after baseline, in region ``r`` (1/s)::

        truth = healthy_r(age0 + t) + offset_r + slope_r t
                + MS change_r(duration0 + t, EDSS(t))           (patients, if planted)
        observed = truth * site bias * scan factor * upgrade + noise * site noise

    ``offset_r ~ N(0, bio_sd x healthy_r(45))``, ``slope_r ~ N(0, slope_sd)`` (1/s per year),
    the MS change is :func:`~.tissue.ms_r2star_change` (the planted ``duration_slope`` per year
    of disease and ``edss_slope`` per EDSS point), EDSS follows
    :func:`~.cohort.edss_course` at a rate drawn from :data:`~.cohort.EDSS_PROGRESSION`, the
    scan factor is ``N(1, scan_rescan_cv)`` per session (shared by the regions of a scan),
    and intervals are ``interval_years * U(0.8, 1.2)``. Every participant's baseline is
    2018-01-01; a scanner upgrade at a site (``upgrades``) multiplies the R2* of every later
    session there by its factor (``upgrade``, 1 otherwise), as a new scanner or software
    version would.

    Parameters
    ----------
    sites : list of TableSite
        Participants per site and label (HC, CIS, RRMS, SPMS, PPMS).
    seed : int
    sessions : int
        Planned sessions per participant (>= 1).
    interval_years : float
        Mean years between sessions.
    dropout : float
        Probability of missing each follow-up session and every later one.
    planted : bool
        Plant the MS change of :mod:`.tissue` (False: patients age like controls).
    bio_sd : float
        Between-participant SD of R2* as a fraction of the healthy value at age 45.
    slope_sd : float
        Between-participant SD of the yearly change (1/s per year).
    noise_sd : float
        Measurement noise SD (1/s) at a site with ``noise = 1``.
    scan_rescan_cv : float
        SD of the multiplicative scan-rescan factor.
    age : dict, optional
        Label -> (mean, SD) of baseline age; default HC (40, 12), patients (42, 10).
    regions : tuple of str
    upgrades : dict, optional
        Site name -> (years after 2018-01-01, multiplicative R2* factor) of a scanner upgrade:
        sessions at or after that time get the factor, and the sessions table a ``scanner``
        column (``<site>-1`` before, ``<site>-2`` after; ``<site>-1`` at sites without one) as
        a real ``sub-<label>_sessions.tsv`` could hold. Draws nothing random: the cohort is the
        one drawn without it.

    Returns
    -------
    long : pandas.DataFrame
        ``participant_id, session, region, hemisphere ("both"), r2star_median, n_voxels,
        truth, time_years``: ``truth`` is the site-free, noise-free R2* of that session (1/s).
    participants : pandas.DataFrame
        ``participants.tsv`` columns at baseline.
    sessions : pandas.DataFrame
        ``participant_id`` and ``sub-<label>_sessions.tsv`` columns: ``session_id,
        acq_time, age, edss`` (and ``scanner`` with ``upgrades``), plus the true
        ``time_years``.
    """
    rng = np.random.default_rng(seed)
    age = {"HC": (40.0, 12.0), **(age or {})}
    people, rows, visits = [], [], []
    start = pd.Timestamp("2018-01-01T09:00:00")
    count = 0
    for site in sites:
        for label, n in site.n.items():
            mean, sd = age.get(label, (42.0, 10.0))
            for a0 in np.clip(rng.normal(mean, sd, n), 18.0, 80.0).round(1):
                count += 1
                pid = f"sub-{count:04d}"
                ms = label != "HC"
                dd0 = round(float(min(rng.gamma(4.0, 2.5), a0 - 16.0)), 1) if ms else np.nan
                edss0 = float(np.clip(np.round(rng.normal(3, 1.5) * 2) / 2, 0, 9.5)) if ms else 0.0
                people.append(
                    {
                        "participant_id": pid,
                        "age": a0,
                        "sex": "F" if rng.random() < (0.68 if ms else 0.55) else "M",
                        "group": "MS" if ms else "HC",
                        "phenotype": label if ms else np.nan,
                        "disease_duration": dd0,
                        "edss": edss0 if ms else np.nan,
                        "site": site.name,
                    }
                )
                kept = 1
                while kept < sessions and rng.random() >= dropout:
                    kept += 1
                gaps = interval_years * rng.uniform(
                    1 - INTERVAL_JITTER, 1 + INTERVAL_JITTER, kept - 1
                )
                times = np.concatenate([[0.0], np.cumsum(gaps)])
                if ms:
                    rate_mean, rate_sd = EDSS_PROGRESSION.get(label, EDSS_PROGRESSION["RRMS"])
                    edss = edss_course(edss0, rng.normal(rate_mean, rate_sd), times, rng)
                else:
                    edss = np.full(kept, np.nan)
                factors = 1.0 + rng.normal(0.0, scan_rescan_cv, kept)
                offsets = {
                    r: rng.normal(0.0, bio_sd * float(TISSUES[_TISSUE[r]].age(45.0)))
                    for r in regions
                }
                slopes = {r: rng.normal(0.0, slope_sd) for r in regions}
                for k, t in enumerate(times):
                    session = f"ses-{k + 1:02d}"
                    when, factor = (upgrades or {}).get(site.name, (np.inf, 1.0))
                    upgraded = t >= when
                    visits.append(
                        {
                            "participant_id": pid,
                            "session_id": session,
                            "acq_time": (start + pd.Timedelta(days=float(t * 365.25))).strftime(
                                "%Y-%m-%dT%H:%M:%S"
                            ),
                            "age": round(float(a0 + t), 1),
                            "edss": edss[k],
                            "time_years": float(t),
                        }
                    )
                    if upgrades:
                        visits[-1]["scanner"] = f"{site.name}-{2 if upgraded else 1}"
                    for region in regions:
                        truth = (
                            float(TISSUES[_TISSUE[region]].age(a0 + t))
                            + offsets[region]
                            + slopes[region] * t
                        )
                        if ms and planted:
                            truth += ms_r2star_change(
                                _TISSUE[region],
                                disease_duration=dd0 + t,
                                edss=float(edss[k]),
                                progressive=label in ("SPMS", "PPMS"),
                            )
                        observed = truth * site.bias * factors[k] * (
                            factor if upgraded else 1.0
                        ) + rng.normal(0.0, noise_sd * site.noise)
                        rows.append((pid, session, region, "both", observed, 200, truth, t))
    long = pd.DataFrame(
        rows,
        columns=[
            *("participant_id", "session", "region", "hemisphere", "r2star_median"),
            *("n_voxels", "truth", "time_years"),
        ],
    )
    return long, pd.DataFrame(people), pd.DataFrame(visits)
