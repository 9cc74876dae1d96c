"""Lesions one by one (issue 18): the rows of ``_lesions.tsv`` against closed-form geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap.errors import IronmapWarning
from ironmap.regions import regional_r2star
from ironmap.regions.lesions import LESION_COLUMNS, lesion_table
from ironmap.simulate.lesions import lesion_rims, lesion_truth

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
AFFINE[:3, 3] = [-40.0, -50.0, -20.0]
SHAPE = (40, 40, 20)


def _phantom():
    """Lesion A: a 6^3 cube with a one-voxel rim at 30 1/s around a 20 1/s core, and a
    half-covered layer around it; lesion B: a 3^3 cube at 25 1/s; C: a 2^3 cube; NAWM 15."""
    r2 = np.full(SHAPE, 15.0)
    fraction = np.zeros(SHAPE)
    fraction[4:12, 4:12, 4:12] = 0.5  # partial-volume layer
    fraction[5:11, 5:11, 5:11] = 1.0
    r2[5:11, 5:11, 5:11] = 30.0
    r2[6:10, 6:10, 6:10] = 20.0
    fraction[25:28, 25:28, 10:13] = 1.0
    r2[25:28, 25:28, 10:13] = 25.0
    fraction[30:32, 5:7, 2:4] = 1.0
    r2[30:32, 5:7, 2:4] = 18.0
    return fraction, r2


def test_core_rim_shell_volume_and_centroid_of_cubes():
    fraction, r2 = _phantom()
    table = lesion_table(
        fraction, r2, AFFINE, participant_id="sub-01", min_fraction=0.9, nawm_median=15.0
    )
    assert list(table.columns) == list(LESION_COLUMNS)
    assert table.lesion_id.tolist() == [1, 2, 3]
    a, b, c = (table.iloc[i] for i in range(3))
    voxel_ml = 2 * 2 * 3 / 1000
    assert a.n_voxels == 216
    assert a.volume_ml == pytest.approx((216 + 0.5 * (8**3 - 6**3)) * voxel_ml)
    assert (a.n_core, a.n_rim) == (64, 152)
    assert (a.r2star_core_median, a.r2star_rim_median) == (20.0, 30.0)
    assert a.r2star_rim_core_diff == 10.0
    assert a.r2star_shell_median == 15.0
    assert a.n_shell > 0
    centre = AFFINE[:3, :3] @ np.array([7.5, 7.5, 7.5]) + AFFINE[:3, 3]
    centroid = a[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].astype(float)
    np.testing.assert_allclose(centroid, centre)
    assert (b.n_voxels, b.n_core, b.n_rim) == (27, 1, 26)
    assert b.r2star_median == 25.0
    assert c.n_core == 0
    assert np.isnan(c.r2star_core_median)
    assert c.r2star_rim_median == 18.0
    assert (table.r2star_nawm_median == 15.0).all()
    assert table.field_rim_hz.isna().all()  # no field map


def test_rows_add_up_to_the_pooled_lesion_row():
    fraction, r2 = _phantom()
    r2[7, 7, 7] = np.nan  # an unfitted voxel counts in neither
    table = lesion_table(fraction, r2, AFFINE, participant_id="sub-01", min_fraction=0.9)
    with pytest.warns(IronmapWarning, match="no usable R2"):  # only lesions in this phantom
        pooled = regional_r2star(
            r2, {"lesions": fraction >= 0.9}, participant_id="sub-01", region_volumes_ml={}
        )
    row = pooled[pooled.region == "lesions"].iloc[0]
    finite = table.r2star_mean.notna()
    assert table.n_voxels.sum() == (fraction >= 0.9).sum()
    weights = table.n_voxels - np.array([1, 0, 0])  # lesion 1 holds the NaN voxel
    mean = (table.r2star_mean[finite] * weights[finite]).sum() / weights[finite].sum()
    assert mean == pytest.approx(row.r2star_mean, rel=1e-12)


def test_local_field_separates_a_paramagnetic_rim_from_a_smooth_background():
    fraction, r2 = _phantom()
    x = np.arange(SHAPE[0])[:, None, None]
    background = 0.8 * x + 0.0 * r2  # a smooth field ramp (Hz)
    with_rim = background + np.where((r2 == 30.0), 3.0, 0.0)
    plain = lesion_table(
        fraction, r2, AFFINE, participant_id="s", min_fraction=0.9, field_hz=background
    )
    rim = lesion_table(
        fraction, r2, AFFINE, participant_id="s", min_fraction=0.9, field_hz=with_rim
    )
    assert abs(plain.field_rim_core_diff_hz.iloc[0]) < 0.1
    assert 2.0 < rim.field_rim_core_diff_hz.iloc[0] < 3.2


def test_no_lesion_gives_the_columns_and_no_rows():
    table = lesion_table(
        np.zeros(SHAPE), np.full(SHAPE, 15.0), AFFINE, participant_id="s", min_fraction=0.9
    )
    assert table.empty
    assert list(table.columns) == list(LESION_COLUMNS)


def test_simulated_rims_are_the_edge_of_large_lesions_and_have_truth():
    lesions = np.zeros((60, 60, 60), dtype=bool)
    zz, yy, xx = np.mgrid[:60, :60, :60]
    lesions |= (xx - 15) ** 2 + (yy - 15) ** 2 + (zz - 15) ** 2 <= 5**2  # 0.5 mL
    lesions |= (xx - 45) ** 2 + (yy - 45) ** 2 + (zz - 45) ** 2 <= 2**2  # 33 voxels: no rim
    rims = lesion_rims(lesions, np.eye(4), np.random.default_rng(0), probability=1.0)
    assert rims[15, 15, 10]  # edge
    assert not rims[15, 15, 15]  # not centre
    assert not rims[40:, 40:, 40:].any()
    r2 = np.where(rims, 30.0, np.where(lesions, 20.0, 15.0))
    truth = lesion_truth(lesions, rims, r2, np.eye(4))
    assert [t["rim"] for t in truth] == [True, False]
    assert truth[0]["r2star_core_mean"] == 20.0
    assert truth[0]["volume_ml"] == pytest.approx(lesions[:30, :30, :30].sum() / 1000)
    assert truth[1]["centroid_mm"] == [45.0, 45.0, 45.0]
    assert isinstance(pd.DataFrame(truth), pd.DataFrame)


def _lesion_cohort(seed: int, n_participants: int = 40):
    """Lesion rows with a planted model: lesion R2* (% of NAWM) = -10 + 3 log2(volume / median)
    + 0.5 duration + participant effect (SD 3) + noise (SD 4)."""
    rng = np.random.default_rng(seed)
    rows, people = [], []
    for i in range(n_participants):
        pid, duration = f"sub-{i:03d}", rng.uniform(1, 25)
        people.append({"participant_id": pid, "disease_duration": duration})
        u = rng.normal(0, 3)
        for _ in range(rng.poisson(8) + 1):
            volume = float(np.exp(rng.normal(np.log(0.2), 0.8)))
            rows.append(
                {
                    "participant_id": pid,
                    "volume_ml": volume,
                    "log2v": np.log2(volume),
                    "duration": duration,
                    "u": u,
                    "e": rng.normal(0, 4),
                }
            )
    table = pd.DataFrame(rows)
    pct = (
        -10 + 3 * (table.log2v - np.median(table.log2v)) + 0.5 * table.duration + table.u + table.e
    )
    table["r2star_nawm_median"] = 20.0
    table["r2star_median"] = 20.0 * (1 + pct / 100)
    table["r2star_rim_core_diff"] = rng.normal(0, 1, len(table))
    return table, pd.DataFrame(people)


def test_lesion_models_recover_a_planted_mixed_model():
    from ironmap.cohort.lesions import LESION_MODEL_COLUMNS, lesion_models

    lesions, people = _lesion_cohort(3)
    people.loc[0, "disease_duration"] = np.nan  # a participant without duration drops out
    table = lesion_models(lesions, people)
    assert list(table.columns) == list(LESION_MODEL_COLUMNS)
    pct = table[table.outcome == "lesion_r2star_pct"].set_index("term")
    for term, truth in (("Intercept", -10.0), ("log2_volume", 3.0), ("disease_duration", 0.5)):
        assert pct.loc[term, "ci_low"] < truth < pct.loc[term, "ci_high"]
    assert pct.loc["log2_volume", "p"] < 1e-6
    assert pct.loc["Intercept", "participant_sd"] == pytest.approx(3.0, rel=0.4)
    assert pct.n_participants.iloc[0] == 39
    rim = table[table.outcome == "rim_core_r2star"].set_index("term")
    assert rim.loc["log2_volume", "ci_low"] < 0 < rim.loc["log2_volume", "ci_high"]


def test_lesion_models_take_tables_read_back_from_tsv():
    """Columns holding n/a arrive as objects from a TSV: the same numbers come out."""
    from ironmap.cohort.lesions import lesion_models

    lesions, people = _lesion_cohort(5)
    expected = lesion_models(lesions, people)
    as_read = lesions.astype(object)
    as_read.loc[0, "r2star_rim_core_diff"] = None
    text = people.astype(object)
    text.loc[1, "disease_duration"] = None
    got = lesion_models(as_read, text)
    pct = got[got.outcome == "lesion_r2star_pct"]
    assert pct.n_participants.iloc[0] == expected.n_participants.iloc[0] - 1
    assert pct.estimate.notna().all()


def test_lesion_models_refuse_too_few_lesions():
    from ironmap.cohort.lesions import lesion_models

    lesions, people = _lesion_cohort(4, n_participants=3)
    table = lesion_models(lesions, people)
    assert len(table) == 2
    assert table.note.str.contains("too few").all()
    assert table.estimate.isna().all()


def test_lesions_found_on_the_mask_grid_stay_apart_on_a_coarse_r2star_grid():
    """Two lesions 2 mm apart on a 1 mm mask share 3 mm R2* voxels, yet stay two lesions with
    their own volumes and centroids."""
    from ironmap.regions.lesions import lesion_components
    from ironmap.regions.resample import label_fractions

    mask = np.zeros((60, 60, 60), dtype=np.uint8)
    mask[20:32, 20:32, 20:32] = 1  # 1.728 mL
    mask[34:40, 20:26, 20:26] = 1  # 0.216 mL, 2 voxels (mm) away
    fine = np.eye(4)
    coarse = np.diag([3.0, 3.0, 3.0, 1.0])
    fraction = label_fractions(mask, fine, (20, 20, 20), coarse, {"l": (1,)})["l"]
    r2 = np.full((20, 20, 20), 15.0)
    merged = lesion_table(fraction, r2, coarse, participant_id="s", min_fraction=0.9)
    assert len(merged) == 1  # on the R2* grid alone they touch
    parts = lesion_components(mask, fine, (20, 20, 20), coarse)
    table = lesion_table(
        fraction, r2, coarse, participant_id="s", min_fraction=0.9, components=parts
    )
    assert table.volume_ml.tolist() == [1.728, 0.216]
    np.testing.assert_allclose(table.centroid_x_mm, [25.5, 36.5])
    assert table.n_voxels.sum() == (fraction >= 0.9).sum()
