"""Running independent jobs (one per subject) sequentially or in worker processes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

__all__ = ["map_ordered"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("ironmap")


def map_ordered(
    func: Callable[[T], R], items: Iterable[T], *, n_jobs: int = 1, desc: str = "jobs"
) -> list[R]:
    """``[func(item) for item in items]``, in worker processes when ``n_jobs > 1``.

    Results keep the order of ``items``. Progress: a bar on the terminal when standard error is
    one, else INFO log lines (logger ``ironmap``). ``func`` must be picklable (a module-level
    function or a ``functools.partial``).
    """
    items = list(items)
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    results: list[R] = []
    if n_jobs == 1 or len(items) <= 1:
        for item in items:
            results.append(func(item))
            _progress(desc, len(results), len(items))
        return results
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        for result in pool.map(func, items):
            results.append(result)
            _progress(desc, len(results), len(items))
    return results


def _progress(desc: str, done: int, total: int, *, width: int = 30) -> None:
    if sys.stderr.isatty():
        filled = int(width * done / max(total, 1))
        end = "\n" if done == total else ""
        print(
            f"\r{desc:>12} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
            end=end,
            file=sys.stderr,
            flush=True,
        )
    else:
        log.info("%s: %d/%d", desc, done, total)
