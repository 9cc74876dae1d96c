"""Cohort statistics against seeded cases with known answers, and statsmodels reproduced."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ironmap.cohort import compare_groups, determinants
from ironmap.cohort.age import spline_basis
from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.determinants import ols_pvalues, stepwise
from ironmap.cohort.tables import read_participants
from ironmap.errors import InputError, IronmapWarning
from ironmap.simulate.tables import TableSite, simulate_table_cohort


def _subjects(people: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(people)
    return people.assign(
        icv_ml=rng.normal(1450, 120, n),
        brain_ml=1200.0,
        cortical_gm_ml=rng.normal(480, 30, n),
        nbv=rng.normal(0.84, 0.02, n),
        lesion_volume_ml=np.where(people.group == "MS", rng.gamma(2, 4, n), 0.0),
        lesion_count=3,
    )


def _analyse(sites, *, seed, effects=None, **kw):
    long, people = simulate_table_cohort(sites, seed=seed, effects=effects, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        return analyse_cohort(long, _subjects(people, seed), mixed=False), long, people


def test_spline_basis_is_linear_outside_the_knots_and_exact_for_a_line():
    knots = np.array([20.0, 40.0, 60.0])
    age = np.array([0.0, 10.0, 70.0, 80.0, 90.0])
    basis = spline_basis(age, knots)
    assert basis.shape == (5, 2)
    # beyond the outer knots every column is linear in age: equal second differences vanish
    np.testing.assert_allclose(np.diff(basis[2:], 2, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.diff(basis[:2], axis=0)[0, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(spline_basis(age, np.array([0.0, 1.0]))[:, 0], age / 10)


def test_normative_model_recovers_the_curve_multiplicative_site_bias_and_noisy_site():
    """Controls only: age curve, site location (x1.07) and a noisier site all recovered."""
    sites = [
        TableSite("a", 1.00, 1.0, {"HC": 60}),
        TableSite("b", 1.07, 1.0, {"HC": 60}),
        TableSite("c", 0.97, 2.5, {"HC": 60}),
    ]
    result, long, _ = _analyse(sites, seed=3)
    h = result.harmonization.set_index(["region", "site"])
    location = h.location_percent.unstack()
    assert (location["b"] - location["a"]).mean() == pytest.approx(7.0, abs=1.5)
    assert (location["c"] - location["a"]).mean() == pytest.approx(-3.0, abs=1.5)
    assert (h.scale.unstack()["c"] > h.scale.unstack()["a"]).all()
    regions = result.regions.dropna(subset=["r2star_corrected"])
    merged = regions.merge(long[["participant_id", "region", "truth"]])
    # harmonised R2* is the truth up to the common (pooled-site) scale and the noise
    pallidum = merged[merged.region == "pallidum"]
    assert np.corrcoef(pallidum.r2star_harmonized, pallidum.truth)[0, 1] > 0.85
    slope = np.polyfit(pallidum.truth, pallidum.r2star_harmonized, 1)[0]
    assert slope == pytest.approx(1.0, abs=0.15)


def test_z_scores_of_disease_free_patients_are_calibrated_at_every_site():
    """Multiplicative bias, a noisy site, older patients: z mean ~0, SD ~1 per site.

    Before: one residual SD for all sites gave SD 1.44 at the noisy site.
    """
    sites = [
        TableSite("a", 1.00, 1.0, {"HC": 30, "RRMS": 60}),
        TableSite("b", 1.08, 1.0, {"HC": 30, "RRMS": 60}),
        TableSite("noisy", 0.96, 2.5, {"HC": 30, "RRMS": 60}),
    ]
    result, _, people = _analyse(sites, seed=11, age={"RRMS": (52.0, 10.0)})
    z = result.regions.merge(people)
    z = z[(z.group == "MS") & z.r2star_z.notna()]
    summary = z.groupby("site").r2star_z.agg(["mean", "std"])
    assert summary["mean"].abs().max() < 0.3
    assert summary["std"].between(0.8, 1.2).all(), summary


def test_few_controls_per_site_give_finite_z_scores_and_a_warning():
    """Before: with few controls per site residual_sd became inf and every z was 0."""
    sites = [TableSite(s, 1.0, 1.0, {"HC": 4, "RRMS": 15}) for s in "abcdef"]
    long, people = simulate_table_cohort(sites, seed=5)
    with pytest.warns(IronmapWarning) as record:
        result = analyse_cohort(long, _subjects(people), mixed=False)
    assert any("fewer than 10 controls" in str(w.message) for w in record)
    z = result.regions.merge(people).query("group == 'MS'").r2star_z
    assert z.notna().all()
    assert np.isfinite(z).all()
    assert z.std() == pytest.approx(1.0, abs=0.2)
    assert z.mean() == pytest.approx(0.0, abs=0.25)
    # fewer controls than the sites and covariates need: NaN and a warning, never 0
    thin = [TableSite(s, 1.0, 1.0, {"HC": 3, "RRMS": 10}) for s in "abcde"]
    long, people = simulate_table_cohort(thin, seed=5)
    with pytest.warns(IronmapWarning) as record:
        result = analyse_cohort(long, _subjects(people), mixed=False)
    assert any("residual degrees of freedom" in str(w.message) for w in record)
    assert result.regions.r2star_z.isna().all()


def test_a_phenotype_only_at_a_control_free_site_is_not_identifiable():
    """All PPMS at a patient-only site reading 7 % high: before, "effect" with p < 1e-6."""
    sites = [
        TableSite("a", 1.00, 1.0, {"HC": 30, "RRMS": 25}),
        TableSite("b", 1.03, 1.0, {"HC": 30, "RRMS": 25}),
        TableSite("solo", 1.07, 1.0, {"PPMS": 15}),
    ]
    long, people = simulate_table_cohort(sites, seed=8)
    with pytest.warns(IronmapWarning) as record:
        result = analyse_cohort(long, _subjects(people), mixed=False)
    messages = " ".join(str(w.message) for w in record)
    assert "PPMS-HC: not identifiable" in messages
    assert "solo have no controls" in messages
    ppms = result.comparison[result.comparison.contrast == "PPMS-HC"]
    assert len(ppms) == 8
    assert ppms.estimate.isna().all()
    assert ppms.p.isna().all()
    assert ppms.note.str.contains("PPMS at solo").all()
    assert set(result.exclusions) == set(people.participant_id[people.site == "solo"])
    ms = result.comparison[result.comparison.contrast == "MS-HC"].iloc[0]
    assert (ms.n_a, ms.n_b) == (50, 60)  # the 15 PPMS inform nothing and are not counted


def test_effective_n_counts_only_sites_holding_both_arms():
    rng = np.random.default_rng(2)
    rows = []
    for site, labels in {"x": ["RRMS"] * 10 + ["SPMS"] * 6, "y": ["RRMS"] * 8}.items():
        for label in labels:
            rows.append((site, label, rng.normal(30 + (label == "SPMS"), 1)))
    data = pd.DataFrame(rows, columns=["site", "phenotype", "r2star_corrected"]).assign(
        region="putamen", group="MS", sex=rng.choice(["F", "M"], len(rows))
    )
    row = compare_groups(data, n_bootstrap=0).query("contrast == 'progressive-RRMS'").iloc[0]
    assert (row.n_a, row.n_b, row.n_excluded) == (6, 10, 8)
    ref = smf.ols("r2star_corrected ~ C(phenotype) + C(sex)", data=data[data.site == "x"])
    ref = ref.fit(cov_type="HC3", use_t=True)
    assert row.estimate == pytest.approx(ref.params["C(phenotype)[T.SPMS]"], rel=1e-10)
    assert row.p == pytest.approx(ref.pvalues["C(phenotype)[T.SPMS]"], rel=1e-8)


def test_cis_is_its_own_contrast_and_not_pooled_into_ms():
    sites = [TableSite(s, 1.0, 1.0, {"HC": 25, "RRMS": 20, "CIS": 10}) for s in "ab"]
    effects = {"CIS": {r: -3.0 for r in ("putamen", "caudate")}}
    result, _, _ = _analyse(sites, seed=4, effects=effects)
    comp = result.comparison.set_index(["region", "contrast"])
    assert comp.loc[("putamen", "MS-HC"), "n_a"] == 40
    assert comp.loc[("putamen", "CIS-HC"), "n_a"] == 20
    assert comp.loc[("putamen", "CIS-HC"), "ci_high"] < 0
    assert comp.loc[("putamen", "MS-HC"), "ci_low"] < 0 < comp.loc[("putamen", "MS-HC"), "ci_high"]


def test_cohens_d_is_against_the_controls_sd_with_a_bootstrap_ci():
    """Planted d = 0.6 in units of the controls' SD; before: d over the residual SD."""
    rng = np.random.default_rng(9)
    n = 400
    ms = rng.random(n) < 0.5
    y = 30 + 0.6 * 2.0 * ms + rng.normal(0, 2.0, n)
    data = pd.DataFrame(
        {
            "region": "putamen",
            "r2star_corrected": y,
            "group": np.where(ms, "MS", "HC"),
            "phenotype": np.where(ms, "RRMS", None),
            "sex": rng.choice(["F", "M"], n),
            "site": rng.choice(["a", "b"], n),
        }
    )
    row = compare_groups(data).query("contrast == 'MS-HC'").iloc[0]
    assert row.cohens_d == pytest.approx(row.estimate / y[~ms].std(ddof=1), rel=1e-12)
    assert row.cohens_d_ci_low < 0.6 < row.cohens_d_ci_high
    assert row.cohens_d_ci_high - row.cohens_d_ci_low == pytest.approx(0.4, abs=0.12)


def test_robust_se_holds_the_false_positive_rate_with_a_small_variable_phenotype():
    """12 PPMS with 3x the SD vs 80 HC, no effect: OLS rejects too often, HC3 does not."""
    rng = np.random.default_rng(10)
    hits_ols = hits_hc3 = 0
    reps = 400
    for _ in range(reps):
        hc = rng.normal(0, 1, 80)
        pp = rng.normal(0, 3, 12)
        data = pd.DataFrame(
            {
                "region": "putamen",
                "r2star_corrected": np.r_[hc, pp],
                "group": ["HC"] * 80 + ["MS"] * 12,
                "phenotype": [None] * 80 + ["PPMS"] * 12,
                "sex": "F",
                "site": "a",
            }
        )
        row = compare_groups(data, n_bootstrap=0).query("contrast == 'PPMS-HC'").iloc[0]
        hits_hc3 += row.p < 0.05
        ols = smf.ols("r2star_corrected ~ C(group)", data=data).fit()
        hits_ols += ols.pvalues["C(group)[T.MS]"] < 0.05
    assert hits_ols / reps > 0.12
    assert hits_hc3 / reps < 0.08


def test_site_bias_confounded_with_group_is_not_a_disease_effect():
    """Site b scans most patients and reads 10 % high; there is no disease effect."""
    sites = [
        TableSite("a", 1.00, 1.0, {"HC": 40, "RRMS": 8}),
        TableSite("b", 1.10, 1.0, {"HC": 10, "RRMS": 50}),
    ]
    result, long, people = _analyse(sites, seed=6)
    raw = long[long.region == "putamen"].merge(people)
    naive = smf.ols("r2star_median ~ C(group) + age", data=raw).fit()
    assert naive.pvalues["C(group)[T.MS]"] < 1e-3  # pooling invents an effect
    row = result.comparison.query("region == 'putamen' and contrast == 'MS-HC'").iloc[0]
    assert row.p > 0.05
    assert abs(row.estimate) < 0.8


def _predictors(rng, n):
    return pd.DataFrame(
        {
            "disease_duration": rng.gamma(4, 3, n),
            "edss": rng.uniform(0, 7, n),
            "lesion_volume_ml": np.log1p(rng.gamma(2, 5, n)),
            "nbv": rng.normal(0.82, 0.03, n),
            "cortical_gm_ml": rng.normal(33, 2, n),
            "sex": rng.choice(["F", "M"], n),
            "age": rng.uniform(20, 60, n),
            "site": rng.choice(["a", "b"], n),
        }
    )


def test_determinants_recover_planted_slopes_with_age_sex_site_as_covariates():
    rng = np.random.default_rng(7)
    n = 150
    x = _predictors(rng, n)
    y = 30 + 0.15 * x.disease_duration + 0.5 * x.edss + 1.0 * (x.sex == "M")
    data = x.assign(y=y + rng.normal(0, 1.0, n), region="putamen")
    table = determinants(data)
    multi = table[table.model == "multivariable"].set_index("predictor")
    assert (
        multi.loc["disease_duration", "ci_low"] < 0.15 < multi.loc["disease_duration", "ci_high"]
    )
    assert multi.loc["edss", "ci_low"] < 0.5 < multi.loc["edss", "ci_high"]
    names = ["disease_duration", "edss", "lesion_volume_ml", "nbv", "cortical_gm_ml"]
    ref = smf.ols("y ~ age + C(sex) + C(site) + " + " + ".join(names), data=data).fit()
    assert multi.loc["edss", "beta"] == pytest.approx(ref.params["edss"], rel=1e-10)
    assert (multi.covariates == "age, sex, site").all()  # before: sex only (issue 24)
    assert multi.loc["lesion_volume_ml", "transform"] == "log(1 + lesion_volume_ml)"
    chosen = table[table.model == "stepwise"]
    assert sorted(chosen.predictor) == ["disease_duration", "edss"]
    assert chosen.exploratory.all()
    assert chosen.p_fdr.isna().all()
    assert (chosen.inclusion_frequency > 0.8).all()
    assert len(table[table.model == "univariable"]) == 5


def test_stepwise_p_values_match_statsmodels():
    rng = np.random.default_rng(12)
    exog = np.column_stack([np.ones(60), rng.normal(size=(60, 3))])
    y = exog @ [1.0, 0.3, 0.0, -0.2] + rng.normal(size=60)
    ref = smf.ols(
        "y ~ x1 + x2 + x3", data=pd.DataFrame(exog[:, 1:], columns=["x1", "x2", "x3"]).assign(y=y)
    ).fit()
    np.testing.assert_allclose(ols_pvalues(y, exog), ref.pvalues.to_numpy(), rtol=1e-9)
    assert stepwise(y, exog[:, :1], exog[:, 1:]) == [0, 2] or stepwise(
        y, exog[:, :1], exog[:, 1:]
    ) == [2, 0]


def test_lesion_r2star_is_adjusted_for_site():
    """Lesion R2* reads 15 % high at the site with the longest durations: no duration effect."""
    rng = np.random.default_rng(13)
    n = 120
    x = _predictors(rng, n)
    x["site"] = np.where(x.disease_duration > x.disease_duration.median(), "b", "a")
    y = 15.0 * np.where(x.site == "b", 1.15, 1.0) + rng.normal(0, 0.8, n)
    data = x.assign(y=y, region="lesions")
    uni = determinants(data).query("model == 'univariable' and predictor == 'disease_duration'")
    assert uni.iloc[0].p > 0.01
    assert uni.iloc[0].covariates == "age, sex, site"
    naive = smf.ols("y ~ disease_duration", data=data).fit()
    assert naive.pvalues["disease_duration"] < 1e-6


def test_a_wholly_missing_predictor_keeps_the_region():
    """Before: a missing cortical GM volume silently removed the region."""
    rng = np.random.default_rng(14)
    x = _predictors(rng, 80).assign(cortical_gm_ml=np.nan)
    data = x.assign(y=rng.normal(30, 1, 80), region="thalamus")
    with pytest.warns(IronmapWarning, match="cortical_gm_ml is missing for every participant"):
        table = determinants(data)
    assert set(table.predictor) == {"disease_duration", "edss", "lesion_volume_ml", "nbv"}


def test_multivariable_needs_ten_patients_per_predictor():
    rng = np.random.default_rng(15)
    x = _predictors(rng, 30)
    data = x.assign(y=rng.normal(30, 1, 30), region="thalamus")
    with pytest.warns(IronmapWarning, match="fewer than 10 patients per predictor"):
        table = determinants(data)
    assert "multivariable" not in set(table.model)
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


def test_a_saturated_design_gives_a_nan_row_not_a_division_by_zero():
    """Before: HC1 on a design without residual df divided by zero (numpy warnings)."""
    data = pd.DataFrame(
        {
            "region": "putamen",
            "r2star_corrected": [30.0, 31.0, 32.5, 29.0],
            "group": ["HC", "HC", "MS", "MS"],
            "phenotype": [None, None, "RRMS", "RRMS"],
            "sex": ["F", "M", "F", "M"],
            "age": [30.0, 40.0, 50.0, 60.0],
            "site": "a",
        }
    )
    row = compare_groups(data, n_bootstrap=0).query("contrast == 'MS-HC'").iloc[0]
    assert np.isnan(row.estimate)
    assert row.note.startswith("too few participants")


def test_a_region_with_too_few_controls_is_left_out_with_a_warning():
    sites = [TableSite("a", 1.0, 1.0, {"HC": 20, "RRMS": 20})]
    long, people = simulate_table_cohort(sites, seed=1)
    hc = people.participant_id[people.group == "HC"]
    long.loc[(long.region == "caudate") & long.participant_id.isin(hc[:15]), "r2star_median"] = (
        np.nan
    )
    with pytest.warns(IronmapWarning, match="caudate: fewer than 8 controls"):
        result = analyse_cohort(
            long, _subjects(people), mixed=False, clinical=False, n_bootstrap=0
        )
    assert "caudate" not in set(result.comparison.region)
    assert "putamen" in set(result.comparison.region)


def test_null_cohorts_hold_the_false_positive_rate():
    """Smaller seeded version of benchmarks/group_calibration.py: biased, noisy, older sites."""
    sites = [
        TableSite("s1", 1.00, 1.0, {"HC": 14, "RRMS": 6, "SPMS": 2, "PPMS": 1}),
        TableSite("s2", 1.06, 1.0, {"HC": 8, "RRMS": 14, "SPMS": 6, "PPMS": 3}),
        TableSite("s3", 0.96, 2.5, {"HC": 12, "RRMS": 8, "SPMS": 3, "PPMS": 2}),
        TableSite("s4", 1.04, 1.0, {"HC": 10, "RRMS": 12, "SPMS": 5, "PPMS": 4}),
    ]
    ages = {"SPMS": (52.0, 8.0), "PPMS": (50.0, 9.0)}
    p = []
    for seed in range(12):
        long, people = simulate_table_cohort(sites, seed=seed, age=ages, extra_sd={"PPMS": 2.0})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IronmapWarning)
            result = analyse_cohort(
                long, _subjects(people), mixed=False, clinical=False, n_bootstrap=0
            )
        p.append(result.comparison.p.dropna().to_numpy())
    p = np.concatenate(p)
    assert len(p) > 500
    assert np.mean(p < 0.05) < 0.075


def test_small_lesion_masks_are_counted_in_a_warning():
    """Before: lesion R2* from a few voxels was NaN and silently dropped the patient."""
    sites = [TableSite(s, 1.0, 1.0, {"HC": 20, "RRMS": 30}) for s in "ab"]
    long, people = simulate_table_cohort(sites, seed=2)
    ms = people.participant_id[people.group == "MS"].to_numpy()
    lesions = pd.DataFrame(
        {
            "participant_id": ms,
            "region": "lesions",
            "hemisphere": "both",
            "r2star_median": np.random.default_rng(3).normal(17.0, 1.0, len(ms)),
            "n_voxels": np.where(np.arange(len(ms)) < 7, 5, 200),
        }
    )
    with pytest.warns(IronmapWarning) as record:
        result = analyse_cohort(
            pd.concat([long, lesions]), _subjects(people), mixed=False, n_bootstrap=0
        )
    assert any(
        "7 MS participant(s) have fewer than 20 lesion voxels" in str(w.message) for w in record
    )
    lesion = result.determinants[result.determinants.region == "lesions"]
    assert (lesion.n == len(ms) - 7).all()


def test_predictors_are_on_the_scale_their_betas_refer_to():
    """Before: cortical GM entered in mL (head size) and lesion volume untransformed."""
    from ironmap.cohort.determinants import predictor_values

    subjects = pd.DataFrame(
        {
            "disease_duration": [5.0],
            "edss": [2.5],
            "lesion_volume_ml": [np.e - 1.0],
            "nbv": [0.8],
            "cortical_gm_ml": [450.0],
            "icv_ml": [1500.0],
        }
    )
    values = predictor_values(subjects).iloc[0]
    assert values.cortical_gm_ml == pytest.approx(30.0)  # % of ICV
    assert values.lesion_volume_ml == pytest.approx(1.0)  # log(1 + mL)
    assert (values.disease_duration, values.edss, values.nbv) == (5.0, 2.5, 0.8)
