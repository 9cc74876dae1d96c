"""Cohort-scale execution: identical outputs in every executor, and a killed run that resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ironmap.workflows.participant import ParticipantConfig, run_participant


def _tables(out: Path) -> dict[str, bytes]:
    files = [
        *out.rglob("*_regions.tsv"),
        *out.rglob("*_volumes.tsv"),
        *out.rglob("*_R2starmap.nii.gz"),
    ]
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(files)}


@pytest.fixture(scope="module")
def serial(site_panel, tmp_path_factory):
    root, _ = site_panel
    out = tmp_path_factory.mktemp("serial") / "out"
    results = run_participant(ParticipantConfig(root, out, n_jobs=1))
    assert [r.status for r in results] == ["done"] * 7
    return out


def test_two_local_workers_give_bit_identical_outputs(site_panel, serial, tmp_path):
    root, _ = site_panel
    results = run_participant(ParticipantConfig(root, tmp_path / "out", n_jobs=2))
    assert [r.status for r in results] == ["done"] * 7
    assert _tables(tmp_path / "out") == _tables(serial)
    assert all(r.peak_rss_mb > 50 for r in results)


def test_dask_cluster_gives_bit_identical_outputs(site_panel, serial, tmp_path):
    """The stand-in for a dask-jobqueue cluster (docs/scaling.md): a LocalCluster."""
    distributed = pytest.importorskip("distributed")
    root, _ = site_panel
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        config = ParticipantConfig(
            root, tmp_path / "out", scheduler_address=cluster.scheduler_address
        )
        results = run_participant(config)
    assert [r.status for r in results] == ["done"] * 7
    assert _tables(tmp_path / "out") == _tables(serial)


def _children(pid: int) -> list[int]:
    """Child process IDs of ``pid``, read from /proc (no ps needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # fields after the command: state, ppid, ...
            children.append(int(stat.parent.name))
    return children


def test_killed_worker_then_restart_redoes_only_unfinished(site_panel, serial, tmp_path):
    root, _ = site_panel
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "ironmap",
        "run",
        str(root),
        str(out),
        "participant",
        "--n-jobs",
        "2",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not list(out.rglob("*_provenance.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "no worker process to kill"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    finished = len(list(out.rglob("*_provenance.json")))
    assert proc.returncode == 2
    assert "a worker process died" in err
    assert "rerun the same command to resume" in err
    assert 1 <= finished < 7
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{7 - finished} done, {finished} skipped, 0 failed" in again.stdout
    assert _tables(out) == _tables(serial)
