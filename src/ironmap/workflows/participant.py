"""``ironmap run BIDS_DIR OUTPUT_DIR participant``: maps, regional and lesion R2*, volumes.

Per participant (and session): fit R2* inside the intracranial mask of the segmentation (or a
magnitude-based head mask), transfer the segmentation and lesion mask onto the R2* grid with
partial-volume fractions, and write maps, ``_regions.tsv``, ``_volumes.tsv``, a QC figure and a
provenance record (the steps are in :mod:`.session`). A participant whose provenance matches is
skipped; a failing participant is reported and the others go on.

The stage writes only into a new or empty folder or ironmap's own derivatives dataset, never
inside the input dataset (:func:`~ironmap.io.check_output_dir`), and holds
``OUTPUT_DIR/.ironmap.lock`` while it writes (:func:`~ironmap.io.output_lock`).
"""

from __future__ import annotations

import logging
import re
import resource
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..defaults import (
    B0_CORRECTIONS,
    CSF_EXCLUSIONS,
    MIN_FRACTION,
    QSM_MODES,
    SIGMA_MAPS,
    check_coils,
)
from ..errors import InputError, IronmapError, IronmapWarning
from ..fitting import get_solver
from ..io import (
    SessionInputs,
    check_output_dir,
    find_inputs,
    output_lock,
    write_bidsignore,
    write_dataset_description,
)
from ..iron import CALIBRATIONS
from ..parallel import make_executor, map_ordered
from ..segmentation.coregister import DEFAULT_REGISTER_SEGMENTATION, REGISTER_SEGMENTATION
from ..segmentation.strategies import SEGMENTATIONS
from .session import FAILED_VOXELS_WARN, ParticipantResult, process_session

__all__ = [
    "ParticipantConfig",
    "ParticipantResult",
    "needs_attention",
    "run_participant",
    "summary",
    "summary_table",
    "warning_lines",
]

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class ParticipantConfig:
    """Options of the participant stage; validated on construction (one-line InputError).

    Attributes
    ----------
    fit_method : str
        R2* estimator, one of :data:`ironmap.fitting.METHODS`.
    min_fraction : float
        A voxel counts for a structure when at least this share of it lies inside, in (0, 1].
    erode_mm : float
        Erode each structure by this radius (mm) before its statistics, >= 0.
    b0_correction : str
        One of :data:`ironmap.defaults.B0_CORRECTIONS`.
    sigma_map : str
        One of :data:`ironmap.defaults.SIGMA_MAPS`: one noise sigma (``off``) or a local map.
    iron_calibration : str or None
        One of :data:`ironmap.iron.CALIBRATIONS`, or None for no iron columns.
    segmentation : str
        One of :data:`ironmap.segmentation.strategies.SEGMENTATIONS`.
    n_jobs : int
        Participants processed at once, >= 1.
    csf_exclusion : str
        One of :data:`ironmap.defaults.CSF_EXCLUSIONS`: leave out a region's voxels whose R2*
        says CSF (``on``) or not.
    freesurfer_dir : Path or None
        A FreeSurfer ``SUBJECTS_DIR`` whose ``sub-<label>/mri/aseg.mgz`` (and the like,
        :mod:`ironmap.io.freesurfer`) are the participants' segmentations.
    register_segmentation : str
        One of :data:`ironmap.segmentation.coregister.REGISTER_SEGMENTATION`: register the
        user dseg's own image (T1w, FLAIR) to the GRE (``auto``, ``always``) or not.
    qsm : str
        One of :data:`ironmap.defaults.QSM_MODES`: susceptibility maps and regional chi from
        the phase echoes or an external Chimap (``auto``), or none (``off``).
    """

    bids_dir: Path
    output_dir: Path
    participant_labels: tuple[str, ...] = ()
    derivatives: tuple[Path, ...] = ()
    fit_method: str = "auto"
    min_fraction: float = MIN_FRACTION
    erode_mm: float = 0.0
    b0_correction: str = "auto"
    iron_calibration: str | None = None
    segmentation: str = "auto"
    n_jobs: int = 1
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    force: bool = False
    coils: int | None = None
    sigma_map: str = "off"
    csf_exclusion: str = "on"
    freesurfer_dir: Path | None = None
    register_segmentation: str = DEFAULT_REGISTER_SEGMENTATION
    qsm: str = "auto"

    def __post_init__(self) -> None:
        get_solver(self.fit_method)
        check_coils(self.coils)
        _choice("--sigma-map", self.sigma_map, SIGMA_MAPS)
        if not 0.0 < self.min_fraction <= 1.0:
            raise InputError(f"--min-fraction must be in (0, 1], got {self.min_fraction}")
        if not self.erode_mm >= 0:
            raise InputError(f"--erode-mm must be >= 0, got {self.erode_mm}")
        _choice("--b0-correction", self.b0_correction, B0_CORRECTIONS)
        _choice("--segmentation", self.segmentation, SEGMENTATIONS)
        _choice("--csf-exclusion", self.csf_exclusion, CSF_EXCLUSIONS)
        _choice("--qsm", self.qsm, QSM_MODES)
        _choice("--register-segmentation", self.register_segmentation, REGISTER_SEGMENTATION)
        if self.iron_calibration is not None:
            _choice("--iron-calibration", self.iron_calibration, tuple(CALIBRATIONS))
        if self.n_jobs < 1:
            raise InputError(f"--n-jobs must be >= 1, got {self.n_jobs}")


def _choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def _one(inputs: SessionInputs, config: ParticipantConfig) -> ParticipantResult:
    name = inputs.name
    with warnings.catch_warnings(record=True) as caught:  # reported by the parent process
        warnings.simplefilter("always", IronmapWarning)
        try:
            if inputs.problem:  # e.g. no MEGRE files: this participant fails, the others run
                raise InputError(inputs.problem)
            result = process_session(inputs, config)
        except (IronmapError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result = ParticipantResult(name, "failed", message)
        except Exception as exc:  # a bug must not stop the other participants
            first = str(exc).splitlines()[0] if str(exc) else ""
            result = ParticipantResult(
                name, "failed", f"internal error {type(exc).__name__}: {first}"
            )
    result.warnings = [str(w.message).splitlines()[0] for w in caught]
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def run_participant(config: ParticipantConfig) -> list[ParticipantResult]:
    """Run the participant stage; returns one result per participant/session.

    A participant that fails (its inputs, its outputs) is a ``"failed"`` result whose ``error``
    is one line; the caller reports it (this function does not log it, so it is said once).

    Raises
    ------
    InputError
        A problem of the whole run: an option, the dataset (see
        :func:`~ironmap.io.find_inputs`), an ``OUTPUT_DIR`` ironmap must not write
        (:func:`~ironmap.io.check_output_dir`).
    IronmapError
        Another ironmap is writing ``OUTPUT_DIR``, it cannot be written, or a worker died.
    """
    if config.segmentation == "atlas":
        from ..segmentation.atlas import load_atlas
        from ..segmentation.register import check_ants

        load_atlas()  # fail now, in one line, when the atlas extra is missing
        check_ants()
    out = Path(config.output_dir)
    check_output_dir(out, bids_dir=config.bids_dir)
    sessions = find_inputs(
        config.bids_dir,
        participant_labels=config.participant_labels or None,
        derivatives=config.derivatives,
        exclude=[out],
        freesurfer_dirs=[config.freesurfer_dir] if config.freesurfer_dir else (),
    )
    with output_lock(out, stage="participant", create=True):
        write_dataset_description(out, bids_dir=config.bids_dir)
        write_bidsignore(out)
        return _run_sessions(sessions, config)


def _run_sessions(
    sessions: list[SessionInputs], config: ParticipantConfig
) -> list[ParticipantResult]:
    """:func:`process_session` on every session, on the executor the options ask for."""
    executor = make_executor(
        n_jobs=config.n_jobs,
        scheduler_address=config.scheduler_address,
        scheduler_file=config.scheduler_file,
    )
    log.info("participant stage: %d participant(s)/session(s) on %r", len(sessions), executor)
    try:
        return map_ordered(
            partial(_one, config=config),
            sessions,
            executor=executor,
            desc="participants",
            failed=_is_failed,
        )
    except BrokenProcessPool as exc:
        raise IronmapError(
            "a worker process died (killed, or out of memory); rerun the same command to "
            "resume: finished participants are kept"
        ) from exc
    finally:
        if hasattr(executor, "close"):
            executor.close()


def _is_failed(result: ParticipantResult) -> bool:
    return result.status == "failed"


def summary_table(results: list[ParticipantResult]) -> pd.DataFrame:
    """Per status: count, mean seconds per step, the largest worker peak RSS (MB), and the
    largest share of a participant's fit-mask voxels that could not be fitted (%)."""
    rows = []
    for status in ("done", "skipped", "failed"):
        part = [r for r in results if r.status == status]
        if not part:
            continue
        times = pd.DataFrame([r.seconds for r in part])
        row = {"status": status, "participants": len(part)}
        steps = ["load", "resample", "fit", "stats"]
        if "registration" in times:
            steps.insert(1, "registration")
        if "qsm" in times:  # susceptibility maps (phase echoes or an external Chimap)
            steps.insert(-1, "qsm")
        for step in steps:
            row[f"{step}_s"] = float(times[step].mean()) if step in times else np.nan
        row["peak_rss_mb"] = _largest([r.peak_rss_mb for r in part])
        row["max_failed_voxels_pct"] = _largest([100 * r.failed_fraction for r in part])
        rows.append(row)
    return pd.DataFrame(rows)


def _largest(values: list[float]) -> float:
    """The largest finite value (NaN when there is none, without numpy's warning)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(max(finite)) if finite else float("nan")


def needs_attention(results: list[ParticipantResult]) -> bool:
    """True when a participant failed or has more than 1 % of its fit voxels failed."""
    return any(r.status == "failed" or r.failed_fraction > FAILED_VOXELS_WARN for r in results)


def summary(results: list[ParticipantResult]) -> str:
    """One line: how many were done, skipped and failed."""
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def warning_lines(results: list[ParticipantResult], *, verbose: bool = False) -> list[str]:
    """The participants' warnings for the console: every one in full when ``verbose``, else one
    line per participant with warnings: its only warning in full, or how many and the gist of
    each (:func:`_gist`), ``"sub-01: 3 warnings: ...; ...; ... (-v: in full)"``."""
    if verbose:
        return [message for r in results for message in r.warnings]
    lines = []
    for r in results:
        if len(r.warnings) == 1:
            lines.append(f"{r.name}: {r.warnings[0].removeprefix(f'{r.name}: ')}")
        elif r.warnings:
            gists = "; ".join(_gist(m.removeprefix(f"{r.name}: ")) for m in r.warnings)
            lines.append(f"{r.name}: {len(r.warnings)} warnings: {gists} (-v: in full)")
    return lines


def _gist(message: str, width: int = 80) -> str:
    """A warning's first clause (up to ``"; "``), file names without their folders, at most
    ``width`` characters."""
    text = re.sub(r"(^|\s)/(?:[^/\s]+/)+", r"\1", message).split("; ")[0]
    return text if len(text) <= width else text[: width - 3] + "..."
