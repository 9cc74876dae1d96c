"""Shared fixtures: echo trains and seeded noise, so every number in the tests is reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: Real data shipped beside the repository (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

#: The echo train of the acceptance criteria: 9 echoes, 2.6-39.4 ms.
TE_9 = np.linspace(2.6e-3, 39.4e-3, 9)


def rician_magnitude(amplitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``|A + n_re + i n_im|`` with Gaussian noise of SD ``sigma`` in each channel."""
    noise = rng.normal(scale=sigma, size=(2, *np.shape(amplitude)))
    return np.hypot(amplitude + noise[0], noise[1])


def decay(s0: float | np.ndarray, r2star: float | np.ndarray, te: np.ndarray) -> np.ndarray:
    """Noise-free ``S0 exp(-R2* TE)``, echoes on the last axis."""
    return np.asarray(s0)[..., None] * np.exp(-np.asarray(r2star)[..., None] * te)


@pytest.fixture(scope="session")
def site_panel(tmp_path_factory):
    """A BIDS cohort of one simulated MS patient per site (7 protocols) and its truth."""
    from ironmap.simulate.bids import write_cohort
    from ironmap.simulate.cohort import draw_site_panel

    root = tmp_path_factory.mktemp("site_panel") / "bids"
    return root, write_cohort(root, draw_site_panel())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20140101)


@pytest.fixture
def te9() -> np.ndarray:
    return TE_9.copy()
