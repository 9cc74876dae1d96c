"""``ironmap simulate``: write a synthetic multicentre BIDS cohort and its ground truth."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputError
from ..io import write_json
from ..parallel import map_ordered
from ..simulate import draw_cohort, generate_subject, participants_table, truth_summary
from ..simulate.bids import json_safe, write_dataset_files, write_sessions_file, write_subject
from ..simulate.cohort import (
    EDSS_PROGRESSION,
    EDSS_RATING_SD,
    FULL_ATROPHY,
    INTERVAL_JITTER,
    SCAN_RESCAN_CV,
    SITES,
    SLOPE_SD,
    Session,
    Subject,
    draw_sessions,
    sessions_table,
    ventricle_margin_mm,
)
from ..simulate.tissue import AGE_MODELS, ATROPHY_REF, MS_EFFECTS, PROGRESSIVE_FACTOR

__all__ = [
    "ANATOMIES",
    "MAX_VENTRICLE_MARGIN_MM",
    "QUICK_COHORT",
    "SimulateConfig",
    "run_simulate",
    "truth_path",
]

#: ``--anatomy`` choices: the ellipsoid head phantom, or the bundled atlas deformed per subject.
ANATOMIES = ("phantom", "atlas")

#: Largest ``--ventricle-margin`` (mm): at 6 mm the simulated caudate is down to about 1 mL.
MAX_VENTRICLE_MARGIN_MM = 6.0

#: ``(n_hc, n_ms)`` of ``--quick`` cohorts.
QUICK_COHORT = (10, 10)

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class SimulateConfig:
    """Options of ``ironmap simulate``; validated on construction (one-line InputError)."""

    out_bids: Path
    n_hc: int = 81
    n_ms: int = 97
    seed: int = 2014
    n_jobs: int = 1
    force: bool = False
    with_phase: bool = False
    anatomy: str = "phantom"
    with_t1w: bool = False
    sessions: int = 1
    interval_years: float = 2.0
    ventricle_margin_mm: float = 0.0
    scanner_upgrade: str = ""

    def __post_init__(self) -> None:
        if self.n_hc < 0 or self.n_ms < 0 or self.n_hc + self.n_ms < 1:
            raise InputError(
                f"need at least one participant, got --n-hc {self.n_hc} --n-ms {self.n_ms}"
            )
        if self.n_jobs < 1:
            raise InputError(f"--n-jobs must be >= 1, got {self.n_jobs}")
        if self.anatomy not in ANATOMIES:
            raise InputError(
                f"--anatomy must be one of {', '.join(ANATOMIES)}, got {self.anatomy!r}"
            )
        if self.sessions < 1:
            raise InputError(f"--sessions must be >= 1, got {self.sessions}")
        if not (self.interval_years > 0 and np.isfinite(self.interval_years)):
            raise InputError(f"--interval-years must be > 0, got {self.interval_years}")
        self.upgrade()  # checks --scanner-upgrade
        if not 0.0 <= self.ventricle_margin_mm <= MAX_VENTRICLE_MARGIN_MM:
            raise InputError(
                f"--ventricle-margin must be between 0 and {MAX_VENTRICLE_MARGIN_MM:g} mm (the "
                f"caudate is gone beyond), got {self.ventricle_margin_mm}"
            )

    def upgrade(self) -> tuple[str, str, float] | None:
        """``--scanner-upgrade SITE:DATE:FACTOR`` as (site, ISO date, factor), None without."""
        if not self.scanner_upgrade:
            return None
        parts = str(self.scanner_upgrade).split(":")
        names = [s.name for s in SITES]
        try:
            site, date, factor = parts
            pd.Timestamp(date)
            factor = float(factor)
        except ValueError:
            raise InputError(
                "--scanner-upgrade must be SITE:YYYY-MM-DD:FACTOR (e.g. "
                f"{names[0]}:2020-06-01:1.03), got {self.scanner_upgrade!r}"
            ) from None
        if site not in names or not (factor > 0 and np.isfinite(factor)):
            raise InputError(
                f"--scanner-upgrade: site must be one of {', '.join(names)} and the factor > 0, "
                f"got {self.scanner_upgrade!r}"
            )
        if self.sessions < 2:
            raise InputError("--scanner-upgrade needs --sessions 2 or more")
        return site, date, factor


def truth_path(out_bids: Path) -> Path:
    """``OUT_BIDS/../<name>_truth.json``."""
    out_bids = Path(out_bids)
    return out_bids.parent / f"{out_bids.name}_truth.json"


def _one_subject(
    subject: Subject,
    root: Path,
    with_phase: bool = False,
    anatomy: str = "phantom",
    with_t1w: bool = False,
    max_margin_mm: float = 0.0,
    scan: Session | None = None,
) -> dict:
    """Draw and write one participant (``scan``: a later session of the same head and
    atrophy); its truth record."""
    margin = ventricle_margin_mm(subject, max_mm=max_margin_mm)
    data = generate_subject(
        subject,
        with_phase=with_phase,
        anatomy=anatomy,
        with_t1w=with_t1w,
        ventricle_margin_mm=margin,
        scan=scan,
    )
    write_subject(root, subject, data, session=None if scan is None else scan.label)
    truth = truth_summary(subject, data)
    if max_margin_mm > 0:
        truth["ventricle_margin_mm"] = margin
    return truth


def _one_session(session: Session, root: Path, **options) -> dict:
    """One session of a longitudinal cohort: the same head, scanned again."""
    return {
        **_one_subject(session.subject, root, scan=session, **options),
        "session": f"ses-{session.label}",
        "time_years": session.time_years,
        "acq_time": session.acq_time,
        "scan_r2star_factor": session.r2star_factor,
    }


def _longitudinal_truth(config: SimulateConfig, truths: list[dict]) -> dict:
    """The truth JSON's ``longitudinal`` record and its per-participant ``subjects``."""
    subjects: dict[str, dict] = {}
    for truth in truths:
        pid = truth["participant_id"]
        record = subjects.setdefault(pid, {**truth, "sessions": {}})
        record["sessions"][truth["session"]] = truth
    model = {
        "sessions": config.sessions,
        "interval_years": config.interval_years,
        "interval_jitter": f"each interval x U({1 - INTERVAL_JITTER:g}, {1 + INTERVAL_JITTER:g})",
        "annual_change": "healthy ageing (age_models at the age of each session); in MS also "
        "duration_slope per year of disease and edss_slope per EDSS point gained (ms_effects); "
        "plus a biological random slope per participant and tissue",
        "random_slope_sd": SLOPE_SD,
        "scan_rescan_cv": SCAN_RESCAN_CV,
        "edss_progression": {k: {"mean": m, "sd": sd} for k, (m, sd) in EDSS_PROGRESSION.items()},
        "edss_rating_sd": EDSS_RATING_SD,
        "same_head": "anatomy, grids, lesions and within-tissue texture of the baseline; a new "
        "acquisition (noise, receive bias, shim) per session",
    }
    return {"longitudinal": model, "subjects": subjects}


def run_simulate(config: SimulateConfig) -> Path:
    """Generate the cohort; returns the path of the truth JSON."""
    root = Path(config.out_bids)
    if config.anatomy == "atlas":
        from ..segmentation.atlas import load_atlas

        load_atlas()  # one-line error now when the atlas extra is missing
    truth_file = truth_path(root)
    if root.exists() and any(root.iterdir()):
        if not config.force:
            raise InputError(f"{root} exists and is not empty; pass --force to replace it")
        shutil.rmtree(root)
    subjects = draw_cohort(n_hc=config.n_hc, n_ms=config.n_ms, seed=config.seed)
    root.mkdir(parents=True, exist_ok=True)
    write_dataset_files(root, participants_table(subjects))
    log.info("simulating %d participants into %s", len(subjects), root)
    options = {"with_phase": config.with_phase, "anatomy": config.anatomy}
    options["with_t1w"] = config.with_t1w
    options["max_margin_mm"] = config.ventricle_margin_mm
    if config.sessions == 1:
        truths = map_ordered(
            partial(_one_subject, root=root, **options),
            subjects,
            n_jobs=config.n_jobs,
            desc="simulated participants",
        )
        per_subject = {"subjects": {t["participant_id"]: t for t in truths}}
    else:
        sessions = draw_sessions(
            subjects,
            n_sessions=config.sessions,
            interval_years=config.interval_years,
            seed=config.seed,
            upgrade=config.upgrade(),
        )
        for subject, visits in zip(subjects, sessions, strict=True):
            write_sessions_file(root, subject.participant_id, sessions_table(visits))
        truths = map_ordered(
            partial(_one_session, root=root, **options),
            [visit for visits in sessions for visit in visits],
            n_jobs=config.n_jobs,
            desc="simulated sessions",
        )
        per_subject = _longitudinal_truth(config, truths)
    truth = {
        "ironmap_version": __version__,
        "seed": config.seed,
        "n_hc": config.n_hc,
        "n_ms": config.n_ms,
        "units": {"r2star": "1/s", "volume": "mL", "age": "year", "te": "s"},
        "sites": {
            s.name: {
                "protocol": dataclasses.asdict(s.protocol),
                "r2star_bias": s.r2star_bias,
            }
            for s in SITES
        },
        "age_models": {k: dataclasses.asdict(m) for k, m in AGE_MODELS.items()},
        "ms_effects": {k: dataclasses.asdict(m) for k, m in MS_EFFECTS.items()},
        "ms_effect_formula": "duration_slope x disease_duration + edss_slope x edss + "
        f"atrophy_slope x (atrophy - {ATROPHY_REF:g}), times progressive_factor in SPMS/PPMS "
        "(1/s; atrophy: each participant's truth record; cortical GM % of ICV is about "
        "31 x (1 - atrophy), so atrophy_slope / -31 is the slope per % of ICV)",
        "progressive_factor": PROGRESSIVE_FACTOR,
        "phase": "dipole field of the susceptibility sources (simulate.susceptibility: air "
        "cavities, deep grey-matter iron, veins, lesion rims) and part-phase images"
        if config.with_phase
        else None,
        "anatomy_kind": config.anatomy,
        "anatomy": "deformed bundled atlas (simulate.atlas_anatomy)"
        if config.anatomy == "atlas"
        else "ellipsoid phantom (simulate.anatomy)",
        "lesion_r2star_factor": "max(0.88 - 0.008 * disease_duration, 0.6) x NAWM R2*",
        "scanner_upgrade": (
            dict(zip(("site", "date", "r2star_factor"), config.upgrade(), strict=True))
            if config.upgrade()
            else None
        ),
        **(
            {
                "periventricular_atrophy": {
                    "max_margin_mm": config.ventricle_margin_mm,
                    "margin": f"max_margin_mm x min(atrophy / {FULL_ATROPHY:g}, 1), per "
                    "participant (subjects.<id>.ventricle_margin_mm): lateral ventricles grown "
                    "into caudate, thalamus and cerebral white matter; true labels follow",
                }
            }
            if config.ventricle_margin_mm > 0
            else {}
        ),
        **per_subject,
    }
    write_json(truth_file, json_safe(truth))
    return truth_file
