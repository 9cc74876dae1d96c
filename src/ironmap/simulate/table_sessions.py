"""Longitudinal table-level cohorts (no images): regional R2* of every session, with the truth.

:func:`simulate_table_sessions` follows a cohort of :mod:`.tables` over several sessions, with
the change the image simulator plants (:mod:`.cohort`): healthy ageing, in patients the planted
change per year of disease and per EDSS point gained, a biological random slope, a scan-rescan
factor, unequal intervals, drop-out and scanner upgrades. For the longitudinal statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .cohort import EDSS_PROGRESSION, INTERVAL_JITTER, SCAN_RESCAN_CV, SLOPE_SD, edss_course
from .tables import _TISSUE, REGIONS
from .tissue import BIOLOGICAL_SD, TISSUES, ms_r2star_change

if TYPE_CHECKING:
    from .tables import TableSite

__all__ = ["simulate_table_sessions"]


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
