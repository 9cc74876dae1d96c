"""The pure-numpy parts of ``benchmarks/fit_peers.py`` (no peer package, no side environment)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "fit_peers.py"
_SPEC = importlib.util.spec_from_file_location("_bench_fit_peers", _PATH)
fit_peers = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = fit_peers  # dataclasses resolve their module by name
_SPEC.loader.exec_module(fit_peers)


def test_cases_match_the_design() -> None:
    cases = fit_peers.cases()
    assert len(cases) == 19
    by_coils = {n: sum(c.coils == n and len(c.te) == 9 for c in cases) for n in (1, 8, 32)}
    assert by_coils == {1: 7, 8: 4, 32: 5}
    dual = [c for c in cases if len(c.te) == 2]
    assert [c.r2star for c in dual] == [30.0, 80.0, 120.0]
    assert dual[0].te == pytest.approx((5e-3, 20e-3))
    assert cases[0].te == pytest.approx(tuple(np.linspace(2.6e-3, 39.4e-3, 9)))
    assert cases[0].sigma == pytest.approx(1000.0 / 30.0)


def test_numpy_loglin_is_exact_on_noise_free_decay() -> None:
    te = fit_peers.TE_9
    r2 = np.array([15.0, 50.0, 120.0])
    mag = 1000.0 * np.exp(-r2[:, None] * te)
    est, failed = fit_peers.fit_numpy_loglin(mag, te)
    np.testing.assert_allclose(est, r2, rtol=1e-10)
    assert not failed.any()


def test_accuracy_statistics() -> None:
    r2 = np.array([9.0, 10.0, 11.0, 14.0, np.nan])
    failed = np.array([False, False, False, True, False])
    m = fit_peers.accuracy(r2, failed, truth=10.0, crlb=2.0)
    assert m.bias_mean == pytest.approx(10.0)  # mean 11 of the finite four
    assert m.bias_median == pytest.approx(5.0)  # median 10.5
    assert m.rmse_crlb == pytest.approx(np.sqrt((1 + 0 + 1 + 16) / 4) / 2.0)
    assert m.failed_pct == pytest.approx(40.0)  # one flagged, one NaN
    empty = fit_peers.accuracy(np.full(2, np.nan), np.zeros(2, bool), truth=10.0, crlb=1.0)
    assert np.isnan(empty.bias_mean)
    assert empty.failed_pct == pytest.approx(100.0)


def test_markdown_table_layout() -> None:
    table = fit_peers.markdown_table(["case", "a"], [["x", "1.5"], ["longer", "-2"]])
    assert table.splitlines() == [
        "| case   |   a |",
        "|--------|----:|",
        "| x      | 1.5 |",
        "| longer |  -2 |",
    ]
