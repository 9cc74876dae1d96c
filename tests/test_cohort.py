"""Cohort statistics against seeded cases with known answers, and statsmodels reproduced."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ironmap.cohort import age_correct, compare_groups, determinants, fit_normative
from ironmap.cohort.determinants import stepwise
from ironmap.cohort.tables import read_participants
from ironmap.errors import InputError


def _controls(n, rng, *, truth, sites=("a", "b", "c"), offsets=(0.0, 1.5, -1.0), sd=0.8):
    age = rng.uniform(18, 80, n)
    site = rng.choice(sites, n)
    off = dict(zip(sites, offsets, strict=True))
    y = truth(age) + np.array([off[s] for s in site]) + rng.normal(0, sd, n)
    return pd.DataFrame({"y": y, "age": age, "site": site})


def test_exponential_ageing_is_chosen_and_recovered():
    rng = np.random.default_rng(1)

    def truth(age):
        return 20.0 + 21.0 * (1 - np.exp(-0.09 * age))  # pallidum-like

    hc = _controls(300, rng, truth=truth)
    model = fit_normative(hc)
    assert model.kind == "exponential"
    assert model.rate == pytest.approx(0.09, rel=0.25)
    assert model.site_effects["b"] == pytest.approx(1.5, abs=0.3)
    assert model.site_effects["c"] == pytest.approx(-1.0, abs=0.3)
    assert model.residual_sd == pytest.approx(0.8, rel=0.1)
    ages = np.array([25.0, 45.0, 70.0])
    np.testing.assert_allclose(model.predict(ages, "a"), truth(ages), atol=0.4)


def test_linear_ageing_is_not_mistaken_for_a_curve():
    rng = np.random.default_rng(2)
    hc = _controls(300, rng, truth=lambda age: 18.0 + 0.05 * age)
    model = fit_normative(hc)
    ages = np.linspace(20, 80, 7)
    np.testing.assert_allclose(model.predict(ages, "a"), 18.0 + 0.05 * ages, atol=0.3)
    assert model.cv_rmse[model.kind] <= min(model.cv_rmse.values()) + 1e-12


def test_age_correction_removes_age_and_site():
    rng = np.random.default_rng(3)
    hc = _controls(200, rng, truth=lambda age: 17.0 + 8.0 * (1 - np.exp(-0.05 * age)))
    model = fit_normative(hc)
    corrected, z = age_correct(hc, model, reference_age=45.0, reference_site="a")
    slope = np.polyfit(hc.age, corrected, 1)[0]
    assert abs(slope) < 0.01
    by_site = pd.Series(corrected).groupby(hc.site.to_numpy()).mean()
    assert by_site.max() - by_site.min() < 0.3
    assert np.mean(corrected) == pytest.approx(model.predict(45.0, "a"), abs=0.15)
    assert np.std(z) == pytest.approx(1.0, rel=0.1)


def test_site_without_controls_uses_the_pooled_site_term():
    rng = np.random.default_rng(4)
    hc = _controls(100, rng, truth=lambda age: 20.0 + 0.0 * age)
    model = fit_normative(hc)
    patients = pd.DataFrame({"y": [25.0], "age": [40.0], "site": ["elsewhere"]})
    with pytest.warns(UserWarning, match="elsewhere have no controls"):
        corrected, _ = age_correct(patients, model, reference_age=40.0, reference_site="a")
    expected = 25.0 - model.predict(40.0, "elsewhere") + model.predict(40.0, "a")
    assert corrected[0] == pytest.approx(expected)
    pooled_minus_a = model.pooled_site_effect - model.site_effects["a"]
    assert model.predict(40.0, "elsewhere") - model.predict(40.0, "a") == pytest.approx(
        pooled_minus_a
    )
    counts = hc.site.value_counts()
    weighted = sum(model.site_effects[s] * counts[s] for s in counts.index) / counts.sum()
    assert model.pooled_site_effect == pytest.approx(weighted)


def _cohort(rng, *, n=240, effect=3.0, site_bias=0.0, confound=False):
    sites = rng.choice(["x", "y"], n)
    if confound:  # site x recruits mostly patients, site y mostly controls
        ms = np.where(sites == "x", rng.random(n) < 0.85, rng.random(n) < 0.15)
    else:
        ms = rng.random(n) < 0.5
    phenotype = np.where(ms, rng.choice(["RRMS", "SPMS", "PPMS"], n, p=[0.6, 0.25, 0.15]), None)
    age = rng.uniform(20, 70, n)
    sex = rng.choice(["F", "M"], n)
    y = 30 + 0.1 * age + effect * ms + site_bias * (sites == "x") + rng.normal(0, 2.0, n)
    return pd.DataFrame(
        {
            "region": "pallidum",
            "r2star_median": y,
            "group": np.where(ms, "MS", "HC"),
            "phenotype": phenotype,
            "age": age,
            "sex": sex,
            "site": sites,
        }
    )


def test_group_difference_matches_statsmodels_and_the_planted_effect():
    rng = np.random.default_rng(5)
    data = _cohort(rng, effect=3.0)
    table = compare_groups(data)
    row = table[table.contrast == "MS-HC"].iloc[0]
    ref = smf.ols(
        "r2star_median ~ C(group, Treatment('HC')) + age + C(sex) + C(site)", data=data
    ).fit()
    key = "C(group, Treatment('HC'))[T.MS]"
    assert row.estimate == pytest.approx(ref.params[key], rel=1e-10)
    assert row.p == pytest.approx(ref.pvalues[key], rel=1e-8)
    assert row.ci_low < 3.0 < row.ci_high
    assert row.cohens_d == pytest.approx(3.0 / 2.0, rel=0.2)
    assert row.n_a + row.n_b == len(data)
    assert set(table.contrast) >= {"MS-HC", "RRMS-HC", "SPMS-HC", "PPMS-HC", "progressive-RRMS"}


def test_site_bias_confounded_with_group_is_not_a_disease_effect():
    """Site x scans 85 % patients and reads 3 1/s high; there is no disease effect."""
    rng = np.random.default_rng(6)
    data = _cohort(rng, n=300, effect=0.0, site_bias=3.0, confound=True)
    naive = smf.ols("r2star_median ~ C(group) + age", data=data).fit()
    assert naive.pvalues["C(group)[T.MS]"] < 1e-6  # pooling invents an effect
    row = compare_groups(data).query("contrast == 'MS-HC'").iloc[0]
    assert row.p > 0.05
    assert abs(row.estimate) < 0.8


def test_determinants_recover_planted_slopes_and_stepwise_selects_them():
    rng = np.random.default_rng(7)
    n = 150
    x = pd.DataFrame(
        {
            "disease_duration": rng.gamma(4, 3, n),
            "edss": rng.uniform(0, 7, n),
            "lesion_volume_ml": rng.gamma(2, 5, n),
            "nbv": rng.normal(0.82, 0.03, n),
            "cortical_gm_ml": rng.normal(480, 40, n),
        }
    )
    y = 30 + 0.15 * x.disease_duration + 0.5 * x.edss + rng.normal(0, 1.0, n)
    data = x.assign(y=y, region="putamen")
    table = determinants(data)
    multi = table[table.model == "multivariable"].set_index("predictor")
    assert (
        multi.loc["disease_duration", "ci_low"] < 0.15 < multi.loc["disease_duration", "ci_high"]
    )
    assert multi.loc["edss", "ci_low"] < 0.5 < multi.loc["edss", "ci_high"]
    ref = smf.ols("y ~ " + " + ".join(x.columns), data=data).fit()
    assert multi.loc["edss", "beta"] == pytest.approx(ref.params["edss"], rel=1e-10)
    sd = data.edss.std() / data.y.std()
    assert multi.loc["edss", "std_beta"] == pytest.approx(ref.params["edss"] * sd, rel=1e-10)
    assert (multi.vif < 1.5).all()
    assert sorted(stepwise(data, list(x.columns))) == ["disease_duration", "edss"]
    chosen = table[table.model == "stepwise"].predictor.tolist()
    assert sorted(chosen) == ["disease_duration", "edss"]
    assert len(table[table.model == "univariable"]) == 5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns=["site"]), "missing column(s) site"),
        (lambda t: t.assign(group=["HC", "XX"]), "group must be HC or MS"),
        (
            lambda t: t.assign(group=["MS", "MS"], phenotype=["RRMS", "RRMS"]),
            "no healthy controls",
        ),
        (lambda t: t.assign(age=["40", "old"]), "age must be numeric"),
        (lambda t: t.assign(participant_id=["sub-01", "sub-01"]), "duplicate participant_id"),
    ],
)
def test_participants_table_errors(tmp_path, edit, message):
    table = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "age": ["40", "50"],
            "sex": ["F", "M"],
            "group": ["HC", "MS"],
            "phenotype": ["n/a", "RRMS"],
            "disease_duration": ["n/a", "5"],
            "edss": ["n/a", "2.5"],
            "site": ["a", "b"],
        }
    )
    path = tmp_path / "participants.tsv"
    edit(table).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_participants(path)
    assert "participants.tsv" in str(err.value)
