"""Rician noise helpers and the Cramer-Rao bound, against closed forms and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from ironmap.fitting import bessel_ratio, r2star_crlb_sd, rician_information_factor
from ironmap.fitting.crlb import r2star_ml_bias
from ironmap.fitting.rician import bessel_terms, fast_bessel_ratio, log_bessel_over_power

from conftest import rician_magnitude


def test_bessel_ratio_matches_scipy_across_both_branches():
    z = np.concatenate([np.geomspace(1e-6, 49.9, 200), np.geomspace(50.1, 650.0, 200)])
    expected = special.iv(1, z) / special.iv(0, z)
    np.testing.assert_allclose(bessel_ratio(z), expected, rtol=1e-9, atol=0)


def test_bessel_ratio_small_argument_limit():
    assert bessel_ratio(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(bessel_ratio(np.array([1e-4])), [5e-5], rtol=1e-6)


def test_bessel_ratio_never_overflows():
    out = bessel_ratio(np.array([1e3, 1e8, 1e300]))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[1:], 1.0, atol=1e-8)


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 5.0])
def test_information_factor_matches_monte_carlo_variance_of_the_score(rng, a):
    m = rician_magnitude(np.full(400_000, a), 1.0, rng)
    score = m * bessel_ratio(a * m) - a
    assert rician_information_factor(a) == pytest.approx(score.var(), rel=0.01)


def test_information_factor_limits():
    assert rician_information_factor(0.0) == 0.0
    # f(a) ~ a^2 near zero (E[M^4] = 8 for a Rayleigh sample)
    assert rician_information_factor(0.05) == pytest.approx(0.05**2, rel=0.05)
    for a in (12.5, 20.0, 50.0):  # asymptote 1 - 1/(2 a^2)
        assert rician_information_factor(a) == pytest.approx(1 - 0.5 / a**2, abs=2e-5)
    a = np.linspace(0, 60, 2001)
    assert np.all(np.diff(rician_information_factor(a)) >= 0)


def test_gaussian_crlb_of_two_echoes_is_the_two_point_error_propagation():
    te = np.array([0.005, 0.020])
    s0, r2, sigma = 200.0, 40.0, 3.0
    s = s0 * np.exp(-r2 * te)
    expected = sigma * np.sqrt(1 / s[0] ** 2 + 1 / s[1] ** 2) / (te[1] - te[0])
    got = r2star_crlb_sd(s0, r2, te, sigma, rician=False)
    assert got == pytest.approx(expected, rel=1e-12)


def test_rician_crlb_exceeds_gaussian_near_floor_and_equals_it_far_above(te9):
    low = r2star_crlb_sd(15.0, 120.0, te9, 1.0)
    assert low > 1.05 * r2star_crlb_sd(15.0, 120.0, te9, 1.0, rician=False)
    high = r2star_crlb_sd(1e4, 20.0, te9, 1.0)
    assert high == pytest.approx(r2star_crlb_sd(1e4, 20.0, te9, 1.0, rician=False), rel=1e-6)


def test_crlb_broadcasts_over_voxel_arrays(te9):
    s0 = np.array([[50.0, 100.0], [200.0, 400.0]])
    sd = r2star_crlb_sd(s0, np.full_like(s0, 30.0), te9, 1.0)
    assert sd.shape == (2, 2)
    # Gaussian-regime bound scales as 1 / S0
    assert sd[1, 1] == pytest.approx(sd[1, 0] / 2, rel=1e-3)


def test_box_bias_of_two_echoes_is_the_second_order_log_bias():
    """Two echoes: R2* = ln(S1/S2)/dt and E[ln(S + e)] = ln S - sigma^2 / (2 S^2) + O(sigma^4)."""
    te = np.array([0.004, 0.024])
    s0, r2, sigma = 30.0, 50.0, 1.5
    s = s0 * np.exp(-r2 * te)
    expected = sigma**2 * (1 / s[1] ** 2 - 1 / s[0] ** 2) / (2 * (te[1] - te[0]))
    got = r2star_ml_bias(s0, r2, te, sigma, rician=False)
    assert got == pytest.approx(expected, rel=1e-10)


# -- the tabulated Bessel terms of the fit's inner loop (issue 16: fast floor path) ----------

_Z = np.concatenate([np.linspace(0.0, 10.0, 20001), np.geomspace(10.0, 1e300, 20000)])


@pytest.mark.parametrize("coils", [1, 2, 8, 32, 64])
def test_tabulated_bessel_terms_are_within_their_stated_error_bounds(coils):
    ratio, log_term = bessel_terms(_Z, coils=coils)
    exact_log = log_bessel_over_power(coils - 1, _Z)
    assert np.max(np.abs(ratio - bessel_ratio(_Z, coils=coils))) < 1e-8
    assert np.max(np.abs(log_term - exact_log) / np.maximum(1.0, np.abs(exact_log))) < 1e-8
    np.testing.assert_array_equal(fast_bessel_ratio(_Z, coils=coils), ratio)


def test_tabulated_bessel_terms_at_the_ends_of_the_range():
    ratio, log_term = bessel_terms(np.array([0.0, np.inf, np.nan]), coils=4)
    np.testing.assert_array_equal(ratio, [0.0, 1.0, np.nan])
    assert log_term[0] == pytest.approx(-3 * np.log(2.0) - np.log(6.0), abs=1e-12)  # 1/(2^3 3!)
    assert np.isnan(log_term[1:]).all()


def test_exact_log_bessel_and_ratio_use_hankel_beyond_1e9():
    """``ive`` returns 0 beyond about 1e9; the reference functions must not."""
    z = np.array([1e10, 1e12])
    expected = z - 0.5 * np.log(2 * np.pi * z) + 1 / (8 * z)  # log I0(z)
    np.testing.assert_allclose(log_bessel_over_power(0, z), expected, rtol=1e-15)
    np.testing.assert_allclose(bessel_ratio(z, coils=3), 1 - 5 / (2 * z), rtol=1e-15)
