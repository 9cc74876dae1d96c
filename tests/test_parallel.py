"""Executors: the same results in input order, serially, in local processes and on Dask."""

from __future__ import annotations

import json
import logging
import os

import pytest

from ironmap.errors import InputError
from ironmap.parallel import DaskExecutor, LocalExecutor, make_executor, map_ordered


def _square(x: int) -> int:
    return x * x


def _blas_threads(_: int) -> int:
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info()), default=1)


def _pid(_: int) -> int:
    return os.getpid()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_keep_input_order(n_jobs, caplog):
    with caplog.at_level(logging.INFO, logger="ironmap"):
        got = map_ordered(_square, range(9), n_jobs=n_jobs, desc="sq", failed=lambda r: r == 4)
    assert got == [x * x for x in range(9)]
    assert "sq: 9/9 done, 1 failed" in caplog.text


def test_jobs_run_with_one_blas_thread_in_worker_processes():
    assert set(map_ordered(_blas_threads, range(4), n_jobs=2)) == {1}
    assert len(set(map_ordered(_pid, range(6), n_jobs=2)) - {os.getpid()}) >= 1


def test_bad_worker_count():
    with pytest.raises(InputError, match="--n-jobs must be >= 1, got 0"):
        LocalExecutor(0)


def test_dask_local_cluster_gives_the_same_results():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        executor = make_executor(scheduler_address=cluster.scheduler_address)
        try:
            assert executor.workers == 2
            assert map_ordered(_square, range(9), executor=executor) == [x * x for x in range(9)]
        finally:
            executor.close()


def test_dask_scheduler_file(tmp_path):
    """dask-jobqueue and dask-mpi hand out a scheduler file rather than an address."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        path = tmp_path / "scheduler.json"
        path.write_text(json.dumps({"address": cluster.scheduler_address, "type": "Scheduler"}))
        executor = make_executor(scheduler_file=str(path))
        try:
            assert map_ordered(_square, [3, 4], executor=executor) == [9, 16]
        finally:
            executor.close()


def test_unreachable_scheduler_is_a_one_line_error():
    pytest.importorskip("distributed")
    with pytest.raises(
        InputError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        DaskExecutor(address="tcp://127.0.0.1:9", timeout="2s")
