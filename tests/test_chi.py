"""chi everywhere R2* is: regional susceptibility beside R2*, the Chimap of the participant
stage (computed from the phase echoes or taken from the derivatives), and no chi without
phase."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.errors import IronmapWarning
from ironmap.regions import regional_r2star
from ironmap.regions.csf import csf_like
from ironmap.workflows.participant import ParticipantConfig, run_participant

TE = (0.005, 0.010, 0.015, 0.020)
GRID = np.diag([2.0, 2.0, 2.0, 1.0])
FINE = np.eye(4)
#: Putamen on the 2 mm grid (labels[10:16, 10:20, 6:12] at 1 mm), left and right.
PUTAMEN = {"left": np.s_[5:8, 5:10, 3:6], "right": np.s_[12:15, 5:10, 3:6]}


# -- regional statistics: one code path for both maps -----------------------------------------


def test_chi_columns_are_the_statistics_of_the_r2star_voxels(rng):
    shape = (12, 12, 8)
    r2 = np.full(shape, 30.0)
    r2[2:5, 2:5, 2:5] = 5.0  # CSF-like voxels inside the thalamus: left out of both maps
    r2[6, 6, 6] = np.nan  # a failed R2* voxel: no chi either
    chi = rng.normal(0.05, 0.02, shape)
    chi[7, 7, 5] = np.nan  # a voxel outside the QSM mask: no chi, R2* kept
    thal = np.zeros(shape, bool)
    thal[1:9, 1:9, 1:7] = True
    masks = {"thalamus/both": thal, "lesions": np.zeros(shape, bool)}
    masks["lesions"][10, 10, 2:4] = True
    kwargs = {
        "participant_id": "sub-1",
        "region_volumes_ml": {},
        "exclude_csf": True,
        "unlabelled": ("caudate", "putamen", "pallidum", "substantia_nigra", "red_nucleus",
                       "dentate_nucleus", "cerebral_wm", "thalamus"),
    }  # fmt: skip
    table = regional_r2star(r2, masks, chi=chi, **kwargs).set_index(["region", "hemisphere"])
    row = table.loc[("thalamus", "both")]
    used = thal & ~csf_like(r2, thal) & np.isfinite(r2)
    assert row.n_voxels == used.sum() == 8 * 8 * 6 - 27 - 1
    values = chi[used & np.isfinite(chi)]
    assert row.chi_n_voxels == values.size == row.n_voxels - 1
    assert row.chi_median == pytest.approx(np.median(values), abs=1e-12)
    assert row.chi_mean == pytest.approx(values.mean(), abs=1e-12)
    assert row.chi_sd == pytest.approx(values.std(ddof=1), abs=1e-12)
    lesion = table.loc[("lesions", "both")]
    assert lesion.chi_median == pytest.approx(np.median(chi[masks["lesions"]]), abs=1e-12)
    # without a chi map: NaN chi columns, 0 voxels, and no more warnings than before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = regional_r2star(r2, masks, **kwargs)
    assert caught == []
    assert plain["chi_median"].isna().all()
    assert (plain["chi_n_voxels"] == 0).all()
    assert plain.drop(columns=[c for c in plain if c.startswith("chi_")]).equals(
        table.reset_index()[plain.columns].drop(columns=[c for c in plain if c.startswith("chi_")])
    )


# -- the participant stage --------------------------------------------------------------------


def _labels() -> np.ndarray:
    labels = np.zeros((40, 40, 20), np.int16)
    labels[4:36, 4:36, 2:18] = 2  # left WM
    labels[20:36, 4:36, 2:18] = 41  # right WM
    labels[10:16, 10:20, 6:12] = 12  # left putamen
    labels[24:30, 10:20, 6:12] = 51  # right putamen
    return labels


def _write_subject(root, label, *, phase: bool, field_strength: float | None = 3.0) -> None:
    """One participant on a 2 mm grid (putamen R2* 40, WM 20 1/s) with a dseg at 1 mm; with
    ``phase``, phase echoes of a smooth field (0.5 Hz/voxel along x, 3 Hz in the putamen)."""
    labels = _labels()
    r2 = np.where(np.isin(labels, (12, 51)), 40.0, np.where(labels > 0, 20.0, 0.0))
    fine = 1000.0 * (labels > 0)[..., None] * np.exp(-r2[..., None] * np.asarray(TE))
    acq = fine.reshape(20, 2, 20, 2, 10, 2, len(TE)).mean(axis=(1, 3, 5))
    noise = np.random.default_rng(int(label)).normal(scale=2.0, size=(2, *acq.shape))
    acq = np.hypot(acq + noise[0], noise[1])
    field = 0.5 * np.arange(20)[:, None, None] + np.zeros((20, 20, 10))
    for where in PUTAMEN.values():
        field[where] += 3.0
    anat = root / f"sub-{label}" / "anat"
    anat.mkdir(parents=True)
    meta = {} if field_strength is None else {"MagneticFieldStrength": field_strength}
    for n, t in enumerate(TE, start=1):
        name = f"sub-{label}_echo-{n}_part-mag_MEGRE"
        nib.save(
            nib.Nifti1Image(acq[..., n - 1].astype(np.float32), GRID), anat / f"{name}.nii.gz"
        )
        (anat / f"{name}.json").write_text(json.dumps({"EchoTime": t, **meta}))
        if phase:
            name = f"sub-{label}_echo-{n}_part-phase_MEGRE"
            wrapped = np.angle(np.exp(2j * np.pi * field * t)).astype(np.float32)
            nib.save(nib.Nifti1Image(wrapped, GRID), anat / f"{name}.nii.gz")
            (anat / f"{name}.json").write_text(json.dumps({"EchoTime": t, **meta}))
    seg = root / "derivatives" / "seg" / f"sub-{label}" / "anat"
    seg.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels, FINE), seg / f"sub-{label}_dseg.nii.gz")
    names = ["Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter", "Left-Putamen",
             "Right-Putamen"]  # fmt: skip
    pd.DataFrame({"index": [2, 41, 12, 51], "name": names}).to_csv(
        seg / f"sub-{label}_dseg.tsv", sep="\t", index=False
    )


def _dataset(tmp_path, **kwargs):
    root = tmp_path / "bids"
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    _write_subject(root, "01", **kwargs)
    return root


def _run(root, out, **options):
    results = run_participant(ParticipantConfig(root, out, **options))
    assert [r.status for r in results] == ["done"], [r.error for r in results]
    return results[0]


def _qsm_warnings(result) -> list[str]:
    """The participant's warnings about susceptibility (this dseg has no cortex and no
    thalamus, which other warnings say)."""
    words = ("chi ", "chi_", "|chi|", "QSM", "susceptib", "Chimap", "MagneticFieldStrength")
    return [w for w in result.warnings if any(word in w for word in words)]


def _table(out):
    table = pd.read_csv(out / "sub-01/anat/sub-01_regions.tsv", sep="\t", na_values="n/a")
    return table.set_index(["region", "hemisphere"])


def test_chimap_from_phase_is_written_with_its_sidecar_and_measured(tmp_path):
    root = _dataset(tmp_path, phase=True)
    out = tmp_path / "out"
    result = _run(root, out)
    assert _qsm_warnings(result) == []
    chimap = out / "sub-01/anat/sub-01_Chimap.nii.gz"
    image = nib.load(chimap)
    assert image.get_data_dtype() == np.float32
    assert np.allclose(image.affine, GRID)
    chi = image.get_fdata()
    side = json.loads(chimap.with_name("sub-01_Chimap.json").read_text())
    assert side["Units"] == "ppm"
    assert side["QSMSource"] == "computed"
    assert side["QSMMethods"]["inversion"] == "tkd"
    assert side["QSMMethods"]["background"] == "sharp"
    assert side["MagneticFieldStrength"] == 3.0
    assert side["EchoTime"] == list(TE)
    assert side["OutsideMask"] == "NaN"
    # no ventricles in this dseg: the whole mask is the reference (its mean chi is 0)
    assert side["ReferenceRegion"] == "whole brain mask (mean)"
    assert abs(np.nanmean(chi)) < 1e-5
    assert sum("part-phase" in s for s in side["Sources"]) == len(TE)
    assert np.isnan(chi[0, 0, 0])  # outside the mask
    table = _table(out)
    for hemi, where in PUTAMEN.items():
        row = table.loc[("putamen", hemi)]
        values = chi[where][np.isfinite(chi[where])]
        assert row.chi_n_voxels == values.size == row.n_voxels == 45
        assert row.chi_median == pytest.approx(np.median(values), abs=6e-5)  # 4 decimals
        assert row.chi_mean == pytest.approx(values.mean(), abs=6e-5)
    # the putamen's +3 Hz (paramagnetic) stands out of the white matter in chi
    assert table.loc[("putamen", "both"), "chi_median"] > table.loc[("nawm", "both"), "chi_median"]
    record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
    assert record["options"]["qsm"] == "computed"
    assert record["qsm"]["parameters"]["inversion"] == "tkd"
    assert record["qsm"]["reference_region"] == side["ReferenceRegion"]
    # resume: the same inputs and options are skipped; --qsm off is another option
    assert run_participant(ParticipantConfig(root, out))[0].status == "skipped"
    other = run_participant(ParticipantConfig(root, out, qsm="off"))[0]
    assert other.status == "failed"
    assert "option qsm: computed -> unset" in other.error


def test_qsm_off_and_no_phase_give_no_chi_and_no_warning(tmp_path):
    root = _dataset(tmp_path, phase=True)
    for name, options in (("off", {"qsm": "off"}), ("nophase", {"b0_correction": "off"})):
        if name == "nophase":
            for path in root.rglob("*_part-phase_*"):
                path.unlink()
        out = tmp_path / name
        result = _run(root, out, **options)
        assert _qsm_warnings(result) == []
        assert not (out / "sub-01/anat/sub-01_Chimap.nii.gz").exists()
        table = _table(out)
        assert table["chi_median"].isna().all()
        assert (table["chi_n_voxels"] == 0).all()
        record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
        assert "qsm" not in record["options"]
        assert "qsm" not in record


def test_no_field_strength_warns_and_gives_nan_chi(tmp_path):
    root = _dataset(tmp_path, phase=True, field_strength=None)
    result = _run(root, tmp_path / "out")
    assert len(_qsm_warnings(result)) == 1
    assert "no MagneticFieldStrength" in _qsm_warnings(result)[0]
    assert _table(tmp_path / "out")["chi_median"].isna().all()


def _external(root, values: dict[str, float], *, scale: float = 1.0):
    """A QSMxT-like ``derivatives/qsmxt/sub-01/anat/sub-01_Chimap.nii`` at 1 mm, 0 outside."""
    labels = _labels()
    chi = np.zeros(labels.shape, np.float32)
    chi[labels > 0] = values["wm"] * scale
    chi[np.isin(labels, (12, 51))] = values["putamen"] * scale
    folder = root / "derivatives" / "qsmxt" / "sub-01" / "anat"
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(chi, FINE), folder / "sub-01_Chimap.nii")
    return folder / "sub-01_Chimap.nii"


def test_external_chimap_is_used_instead_of_computing_one(tmp_path):
    root = _dataset(tmp_path, phase=True)
    path = _external(root, {"wm": -0.02, "putamen": 0.11})
    out = tmp_path / "out"
    result = _run(root, out)
    assert _qsm_warnings(result) == []
    table = _table(out)
    assert table.loc[("putamen", "both"), "chi_median"] == pytest.approx(0.11, abs=1e-4)
    assert table.loc[("putamen", "left"), "chi_n_voxels"] == 45
    assert table.loc[("nawm", "both"), "chi_median"] == pytest.approx(-0.02, abs=1e-4)
    side = json.loads((out / "sub-01/anat/sub-01_Chimap.json").read_text())
    assert side["QSMSource"] == "external"
    assert side["Sources"] == [str(path)]
    assert side["Units"] == "ppm"
    chi = nib.load(out / "sub-01/anat/sub-01_Chimap.nii.gz")
    assert chi.shape == (20, 20, 10)
    assert np.allclose(chi.affine, GRID)
    record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
    assert record["options"]["qsm"] == "external"
    assert record["qsm"] == {"source": "external", "file": str(path)}
    assert "sub-01_Chimap.nii" in record["inputs"]


def test_external_chimap_in_ppb_is_warned(tmp_path):
    root = _dataset(tmp_path, phase=False)
    _external(root, {"wm": -0.02, "putamen": 0.11}, scale=1000.0)
    result = _run(root, tmp_path / "out", b0_correction="off")
    assert len(_qsm_warnings(result)) == 1
    assert "99th percentile of |chi| is 110, outside 0.01-2.0 ppm" in _qsm_warnings(result)[0]
    assert _table(tmp_path / "out").loc[("putamen", "both"), "chi_median"] == pytest.approx(110)


def test_qsm_option_is_checked():
    from ironmap.errors import InputError

    with pytest.raises(InputError, match="--qsm must be one of auto, off"):
        ParticipantConfig("a", "b", qsm="on")
    assert IronmapWarning  # the warnings above are IronmapWarnings, recorded per participant
