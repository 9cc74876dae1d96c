"""Group comparisons' secondary outputs: the mixed-model sensitivity table, the CI of Cohen's d
and the multiplicity hierarchy, pinned by small seeded replicates against their nominal rates
(tolerance: 2 binomial SE) and by hand-made tables with known answers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from ironmap.cohort.compare import (
    FAMILIES,
    bell_mccaffrey_df,
    cohens_d_interval,
    compare_groups,
    compare_groups_mixed,
    hierarchy,
)
from ironmap.cohort.compare_mixed import _gls_robust
from ironmap.report import html as html_report
from ironmap.report import tables


def _tolerance(rate: float, reps: int) -> float:
    return 2 * np.sqrt(rate * (1 - rate) / reps)


def _multisite(rng, *, n_sites=4, n_hc=15, n_pp=3, sd_pp=3.0, d=0.0, site_sd=1.0):
    """Controls N(0, 1) and a small, more variable phenotype (PPMS) at every site."""
    frames = []
    for s in range(n_sites):
        offset = rng.normal(0, site_sd)
        y = np.r_[rng.normal(0, 1, n_hc), rng.normal(d, sd_pp, n_pp)] + offset + 30
        frames.append(
            pd.DataFrame(
                {
                    "region": "putamen",
                    "r2star_corrected": y,
                    "group": ["HC"] * n_hc + ["MS"] * n_pp,
                    "phenotype": [None] * n_hc + ["PPMS"] * n_pp,
                    "sex": "F",
                    "site": f"s{s}",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# -- mixed model -------------------------------------------------------------------------------


def test_mixed_model_holds_the_false_positive_rate_with_a_small_variable_phenotype():
    """12 PPMS (SD x3) vs 60 HC at 4 sites, no effect; MixedLM's own Wald z: FPR ~0.25."""
    rng = np.random.default_rng(24)
    reps = 60
    hits = 0
    for _ in range(reps):
        mixed = compare_groups_mixed(_multisite(rng))
        hits += mixed.query("contrast == 'PPMS-HC'").p.iloc[0] < 0.05
    assert hits / reps <= 0.05 + _tolerance(0.05, reps)


@pytest.mark.parametrize(("n_a", "n_b"), [(12, 60), (5, 5), (30, 8)])
def test_bell_mccaffrey_df_of_two_arms_is_welch_satterthwaite(n_a, n_b):
    """Two arms, equal working variances: HC2 is s_a^2/n_a + s_b^2/n_b, whose Satterthwaite
    df is (1/n_a + 1/n_b)^2 / (1/(n_a^2 (n_a - 1)) + 1/(n_b^2 (n_b - 1)))."""
    exog = np.column_stack([np.ones(n_a + n_b), np.r_[np.ones(n_a), np.zeros(n_b)]])
    welch = (1 / n_a + 1 / n_b) ** 2 / (1 / (n_a**2 * (n_a - 1)) + 1 / (n_b**2 * (n_b - 1)))
    assert bell_mccaffrey_df(exog, 1) == pytest.approx(welch, rel=1e-10)


def test_mixed_model_estimate_is_the_gls_of_the_reml_fit():
    """The quasi-demeaned least squares reproduce MixedLM's fixed effects."""
    data = _multisite(np.random.default_rng(3), site_sd=2.0, d=1.0).rename(
        columns={"r2star_corrected": "y"}
    )
    data["arm"] = np.where(data.group == "HC", "b", "a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ C(arm, Treatment('b'))", data, groups=data["site"]).fit(reml=True)
    robust, cov = _gls_robust(fit)
    assert cov == "HC3"
    np.testing.assert_allclose(robust.params.to_numpy(), fit.fe_params.to_numpy(), rtol=1e-6)
    assert robust.df_resid == len(data) - 2


def test_a_mixed_fit_that_did_not_converge_is_never_significant():
    table = pd.DataFrame(
        {
            "region": ["putamen", "putamen"],
            "contrast": ["MS-HC", "RRMS-HC"],
            "p_fdr": [0.001, 0.001],
            "converged": [False, True],
        }
    )
    marked = hierarchy(table)
    assert not marked.significant.any()
    assert marked.gate_open.tolist() == [True, False]


# -- Cohen's d ---------------------------------------------------------------------------------


def test_cohens_d_ci_excludes_zero_only_with_the_estimate_ci_in_null_cohorts():
    """Null PPMS (n = 12, SD x3, 3 per site): the stratified bootstrap excluded 0 ~20 %."""
    rng = np.random.default_rng(12)
    reps = 60
    excluded = 0
    for _ in range(reps):
        row = compare_groups(_multisite(rng)).query("contrast == 'PPMS-HC'").iloc[0]
        out = not row.cohens_d_ci_low <= 0 <= row.cohens_d_ci_high
        excluded += out
        assert not out or not row.ci_low <= 0 <= row.ci_high
    assert excluded / reps <= 0.05 + _tolerance(0.05, reps)


def test_cohens_d_ci_covers_a_planted_d_at_n12():
    """Normal data, 12 PPMS vs 60 HC, true d = 0.8 (controls' SD 1): coverage ~0.95."""
    rng = np.random.default_rng(8)
    reps = 120
    covered = 0
    for _ in range(reps):
        data = _multisite(rng, n_sites=1, n_hc=60, n_pp=12, sd_pp=1.0, d=0.8, site_sd=0.0)
        row = compare_groups(data).query("contrast == 'PPMS-HC'").iloc[0]
        covered += row.cohens_d_ci_low <= 0.8 <= row.cohens_d_ci_high
    assert covered / reps >= 0.95 - _tolerance(0.05, reps)


def test_cohens_d_ci_is_the_closed_form_of_the_row():
    data = _multisite(np.random.default_rng(5), n_sites=2, d=1.0)
    row = compare_groups(data).query("contrast == 'PPMS-HC'").iloc[0]
    hc = data.loc[data.group == "HC", "r2star_corrected"]
    sd, m = hc.std(ddof=1), len(hc)
    half = stats.t.ppf(0.975, row.df_den) * np.hypot(
        row.se / sd, row.cohens_d / np.sqrt(2 * (m - 1))
    )
    assert row.cohens_d_ci_low == pytest.approx(row.cohens_d - half, rel=1e-10)
    assert row.cohens_d_ci_high == pytest.approx(row.cohens_d + half, rel=1e-10)
    # at d = 0 the interval is the estimate's CI over the SD
    low, high = cohens_d_interval(0.0, 0.5, 2.0, 30, 40.0)
    assert (low, high) == pytest.approx(np.array([-1, 1]) * stats.t.ppf(0.975, 40) * 0.25)
    assert np.isnan(cohens_d_interval(0.1, 0.5, 2.0, 1, 40.0)).all()


# -- the hierarchy -----------------------------------------------------------------------------


def _hand_table() -> pd.DataFrame:
    rows = [
        # r1: every gate open
        ("r1", "MS-HC", 0.01),
        ("r1", "PPMS-HC", 0.02),
        ("r1", "phenotype-omnibus", 0.03),
        ("r1", "SPMS-PPMS", 0.01),
        # r2: the primary fails: nothing below it counts
        ("r2", "MS-HC", 0.20),
        ("r2", "PPMS-HC", 0.001),
        ("r2", "phenotype-omnibus", 0.001),
        ("r2", "progressive-RRMS", 0.001),
        # r3: primary passes, omnibus fails
        ("r3", "MS-HC", 0.01),
        ("r3", "RRMS-HC", np.nan),
        ("r3", "CIS-HC", 0.04),
        ("r3", "phenotype-omnibus", 0.20),
        ("r3", "SPMS-PPMS", 0.001),
    ]
    return pd.DataFrame(rows, columns=["region", "contrast", "p_fdr"])


def test_hierarchy_gates_on_hand_made_tables():
    marked = hierarchy(_hand_table()).set_index(["region", "contrast"])
    expected = {
        ("r1", "MS-HC"): (True, True),
        ("r1", "PPMS-HC"): (True, True),
        ("r1", "phenotype-omnibus"): (True, True),
        ("r1", "SPMS-PPMS"): (True, True),
        ("r2", "MS-HC"): (True, False),
        ("r2", "PPMS-HC"): (False, False),
        ("r2", "phenotype-omnibus"): (False, False),
        ("r2", "progressive-RRMS"): (False, False),
        ("r3", "MS-HC"): (True, True),
        ("r3", "RRMS-HC"): (True, False),
        ("r3", "CIS-HC"): (True, True),
        ("r3", "phenotype-omnibus"): (True, False),
        ("r3", "SPMS-PPMS"): (False, False),
    }
    got = {k: (bool(r.gate_open), bool(r.significant)) for k, r in marked.iterrows()}
    assert got == expected
    assert marked.loc[("r1", "SPMS-PPMS"), "gate"] == "phenotype-omnibus"
    assert marked.loc[("r1", "MS-HC"), ["family", "gate"]].tolist() == ["primary", ""]


def test_mixed_hierarchy_takes_the_omnibus_from_the_primary_table():
    primary = hierarchy(_hand_table())
    mixed = pd.DataFrame(
        {
            "region": ["r1", "r1", "r3", "r3"],
            "contrast": ["MS-HC", "SPMS-PPMS", "MS-HC", "SPMS-PPMS"],
            "p_fdr": [0.01, 0.01, 0.01, 0.01],
            "converged": True,
        }
    )
    marked = hierarchy(mixed, reference=primary)
    assert marked.significant.tolist() == [True, True, True, False]
    assert not hierarchy(mixed).significant.iloc[1]  # no omnibus: the gate stays closed


def test_every_contrast_has_a_family_and_unknown_ones_are_refused():
    assert set(FAMILIES) == set(tables_contrasts())
    with pytest.raises(ValueError, match="no family"):
        hierarchy(pd.DataFrame({"region": ["r"], "contrast": ["X-HC"], "p_fdr": [0.01]}))


def tables_contrasts():
    from ironmap.cohort.compare import CONTRASTS, OMNIBUS

    return [*CONTRASTS, OMNIBUS]


def _null_cohort(rng, regions=("putamen", "caudate", "thalamus")):
    labels = ["HC"] * 12 + ["RRMS"] * 8 + ["SPMS"] * 3 + ["PPMS"] * 3
    frames = []
    for s in range(4):
        people = pd.DataFrame(
            {
                "participant_id": [f"s{s}-{i}" for i in range(len(labels))],
                "group": np.where(np.array(labels) == "HC", "HC", "MS"),
                "phenotype": [None if g == "HC" else g for g in labels],
                "sex": rng.choice(["F", "M"], len(labels)),
                "site": f"s{s}",
            }
        )
        for region in regions:
            sd = np.where(people.phenotype == "PPMS", 2.0, 1.0)
            frames.append(people.assign(region=region, r2star_corrected=rng.normal(30, sd)))
    return pd.concat(frames, ignore_index=True)


def test_hierarchy_holds_the_familywise_rate_in_null_cohorts():
    """Per-contrast FDR alone marked a row in ~25 % of null cohorts; the hierarchy <= 5 %."""
    rng = np.random.default_rng(26)
    reps = 30
    any_bold = any_fdr = 0
    for _ in range(reps):
        comp = compare_groups(_null_cohort(rng), n_bootstrap=0)
        any_bold += comp["significant"].any()
        any_fdr += (comp["p_fdr"] < 0.05).any()
    assert any_fdr / reps > 0.12  # the old marks: the design can see the defect
    assert any_bold / reps <= 0.05 + _tolerance(0.05, reps)


# -- the report --------------------------------------------------------------------------------


def test_table2_bold_marks_follow_significant():
    rng = np.random.default_rng(1)
    long = pd.DataFrame(
        {
            "region": "putamen",
            "r2star_median": rng.normal(30, 1, 20),
            "group": ["HC"] * 10 + ["MS"] * 10,
            "phenotype": [None] * 10 + ["RRMS"] * 10,
        }
    )
    comparison = pd.DataFrame(
        {
            "region": "putamen",
            "contrast": ["MS-HC", "RRMS-HC"],
            "estimate": [1.0, 1.0],
            "ci_low": [0.5, 0.5],
            "ci_high": [1.5, 1.5],
            "p": [0.001, 0.001],
            "p_fdr": [0.04, 0.001],
            "note": "",
            "significant": [False, True],
        }
    )
    _, marks = tables.table2(long, comparison)
    assert not marks.loc["putamen", "MS-HC"]
    assert marks.loc["putamen", "RRMS-HC"]


def test_mixed_table_is_rendered_with_its_marks_and_convergence_notes():
    mixed = pd.DataFrame(
        {
            "region": ["putamen", "putamen", "caudate"],
            "contrast": ["MS-HC", "RRMS-HC", "MS-HC"],
            "estimate": [1.0, 1.2, 0.8],
            "ci_low": [0.5, 0.2, 0.3],
            "ci_high": [1.5, 2.2, 1.3],
            "p": [0.001, 0.02, 0.003],
            "p_fdr": [0.002, 0.04, 0.004],
            "converged": [True, True, False],
            "note": ["", "", "REML fit did not converge: not marked significant"],
            "significant": [True, False, False],
        }
    )
    table, marks = tables.mixed_table(mixed)
    assert marks.loc["putamen", "MS-HC"]
    assert not marks.loc["putamen", "RRMS-HC"]
    assert not marks.loc["caudate", "MS-HC"]
    assert "not converged" in table.loc["caudate", "MS-HC"]
    assert "not converged" not in table.loc["putamen", "MS-HC"]
    page = html_report._mixed(html_report._Numbers(), mixed)
    assert page.count("class='sig'") == 1
    assert "did not converge for caudate MS-HC" in page
