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
import pandas as pd
import pytest
import statsmodels.api as sm

from ironmap.cohort.harmonize import fit_combat
from ironmap.errors import IronmapWarning

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


# --- issue 24: a missing region at one site, noisy sites, few controls -------------------------


def test_missing_feature_at_one_site_keeps_the_sites_other_features():
    """A feature without controls at one site: NaN there only, with a warning naming both."""
    rng = np.random.default_rng(7)
    effects = _site_effects(rng, {"A": 0.5, "B": -0.5, "C": 1.0}, {"A": 1.0, "B": 1.3, "C": 0.8})
    y, site, cov = _draw(rng, {"A": 25, "B": 14, "C": 30}, effects)
    y_pt, site_pt, cov_pt = _draw(rng, {"A": 5, "B": 23, "C": 5}, effects, shift=0.5)
    g = 6
    y[site == "B", g] = np.nan  # e.g. dentate not segmented at site B
    names = tuple(f"r{i}" for i in range(MU.size))
    with pytest.warns(IronmapWarning, match=r"r6: no control .* at site\(s\) B"):
        model = fit_combat(y, site, cov, features=names)
    out = model.apply(y_pt, site_pt, cov_pt)
    at_b = site_pt == "B"
    assert np.isnan(out[at_b, g]).all()
    others = np.delete(np.arange(MU.size), g)
    assert np.isfinite(out[:, others]).all()
    assert np.isfinite(out[~at_b, g]).all()
    # Site B's parameters of the other features are those of a fit without feature g.
    alone = fit_combat(y[:, others], site, cov)
    np.testing.assert_allclose(
        out[at_b][:, others], alone.apply(y_pt[:, others], site_pt, cov_pt)[at_b], rtol=1e-10
    )
    i = model.sites.index("B")
    np.testing.assert_allclose(model.gamma_star[i, others], alone.gamma_star[i], rtol=1e-10)
    assert model.n_site[i, g] == 0
    assert np.isnan(model.gamma_star[i, g])


def _cohort_tables(sites, seed, **options):
    from ironmap.simulate.tables import simulate_table_cohort

    long, people = simulate_table_cohort(sites, seed=seed, **options)
    subjects = people.assign(
        icv_ml=1450.0, brain_ml=1200.0, cortical_gm_ml=480.0, nbv=0.84, lesion_volume_ml=5.0
    ).assign(lesion_count=3)
    return long, people, subjects


def test_missing_region_at_one_site_in_the_cohort_analysis():
    """Dentate n/a at one site (14 HC + 23 MS): its participants keep every other region."""
    from ironmap.cohort.analysis import analyse_cohort
    from ironmap.simulate.tables import TableSite

    sites = [
        TableSite("s1", 1.00, 1.0, {"HC": 14, "RRMS": 10}),
        TableSite("s2", 1.05, 1.0, {"HC": 14, "RRMS": 23}),
        TableSite("s3", 0.97, 1.0, {"HC": 12, "RRMS": 10}),
    ]
    long, people, subjects = _cohort_tables(sites, seed=1)
    at_s2 = long["participant_id"].isin(people.loc[people["site"] == "s2", "participant_id"])
    long.loc[at_s2 & (long["region"] == "dentate_nucleus"), "r2star_median"] = np.nan
    with pytest.warns(IronmapWarning, match=r"dentate_nucleus: no control .* at site\(s\) s2"):
        result = analyse_cohort(long, subjects, mixed=False, clinical=False, n_bootstrap=0)
    values = result.regions[result.regions["hemisphere"] == "both"].merge(
        people[["participant_id", "site"]]
    )
    dentate = values["region"] == "dentate_nucleus"
    s2 = values["site"] == "s2"
    assert values.loc[s2 & dentate, "r2star_corrected"].isna().all()
    assert values.loc[~(s2 & dentate), ["r2star_corrected", "r2star_z"]].notna().all().all()
    assert not result.exclusions
    note = result.comparison.query(
        "region == 'dentate_nucleus' and contrast == 'MS-HC'"
    ).note.iloc[0]
    assert "site without controls" not in note
    assert "37 without" in note  # 14 HC + 23 MS at s2 have no dentate R2*


def _normative_inputs(rng, per_site, *, extra_noise=None):
    """Controls' R2* (1/s, 8 regions) with additive extra noise (SDs of log R2*) at some sites."""
    y, site, cov = _draw(
        rng,
        per_site,
        _site_effects(rng, dict.fromkeys(per_site, 0.0), dict.fromkeys(per_site, 1.0)),
    )
    for s, k in (extra_noise or {}).items():
        y[site == s] += k * SIGMA * rng.standard_normal(((site == s).sum(), MU.size))
    sex = np.where(cov[:, 1] > 0, "F", "M").astype(object)
    return np.exp(y), site, cov[:, 0], sex


REGION_NAMES = tuple(f"r{i}" for i in range(MU.size))


def test_a_disease_shift_at_a_noisy_site_is_not_shrunk():
    """Patients = the noisy site's controls + D (log R2*): harmonised shift exactly D.

    ComBat divides the deviation from the site's expectation by the site's scale (here
    sqrt(delta) ~ 1.2), which shrinks a disease effect there as much as the noise; the
    normative model removes the location only and carries the scale into the z-scores.
    """
    from ironmap.cohort.age import fit_normative

    rng = np.random.default_rng(8)
    y, site, age, sex = _normative_inputs(rng, {"A": 60, "B": 60, "C": 60}, extra_noise={"B": 1.0})
    model = fit_normative(y, age=age, sex=sex, site=site, regions=REGION_NAMES)
    shift = 0.5 * SIGMA
    b = site == "B"
    hc = model.transform(y[b], age[b], sex[b], site[b], is_control=np.ones(b.sum(), bool))
    pt = model.transform(
        y[b] * np.exp(shift), age[b], sex[b], site[b], is_control=np.zeros(b.sum(), bool)
    )
    assert model.combat.delta_star[model.combat.sites.index("B")].mean() > 1.3
    np.testing.assert_allclose(
        np.log(pt["r2star_harmonized"]) - np.log(hc["r2star_harmonized"]), shift, rtol=1e-10
    )
    np.testing.assert_allclose(
        np.log(pt["r2star_corrected"]) - np.log(hc["r2star_corrected"]), shift, rtol=1e-10
    )


def test_z_sd_of_disease_free_patients_at_a_small_noisy_site():
    """4 controls at a site with twice the SD (extra noise): z SD 0.85-1.15 over 30 cohorts.

    With the pooled scale (the site has fewer than MIN_CONTROLS_PER_SITE controls) it was
    1.86; the site's scale pooled over regions and shrunk towards the pooled scale: 1.12 (the
    prior of 9 df pulls a scale this far from 1 back a little: delta_z ~ 2.9 for ~3.6).
    """
    from ironmap.cohort.age import fit_normative

    per_site = {"A": 20, "B": 20, "C": 20, "D": 20, "N": 4}
    zs = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        y, site, age, sex = _normative_inputs(
            rng, {**per_site, "N": 4 + 40}, extra_noise={"N": np.sqrt(3.0)}
        )
        n_idx = np.flatnonzero(site == "N")
        control = np.ones(site.size, bool)
        control[n_idx[4:]] = False  # 40 disease-free patients at N
        model = fit_normative(
            y[control],
            age=age[control],
            sex=sex[control],
            site=site[control],
            regions=REGION_NAMES,
        )
        out = model.transform(
            y[~control],
            age[~control],
            sex[~control],
            site[~control],
            is_control=np.zeros((~control).sum(), bool),
        )
        zs.append(out["r2star_z"].ravel())
    z = np.concatenate(zs)
    assert abs(z.mean()) < 0.15
    assert 0.85 <= z.std() <= 1.15


def test_table_cohort_options_that_break_the_harmonisation_model():
    """simulate_table_cohort: additive offset, region-specific bias, shared subject effect."""
    from ironmap.simulate.tables import TableSite, simulate_table_cohort
    from ironmap.simulate.tissue import AGE_MODELS, BIOLOGICAL_SD, BIOLOGICAL_SD_SHARED

    plain, _ = simulate_table_cohort([TableSite("a", 1.05, 1.0, {"HC": 30})], seed=4)
    site = TableSite("a", 1.05, 1.0, {"HC": 30}, region_bias={"putamen": 1.1}, offset=2.0)
    moved, _ = simulate_table_cohort([site], seed=4)
    np.testing.assert_array_equal(moved["truth"], plain["truth"])  # same draws
    noise = plain["r2star_median"] - 1.05 * plain["truth"]
    factor = np.where(moved["region"] == "putamen", 1.1, 1.0) * 1.05
    np.testing.assert_allclose(moved["r2star_median"], factor * moved["truth"] + 2.0 + noise)

    long, people = simulate_table_cohort(
        [TableSite("a", n={"HC": 3000})], seed=5, shared_sd=BIOLOGICAL_SD_SHARED
    )
    truth = long.pivot(index="participant_id", columns="region", values="truth")
    ages = people.set_index("participant_id").loc[truth.index, "age"]
    offsets = pd.DataFrame(
        {
            r: truth[r] - AGE_MODELS["cerebral_wm" if r == "nawm" else r](ages.to_numpy())
            for r in truth.columns
        }
    )
    corr = offsets.corr().to_numpy()[np.triu_indices(truth.shape[1], 1)]
    expected = BIOLOGICAL_SD_SHARED**2 / BIOLOGICAL_SD**2  # 0.845
    assert abs(corr.mean() - expected) < 0.02
