"""``ironmap run BIDS_DIR OUTPUT_DIR group``: the cohort statistics and the report.

Reads ``participants.tsv`` and the participant-stage tables, runs
:func:`ironmap.cohort.analysis.analyse_cohort` on each participant's baseline session and, when
participants have several timed sessions, :func:`ironmap.cohort.longitudinal.analyse_longitudinal`
on all of them, and writes ``OUTPUT_DIR/group/`` (:data:`ironmap.io.derivatives.GROUP_TABLES`)
and ``OUTPUT_DIR/report.html``. No statistics live here.

Like the participant stage, the group stage resumes: ``group/provenance.json`` records the
ironmap version, the SHA-256 of ``participants.tsv``, of every participant table and sessions
file it read (keyed by file name) and the options. Outputs with the same record are kept (the
tables are read back); outputs of other inputs or options, or without a record (an older
ironmap), are replaced only with ``force``. It writes only into ironmap's own derivatives
dataset and holds ``OUTPUT_DIR/.ironmap.lock`` while it runs.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from ..cohort import collect_regions, read_participants, subjects_table
from ..cohort.analysis import (
    CohortAnalysis,
    analyse_cohort,
    analyses_run,
    harmonization_description,
    participant_flow,
)
from ..cohort.lesions import LESION_MODEL_COLUMNS, lesion_models
from ..cohort.longitudinal import LongitudinalAnalysis, analyse_longitudinal
from ..cohort.qc import collect_protocols
from ..cohort.sessions import collect_timing
from ..cohort.tables import collect_all_sessions, collect_lesions, missing_outputs
from ..defaults import MIN_VOXELS
from ..errors import InputError
from ..io import check_output_dir, output_lock, write_bidsignore, write_json, write_tsv
from ..io.derivatives import (
    GROUP_DIR,
    GROUP_PROVENANCE,
    GROUP_TABLES,
    GROUP_TABLES_DIR,
    HARMONIZATION_JSON,
    REPORT,
    clear_group_figures,
    group_path,
    read_tsv,
    report_outputs,
    tsv_sidecar_path,
)
from ..report.qc_index import write_qc_index
from .group_chi import _chi_analysis, _noting, _with_chi
from .group_resume import _not_run, _provenance, _up_to_date

__all__ = ["GroupConfig", "GroupResult", "run_group"]

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class GroupConfig:
    """Options of the group stage.

    Attributes
    ----------
    report : bool
        Write ``OUTPUT_DIR/report.html``.
    mixed : bool
        Fit the mixed-model sensitivity analysis (``group_comparison_mixed.tsv``).
    force : bool
        Recompute and overwrite group outputs of other inputs or options, or without a
        provenance record.
    min_voxels : int
        Minimum-voxel rule (``--min-voxels``): a participant's structure with fewer R2* voxels
        in either hemisphere enters no group statistics
        (:func:`ironmap.cohort.analysis.analyse_cohort`); 0 turns the rule off.
    """

    bids_dir: Path
    output_dir: Path
    report: bool = True
    mixed: bool = True
    force: bool = False
    min_voxels: int = MIN_VOXELS

    def __post_init__(self) -> None:
        if isinstance(self.min_voxels, bool) or not isinstance(self.min_voxels, int):
            raise InputError(f"--min-voxels must be an integer >= 0, got {self.min_voxels!r}")
        if self.min_voxels < 0:
            raise InputError(f"--min-voxels must be an integer >= 0, got {self.min_voxels}")


@dataclass
class GroupResult:
    """The group tables (pandas DataFrames) and where the report was written.

    ``skipped`` is True when the outputs were up to date and read back from ``OUTPUT_DIR``;
    ``analysis`` and ``trend`` (the in-memory cross-sectional and longitudinal models) are then
    None. ``longitudinal`` and ``longitudinal_sessions`` are empty (columns only) when no
    participant has two timed sessions. ``lesions`` holds the baseline ``_lesions.tsv`` rows of
    the analysed participants (for the report; empty when read back or without lesion tables).
    ``analyses``: :func:`ironmap.cohort.analysis.analyses_run` (the tables of an analysis that
    did not run are not written, and are empty when read back); ``min_voxels``: the
    minimum-voxel rule's threshold.
    """

    regions: pd.DataFrame
    subjects: pd.DataFrame
    flow: pd.DataFrame
    age_model: pd.DataFrame
    harmonization: pd.DataFrame
    comparison: pd.DataFrame
    comparison_mixed: pd.DataFrame
    determinants: pd.DataFrame
    participant_qc: pd.DataFrame
    longitudinal: pd.DataFrame
    longitudinal_sessions: pd.DataFrame
    lesion_models: pd.DataFrame
    analysis: CohortAnalysis | None
    report: Path | None
    skipped: bool = False
    trend: LongitudinalAnalysis | None = None
    lesions: pd.DataFrame = field(default_factory=pd.DataFrame)
    analyses: dict = field(default_factory=dict)
    min_voxels: int = MIN_VOXELS
    # the same analyses on regional susceptibility (empty without chi in the regions tables)
    age_model_chi: pd.DataFrame = field(default_factory=pd.DataFrame)
    harmonization_chi: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparison_chi: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparison_mixed_chi: pd.DataFrame = field(default_factory=pd.DataFrame)
    determinants_chi: pd.DataFrame = field(default_factory=pd.DataFrame)
    chi: CohortAnalysis | None = None


def run_group(config: GroupConfig) -> GroupResult:
    """Run the group stage, or read its outputs back when they are up to date.

    Raises
    ------
    InputError
        An ``OUTPUT_DIR`` ironmap must not write, bad cohort data, or group outputs of other
        inputs or options (or without provenance) and ``force`` not given.
    IronmapError
        Another ironmap is writing ``OUTPUT_DIR``, or it cannot be written.
    """
    out = Path(config.output_dir)
    check_output_dir(out, bids_dir=config.bids_dir)
    table_path = Path(config.bids_dir) / "participants.tsv"
    participants = read_participants(table_path)
    if not out.is_dir():
        raise InputError(
            f"{out}: No such folder; run the participant stage first "
            "(ironmap run BIDS_DIR OUTPUT_DIR participant)"
        )
    with output_lock(out, stage="group"):
        provenance = _provenance(config, table_path)
        if _up_to_date(out, provenance, config):
            log.info("group stage: outputs in %s are up to date", out / GROUP_DIR)
            return _read_back(out)
        result = _analyse(config, participants, table_path)
        _write(out, result, provenance, config)
    return result


def _read_back(out: Path) -> GroupResult:
    """The group tables as written (empty where an analysis did not run), and the report."""
    record = json.loads(group_path(out, GROUP_PROVENANCE).read_text())
    tables = {
        key: read_tsv(path) if (path := group_path(out, name)).exists() else pd.DataFrame()
        for key, name in GROUP_TABLES.items()
    }
    report = out / REPORT
    return GroupResult(
        **tables,
        analysis=None,
        report=report if report.exists() else None,
        skipped=True,
        analyses=record.get("analyses") or {},
        min_voxels=(record.get("options") or {}).get("min_voxels", MIN_VOXELS),
    )


def _analyse(config: GroupConfig, participants: pd.DataFrame, table_path: Path) -> GroupResult:
    """Collect the participant tables and run the cohort statistics."""
    out = Path(config.output_dir)
    regions = collect_regions(out, bids_dir=config.bids_dir)
    unknown = sorted(set(regions.participant_id) - set(participants.participant_id))
    if unknown:
        raise InputError(
            f"{table_path}: no row for {', '.join(unknown[:3])}"
            + (" ..." if len(unknown) > 3 else "")
            + "; every processed participant needs one"
        )
    subjects = subjects_table(participants, out, bids_dir=config.bids_dir, regions=regions)
    # Many small, tall least-squares problems: BLAS threads only add overhead (2-10x slower
    # SVDs at n = 3,000 with 2 OpenBLAS threads in benchmarks/group.py).
    said: list[str] = []
    try:
        with threadpool_limits(limits=1, user_api="blas"), _noting(said):
            analysis = analyse_cohort(
                regions, subjects, mixed=config.mixed, min_voxels=config.min_voxels
            )
    except InputError as err:  # the cohort's data are wrong: say which table holds them
        raise InputError(f"{table_path}: {err}") from None
    chi, chi_reason = _chi_analysis(config, regions, subjects, said)
    exclusions = {
        pid: "no participant-stage outputs: sub-*_regions.tsv not found in OUTPUT_DIR"
        for pid in missing_outputs(participants, regions)
    }
    exclusions.update(analysis.exclusions)
    trend = _longitudinal(config, participants, subjects, analysis)
    lesions, models = _lesion_models(config, subjects, exclusions)
    chi_tables = {}
    if chi is not None:
        chi_tables = {
            "age_model_chi": chi.age_model,
            "harmonization_chi": chi.harmonization,
            "comparison_chi": chi.comparison,
            "comparison_mixed_chi": chi.comparison_mixed,
            "determinants_chi": chi.determinants,
        }
    return GroupResult(
        regions=_with_chi(analysis.regions, chi),
        subjects=subjects.assign(
            analysed=~subjects["participant_id"].isin(exclusions),
            age_support=subjects["participant_id"].map(analysis.age_support),
        ),
        flow=participant_flow(
            participants,
            exclusions,
            age_support=analysis.age_support,
            age_limits=analysis.normative.age_limits,
            small=analysis.small,
            min_voxels=analysis.min_voxels,
        ),
        age_model=analysis.age_model,
        harmonization=analysis.harmonization,
        comparison=analysis.comparison,
        comparison_mixed=analysis.comparison_mixed,
        determinants=analysis.determinants,
        participant_qc=collect_protocols(out, regions, subjects),
        longitudinal=trend.table,
        longitudinal_sessions=trend.values,
        lesion_models=models,
        analysis=analysis,
        report=None,
        trend=trend,
        lesions=lesions,
        analyses=analyses_run(
            mixed=config.mixed,
            lesions=lesions,
            lesion_models=models,
            longitudinal_reason=trend.reason,
        )
        | {"chi": {"ran": True} if chi is not None else {"ran": False, "reason": chi_reason}},
        min_voxels=analysis.min_voxels,
        chi=chi,
        **chi_tables,
    )


def _lesion_models(
    config: GroupConfig, subjects: pd.DataFrame, exclusions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lesions one by one (baseline ``_lesions.tsv``), nested in the analysed participants:
    their rows and the models."""
    lesions = collect_lesions(config.output_dir, bids_dir=config.bids_dir)
    if lesions.empty:
        return lesions, pd.DataFrame(columns=list(LESION_MODEL_COLUMNS))
    lesions = lesions[~lesions["participant_id"].isin(exclusions)]
    with threadpool_limits(limits=1, user_api="blas"):
        return lesions, lesion_models(lesions, subjects)


def _longitudinal(
    config: GroupConfig,
    participants: pd.DataFrame,
    subjects: pd.DataFrame,
    analysis: CohortAnalysis,
) -> LongitudinalAnalysis:
    """Every session of the analysed participants, timed, through the longitudinal models."""
    every = collect_all_sessions(config.output_dir)
    timing, untimed = collect_timing(every, participants, bids_dir=config.bids_dir)
    with threadpool_limits(limits=1, user_api="blas"):
        return analyse_longitudinal(
            every,
            timing,
            subjects,
            analysis.normative,
            excluded=analysis.exclusions,
            untimed=untimed,
            min_voxels=config.min_voxels,
        )


def _write(out: Path, result: GroupResult, provenance: dict, config: GroupConfig) -> None:
    """The tables, the report and, last, the provenance record that marks them complete."""
    record = group_path(out, GROUP_PROVENANCE)
    write_json(record, {**provenance, "complete": False})  # until every output is written
    write_bidsignore(out)
    normative = result.analysis.normative if result.analysis is not None else None
    # before the tables: it is harmonization.tsv's sidecar too, which adds its columns
    write_json(group_path(out, HARMONIZATION_JSON), harmonization_description(normative))
    absent = set(_not_run(result.analyses))
    for attribute, name in GROUP_TABLES.items():
        path = group_path(out, name)
        if attribute not in absent:
            write_tsv(path, getattr(result, attribute))
            continue
        for stale in (path, tsv_sidecar_path(path)):  # of an earlier run that had the analysis
            if stale.exists():
                stale.unlink()
                log.info("group stage: removed %s (its analysis did not run)", stale)
    write_qc_index(out, result)  # qc/index.html: every participant's QC page, with flags
    if config.report:
        from ..report.html import write_report

        tables_dir = group_path(out, GROUP_TABLES_DIR)
        result.report = write_report(out / REPORT, result, tables_dir=tables_dir)
    else:  # a report (its Methods, tables and figures) of other tables would contradict them
        shutil.rmtree(group_path(out, GROUP_TABLES_DIR), ignore_errors=True)
        clear_group_figures(out)
        for path in (p for p in report_outputs(out) if p.exists()):
            path.unlink()
            log.info("group stage: removed %s, made from other tables (report=False)", path)
    write_json(record, {**provenance, "analyses": result.analyses, "complete": True})
