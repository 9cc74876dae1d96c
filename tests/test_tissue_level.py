"""One robust tissue level (``regions.tissue.robust_tissue_level``) for the CSF exclusion
(``regions.csf.tissue_level``) and the grey/white step of the atlas path
(``segmentation.constrain.follow_grey_white``): closed forms, and both callers' numbers as
before the two estimators were merged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ironmap.regions.tissue import robust_tissue_level


def _mixture(rng, n, *, tissue, other, share, sd=(2.0, 1.0), dtype=np.float64):
    """``share`` of ``n`` voxels from N(tissue, sd[0]), the rest from N(other, sd[1])."""
    k = round(share * n)
    values = np.concatenate([rng.normal(tissue, sd[0], k), rng.normal(other, sd[1], n - k)])
    return rng.permutation(values).astype(dtype), k


def test_mixture_of_tissue_and_csf_gives_the_tissue_median():
    """70 % tissue N(30, 2) 1/s, 30 % CSF N(3, 1): the cut at half the level leaves every CSF
    voxel out (13 SD away) and no tissue voxel (7.5 SD): the level is the median of the tissue's
    sample, within 4 standard errors (1.2533 SD / sqrt(n)) of 30."""
    rng = np.random.default_rng(0)
    values, k = _mixture(rng, 40_000, tissue=30.0, other=3.0, share=0.7)
    level = robust_tissue_level(values, start_percentile=90.0)
    tissue = values[values > 15.0]
    assert tissue.size == k
    assert level == np.median(tissue)
    assert level == pytest.approx(30.0, abs=4 * 1.2533 * 2.0 / np.sqrt(k))


def test_grey_level_between_two_gaussians_on_either_side_of_white():
    """Grey matter N(60, 4) (or N(140, 4)) and white matter at 100: the cut half-way from white
    to the level keeps grey matter only (5 SD): its median, within 4 standard errors."""
    rng = np.random.default_rng(1)
    for grey, above, start in ((60.0, False, 25.0), (140.0, True, 75.0)):
        values, k = _mixture(rng, 20_000, tissue=grey, other=100.0, share=0.6, sd=(4.0, 4.0))
        level = robust_tissue_level(
            values, start_percentile=start, above=above, reference=100.0, n_iter=10
        )
        assert level == pytest.approx(grey, abs=4 * 1.2533 * 4.0 / np.sqrt(k))


def test_truncated_tissue_gives_the_closed_form_fixed_point():
    """A single broad tissue N(mu, s) with the cut at ``ratio`` times the level: the estimator
    converges to the median of N(mu, s) truncated below at ``ratio * level``; the fixed point of
    ``L = mu + s * Phi^-1((1 + Phi((ratio L - mu) / s)) / 2)``."""
    mu, s, ratio = 20.0, 8.0, 0.5
    level = mu
    for _ in range(200):
        level = mu + s * stats.norm.ppf((1 + stats.norm.cdf((ratio * level - mu) / s)) / 2)
    values = np.random.default_rng(2).normal(mu, s, 400_000)
    estimate = robust_tissue_level(values, start_percentile=90.0, ratio=ratio, n_iter=30)
    assert level > mu + 0.5  # the truncation matters
    assert estimate == pytest.approx(level, abs=0.05)


def test_no_finite_value_is_nan_and_nothing_beyond_the_cut_keeps_the_start():
    assert np.isnan(robust_tissue_level(np.array([np.nan, np.inf]), start_percentile=90.0))
    assert robust_tissue_level(np.zeros(5), start_percentile=90.0) == 0.0
    values = np.array([np.nan, 1.0, 2.0, 3.0, 40.0])
    assert robust_tissue_level(values, start_percentile=100.0) == 40.0


# -- the two estimators as they were before the merge, and their numbers -------------------------


def _legacy_tissue_level(values, *, core_ratio=0.5):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan")
    level = float(np.percentile(values, 90.0))
    for _ in range(2):
        kept = values[values >= core_ratio * level]
        if kept.size == 0:
            break
        level = float(np.median(kept))
    return level


def _legacy_grey_level(values, white):
    low, high = np.percentile(values, [25.0, 75.0])
    darker = white - low > high - white
    grey = float(low if darker else high)
    for _ in range(10):
        middle = 0.5 * (grey + white)
        side = values[values < middle] if darker else values[values > middle]
        if side.size == 0:
            break
        grey = float(np.median(side))
    return grey


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_both_callers_equal_their_former_estimators(dtype):
    """On mixtures of every sort (float64 and float32, integer-valued T1w intensities with
    ties), the callers return exactly what their own loops returned."""
    from ironmap.regions.csf import tissue_level
    from ironmap.segmentation.constrain import _grey_level

    rng = np.random.default_rng(3)
    for trial in range(60):
        n = int(rng.integers(10, 3000))
        share = rng.uniform(0.05, 0.95)
        r2, _ = _mixture(rng, n, tissue=rng.uniform(10, 60), other=3.0, share=share, dtype=dtype)
        r2[rng.random(n) < 0.02] = np.nan
        ratio = rng.uniform(0.3, 0.7)
        assert tissue_level(r2, core_ratio=ratio) == _legacy_tissue_level(r2, core_ratio=ratio)
        grey = rng.choice([rng.uniform(500, 900), rng.uniform(1050, 1400)])
        t1, _ = _mixture(rng, n, tissue=grey, other=1000.0, share=share, sd=(40, 30), dtype=dtype)
        if trial % 2:
            t1 = np.rint(t1).astype(dtype)  # integer-valued, as a T1w is stored
        white = float(np.median(np.rint(rng.normal(1000.0, 30.0, 51))))
        assert _grey_level(t1, white) == _legacy_grey_level(t1, white)


def test_callers_outputs_on_the_refine_fixtures_are_unchanged():
    """``follow_csf``, ``csf_like`` and ``follow_grey_white`` on the scenes of test_refine.py:
    the numbers the code gave before the merge (commit 966e89b), to the last digit."""
    from ironmap.regions.csf import csf_like
    from ironmap.segmentation.constrain import follow_csf, follow_grey_white
    from test_refine import CAUDATE, SHAPE, WM, _atrophy_scene, _ball

    labels, r2, _, _ = _atrophy_scene(np.random.default_rng(3))
    out, report = follow_csf(labels, r2, voxel_mm=(1.0, 1.0, 1.0))
    assert report[["code", "n_csf", "r2star_tissue"]].values.tolist() == [
        [11.0, 323.0, 22.988706588745117],
        [2.0, 1619.0, 19.98071575164795],
    ]
    assert (out != labels).sum() == 1942
    assert csf_like(r2, labels == CAUDATE, csf=labels == 4).sum() == 401
    expected = {
        (680.0, "float64"): [1184.0, 681.4974365234375, 1002.6732177734375, 842.0853271484375],
        (680.0, "float32"): [1184.0, 681.0, 1003.0, 842.0],
        (1150.0, "float64"): [1183.0, 1152.5234375, 1002.6732177734375, 1077.5983276367188],
        (1150.0, "float32"): [1183.0, 1152.5, 1003.0, 1077.75],
    }
    for grey, white in [(680.0, 1000.0), (1150.0, 1000.0)]:
        rng = np.random.default_rng(5)
        caudate = _ball((20, 20, 15), 6.0)
        bias = 1.0 + 0.1 * np.linspace(-1.0, 1.0, SHAPE[0])[:, None, None]
        image = np.where(caudate, grey, white) * bias + rng.normal(0.0, 20.0, SHAPE)
        atlas = np.full(SHAPE, WM, dtype=np.int16)
        atlas[_ball((20, 20, 15), 8.0)] = CAUDATE
        for img in (image, np.rint(image).astype(np.float32)):
            moved, report = follow_grey_white(atlas, img, voxel_mm=(1.0, 1.0, 1.0))
            row = report[["n_white", "grey", "white", "threshold"]].values.tolist()
            assert row == [expected[grey, img.dtype.name]]
            assert (moved != atlas).sum() == expected[grey, img.dtype.name][0]


def test_both_callers_go_through_the_one_helper(monkeypatch):
    """One home: replacing the helper changes what both callers return."""
    import ironmap.regions.csf as csf
    import ironmap.segmentation.constrain as constrain

    calls = []

    def fake(values, **options):
        calls.append(options)
        return 42.0

    monkeypatch.setattr(csf, "robust_tissue_level", fake)
    monkeypatch.setattr(constrain, "robust_tissue_level", fake)
    values = np.linspace(1.0, 50.0, 100)
    assert csf.tissue_level(values) == 42.0
    assert constrain._grey_level(values, 25.0) == 42.0
    assert calls[0] == {"start_percentile": 90.0, "ratio": 0.5, "n_iter": 2}
    assert calls[1]["reference"] == 25.0
    assert calls[1]["ratio"] == 0.5
