"""Hostile inputs, one test per measured defect: each is a one-line InputError naming the file,
a bounded allocation, or a warning, never a traceback or a silently wrong number."""

from __future__ import annotations

import dataclasses
import gzip
import json
import struct
import tracemalloc

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cohort.tables import read_participants
from ironmap.errors import InputError, IronmapWarning
from ironmap.io import nifti
from ironmap.io.echoes import (
    load_bids_echoes,
    load_image,
    load_multiecho,
    load_volume,
    read_sidecar,
)
from ironmap.regions import label_fractions, read_label_table, region_codes, volumes

TE = [0.004, 0.008, 0.012]
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def _noisy_volume(path, shape=(16, 16, 16), seed=0):
    """A float32 image of random values (incompressible: truncation hits the data)."""
    data = np.random.default_rng(seed).uniform(1, 100, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def _bids(folder, te=TE, *, data=None, names=None, meta=None):
    """Per-echo magnitudes ``echo-1..n`` with sidecars ``{"EchoTime": te[n], **meta[n]}``."""
    data = np.full((4, 4, 3, len(te)), 100.0, np.float32) if data is None else data
    files = []
    for n, t in enumerate(te):
        name = names[n] if names else f"sub-01_echo-{n + 1}_part-mag_MEGRE"
        nib.save(nib.Nifti1Image(data[..., n], AFFINE), folder / f"{name}.nii.gz")
        side = {"EchoTime": t, **(meta[n] if meta else {})}
        (folder / f"{name}.json").write_text(json.dumps(side))
        files.append(folder / f"{name}.nii.gz")
    return files


# -- 1. tracebacks become one-line InputErrors naming the file --------------------------------


def test_truncated_nii_gz_names_the_file(tmp_path):
    """Before: EOFError from gzip (participant stage: 'internal error EOFError')."""
    path = _noisy_volume(tmp_path / "sub-01_dseg.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        load_volume(path)
    _one_line(err, path)
    noisy = np.random.default_rng(1).uniform(1, 100, (8, 8, 8, 3)).astype(np.float32)
    echo = _bids(tmp_path, data=noisy)[1]
    raw = echo.read_bytes()
    echo.write_bytes(raw[: len(raw) - 40])
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        load_bids_echoes(sorted(tmp_path.glob("*MEGRE.nii.gz")))
    _one_line(err, echo)


def test_corrupt_gzip_stream_names_the_file(tmp_path):
    """Before: zlib.error / BadGzipFile escaped load_volume."""
    path = _noisy_volume(tmp_path / "t1w.nii.gz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)  # zeros in the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        load_volume(path)
    _one_line(err, path)


def test_deeply_nested_json_sidecar_names_the_file(tmp_path):
    """Before: RecursionError from json.loads."""
    files = _bids(tmp_path)
    side = tmp_path / "sub-01_echo-2_part-mag_MEGRE.json"
    side.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply") as err:
        read_sidecar(files[1])
    _one_line(err, side)
    with pytest.raises(InputError, match="nested too deeply") as err:
        load_bids_echoes(files)
    _one_line(err, side)


HEADER = "participant_id\tage\tsex\tgroup\tphenotype\tdisease_duration\tedss\tsite\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty file"), ("\n\n", "empty file"), (HEADER, "no participants")],
)
def test_empty_participants_tsv_names_the_file(tmp_path, content, message):
    """Before: 0 bytes gave pandas' EmptyDataError; a header only 'no healthy controls'."""
    path = tmp_path / "participants.tsv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        read_participants(path)
    _one_line(err, path)


def test_memory_error_while_reading_names_the_file(tmp_path, monkeypatch):
    """Before: MemoryError escaped (participant stage: 'internal error MemoryError:')."""
    path = _noisy_volume(tmp_path / "mag.nii.gz")

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "_get_scaled", exhausted)
    with pytest.raises(InputError, match="not enough memory") as err:
        load_volume(path)
    _one_line(err, path)


# -- 2. never allocate from an unchecked header ---------------------------------------------------


def _claim_shape(path, shape):
    """Rewrite the header's dim field of an uncompressed image in place."""
    raw = bytearray(path.read_bytes())
    raw[40:56] = struct.pack("<8h", len(shape), *shape, *[1] * (7 - len(shape)))
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_1200_cubed_voxels_allocates_nothing(tmp_path, suffix):
    """Before: a 1.3 KB file claiming 1200^3 float32 voxels allocated gigabytes, then failed."""
    plain = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), AFFINE), plain)
    _claim_shape(plain, (1200, 1200, 1200))
    path = plain
    if suffix == ".nii.gz":
        path = tmp_path / "big.nii.gz"
        path.write_bytes(gzip.compress(plain.read_bytes()))
    assert path.stat().st_size < 1400
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"header claims 1200 x 1200 x 1200") as err:
            load_volume(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_line(err, path)
    assert peak < 20e6
    with pytest.raises(InputError, match="header claims"):
        load_image(path)


def test_voxel_count_bound(tmp_path, monkeypatch):
    path = tmp_path / "ok.nii"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), AFFINE), path)
    assert load_volume(path)[0].shape == (10, 10, 10)
    monkeypatch.setattr(nifti, "MAX_VOXELS", 999)
    with pytest.raises(InputError, match="1000 voxels, more than the 999") as err:
        load_volume(path)
    _one_line(err, path)


# -- 3. label codes: bounded memory, integers >= 0 ---------------------------------------------


def _seg(code: int, dtype=np.int32) -> np.ndarray:
    labels = np.zeros((8, 8, 8), dtype=dtype)
    labels[2:6, 2:6, 2:6] = 10
    labels[0, 0, 0] = code
    return labels


def test_label_2_pow_31_minus_1_is_counted_without_a_huge_lookup():
    """Before: np.zeros(2**31 + 1) in label_fractions and np.bincount in volumes (16 GiB)."""
    labels = _seg(2**31 - 1)
    tracemalloc.start()
    try:
        fractions = label_fractions(
            labels, AFFINE, (8, 8, 8), AFFINE, {"big": (2**31 - 1,), "thal": (10,)}
        )
        with pytest.warns(IronmapWarning, match="no cerebral cortex"):
            _, region_ml = volumes(labels, AFFINE, region_codes(None), participant_id="sub-01")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6
    assert fractions["big"].sum() == 1.0
    assert fractions["thal"].sum() == 64.0
    assert region_ml["thalamus/left"] == pytest.approx(64 / 1000)


@pytest.mark.parametrize(
    ("code", "dtype", "message"),
    [(10.5, np.float32, "not an integer"), (-3, np.int16, "negative label -3")],
)
def test_non_integer_and_negative_labels_are_refused(code, dtype, message):
    """Before: volumes truncated 10.5 to 10, label_fractions indexed from the end for -3."""
    labels = _seg(code, dtype)
    with pytest.raises(InputError, match=message) as err:
        label_fractions(labels, AFFINE, (8, 8, 8), AFFINE, {"thal": (10,)}, source_name="d.nii")
    _one_line(err, "d.nii")
    with pytest.raises(InputError, match=message) as err:
        volumes(
            labels, AFFINE, region_codes(None), participant_id="sub-01", labels_name="d.nii.gz"
        )
    _one_line(err, "d.nii.gz")


# -- 4. dseg.tsv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "10\tLeft-Thalamus\n10\tRight-Thalamus\n",
            "index 10 is listed twice: Left-Thalamus and Right-Thalamus",
        ),
        ("10.5\tLeft-Thalamus\n", "non-negative integers, got '10.5'"),
        ("-1\tLeft-Thalamus\n", "non-negative integers, got '-1'"),
        ("x\tLeft-Thalamus\n", "non-negative integers, got 'x'"),
        ("10\t\n", "index 10 has no name"),
        ("10\tn/a\n", "index 10 has no name"),
    ],
)
def test_label_table_duplicates_non_integers_and_empty_names(tmp_path, rows, message):
    """Before: the later duplicate won silently; 10.5 became 10; '' became 'nan'."""
    path = tmp_path / "sub-01_dseg.tsv"
    path.write_text("index\tname\n" + rows)
    with pytest.raises(InputError, match=message) as err:
        read_label_table(path)
    _one_line(err, path)


def test_label_table_with_bom_and_crlf_reads(tmp_path):
    path = tmp_path / "sub-01_dseg.tsv"
    path.write_bytes("\ufeffindex\tname\r\n10\tLeft-Thalamus\r\n49\tRight-Thalamus\r\n".encode())
    assert read_label_table(path) == {10: "Left-Thalamus", 49: "Right-Thalamus"}


# -- 5. whole-brain volumes need a whole-brain segmentation -------------------------------------


def _first_style() -> np.ndarray:
    labels = np.zeros((10, 10, 10), np.int16)
    labels[1:4, 1:4, 1:4] = 10  # 27 voxels of left thalamus
    labels[5:7, 5:7, 5:7] = 49  # 8 voxels of right thalamus
    return labels


def test_deep_gm_only_segmentation_has_no_icv_nbv_or_cortex():
    """Before: icv_ml = 0.035, cortical_gm_ml = 0, nbv = 1.0 written as real numbers."""
    with pytest.warns(IronmapWarning, match=r"first\.nii\.gz: no cerebral cortex") as record:
        subject, region_ml = volumes(
            _first_style(),
            AFFINE,
            region_codes(None),
            participant_id="s",
            labels_name="first.nii.gz",
        )
    assert len(record) == 1
    message = str(record[0].message)
    assert "icv_ml, brain_ml, cortical_gm_ml, nbv" in message
    assert "cerebral white matter" in message
    for column in ("icv_ml", "brain_ml", "cortical_gm_ml", "nbv"):
        assert np.isnan(subject[column]), column
    assert region_ml["thalamus/left"] == pytest.approx(0.027)
    assert region_ml["thalamus/both"] == pytest.approx(0.035)


def test_unknown_names_give_no_whole_brain_volumes(tmp_path):
    labels = _first_style()
    codes = region_codes({10: "Structure-A", 49: "Structure-B"})
    with pytest.warns(IronmapWarning, match="no cerebral cortex"):
        subject, _ = volumes(labels, AFFINE, codes, participant_id="s", labels_name="x.nii.gz")
    assert np.isnan(subject["icv_ml"])
    assert np.isnan(subject["nbv"])


def test_cortex_without_white_matter_keeps_cortical_volume_only():
    labels = _first_style()
    labels[8, :, :] = 3  # 100 voxels of left cortex
    with pytest.warns(IronmapWarning, match="no cerebral white matter") as record:
        subject, _ = volumes(labels, AFFINE, region_codes(None), participant_id="s")
    assert "cortex" not in str(record[0].message).split("no ")[1].split(";")[0]
    assert subject["cortical_gm_ml"] == pytest.approx(0.1)
    assert np.isnan(subject["icv_ml"])
    assert np.isnan(subject["nbv"])


# -- 6. a lesion mask larger than the brain -----------------------------------------------------


def _whole_brain() -> np.ndarray:
    labels = np.zeros((10, 10, 10), np.int16)
    labels[1:9, 1:9, 1:5] = 2  # 256 mL of WM (1 mL voxels)
    labels[1:9, 1:9, 5:9] = 3  # 256 mL of cortex
    return labels


def test_lesion_mask_of_all_ones_is_refused():
    """Before: lesion volume 3,649 mL > ICV, not flagged."""
    affine = np.diag([10.0, 10.0, 10.0, 1.0])  # 1 mL voxels
    ones = np.ones((20, 20, 20), np.uint8)  # 8,000 mL
    with pytest.raises(InputError, match=r"lesion volume 8000 mL exceeds the brain") as err:
        volumes(
            _whole_brain(),
            affine,
            region_codes(None),
            participant_id="s",
            lesion_mask=ones,
            lesion_affine=affine,
            lesion_name="sub-01_label-lesion_mask.nii.gz",
        )
    _one_line(err, "sub-01_label-lesion_mask.nii.gz")


@pytest.mark.parametrize(
    ("mask_shape", "mask_ml", "message"),
    [((4, 4, 4), 1.0, "every voxel of the mask is set"), ((30, 30, 30), 8.0, "above 2000 mL")],
)
def test_lesion_mask_checked_without_a_brain_volume(mask_shape, mask_ml, message):
    mask = np.ones(mask_shape, np.uint8)
    mask[0, 0, 0] = mask.size < 1000  # the big one: nearly all set, the small one: all set
    with (
        pytest.warns(IronmapWarning, match="no cerebral cortex"),
        pytest.raises(InputError, match=message) as err,
    ):
        volumes(
            _first_style(),
            AFFINE,
            region_codes(None),
            participant_id="s",
            lesion_mask=mask,
            lesion_affine=np.diag([mask_ml ** (1 / 3) * 10] * 3 + [1.0]),
            lesion_name="les.nii.gz",
        )
    _one_line(err, "les.nii.gz")


def test_plausible_lesion_mask_is_measured():
    affine = np.diag([10.0, 10.0, 10.0, 1.0])
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    subject, _ = volumes(
        _whole_brain(),
        affine,
        region_codes(None),
        participant_id="s",
        lesion_mask=mask,
        lesion_affine=affine,
    )
    assert subject["lesion_volume_ml"] == pytest.approx(8.0)
    assert subject["brain_ml"] == pytest.approx(512.0)


# -- 7. echo times contradicting EchoNumber or the echo entity ----------------------------------


def test_echo_entity_order_contradicting_echo_times_is_refused(tmp_path):
    """Before: silently re-sorted by EchoTime (echo-2 and echo-3 swapped)."""
    files = _bids(tmp_path, te=[0.004, 0.012, 0.008])
    with pytest.raises(
        InputError, match=r"echo-2.*EchoTime 0\.012.*echo-3.*EchoTime 0\.008"
    ) as err:
        load_bids_echoes(files)
    message = _one_line(err, files[1])
    assert str(files[2]) in message


def test_echo_number_contradicting_echo_times_is_refused(tmp_path):
    files = _bids(tmp_path, meta=[{"EchoNumber": 2}, {"EchoNumber": 1}, {"EchoNumber": 3}])
    pattern = r"EchoNumber 1, EchoTime 0\.008 s.*EchoNumber 2, EchoTime 0\.004 s"
    with pytest.raises(InputError, match=pattern) as err:
        load_bids_echoes(files)
    assert str(files[0]) in _one_line(err, files[1])


def test_consistent_echo_numbers_in_any_file_order_load(tmp_path):
    meta = [{"EchoNumber": n} for n in (1, 2, 3)]
    files = _bids(tmp_path, meta=meta)
    image = load_bids_echoes(files[::-1])
    np.testing.assert_array_equal(image.echo_times_s, TE)
    assert list(image.sources) == files


# -- 8. negative magnitudes (int16 wraparound) ----------------------------------------------------


def test_negative_magnitudes_warn_once_with_the_count_and_keep_the_numbers(tmp_path):
    """Before: silent."""
    data = np.full((4, 4, 3, 3), 1000, np.int16)
    data[0, :2, 0, 1] = -32000  # two wrapped voxels in echo 2
    files = _bids(tmp_path, data=data)
    with pytest.warns(IronmapWarning, match=r"2 negative magnitude") as record:
        image = load_bids_echoes(files)
    assert len(record) == 1
    assert str(files[1]) in str(record[0].message)
    assert "int16" in str(record[0].message)
    np.testing.assert_array_equal(image.data, data.astype(np.float32))
    four_d = tmp_path / "mag4d.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), four_d)
    with pytest.warns(IronmapWarning, match=r"mag4d\.nii\.gz: 2 negative magnitude"):
        image = load_multiecho(four_d, TE)
    np.testing.assert_array_equal(image.data, data.astype(np.float32))


def test_non_finite_magnitudes_are_kept_silently(tmp_path):
    data = np.full((4, 4, 3, 3), 100.0, np.float32)
    data[0, 0, 0, :] = np.nan
    data[1, 1, 1, 2] = np.inf
    image = load_bids_echoes(_bids(tmp_path, data=data))
    assert np.isnan(image.data[0, 0, 0]).all()
    assert np.isinf(image.data[1, 1, 1, 2])
    assert (image.data[2:] == 100.0).all()


# -- 9. the report with a handful of participants -------------------------------------------------


@pytest.fixture(scope="module")
def small_group(tmp_path_factory):
    """8 controls and 3 patients through the group stage (no report)."""
    from ironmap.workflows.group import GroupConfig, run_group
    from test_group import _write_cohort  # tests/ is on sys.path (rootdir conftest)

    root = tmp_path_factory.mktemp("small_group")
    bids, out = _write_cohort(root, n_hc=8, n_ms=3, seed=0)
    with pytest.warns(IronmapWarning):
        result = run_group(GroupConfig(bids, out, report=False, mixed=False))
    return result, out


def test_report_with_three_patients_of_equal_disease_duration(small_group):
    """Before: np.polyfit RankWarning (an exception under -W error) in the lesion figure."""
    from ironmap.report.html import write_report

    result, out = small_group
    subjects = result.subjects.copy()
    subjects.loc[subjects.group == "MS", "disease_duration"] = 5.0
    page = write_report(out / "r1.html", dataclasses.replace(result, subjects=subjects))
    text = page.read_text()
    assert "<img alt='lesion R2* against disease duration'" in text
    assert "No trend line: fewer than 3 patients with 2 or more distinct durations" in text


def test_report_says_what_could_not_be_estimated(small_group):
    """Before: no harmonisation -> UFuncTypeError; no labelled points -> legend warning."""
    from ironmap.report.html import write_report

    result, out = small_group
    empty = dataclasses.replace(
        result,
        harmonization=result.harmonization.iloc[:0],
        comparison=result.comparison.iloc[:0],
        age_model=result.age_model.iloc[:0],
        regions=result.regions.assign(r2star_harmonized=np.nan, r2star_corrected=np.nan),
        subjects=result.subjects.assign(analysed=False),
    )
    text = write_report(out / "r2.html", empty).read_text()
    assert "0 of 11 participants analysed" in text
    assert "No site harmonisation could be estimated" in text
    assert "No comparison could be made" in text
    assert "No age model could be fitted" in text
    assert "No participant was analysed" in text
    assert text.count("No harmonised R2*") == 1
    assert text.count("No age-corrected R2*") == 1


def test_participants_tsv_rejects_binary_and_duplicate_columns(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_bytes(b"\xff\xfe\x00garbage\x00\x9c")
    with pytest.raises(InputError, match="not UTF-8 text") as err:
        read_participants(path)
    _one_line(err, path)
    path.write_text("participant_id\tage\tage\nsub-01\t3\t4\n")
    with pytest.raises(InputError, match="column age appears twice") as err:
        read_participants(path)
    _one_line(err, path)


def test_participants_tsv_with_bom_and_crlf_reads(tmp_path):
    path = tmp_path / "participants.tsv"
    rows = [
        "participant_id\tage\tsex\tgroup\tphenotype\tdisease_duration\tedss\tsite",
        "sub-01\t40\tF\tHC\tn/a\tn/a\tn/a\ta",
    ]
    path.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode())
    table = read_participants(path)
    assert table.participant_id.tolist() == ["sub-01"]
    assert table.site.tolist() == ["a"]
    assert table.age.tolist() == [40.0]
    assert isinstance(table, pd.DataFrame)


def test_empty_sessions_tsv_names_the_file(tmp_path):
    """Before: pandas' EmptyDataError from the baseline-session choice."""
    from ironmap.cohort.tables import baseline_sessions

    sessions = tmp_path / "sub-01" / "sub-01_sessions.tsv"
    sessions.parent.mkdir()
    sessions.write_bytes(b"")
    long = pd.DataFrame({"participant_id": ["sub-01", "sub-01"], "session": ["ses-1", "ses-2"]})
    with pytest.raises(InputError, match="empty file") as err:
        baseline_sessions(long, bids_dir=tmp_path)
    _one_line(err, sessions)
