"""Regions: partial-volume fractions, the threshold, regional R2* statistics and volumes, each
against a closed-form answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ironmap.errors import InputError, IronmapWarning
from ironmap.regions import (
    REGION_COLUMNS,
    label_fractions,
    region_codes,
    region_groups,
    region_masks,
    regional_r2star,
    volumes,
)
from ironmap.regions.catalog import DEEP_GM, HEMISPHERES, MEASURED_ROWS

#: Mask keys ``regional_r2star`` reads, one per measured row.
MEASURED_KEYS = [f"{row.source}/{hemi}" for row in MEASURED_ROWS for hemi in row.hemispheres]

#: Grid of the R2* tests: structures under test live at x < 12, the filler block at x >= 12.
SHAPE = (20, 12, 12)
FILLER = (slice(13, 19), slice(2, 10), slice(2, 10))  # 6 x 8 x 8, survives the erosions below


def _masks(**regions: np.ndarray) -> dict[str, np.ndarray]:
    """A mask for every measured key: the filler block, unless given (``thalamus__left=...``)."""
    filler = np.zeros(SHAPE, dtype=bool)
    filler[FILLER] = True
    masks = dict.fromkeys(MEASURED_KEYS, filler)
    masks.update({key.replace("__", "/"): mask for key, mask in regions.items()})
    return masks


def _box(*slices: slice) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[slices] = True
    return mask


def _row(table: pd.DataFrame, region: str, hemisphere: str = "both") -> pd.Series:
    hit = table[(table["region"] == region) & (table["hemisphere"] == hemisphere)]
    assert len(hit) == 1
    return hit.iloc[0]


# label_fractions -------------------------------------------------------------------------------


def test_fractions_on_the_same_grid_are_exactly_0_or_1(rng):
    labels = rng.integers(0, 5, size=(5, 4, 3))
    affine = np.array(
        [[0.0, -2.0, 0.0, 30.0], [1.5, 0.0, 0.0, -12.0], [0.0, 0.0, 3.0, 4.5], [0, 0, 0, 1]]
    )
    groups = {"one": (1,), "two_three": (2, 3)}
    got = label_fractions(labels, affine, labels.shape, affine, groups)
    assert got["one"].dtype == np.float32
    np.testing.assert_array_equal(got["one"], labels == 1)
    np.testing.assert_array_equal(got["two_three"], (labels == 2) | (labels == 3))
    np.testing.assert_array_equal(got["_inside"], 1.0)


def test_fractions_from_a_2x_finer_grid_are_the_covered_share_in_eighths(rng):
    target = np.array([[2.0, 0, 0, 10.0], [0, 2.0, 0, -4.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])
    block = np.diag([0.5, 0.5, 0.5, 1.0])
    block[:3, 3] = -0.25  # source voxels 2i, 2i + 1 tile target voxel i (corners aligned)
    shape = (4, 3, 5)
    fine = rng.integers(0, 3, size=tuple(2 * n for n in shape))
    got = label_fractions(fine, target @ block, shape, target, {"one": (1,)})
    share = (fine == 1).reshape(4, 2, 3, 2, 5, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(got["one"], share)
    assert np.all(got["one"] * 8 == np.round(got["one"] * 8))
    assert len(np.unique(share)) > 4  # partial voxels, not only 0 and 1
    np.testing.assert_array_equal(got["_inside"], 1.0)


def test_half_voxel_shift_gives_half_at_the_boundary_voxel():
    # 2 mm target voxels along x, 1 mm source: 2 sub-points per target voxel along x, so the
    # fractions are exact in halves. Source x voxels 0-5 carry label 1, 6-11 label 0.
    target = np.diag([2.0, 1.0, 1.0, 1.0])
    source = target @ np.array(
        [[0.5, 0, 0, -0.25], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]]
    )  # source x voxel a covers [a - 1, a] mm
    labels = np.zeros((12, 3, 3), dtype=np.int16)
    labels[:6] = 1
    aligned = label_fractions(labels, source, (6, 3, 3), target, {"one": (1,)})
    np.testing.assert_array_equal(aligned["one"][:, 1, 1], [1, 1, 1, 0, 0, 0])

    shifted = source.copy()
    shifted[0, 3] += 1.0  # half a target voxel: the label edge moves to the centre of voxel 3
    got = label_fractions(labels, shifted, (6, 3, 3), target, {"one": (1,)})
    # voxel 0 covers [-1, 1] mm, half of it left of the source; voxel 3 covers [5, 7] mm
    np.testing.assert_array_equal(got["one"][:, 1, 1], [0.5, 1, 1, 0.5, 0, 0])
    np.testing.assert_array_equal(got["_inside"][:, 1, 1], [0.5, 1, 1, 1, 1, 1])


def test_sub_points_on_voxel_boundaries_sample_every_source_voxel():
    # Voxel centres of a 0.5 mm source and a 1 mm target coincide, so each target voxel's two
    # sub-points fall exactly on source voxel boundaries (rounding ties). Labels alternate along
    # x; each target voxel must see one odd and one even source voxel, not skip the odd ones.
    labels = np.broadcast_to(1 + np.arange(16)[:, None, None] % 2, (16, 2, 2))
    got = label_fractions(
        labels, np.diag([0.5, 1.0, 1.0, 1.0]), (8, 2, 2), np.eye(4), {"odd": (2,)}
    )
    np.testing.assert_array_equal(got["odd"], 0.5)


def test_fractions_refuse_grids_that_do_not_overlap():
    labels = np.ones((3, 3, 3), dtype=np.int16)
    far = np.eye(4)
    far[:3, 3] = 100.0
    with pytest.raises(InputError, match="does not overlap"):
        label_fractions(labels, far, (3, 3, 3), np.eye(4), {"one": (1,)})


# region_masks ----------------------------------------------------------------------------------


def test_region_masks_threshold_is_inclusive():
    frac = np.array([0.0, 0.25, 0.7499, 0.75, 0.8, 1.0], dtype=np.float32).reshape(1, 2, 3)
    masks = region_masks({"thalamus/left": frac, "lesions": 1 - frac}, min_fraction=0.75)
    assert list(masks) == ["thalamus/left", "lesions"]
    assert masks["thalamus/left"].dtype == np.bool_
    np.testing.assert_array_equal(masks["thalamus/left"].ravel(), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(masks["lesions"].ravel(), [1, 1, 0, 0, 0, 0])
    # 1 keeps only voxels entirely inside
    whole = region_masks({"a": frac}, min_fraction=1.0)["a"]
    np.testing.assert_array_equal(whole.ravel(), [0, 0, 0, 0, 0, 1])


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, float("nan")])
def test_region_masks_refuse_min_fraction_outside_0_1(bad):
    with pytest.raises(InputError, match="min_fraction"):
        region_masks({"a": np.ones((2, 2, 2))}, min_fraction=bad)


# regional_r2star -------------------------------------------------------------------------------


def test_statistics_of_known_values(rng):
    r2 = np.full(SHAPE, 5.0)
    cube = _box(slice(2, 5), slice(2, 5), slice(2, 5))
    r2[cube] = rng.permutation(np.arange(1.0, 28.0))  # 1..27 in random places
    r2[5, 2, 2] = np.nan  # inside the mask, not finite: left out
    mask = cube.copy()
    mask[5, 2, 2] = True
    table = regional_r2star(
        r2,
        _masks(thalamus__left=mask),
        participant_id="sub-01",
        region_volumes_ml={"thalamus/left": 3.5},
    )
    assert list(table.columns) == REGION_COLUMNS
    expected_order = [(r.name, h) for r in MEASURED_ROWS for h in r.hemispheres]
    assert list(zip(table["region"], table["hemisphere"], strict=True)) == [
        *expected_order,
        ("lesions", "both"),
    ]
    row = _row(table, "thalamus", "left")
    # linear percentiles of 1..27: the p-th lies at 1 + 26 p
    assert row["r2star_median"] == 14.0
    assert row["r2star_mean"] == pytest.approx(14.0, rel=1e-12)
    assert row["r2star_iqr"] == pytest.approx((1 + 26 * 0.75) - (1 + 26 * 0.25), rel=1e-12)
    assert row["n_voxels"] == 27
    assert row["volume_ml"] == 3.5
    assert np.isnan(_row(table, "thalamus", "right")["volume_ml"])  # no volume given
    filler = _row(table, "nawm")
    assert (filler["r2star_median"], filler["r2star_iqr"], filler["n_voxels"]) == (5.0, 0.0, 384)
    assert table["n_voxels"].dtype == np.int64


def test_lesion_voxels_are_left_out_of_deep_gm_and_nawm_but_measured_as_lesions():
    r2 = np.full(SHAPE, 10.0)
    block = _box(slice(2, 6), slice(2, 6), slice(2, 6))  # 64 voxels
    lesion_core = _box(slice(3, 5), slice(3, 5), slice(3, 5))  # 8 voxels, wholly lesion
    r2[lesion_core] = 50.0
    lesion_free = ~lesion_core
    lesion_free[2, 2, 2] = False  # partly lesion: in neither measurement
    r2[2, 2, 2] = 1000.0
    masks = _masks(thalamus__left=block, cerebral_wm__both=block)
    masks["lesions"] = lesion_core
    table = regional_r2star(
        r2,
        masks,
        participant_id="sub-02",
        region_volumes_ml={"lesions": 0.75},
        lesion_free=lesion_free,
    )
    for region, hemi in (("thalamus", "left"), ("nawm", "both")):
        row = _row(table, region, hemi)
        assert (row["r2star_median"], row["r2star_mean"], row["r2star_iqr"]) == (10, 10, 0)
        assert row["n_voxels"] == 64 - 8 - 1
    lesions = _row(table, "lesions")
    assert (lesions["r2star_median"], lesions["r2star_mean"], lesions["n_voxels"]) == (50, 50, 8)
    assert lesions["volume_ml"] == 0.75


def test_erosion_of_a_5_cube_by_1_mm_leaves_the_3_cube_core():
    r2 = np.full(SHAPE, 100.0)
    cube = _box(slice(2, 7), slice(2, 7), slice(2, 7))
    r2[3:6, 3:6, 3:6] = 7.0
    table = regional_r2star(
        r2,
        _masks(putamen__right=cube),
        participant_id="sub-03",
        region_volumes_ml={},
        erode_mm=1.0,
        voxel_mm=np.array([1.0, 1.0, 1.0]),
    )
    row = _row(table, "putamen", "right")
    assert (row["n_voxels"], row["r2star_median"], row["r2star_mean"]) == (27, 7.0, 7.0)
    assert _row(table, "nawm")["n_voxels"] == 4 * 6 * 6  # the filler block lost one layer


def test_erosion_follows_anisotropic_voxels():
    # A ball of 2 mm spans +-2 voxels in x and y at 1 mm but +-1 voxel in z at 2 mm: the
    # 7 x 7 x 5 box keeps 3 x 3 x 3 voxels; read as 1 mm isotropic it would keep 3 x 3 x 1.
    r2 = np.full(SHAPE, 20.0)
    box = _box(slice(2, 9), slice(2, 9), slice(3, 8))
    masks = _masks(caudate__both=box)
    kwargs = {"participant_id": "sub-04", "region_volumes_ml": {}, "erode_mm": 2.0}
    table = regional_r2star(r2, masks, voxel_mm=np.array([1.0, 1.0, 2.0]), **kwargs)
    assert _row(table, "caudate")["n_voxels"] == 27
    assert _row(table, "nawm")["n_voxels"] == 2 * 4 * 6  # filler: -2 in x, y; -1 in z
    isotropic = regional_r2star(r2, masks, voxel_mm=None, **kwargs)
    assert _row(isotropic, "caudate")["n_voxels"] == 9


def test_missing_or_empty_region_gives_a_nan_row_and_one_warning():
    r2 = np.full(SHAPE, 30.0)
    masks = _masks(dentate_nucleus__right=np.zeros(SHAPE, dtype=bool))
    del masks["red_nucleus/left"]
    volumes_ml = {"red_nucleus/left": 0.2, "dentate_nucleus/right": 0.4, "lesions": 1.0}
    with pytest.warns(IronmapWarning) as record:
        table = regional_r2star(r2, masks, participant_id="sub-05", region_volumes_ml=volumes_ml)
    assert len(record) == 1
    assert "red_nucleus/left, dentate_nucleus/right" in str(record[0].message)
    for region, hemi, volume in (("red_nucleus", "left", 0.2), ("dentate_nucleus", "right", 0.4)):
        row = _row(table, region, hemi)
        assert row[["r2star_median", "r2star_mean", "r2star_iqr"]].isna().all()
        assert row["n_voxels"] == 0
        assert row["volume_ml"] == volume
    assert _row(table, "red_nucleus", "right")["n_voxels"] == 384
    # no "lesions" mask: the lesions row is NaN, its volume too, without a warning of its own
    lesions = _row(table, "lesions")
    assert lesions[["r2star_median", "volume_ml"]].isna().all()
    assert lesions["n_voxels"] == 0


def test_masks_must_match_the_r2star_grid():
    masks = _masks()
    with pytest.raises(InputError, match="thalamus/left"):
        regional_r2star(np.zeros((4, 4, 4)), masks, participant_id="sub-06", region_volumes_ml={})


# volumes and label tables ----------------------------------------------------------------------


def _labels(rng, counts: dict[int, int], shape=(10, 10, 10)) -> np.ndarray:
    flat = np.zeros(int(np.prod(shape)), dtype=np.int16)
    flat[: sum(counts.values())] = np.repeat(list(counts), list(counts.values()))
    return rng.permutation(flat).reshape(shape)


def test_volumes_in_ml(rng):
    # aseg codes: 2 WM, 3/42 cortex, 4 lateral ventricle, 24 CSF, 10 thalamus, 99 unknown
    counts = {2: 100, 3: 40, 42: 20, 4: 30, 24: 10, 10: 8, 99: 2}
    labels = _labels(rng, counts)
    affine = np.diag([-1.0, 1.0, 2.0, 1.0])  # 2 uL voxels (x flipped)
    voxel_ml = 0.002
    lesions = np.zeros((20, 20, 20), dtype=np.uint8)
    lesions[2:4, 2:4, 2:4] = 1  # 8 voxels
    lesions[10:13, 10, 10] = 1  # 3 voxels, apart
    lesion_affine = np.diag([0.5, 0.5, 0.5, 1.0])  # 0.125 uL = 1.25e-4 mL voxels
    subject, region_ml = volumes(
        labels,
        affine,
        region_codes(None),
        participant_id="sub-07",
        lesion_mask=lesions,
        lesion_affine=lesion_affine,
    )
    icv = sum(counts.values())
    brain = icv - 30 - 10
    assert subject["participant_id"] == "sub-07"
    assert subject["icv_ml"] == pytest.approx(icv * voxel_ml, rel=1e-12)
    assert subject["brain_ml"] == pytest.approx(brain * voxel_ml, rel=1e-12)
    assert subject["cortical_gm_ml"] == pytest.approx(60 * voxel_ml, rel=1e-12)
    assert subject["nbv"] == pytest.approx(brain / icv, rel=1e-12)
    assert subject["lesion_volume_ml"] == pytest.approx(11 * 1.25e-4, rel=1e-12)
    assert subject["lesion_count"] == 2
    assert region_ml["thalamus/left"] == pytest.approx(8 * voxel_ml, rel=1e-12)
    assert region_ml["thalamus/right"] == 0.0
    assert region_ml["cerebral_wm/both"] == pytest.approx(100 * voxel_ml, rel=1e-12)
    assert region_ml["lesions"] == subject["lesion_volume_ml"]
    assert set(region_ml) == {*region_groups(region_codes(None)), "lesions"}


def test_diagonally_touching_lesions_are_one_26_connected_lesion(rng):
    lesions = np.zeros((6, 6, 6), dtype=np.uint8)
    lesions[1, 1, 1] = lesions[2, 2, 2] = 1  # share a corner only
    subject, _ = volumes(
        _labels(rng, {2: 10, 3: 10}),  # a whole-brain segmentation: white matter and cortex
        np.eye(4),
        region_codes(None),
        participant_id="sub-08",
        lesion_mask=lesions,
        lesion_affine=np.diag([0.5, 0.5, 0.5, 1.0]),
    )
    assert subject["lesion_count"] == 1
    assert subject["lesion_volume_ml"] == pytest.approx(2 * 1.25e-4, rel=1e-12)


def test_volumes_without_a_lesion_mask_are_nan(rng):
    subject, region_ml = volumes(
        _labels(rng, {2: 10, 3: 10}), np.eye(4), region_codes(None), participant_id="sub-09"
    )
    assert np.isnan(subject["lesion_volume_ml"])
    assert np.isnan(subject["lesion_count"])
    assert np.isnan(region_ml["lesions"])


def test_region_codes_of_a_synthseg_style_table():
    table = {
        2: "left cerebral white matter",
        41: "right cerebral white matter",
        3: "left cerebral cortex",
        4: "left lateral ventricle",
        10: "left thalamus",
        49: "right thalamus",
        12: "Left_Putamen",
        51: "Right_Putamen",
        24: "CSF",
        15: "4th ventricle",
    }
    codes = region_codes(table)
    assert codes.codes("thalamus", "left") == (10,)
    assert codes.codes("thalamus", "both") == (10, 49)
    assert codes.codes("putamen", "right") == (51,)
    assert codes.codes("cerebral_wm", "both") == (2, 41)
    assert codes.codes("cortex", "left") == (3,)
    assert sorted(codes.csf) == [4, 15, 24]
    assert codes.missing == (
        "caudate",
        "pallidum",
        "substantia_nigra",
        "red_nucleus",
        "dentate_nucleus",
    )
    groups = region_groups(codes)
    assert list(groups) == [
        f"{region}/{hemi}" for region in (*DEEP_GM, "cerebral_wm") for hemi in HEMISPHERES
    ]
    assert groups["caudate/both"] == ()


# -- the region catalogue -----------------------------------------------------------------------


def test_catalogue_is_the_one_table_the_label_views_derive_from():
    from ironmap.regions import catalog

    names = [r.name for r in catalog.CATALOG]
    codes = [c for r in catalog.CATALOG for c in r.codes]
    assert len(set(names)) == len(names)
    assert len(set(codes)) == len(codes)
    assert catalog.DEEP_GM == (
        "thalamus",
        "caudate",
        "putamen",
        "pallidum",
        "substantia_nigra",
        "red_nucleus",
        "dentate_nucleus",
    )
    assert catalog.IRON_RICH == {
        "pallidum": (13, 52),
        "substantia_nigra": (101, 102),
        "red_nucleus": (103, 104),
        "dentate_nucleus": (105, 106),
    }
    assert len(catalog.LABEL_NAMES) == 26
    assert catalog.LABEL_NAMES[10] == "Left-Thalamus"
    assert catalog.LABEL_NAMES[106] == "Right-Dentate-Nucleus"
    assert catalog.LABEL_NAMES[24] == "CSF"
    assert catalog.LABEL_NAMES[16] == "Brain-Stem"
    assert [(r.name, r.source, r.hemispheres) for r in catalog.MEASURED_ROWS][-1] == (
        "nawm",
        "cerebral_wm",
        ("both",),
    )
    assert catalog.code_region(52) == "pallidum"
    assert catalog.code_region(999) is None


def test_a_catalogue_row_is_all_it_takes_to_measure_a_region(monkeypatch):
    """A new region appears in the label matching and in regions.tsv from one row."""
    from ironmap.regions import catalog, labels, stats

    hippocampus = catalog.Region("hippocampus", "deep_gm", (17, 53), ("Hippocampus",))
    extended = (*catalog.CATALOG, hippocampus)
    rows = (*catalog.MEASURED_ROWS, catalog.RegionRow("hippocampus", "hippocampus", ("both",)))
    monkeypatch.setattr(labels, "CATALOG", extended)
    monkeypatch.setattr(stats, "MEASURED_ROWS", rows)
    codes = labels.region_codes({17: "Left-Hippocampus", 53: "right hippocampus"})
    assert codes.codes("hippocampus", "both") == (17, 53)
    groups = stats.region_groups(codes)
    assert groups["hippocampus/both"] == (17, 53)
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, :] = True
    r2 = np.full((3, 3, 3), 33.0)
    with pytest.warns(IronmapWarning):  # every other region is absent
        table = stats.regional_r2star(
            r2,
            {"hippocampus/both": mask},
            participant_id="sub-01",
            region_volumes_ml={"hippocampus/both": 0.003},
        )
    row = table[table.region == "hippocampus"].iloc[0]
    assert (row.r2star_median, row.n_voxels, row.volume_ml) == (33.0, 3, 0.003)


@pytest.mark.parametrize(
    ("name", "normal"),
    [("Left Thalamus", "left-thalamus"), ("left_thalamus_proper", "left-thalamus-proper"),
     ("  CSF ", "csf"), ("3rd-Ventricle", "3rd-ventricle")],
)  # fmt: skip
def test_names_are_normalised(name, normal):
    from ironmap.regions.catalog import normalise_name

    assert normalise_name(name) == normal


# CSF exclusion ---------------------------------------------------------------------------------

#: Echo times (s) of the CSF tests: 8 echoes, 3-38 ms.
TE_8 = np.linspace(3e-3, 38e-3, 8)
TISSUE_R2, TISSUE_S0, CSF_R2, CSF_S0 = 24.0, 0.8, 3.0, 1.0


def _two_mm_r2star(r2_fine: np.ndarray, s0_fine: np.ndarray, rng) -> np.ndarray:
    """R2* (1/s) of 2 mm voxels: the 1 mm signals averaged (true partial volume), Rician noise
    (SNR 100 on tissue), a log-linear fit over :data:`TE_8`."""
    signal = s0_fine[..., None] * np.exp(-r2_fine[..., None] * TE_8)
    x, y, z = (n // 2 for n in r2_fine.shape)
    coarse = signal.reshape(x, 2, y, 2, z, 2, TE_8.size).mean(axis=(1, 3, 5))
    noise = rng.normal(scale=TISSUE_S0 / 100.0, size=(2, *coarse.shape))
    magnitude = np.hypot(coarse + noise[0], noise[1])
    slope = np.polyfit(TE_8, np.log(magnitude.reshape(-1, TE_8.size)).T, 1)[0]
    return -slope.reshape(x, y, z)


def _textured(rng, shape, level: float) -> np.ndarray:
    """``level`` with 3 % smooth-ish texture (1 mm)."""
    return level * (1.0 + 0.03 * rng.standard_normal(shape))


def test_csf_exclusion_leaves_a_clean_caudate_untouched(rng):
    """Tissue only, including iron loss of 20 % in half the region and 10 % everywhere: nothing
    is CSF-like, and the statistics are those without the exclusion, exactly."""
    from ironmap.regions.csf import csf_like

    fine = (40, 24, 24)
    r2 = _textured(rng, fine, TISSUE_R2)
    r2[:20] *= 0.8  # iron loss in half the region
    r2_2mm = _two_mm_r2star(r2, np.full(fine, TISSUE_S0), rng)
    shape = r2_2mm.shape
    caudate = np.zeros(shape, dtype=bool)
    caudate[2:18, 2:10, 2:10] = True
    assert not csf_like(r2_2mm, caudate).any()
    assert not csf_like(0.9 * r2_2mm, caudate).any()  # 10 % lower everywhere
    masks = dict.fromkeys(MEASURED_KEYS, caudate)
    kwargs = {"participant_id": "sub-07", "region_volumes_ml": {}}
    on = regional_r2star(r2_2mm, masks, exclude_csf=True, **kwargs)
    off = regional_r2star(r2_2mm, masks, exclude_csf=False, **kwargs)
    pd.testing.assert_frame_equal(on, off)
    assert (on["n_csf_excluded"] == 0).all()
    assert _row(on, "caudate")["n_voxels"] == 16 * 8 * 8


def test_csf_exclusion_removes_ventricle_from_a_caudate_that_does_not_follow_it(rng):
    """A caudate label whose medial half is ventricle (the wall 17 mm inside it, not on a 2 mm
    voxel boundary): CSF and its partial-volume voxels go, the median is the tissue's."""
    from ironmap.regions.csf import csf_like

    fine = (40, 24, 24)
    r2 = _textured(rng, fine, TISSUE_R2)
    s0 = np.full(fine, TISSUE_S0)
    ventricle = np.zeros(fine, dtype=bool)
    ventricle[:21] = True  # 1 mm voxels 0-20: ventricle; the caudate label starts at 4
    r2[ventricle], s0[ventricle] = CSF_R2, CSF_S0
    r2_2mm = _two_mm_r2star(r2, s0, rng)
    caudate = np.zeros(r2_2mm.shape, dtype=bool)
    caudate[2:18, 2:10, 2:10] = True  # 1 mm voxels 4-35: 17 mm of ventricle, 15 mm of tissue
    masks = dict.fromkeys(MEASURED_KEYS, caudate)
    kwargs = {"participant_id": "sub-08", "region_volumes_ml": {}}
    off = _row(regional_r2star(r2_2mm, masks, exclude_csf=False, **kwargs), "caudate")
    on = _row(regional_r2star(r2_2mm, masks, exclude_csf=True, **kwargs), "caudate")
    truth = r2[21:36, 4:20, 4:20].mean()
    assert off["r2star_median"] / truth - 1 < -0.5  # what the label alone gives
    assert on["r2star_median"] == pytest.approx(truth, rel=0.01)
    # 2 mm slabs 2-9 are wholly CSF, slab 10 (1 mm voxels 20-21) half: 9 slabs of 8 x 8 go
    excluded = csf_like(r2_2mm, caudate)
    assert on["n_csf_excluded"] == excluded.sum() == 9 * 8 * 8
    assert not excluded[11:].any()  # tissue beyond the partial-volume slab stays
    assert on["n_voxels"] == off["n_voxels"] - on["n_csf_excluded"]


def test_csf_exclusion_keeps_iron_loss_next_to_the_ventricle(rng):
    """Iron loss of 20 % in the tissue against the ventricle: only the ventricle and the slab
    it shares with the tissue go; the low-R2* tissue beyond is measured."""
    fine = (40, 24, 24)
    r2 = _textured(rng, fine, TISSUE_R2)
    s0 = np.full(fine, TISSUE_S0)
    r2[:30] *= 0.8  # iron loss from the wall to 1 mm voxel 29
    r2[:21], s0[:21] = CSF_R2, CSF_S0
    r2_2mm = _two_mm_r2star(r2, s0, rng)
    caudate = np.zeros(r2_2mm.shape, dtype=bool)
    caudate[2:18, 2:10, 2:10] = True
    masks = dict.fromkeys(MEASURED_KEYS, caudate)
    table = regional_r2star(
        r2_2mm, masks, participant_id="sub-09", region_volumes_ml={}, exclude_csf=True
    )
    row = _row(table, "caudate")
    assert row["n_csf_excluded"] == 9 * 8 * 8  # as without the iron loss
    truth = np.median(r2_2mm[11:18, 2:10, 2:10])  # every tissue voxel beyond the shared slab
    assert row["r2star_median"] == pytest.approx(truth, rel=1e-12)


def _wall_phantom(rng, csf_quarters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A 3-voxel-thick caudate (2 mm voxels) against a ventricle, drawn at 0.5 mm: R2* (2 mm),
    the caudate mask, the ventricle mask, and the true tissue median. ``csf_quarters`` of the
    four 0.5 mm sub-slabs of the caudate's first slab are ventricle (the wall the labels miss)."""
    k, shape = 4, (10, 8, 8)  # 2 mm voxels
    fine = tuple(n * k for n in shape)
    r2 = _textured(rng, fine, TISSUE_R2)
    s0 = np.full(fine, TISSUE_S0)
    wall = 4 * k + csf_quarters  # 0.5 mm slabs 0 .. wall-1 are ventricle
    r2[:wall], s0[:wall] = CSF_R2, CSF_S0
    signal = s0[..., None] * np.exp(-r2[..., None] * TE_8)
    coarse = signal.reshape(shape[0], k, shape[1], k, shape[2], k, TE_8.size).mean(axis=(1, 3, 5))
    noise = rng.normal(scale=TISSUE_S0 / 100.0, size=(2, *coarse.shape))
    magnitude = np.hypot(coarse + noise[0], noise[1])
    slope = np.polyfit(TE_8, np.log(magnitude.reshape(-1, TE_8.size)).T, 1)[0]
    r2_2mm = -slope.reshape(shape)
    caudate = np.zeros(shape, dtype=bool)
    caudate[4:7, 1:7, 1:7] = True  # a thin caudate: 3 slabs, the first one against the wall
    ventricle = np.zeros(shape, dtype=bool)
    ventricle[:4] = True
    return r2_2mm, caudate, ventricle, float(np.median(r2[wall : 7 * k, k : 7 * k, k : 7 * k]))


def test_csf_wall_leaves_a_clean_caudate_against_the_ventricle_untouched(rng):
    """The labels follow the ventricle exactly (the wall on a voxel boundary): the segmentation's
    CSF beside the caudate changes nothing."""
    r2_2mm, caudate, ventricle, _ = _wall_phantom(rng, csf_quarters=0)
    masks = dict.fromkeys(MEASURED_KEYS, caudate)
    kwargs = {"participant_id": "sub-10", "region_volumes_ml": {}, "exclude_csf": True}
    with_wall = regional_r2star(r2_2mm, masks, csf=ventricle, **kwargs)
    without = regional_r2star(r2_2mm, masks, **kwargs)
    pd.testing.assert_frame_equal(with_wall, without)
    assert _row(with_wall, "caudate")["n_csf_excluded"] == 0


def test_csf_wall_removes_the_partial_volume_a_segmentation_misplaces(rng):
    """The labels miss the ventricle wall by 0.5 mm: the thin caudate's first slab holds 25 %
    CSF by volume, not CSF-like by the core test (above half the tissue level) but low; with
    the segmentation's CSF beside it, it goes, and the median is the tissue's."""
    from ironmap.regions.csf import csf_like

    r2_2mm, caudate, ventricle, truth = _wall_phantom(rng, csf_quarters=1)
    assert np.median(r2_2mm[4, 1:7, 1:7]) / truth == pytest.approx(0.64, abs=0.05)
    masks = dict.fromkeys(MEASURED_KEYS, caudate)
    kwargs = {"participant_id": "sub-11", "region_volumes_ml": {}, "exclude_csf": True}
    without = _row(regional_r2star(r2_2mm, masks, **kwargs), "caudate")
    with_wall = _row(regional_r2star(r2_2mm, masks, csf=ventricle, **kwargs), "caudate")
    assert without["r2star_median"] / truth - 1 < -0.015  # a third of the voxels are low
    assert with_wall["r2star_median"] == pytest.approx(truth, rel=0.01)
    wall = csf_like(r2_2mm, caudate, csf=ventricle)
    np.testing.assert_array_equal(np.argwhere(wall)[:, 0], 4)  # the first slab, ...
    assert wall.sum() == 36  # ... all of it
    assert with_wall["n_csf_excluded"] == 36


@pytest.mark.parametrize(("core", "rim"), [(0.0, 0.7), (0.6, 0.5), (0.5, 1.0)])
def test_csf_ratios_must_be_ordered_inside_0_1(core, rim):
    from ironmap.regions.csf import csf_like

    with pytest.raises(ValueError, match="core_ratio"):
        csf_like(np.ones((3, 3, 3)), np.ones((3, 3, 3), bool), core_ratio=core, rim_ratio=rim)
