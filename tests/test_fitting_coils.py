"""Root-sum-of-squares magnitudes of N receive coils: noncentral chi noise (issue 16).

``DecayModel(coils=N)`` models the noise of N channels combined by root-sum-of-squares; N = 1
is the Rician case and must not change. Data are simulated channel by channel (seeded).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from ironmap.errors import InputError
from ironmap.fitting import DecayModel, r2star_crlb_sd, rician_information_factor
from ironmap.fitting.rician import (
    _information_table,
    _information_table_n,
    bessel_ratio,
    log_bessel_over_power,
    rician_negloglik,
)
from ironmap.io import write_decay_maps
from ironmap.simulate.signal import rss_magnitude

TE = np.linspace(2.6e-3, 39.4e-3, 9)
N_VOXELS = 20_000


def rss(amplitude: np.ndarray, sigma: float, coils: int, rng: np.random.Generator) -> np.ndarray:
    """RSS magnitude of ``coils`` channels (:func:`ironmap.simulate.signal.rss_magnitude`)."""
    return rss_magnitude(amplitude, sigma=sigma, coils=coils, rng=rng)


def simulate(r2: float, snr: float, coils: int, seed: int, n: int = N_VOXELS) -> np.ndarray:
    amp = np.broadcast_to(snr * np.exp(-r2 * TE), (n, TE.size))
    return rss(amp, 1.0, coils, np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("coils", "r2", "snr"),
    [(8, 15.0, 30.0), (8, 80.0, 30.0), (32, 15.0, 30.0), (32, 50.0, 30.0), (32, 80.0, 60.0)],
)
def test_auto_is_unbiased_on_rss_data_of_n_coils(coils, r2, snr):
    mag = simulate(r2, snr, coils, seed=coils * 1000 + int(r2) + int(snr))
    before = DecayModel(TE, sigma=1.0).fit(mag).r2star
    fit = DecayModel(TE, sigma=1.0, coils=coils).fit(mag)
    assert not fit.failed.any()
    bias = 100.0 * (fit.r2star.mean() - r2) / r2
    assert abs(bias) <= 1.0, bias
    # the Rician model on these data is far off (the reason for the keyword)
    assert 100.0 * (before.mean() - r2) / r2 < -2.0


def test_rmse_reaches_the_noncentral_chi_bound_and_r2star_sd_reports_it():
    coils, r2, snr = 8, 80.0, 30.0
    mag = simulate(r2, snr, coils, seed=7)
    fit = DecayModel(TE, sigma=1.0, coils=coils).fit(mag)
    crlb = float(r2star_crlb_sd(snr, r2, TE, 1.0, coils=coils))
    rmse = float(np.sqrt(np.mean((fit.r2star - r2) ** 2)))
    assert rmse == pytest.approx(crlb, rel=0.10)
    assert np.median(fit.r2star_sd) == pytest.approx(crlb, rel=0.05)
    # more coils at the same per-channel sigma raise the floor: less information
    assert crlb > float(r2star_crlb_sd(snr, r2, TE, 1.0))


def test_crlb_matches_the_numerical_fisher_information_for_four_coils():
    """Monte Carlo Fisher information from finite differences of the log-likelihood."""
    coils, s0, r2 = 4, 20.0, 60.0  # late echoes near the floor (~3 sigma): non-Gaussian
    mag = simulate(r2, s0, coils, seed=11, n=40_000)

    def loglik(u: float, r: float) -> np.ndarray:
        amp = np.exp(u - r * TE)
        return -np.sum(rician_negloglik(amp, mag, 1.0, coils=coils), axis=1)

    u, h = np.log(s0), 1e-5
    score = np.column_stack(
        [
            (loglik(u + h, r2) - loglik(u - h, r2)) / (2 * h),
            (loglik(u, r2 + h * 100) - loglik(u, r2 - h * 100)) / (2 * h * 100),
        ]
    )
    fisher = score.T @ score / score.shape[0]
    sd_numeric = np.sqrt(np.linalg.inv(fisher)[1, 1])
    sd_formula = float(r2star_crlb_sd(s0, r2, TE, 1.0, coils=coils))
    assert sd_formula == pytest.approx(sd_numeric, rel=0.03)
    # the Rician (N = 1) bound would be clearly different here
    assert abs(float(r2star_crlb_sd(s0, r2, TE, 1.0)) / sd_formula - 1.0) > 0.05


@pytest.mark.parametrize("coils", [2, 4, 32])
def test_score_is_the_bessel_ratio_of_order_n(coils):
    """d(negloglik)/dA = (A - M I_N(z) / I_{N-1}(z)) / sigma^2, checked by finite differences."""
    amp = np.array([0.05, 1.0, 3.0, 8.0, 40.0, 300.0])
    mag = np.array([2.0, 5.0, 4.0, 9.0, 41.0, 299.0])
    sigma, h = 1.3, 1e-6
    numeric = (
        rician_negloglik(amp * (1 + h), mag, sigma, coils=coils)
        - rician_negloglik(amp * (1 - h), mag, sigma, coils=coils)
    ) / (2 * h * amp)
    ratio = bessel_ratio(amp * mag / sigma**2, coils=coils)
    np.testing.assert_allclose(numeric, (amp - mag * ratio) / sigma**2, rtol=1e-5, atol=1e-6)


def test_bessel_helpers_are_finite_where_ive_underflows():
    z = np.array([0.0, 1e-12, 1e-5, 0.3, 5.0, 1e4])
    for n in (2, 32, 200):
        ratio = bessel_ratio(z, coils=n)
        assert np.all(np.isfinite(ratio))
        assert np.all((ratio >= 0) & (ratio < 1))
        np.testing.assert_allclose(ratio[:3], z[:3] / (2 * n), rtol=1e-8, atol=0)
        log_ratio = log_bessel_over_power(n - 1, z)
        assert np.all(np.isfinite(log_ratio))
        assert log_ratio[0] == pytest.approx(-(n - 1) * np.log(2) - special.gammaln(n))
    with pytest.raises(ValueError, match="coils"):
        bessel_ratio(z, coils=0)


def test_information_factor_of_n_coils():
    # the general quadrature at N = 1 reproduces the Rician table
    a1, f1 = _information_table()
    a, f = _information_table_n(1)
    np.testing.assert_allclose(np.interp(a1, a, f), f1, atol=1e-4)
    snr = np.array([0.0, 1.0, 5.0, 20.0, 67.0, 68.0, 500.0])
    for n in (8, 32):
        info = rician_information_factor(snr, coils=n)
        assert info[0] == 0.0
        assert np.all(np.diff(info) > 0)
        assert np.all(info <= 1.0)
        # table and asymptote 1 - (2N - 1) / (2 a^2) join continuously
        assert info[-3] == pytest.approx(info[-2], abs=1e-3)
        # below the floor more coils carry less information about A
        assert rician_information_factor(5.0, coils=n) < rician_information_factor(5.0)


def test_coils_one_is_the_rician_model_unchanged(rng):
    amp = np.broadcast_to(40.0 * np.exp(-90.0 * TE), (500, TE.size))
    mag = rss(amp, 1.0, 1, rng)
    default = DecayModel(TE, sigma=1.0).fit(mag)
    one = DecayModel(TE, sigma=1.0, coils=1).fit(mag)
    assert default.params.tobytes() == one.params.tobytes()
    assert default.r2star_sd.tobytes() == one.r2star_sd.tobytes()
    assert one.coils == 1
    np.testing.assert_array_equal(
        rician_negloglik(amp, mag, 1.0), rician_negloglik(amp, mag, 1.0, coils=1)
    )
    np.testing.assert_array_equal(bessel_ratio(mag), bessel_ratio(mag, coils=1))


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "8", None])
def test_coils_must_be_an_integer_of_at_least_one(bad):
    with pytest.raises(InputError, match="coils"):
        DecayModel(TE, coils=bad)


def test_coils_are_on_the_model_the_fit_and_the_sidecar(tmp_path):
    mag = simulate(30.0, 40.0, 8, seed=3, n=24).reshape(2, 3, 4, TE.size)
    model = DecayModel(TE, sigma=1.0, coils=np.int64(8))
    assert model.coils == 8
    assert type(model.coils) is int
    assert "coils=8" in repr(model)
    fit = model.fit(mag)
    assert fit.coils == 8
    # Gaussian-noise methods accept a coil count and do not depend on it
    wls = DecayModel(TE, method="wls", sigma=1.0, coils=8).fit(mag)
    np.testing.assert_array_equal(
        wls.r2star, DecayModel(TE, method="wls", sigma=1.0).fit(mag).r2star
    )
    written = write_decay_maps(
        fit, np.eye(4), tmp_path / "sub-01", echo_times_s=TE, sources=["in.nii.gz"]
    )
    sidecar = json.loads(
        written[0].with_name(written[0].name.replace(".nii.gz", ".json")).read_text()
    )
    assert sidecar["ReceiveCoilsEffective"] == 8


@pytest.mark.parametrize("coils", [1, 8])
def test_rician_ml_finds_the_maximum_of_the_exact_likelihood(coils):
    """The two-stage solver (Newton, tabulated Bessel terms) against a per-voxel optimiser of the
    exact likelihood (scipy's Bessel functions), on voxels that decay into the noise floor."""
    from scipy import optimize

    from ironmap.fitting import solvers

    rng = np.random.default_rng(7)
    n = 40
    r2 = rng.uniform(60.0, 150.0, n)
    s0 = rng.uniform(15.0, 40.0, n)
    mag = rss(s0[:, None] * np.exp(-r2[:, None] * TE), 1.0, coils, rng)
    start_s0, start_r2 = solvers.wls(mag, TE)
    got_s0, got_r2, ok = solvers.rician_ml(mag, TE, 1.0, s0=start_s0, r2star=start_r2, coils=coils)
    assert ok.all()
    for i in range(n):

        def negloglik(p, m=mag[i]):
            return rician_negloglik(np.exp(p[0] - p[1] * TE), m, 1.0, coils=coils).sum()

        ref = optimize.minimize(
            negloglik,
            [np.log(got_s0[i]) + 0.05, got_r2[i] * 1.1],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
        )
        assert negloglik([np.log(got_s0[i]), got_r2[i]]) <= ref.fun + 1e-9
        assert got_r2[i] == pytest.approx(ref.x[1], rel=1e-4, abs=1e-3)


def test_a_background_analysed_once_serves_coils_and_sigma(monkeypatch):
    """``effective_coils`` and ``DecayModel.fit`` take the caller's analysis of the background
    instead of repeating it (it is the costly part of a participant's fit)."""
    from ironmap.fitting import background as noise
    from ironmap.fitting import effective_coils

    rng = np.random.default_rng(11)
    amp = np.zeros((40, 40, 20, TE.size))
    amp[10:30, 10:30, 5:15] = 50.0 * np.exp(-30.0 * TE)
    mag = rss(amp, 1.0, 4, rng)
    estimate = noise.noise_from_background(mag)
    assert estimate.n_coils == 4

    def fail(*args, **kwargs):
        raise AssertionError("background analysed again")

    monkeypatch.setattr(noise, "_diagnose_background", fail)
    coils, source = effective_coils(mag, None, background=estimate)
    fit = DecayModel(TE, coils=coils).fit(mag, mask=amp[..., 0] > 0, background=estimate)
    assert (coils, source, fit.sigma_source) == (4, "background", "background")
    assert fit.sigma == estimate.sigma
    assert np.nanmedian(fit.r2star) == pytest.approx(30.0, rel=0.02)
