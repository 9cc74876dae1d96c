"""Registration of a segmentation's own image (T1w) to the GRE (issue 26): a simulated subject
whose head moved 6 mm / 4 deg between the T1w session (T1w, dseg, lesion mask) and the GRE."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.errors import InputError, IronmapError
from ironmap.io import find_inputs, load_bids_echoes
from ironmap.segmentation.coregister import Coregistration, rigid_transform, same_grid
from ironmap.segmentation.strategies import UserDseg
from ironmap.simulate import SITES, draw_cohort, generate_subject
from ironmap.simulate.bids import write_dataset_files, write_subject
from ironmap.simulate.cohort import participants_table

#: The planted motion: rotations (deg) and translation (mm) of the head before the GRE.
MOTION = ((4.0, 0.0, 0.0), (0.0, 6.0, 0.0))
DEEP = ["thalamus", "caudate", "putamen", "pallidum", "substantia_nigra", "red_nucleus"]


@pytest.fixture(scope="module")
def person():
    return draw_cohort(n_hc=0, n_ms=1, seed=5, sites=(SITES[0],))[0]  # graz: 2 echoes, 2 mm


def _bids(root, person, motion=None):
    data = generate_subject(person, with_t1w=True, motion=motion)
    write_dataset_files(root, participants_table([person]))
    write_subject(root, person, data)
    return data


@pytest.fixture(scope="module")
def moved(tmp_path_factory, person):
    root = tmp_path_factory.mktemp("moved")
    data = _bids(root / "bids", person, MOTION)
    return root, data


@pytest.fixture(scope="module")
def still(tmp_path_factory, person):
    """The same subject without motion, its dseg trusted as it is (the reference result)."""
    root = tmp_path_factory.mktemp("still")
    data = _bids(root / "bids", person)
    args = ["run", str(root / "bids"), str(root / "out"), "participant"]
    assert main([*args, "--register-segmentation", "never"]) == 0
    return root, data


def _regions(root, person) -> pd.DataFrame:
    sub = person.participant_id
    return pd.read_csv(root / "out" / sub / "anat" / f"{sub}_regions.tsv", sep="\t")


def test_rigid_transform_round_trips_through_the_record():
    planted = rigid_transform((2.0, -3.0, 5.0), (1.0, -6.0, 4.0), centre_mm=(10.0, 20.0, -5.0))
    reg = Coregistration(planted, metric=-0.5, seconds=1.0)
    np.testing.assert_allclose(reg.rotation_deg, (2.0, -3.0, 5.0), atol=1e-9)
    np.testing.assert_allclose(reg.displacement_mm((10.0, 20.0, -5.0)), (1.0, -6.0, 4.0))
    assert np.isclose(np.linalg.det(planted[:3, :3]), 1.0)
    record = reg.record()
    np.testing.assert_allclose(record["transform"], planted, atol=1e-6)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(reg.carry(affine), planted)


def test_simulated_motion_moves_the_t1w_session_not_the_gre(moved, person):
    """The T1w, dseg and lesion mask keep the anatomy's voxels; their affine is the unmoved
    head's, ``inv(motion) @ anatomy.affine``; the GRE is that of the motion-free subject."""
    root, data = moved
    sub = person.participant_id
    dseg = nib.load(root / "bids/derivatives/segmentation" / sub / "anat" / f"{sub}_dseg.nii.gz")
    np.testing.assert_allclose(dseg.affine, np.linalg.inv(data.motion) @ data.anatomy.affine)
    np.testing.assert_array_equal(np.asarray(dseg.dataobj), data.anatomy.labels)
    t1w = nib.load(root / "bids" / sub / "anat" / f"{sub}_T1w.nii.gz")
    np.testing.assert_allclose(t1w.affine, dseg.affine)
    still = generate_subject(person)
    np.testing.assert_array_equal(data.magnitude, still.magnitude)
    np.testing.assert_allclose(data.affine, still.affine)
    centre = data.anatomy.affine @ np.append((np.array(data.anatomy.labels.shape) - 1) / 2, 1)
    reg = Coregistration(data.motion, metric=0.0, seconds=0.0)
    np.testing.assert_allclose(reg.displacement_mm(centre[:3]), MOTION[1], atol=1e-9)
    np.testing.assert_allclose(reg.rotation_deg, MOTION[0], atol=1e-9)


def test_motion_without_registration_is_refused(moved):
    """Today's behaviour (and ``never``): the moved dseg is refused by the alignment check."""
    root, _ = moved
    inputs = find_inputs(root / "bids")[0]
    image = load_bids_echoes(inputs.echoes)
    with pytest.raises(InputError, match="does not fit the GRE"):
        UserDseg(inputs, register="never").fit_mask(image)


def test_registration_recovers_the_motion_and_the_regional_medians(moved, still, person):
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    root, data = moved
    assert main(["run", str(root / "bids"), str(root / "out"), "participant"]) == 0
    sub = person.participant_id
    provenance = json.loads((root / "out" / sub / "anat" / f"{sub}_provenance.json").read_text())
    record = provenance["segmentation_registration"]
    assert record["registered"] is True
    assert "another acquisition" in record["reason"]
    assert record["moving_image"].endswith(f"{sub}_T1w.nii.gz")
    found = Coregistration(np.array(record["transform"]), metric=0.0, seconds=0.0)
    centre = data.anatomy.affine @ np.append((np.array(data.anatomy.labels.shape) - 1) / 2, 1)
    planted = Coregistration(data.motion, metric=0.0, seconds=0.0)
    error_mm = found.displacement_mm(centre[:3]) - planted.displacement_mm(centre[:3])
    assert np.linalg.norm(error_mm) < 1.0
    residual = np.linalg.inv(data.motion) @ found.transform
    assert Coregistration(residual, metric=0.0, seconds=0.0).angle_deg < 1.0
    assert record["alignment_after"]["alignment"] == "ok"
    after, before = _regions(root, person), _regions(still[0], person)
    both = before.merge(after, on=["region", "hemisphere"], suffixes=("_still", "_moved"))
    assert set(DEEP) <= set(both.region)
    rel = both.r2star_median_moved / both.r2star_median_still - 1.0
    assert np.all(np.abs(rel[both.region != "lesions"]) <= 0.02), both[["region", "hemisphere"]][
        np.abs(rel) > 0.02
    ]
    lesion = both[both.region == "lesions"].iloc[0]
    assert lesion.volume_ml_moved == pytest.approx(lesion.volume_ml_still, rel=0.05)
    qc = root / "out" / sub / "figures" / f"{sub}_desc-registration_qc.png"
    assert qc.stat().st_size > 10_000


def test_auto_does_not_register_a_still_same_grid_dseg(still, person, tmp_path):
    """The dseg's own image is on the GRE's grid (its sidecar names the first echo) and the
    alignment check finds it ok: ``auto`` keeps the dseg's affine, and says why."""
    root, _ = still
    inputs = find_inputs(root / "bids")[0]
    sidecar = inputs.dseg.with_name(inputs.dseg.name.replace(".nii.gz", ".json"))
    saved = sidecar.read_text()
    try:
        sidecar.write_text(json.dumps({"Sources": [str(inputs.echoes[0])]}))
        image = load_bids_echoes(inputs.echoes)
        strategy = UserDseg(inputs)  # the default: auto
        strategy.fit_mask(image)
        seg = strategy.segment(image, fit=None)
    finally:
        sidecar.write_text(saved)
    assert seg.world is None
    assert seg.registration["registered"] is False
    assert "alignment check found it ok" in seg.registration["reason"]
    assert seg.qc["alignment"] == "ok"


def test_always_without_the_image_is_refused_in_one_line(still, person, tmp_path):
    root, _ = still
    inputs = find_inputs(root / "bids")[0]
    bare = type(inputs)(
        inputs.subject, inputs.session, inputs.echoes, dseg=inputs.dseg, dseg_tsv=inputs.dseg_tsv
    )
    sidecar = inputs.dseg.with_name(inputs.dseg.name.replace(".nii.gz", ".json"))
    saved = sidecar.read_text()
    try:
        sidecar.write_text("{}")
        image = load_bids_echoes(inputs.echoes)
        with pytest.raises(InputError, match="image it was made on was not found"):
            UserDseg(bare, register="always").fit_mask(image)
    finally:
        sidecar.write_text(saved)


def test_missing_ants_is_a_one_line_error(monkeypatch):
    import importlib.util

    from ironmap.segmentation.register import check_ants

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(IronmapError, match="register-segmentation never"):
        check_ants("--register-segmentation needs ANTsPy; or pass --register-segmentation never")


def test_same_grid():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    assert same_grid((4, 4, 4), affine, (4, 4, 4, 3), affine)
    assert not same_grid((4, 4, 4), affine, (4, 4, 5), affine)
    assert not same_grid((4, 4, 4), affine, (4, 4, 4), np.diag([1.0, 1.0, 1.0, 1.0]))


def test_participant_qc_columns_from_the_provenance_record():
    from ironmap.cohort.qc import QC_COLUMNS, _registration

    record = {"registered": True, "displacement_mm": [3.0, 4.0, 0.0], "angle_deg": 4.1}
    assert _registration({"segmentation_registration": record}) == {
        "segmentation_registered": True,
        "registration_shift_mm": 5.0,
        "registration_angle_deg": 4.1,
    }
    skipped = _registration({"segmentation_registration": {"registered": False}})
    assert skipped["segmentation_registered"] is False
    assert np.isnan(skipped["registration_shift_mm"])
    assert all(np.isnan(v) for v in _registration({}).values())  # never, or older outputs
    assert {"segmentation_registered", "registration_shift_mm"} <= set(QC_COLUMNS)


def test_methods_say_how_many_segmentations_were_registered():
    from ironmap.report.methods_regions import _registered

    qc = pd.DataFrame({"segmentation_registered": [True, False, np.nan, "True"]})
    assert _registered(qc).startswith(" For 2 of 4 participants the image the segmentation")
    assert _registered(qc.iloc[[1, 2]]) == ""
    assert _registered(pd.DataFrame({"x": [1]})) == ""


def test_the_dseg_image_is_found_from_sources_else_a_t1w_or_flair_on_its_grid(tmp_path):
    from ironmap.io import SessionInputs
    from ironmap.segmentation.coregister import segmentation_image

    anat = tmp_path / "bids/sub-01/anat"
    seg = tmp_path / "bids/derivatives/seg/sub-01/anat"
    anat.mkdir(parents=True)
    seg.mkdir(parents=True)
    grid, gre = np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0])
    echo, dseg = anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz", seg / "sub-01_dseg.nii.gz"
    flair, t1w = anat / "sub-01_FLAIR.nii.gz", anat / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), gre), echo)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.int16), grid), dseg)
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), grid), flair)
    nib.save(nib.Nifti1Image(np.ones((9, 8, 8), np.float32), grid), t1w)  # another grid
    inputs = SessionInputs("01", None, (echo,), dseg=dseg, t1w=t1w)
    shape, affine = (8, 8, 8), grid
    assert segmentation_image(inputs, shape=shape, affine=affine) == flair
    sidecar = seg / "sub-01_dseg.json"
    sidecar.write_text(json.dumps({"Sources": ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]}))
    assert segmentation_image(inputs, shape=shape, affine=affine) == t1w  # named: any grid
    sidecar.write_text(json.dumps({"Sources": "sub-01/anat/missing_T1w.nii.gz"}))
    assert segmentation_image(inputs, shape=shape, affine=affine) == flair
    flair.unlink()
    assert segmentation_image(inputs, shape=shape, affine=affine) is None
    sidecar.write_text("[1, 2")
    with pytest.raises(InputError, match=r"sub-01_dseg\.json"):
        segmentation_image(inputs, shape=shape, affine=affine)


def test_a_lesion_mask_drawn_on_a_flair_of_its_own_motion_is_registered_on_its_own(
    tmp_path, still, person
):
    """dseg and T1w moved one way (6 mm / 4 deg), the lesion mask and its FLAIR another
    (3 mm / -3 deg): each is carried by its own image's registration."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    from ironmap.segmentation.coregister import rigid_transform

    data = _bids(tmp_path / "bids", person, MOTION)
    sub = person.participant_id
    centre = data.anatomy.affine @ np.append((np.array(data.anatomy.labels.shape) - 1) / 2, 1)
    flair_motion = rigid_transform((0.0, 0.0, -3.0), (3.0, 0.0, -1.0), centre_mm=centre[:3])
    affine = np.linalg.inv(flair_motion) @ data.anatomy.affine
    mask = tmp_path / "bids/derivatives/segmentation" / sub / "anat"
    mask = mask / f"{sub}_label-lesion_mask.nii.gz"
    nib.save(nib.Nifti1Image(data.anatomy.lesions.astype(np.uint8), affine), mask)
    flair = tmp_path / "bids" / sub / "anat" / f"{sub}_FLAIR.nii.gz"
    nib.save(nib.Nifti1Image(data.t1w, affine), flair)  # the contrast matters little here
    assert main(["run", str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]) == 0
    anat = tmp_path / "out" / sub / "anat"
    record = json.loads((anat / f"{sub}_provenance.json").read_text())["segmentation_registration"]
    lesion = record["lesion_mask"]
    assert lesion["moving_image"].endswith(f"{sub}_FLAIR.nii.gz")
    found = Coregistration(np.array(lesion["transform"]), metric=0.0, seconds=0.0)
    error = found.displacement_mm(centre[:3]) - (flair_motion @ centre)[:3] + centre[:3]
    assert np.linalg.norm(error) < 1.0
    after = pd.read_csv(anat / f"{sub}_regions.tsv", sep="\t").set_index(["region", "hemisphere"])
    before = _regions(still[0], person).set_index(["region", "hemisphere"])
    row, ref = after.loc[("lesions", "both")], before.loc[("lesions", "both")]
    assert row.n_voxels == pytest.approx(ref.n_voxels, rel=0.05)
    assert row.r2star_median == pytest.approx(ref.r2star_median, rel=0.02)


def test_qc_section_lists_the_registrations(tmp_path):
    from ironmap.report.qc_registration import registration_html

    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    common = {"rotation_deg": [4.0, 0.0, 0.0], "translation_mm": [0.0, 6.0, 0.0], "seconds": 9.0}
    record = {
        "registered": True, "reason": "another acquisition than the GRE (another grid)",
        "moving_image": "/x/sub-01_T1w.nii.gz", "metric": -0.93,
        "displacement_mm": [0.0, 5.98, -0.13], "alignment_after": {"alignment": "ok"}, **common,
        "lesion_mask": {"registered": True, "moving_image": "/x/sub-01_FLAIR.nii.gz", **common},
    }  # fmt: skip
    text = registration_html(png, record)
    assert "sub-01_T1w.nii.gz" in text
    assert "sub-01_FLAIR.nii.gz" in text
    assert "+0.00, +5.98, -0.13" in text  # the displacement of the GRE's centre
    assert "+0.00, +6.00, +0.00" in text  # the lesion mask's translation (no displacement)
    assert "data:image/png;base64," in text


def test_ants_seed_is_set_for_the_block_and_restored():
    """ANTsPy 0.6 ignores registration(random_seed=...): the seed goes through its config."""
    ants = pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    from ironmap.segmentation.register import seeded

    before = ants.config._random_seed
    with seeded(ants, 20140601):
        assert ants.config._random_seed == 20140601
    assert ants.config._random_seed == before


def test_a_freesurfer_folder_of_a_moved_head_is_registered_by_its_orig_mgz(
    tmp_path, still, person
):
    """FreeSurfer's aseg.mgz made on a T1w session 6 mm / 4 deg away from the GRE: auto
    registers mri/orig.mgz (the image FreeSurfer segmented) and carries aseg.mgz, giving the
    motion-free regional R2* (today: refused as misaligned, or orig.mgz ignored)."""
    pytest.importorskip("ants", reason="needs ANTsPy (atlas extra)")
    from ironmap.simulate.bids import SEGMENTATION_DIR
    from test_freesurfer import aseg_like

    bids = tmp_path / "bids"
    _bids(bids, person, MOTION)
    sub = person.participant_id
    dseg = nib.load(bids / SEGMENTATION_DIR / sub / "anat" / f"{sub}_dseg.nii.gz")
    t1w = nib.load(bids / sub / "anat" / f"{sub}_T1w.nii.gz")
    # the simulator's dseg as FreeSurfer writes it: aseg codes in .mgz, the T1w session's space
    aseg = aseg_like(np.asarray(dseg.dataobj))
    mri = tmp_path / "fs" / sub / "mri"
    mri.mkdir(parents=True)
    nib.save(nib.MGHImage(aseg, dseg.affine), mri / "aseg.mgz")
    orig = np.clip(np.asarray(t1w.dataobj), 0, 255).astype(np.uint8)
    nib.save(nib.MGHImage(orig, t1w.affine), mri / "orig.mgz")
    shutil.rmtree(bids / "derivatives")
    args = ["run", str(bids), str(tmp_path / "out"), "participant"]
    assert main([*args, "--freesurfer-dir", str(tmp_path / "fs")]) == 0
    provenance = json.loads(
        (tmp_path / "out" / sub / "anat" / f"{sub}_provenance.json").read_text()
    )
    record = provenance["segmentation_registration"]
    assert record["registered"] is True
    assert record["moving_image"].endswith("orig.mgz")
    after = _regions(tmp_path, person).set_index(["region", "hemisphere"])
    before = _regions(still[0], person).set_index(["region", "hemisphere"])
    for region in ("thalamus", "caudate", "putamen", "pallidum"):
        for hemi in ("left", "right"):
            moved = after.loc[(region, hemi), "r2star_median"]
            assert moved == pytest.approx(before.loc[(region, hemi), "r2star_median"], rel=0.02)
