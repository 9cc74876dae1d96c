"""Loading multi-echo magnitudes: numbers preserved, and one-line errors naming the file."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ironmap.errors import InputError
from ironmap.io import load_bids_echoes, load_multiecho, validate_echo_times

TE = [0.004, 0.008, 0.012]
AFFINE = np.diag([0.5, 0.5, 1.0, 1.0])


def _decay(shape=(4, 4, 3), te=TE, r2=30.0, s0=1000.0) -> np.ndarray:
    return (s0 * np.exp(-r2 * np.asarray(te)) * np.ones((*shape, 1))).astype(np.float32)


def _save4d(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _bids(tmp_path, te=TE, *, data=None, affine=AFFINE, part="mag", sidecars=True):
    data = _decay(te=te) if data is None else data
    files = []
    for n in range(len(te)):
        f = tmp_path / f"sub-01_echo-{n + 1}_part-{part}_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image(data[..., n], affine), f)
        if sidecars:
            (tmp_path / f.name.replace(".nii.gz", ".json")).write_text(
                json.dumps({"EchoTime": te[n]})
            )
        files.append(f)
    return files


def _one_line(err: pytest.ExceptionInfo, name: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert name in msg
    return msg


def test_4d_loads_data_affine_and_echo_times(tmp_path):
    data = _decay()
    img = load_multiecho(_save4d(tmp_path / "mag.nii.gz", data), TE)
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_array_equal(img.affine, AFFINE)
    np.testing.assert_array_equal(img.echo_times_s, TE)
    assert img.data.dtype == np.float32


def test_milliseconds_are_converted(tmp_path):
    img = load_multiecho(_save4d(tmp_path / "mag.nii.gz", _decay()), [4, 8, 12], te_unit="ms")
    np.testing.assert_allclose(img.echo_times_s, TE, rtol=1e-15)


def test_integer_data_become_float32(tmp_path):
    data = np.round(_decay()).astype(np.int16)
    img = load_multiecho(_save4d(tmp_path / "mag.nii.gz", data), TE)
    assert img.data.dtype == np.float32
    np.testing.assert_array_equal(img.data, data)


def test_bids_echoes_sorted_by_echo_time(tmp_path):
    files = _bids(tmp_path)
    img = load_bids_echoes(files[::-1])
    np.testing.assert_array_equal(img.echo_times_s, TE)
    np.testing.assert_array_equal(img.data, _decay())
    assert [f.name for f in img.sources] == [f.name for f in files]


@pytest.mark.parametrize(
    ("te", "unit", "message"),
    [
        ([4, 8, 12], "s", "look like milliseconds; pass --te-unit ms"),
        ([0.004, 0.008], "s", "3 echo volumes but 2 echo times"),
        ([0.004, 0.004, 0.012], "s", "duplicate echo time 0.004 s"),
        ([0.008, 0.004, 0.012], "s", "are not increasing"),
        ([0.004, -0.008, 0.012], "s", "must be positive"),
        ([0.004, 0.8, 0.9], "s", "implausibly long"),
        ([4, 8, 12], "min", "--te-unit must be 's' or 'ms'"),
    ],
)
def test_bad_echo_times_for_4d_input(tmp_path, te, unit, message):
    path = _save4d(tmp_path / "mag.nii.gz", _decay())
    with pytest.raises(InputError, match=message) as err:
        load_multiecho(path, te, te_unit=unit)
    if unit != "min":
        _one_line(err, "mag.nii.gz")


def test_missing_unreadable_and_3d_files(tmp_path):
    with pytest.raises(InputError, match="No such file") as err:
        load_multiecho(tmp_path / "nope.nii.gz", TE)
    _one_line(err, "nope.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read as NIfTI") as err:
        load_multiecho(junk, TE)
    _one_line(err, "junk.nii.gz")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.float32), AFFINE), flat)
    with pytest.raises(InputError, match=r"expected a 4D image .* use --bids-echoes") as err:
        load_multiecho(flat, TE)
    _one_line(err, "flat.nii.gz")


def test_all_nan_data_are_refused(tmp_path):
    path = _save4d(tmp_path / "nan.nii.gz", np.full((4, 4, 3, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="no finite values") as err:
        load_multiecho(path, TE)
    _one_line(err, "nan.nii.gz")


def test_single_echo_is_refused(tmp_path):
    path = _save4d(tmp_path / "one.nii.gz", _decay(te=[0.004]))
    with pytest.raises(InputError, match="at least 2 echoes"):
        load_multiecho(path, [0.004])


def test_bids_missing_sidecar_and_key(tmp_path):
    files = _bids(tmp_path, sidecars=False)
    with pytest.raises(InputError, match=r"No such file; every echo needs a JSON sidecar") as err:
        load_bids_echoes(files)
    _one_line(err, "sub-01_echo-1_part-mag_MEGRE.json")
    for f in files:
        (tmp_path / f.name.replace(".nii.gz", ".json")).write_text('{"RepetitionTime": 0.03}')
    with pytest.raises(InputError, match="no 'EchoTime' key; add EchoTime in seconds") as err:
        load_bids_echoes(files)
    _one_line(err, "sub-01_echo-1_part-mag_MEGRE.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"EchoTime": "4 ms"}', "must be a number in seconds"),
        ('{"EchoTime": [0.004]}', "must be a number in seconds"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bids_bad_sidecar_values(tmp_path, content, message):
    files = _bids(tmp_path)
    (tmp_path / files[1].name.replace(".nii.gz", ".json")).write_text(content)
    with pytest.raises(InputError, match=message) as err:
        load_bids_echoes(files)
    _one_line(err, "echo-2")


def test_bids_echo_time_given_as_a_numeric_string(tmp_path):
    """bids-examples/qmri_megre writes "EchoTime": "0.02"; the number is unambiguous."""
    files = _bids(tmp_path)
    (tmp_path / files[1].name.replace(".nii.gz", ".json")).write_text('{"EchoTime": "0.008"}')
    np.testing.assert_array_equal(load_bids_echoes(files).echo_times_s, TE)


def test_bids_ms_and_duplicate_echo_times(tmp_path):
    with pytest.raises(InputError, match=r"look like milliseconds; BIDS EchoTime is in seconds"):
        load_bids_echoes(_bids(tmp_path, te=[4.0, 8.0, 12.0]))
    dup = tmp_path / "dup"
    dup.mkdir()
    with pytest.raises(InputError, match=r"duplicate echo time 0\.008 s"):
        load_bids_echoes(_bids(dup, te=[0.004, 0.008, 0.008]))


def test_bids_grids_must_match(tmp_path):
    files = _bids(tmp_path)
    shifted = AFFINE.copy()
    shifted[0, 3] = 2.0
    nib.save(nib.Nifti1Image(_decay()[..., 2], shifted), files[2])
    with pytest.raises(InputError, match=r"differs from sub-01_echo-1.*share one grid") as err:
        load_bids_echoes(files)
    _one_line(err, "echo-3")


def test_bids_phase_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="phase image; R2\\* needs magnitudes, pass the part-mag"):
        load_bids_echoes(_bids(tmp_path, part="phase"))


def test_validate_returns_float_seconds():
    te = validate_echo_times((1e-3, 2e-3), n_volumes=2, source="x")
    assert te.dtype == np.float64
    assert te.tolist() == [1e-3, 2e-3]
