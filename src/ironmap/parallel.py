"""Running independent jobs (one per subject) sequentially or in worker processes."""

from __future__ import annotations

import logging
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

    Results keep the order of ``items``; progress is logged (logger ``ironmap``, INFO) as jobs
    finish. ``func`` must be picklable (a module-level function or a ``functools.partial``).
    """
    items = list(items)
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    results: list[R] = []
    if n_jobs == 1 or len(items) <= 1:
        for i, item in enumerate(items, start=1):
            results.append(func(item))
            log.info("%s: %d/%d", desc, i, len(items))
        return results
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        for i, result in enumerate(pool.map(func, items), start=1):
            results.append(result)
            log.info("%s: %d/%d", desc, i, len(items))
    return results
