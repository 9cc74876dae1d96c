"""``ironmap run BIDS_DIR OUTPUT_DIR group``: the cohort statistics and the report.

Reads ``participants.tsv`` and the participant-stage tables, runs
:func:`ironmap.cohort.analysis.analyse_cohort`, and writes ``OUTPUT_DIR/group/``
(:data:`ironmap.io.derivatives.GROUP_TABLES`) and ``OUTPUT_DIR/report.html``.
No statistics live here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from ..cohort import collect_regions, read_participants, subjects_table
from ..cohort.analysis import (
    CohortAnalysis,
    analyse_cohort,
    harmonization_description,
    participant_flow,
)
from ..cohort.tables import missing_outputs
from ..errors import InputError
from ..io import write_json, write_tsv
from ..io.derivatives import GROUP_TABLES, HARMONIZATION_JSON, REPORT, group_path

__all__ = ["GroupConfig", "GroupResult", "run_group"]

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class GroupConfig:
    """Options of the group stage."""

    bids_dir: Path
    output_dir: Path
    report: bool = True
    mixed: bool = True


@dataclass
class GroupResult:
    """The group tables (pandas DataFrames) and where the report was written."""

    regions: pd.DataFrame
    subjects: pd.DataFrame
    flow: pd.DataFrame
    age_model: pd.DataFrame
    harmonization: pd.DataFrame
    comparison: pd.DataFrame
    comparison_mixed: pd.DataFrame
    determinants: pd.DataFrame
    analysis: CohortAnalysis
    report: Path | None


def run_group(config: GroupConfig) -> GroupResult:
    """Run the group stage."""
    out = Path(config.output_dir)
    table_path = Path(config.bids_dir) / "participants.tsv"
    participants = read_participants(table_path)
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
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            analysis = analyse_cohort(regions, subjects, mixed=config.mixed)
    except InputError as err:  # the cohort's data are wrong: say which table holds them
        raise InputError(f"{table_path}: {err}") from None
    exclusions = {
        pid: "no participant-stage outputs: sub-*_regions.tsv not found in OUTPUT_DIR"
        for pid in missing_outputs(participants, regions)
    }
    exclusions.update(analysis.exclusions)
    flow = participant_flow(participants, exclusions)
    subjects = subjects.assign(analysed=~subjects["participant_id"].isin(exclusions))
    result = GroupResult(
        regions=analysis.regions,
        subjects=subjects,
        flow=flow,
        age_model=analysis.age_model,
        harmonization=analysis.harmonization,
        comparison=analysis.comparison,
        comparison_mixed=analysis.comparison_mixed,
        determinants=analysis.determinants,
        analysis=analysis,
        report=None,
    )
    for attribute, name in GROUP_TABLES.items():
        write_tsv(group_path(out, name), getattr(result, attribute))
    write_json(group_path(out, HARMONIZATION_JSON), harmonization_description(analysis.normative))
    if config.report:
        from ..report.html import write_report

        result.report = write_report(out / REPORT, result)
    return result
