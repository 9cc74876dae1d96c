"""Each estimator on noise-free data (exact recovery) and ARLO's closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.errors import InputError
from ironmap.fitting import METHODS, DecayModel
from ironmap.fitting.solvers import arlo_invert_discretisation, arlo_t2star

from conftest import decay

R2_TRUE = np.array([2.0, 15.0, 40.0, 80.0, 150.0, 300.0])


@pytest.mark.parametrize("method", METHODS)
def test_noise_free_recovery_is_exact(te9, method):
    s0 = np.array([1e-4, 1.0, 250.0, 3e3, 1e5, 42.0])  # any intensity scale
    fit = DecayModel(te9, method=method, sigma=1e-9 * s0.min()).fit(decay(s0, R2_TRUE, te9))
    np.testing.assert_allclose(fit.r2star, R2_TRUE, rtol=1e-6)
    np.testing.assert_allclose(fit.s0, s0, rtol=1e-6)
    np.testing.assert_allclose(fit.t2star, 1 / R2_TRUE, rtol=1e-6)
    np.testing.assert_allclose(fit.predict(), decay(s0, R2_TRUE, te9), rtol=1e-6)


@pytest.mark.parametrize("method", ["auto", "loglin", "wls", "nlls"])
def test_unequal_echo_spacing_is_exact_too(method):
    te = np.array([0.003, 0.0045, 0.009, 0.017, 0.031])
    fit = DecayModel(te, method=method, sigma=1e-6).fit(decay(100.0, R2_TRUE, te))
    np.testing.assert_allclose(fit.r2star, R2_TRUE, rtol=1e-6)


@pytest.mark.parametrize("method", ["auto", "loglin", "wls", "nlls"])
def test_dual_echo_uses_the_closed_form(method):
    te = np.array([0.0049, 0.0196])  # a typical dual-echo protocol
    s = decay(300.0, R2_TRUE, te)
    fit = DecayModel(te, method=method, sigma=1e-6).fit(s)
    expected = np.log(s[:, 0] / s[:, 1]) / (te[1] - te[0])
    np.testing.assert_allclose(fit.r2star, expected, rtol=1e-9)
    np.testing.assert_allclose(fit.r2star, R2_TRUE, rtol=1e-9)
    if method != "auto":
        assert fit.method == "two_point"


def test_arlo_formula_on_noise_free_data_equals_its_simpson_closed_form(te9):
    """Pei et al.'s T2* on S0 q^k equals dt/3 (1 + 4q + q^2) / (1 - q^2), q = exp(-dt R2*)."""
    dt = te9[1] - te9[0]
    q = np.exp(-dt * R2_TRUE)
    raw = arlo_t2star(decay(7.0, R2_TRUE, te9), dt)
    np.testing.assert_allclose(raw, dt / 3 * (1 + 4 * q + q**2) / (1 - q**2), rtol=1e-12)
    # Simpson's rule alone is biased (here by up to ~1e-3); the inversion removes it.
    assert np.max(np.abs(1 / raw - R2_TRUE) / R2_TRUE) > 1e-4
    np.testing.assert_allclose(arlo_invert_discretisation(raw, dt), R2_TRUE, rtol=1e-12)


def test_arlo_inversion_has_no_solution_below_a_third_of_the_spacing():
    dt = 0.005
    out = arlo_invert_discretisation(np.array([dt / 3 * 0.99, dt / 3 * 1.01]), dt)
    assert np.isnan(out[0])
    assert out[1] > 1000.0


def test_arlo_refuses_unequal_spacing_and_two_echoes():
    with pytest.raises(InputError, match="equally spaced echoes, got spacings 2, 3 ms"):
        DecayModel([0.002, 0.004, 0.007], method="arlo")
    with pytest.raises(InputError, match=">= 3 equally spaced echoes, got 2"):
        DecayModel([0.002, 0.004], method="arlo")


@pytest.mark.parametrize("method", METHODS)
def test_float32_input_matches_float64(te9, method):
    s = decay(1000.0, R2_TRUE[:-1], te9)
    f64 = DecayModel(te9, method=method, sigma=1e-3).fit(s)
    f32 = DecayModel(te9, method=method, sigma=1e-3).fit(s.astype(np.float32))
    np.testing.assert_allclose(f32.r2star, f64.r2star, rtol=1e-5)
