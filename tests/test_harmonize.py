"""ComBat harmonisation against seeded simulations with planted site, age and disease effects.

Simulated log R2* of 8 regions follows the ComBat model: for participant ``i`` at site ``s``,
``y = mu + slope * (age - 50) + sex_effect * sex + SIGMA * (gamma_s + scale_s * e_i)``, with
``e_i`` standard normal in controls and shifted by the disease effect in patients (the site's
scale acts on all between-subject variation, disease included, as ComBat assumes). The
agreement with the reference implementation (neuroHarmonize) is checked by
``benchmarks/harmonize_reference.py``; these tests need no extra package.
"""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from ironmap.cohort.harmonize import fit_combat

MU = np.array([3.20, 3.35, 3.65, 3.05, 3.55, 3.60, 3.45, 3.00])
SIGMA = 0.05
AGE_SLOPE = 0.01  # log R2* per year
SEX_EFFECT = 0.02


def _site_effects(
    rng: np.random.Generator,
    offsets: dict[str, float],
    scales: dict[str, float],
    scatter: float = 0.1,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per site: offset per region (site-wide offset + scatter, SD units) and SD factor."""
    p = MU.size
    return {s: (offsets[s] + rng.normal(0.0, scatter, p), np.full(p, scales[s])) for s in offsets}


def _draw(
    rng: np.random.Generator,
    per_site: dict[str, int],
    effects: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    shift: float = 0.0,
    ages: dict[str, tuple[float, float]] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log R2* ``(n, 8)``, sites ``(n,)`` and ``[age, sex]`` of one group (``shift`` in SDs)."""
    site = np.repeat(list(per_site), list(per_site.values()))
    bounds = np.array([(ages or {}).get(s, (20.0, 80.0)) for s in site])
    age = rng.uniform(bounds[:, 0], bounds[:, 1])
    sex = rng.integers(0, 2, site.size).astype(np.float64)
    e = rng.standard_normal((site.size, MU.size)) + shift
    gamma = np.array([effects[s][0] for s in site])
    scale = np.array([effects[s][1] for s in site])
    y = (
        MU
        + AGE_SLOPE * (age[:, None] - 50)
        + SEX_EFFECT * sex[:, None]
        + SIGMA * (gamma + scale * e)
    )
    return y, site, np.column_stack([age, sex])


def _without_covariates(y: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """``y`` minus the planted (true) age and sex effects."""
    return y - AGE_SLOPE * (covariates[:, :1] - 50) - SEX_EFFECT * covariates[:, 1:]


SITES = "ABCDEF"


def test_site_location_and_scale_removed_and_age_slope_kept():
    rng = np.random.default_rng(0)
    effects = _site_effects(
        rng,
        dict(zip(SITES, [-1.5, -0.5, 0.0, 0.4, 1.0, 2.0], strict=True)),
        dict(zip(SITES, [0.6, 0.8, 1.0, 1.2, 1.5, 1.8], strict=True)),
    )
    # Older participants at the sites with higher offsets: age and site are confounded.
    ages = dict(
        zip(SITES, [(20, 65), (22, 67), (25, 70), (25, 70), (30, 75), (35, 80)], strict=True)
    )
    y, site, cov = _draw(rng, dict.fromkeys(SITES, 40), effects, ages=ages)
    harmonised = fit_combat(y, site, cov).apply(y, site, cov)

    def site_summary(values):
        resid = _without_covariates(values, cov)
        pooled = resid.std(axis=0, ddof=1)
        dev = np.array([resid[site == s].mean(0) for s in SITES]) - resid.mean(0)
        ratio = np.array([resid[site == s].std(0, ddof=1) for s in SITES]) / pooled
        return dev / pooled, ratio

    dev, ratio = site_summary(y)
    assert np.abs(dev.mean(1)).max() > 1.0  # the planted site effects are there
    assert ratio.min() < 0.5
    assert ratio.max() > 1.2

    dev, ratio = site_summary(harmonised)
    # Site-wide offsets are gone. Per region, EB shrinks each site's offset towards the site's
    # mean over regions, so up to ~0.1 SD of it (its sampling error, 1/sqrt(40) = 0.16 SD
    # before shrinkage) stays in a region's site mean.
    assert np.abs(dev.mean(1)).max() < 0.1
    assert np.abs(dev).max() < 0.3
    assert ratio.min() > 0.8
    assert ratio.max() < 1.25

    design = np.column_stack([np.ones(len(y)), cov])
    slope = np.linalg.lstsq(design, harmonised, rcond=None)[0][1]
    np.testing.assert_allclose(slope, AGE_SLOPE, rtol=0.1)


def test_disease_shift_survives_at_a_biased_site():
    rng = np.random.default_rng(1)
    sites = "ABCDE"
    # Patients mostly at A, the site with the largest offset (+1.5 SD) and scale (x1.6).
    effects = _site_effects(
        rng,
        dict(zip(sites, [1.5, -0.5, 0.0, 0.4, -1.0], strict=True)),
        dict(zip(sites, [1.6, 0.8, 1.0, 1.2, 0.9], strict=True)),
    )
    y, site, cov = _draw(rng, {**dict.fromkeys(sites, 60), "A": 120}, effects)
    y_pt, site_pt, cov_pt = _draw(rng, {"A": 120, "B": 10, "C": 10, "D": 10}, effects, shift=0.5)

    def shift(controls, patients):
        hc, pt = _without_covariates(controls, cov), _without_covariates(patients, cov_pt)
        return np.mean((pt.mean(0) - hc.mean(0)) / hc.std(0, ddof=1))

    assert shift(y, y_pt) > 0.8  # raw: disease + site A's offset
    model = fit_combat(y, site, cov)
    harmonised = shift(model.apply(y, site, cov), model.apply(y_pt, site_pt, cov_pt))
    assert harmonised == pytest.approx(0.5, abs=0.15)


def test_site_without_controls_gives_nan_rows():
    rng = np.random.default_rng(2)
    effects = _site_effects(rng, {"A": 0.5, "B": -0.5, "C": 1.0}, {"A": 1.0, "B": 1.2, "C": 0.8})
    y, site, cov = _draw(rng, {"A": 20, "B": 20}, effects)
    y_pt, site_pt, cov_pt = _draw(rng, {"A": 3, "C": 4, "B": 3}, effects)
    model = fit_combat(y, site, cov)
    assert model.sites == ("A", "B")
    out = model.apply(y_pt, site_pt, cov_pt)
    np.testing.assert_array_equal(np.isnan(out).all(1), site_pt == "C")
    assert np.isfinite(out[site_pt != "C"]).all()
    np.testing.assert_array_equal(model.site_index(["B", "C", "A"]), [1, -1, 0])


def test_closed_form_without_eb_matches_statsmodels():
    rng = np.random.default_rng(3)
    effects = _site_effects(
        rng,
        dict(zip("ABCD", [0.8, -0.3, 0.0, 1.2], strict=True)),
        dict(zip("ABCD", [1.0, 1.4, 0.7, 1.1], strict=True)),
    )
    y, site, cov = _draw(rng, {"A": 30, "B": 12, "C": 45, "D": 7}, effects)
    model = fit_combat(y, site, cov, eb=False)

    sites = np.array(["A", "B", "C", "D"])
    onehot = (site[:, None] == sites).astype(float)
    n_s = onehot.sum(0)
    for g in range(y.shape[1]):
        fit = sm.OLS(y[:, g], np.column_stack([onehot, cov])).fit()
        alpha = n_s @ fit.params[:4] / len(y)
        beta = fit.params[4:]
        var = fit.ssr / len(y)  # ComBat's sigma^2: divisor n
        z = (y[:, g] - alpha - cov @ beta) / np.sqrt(var)
        gamma = np.array([z[site == s].mean() for s in sites])
        delta = np.array([z[site == s].var(ddof=1) for s in sites])
        np.testing.assert_allclose(model.grand_mean[g], alpha, rtol=1e-12)
        np.testing.assert_allclose(model.beta[g], beta, rtol=1e-9)
        np.testing.assert_allclose(model.var_pooled[g], var, rtol=1e-10)
        np.testing.assert_allclose(model.gamma_hat[:, g], gamma, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model.delta_hat[:, g], delta, rtol=1e-9)
        expected = (z - gamma[onehot.argmax(1)]) / np.sqrt(delta[onehot.argmax(1)])
        expected = expected * np.sqrt(var) + alpha + cov @ beta
        np.testing.assert_allclose(model.apply(y, site, cov)[:, g], expected, rtol=1e-12)
    np.testing.assert_array_equal(model.gamma_star, model.gamma_hat)
    np.testing.assert_array_equal(model.delta_star, model.delta_hat)


def test_eb_shrinks_a_small_site_towards_its_mean_over_regions():
    rng = np.random.default_rng(4)
    sites = "ABCDEF"
    effects = _site_effects(
        rng,
        dict(zip(sites, [0.5, -0.5, 0.0, 0.3, -1.0, 1.0], strict=True)),
        dict(zip(sites, [1.0, 1.2, 0.9, 1.1, 0.8, 1.3], strict=True)),
        scatter=0.3,
    )
    n = {**dict.fromkeys(sites[:5], 40), "F": 3}
    y, site, cov = _draw(rng, n, effects)
    eb, raw = fit_combat(y, site, cov), fit_combat(y, site, cov, eb=False)
    np.testing.assert_allclose(eb.gamma_hat, raw.gamma_hat, rtol=1e-12)
    small = eb.sites.index("F")

    g_bar = eb.gamma_hat.mean(axis=1, keepdims=True)
    tau2 = eb.gamma_hat.var(axis=1, ddof=1, keepdims=True)
    # gamma* = g_bar + w (gamma_hat - g_bar) with w = n tau2 / (n tau2 + delta*) (Johnson et
    # al. 2007, eq. 3.1); tau2 is each site's own spread of gamma_hat over regions.
    kept = (eb.gamma_star - g_bar) / (eb.gamma_hat - g_bar)
    weight = eb.n_site * tau2 / (eb.n_site * tau2 + eb.delta_star)
    np.testing.assert_allclose(kept, weight, rtol=1e-3)  # EB iterations stop at 1e-4
    # 3 controls: every region moves towards the site's mean, never past it, by about a third.
    assert ((kept[small] > 0.5) & (kept[small] < 0.8)).all()
    assert eb.gamma_star[small].mean() == pytest.approx(g_bar[small, 0], abs=0.05)

    # And closer to the planted offsets (standardised units, relative to the weighted mean).
    offsets = np.array([effects[s][0] for s in sites])
    weights = np.array([n[s] for s in sites])
    truth = SIGMA * (offsets - weights @ offsets / weights.sum()) / np.sqrt(eb.var_pooled)
    error_hat = np.abs(eb.gamma_hat[small] - truth[small]).mean()
    error_star = np.abs(eb.gamma_star[small] - truth[small]).mean()
    assert error_star < 0.8 * error_hat


@pytest.mark.parametrize("eb", [True, False])
def test_per_feature_design_equal_to_common_design(eb):
    rng = np.random.default_rng(5)
    effects = _site_effects(rng, {"A": 0.5, "B": -0.5, "C": 1.0}, {"A": 1.0, "B": 1.3, "C": 0.8})
    y, site, cov = _draw(rng, {"A": 25, "B": 15, "C": 30}, effects)
    common = fit_combat(y, site, cov, eb=eb)
    stacked = fit_combat(y, site, np.repeat(cov[None], y.shape[1], axis=0), eb=eb)
    for field in ("beta", "grand_mean", "var_pooled", "gamma_star", "delta_star"):
        np.testing.assert_allclose(getattr(stacked, field), getattr(common, field), rtol=1e-12)
    np.testing.assert_allclose(
        stacked.apply(y, site, np.repeat(cov[None], y.shape[1], axis=0)),
        common.apply(y, site, cov),
        rtol=1e-12,
    )


def test_per_feature_designs_without_eb_are_separate_fits():
    rng = np.random.default_rng(6)
    effects = _site_effects(rng, {"A": 0.5, "B": -0.5, "C": 1.0}, {"A": 1.0, "B": 1.3, "C": 0.8})
    y, site, cov = _draw(rng, {"A": 25, "B": 15, "C": 30}, effects)
    # Each region its own covariates (e.g. age and its own volume).
    design = np.stack([np.column_stack([cov, rng.normal(size=len(y))]) for _ in range(y.shape[1])])
    joint = fit_combat(y, site, design, eb=False).apply(y, site, design)
    for g in range(y.shape[1]):
        alone = fit_combat(y[:, [g]], site, design[g], eb=False).apply(y[:, [g]], site, design[g])
        np.testing.assert_allclose(joint[:, [g]], alone, rtol=1e-12)
