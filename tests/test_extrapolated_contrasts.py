"""Contrasts whose participants lie outside the controls' ages are never marked significant."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ironmap.cohort.analysis import analyse_cohort
from ironmap.cohort.compare import MAX_OUTSIDE_AGE_SHARE, extrapolated
from ironmap.simulate.tables import TableSite, simulate_table_cohort

SITES = [TableSite(f"s{i}", 1.0 + 0.02 * (i - 2), 1.0, {"HC": 12, "RRMS": 14}) for i in range(4)]


def _analyse(seed: int, age: dict) -> pd.DataFrame:
    long, people = simulate_table_cohort(SITES, seed=seed, age=age)
    subjects = people.assign(
        icv_ml=1450.0, brain_ml=1200.0, cortical_gm_ml=480.0, nbv=0.84, lesion_volume_ml=5.0
    ).assign(lesion_count=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = analyse_cohort(long, subjects, mixed=False, clinical=False, n_bootstrap=0)
    return result.comparison.query("contrast == 'MS-HC'"), people


def test_null_cohort_with_every_patient_older_than_the_controls_has_no_bold_row():
    # seed 4: a null region reaches p_FDR < 0.05 (the extrapolated age curve, not disease);
    # before issue 24 it was marked significant
    table, people = _analyse(4, {"HC": (35.0, 6.0), "RRMS": (65.0, 4.0)})
    hc_max = people.loc[people["group"] == "HC", "age"].max()
    older = int((people.loc[people["group"] == "MS", "age"] > hc_max).sum())
    assert (table["p_fdr"] < 0.05).any()
    assert not table["significant"].any()
    assert (table["n_outside_age"] == older).all()
    assert older > MAX_OUTSIDE_AGE_SHARE * (table["n_a"] + table["n_b"]).iloc[0]
    assert table["note"].str.contains("extrapolated").all()


def test_patients_within_the_controls_ages_are_not_flagged():
    table, _ = _analyse(4, {"HC": (40.0, 12.0), "RRMS": (42.0, 10.0)})
    assert not extrapolated(table).any()
    assert (table["n_outside_age"] <= 0.1 * (table["n_a"] + table["n_b"])).all()
    assert not table["note"].str.contains("extrapolated").any()


def test_extrapolated_rows_follow_the_share_rule():
    table = pd.DataFrame({"n_a": [40, 40, 40], "n_b": [60, 60, 60], "n_outside_age": [0, 20, 21]})
    np.testing.assert_array_equal(extrapolated(table), [False, False, True])
