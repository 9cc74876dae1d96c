"""One ironmap run per output dataset at a time: ``OUTPUT_DIR/.ironmap.lock``.

A stage holds the lock for as long as it writes (:func:`output_lock`). The lock file is created
atomically (``O_CREAT | O_EXCL``) and says who holds it: process id, host, start time, stage and
command. A second run refuses in one line; a lock left by a run that is gone (same host, process
no longer alive) is taken over with a warning. A lock held on another host is never taken over:
ironmap cannot tell whether that run is alive, so the message says which file to delete.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import IronmapError, IronmapWarning
from .derivatives import lock_path
from .maps import write_error

__all__ = ["output_lock"]


@contextmanager
def output_lock(output_dir: str | Path, *, stage: str, create: bool = False) -> Iterator[Path]:
    """Hold ``OUTPUT_DIR/.ironmap.lock`` for the ``with`` block; removed in any case after it.

    Parameters
    ----------
    output_dir : str or Path
        The derivatives dataset to write.
    stage : str
        Recorded in the lock (``participant``, ``group``).
    create : bool, optional
        Create ``output_dir`` (and its parents) first; otherwise it must exist.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    IronmapError
        Another ironmap is writing ``output_dir`` (one line: who, since when, and which file to
        delete if that run is gone), or ``output_dir`` cannot be written.

    Warns
    -----
    IronmapWarning
        When a stale lock (same host, process gone) is taken over.
    """
    out = Path(output_dir)
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(out, exc) from exc
    path = lock_path(out)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "stage": stage,
        "command": " ".join(sys.argv),
    }
    _acquire(out, path, record)
    try:
        yield path
    finally:
        if _read(path) == record:  # never remove a lock another run took over
            path.unlink(missing_ok=True)


def _acquire(out: Path, path: Path, record: dict) -> None:
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if attempt == 0 and _stale(holder):
                warnings.warn(
                    f"{path}: taking over the lock of ironmap pid {holder['pid']} on "
                    f"{holder['host']} (since {holder.get('started', '?')}), which is no "
                    "longer running",
                    IronmapWarning,
                    stacklevel=4,
                )
                if _read(path) == holder:  # not replaced meanwhile by a live run
                    path.unlink(missing_ok=True)
                continue
            raise IronmapError(
                f"{out} is being written by ironmap (pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {holder.get('started', '?')}); wait for it "
                f"to finish, or delete {path} if that run is gone"
            ) from None
        except OSError as exc:
            raise write_error(out, exc) from exc
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise write_error(out, exc) from exc
        return


def _read(path: Path) -> dict:
    """The lock's record ({} when missing, unreadable or being written)."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _stale(holder: dict) -> bool:
    """True when the lock's run was on this host and its process is gone."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
