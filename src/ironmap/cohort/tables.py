"""Cohort tables: ``participants.tsv`` validated and joined with the participant-stage outputs.

``group/regions.tsv`` stacks every participant's ``_regions.tsv``; ``group/subjects.tsv`` joins
``participants.tsv`` with the ``_volumes.tsv`` files (docs/conventions.md columns). Both keep one
session per participant, the baseline (:func:`baseline_sessions`), and ``subjects.tsv`` only
the participants with participant-stage outputs (:func:`missing_outputs` names the others).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, IronmapWarning
from ..io.bids import read_bids_tsv
from ..io.derivatives import find_participant_tables, read_tsv
from ..regions.stats import VOLUME_COLUMNS
from .sessions import baseline_key, read_sessions, session_key, sessions_path

__all__ = [
    "PARTICIPANT_COLUMNS",
    "SEX_CODES",
    "SUBJECT_COLUMNS",
    "baseline_sessions",
    "collect_all_sessions",
    "collect_regions",
    "missing_outputs",
    "prl_counts",
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
    "n_prl",  # paramagnetic rim lesion candidates of _lesions.tsv (:func:`prl_counts`)
]
PHENOTYPES = ("CIS", "RRMS", "SPMS", "PPMS")
#: BIDS ``sex`` values (lower case) and their canonical codes; ``n/a`` or empty is missing.
SEX_CODES = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}
_MISSING = ("", "n/a")


def read_participants(path: str | Path) -> pd.DataFrame:
    """Read and validate ``participants.tsv`` (docs/conventions.md columns; ``n/a`` is missing).

    ``sex`` is normalised to ``"M"``, ``"F"``, ``"O"`` or NaN (BIDS ``M/male``, ``F/female``,
    ``O/other`` in any case; ``n/a`` or empty is missing).

    Raises
    ------
    InputError
        Missing, empty, binary or unparsable file (see
        :func:`~ironmap.io.bids.read_bids_tsv`), no rows, missing or repeated columns,
        duplicate IDs, unknown group, phenotype or sex, non-numeric age, EDSS or duration,
        impossible values (age outside 0-120 years, EDSS outside 0-10 or not in steps of 0.5,
        duration negative or above the age, controls included), or no healthy controls.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: No such file; the group stage needs participants.tsv")
    table = read_bids_tsv(path)
    missing = [c for c in PARTICIPANT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} (see docs/conventions.md)"
        )
    if table.empty:
        raise InputError(f"{path}: no participants listed; add one row per participant")
    dup = table["participant_id"][table["participant_id"].duplicated()]
    if len(dup):
        raise InputError(f"{path}: duplicate participant_id {dup.iloc[0]}")
    bad_id = table[~table["participant_id"].str.startswith("sub-", na=False)]
    if len(bad_id):
        raise InputError(
            f"{path}: participant_id must look like sub-<label>, "
            f"got {bad_id['participant_id'].iloc[0]!r}"
        )
    raw = table.copy()
    for col in ("age", "disease_duration", "edss"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = table[col].notna() & values.isna()
        if bad.any():
            raise InputError(
                f"{path}: column {col} must be numeric or n/a, got {table.loc[bad, col].iloc[0]!r}"
            )
        table[col] = values
    table["sex"] = _sex_codes(table, path)
    if table["group"].isna().any():
        first = table.loc[table["group"].isna(), "participant_id"].iloc[0]
        raise InputError(f"{path}: group is missing for {first}; it must be HC or MS")
    groups = set(table["group"])
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
    _check_ranges(table, raw, path)
    if not (table["group"] == "HC").any():
        raise InputError(
            f"{path}: no healthy controls (group HC); R2* is corrected for age against controls"
        )
    table.loc[~ms, ["phenotype"]] = np.nan
    return table[list(PARTICIPANT_COLUMNS)]


def _sex_codes(table: pd.DataFrame, path: Path) -> pd.Series:
    """``sex`` as ``"M"``/``"F"``/``"O"``/NaN; an unknown value raises :class:`InputError`."""
    codes = []
    for pid, value in zip(table["participant_id"], table["sex"], strict=True):
        key = "n/a" if pd.isna(value) else str(value).strip().lower()
        if key not in SEX_CODES and key not in _MISSING:
            raise InputError(
                f"{path}: {pid} has sex {value!r}; accepted codes are M/male, F/female, "
                "O/other (any case) and n/a or empty for missing"
            )
        codes.append(SEX_CODES.get(key, np.nan))
    return pd.Series(codes, index=table.index, dtype=object)


def _check_ranges(table: pd.DataFrame, raw: pd.DataFrame, path: Path) -> None:
    """Refuse impossible ages, EDSS scores and disease durations (controls included)."""
    age, edss, duration = table["age"], table["edss"], table["disease_duration"]
    rules = {
        "age": (age.notna() & ~((age > 0) & (age <= 120)), "age must be > 0 and <= 120 years"),
        "edss": (
            edss.notna() & ~((edss >= 0) & (edss <= 10) & (edss * 2 == np.round(edss * 2))),
            "EDSS must be 0-10 in steps of 0.5",
        ),
        "disease_duration": (
            duration.notna() & ((duration < 0) | (duration > age)),
            "disease_duration must be >= 0 years and at most the age",
        ),
    }
    for col, (bad, rule) in rules.items():
        if bad.any():
            row = bad.idxmax()
            raise InputError(
                f"{path}: {table.at[row, 'participant_id']} has {col} {raw.at[row, col]!r}; {rule}"
            )


def _stack(paths: list[Path]) -> pd.DataFrame:
    frames = [read_tsv(p, dtype={"session": str}) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _baseline_key(
    participant: str, keys: set[tuple], bids_dir: str | Path | None
) -> tuple[tuple, str | None]:
    """(key of the baseline session, the clock of sessions.tsv that chose it, or None)."""
    table = None
    if bids_dir is not None and len(keys) > 1:
        path = sessions_path(bids_dir, participant)
        table = read_sessions(path) if path.exists() else None  # one-line errors
    return baseline_key(keys, table)


def _baseline(table: pd.DataFrame, bids_dir: str | Path | None) -> tuple[pd.DataFrame, str]:
    """Baseline rows of ``table`` and the warning to give ('' with one session each)."""
    if "session" not in table.columns:
        return table.reset_index(drop=True), ""
    keys = table["session"].map(lambda s: None if pd.isna(s) else session_key(s))
    labelled = keys.notna()
    chosen, by_clock, several = {}, {"acq_time": 0, "age": 0}, 0
    for pid, group in keys[labelled].groupby(table.loc[labelled, "participant_id"]):
        chosen[pid], clock = _baseline_key(pid, set(group), bids_dir)
        several += group.nunique() > 1
        if clock is not None:
            by_clock[clock] += 1
    baseline = table["participant_id"].map(chosen)
    keep = [k == b if isinstance(b, tuple) else True for k, b in zip(keys, baseline, strict=True)]
    return table[keep].reset_index(drop=True), _sessions_note(several, by_clock)


def _sessions_note(several: int, by_clock: dict[str, int]) -> str:
    if not several:
        return ""
    how = []
    if by_clock["acq_time"]:
        how.append(f"the earliest acq_time of sub-<label>_sessions.tsv ({by_clock['acq_time']})")
    if by_clock["age"]:
        how.append(f"the youngest age of sub-<label>_sessions.tsv ({by_clock['age']})")
    by_label = several - sum(by_clock.values())
    if by_label:
        how.append(f"the first label in natural order, ses-2 before ses-10 ({by_label})")
    return (
        f"{several} participant(s) have several sessions: the cross-sectional statistics use "
        f"each participant's baseline session, chosen by {' or '.join(how)}; every session "
        "stays in the per-participant files"
    )


def baseline_sessions(table: pd.DataFrame, *, bids_dir: str | Path | None) -> pd.DataFrame:
    """Keep each participant's baseline-session rows of a long table.

    Parameters
    ----------
    table
        Rows with ``participant_id`` and, optionally, ``session`` (``ses-01`` or ``01``; NaN
        for a participant without sessions).
    bids_dir
        BIDS dataset whose ``sub-<label>/sub-<label>_sessions.tsv`` give ``acq_time`` or
        ``age``; None to order by label only.

    Returns
    -------
    pandas.DataFrame
        The rows of the baseline session, in their order, with a fresh index: the session with
        the earliest ``acq_time`` when every session of the participant has one, else the one
        with the youngest ``age`` when every session has one, else the first in natural order
        (``ses-2`` before ``ses-10``); see :mod:`.sessions`. A participant without a labelled
        session keeps all its rows; a table without ``session`` is returned whole.

    Warns
    -----
    IronmapWarning
        Once, when some participant has several sessions, saying how the baseline was chosen.

    Raises
    ------
    InputError
        A sessions file that :func:`~.sessions.read_sessions` refuses (no ``session_id``, an
        ``acq_time`` that is not ISO 8601, ...).
    """
    table, note = _baseline(table, bids_dir)
    if note:
        warnings.warn(note, IronmapWarning, stacklevel=2)
    return table


def missing_outputs(participants: pd.DataFrame, regions: pd.DataFrame) -> list[str]:
    """``participant_id`` of ``participants.tsv`` without rows in ``regions`` (sorted)."""
    present = set(regions["participant_id"]) if "participant_id" in regions.columns else set()
    return sorted(set(participants["participant_id"]) - present)


def collect_regions(output_dir: str | Path, *, bids_dir: str | Path | None = None) -> pd.DataFrame:
    """Stack ``sub-*/**/sub-*_regions.tsv`` of the participant stage, baseline session only.

    With several sessions per participant the cross-sectional statistics use the baseline
    session (:func:`baseline_sessions`; ``bids_dir`` gives the ``acq_time``), with a warning;
    every session stays in the per-participant files.
    """
    paths = find_participant_tables(output_dir, "regions")
    if not paths:
        raise InputError(
            f"{output_dir}: no sub-*_regions.tsv; run the participant stage first "
            "(ironmap run BIDS_DIR OUTPUT_DIR participant)"
        )
    return baseline_sessions(_stack(paths), bids_dir=bids_dir)


def collect_lesions(output_dir: str | Path, *, bids_dir: str | Path | None = None) -> pd.DataFrame:
    """Stack every participant's ``sub-*_lesions.tsv`` (one row per lesion), baseline session
    only, as :func:`collect_regions`; empty (no columns) when no participant has one."""
    table = _stack(find_participant_tables(output_dir, "lesions"))
    return table if table.empty else baseline_sessions(table, bids_dir=bids_dir)


def collect_all_sessions(output_dir: str | Path) -> pd.DataFrame:
    """Stack every session's ``sub-*/**/sub-*_regions.tsv`` (for the longitudinal analysis).

    Returns
    -------
    pandas.DataFrame
        The participant-stage rows of every participant and session, ``session`` an empty
        string for data without sessions; empty when no table exists.
    """
    table = _stack(find_participant_tables(output_dir, "regions"))
    if table.empty:
        return table
    if "session" not in table.columns:
        table["session"] = ""
    table["session"] = table["session"].astype(object).where(table["session"].notna(), "")
    return table


def prl_counts(output_dir: str | Path, bids_dir: str | Path | None = None) -> pd.DataFrame:
    """Paramagnetic rim lesion candidates per participant (baseline session).

    The ``prl_candidate`` rows of each participant's ``_lesions.tsv``
    (:func:`ironmap.regions.lesions.prl_scores`) counted; NaN where the column is empty (no chi
    map) or absent.

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id`` and ``n_prl`` (count, float with NaN).
    """
    lesions = _stack(find_participant_tables(output_dir, "lesions"))
    if lesions.empty or "prl_candidate" not in lesions.columns:
        return pd.DataFrame({"participant_id": pd.Series(dtype=str), "n_prl": []})
    lesions, _ = _baseline(lesions, bids_dir)
    flag = lesions["prl_candidate"].map({True: 1.0, False: 0.0, "True": 1.0, "False": 0.0})
    counts = flag.groupby(lesions["participant_id"]).sum(min_count=1)
    return counts.rename("n_prl").reset_index()


def subjects_table(
    participants: pd.DataFrame,
    output_dir: str | Path,
    *,
    bids_dir: str | Path | None = None,
    regions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``group/subjects.tsv``: participants joined with their volumes (docs/conventions.md).

    Keeps the participants with a ``_volumes.tsv`` or, when ``regions`` (the output of
    :func:`collect_regions`) is given, exactly those present in ``regions``, in the order of
    ``participants``. Volumes are those of the baseline session (:func:`baseline_sessions`),
    with its warning unless ``regions`` is given (:func:`collect_regions` warned already).
    """
    volumes = _stack(find_participant_tables(output_dir, "volumes"))
    if volumes.empty:
        volumes = pd.DataFrame(columns=["participant_id"])
    volumes, note = _baseline(volumes, bids_dir)
    if note and regions is None:
        warnings.warn(note, IronmapWarning, stacklevel=2)
    present = volumes if regions is None else regions
    kept = participants[participants["participant_id"].isin(present["participant_id"])]
    table = kept.merge(volumes, on="participant_id", how="left")
    table = table.merge(prl_counts(output_dir, bids_dir), on="participant_id", how="left")
    if "lesion_count" in table.columns:  # a lesion mask without lesions: no PRL
        table.loc[table["lesion_count"] == 0, "n_prl"] = 0
    for col in SUBJECT_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    return table[SUBJECT_COLUMNS]
