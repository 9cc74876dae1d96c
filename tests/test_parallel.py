"""Ordered parallel map: same results in any worker count, progress reported."""

from __future__ import annotations

import logging

import pytest

from ironmap.parallel import map_ordered


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_results_keep_input_order(n_jobs, caplog):
    with caplog.at_level(logging.INFO, logger="ironmap"):
        assert map_ordered(_square, range(7), n_jobs=n_jobs, desc="sq") == [0, 1, 4, 9, 16, 25, 36]
    assert "sq: 7/7" in caplog.text


def test_bad_worker_count():
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        map_ordered(_square, [1], n_jobs=0)
