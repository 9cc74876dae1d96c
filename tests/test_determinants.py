"""Determinants of R2* in MS: covariates, collinearity, the reduced model (issue 24)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.determinants import (
    COVARIATES,
    PREDICTORS,
    REDUCED,
    VIF_LIMIT,
    determinants,
    predictor_values,
)
from ironmap.errors import IronmapWarning
from ironmap.simulate.tables import ClinicalModel, TableSite, simulate_table_cohort

# A null cohort (nothing affects R2*): duration rises with age (r ~ 0.7), and most patients,
# older than elsewhere, are at a site whose caudate reads 12 % high while its other regions
# do not (a region-specific bias the harmonisation's shrinkage across regions cannot remove).
CONFOUNDED = [
    TableSite("a", 1.0, 1.0, {"HC": 20, "RRMS": 15}, patient_age_shift=-6.0),
    TableSite("b", 1.0, 1.0, {"HC": 8, "RRMS": 40}, {"caudate": 1.12}, 8.0),
]
REGIONS = ("caudate", "putamen", "thalamus")


def _analyse(long, people):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        return analyse_cohort(long, people, mixed=False, n_bootstrap=0).determinants


def test_null_cohort_confounded_by_age_and_site_shows_no_determinant():
    # before (sex-only models): thalamus disease duration beta -0.087 [-0.163, -0.011],
    # p = 0.026; benchmarks/determinants_calibration.py measures the rates
    long, people = simulate_table_cohort(
        CONFOUNDED, seed=0, clinical=ClinicalModel(), regions=REGIONS
    )
    ms = people[people["group"] == "MS"]
    assert np.corrcoef(ms["age"], ms["disease_duration"])[0, 1] > 0.6
    table = _analyse(long, people)
    uni = table[(table["model"] == "univariable") & table["predictor"].isin(REDUCED)]
    assert len(uni) == 2 * len(REGIONS)
    assert (uni["ci_low"] < 0).all(), uni
    assert (uni["ci_high"] > 0).all(), uni
    assert (uni["p"] > 0.05).all()
    assert set(table["covariates"]) == {"age, sex, site"}


def _table_data(seed: int, *, cortical_sd: float, slopes=None, n_per_site: int = 40):
    """MS patients at 3 sites: R2* = site offset + 0.05 x age + planted slopes + noise."""
    rng = np.random.default_rng(seed)
    model = ClinicalModel(cortical_sd=cortical_sd)
    sites = [
        TableSite(s, n={"RRMS": n_per_site}, patient_age_shift=k)
        for s, k in zip("abc", (-5, 0, 5), strict=True)
    ]
    _, people = simulate_table_cohort(sites, seed=seed, clinical=model, regions=("putamen",))
    x = predictor_values(people)
    offset = people["site"].map({"a": 0.0, "b": 1.5, "c": -1.0}).to_numpy()
    y = offset + 0.05 * people["age"].to_numpy() + 2.0 * (people["sex"] == "M")
    for p, b in (slopes or {}).items():
        y = y + b * x[p].to_numpy()
    data = pd.concat([people[["age", "sex", "site"]], x], axis=1)
    data["region"] = "putamen"
    data["y"] = y + rng.normal(0.0, 1.0, len(people))
    return data


def test_vif_is_that_of_the_whole_design_and_correlations_are_numpys():
    data = _table_data(3, cortical_sd=1.5)
    table = determinants(data, n_bootstrap=0)
    primary = table[table["model"] == "multivariable"].set_index("predictor")
    for p in PREDICTORS:
        others = " + ".join(q for q in PREDICTORS if q != p)
        r2 = smf.ols(f"{p} ~ {others} + age + C(sex) + C(site)", data=data).fit().rsquared
        assert primary.at[p, "vif"] == pytest.approx(1 / (1 - r2), rel=1e-8)
    names = [*PREDICTORS, "age"]
    expected = np.corrcoef(data[names].to_numpy(float), rowvar=False)
    got = primary.loc[list(PREDICTORS), [f"corr_{q}" for q in names]].to_numpy(float)
    np.testing.assert_allclose(got, expected[: len(PREDICTORS)], rtol=1e-12)
    assert table.loc[table["model"] != "multivariable", "corr_age"].isna().all()


def test_reduced_model_beside_a_collinear_primary_model():
    collinear = determinants(_table_data(4, cortical_sd=0.3), n_bootstrap=0)
    primary = collinear[collinear["model"] == "multivariable"].set_index("predictor")
    assert primary.at["cortical_gm_ml", "vif"] > VIF_LIMIT
    high = primary["vif"] > VIF_LIMIT
    assert primary.loc[high, "note"].str.startswith("VIF").all()
    assert primary.loc[high, "note"].str.contains("reduced model").all()
    reduced = collinear[collinear["model"] == "reduced"]
    assert list(reduced["predictor"]) == list(REDUCED)
    assert reduced["note"].str.contains("cortical_gm_ml").all()
    assert reduced["p_fdr"].notna().all()
    # its VIFs are those of duration + EDSS with the covariates
    assert (reduced["vif"] < primary.loc[list(REDUCED), "vif"].to_numpy()).all()
    clear = determinants(_table_data(4, cortical_sd=4.0, n_per_site=80), n_bootstrap=0)
    assert (clear.loc[clear["model"] == "multivariable", "vif"] <= VIF_LIMIT).all()
    assert not (clear["model"] == "reduced").any()
    assert (clear.loc[clear["model"] == "multivariable", "note"] == "").all()


def test_planted_slopes_recovered_with_covariates():
    slopes = {"disease_duration": 0.06, "edss": 0.25}
    table = determinants(
        _table_data(5, cortical_sd=0.4, slopes=slopes, n_per_site=60), n_bootstrap=0
    )
    for model in ("multivariable", "reduced", "univariable"):
        part = table[table["model"] == model].set_index("predictor")
        assert list(part["covariates"].unique()) == [", ".join(COVARIATES)]
        if model == "univariable":
            continue  # each alone also carries the other's effect
        for p, b in slopes.items():
            assert part.at[p, "ci_low"] < b < part.at[p, "ci_high"], (model, p)
            assert part.at[p, "p"] < 0.05


def test_primary_rows_are_the_only_bold_ones():
    from ironmap.report import clinical

    table = determinants(_table_data(4, cortical_sd=0.3), n_bootstrap=0)
    uni = table[table["model"] == "univariable"]
    rows = clinical.forest_rows(table.assign(p_fdr=0.001), "univariable")
    assert len(rows) == len(uni)
    assert not rows["filled"].any()
    rows = clinical.forest_rows(table.assign(p_fdr=0.001), "multivariable")
    assert rows["filled"].all()
    from ironmap.report import tables

    grid = tables.determinants_table(table.assign(p_fdr=0.001))
    flags = tables.determinants_significant(table.assign(p_fdr=0.001))
    assert list(grid["outcome"]) == ["putamen", "putamen, reduced model"]
    assert flags.iloc[0, 1:6].all()  # the five predictors of the primary model
    assert not flags.iloc[1].any()  # the reduced model is never bold
    assert grid.at[0, "note"].startswith(f"not identifiable in practice (VIF > {VIF_LIMIT:g})")
    corr = tables.correlation_table(table)
    assert corr.iloc[:, 1:-1].to_numpy().tolist() == [
        [f"{v:.2f}" for v in row]
        for row in table.loc[
            table["model"] == "multivariable", [f"corr_{q}" for q in (*PREDICTORS, "age")]
        ].to_numpy()
    ]


def test_default_demo_plants_the_seeds_determinants():
    """The demo's draw (tables from its truth, no images): duration rises with age, cortical
    volume falls with duration, and the planted slopes come back (CIs cover them, no
    significant cortical effect outside substantia nigra and red nucleus)."""
    from ironmap.simulate.cohort import draw_cohort, subject_r2star
    from ironmap.simulate.tissue import MS_EFFECTS

    assert {t for t, e in MS_EFFECTS.items() if e.atrophy_slope} == {
        "substantia_nigra",
        "red_nucleus",
    }
    rng = np.random.default_rng(0)
    rows, people = [], []
    for s in draw_cohort():
        r2 = subject_r2star(s)
        cortical = 31.0 * (1.0 - s.atrophy) + rng.normal(0.0, 0.4)  # % of ICV, as segmented
        people.append(
            {
                "participant_id": s.participant_id,
                **{k: getattr(s, k) for k in ("age", "sex", "group", "disease_duration", "edss")},
                "phenotype": s.phenotype if s.group == "MS" else np.nan,
                "site": s.site.name,
                "icv_ml": 1450.0,
                "brain_ml": 1450.0 * (0.86 - 0.2 * s.atrophy),
                "cortical_gm_ml": cortical / 100.0 * 1450.0,
                "nbv": 0.86 - 0.2 * s.atrophy + rng.normal(0.0, 0.01),
                "lesion_volume_ml": 0.8 * s.lesion_count,
                "lesion_count": s.lesion_count,
            }
        )
        for region in MS_EFFECTS:
            value = r2[region] * s.site.r2star_bias + rng.normal(0.0, 0.4)
            rows.append((s.participant_id, region, "both", value, 200))
    long = pd.DataFrame(
        rows, columns=["participant_id", "region", "hemisphere", "r2star_median", "n_voxels"]
    )
    people = pd.DataFrame(people)
    ms = people[people["group"] == "MS"]
    cortical = 100 * ms["cortical_gm_ml"] / ms["icv_ml"]
    assert 0.6 < np.corrcoef(ms["age"], ms["disease_duration"])[0, 1] < 0.8
    assert -0.92 < np.corrcoef(cortical, ms["disease_duration"])[0, 1] < -0.6
    table = _analyse(long, people)
    primary = table[table["model"] == "multivariable"].set_index(["region", "predictor"])
    for region, effect in MS_EFFECTS.items():
        planted = {
            "disease_duration": effect.duration_slope,
            "edss": effect.edss_slope,
            "cortical_gm_ml": -effect.atrophy_slope / 31.0,
        }
        for predictor, slope in planted.items():
            row = primary.loc[(region, predictor)]
            assert row["ci_low"] < slope < row["ci_high"], (region, predictor)
        if not effect.atrophy_slope:
            assert primary.loc[(region, "cortical_gm_ml"), "p_fdr"] > 0.05


def test_determinants_not_run_still_have_every_documented_column():
    """With the determinants switched off (``clinical=False``) the empty determinants.tsv has
    the documented columns of a full one, the unit and FCR columns included (they were
    missing: docs/conventions.md)."""
    from ironmap.cohort.determinants import FCR_COLUMNS, UNIT_COLUMNS

    long, people = simulate_table_cohort(
        CONFOUNDED, seed=0, clinical=ClinicalModel(), regions=REGIONS
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        table = analyse_cohort(long, people, mixed=False, n_bootstrap=0, clinical=False)
    assert table.determinants.empty
    for column in (*UNIT_COLUMNS, *FCR_COLUMNS):
        assert column in table.determinants.columns
