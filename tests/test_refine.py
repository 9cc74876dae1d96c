"""Refinement of iron-rich nuclei on R2*: closed-form geometry with seeded noise."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.segmentation.refine import REFINE_COLUMNS, refine_nuclei

SHAPE = (40, 40, 30)
WM, SN, RN = 2, 101, 103


def _ball(centre, radius, shape=SHAPE) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return d2 <= radius**2


def _dice(a, b) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def _scene(rng, *, contrast=20.0, noise=1.0):
    """White matter (20 1/s) with a bright nucleus; the 'atlas' label is shifted and smaller."""
    truth = _ball((20, 20, 15), 5.0)
    r2 = 20.0 + contrast * truth + rng.normal(0.0, noise, SHAPE)
    labels = np.full(SHAPE, WM, dtype=np.int16)
    atlas = _ball((22, 19, 15), 4.0)  # 2 voxels off, 20 % smaller radius
    labels[atlas] = SN
    return labels, r2.astype(np.float32), truth, atlas


def test_refinement_recovers_a_displaced_nucleus():
    rng = np.random.default_rng(1)
    labels, r2, truth, atlas = _scene(rng)
    before = labels.copy()
    refined, report = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))
    assert _dice(atlas, truth) < 0.75  # the atlas alone is poor
    assert _dice(refined == SN, truth) > 0.97
    assert list(report.columns) == list(REFINE_COLUMNS)
    row = report.iloc[0]
    assert row.status == "refined"
    # The brightest part of the search region: biased up by the noise's order statistics
    # (about +1.2 SD for the top quarter of the nucleus), never by more than 2 SD.
    assert 40.0 < row.r2star_nucleus < 42.0
    assert row.r2star_background == pytest.approx(20.0, abs=0.5)
    assert row.threshold == pytest.approx(0.5 * (row.r2star_nucleus + row.r2star_background))
    np.testing.assert_array_equal(labels, before)  # input untouched
    # What the nucleus gave up is white matter again, nothing else changed.
    assert set(np.unique(refined)) == {WM, SN}


def test_no_contrast_keeps_the_atlas_label():
    rng = np.random.default_rng(2)
    labels, r2, _, atlas = _scene(rng, contrast=0.0)
    refined, report = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))
    assert report.iloc[0].status == "no_contrast"
    np.testing.assert_array_equal(refined == SN, atlas)


def test_contrast_below_noise_threshold_is_not_refined():
    # 4 1/s contrast (20 %) but noise SD 3: below 3 noise SDs.
    rng = np.random.default_rng(3)
    labels, r2, _, atlas = _scene(rng, contrast=4.0, noise=3.0)
    refined, report = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))
    assert report.iloc[0].status == "no_contrast"
    np.testing.assert_array_equal(refined == SN, atlas)


def test_failed_voxels_are_never_part_of_a_nucleus():
    rng = np.random.default_rng(4)
    labels, r2, truth, _ = _scene(rng)
    r2[20, 20, 15] = np.nan
    refined, _ = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))
    assert refined[20, 20, 15] != SN
    assert _dice(refined == SN, truth) > 0.97


def test_neighbouring_nuclei_split_between_their_atlas_labels():
    rng = np.random.default_rng(5)
    sn_true, rn_true = _ball((14, 20, 15), 4.0), _ball((25, 20, 15), 4.0)
    r2 = 20.0 + 18.0 * sn_true + 16.0 * rn_true + rng.normal(0.0, 1.0, SHAPE)
    labels = np.full(SHAPE, WM, dtype=np.int16)
    labels[_ball((15, 21, 15), 3.5)] = SN
    labels[_ball((24, 19, 15), 3.5)] = RN
    refined, report = refine_nuclei(
        labels, r2.astype(np.float32), codes=(SN, RN), voxel_mm=(1.0, 1.0, 1.0)
    )
    assert list(report.status) == ["refined", "refined"]
    assert _dice(refined == SN, sn_true) > 0.95
    assert _dice(refined == RN, rn_true) > 0.95


def test_anisotropic_voxels():
    # 2 x 2 x 4 mm voxels; a nucleus of radius 8 mm (4 x 4 x 2 voxels), atlas smaller, 2 mm off.
    rng = np.random.default_rng(6)
    grid = np.indices(SHAPE).astype(float)
    mm = [grid[0] * 2.0, grid[1] * 2.0, grid[2] * 4.0]
    truth = (mm[0] - 40) ** 2 + (mm[1] - 40) ** 2 + (mm[2] - 60) ** 2 <= 8.0**2
    atlas = (mm[0] - 42) ** 2 + (mm[1] - 40) ** 2 + (mm[2] - 60) ** 2 <= 6.5**2
    r2 = (20.0 + 20.0 * truth + rng.normal(0.0, 1.0, SHAPE)).astype(np.float32)
    labels = np.where(atlas, SN, WM).astype(np.int16)
    refined, report = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(2.0, 2.0, 4.0))
    assert report.iloc[0].status == "refined"
    assert _dice(atlas, truth) < 0.8
    assert _dice(refined == SN, truth) > 0.95


def test_absent_code_is_reported_and_grids_must_match():
    labels = np.full(SHAPE, WM, dtype=np.int16)
    r2 = np.full(SHAPE, 20.0, dtype=np.float32)
    refined, report = refine_nuclei(labels, r2, codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))
    assert report.iloc[0].status == "absent"
    np.testing.assert_array_equal(refined, labels)
    with pytest.raises(ValueError, match="share a grid"):
        refine_nuclei(labels, r2[:-1], codes=(SN,), voxel_mm=(1.0, 1.0, 1.0))


def test_subdivided_grid_nests_in_the_r2star_grid():
    from ironmap.segmentation.autoseg import _subdivision, _upsample

    affine = np.array([[2.0, 0, 0, -50], [0, 2.0, 0, -60], [0, 0, 3.0, -40], [0, 0, 0, 1]])
    factor = np.array([2, 2, 3])
    fine = affine @ _subdivision(factor)
    np.testing.assert_allclose(np.diag(fine)[:3], [1.0, 1.0, 1.0])
    # The k sub-voxel centres of coarse voxel 0 average to its centre.
    centres = [fine @ [i, j, k, 1] for i in range(2) for j in range(2) for k in range(3)]
    np.testing.assert_allclose(np.mean(centres, axis=0), affine @ [0, 0, 0, 1])
    # A linear ramp is reproduced exactly away from the edges; NaN does not leak.
    x = np.arange(10, dtype=np.float32)
    ramp = np.broadcast_to(x[:, None, None] * 2.0 + 5.0, (10, 4, 4)).copy()
    up = _upsample(ramp, factor)
    assert up.shape == (20, 8, 12)
    expected = 2.0 * ((np.arange(20) + 0.5) / 2 - 0.5) + 5.0
    np.testing.assert_allclose(up[1:-1, 3, 5], expected[1:-1], rtol=1e-6)
    ramp[5] = np.nan
    up = _upsample(ramp, factor)
    assert np.all(np.isnan(up[10:12]))  # the sub-voxels of the failed voxel
    np.testing.assert_allclose(up[9, 3, 5], ramp[4, 0, 0], rtol=1e-6)  # next to it: neighbour


# -- labels that follow the subject's CSF (R2*) and grey/white matter (T1w) ---------------------

CAUDATE, VENTRICLE = 11, 4


def _atrophy_scene(rng):
    """A ventricle (R2* 3 1/s) grown 3 voxels past the atlas's, into an atlas caudate (24 1/s)
    in white matter (20 1/s); R2* blurred by a 2 mm acquisition interpolated to 1 mm."""
    from scipy import ndimage

    ventricle = _ball((14, 20, 15), 9.0)
    caudate = _ball((23, 20, 15), 7.0) & ~ventricle
    r2 = np.where(ventricle, 3.0, np.where(caudate, 24.0, 20.0))
    r2 = ndimage.gaussian_filter(r2, 0.85) + rng.normal(0.0, 0.5, SHAPE)
    labels = np.full(SHAPE, WM, dtype=np.int16)
    labels[_ball((23, 20, 15), 7.0)] = CAUDATE  # the atlas caudate, registered to no atrophy
    labels[_ball((14, 20, 15), 6.0)] = VENTRICLE
    return labels, r2.astype(np.float32), caudate, ventricle


def test_csf_like_voxels_of_an_atlas_caudate_become_ventricle():
    from ironmap.segmentation.constrain import CSF_COLUMNS, follow_csf

    labels, r2, caudate, ventricle = _atrophy_scene(np.random.default_rng(3))
    assert _dice(labels == CAUDATE, caudate) < 0.85
    out, report = follow_csf(labels, r2, voxel_mm=(1.0, 1.0, 1.0))
    assert _dice(out == CAUDATE, caudate) > 0.97
    moved = labels != out
    assert set(np.unique(out[moved])) == {VENTRICLE}
    assert np.mean(ventricle[moved]) > 0.95  # what moved is the true ventricle
    assert list(report.columns) == list(CSF_COLUMNS)
    row = report.set_index("code").loc[CAUDATE]
    assert row.n_csf == np.sum(moved & (labels == CAUDATE))
    assert row.r2star_tissue == pytest.approx(24.0, abs=1.5)  # blurred into its neighbours
    assert row.threshold == 0.5 * row.r2star_tissue


def test_labels_that_follow_the_ventricles_are_not_changed():
    from ironmap.segmentation.constrain import follow_csf

    labels, r2, caudate, ventricle = _atrophy_scene(np.random.default_rng(4))
    labels[caudate] = CAUDATE
    labels[(labels == CAUDATE) & ~caudate] = WM
    labels[ventricle] = VENTRICLE
    out, report = follow_csf(labels, r2, voxel_mm=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out, labels)
    assert (report.n_csf == 0).all()


@pytest.mark.parametrize(("grey", "white"), [(680.0, 1000.0), (1150.0, 1000.0)])
def test_white_matter_like_voxels_of_an_atlas_caudate_go_back_to_white_matter(grey, white):
    """A T1w (caudate darker than white matter) or a gradient echo (brighter): the atlas caudate,
    2 mm too large, gives its white-matter rim back; a flat image changes nothing."""
    from ironmap.segmentation.constrain import follow_grey_white

    rng = np.random.default_rng(5)
    caudate = _ball((20, 20, 15), 6.0)
    bias = 1.0 + 0.1 * np.linspace(-1.0, 1.0, SHAPE[0])[:, None, None]  # receive bias +-10 %
    image = np.where(caudate, grey, white) * bias + rng.normal(0.0, 20.0, SHAPE)
    labels = np.full(SHAPE, WM, dtype=np.int16)
    labels[_ball((20, 20, 15), 8.0)] = CAUDATE
    assert _dice(labels == CAUDATE, caudate) < 0.65
    out, report = follow_grey_white(labels, image, voxel_mm=(1.0, 1.0, 1.0))
    assert _dice(out == CAUDATE, caudate) > 0.97
    assert set(np.unique(out[out != labels])) == {WM}
    row = report.set_index("code").loc[CAUDATE]
    assert row.status == "followed"
    assert row.grey == pytest.approx(grey, rel=0.05)
    assert row.white == pytest.approx(white, rel=0.05)
    flat, report = follow_grey_white(labels, np.full(SHAPE, white), voxel_mm=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(flat, labels)
    assert report.set_index("code").loc[CAUDATE].status == "no_contrast"


def test_only_atrophied_labels_follow_the_first_echo():
    """Without a T1w the grey/white step acts on the labels the ventricles took more than 10 %
    of (the thinned caudate spilling into white matter), and only on them."""
    import pandas as pd

    from ironmap.segmentation.constrain import (
        ATROPHY_PCT,
        CSF_COLUMNS,
        atrophied_codes,
        follow_grey_white,
    )

    rows = [
        ("caudate", "left", CAUDATE, 1000, 250, 24.0, 12.0),  # 25 %: atrophied
        ("caudate", "right", 50, 1000, 100, 24.0, 12.0),  # exactly 10 %: not beyond
        ("putamen", "left", 12, 3000, 0, 28.0, 14.0),
        ("thalamus", "left", 10, 5000, 900, 21.0, 10.5),  # not a grey/white region here
    ]
    report = pd.DataFrame(rows, columns=list(CSF_COLUMNS))
    assert ATROPHY_PCT == 10.0
    assert atrophied_codes(report, regions=("caudate", "putamen")) == (CAUDATE,)
    assert atrophied_codes(report, regions=("caudate", "putamen"), pct=5.0) == (CAUDATE, 50)
    caudate = _ball((20, 20, 15), 6.0)
    image = np.where(caudate, 1150.0, 1000.0) + np.random.default_rng(6).normal(0, 20, SHAPE)
    labels = np.full(SHAPE, WM, dtype=np.int16)
    labels[_ball((20, 20, 15), 8.0)] = CAUDATE
    kept, report = follow_grey_white(labels, image, voxel_mm=(1.0, 1.0, 1.0), codes=(50,))
    np.testing.assert_array_equal(kept, labels)
    assert report.empty
    out, report = follow_grey_white(labels, image, voxel_mm=(1.0, 1.0, 1.0), codes=(CAUDATE,))
    assert _dice(out == CAUDATE, caudate) > 0.97
    assert list(report["code"]) == [CAUDATE]


def test_enlarged_ventricles_without_a_t1w_are_warned_about():
    """The ventricles took 25 % of the atlas's right caudate (4 mm of enlargement takes 20-45 %,
    normal anatomy 0-3 %): without a T1w its edge against white matter stays, so say so."""
    import pandas as pd

    from ironmap.errors import IronmapWarning
    from ironmap.segmentation.constrain import CSF_COLUMNS
    from ironmap.segmentation.strategies import warn_atrophy_without_t1w

    rows = [
        ("thalamus", "left", 10, 2000, 60, 24.0, 12.0),
        ("caudate", "left", 11, 1000, 20, 26.0, 13.0),
        ("caudate", "right", 50, 1000, 250, 25.0, 12.5),
        ("cerebral_wm", "left", 2, 90000, 9000, 21.0, 10.5),  # not a deep nucleus: ignored
    ]
    report = pd.DataFrame(rows, columns=list(CSF_COLUMNS))
    with pytest.warns(IronmapWarning, match="25 % of the atlas right caudate is ventricle"):
        message = warn_atrophy_without_t1w(report, name="sub-01")
    assert message.startswith("sub-01: ")
    normal = report.assign(n_csf=[60, 20, 30, 9000])
    assert warn_atrophy_without_t1w(normal, name="sub-01") is None
    assert warn_atrophy_without_t1w(report.iloc[:0], name="sub-01") is None
