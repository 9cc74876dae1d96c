"""Memory bound of whole-head fitting (slow: about 20 s; run with ``make test-slow``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "fit_memory.py"


@pytest.mark.slow
def test_whole_head_256x256x176x12_float32_fits_in_under_4_gb():
    out = subprocess.run(
        [sys.executable, str(BENCH)], capture_output=True, text=True, check=True, timeout=600
    ).stdout.splitlines()
    row = out[-1].split()
    input_mb, peak_mb, fitted = float(row[1]), float(row[2]), int(row[5].replace(",", ""))
    assert input_mb == pytest.approx(256 * 256 * 176 * 12 * 4 / 2**20)
    assert peak_mb < 4096
    assert fitted > 3_000_000  # the head was fitted, not skipped
