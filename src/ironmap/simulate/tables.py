"""Table-level cohorts (no images): regional R2* per participant with known truth.

For the statistics of the group stage: calibration (false-positive rate, z-scores, coverage,
power) is measured over thousands of seeded cohorts, which image simulation cannot afford.
Each participant's regional R2* (1/s) is::

    (healthy(age) + biological offset + MS effect) * site bias + measurement noise * site noise

with the healthy ageing curves of :mod:`.tissue` (NAWM: cerebral white matter). Site bias is
multiplicative (scanner R2* differences scale with R2*), a site may be noisier, patients may
be older than controls and concentrated at some sites, and a phenotype may be more variable.

Such a cohort followed over several sessions, with the change the image simulator plants, is
drawn by :func:`~.table_sessions.simulate_table_sessions`; regional susceptibility beside its
R2* by :func:`~.table_chi.add_chi` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..regions.catalog import MEASURED_ROWS
from .table_chi import CHI_HEALTHY, add_chi
from .tissue import BIOLOGICAL_SD, TISSUES, tissue_of

__all__ = [
    "CHI_HEALTHY",
    "PREDICTOR_REF",
    "ClinicalModel",
    "TableSite",
    "add_chi",
    "planted_change",
    "simulate_table_cohort",
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
