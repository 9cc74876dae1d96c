"""Writing maps: atomic, reproducible bytes, no silent overwrite, sidecars per CONVENTIONS."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ironmap.errors import InputError
from ironmap.fitting import DecayModel
from ironmap.io import write_decay_maps, write_nifti

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def test_write_nifti_keeps_nan_and_float32(tmp_path):
    data = np.array([[[1.5, np.nan]]])
    path = write_nifti(data, AFFINE, tmp_path / "m.nii.gz", sidecar={"Units": "1/s"})
    img = nib.load(path)
    out = img.get_fdata()
    assert img.get_data_dtype() == np.float32
    assert out[0, 0, 0] == 1.5
    assert np.isnan(out[0, 0, 1])
    np.testing.assert_array_equal(img.affine, AFFINE)
    assert json.loads((tmp_path / "m.json").read_text()) == {"Units": "1/s"}


def test_outputs_are_readable_by_others(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = write_nifti(np.zeros((2, 2, 2)), AFFINE, tmp_path / "m.nii.gz", sidecar={})
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_same_image_gives_identical_bytes(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    a = write_nifti(data, AFFINE, tmp_path / "a.nii.gz", sidecar={})
    (tmp_path / "b").mkdir()
    b = write_nifti(data, AFFINE, tmp_path / "b" / "a.nii.gz", sidecar={})
    assert a.read_bytes() == b.read_bytes()


def test_no_overwrite_without_force_and_no_temp_files(tmp_path):
    path = write_nifti(np.zeros((2, 2, 2)), AFFINE, tmp_path / "m.nii.gz", sidecar={})
    with pytest.raises(InputError, match=r"m.nii.gz exists; pass --force to overwrite"):
        write_nifti(np.ones((2, 2, 2)), AFFINE, path, sidecar={})
    assert nib.load(path).get_fdata().max() == 0.0
    write_nifti(np.ones((2, 2, 2)), AFFINE, path, sidecar={}, force=True)
    assert nib.load(path).get_fdata().min() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.nii.gz"]


def test_decay_maps_names_units_and_values(tmp_path):
    te = np.array([0.005, 0.010, 0.015, 0.020])
    r2 = np.array([[[20.0, 50.0]], [[35.0, 80.0]]])
    data = 500.0 * np.exp(-r2[..., None] * te)
    data[0, 0, 1, 2] = 0.0  # one failed voxel
    with pytest.warns(UserWarning, match="1 of 4 voxels"):
        fit = DecayModel(te, sigma=0.01).fit(data)
    written = write_decay_maps(
        fit, AFFINE, tmp_path / "sub-01", echo_times_s=te, sources=["in.nii.gz"]
    )
    names = sorted(p.name for p in written)
    assert names == [
        "sub-01_R2starmap.nii.gz",
        "sub-01_S0map.nii.gz",
        "sub-01_T2starmap.nii.gz",
        "sub-01_desc-failed_mask.nii.gz",
        "sub-01_desc-sd_R2starmap.nii.gz",
    ]
    r2map = nib.load(tmp_path / "sub-01_R2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(r2map[[0, 1, 1], 0, [0, 0, 1]], [20.0, 35.0, 80.0], rtol=1e-6)
    assert np.isnan(r2map[0, 0, 1])
    t2 = nib.load(tmp_path / "sub-01_T2starmap.nii.gz").get_fdata()
    assert t2[1, 0, 1] == pytest.approx(1 / 80.0, rel=1e-6)
    failed = nib.load(tmp_path / "sub-01_desc-failed_mask.nii.gz").get_fdata()
    assert failed.sum() == 1
    assert failed[0, 0, 1] == 1
    side = json.loads((tmp_path / "sub-01_R2starmap.json").read_text())
    assert side["Units"] == "1/s"
    assert side["EchoTime"] == te.tolist()
    assert side["Sources"] == ["in.nii.gz"]
    assert side["NoiseSigma"] == 0.01
    assert side["EstimationAlgorithm"].startswith("ironmap auto: ")
    assert json.loads((tmp_path / "sub-01_T2starmap.json").read_text())["Units"] == "s"
    with pytest.raises(InputError, match="exists; pass --force"):
        write_decay_maps(fit, AFFINE, tmp_path / "sub-01", echo_times_s=te, sources=[])


def test_values_beyond_float32_are_inf_with_our_warning_not_numpys(tmp_path):
    """A value no float32 holds (S0 of an echo spike of 1e30) is stored as +/-inf, counted in
    one IronmapWarning naming the file: never numpy's 'overflow encountered in cast'."""
    from ironmap.errors import IronmapWarning

    data = np.array([[[1.0, -1e39], [1e300, 3.0e38]]])
    with pytest.warns(IronmapWarning, match=r"big_S0map\.nii\.gz: 2 value\(s\) beyond") as got:
        write_nifti(data, np.eye(4), tmp_path / "big_S0map.nii.gz", sidecar={})
    assert [w.category for w in got] == [IronmapWarning]
    stored = nib.load(tmp_path / "big_S0map.nii.gz").get_fdata()
    np.testing.assert_array_equal(stored.ravel(), [1.0, -np.inf, np.inf, np.float32(3.0e38)])


def _spike_fit(tmp_path, capsys, *options) -> str:
    """``ironmap fit`` of a decay with one corrupt first echo (1e30); its standard error."""
    from ironmap.cli import main

    te = np.array([0.004, 0.008, 0.012])
    data = 1000.0 * np.exp(-30.0 * te) * np.ones((6, 6, 4, 1))
    data[2, 2, 2, 0] = 1e30  # a corrupt first echo
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), tmp_path / "mag.nii.gz")
    argv = ["fit", str(tmp_path / "mag.nii.gz"), "--te", *map(str, te), "-o", str(tmp_path / "s")]
    assert main([*argv, *options]) == 0
    return capsys.readouterr().err


def test_fit_of_an_echo_spike_prints_no_numpy_cast_warning(tmp_path, capsys):
    """issue 28: 'ironmap: warning: overflow encountered in cast' reached users of ``fit``
    (the float32 cast of an S0 map beyond 3.4e38)."""
    err = _spike_fit(tmp_path, capsys, "--sigma", "1", "--method", "loglin")
    assert "encountered" not in err
    assert "RuntimeWarning" not in err
    assert "s_S0map.nii.gz: 1 value(s) beyond the float32 range" in err
    s0 = nib.load(tmp_path / "s_S0map.nii.gz").get_fdata()
    assert s0[2, 2, 2] == np.inf
    np.testing.assert_allclose(s0[0, 0, 0], 1000.0, rtol=1e-4)


def test_fit_with_estimated_sigma_of_an_echo_spike_prints_no_numpy_warning(tmp_path, capsys):
    err = _spike_fit(tmp_path, capsys)
    assert "encountered" not in err
