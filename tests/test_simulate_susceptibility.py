"""The simulator's susceptibility physics (issue 27): sources -> dipole field -> signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ironmap.regions.catalog import label_code
from ironmap.simulate import draw_cohort, generate_subject, truth_summary
from ironmap.simulate.anatomy import Anatomy
from ironmap.simulate.lesions import RIM_CHI_PPM, lesion_rim_shells
from ironmap.simulate.susceptibility import (
    DEEP_GM_CHI_AT_45_PPM,
    R2STAR_IRON_FREE,
    SusceptibilityTruth,
    field_hz,
    tissue_chi,
)
from ironmap.simulate.tissue import TISSUES
from ironmap.susceptibility.dipole import hz_per_ppm

SHAPE = (64, 64, 64)


def _sphere(radius: float, centre=(32, 32, 32)) -> np.ndarray:
    g = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return sum((g[i] - centre[i]) ** 2 for i in range(3)) <= radius**2


def _truth(chi: np.ndarray) -> tuple[SusceptibilityTruth, Anatomy]:
    none = np.zeros(SHAPE, dtype=bool)
    labels = np.ones(SHAPE, dtype=np.int16)
    anatomy = Anatomy(labels=labels, head=~none, lesions=none, affine=np.eye(4))
    truth = SusceptibilityTruth(
        chi_ppm=chi.astype(np.float32),
        air=none,
        cavities=none,
        veins=np.zeros(SHAPE, np.float32),
        central_vein=np.zeros(0, bool),
    )
    return truth, anatomy


def test_a_closed_rim_shell_has_no_field_in_its_cavity_and_none_on_average():
    """The field of a uniformly magnetised spherical shell is zero in its cavity (and averages
    to ~0 over the shell): a rim is a dipole pattern, not the old uniform +3 Hz offset."""
    lesion = _sphere(8.0)
    shells = lesion_rim_shells(
        lesion,
        np.eye(4),
        np.random.default_rng(0),
        probability=1.0,
        thickness_mm=(1.5, 1.5),
        coverage=(1.0, 1.0),
        chi_ppm=(0.09, 0.09),
    )
    truth, anatomy = _truth(shells.chi_ppm)
    field = field_hz(truth, anatomy, shim=False)
    far = field[2:6, 2:6, 2:6].mean()  # the reference far from the shell
    cavity = _sphere(5.0)
    rim = shells.occupancy >= 0.5
    scale = 0.09 * hz_per_ppm(3.0)  # 11.5 Hz: chi of the rim in Hz
    assert abs(field[cavity].mean() - far) < 0.03 * scale
    assert abs(field[cavity] - far).max() < 0.1 * scale  # no structure inside either
    assert abs(field[rim].mean() - far) < 0.1 * scale
    assert np.ptp(field[rim]) > 0.3 * scale  # but a dipole pattern across the shell


def test_rim_shells_have_the_drawn_thickness_coverage_and_chi():
    lesion = _sphere(8.0)
    shells = lesion_rim_shells(
        lesion,
        np.eye(4),
        np.random.default_rng(3),
        probability=1.0,
        thickness_mm=(1.0, 1.0),
        coverage=(0.7, 0.7),
        chi_ppm=(0.05, 0.05),
    )
    (record,) = shells.records
    assert record["rim"]
    assert record["rim_coverage"] == 0.7
    assert record["rim_coverage_measured"] == pytest.approx(0.7, abs=0.06)
    # volume of a 1 mm shell on 70 % of a sphere of radius ~8.5 mm (voxel-edge surface)
    volume = float(shells.occupancy.sum())
    assert volume == pytest.approx(0.7 * 4 * np.pi * 8.0**2 * 1.0, rel=0.2)
    assert shells.chi_ppm.max() == pytest.approx(0.05, rel=1e-6)
    assert not shells.occupancy[~lesion].any()  # inside the lesion's edge
    assert not shells.occupancy[_sphere(6.0)].any()
    assert RIM_CHI_PPM == (0.03, 0.09)


def test_deep_grey_matter_chi_follows_its_iron():
    """chi = literature value at the age-45 R2*, proportional to R2* above the iron-free one."""
    pallidum, wm = label_code("pallidum", "left"), label_code("cerebral_wm", "left")
    labels = np.array([[[pallidum, pallidum, wm]]], dtype=np.int16)
    r45 = float(TISSUES["pallidum"].age(45.0))
    excess = r45 - R2STAR_IRON_FREE
    r2 = np.array([[[r45, R2STAR_IRON_FREE + 1.2 * excess, 21.0]]], dtype=np.float32)
    chi = tissue_chi(labels, r2, np.zeros(labels.shape, bool))
    target = DEEP_GM_CHI_AT_45_PPM["pallidum"]
    np.testing.assert_allclose(chi.ravel(), [target, 1.2 * target, -0.03], rtol=1e-5)


@pytest.fixture(scope="module")
def rim_subject():
    """An MS subject with rim lesions (640 rim voxels at 1 mm, 2 mm voxels), with phase."""
    subject = draw_cohort(n_hc=0, n_ms=8, seed=11)[1]
    data = generate_subject(subject, with_phase=True)
    assert data.anatomy.lesion_rims.sum() > 150
    return subject, data


def test_simulated_phase_of_rims_is_not_a_uniform_offset(rim_subject):
    """Measured on the acquisition: the echo-difference field in the rim voxels, less that in
    the lesion voxels just inside them, was +3 Hz x rim share (a planted offset); the dipole
    field of a +0.03..0.09 ppm shell gives about 0 on average."""
    subject, data = rim_subject
    f = subject.site.protocol.voxel_mm
    te = subject.site.protocol.echo_times_s
    crop = tuple(slice(0, n * k) for n, k in zip(data.magnitude.shape[:3], f, strict=True))

    def down(x):
        x = x[crop].astype(np.float64)
        s = data.magnitude.shape[:3]
        return x.reshape(s[0], f[0], s[1], f[1], s[2], f[2]).mean(axis=(1, 3, 5))

    rim = down(data.anatomy.lesion_rims) >= 0.5
    inner = (down(data.anatomy.lesions) >= 0.99) & ~rim
    z = np.exp(1j * (data.phase[..., 1] - data.phase[..., 0]))
    field = np.angle(z) / (2 * np.pi * (te[1] - te[0]))
    # the shim's harmonic background (second order, signal.shim_field) is removed by a
    # least-squares quadratic over the lesions' neighbourhood
    region = ndimage.binary_dilation(down(data.anatomy.lesions) > 0, iterations=4)
    region &= np.isfinite(field)
    idx = np.argwhere(region).astype(np.float64)
    x, y, w = (idx - idx.mean(axis=0)).T / 10.0
    design = np.stack([np.ones_like(x), x, y, w, x * y, y * w, x * w, x * x, y * y, w * w], 1)
    coef = np.linalg.lstsq(design, field[region], rcond=None)[0]
    field = field.copy()
    field[region] -= design @ coef
    near = ndimage.binary_dilation(rim, iterations=2) & inner
    contrast = field[rim].mean() - field[near].mean()
    assert abs(contrast) < 0.5  # Hz (0.35 here); the uniform +3 Hz rim offset gave +0.60
    assert data.field_hz is not None


def test_truth_records_region_chi_and_rim_truth(rim_subject):
    subject, data = rim_subject
    truth = truth_summary(subject, data)
    pallidum = truth["regions"]["pallidum"]["both"]
    iron = (pallidum["r2star_mean"] - R2STAR_IRON_FREE) / (
        float(TISSUES["pallidum"].age(45.0)) - R2STAR_IRON_FREE
    )
    assert pallidum["chi_mean"] == pytest.approx(
        DEEP_GM_CHI_AT_45_PPM["pallidum"] * iron, rel=0.02
    )
    assert truth["regions"]["nawm"]["both"]["chi_mean"] == pytest.approx(-0.03, abs=0.01)
    rims = [lesion for lesion in truth["lesions"] if lesion["rim"]]
    assert rims
    for lesion in rims:
        assert 0.03 <= lesion["rim_chi_ppm"] <= 0.09
        assert 0.5 <= lesion["rim_thickness_mm"] <= 1.5
        assert 0.65 <= lesion["rim_coverage"] <= 1.0
        assert lesion["chi_rim_median"] > lesion["chi_core_median"]
    assert all("central_vein" in lesion for lesion in truth["lesions"])


def test_air_cavities_make_a_background_field_outside_them(rim_subject):
    _, data = rim_subject
    brain = data.anatomy.labels > 0
    cavities = data.susceptibility.cavities
    assert cavities.sum() > 1000
    assert not (cavities & brain).any()
    # the orbitofrontal brain near the frontal sinus sees tens of Hz; the field is shimmed
    assert np.percentile(np.abs(data.field_hz[brain]), 99.9) > 20.0
    assert abs(float(np.median(data.field_hz[brain]))) < 5.0
