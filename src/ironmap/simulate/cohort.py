"""A synthetic multicentre MS cohort: sites, participants and each subject's true parameters.

Everything is drawn from one seed through :class:`numpy.random.SeedSequence`, one child sequence
per subject, so a subject's data do not depend on how many workers generate the cohort.

Longitudinal cohorts (:func:`draw_sessions`) follow each participant over several sessions:
the same head (anatomy, grids, within-tissue texture) scanned again at the same site, with R2*
that changes as the truth model says it should at the new age, disease duration and EDSS
(healthy ageing everywhere; in MS the planted ``duration_slope`` per year of disease and
``edss_slope`` per EDSS point gained, :mod:`.tissue`), plus a biological random slope per
participant and tissue, and a new acquisition (noise, receive bias, shim) with a scan-rescan
factor on R2*. Session draws come from a stream of their own, so the baseline cohort of a seed
does not depend on the number of sessions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .signal import Protocol
from .tissue import (
    BIOLOGICAL_SD_SHARED,
    BIOLOGICAL_SD_TISSUE,
    TISSUES,
    ms_r2star_change,
)

__all__ = [
    "EDSS_PROGRESSION",
    "EDSS_RATING_SD",
    "FULL_ATROPHY",
    "INTERVAL_JITTER",
    "SCAN_RESCAN_CV",
    "SITES",
    "SLOPE_SD",
    "Session",
    "Site",
    "Subject",
    "draw_cohort",
    "draw_sessions",
    "draw_site_panel",
    "edss_course",
    "participants_table",
    "sessions_table",
    "subject_r2star",
    "ventricle_margin_mm",
]

#: The ``Subject.atrophy`` at which a participant's ventricles grow by the whole
#: ``--ventricle-margin`` (:func:`ventricle_margin_mm`).
FULL_ATROPHY = 0.2


@dataclass(frozen=True)
class Site:
    """A centre: its protocol, its R2* bias and how likely HC and MS participants come from it."""

    name: str
    protocol: Protocol
    r2star_bias: float
    weight_hc: float
    weight_ms: float


def _train(first_ms: float, spacing_ms: float, n: int) -> tuple[float, ...]:
    return tuple(round((first_ms + k * spacing_ms) * 1e-3, 7) for k in range(n))


#: Seven centres as in the 2014 study: 2-12 echoes (one dual-echo site), three vendors, 2-3 mm.
#: The dual-echo site samples 5 and 20 ms: two echoes far enough apart to measure R2* ~ 30 1/s.
SITES: tuple[Site, ...] = (
    Site("graz", Protocol(_train(5.0, 15.0, 2), (2, 2, 2), 100.0, "Siemens"), 1.00, 0.20, 0.16),
    Site("amsterdam", Protocol(_train(2.6, 4.6, 9), (2, 2, 2), 70.0, "GE"), 1.02, 0.10, 0.18),
    Site(
        "barcelona", Protocol(_train(3.0, 3.5, 12), (2, 2, 2), 60.0, "Siemens"), 0.99, 0.15, 0.14
    ),
    Site("london", Protocol(_train(4.0, 5.0, 6), (2, 2, 2), 80.0, "Philips"), 1.01, 0.12, 0.12),
    Site("milan", Protocol(_train(2.5, 3.0, 10), (2, 2, 3), 75.0, "Philips"), 0.98, 0.18, 0.10),
    Site("naples", Protocol(_train(5.0, 6.0, 5), (2, 2, 2), 100.0, "GE"), 1.00, 0.10, 0.15),
    Site("siena", Protocol(_train(3.5, 6.5, 4), (2, 2, 3), 110.0, "Siemens"), 1.01, 0.15, 0.15),
)

PHENOTYPES = ("RRMS", "SPMS", "PPMS")
#: Mean age at MS onset (years): a patient's age is onset + disease duration.
ONSET_AGE = 31.0


@dataclass(frozen=True)
class Subject:
    """One participant's demographics, clinical data and planted truth parameters."""

    label: str
    site: Site
    group: str  # "HC" or "MS"
    phenotype: str  # "n/a" for HC
    age: float
    sex: str
    disease_duration: float  # NaN for HC
    edss: float  # NaN for HC
    r2star_offset: dict[str, float]  # biological variation per tissue (1/s)
    lesion_count: int
    atrophy: float
    seed: np.random.SeedSequence

    @property
    def participant_id(self) -> str:
        return f"sub-{self.label}"

    @property
    def progressive(self) -> bool:
        return self.phenotype in ("SPMS", "PPMS")


def subject_r2star(subject: Subject) -> dict[str, float]:
    """Mean true R2* (1/s) of each tissue for this subject: age model + offset + MS effect."""
    out = {}
    for tissue, record in TISSUES.items():
        value = float(record.age(subject.age)) + subject.r2star_offset.get(tissue, 0.0)
        if subject.group == "MS":
            value += ms_r2star_change(
                tissue,
                disease_duration=subject.disease_duration,
                edss=subject.edss,
                progressive=subject.progressive,
                atrophy=subject.atrophy,
            )
        out[tissue] = value
    return out


def ventricle_margin_mm(subject: Subject, *, max_mm: float) -> float:
    """Periventricular atrophy of ``subject`` (mm): ``max_mm x min(atrophy / FULL_ATROPHY, 1)``.

    ``Subject.atrophy`` grows with disease duration and EDSS in MS and with age over 40 in
    everyone, so the enlargement is largest in long-standing progressive MS and close to 0 in
    young controls: the disease-correlated atrophy an atlas segmentation must follow
    (``ironmap simulate --ventricle-margin``; :func:`~.anatomy.enlarge_ventricles`).

    Parameters
    ----------
    subject : Subject
    max_mm : float
        Enlargement (mm) at ``atrophy >= FULL_ATROPHY``; 0 gives 0.

    Returns
    -------
    float
        Margin (mm), rounded to 0.1 mm.
    """
    if max_mm < 0 or not np.isfinite(max_mm):
        raise ValueError(f"max_mm must be a finite number >= 0, got {max_mm}")
    return round(float(max_mm * min(subject.atrophy / FULL_ATROPHY, 1.0)), 1)


def _biological_offsets(rng: np.random.Generator) -> dict[str, float]:
    """A subject's R2* offset per tissue (1/s): shared and tissue-specific parts.

    One standard normal per tissue; the shared part is their normalised sum, so the draws (and
    everything drawn after them) are those of a purely tissue-specific model.
    """
    z = {t: float(rng.normal()) for t in TISSUES}
    shared = sum(z.values()) / np.sqrt(len(z))
    return {
        t: float(record.age(45.0)) * (BIOLOGICAL_SD_TISSUE * z[t] + BIOLOGICAL_SD_SHARED * shared)
        for t, record in TISSUES.items()
    }


def draw_cohort(
    *, n_hc: int = 81, n_ms: int = 97, seed: int = 2014, sites: tuple[Site, ...] = SITES
) -> list[Subject]:
    """Draw the participants (demographics, clinical data, per-subject truth parameters).

    Distributions: HC age ~ N(40, 12), clipped to 18-75 years; MS phenotypes RRMS 60 %, SPMS
    25 %, PPMS 15 %; disease duration gamma-distributed with mean 8 (RRMS), 18 (SPMS) and 10
    (PPMS) years; MS age = onset + duration with onset ~ N(:data:`ONSET_AGE`, 7), clipped to
    18-75 years (duration shorter than age - 15; age-duration r ~ 0.7); EDSS correlated with
    duration and phenotype, in 0.5 steps; sites drawn with different weights for HC and MS.
    """
    if n_hc < 0 or n_ms < 0 or n_hc + n_ms == 0:
        raise ValueError(f"need a positive cohort size, got n_hc={n_hc}, n_ms={n_ms}")
    root = np.random.SeedSequence(seed)
    children = root.spawn(n_hc + n_ms + 1)
    rng = np.random.default_rng(children[-1])
    w_hc = np.array([s.weight_hc for s in sites])
    w_ms = np.array([s.weight_ms for s in sites])
    subjects = []
    order = rng.permutation(n_hc + n_ms)  # labels do not reveal the group
    for i in range(n_hc + n_ms):
        is_ms = i >= n_hc
        site = sites[
            rng.choice(len(sites), p=(w_ms if is_ms else w_hc) / (w_ms if is_ms else w_hc).sum())
        ]
        age = float(np.clip(rng.normal(42.0 if is_ms else 40.0, 10.0 if is_ms else 12.0), 18, 75))
        sex = "F" if rng.random() < (0.68 if is_ms else 0.55) else "M"
        offsets = _biological_offsets(rng)
        if is_ms:
            phenotype = PHENOTYPES[rng.choice(3, p=[0.6, 0.25, 0.15])]
            mean_dd = {"RRMS": 8.0, "SPMS": 18.0, "PPMS": 10.0}[phenotype]
            dd = float(rng.gamma(4.0, mean_dd / 4.0))
            # age = onset + duration (onset ~ N(ONSET_AGE, 7) from the same draw as the
            # age): duration rises with age (r ~ 0.7), as in every MS cohort
            onset = ONSET_AGE + 0.7 * (age - 42.0)
            age = float(np.clip(onset + dd, 18, 75))
            dd = float(min(dd, max(age - 15.0, 0.5)))
            base = {"RRMS": 1.0, "SPMS": 4.0, "PPMS": 3.5}[phenotype]
            edss = base + 0.12 * dd + rng.normal(0.0, 0.8)
            edss = float(np.clip(np.round(edss * 2) / 2, 0.0, 8.5)) + 0.0  # no "-0.0"
            lesions = int(rng.poisson(4.0 + 1.0 * dd))
            atrophy = float(np.clip(0.006 * dd + 0.01 * edss + rng.normal(0, 0.04), 0.0, 0.3))
        else:
            phenotype, dd, edss, lesions = "n/a", float("nan"), float("nan"), 0
            atrophy = float(np.clip(rng.normal(0.0, 0.005), 0.0, None))
        atrophy = min(atrophy + 0.002 * max(age - 40.0, 0.0), 0.3)  # ageing; at most 0.3
        subjects.append(
            Subject(
                label=f"{order[i] + 1:03d}",
                site=site,
                group="MS" if is_ms else "HC",
                phenotype=phenotype,
                age=round(age, 1),
                sex=sex,
                disease_duration=round(dd, 1),
                edss=edss,
                r2star_offset=offsets,
                lesion_count=lesions,
                atrophy=atrophy,
                seed=children[i],
            )
        )
    return sorted(subjects, key=lambda s: s.label)


def draw_site_panel(*, group: str = "MS", seed: int = 100) -> list[Subject]:
    """One participant of ``group`` per site (labels 001, 002, ...): every protocol once."""
    panel = []
    for i, site in enumerate(SITES):
        n_hc, n_ms = (1, 0) if group == "HC" else (0, 1)
        subject = draw_cohort(n_hc=n_hc, n_ms=n_ms, seed=seed + i, sites=(site,))[0]
        panel.append(dataclasses.replace(subject, label=f"{i + 1:03d}"))
    return panel


def participants_table(subjects: list[Subject]) -> pd.DataFrame:
    """``participants.tsv`` content (docs/conventions.md columns; NaN -> ``n/a`` on writing)."""
    return pd.DataFrame(
        {
            "participant_id": [s.participant_id for s in subjects],
            "age": [s.age for s in subjects],
            "sex": [s.sex for s in subjects],
            "group": [s.group for s in subjects],
            "phenotype": [s.phenotype for s in subjects],
            "disease_duration": [s.disease_duration for s in subjects],
            "edss": [s.edss for s in subjects],
            "site": [s.site.name for s in subjects],
        }
    )


# -- longitudinal cohorts --------------------------------------------------------------------

#: Mean and SD across patients of the yearly EDSS change (points per year), by phenotype.
EDSS_PROGRESSION: dict[str, tuple[float, float]] = {
    "CIS": (0.05, 0.05),
    "RRMS": (0.08, 0.10),
    "SPMS": (0.25, 0.15),
    "PPMS": (0.30, 0.15),
}
#: SD of an EDSS rating around the patient's course at a follow-up (then rounded to 0.5).
EDSS_RATING_SD = 0.3
#: Between-participant SD of the yearly R2* change of a tissue (1/s per year), around the
#: planted ageing and disease change: the biological random slope.
SLOPE_SD = 0.02
#: SD of the scan-rescan factor on measured R2* (repositioning, shim, scanner drift): 1 %.
SCAN_RESCAN_CV = 0.01
#: Each interval between sessions is ``interval_years * U(1 - j, 1 + j)``.
INTERVAL_JITTER = 0.2
#: Spawn key of the session stream (no cohort has this many participants).
_SESSION_STREAM = 2**32


@dataclass(frozen=True)
class Session:
    """One session of a participant: who they are then, when, and the scan's own randomness.

    Attributes
    ----------
    label : str
        Session label without ``ses-`` (``"01"``, ``"02"``, ...).
    subject : Subject
        The participant at this session: age, disease duration, EDSS and R2* offsets of the
        day; label, site, anatomy seed, lesions and atrophy of the baseline.
    time_years : float
        Years since the baseline session.
    acq_time : str
        ISO 8601 date-time of the session.
    r2star_factor : float
        Scan-rescan factor on measured R2* (1 at no variability), times a scanner upgrade's
        factor on sessions after it.
    seed : numpy.random.SeedSequence
        The acquisition's noise, receive bias and shim.
    scanner : str
        The scanner that acquired the session (``<site>-1``, ``<site>-2`` after an upgrade;
        ``""`` when no upgrade was simulated).
    """

    label: str
    subject: Subject
    time_years: float
    acq_time: str
    r2star_factor: float
    seed: np.random.SeedSequence
    scanner: str = ""


def edss_course(
    edss0: float, rate: float, times: np.ndarray, rng: np.random.Generator
) -> NDArray[np.float64]:
    """EDSS recorded at each session: baseline ``edss0``, then ``edss0 + rate t`` plus a rating
    error of SD :data:`EDSS_RATING_SD`, rounded to 0.5 and kept within 0-9.5.

    Parameters
    ----------
    edss0 : float
        Baseline EDSS (points).
    rate : float
        Yearly change (points per year).
    times : ndarray, shape (k,)
        Years since baseline, ``times[0] == 0``.
    rng : numpy.random.Generator
        Draws ``k - 1`` normals.
    """
    times = np.asarray(times, dtype=np.float64)
    later = edss0 + rate * times[1:] + rng.normal(0.0, EDSS_RATING_SD, times.size - 1)
    rounded = np.clip(np.round(later * 2) / 2, 0.0, 9.5) + 0.0
    return np.concatenate([[edss0], rounded])


def draw_sessions(
    subjects: list[Subject],
    *,
    n_sessions: int,
    interval_years: float,
    seed: int,
    slope_sd: float = SLOPE_SD,
    scan_rescan_cv: float = SCAN_RESCAN_CV,
    upgrade: tuple[str, str, float] | None = None,
) -> list[list[Session]]:
    """Each participant's sessions: the same head followed over ``n_sessions`` scans.

    Intervals are ``interval_years * U(0.8, 1.2)`` (unequal); the baseline date is drawn in
    2016-2019. At each session age and disease duration advance by the time since baseline,
    EDSS follows :func:`edss_course` with a yearly rate drawn from
    :data:`EDSS_PROGRESSION` (patients only), and each tissue's R2* offset gains a biological
    random slope ``N(0, slope_sd)`` (1/s per year) times the time. Every session, the baseline
    included, gets a scan-rescan factor ``N(1, scan_rescan_cv)`` on R2* and its own acquisition
    seed.

    Parameters
    ----------
    subjects : list of Subject
        The baseline cohort (:func:`draw_cohort`).
    n_sessions : int
        Sessions per participant (>= 1).
    interval_years : float
        Mean years between sessions (> 0).
    seed : int
        The cohort's seed; the sessions draw from their own stream of it.
    slope_sd : float
        Biological random-slope SD (1/s per year).
    scan_rescan_cv : float
        SD of the scan-rescan R2* factor.
    upgrade : tuple (site, date, factor), optional
        A scanner upgrade: sessions at ``site`` on or after ``date`` (ISO 8601) have their R2*
        multiplied by ``factor`` and the scanner ``<site>-2`` (before: ``<site>-1``; other
        sites ``<site>-1``), as a new scanner or software version would. Draws nothing
        random: the sessions are otherwise those drawn without it.

    Returns
    -------
    list of list of Session
        Per participant, in the order of ``subjects``, its sessions in time order.
    """
    if n_sessions < 1 or not interval_years > 0:
        raise ValueError(
            f"need n_sessions >= 1 and interval_years > 0, got {n_sessions}, {interval_years}"
        )
    stream = np.random.SeedSequence(seed, spawn_key=(_SESSION_STREAM,))
    children = stream.spawn(len(subjects))
    out = []
    for subject, child in zip(subjects, children, strict=True):
        rng = np.random.default_rng(child)
        gaps = interval_years * rng.uniform(
            1 - INTERVAL_JITTER, 1 + INTERVAL_JITTER, n_sessions - 1
        )
        times = np.concatenate([[0.0], np.cumsum(gaps)])
        slopes = {t: float(rng.normal(0.0, slope_sd)) for t in subject.r2star_offset}
        if subject.group == "MS":
            mean, sd = EDSS_PROGRESSION.get(subject.phenotype, EDSS_PROGRESSION["RRMS"])
            edss = edss_course(subject.edss, float(rng.normal(mean, sd)), times, rng)
        else:
            edss = np.full(n_sessions, np.nan)
        start = pd.Timestamp("2016-01-01") + pd.Timedelta(days=float(rng.uniform(0, 4 * 365)))
        start = start.replace(hour=8) + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        factors = 1.0 + rng.normal(0.0, scan_rescan_cv, n_sessions)
        seeds = child.spawn(n_sessions)
        sessions = []
        for k, t in enumerate(times):
            then = dataclasses.replace(
                subject,
                age=subject.age + float(t),
                disease_duration=subject.disease_duration + float(t),
                edss=float(edss[k]),
                r2star_offset={
                    tissue: value + slopes[tissue] * t
                    for tissue, value in subject.r2star_offset.items()
                },
            )
            when = start + pd.Timedelta(days=float(t * 365.25))
            scanner, factor = "", 1.0
            if upgrade is not None:
                site, date, change = upgrade
                upgraded = subject.site.name == site and when >= pd.Timestamp(date)
                scanner = f"{subject.site.name}-{2 if upgraded else 1}"
                factor = change if upgraded else 1.0
            sessions.append(
                Session(
                    label=f"{k + 1:02d}",
                    subject=then,
                    time_years=float(t),
                    acq_time=when.strftime("%Y-%m-%dT%H:%M:%S"),
                    r2star_factor=float(factors[k]) * factor,
                    seed=seeds[k],
                    scanner=scanner,
                )
            )
        out.append(sessions)
    return out


def sessions_table(sessions: list[Session]) -> pd.DataFrame:
    """``sub-<label>_sessions.tsv`` content: ``session_id, acq_time, age, edss`` (and
    ``scanner`` when the sessions name one)."""
    table = pd.DataFrame(
        {
            "session_id": [f"ses-{s.label}" for s in sessions],
            "acq_time": [s.acq_time for s in sessions],
            "age": [round(s.subject.age, 1) for s in sessions],
            "edss": [s.subject.edss for s in sessions],
        }
    )
    if any(s.scanner for s in sessions):
        table["scanner"] = [s.scanner or np.nan for s in sessions]
    return table
