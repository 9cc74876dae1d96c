"""Local-process and Dask executors behind one small interface."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import Any, Protocol, TypeVar

from ..errors import InputError
from .progress import Progress

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "make_executor", "map_ordered"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("ironmap")


def _pinned(func: Callable[[T], R], item: T) -> R:
    """Run ``func(item)`` with BLAS/OpenMP pools limited to one thread (one core per job)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return func(item)


class Executor(Protocol):
    """Runs ``func`` on every item; yields ``(index, result)`` as jobs finish."""

    workers: int

    def run(self, func: Callable[[T], R], items: list[T]) -> Iterator[tuple[int, R]]: ...


class LocalExecutor:
    """``n_jobs`` worker processes on this machine (in-process when ``n_jobs == 1``)."""

    def __init__(self, n_jobs: int = 1) -> None:
        if n_jobs < 1:
            raise InputError(f"--n-jobs must be >= 1, got {n_jobs}")
        self.workers = n_jobs

    def __repr__(self) -> str:
        return f"LocalExecutor(n_jobs={self.workers})"

    def run(self, func: Callable[[T], R], items: list[T]) -> Iterator[tuple[int, R]]:
        task = partial(_pinned, func)
        if self.workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                yield i, task(item)
            return
        with ProcessPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            futures = {pool.submit(task, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                yield futures[future], future.result()


class DaskExecutor:
    """Jobs submitted to an existing Dask distributed scheduler."""

    def __init__(
        self,
        *,
        address: str | None = None,
        scheduler_file: str | None = None,
        timeout: str = "30s",
    ) -> None:
        try:
            from distributed import Client
        except ImportError as exc:
            raise InputError(
                "Dask is not installed; pip install 'ironmap[dask]' to use --scheduler-address"
            ) from exc
        try:
            if scheduler_file is not None:
                self.client = Client(scheduler_file=scheduler_file, timeout=timeout)
            else:
                self.client = Client(address, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            where = scheduler_file or address
            raise InputError(f"cannot reach the Dask scheduler at {where} ({exc})") from exc
        self.workers = max(
            1, sum(w["nthreads"] for w in self.client.scheduler_info()["workers"].values())
        )

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client.scheduler.address}, {self.workers} threads)"

    def run(self, func: Callable[[T], R], items: list[T]) -> Iterator[tuple[int, R]]:
        from distributed import as_completed as dask_completed

        task = partial(_pinned, func)
        futures = self.client.map(task, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in dask_completed(futures):
            yield index[future.key], future.result()

    def close(self) -> None:
        self.client.close()


def make_executor(
    *, n_jobs: int = 1, scheduler_address: str | None = None, scheduler_file: str | None = None
) -> LocalExecutor | DaskExecutor:
    """The executor the options ask for: Dask when a scheduler is given, else local."""
    if scheduler_address or scheduler_file:
        return DaskExecutor(address=scheduler_address, scheduler_file=scheduler_file)
    return LocalExecutor(n_jobs)


def map_ordered(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    n_jobs: int = 1,
    executor: Executor | None = None,
    desc: str = "jobs",
    failed: Callable[[R], bool] | None = None,
) -> list[R]:
    """``[func(item) for item in items]`` on ``executor`` (default: ``n_jobs`` local processes).

    Results keep the order of ``items``. On a terminal, a :class:`~.progress.Progress` line on
    standard error shows ``desc``: jobs done out of all, jobs failed (``failed(result)`` true),
    elapsed time and ETA (see :func:`~.progress.progress_output` to turn it off); otherwise the
    same line is logged at INFO level (logger ``ironmap``) as each job ends.
    """
    items = list(items)
    executor = executor if executor is not None else LocalExecutor(n_jobs)
    results: list[Any] = [None] * len(items)
    with Progress(len(items), desc=desc) as progress:
        for i, result in executor.run(func, items):
            results[i] = result
            progress.update(failed=failed is not None and failed(result))
            if not progress.enabled:
                log.info("%s", progress.line())
    return results
