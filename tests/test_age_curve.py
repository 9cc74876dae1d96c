"""The controls' age curve: shape constraint, linear tails, age-support flags (issue 24)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import lsq_linear

from ironmap.cohort.age import fit_normative
from ironmap.cohort.age_curve import (
    AGE_SUPPORT_LEVELS,
    MONOTONE_REGIONS,
    age_limits,
    age_support,
    curve_basis,
    curve_knots,
)
from ironmap.cohort.analysis import participant_flow
from ironmap.errors import IronmapWarning
from ironmap.simulate.tables import REGIONS, TableSite, simulate_table_cohort
from ironmap.simulate.tissue import AGE_MODELS

#: Demo-like: 36 controls aged N(40, 12), one older than 60; patients N(42, 10).
SITES = [
    TableSite("a", 1.00, 1.0, {"HC": 20, "RRMS": 30}),
    TableSite("b", 1.04, 1.0, {"HC": 16, "RRMS": 30}),
]
AGES = {"HC": (40.0, 12.0), "RRMS": (42.0, 10.0)}


def _controls(seed: int):
    long, people = simulate_table_cohort(SITES, seed=seed, age=AGES)
    wide = long.pivot(index="participant_id", columns="region", values="r2star_median")
    people = people.set_index("participant_id").loc[wide.index]
    hc = (people["group"] == "HC").to_numpy()
    return wide[list(REGIONS)].to_numpy(float)[hc], people[hc]


def _fit(seed: int):
    y, hc = _controls(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)  # sites with < 10 controls
        model = fit_normative(
            y,
            age=hc["age"].to_numpy(float),
            sex=hc["sex"].to_numpy(object),
            site=hc["site"].to_numpy(object),
            regions=REGIONS,
        )
    return model, y, hc


def _curve(model, region: str, ages) -> np.ndarray:
    """The controls' curve (1/s) at ``ages``: baseline sex, pooled site."""
    g = model.regions.index(region)
    return np.exp(model.combat.grand_mean[g] + model.age_term(np.asarray(ages, float))[:, g])


def test_the_pallidum_curve_does_not_fall_where_the_controls_are_few():
    """Demo-like seed with one control over 60: before, the natural spline (PRESS) fell by
    4.9 1/s from 40 to 70 years where the planted curve rises 0.54 1/s (an inverted U)."""
    model, _, hc = _fit(12)
    assert (hc["age"] > 60).sum() == 1
    fitted = np.diff(_curve(model, "pallidum", [40.0, 70.0]))[0]
    planted = np.diff(AGE_MODELS["pallidum"](np.array([40.0, 70.0])))[0]
    assert fitted == pytest.approx(planted, abs=1.0)
    grid = _curve(model, "pallidum", np.linspace(18, 80, 63))
    assert grid.max() - grid[-1] < 1e-9  # no inverted U: the maximum is at the old end


@pytest.mark.parametrize("seed", [12, 18, 21])
def test_monotone_regions_rise_and_level_off_and_match_the_constrained_least_squares(seed):
    model, y, hc = _fit(seed)
    grid = np.linspace(0, 100, 201)
    for region in MONOTONE_REGIONS:
        g = model.regions.index(region)
        f = model.age_term(grid)[:, g]
        assert np.diff(f).min() >= -1e-12, region  # non-decreasing
        assert np.diff(f, 2).max() <= 1e-12, region  # concave
        # reference: bounded least squares on [sites, sex, Psi] solved afresh by scipy
        curve = model.curves[region]
        age = hc["age"].to_numpy(float)
        site = hc["site"].to_numpy(object)
        sex = hc["sex"].to_numpy(object)
        fixed = np.column_stack(
            [(site == s).astype(float) for s in sorted(set(site))]
            + [(sex == s).astype(float) for s in model.sex_levels]
        )
        psi = np.cumsum(curve_basis(age, curve.knots), axis=1)
        lower = np.r_[np.full(fixed.shape[1], -np.inf), np.zeros(psi.shape[1])]
        exog = np.column_stack([fixed, psi])
        ref = lsq_linear(exog, np.log(y[:, g]), bounds=(lower, np.inf), method="bvls").x
        expected = np.cumsum(curve_basis(grid, curve.knots), axis=1) @ ref[fixed.shape[1] :]
        np.testing.assert_allclose(f - f[0], expected - expected[0], atol=1e-9)


def test_curve_is_linear_beyond_the_boundary_knots_and_its_coefficients_are_slopes():
    age = np.arange(18.0, 81.0)
    knots = curve_knots(age, 3)
    np.testing.assert_allclose(knots, np.percentile(age, [5, 50, 95]))
    basis = curve_basis(np.array([0.0, 5.0, 10.0, 15.0, 70.0, 80.0, 90.0, 100.0]), [20, 40, 60])
    # second differences (equal steps) vanish beyond the outer knots: straight lines
    np.testing.assert_allclose(np.diff(basis[:4], 2, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.diff(basis[4:], 2, axis=0), 0.0, atol=1e-12)
    # basis = 0 at age 0; column j has slope 1 (per decade) at knot j and 0 at the others
    np.testing.assert_allclose(basis[0], 0.0, atol=1e-12)
    eps = 1e-4
    for j, t in enumerate((20.0, 40.0, 60.0)):
        slope = (
            curve_basis(np.array([t + eps]), [20, 40, 60])
            - curve_basis(np.array([t - eps]), [20, 40, 60])
        ) / (2 * eps / 10)
        np.testing.assert_allclose(slope[0], np.eye(3)[j], atol=1e-5)
    # closed form between the knots: column 0 = 2 - (4 - x)^2 / 4 on [2, 4] decades
    x = np.array([25.0, 33.0])
    np.testing.assert_allclose(curve_basis(x, [20, 40, 60])[:, 0], 2 + 1 - (4 - x / 10) ** 2 / 4)
    # and a fitted curve (seed 12) is linear beyond the controls' 5th/95th percentiles
    model, _, hc = _fit(12)
    _, p5, p95, _ = model.age_limits
    assert (p5, p95) == pytest.approx(tuple(np.percentile(hc["age"], [5, 95])))
    for region in REGIONS:
        curve = model.curves[region]
        if curve.df > 1:
            assert curve.knots[[0, -1]] == pytest.approx([p5, p95], abs=1e-9)
    old = model.age_term(np.array([p95 + 1, p95 + 11, p95 + 21, p95 + 31]))
    np.testing.assert_allclose(np.diff(old, 2, axis=0), 0.0, atol=1e-12)
    young = model.age_term(np.array([p5 - 3.0, p5 - 2.0, p5 - 1.0]))
    np.testing.assert_allclose(np.diff(young, 2, axis=0), 0.0, atol=1e-12)


def test_age_support_flags_hand_made_ages():
    controls = np.arange(20.0, 61.0)  # 41 ages: min 20, 5th percentile 22, 95th 58, max 60
    limits = age_limits(controls)
    assert limits == pytest.approx((20.0, 22.0, 58.0, 60.0))
    ages = [19.9, 20.0, 21.9, 22.0, 40.0, 58.0, 58.1, 60.0, 60.1, 80.0, np.nan]
    expected = ["outside", "beyond_p5_p95", "beyond_p5_p95", "within", "within", "within"]
    expected += ["beyond_p5_p95", "beyond_p5_p95", "outside", "outside", None]
    assert list(age_support(ages, limits)) == expected
    assert set(expected) - {None} == set(AGE_SUPPORT_LEVELS)


def test_participants_outside_the_controls_ages_are_noted_in_the_flow_and_warned():
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{i}" for i in range(6)],
            "group": ["HC", "MS", "MS", "MS", "MS", "MS"],
            "phenotype": [np.nan, "RRMS", "RRMS", "SPMS", "SPMS", "PPMS"],
            "site": "a",
        }
    )
    support = pd.Series(
        ["within", "within", "beyond_p5_p95", "outside", "outside", "outside"],
        index=participants["participant_id"],
    )
    excluded = {"sub-5": "sex missing: the analyses adjust for sex"}
    with pytest.warns(IronmapWarning) as record:
        flow = participant_flow(
            participants, excluded, age_support=support, age_limits=(20.0, 22.0, 58.0, 60.0)
        )
    messages = [str(w.message) for w in record]
    assert any(
        m.startswith("2 analysed participant(s) are outside the controls' age range (20.0-60.0")
        and "and 1 beyond its 5th-95th percentile (22.0-58.0)" in m
        for m in messages
    ), messages
    notes = flow.set_index("participant_id")["note"]
    assert notes["sub-0"] == notes["sub-1"] == notes["sub-5"] == ""  # sub-5: excluded
    assert notes["sub-3"].startswith("age outside the controls' range (20.0-60.0 years)")
    assert notes["sub-2"].startswith("age beyond the controls' 5th-95th percentile")
    assert (flow.set_index("participant_id").loc[["sub-2", "sub-3"], "status"] == "analysed").all()
