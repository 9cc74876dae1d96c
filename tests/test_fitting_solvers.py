"""Each estimator on noise-free data (exact recovery), ARLO's closed forms, the solver registry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ironmap.errors import InputError
from ironmap.fitting import METHODS, SOLVERS, DecayModel, Solver, get_solver, solvers
from ironmap.fitting.solvers import arlo_invert_discretisation, arlo_t2star

from conftest import decay, rician_magnitude

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


# -- the solver registry -------------------------------------------------------------------------

UNKNOWN = "unknown fit method {!r}; choose one of auto, loglin, wls, nlls, arlo"


def test_registry_lists_the_public_methods_in_order_with_their_sidecar_text():
    assert METHODS == ("auto", "loglin", "wls", "nlls", "arlo")
    assert list(SOLVERS) == [*METHODS, "two_point"]
    assert all(key == record.name for key, record in SOLVERS.items())
    assert {n: s.description for n, s in SOLVERS.items()} == {
        "auto": "Rician maximum likelihood below the noise floor, noise-corrected WLS above it",
        "loglin": "log-linear ordinary least squares",
        "wls": "log-linear least squares weighted by S^2 (iterated)",
        "nlls": "mono-exponential non-linear least squares (Levenberg-Marquardt)",
        "arlo": "ARLO (Pei et al. 2015) with exact Simpson-rule inversion",
        "two_point": "closed form for two echoes: R2* = ln(S1/S2) / (TE2 - TE1)",
    }
    assert {n: s.noise_model for n, s in SOLVERS.items()} == {
        "auto": "rician",
        **dict.fromkeys(["loglin", "wls", "nlls", "arlo", "two_point"], "gaussian"),
    }
    assert {n: s.min_echoes for n, s in SOLVERS.items()} == {
        **dict.fromkeys(METHODS, 2),
        "arlo": 3,
        "two_point": 2,
    }
    # Dual-echo data: every method but auto (which refines it) becomes the closed form.
    assert {n: s.dual_echo for n, s in SOLVERS.items()} == {
        "auto": None,
        **dict.fromkeys(["loglin", "wls", "nlls", "arlo"], "two_point"),
        "two_point": None,
    }


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("sigma", [1e-9, None])
def test_every_solver_keeps_the_one_signature_and_is_exact_on_noise_free_data(te9, name, sigma):
    record = SOLVERS[name]
    te = te9[[0, 4]] if name == "two_point" else te9
    s0 = np.array([1e-2, 1.0, 250.0, 3e3, 1e5, 42.0])
    signal = decay(s0, R2_TRUE, te)
    out = record.function(signal, te, sigma=sigma, factor=None)
    assert isinstance(out, tuple)
    assert len(out) == 3
    a, r, converged = out
    assert a.shape == r.shape == converged.shape == (6,)
    assert a.dtype == r.dtype == np.float64
    assert converged.dtype == np.bool_
    assert converged.all()
    np.testing.assert_allclose(r, R2_TRUE, rtol=1e-6)
    np.testing.assert_allclose(a, s0, rtol=1e-6)


@pytest.mark.parametrize("name", [n for n, s in SOLVERS.items() if s.noise_model == "rician"])
def test_rician_solvers_take_the_decay_factor_themselves(te9, name):
    factor = np.exp(-((np.linspace(0.0, 3.0, 6)[:, None] * te9 / te9[-1]) ** 2))
    signal = decay(300.0, R2_TRUE, te9) * factor
    a, r, converged = SOLVERS[name].function(signal, te9, sigma=1e-7, factor=factor)
    assert converged.all()
    np.testing.assert_allclose(r, R2_TRUE, rtol=1e-6)
    np.testing.assert_allclose(a, 300.0, rtol=1e-6)


def _loglin_under_another_name(signal, te, *, sigma, factor):
    s0, r2star = solvers.loglin(signal, te)
    return s0, r2star, np.ones(signal.shape[0], dtype=bool)


def test_a_new_method_is_one_function_and_one_record(monkeypatch, rng, te9):
    toy = Solver(
        name="toy",
        function=_loglin_under_another_name,
        description="loglin by another name",
        noise_model="gaussian",
    )
    monkeypatch.setitem(SOLVERS, "toy", toy)
    assert get_solver("toy") is toy
    r2 = np.linspace(10.0, 100.0, 300)
    sigma = 2.0
    factor = np.exp(-((np.linspace(0.0, 1.0, 300)[:, None] * te9 / te9[-1]) ** 2))
    for decay_factor in (None, factor):
        amplitude = decay(400.0, r2, te9) * (1.0 if decay_factor is None else decay_factor)
        data = rician_magnitude(amplitude, sigma, rng)
        fit = DecayModel(te9, method="toy", sigma=sigma).fit(data, decay_factor=decay_factor)
        ref = DecayModel(te9, method="loglin", sigma=sigma).fit(data, decay_factor=decay_factor)
        assert (fit.method, fit.method_description) == ("toy", "loglin by another name")
        np.testing.assert_array_equal(fit.params, ref.params)
        np.testing.assert_array_equal(fit.status, ref.status)
        np.testing.assert_array_equal(fit.r2star_sd, ref.r2star_sd)
        np.testing.assert_array_equal(fit.rmse, ref.rmse)
        assert np.all(fit.status == 0)
        assert abs(np.median(fit.r2star / r2) - 1.0) < 0.02  # a fit, not just a run
    # Dual-echo data go to the closed form, as for every Gaussian method.
    two = DecayModel(te9[[0, 3]], method="toy", sigma=sigma).fit(data[:, [0, 3]])
    assert two.method == "two_point"
    np.testing.assert_allclose(
        two.r2star, np.log(data[:, 0] / data[:, 3]) / (te9[3] - te9[0]), rtol=1e-12
    )


def test_min_echoes_and_echo_time_checks_come_from_the_record(monkeypatch, te9):
    def at_most_20ms(te):
        if te[-1] > 0.02:
            raise InputError("toy needs TE <= 20 ms")

    toy = Solver(
        name="toy",
        function=_loglin_under_another_name,
        description="loglin by another name",
        noise_model="gaussian",
        min_echoes=4,
        check_echo_times=at_most_20ms,
    )
    monkeypatch.setitem(SOLVERS, "toy", toy)
    with pytest.raises(InputError, match=r"^fit method 'toy' needs at least 4 echoes, got 3$"):
        DecayModel(te9[:3], method="toy")
    with pytest.raises(InputError, match="toy needs TE <= 20 ms"):
        DecayModel(te9, method="toy")
    assert DecayModel(te9[:4], method="toy").solver is toy


@pytest.mark.parametrize("name", ["lm", "two_point", "AUTO", ""])
def test_unknown_and_internal_methods_are_refused_with_the_choices(name, te9):
    message = "^" + re.escape(UNKNOWN.format(name)) + "$"
    with pytest.raises(InputError, match=message):
        get_solver(name)
    with pytest.raises(InputError, match=message):
        DecayModel(te9, method=name)


def test_get_solver_returns_the_record(te9):
    assert [get_solver(name).name for name in METHODS] == list(METHODS)
    assert DecayModel(te9, method="wls").solver is SOLVERS["wls"]
    assert DecayModel(te9[:2], method="wls").solver is SOLVERS["two_point"]
    assert DecayModel(te9[:2], method="auto").solver is SOLVERS["auto"]


def test_ml_bias_is_boxs_formula_echo_by_echo():
    """The one-pass moments of ``r2star_ml_bias`` equal Box's (1971) formula written echo by
    echo, ``b = -1/2 F^-1 J^T W d`` with ``d_i = tr(F^-1 H_i)``; NaN where F is singular."""
    from ironmap.fitting.crlb import r2star_ml_bias
    from ironmap.fitting.rician import rician_information_factor

    rng = np.random.default_rng(8)
    te = np.linspace(2.6e-3, 39.4e-3, 9)
    s0, r2, sigma = rng.uniform(5, 100, 500), rng.uniform(5, 200, 500), rng.uniform(0.5, 2, 500)
    amp = s0[:, None] * np.exp(-r2[:, None] * te)
    w = rician_information_factor(amp / sigma[:, None], coils=4) / sigma[:, None] ** 2
    jac = np.stack([amp, -te * amp], axis=-1)  # d amp / d(ln S0, R2*), (n, echoes, 2)
    info = np.einsum("ne,nei,nej->nij", w, jac, jac)
    inv = np.linalg.inv(info)
    hess = np.stack([np.stack([amp, -te * amp], -1), np.stack([-te * amp, te**2 * amp], -1)], -1)
    d = np.einsum("nij,neji->ne", inv, hess)
    expected = -0.5 * np.einsum("nij,nej,ne,ne->ni", inv, jac, w, d)[:, 1]
    got = r2star_ml_bias(s0, r2, te, sigma, coils=4)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # all the signal in the first echo (a fit that sent the later ones to zero): singular
    assert np.isnan(r2star_ml_bias(30.0, 1e5, np.array([0.005, 0.02]), 1.0))


def test_an_echo_spike_raises_no_numpy_warning_with_sigma_estimated():
    """issue 28: a corrupt echo of 1e30 made the Levenberg-Marquardt steps of the residual
    sigma overflow ('overflow encountered in multiply' reached users of ``ironmap fit``); the
    voxel now simply fails, counted in the fit's one IronmapWarning."""
    import warnings

    from ironmap.errors import IronmapWarning

    te = np.array([0.004, 0.008, 0.012])
    data = 1000.0 * np.exp(-30.0 * te) * np.ones((6, 6, 4, 1))
    data[2, 2, 2, 0] = 1e30  # a corrupt first echo
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = DecayModel(te).fit(data.astype(np.float32))
    assert [w.category for w in caught] == [IronmapWarning]  # the failed voxel, no numpy
    assert fit.failed.sum() == 1
    assert np.isnan(fit.r2star[2, 2, 2])
    np.testing.assert_allclose(fit.r2star[~fit.failed], 30.0, rtol=1e-6)
