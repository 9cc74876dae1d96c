"""When each session happened: BIDS ``sub-<label>_sessions.tsv`` read, checked and turned into
years since the baseline session.

``BIDS_DIR/sub-<label>/sub-<label>_sessions.tsv`` has one row per session, ``session_id``
(``ses-<label>``) and optional columns; ironmap reads:

- ``acq_time``: ISO 8601 date or date-time of the session (``2019-03-01`` or
  ``2019-03-01T10:22:00``);
- ``age``: age at the session (years, 0 < age <= 120);
- ``edss``: EDSS at the session (0-10 in steps of 0.5);
- ``scanner``: a label of the scanner (and its software) that acquired the session, e.g.
  ``prisma-VE11C`` then ``prisma-XA30`` after an upgrade: any text, compared as is. The
  longitudinal models give every scanner of a site after its first its own offset (scanner
  epoch within site, :mod:`.longitudinal`). Without the column, the first echo's sidecar of the
  session (``sub-<label>/ses-<label>/anat/*_echo-1_*.json``), when found, gives
  ``DeviceSerialNumber`` and ``SoftwareVersions`` (joined by ``/``); else the scanner is
  unknown (``n/a``: the site's usual one).

The **clock** of a participant orders its sessions and measures the time between them:
``acq_time`` when every session of the participant has one (the most precise), else ``age``
when every session has one, else none. The baseline is the earliest session by the clock, or
the first label in natural order (``ses-2`` before ``ses-10``) without one. Without a clock the
time between sessions is unknown: the cross-sectional analysis still takes the baseline, the
longitudinal analysis leaves the participant's later sessions out (with a warning), never
guessing intervals from labels.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError, IronmapWarning
from ..io.bids import read_bids_tsv

__all__ = [
    "DAYS_PER_YEAR",
    "SCANNER_FIELDS",
    "TIME_SOURCES",
    "TIMING_COLUMNS",
    "baseline_key",
    "collect_timing",
    "parse_sessions",
    "read_sessions",
    "session_key",
    "session_timing",
    "sessions_path",
    "sidecar_scanner",
]

#: Days per year when ``acq_time`` differences are turned into years.
DAYS_PER_YEAR = 365.25
#: How a session's time since baseline was found (column ``time_source``).
TIME_SOURCES = {
    "acq_time": "acq_time of sub-<label>_sessions.tsv",
    "age": "age of sub-<label>_sessions.tsv",
    "baseline": "the participant's only analysed session (time 0)",
}
#: Columns of :func:`session_timing`.
TIMING_COLUMNS = [
    "participant_id",
    "session",
    "time_years",
    "age",
    "edss",
    "time_source",
    "scanner",
]
#: Sidecar fields that name the scanner of a session (joined by ``/``) when the sessions file
#: has no ``scanner`` column.
SCANNER_FIELDS = ("DeviceSerialNumber", "SoftwareVersions")


def session_key(label: object) -> tuple:
    """Natural sort key of a session label: ``ses-`` optional, digits compared as numbers."""
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    parts = re.split(r"(\d+)", str(label).removeprefix("ses-"))
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts))


def sessions_path(bids_dir: str | Path, participant: str) -> Path:
    """``BIDS_DIR/sub-<label>/sub-<label>_sessions.tsv`` of ``participant`` (``sub-<label>``)."""
    return Path(bids_dir) / participant / f"{participant}_sessions.tsv"


def _numbers(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    text = table[column].astype(object)
    values = pd.to_numeric(text, errors="coerce")
    bad = text.notna() & values.isna()
    if bad.any():
        raise InputError(
            f"{path}: {column} must be a number or n/a, got {text[bad].iloc[0]!r} "
            f"for {table.loc[bad, 'session_id'].iloc[0]}"
        )
    return values.astype(np.float64)


def read_sessions(path: str | Path) -> pd.DataFrame:
    """Read and check one ``sub-<label>_sessions.tsv``.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    pandas.DataFrame
        One row per session: ``key`` (:func:`session_key` of ``session_id``), ``acq_time``
        (UTC timestamps, NaT where missing), ``age`` (years) and ``edss`` (points), NaN where
        missing or where the column is absent, and ``scanner`` (text, NaN where missing).

    Raises
    ------
    InputError
        One line naming the file: unreadable or empty (:func:`~ironmap.io.bids.read_bids_tsv`),
        no ``session_id`` column, a session listed twice, an ``acq_time`` that is not ISO 8601,
        a non-numeric ``age`` or ``edss``, an age outside 0-120 years or an EDSS outside 0-10
        or not in steps of 0.5.
    """
    return parse_sessions(read_bids_tsv(path), Path(path))


def parse_sessions(sessions: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """:func:`read_sessions` on a table already read (``path`` names it in errors)."""
    path = Path(path)
    sessions = sessions.astype(object).replace("", np.nan)
    if "session_id" not in sessions.columns:
        raise InputError(f"{path}: no session_id column (BIDS sessions file)")
    keys = sessions["session_id"].map(session_key)
    if keys.duplicated().any():
        raise InputError(
            f"{path}: session {sessions['session_id'][keys.duplicated()].iloc[0]} is listed "
            "twice; list each session once"
        )
    out = pd.DataFrame({"key": keys})
    if "acq_time" in sessions.columns:
        text = sessions["acq_time"].astype(object)
        times = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        bad = text.notna() & times.isna()
        if bad.any():
            raise InputError(
                f"{path}: acq_time must be an ISO datetime or n/a, got {text[bad].iloc[0]!r} "
                f"for {sessions.loc[bad, 'session_id'].iloc[0]}"
            )
        out["acq_time"] = times
    else:
        out["acq_time"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    for column in ("age", "edss"):
        out[column] = _numbers(sessions, column, path) if column in sessions else np.nan
    scanner = sessions["scanner"] if "scanner" in sessions.columns else None
    out["scanner"] = (
        np.nan if scanner is None else scanner.map(lambda v: np.nan if pd.isna(v) else str(v))
    )
    age, edss = out["age"], out["edss"]
    rules = {
        "age": (age.notna() & ~((age > 0) & (age <= 120)), "age must be > 0 and <= 120 years"),
        "edss": (
            edss.notna() & ~((edss >= 0) & (edss <= 10) & (edss * 2 == np.round(edss * 2))),
            "EDSS must be 0-10 in steps of 0.5",
        ),
    }
    for column, (bad, rule) in rules.items():
        if bad.any():
            raise InputError(
                f"{path}: {sessions.loc[bad, 'session_id'].iloc[0]} has {column} "
                f"{sessions.loc[bad, column].iloc[0]!r}; {rule}"
            )
    return out


def _clock(keys: list[tuple], table: pd.DataFrame | None) -> tuple[str | None, dict]:
    """The clock of a participant's sessions: (``acq_time``/``age``/None, key -> reading)."""
    if table is None:
        return None, {}
    rows = table.set_index("key")
    for clock in ("acq_time", "age"):
        readings = rows[clock].dropna().to_dict()
        if all(k in readings for k in keys):
            return clock, {k: readings[k] for k in keys}
    return None, {}


def baseline_key(keys: set[tuple], table: pd.DataFrame | None) -> tuple[tuple, str | None]:
    """(key of the baseline session, the clock that chose it or None for label order).

    ``table`` is the participant's :func:`read_sessions` (None without a sessions file).
    """
    ordered = sorted(keys)
    clock, readings = _clock(ordered, table)
    if clock is None:
        return ordered[0], None
    return min(ordered, key=lambda k: readings[k]), clock


def session_timing(
    participant: str,
    sessions: list[str],
    *,
    table: pd.DataFrame | None,
    age: float,
    edss: float,
    scanners: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Years since baseline, age and EDSS of each of a participant's sessions.

    Parameters
    ----------
    participant : str
        ``sub-<label>``.
    sessions : list of str
        The participant's session labels (``ses-<label>``) with participant-stage outputs; an
        empty string for data without sessions.
    table : pandas.DataFrame or None
        Its :func:`read_sessions`, None without a sessions file.
    age, edss : float
        From ``participants.tsv``: the age (years) and EDSS at the baseline session.
    scanners : dict, optional
        Session label -> scanner label (from the sidecars), for sessions whose sessions file
        has no ``scanner``.

    Returns
    -------
    timing : pandas.DataFrame
        :data:`TIMING_COLUMNS`, one row per timed session, baseline first: ``time_years``
        (years since baseline, >= 0), ``age`` (``participants.tsv`` age + time), ``edss``
        (the session's EDSS from the sessions file; at baseline ``participants.tsv``'s when the
        file has none), ``time_source`` (:data:`TIME_SOURCES`), ``scanner`` (the sessions
        file's, else ``scanners``', else NaN). Only the baseline when the sessions cannot be
        timed.
    reason : str
        Why later sessions were left out ("" when none was).
    """
    keys = {session_key(s): s for s in sessions}
    base, clock = baseline_key(set(keys), table)
    per_session = table.set_index("key") if table is not None else None

    def session_edss(key: tuple, default: float) -> float:
        if per_session is not None and key in per_session.index:
            value = per_session.at[key, "edss"]
            if pd.notna(value):
                return float(value)
        return default

    rows = [(keys[base], 0.0, float(age), session_edss(base, edss), "baseline")]
    reason = ""
    if len(keys) > 1 and clock is None:
        reason = (
            "neither acq_time nor age for every session in "
            f"{participant}/{participant}_sessions.tsv"
            if table is not None
            else f"no {participant}/{participant}_sessions.tsv"
        )
    elif len(keys) > 1:
        _, readings = _clock(sorted(keys), table)
        for key in sorted(keys, key=lambda k: readings[k]):
            if key == base:
                continue
            delta = readings[key] - readings[base]
            years = (
                delta.total_seconds() / (DAYS_PER_YEAR * 86400.0)
                if clock == "acq_time"
                else float(delta)
            )
            rows.append((keys[key], years, float(age) + years, session_edss(key, np.nan), clock))
        rows[0] = (*rows[0][:4], clock)
    frame = pd.DataFrame(rows, columns=TIMING_COLUMNS[1:-1])
    frame["scanner"] = [
        _scanner(per_session, session_key(s), (scanners or {}).get(s)) for s in frame["session"]
    ]
    return frame.assign(participant_id=participant)[TIMING_COLUMNS], reason


def _scanner(table: pd.DataFrame | None, key: tuple, default: str | None) -> object:
    """The scanner of a session: the sessions file's, else ``default``, else NaN."""
    if table is not None and "scanner" in table.columns and key in table.index:
        value = table.at[key, "scanner"]
        if pd.notna(value):
            return str(value)
    return default if default else np.nan


def sidecar_scanner(bids_dir: str | Path, participant: str, session: str) -> str | None:
    """The scanner of a session from its first echo's sidecar: :data:`SCANNER_FIELDS` joined by
    ``/`` (None without a sidecar or without those fields).

    Parameters
    ----------
    bids_dir : str or Path
    participant, session : str
        ``sub-<label>`` and ``ses-<label>`` (``""`` for data without sessions).
    """
    anat = Path(bids_dir) / participant / session / "anat" if session else None
    if anat is None or not anat.is_dir():
        return None
    for path in sorted(anat.glob("*_echo-1_*.json")):
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            meta = error
        if not isinstance(meta, dict):
            warnings.warn(
                f"{path}: not a readable JSON object ({meta}); its scanner is unknown and counts "
                "as the site's reference scanner (give a scanner column in sessions.tsv)",
                IronmapWarning,
                stacklevel=2,
            )
            continue
        parts = [str(meta[f]) for f in SCANNER_FIELDS if meta.get(f) not in (None, "")]
        if parts:
            return "/".join(parts)
    return None


def collect_timing(
    regions: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    bids_dir: str | Path | None = None,
    sessions: dict[str, pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Timing of every session of every participant in ``regions``.

    Parameters
    ----------
    regions : pandas.DataFrame
        Participant-stage rows of every session (``participant_id``, ``session``; ``""`` for
        data without sessions).
    participants : pandas.DataFrame
        ``participants.tsv`` (``age`` and ``edss`` at baseline).
    bids_dir : str or Path, optional
        Where the ``sub-<label>/sub-<label>_sessions.tsv`` files are read.
    sessions : dict, optional
        Instead of files: ``participant_id`` -> its sessions table (``session_id``,
        ``acq_time``, ``age``, ``edss`` columns as in the file).

    Returns
    -------
    timing : pandas.DataFrame
        :data:`TIMING_COLUMNS` of every timed session (:func:`session_timing`).
    untimed : dict
        ``participant_id`` -> why its later sessions are left out.
    """
    info = participants.set_index("participant_id")
    frames, untimed = [], {}
    labels = regions[["participant_id", "session"]].drop_duplicates()
    for pid, group in labels.groupby("participant_id", sort=True):
        if pid not in info.index:
            continue
        found = sorted(set(group["session"]), key=session_key)
        table = None
        if len(found) > 1:
            if sessions is not None:
                given = sessions.get(pid)
                table = None if given is None else parse_sessions(given, f"{pid}_sessions.tsv")
            elif bids_dir is not None:
                path = sessions_path(bids_dir, pid)
                table = read_sessions(path) if path.exists() else None
        scanners = None
        if (
            len(found) > 1
            and bids_dir is not None
            and (table is None or table["scanner"].isna().any())
        ):
            scanners = {s: sidecar_scanner(bids_dir, pid, s) for s in found}
        timing, reason = session_timing(
            pid,
            found,
            table=table,
            age=float(info.at[pid, "age"]),
            edss=float(info.at[pid, "edss"]) if pd.notna(info.at[pid, "edss"]) else np.nan,
            scanners=scanners,
        )
        frames.append(timing)
        if reason:
            untimed[pid] = reason
    if not frames:
        return pd.DataFrame(columns=TIMING_COLUMNS), untimed
    return pd.concat(frames, ignore_index=True), untimed
