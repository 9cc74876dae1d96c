"""Cohort tables: ``participants.tsv`` validated and joined with the participant-stage outputs.

``group/regions.tsv`` stacks every participant's ``_regions.tsv``; ``group/subjects.tsv`` joins
``participants.tsv`` with the ``_volumes.tsv`` files (CONVENTIONS columns).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, IronmapWarning
from ..regions.stats import VOLUME_COLUMNS

__all__ = [
    "PARTICIPANT_COLUMNS",
    "SUBJECT_COLUMNS",
    "collect_regions",
    "read_participants",
    "subjects_table",
]

PARTICIPANT_COLUMNS = (
    "participant_id",
    "age",
    "sex",
    "group",
    "phenotype",
    "disease_duration",
    "edss",
    "site",
)
SUBJECT_COLUMNS = [
    "participant_id",
    "site",
    "group",
    "phenotype",
    "age",
    "sex",
    "disease_duration",
    "edss",
    *VOLUME_COLUMNS[1:],  # icv_ml ... lesion_count, as the participant stage writes them
]
PHENOTYPES = ("CIS", "RRMS", "SPMS", "PPMS")


def read_participants(path: str | Path) -> pd.DataFrame:
    """Read and validate ``participants.tsv`` (CONVENTIONS columns; ``n/a`` is missing).

    Raises
    ------
    InputError
        Missing file or columns, duplicate IDs, unknown group or phenotype, non-numeric age,
        EDSS or duration, or no healthy controls.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: No such file; the group stage needs participants.tsv")
    table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=str)
    missing = [c for c in PARTICIPANT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (see CONVENTIONS)")
    dup = table["participant_id"][table["participant_id"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: duplicate participant_id {dup.iloc[0]}")
    bad_id = table[~table["participant_id"].str.startswith("sub-", na=False)]
    if len(bad_id):
        raise InputError(
            f"{path}: participant_id must look like sub-<label>, got {bad_id.iloc[0, 0]!r}"
        )
    for col in ("age", "disease_duration", "edss"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = table[col].notna() & values.isna()
        if bad.any():
            raise InputError(
                f"{path}: column {col} must be numeric or n/a, got {table.loc[bad, col].iloc[0]!r}"
            )
        table[col] = values
    groups = set(table["group"].dropna())
    if not groups <= {"HC", "MS"}:
        raise InputError(f"{path}: group must be HC or MS, got {sorted(groups - {'HC', 'MS'})}")
    ms = table["group"] == "MS"
    phen = set(table.loc[ms, "phenotype"].dropna())
    if not phen <= set(PHENOTYPES):
        raise InputError(
            f"{path}: phenotype must be one of {', '.join(PHENOTYPES)} for MS, "
            f"got {sorted(phen - set(PHENOTYPES))}"
        )
    if table["age"].isna().any():
        first = table.loc[table["age"].isna(), "participant_id"].iloc[0]
        raise InputError(f"{path}: age is missing for {first}; the age correction needs it")
    if not (table["group"] == "HC").any():
        raise InputError(
            f"{path}: no healthy controls (group HC); R2* is corrected for age against controls"
        )
    table.loc[~ms, ["phenotype"]] = np.nan
    return table[list(PARTICIPANT_COLUMNS)]


def _stack(paths: list[Path]) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", na_values=["n/a"], keep_default_na=False) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def collect_regions(output_dir: str | Path) -> pd.DataFrame:
    """Stack ``sub-*/**/sub-*_regions.tsv`` of the participant stage.

    With several sessions per participant the cross-sectional statistics use the first session
    (in label order), with a warning; every session stays in the per-participant files.
    """
    paths = sorted(Path(output_dir).glob("sub-*/**/sub-*_regions.tsv"))
    if not paths:
        raise InputError(
            f"{output_dir}: no sub-*_regions.tsv; run the participant stage first "
            "(ironmap run BIDS_DIR OUTPUT_DIR participant)"
        )
    table = _stack(paths)
    if "session" in table.columns:
        first = table.groupby("participant_id")["session"].transform("min")
        if (table["session"] != first).any():
            warnings.warn(
                "several sessions per participant: the group statistics use each participant's "
                "first session",
                IronmapWarning,
                stacklevel=2,
            )
        table = table[table["session"] == first].reset_index(drop=True)
    return table


def subjects_table(participants: pd.DataFrame, output_dir: str | Path) -> pd.DataFrame:
    """``group/subjects.tsv``: participants joined with their volumes (CONVENTIONS columns)."""
    volumes = _stack(sorted(Path(output_dir).glob("sub-*/**/sub-*_volumes.tsv")))
    if volumes.empty:
        volumes = pd.DataFrame(columns=["participant_id"])
    if "session" in volumes.columns:  # first session per participant
        volumes = volumes.sort_values("session").drop_duplicates("participant_id")
    table = participants.merge(volumes, on="participant_id", how="left")
    for col in SUBJECT_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    return table[SUBJECT_COLUMNS]
