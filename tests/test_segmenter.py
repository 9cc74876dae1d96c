"""``simulate.segmenter``: a segmenter's labels from the truth, each degradation as planted."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ironmap.simulate.segmenter import segmenter_labels

OFF = {"blur_fwhm_mm": 0.0, "displacement_rms_mm": 0.0, "grow_shrink": False, "boundary_error": 0}


def _scene():
    """A ball (code 11, radius 8 voxels) in a block of white matter (2), 0 outside."""
    labels = np.zeros((40, 40, 40), np.int16)
    labels[4:36, 4:36, 4:36] = 2
    grid = np.indices(labels.shape) - 20.0
    ball = (grid**2).sum(axis=0) <= 64.0
    labels[ball] = 11
    return labels, ball


def test_nothing_planted_changes_nothing():
    labels, _ = _scene()
    out = segmenter_labels(labels, np.eye(4), np.random.default_rng(0), **OFF)
    np.testing.assert_array_equal(out, labels)


def test_grow_or_shrink_moves_the_boundary_by_exactly_one_voxel():
    """The ball grows (it pushes, the white matter yields) or shrinks (the reverse) by one
    voxel (6-neighbours), or stays (both push or both yield)."""
    labels, ball = _scene()
    seen = set()
    options = OFF | {"grow_shrink": True}
    for seed in range(12):
        out = segmenter_labels(labels, np.eye(4), np.random.default_rng(seed), **options)
        new = out == 11
        for name, expected in (
            ("grown", ndimage.binary_dilation(ball)),
            ("shrunk", ndimage.binary_erosion(ball)),
            ("kept", ball),
        ):
            if np.array_equal(new, expected):
                seen.add(name)
                break
        else:
            raise AssertionError(f"seed {seed}: the ball moved by other than one voxel")
    assert seen == {"grown", "shrunk", "kept"}


def test_partial_volume_blur_removes_a_one_voxel_sheet_and_keeps_a_ball():
    """FWHM 2 mm: the centre of a 1 mm sheet holds 44 % of it after the blur (less than the
    56 % of the tissue around), so the sheet vanishes; the ball keeps its volume within 3 %."""
    labels, ball = _scene()
    labels[10:30, 10:30, 30] = 5
    options = OFF | {"blur_fwhm_mm": 2.0}
    out = segmenter_labels(labels, np.eye(4), np.random.default_rng(0), **options)
    assert not np.any(out == 5)
    assert abs(np.sum(out == 11) / ball.sum() - 1) < 0.03


def test_boundary_errors_touch_only_boundary_voxels_at_the_planted_rate():
    labels, _ = _scene()
    out = segmenter_labels(
        labels, np.eye(4), np.random.default_rng(1), **OFF | {"boundary_error": 0.3}
    )
    boundary = np.zeros(labels.shape, bool)
    for axis in range(3):
        for step in (1, -1):
            boundary |= np.roll(labels, step, axis=axis) != labels
    changed = out != labels
    assert not np.any(changed & ~boundary)
    # A boundary voxel changes when its drawn neighbour (1 of 6) differs: 0.3 x that share.
    share = np.mean(
        [np.mean(np.roll(labels, s, axis=a)[boundary] != labels[boundary])
         for a in range(3) for s in (1, -1)]
    )  # fmt: skip
    assert abs(np.mean(changed[boundary]) - 0.3 * share) < 0.02
