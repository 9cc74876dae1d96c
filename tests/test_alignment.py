"""Segmentation-to-image alignment check: aligned dsegs pass, displaced or flipped ones are
warned about or refused, with the estimated displacement (one simulated subject)."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.errors import InputError, IronmapWarning
from ironmap.io import MultiEchoImage, SessionInputs
from ironmap.regions import region_codes
from ironmap.regions.catalog import LABEL_NAMES
from ironmap.segmentation.alignment import (
    FLIP_SCORE,
    Alignment,
    check_alignment,
    measure_alignment,
)
from ironmap.segmentation.strategies import UserDseg
from ironmap.simulate import SITES, draw_cohort, generate_subject

CODES = region_codes(LABEL_NAMES)


@pytest.fixture(scope="module")
def subject():
    """A simulated participant: 1 mm dseg, 9-echo GRE at 2 mm (amsterdam)."""
    person = draw_cohort(n_hc=0, n_ms=1, seed=5, sites=(SITES[1],))[0]
    data = generate_subject(person)
    assert data.magnitude.shape[:3] == (72, 88, 72)
    return data


def _moved(affine: np.ndarray, shift_mm) -> np.ndarray:
    moved = affine.copy()
    moved[:3, 3] += shift_mm
    return moved


def _measure(subject, *, labels=None, shift_mm=(0.0, 0.0, 0.0)) -> Alignment:
    labels = subject.anatomy.labels if labels is None else labels
    seg_affine = _moved(subject.anatomy.affine, shift_mm)
    return measure_alignment(labels, seg_affine, CODES, subject.magnitude, subject.affine)


def _user_dseg(tmp_path, subject, *, shift_mm=(0.0, 0.0, 0.0), labels=None):
    """UserDseg of the subject's dseg (affine moved by ``shift_mm``) and the GRE image."""
    dseg = tmp_path / "sub-01_dseg.nii"
    labels = subject.anatomy.labels if labels is None else labels
    nib.save(nib.Nifti1Image(labels, _moved(subject.anatomy.affine, shift_mm)), dseg)
    table = pd.DataFrame({"index": list(LABEL_NAMES), "name": list(LABEL_NAMES.values())})
    table.to_csv(tmp_path / "sub-01_dseg.tsv", sep="\t", index=False)
    inputs = SessionInputs("01", None, (), dseg=dseg, dseg_tsv=tmp_path / "sub-01_dseg.tsv")
    image = MultiEchoImage(
        subject.magnitude, subject.affine, nib.Nifti1Header(), np.array([0.003, 0.01]), ()
    )
    return UserDseg(inputs), image, dseg


def test_aligned_dseg_on_1mm_grid_passes_without_warning(tmp_path, subject):
    strategy, image, _ = _user_dseg(tmp_path, subject)
    mask = strategy.fit_mask(image)  # filterwarnings=error: any warning fails
    assert mask.any()
    qc = strategy.segment(image, fit=None).qc
    assert qc["alignment"] == "ok"
    assert set(qc) == {
        "alignment",
        "alignment_score",
        "alignment_shift_mm",
        "alignment_flip_score",
    }
    assert qc["alignment_score"] < 0.05
    assert qc["alignment_shift_mm"] < 0.5
    assert qc["alignment_flip_score"] < 0  # mirroring the labels makes the fit worse


def test_30_mm_shift_is_refused_in_one_line_naming_the_dseg(tmp_path, subject):
    strategy, image, dseg = _user_dseg(tmp_path, subject, shift_mm=(0.0, 0.0, 30.0))
    with pytest.raises(InputError) as err:
        strategy.fit_mask(image)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{dseg}: does not fit the GRE: it appears displaced by ")
    assert re.search(
        r"displaced by (29\.[5-9]|30\.[0-5]) mm \(x [+-]0\.\d, y [+-]0\.\d, z \+", message
    )
    assert "check that its affine maps to the same scanner space as the GRE" in message
    result = _measure(subject, shift_mm=(0.0, 0.0, 30.0))
    assert result.outcome == "misaligned"
    np.testing.assert_allclose(result.shift_mm, [0.0, 0.0, 30.0], atol=1.0)  # half a voxel
    assert result.score > 3


@pytest.mark.parametrize(
    ("shift_mm", "outcome"),
    [((0.0, -6.0, 0.0), "misaligned"), ((3.0, 0.0, -3.0), "doubtful")],
)
def test_6_and_4_mm_shifts_are_flagged_with_their_direction(subject, shift_mm, outcome):
    result = _measure(subject, shift_mm=shift_mm)
    assert result.outcome == outcome
    np.testing.assert_allclose(result.shift_mm, shift_mm, atol=1.0)  # within half a voxel
    assert result.qc()["alignment_shift_mm"] == pytest.approx(np.linalg.norm(shift_mm), abs=1)
    seg_affine = _moved(subject.anatomy.affine, shift_mm)
    args = (subject.anatomy.labels, seg_affine, CODES, subject.magnitude, subject.affine)
    if outcome == "misaligned":
        with pytest.raises(InputError, match=r"seg\.nii: does not fit the GRE"):
            check_alignment(*args, source_name="seg.nii")
    else:
        with pytest.warns(IronmapWarning, match=r"seg\.nii: may not fit the GRE") as caught:
            assert check_alignment(*args, source_name="seg.nii").outcome == "doubtful"
        assert len(caught) == 1


def test_left_right_flip_is_flagged_and_recorded(tmp_path, subject):
    aligned = _measure(subject)
    assert aligned.flip_score < 0  # the mirror fits worse when the dseg is right
    flipped = np.ascontiguousarray(subject.anatomy.labels[::-1])
    result = _measure(subject, labels=flipped)
    assert result.flipped
    assert result.flip_score >= FLIP_SCORE
    assert result.outcome == "doubtful"
    assert result.shift_norm_mm < 1.0  # mirrored across the midline, not displaced
    strategy, image, dseg = _user_dseg(tmp_path, subject, labels=flipped)
    with pytest.warns(IronmapWarning) as caught:
        strategy.fit_mask(image)
    assert [str(w.message).startswith(f"{dseg}: may not fit the GRE") for w in caught] == [True]
    assert "and flipped left-right (flip score 0." in str(caught[0].message)
    qc = strategy.segment(image, fit=None).qc
    assert qc["alignment"] == "doubtful"
    assert qc["alignment_flip_score"] == pytest.approx(result.flip_score, abs=1e-3)


def test_dseg_on_the_gre_grid_passes(subject):
    """A dseg already on the 2 mm GRE grid (every other 1 mm voxel) fits as well."""
    labels = subject.anatomy.labels[::2, ::2, ::2]
    seg_affine = subject.anatomy.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    result = measure_alignment(labels, seg_affine, CODES, subject.magnitude, subject.affine)
    assert result.outcome == "ok"
    assert result.shift_norm_mm < 1.0  # the 0.5 mm offset of the grids, within a voxel


def test_gre_finer_than_2_mm_is_checked_on_a_subsampled_grid(subject):
    """A 1 mm GRE (from the true R2* map) is checked on every other voxel, just as well."""
    rng = np.random.default_rng(0)
    te = np.array([0.004, 0.03])
    r2 = subject.r2star[..., None]
    gre = 1000.0 * subject.anatomy.head[..., None] * np.exp(-r2 * te)
    gre = np.abs(gre + rng.normal(scale=10.0, size=gre.shape)).astype(np.float32)
    labels, affine = subject.anatomy.labels, subject.anatomy.affine
    aligned = measure_alignment(labels, affine, CODES, gre, affine)
    assert aligned.outcome == "ok"
    assert aligned.shift_norm_mm < 1.0
    moved = measure_alignment(labels, _moved(affine, (6.0, 0.0, 0.0)), CODES, gre, affine)
    assert moved.outcome == "misaligned"
    np.testing.assert_allclose(moved.shift_mm, [6.0, 0.0, 0.0], atol=1.0)


def test_image_without_contrast_is_not_refused():
    labels = np.zeros((20, 20, 20), np.int16)
    labels[5:15, 5:15, 5:15] = 2
    flat = np.full((10, 10, 10, 3), 100.0, np.float32)
    result = measure_alignment(labels, np.eye(4), CODES, flat, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert result.outcome == "ok"
    assert result.score == 0.0


# -- a segmenter's labels: motion-free ones pass, shifted ones are still caught ------------------


@pytest.fixture(scope="module")
def segmenter_dsegs():
    """Four motion-free dsegs as a segmenter draws them (``simulate.segmenter``: PV blur 2 mm,
    smooth displacement RMS 1 mm, labels grown/shrunk 1 mm, boundary jitter; ``coarse``: blur
    3 mm, displacement 1.5 mm, as in ``benchmarks/alignment_false_alarms.py``) from two seeded
    participants' true labels, each with its GRE."""
    from ironmap.simulate.segmenter import segmenter_labels

    coarse = {"blur_fwhm_mm": 3.0, "displacement_rms_mm": 1.5}
    people = draw_cohort(n_hc=3, n_ms=3, seed=7)
    out = []
    for index, draws in ((2, ((2, {}), (2, coarse))), (3, ((0, {}), (1, {})))):
        data = generate_subject(people[index])
        for draw, options in draws:
            rng = np.random.default_rng([7, index, draw])
            labels = segmenter_labels(data.anatomy.labels, data.anatomy.affine, rng, **options)
            out.append((data, labels))
    return out


def test_segmenter_labels_are_as_far_from_the_truth_as_a_real_segmenter(segmenter_dsegs):
    """Deep grey-matter Dice against the truth 0.7-0.9 (automated vs manual segmentations)."""
    for data, labels in segmenter_dsegs:
        truth = data.anatomy.labels
        dice = [
            2 * np.sum((labels == c) & (truth == c)) / (np.sum(labels == c) + np.sum(truth == c))
            for c in (10, 49, 11, 50, 12, 51, 13, 52)
        ]
        assert 0.7 < np.median(dice) < 0.9


def test_motion_free_segmenter_dsegs_raise_no_false_alarm(segmenter_dsegs):
    """Goal <= 2 % false alarms: none of these (the coarse one has a flip score of 0.04 and was
    warned about as flipped with the former threshold 0.03)."""
    results = [
        measure_alignment(labels, data.anatomy.affine, CODES, data.magnitude, data.affine)
        for data, labels in segmenter_dsegs
    ]
    assert [r.outcome for r in results] == ["ok"] * len(results)
    assert max(r.shift_norm_mm for r in results) < 1.0
    assert max(r.flip_score for r in results) < FLIP_SCORE


def test_6_mm_shift_of_a_segmenter_dseg_is_refused_and_4_mm_caught(segmenter_dsegs):
    rng = np.random.default_rng(6)
    for data, labels in segmenter_dsegs:
        for distance, outcomes in ((6.0, {"misaligned"}), (4.0, {"doubtful", "misaligned"})):
            direction = rng.normal(size=3)
            shift = distance * direction / np.linalg.norm(direction)
            result = measure_alignment(
                labels, _moved(data.anatomy.affine, shift), CODES, data.magnitude, data.affine
            )
            assert result.outcome in outcomes
            np.testing.assert_allclose(result.shift_mm, shift, atol=1.5)
