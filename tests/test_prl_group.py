"""The PRL count per participant (``n_prl``) in Table 1 and the determinants (issue 27)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.determinants import UNITS, determinants, predictor_values
from ironmap.errors import IronmapWarning
from ironmap.report.tables import (
    PRL_COLUMNS,
    PRL_NO_TEST,
    TESTS_ROW,
    determinants_heads,
    table1,
)
from ironmap.simulate.tables import ClinicalModel, TableSite, simulate_table_cohort

#: Mean PRL count per phenotype (Poisson), planted.
RATES = {"RRMS": 1.5, "SPMS": 3.0, "PPMS": 0.7}
SITES = [
    TableSite("a", n={"HC": 25, "RRMS": 35, "SPMS": 15, "PPMS": 10}),
    TableSite("b", n={"HC": 20, "RRMS": 30, "SPMS": 15, "PPMS": 10}, patient_age_shift=3.0),
]
REGIONS = ("thalamus", "putamen")


def _cohort(seed: int, *, slope: float = 0.0):
    """A table cohort with ``n_prl`` planted (Poisson by phenotype) and ``slope`` 1/s per PRL
    of thalamus R2*."""
    slopes = {"thalamus": {"n_prl": slope}} if slope else {}
    model = ClinicalModel(prl_rate=RATES, slopes=slopes)
    return simulate_table_cohort(SITES, seed=seed, clinical=model, regions=REGIONS)


def test_simulated_prl_counts_are_poisson_by_phenotype_and_zero_in_controls():
    _, people = _cohort(3)
    assert (people.loc[people["group"] == "HC", "n_prl"] == 0).all()
    ms = people[people["group"] == "MS"]
    means = ms.groupby("phenotype")["n_prl"].mean()
    assert means["SPMS"] > means["RRMS"] > means["PPMS"]
    assert (ms["n_prl"] == ms["n_prl"].round()).all()


def _expected(values: pd.Series) -> tuple[str, str]:
    """Independent pandas computation of the two PRL cells."""
    q1, q2, q3 = (values.quantile(q) for q in (0.25, 0.5, 0.75))
    n = int((values > 0).sum())
    return f"{q2:.1f} [{q1:.1f}-{q3:.1f}]", f"{n} ({round(100 * n / len(values))} %)"


def test_table1_prl_cells_are_the_groups_medians_iqr_and_counts():
    _, people = _cohort(1)
    table = table1(people).set_index("group")
    arms = {
        "HC": people["group"] == "HC",
        "MS (all)": people["group"] == "MS",
        **{p: people["phenotype"] == p for p in RATES},
    }
    for name, mask in arms.items():
        got = tuple(table.loc[name, list(PRL_COLUMNS)])
        assert got == _expected(people.loc[mask, "n_prl"]), name
    assert table.loc["HC", PRL_COLUMNS[0]] == "0.0 [0.0-0.0]"
    assert table.loc["HC", PRL_COLUMNS[1]] == "0 (0 %)"
    # no HC vs MS test of the PRL count: controls have no lesions
    assert tuple(table.loc[TESTS_ROW, list(PRL_COLUMNS)]) == (PRL_NO_TEST, PRL_NO_TEST)


@pytest.mark.parametrize("drop", [True, False])
def test_table1_has_no_prl_columns_without_counts(drop):
    _, people = _cohort(1)
    without = people.drop(columns="n_prl") if drop else people.assign(n_prl=np.nan)
    table = table1(without)
    assert not set(PRL_COLUMNS) & set(table.columns)
    pd.testing.assert_frame_equal(table, table1(people.drop(columns="n_prl")))


def _data(people: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    ms = people[people["group"] == "MS"].reset_index(drop=True)
    data = pd.concat([ms[["age", "sex", "site"]], predictor_values(ms)], axis=1)
    rng = np.random.default_rng(seed)
    return data.assign(region="thalamus", y=rng.normal(20.0, 1.0, len(ms)))


def test_determinants_have_an_n_prl_row_per_prl_only_when_present():
    _, people = _cohort(2)
    table = determinants(_data(people), n_bootstrap=0)
    rows = table[table["predictor"] == "n_prl"]
    assert set(rows["model"]) >= {"multivariable", "univariable"}
    assert set(rows["unit"]) == {UNITS["n_prl"][0]} == {"PRL"}
    np.testing.assert_array_equal(rows["unit_scale"], 1.0)
    np.testing.assert_array_equal(rows["beta_unit"], rows["beta"])
    assert "corr_n_prl" in table
    assert determinants_heads(table)["n_prl"] == "PRL count\nper PRL"  # the report's head
    for absent in (people.drop(columns="n_prl"), people.assign(n_prl=np.nan)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # left out silently, not "missing for everyone"
            table = determinants(_data(absent), n_bootstrap=0)
        assert "n_prl" not in set(table["predictor"])
        assert "corr_n_prl" not in table
        assert len(table[table["model"] == "multivariable"]) == 5


def test_planted_prl_effect_on_thalamus_r2star_is_recovered():
    slope = 0.8  # 1/s per PRL, thalamus only
    long, people = _cohort(4, slope=slope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        table = analyse_cohort(long, people, mixed=False, n_bootstrap=0).determinants
    primary = table[table["model"] == "multivariable"].set_index(["region", "predictor"])
    row = primary.loc[("thalamus", "n_prl")]
    assert row["ci_low"] < slope < row["ci_high"]
    assert row["beta"] > 0
    assert row["p"] < 0.05
    null = primary.loc[("putamen", "n_prl")]
    assert null["ci_low"] < 0 < null["ci_high"]


def test_methods_state_the_prl_score_and_threshold_only_with_lesion_chi():
    from ironmap.regions.lesions import PRL_SCORE_PPM, PRL_SECTORS
    from ironmap.report.methods_qsm import _qsm
    from ironmap.report.references import _Citations

    qc = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "qsm": ["computed", "computed"],
            "qsm_background": ["vsharp", "vsharp"],
            "qsm_inversion": ["tkd", "tkd"],
            "qsm_reference": ["csf", "csf"],
            "lesion_mask": [False, True],
        }
    )
    text = _qsm(qc, _Citations())
    assert f"a score of at least {PRL_SCORE_PPM:g} ppm was a PRL candidate" in text
    assert f"each of {PRL_SECTORS} directional sectors" in text
    for without in (qc.assign(lesion_mask=False), qc.drop(columns="lesion_mask")):
        assert "PRL" not in _qsm(without, _Citations())
    assert "PRL" not in _qsm(qc.assign(qsm="none"), _Citations())
