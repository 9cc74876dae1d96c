"""Progress of a batch of jobs: done / total, failed, elapsed time and ETA.

On a terminal, :class:`Progress` keeps one line on standard error up to date (``\\r``) and
leaves its final state behind::

    participants: 12/20 done, 1 failed, elapsed 1:05, ETA 0:43

Elsewhere (a pipe, a CI log, the tests) it writes nothing; :func:`~.executors.map_ordered`
then logs the same line at INFO level (shown with ``-v``). The command line turns the display
off for ``-q`` and ``-v`` with :func:`progress_output`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Progress", "format_seconds", "progress_output"]


@dataclass
class _Output:
    """Set by :func:`progress_output`: whether to display (None: on a terminal) and where."""

    enabled: bool | None = None
    stream: TextIO | None = None


_OUTPUT = _Output()


@contextmanager
def progress_output(
    *, enabled: bool | None = None, stream: TextIO | None = None
) -> Iterator[None]:
    """Within the block, :class:`Progress` displays go to ``stream`` (default: standard error)
    always (``enabled=True``), never (``False``), or when it is a terminal (``None``)."""
    saved = (_OUTPUT.enabled, _OUTPUT.stream)
    _OUTPUT.enabled, _OUTPUT.stream = enabled, stream
    try:
        yield
    finally:
        _OUTPUT.enabled, _OUTPUT.stream = saved


def format_seconds(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Jobs done out of ``total``, failed, elapsed and estimated remaining time.

    Parameters
    ----------
    total : int
        Jobs in the batch.
    desc : str
        What is counted (``"participants"``).
    stream : file-like, optional
        Where to display (default: that of :func:`progress_output`, else standard error).
    enabled : bool, optional
        Display or not (default: that of :func:`progress_output`, else whether ``stream`` is a
        terminal).
    clock : callable, optional
        Seconds, monotonic (for tests).
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.done = 0
        self.failed = 0
        if stream is None:
            stream = _OUTPUT.stream if _OUTPUT.stream is not None else sys.stderr
        self.stream = stream
        if enabled is None:
            enabled = _OUTPUT.enabled
        self.enabled = _is_terminal(self.stream) if enabled is None else bool(enabled)
        self._clock = clock
        self._start = clock()
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self._clock() - self._start

    def line(self) -> str:
        """``desc: done/total done, failed, elapsed m:ss, ETA m:ss`` (no ETA before the first
        job ends nor after the last)."""
        text = (
            f"{self.desc}: {self.done}/{self.total} done, {self.failed} failed, "
            f"elapsed {format_seconds(self.elapsed)}"
        )
        if 0 < self.done < self.total:
            eta = self.elapsed / self.done * (self.total - self.done)
            text += f", ETA {format_seconds(eta)}"
        return text

    def start(self) -> Progress:
        """Show the line before the first job ends."""
        self._show()
        return self

    def update(self, *, failed: bool = False) -> None:
        """One more job done (``failed``: it failed)."""
        self.done += 1
        self.failed += bool(failed)
        self._show()

    def close(self) -> None:
        """Leave the final line on the terminal (once)."""
        if self.enabled and not self._closed:
            self.stream.write("\r" + self.line() + "\x1b[K\n")
            self.stream.flush()
        self._closed = True

    def _show(self) -> None:
        if self.enabled and not self._closed:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
