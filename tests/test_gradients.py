"""Macroscopic field-gradient correction: closed forms, numerical integration, an air cavity's
dipole field (corrected or flagged), and the simulated frontal sinus (bias near the sinus
removed, nothing changed where the field is flat)."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from ironmap.errors import IronmapWarning
from ironmap.fitting import DecayModel
from ironmap.fitting.gradients import (
    field_map,
    fine_gradients,
    gradient_correction,
    gradient_decay,
)
from ironmap.simulate import generate_subject
from ironmap.simulate.cohort import draw_site_panel
from ironmap.simulate.susceptibility import field_hz

TE = np.array([0.005, 0.015, 0.025, 0.035, 0.045])


def test_decay_of_a_linear_field_is_the_sinc_of_its_gradient():
    g = 3.0  # Hz per voxel along z
    field = np.broadcast_to(g * np.arange(10.0), (4, 4, 10))
    decay = gradient_decay(field, TE)
    np.testing.assert_allclose(decay[1, 1, 5], np.abs(np.sinc(g * TE)), rtol=1e-12)


def test_sinc_equals_the_numerical_integral_over_the_voxel():
    g, te = 7.0, 0.04  # Hz across the voxel, s
    x = (np.arange(20000) + 0.5) / 20000 - 0.5
    numeric = abs(np.mean(np.exp(2j * np.pi * g * x * te)))
    assert numeric == pytest.approx(np.sinc(g * te), rel=1e-6)


def test_field_map_from_echo_phases():
    field = np.linspace(-45.0, 45.0, 60).reshape(3, 4, 5)  # within +-1/(2 dTE) = 50 Hz
    phase = np.angle(np.exp(2j * np.pi * field[..., None] * TE + 0.7j))  # wrapped, with offset
    got = field_map(np.ones_like(phase), phase, TE)
    np.testing.assert_allclose(got, field, atol=1e-9)


@pytest.mark.parametrize(("slope", "recoverable"), [(2.0, True), (8.0, True), (25.0, False)])
def test_correction_factor_makes_the_fit_exact_or_flags_the_voxel(slope, recoverable):
    te = np.arange(1, 41) * 0.001  # 1 ms spacing: fields up to +-500 Hz need no unwrapping
    field = np.broadcast_to(slope * (np.arange(30.0) - 14.5), (4, 4, 30)).copy()  # Hz/voxel, z
    mag = 100 * np.exp(-20 * te) * gradient_decay(field, te)
    phase = np.angle(np.exp(2j * np.pi * field[..., None] * te))
    factor, est, unreliable = gradient_correction(mag, phase, te)
    inner = (slice(None), slice(None), slice(6, -6))  # smoothing keeps linear fields inside
    np.testing.assert_allclose(est[inner], field[inner], atol=1e-6)
    assert unreliable[inner].all() != recoverable  # 25 Hz/voxel: sinc(1) = 0 at 40 ms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)  # boundary and flagged voxels
        fit = DecayModel(te, sigma=1e-6).fit(mag, decay_factor=factor)
        plain = DecayModel(te, sigma=1e-6).fit(mag)
    if recoverable:
        np.testing.assert_allclose(fit.r2star[inner], 20.0, rtol=1e-6)
        assert np.nanmin(plain.r2star[inner]) > 20.05  # uncorrected, dephasing reads as R2*
    else:
        assert np.isnan(fit.r2star[inner]).all()


TE_12 = np.arange(1, 13) * 0.003  # 3-36 ms: the field map aliases beyond +-167 Hz


def test_fourth_order_gradients_of_an_unsmoothed_field():
    """Exact for a quartic along each axis; one-sided (second order) next to a non-sample."""
    z = np.arange(12.0)
    field = np.broadcast_to(0.01 * z**4 - 0.2 * z**3 + 0.5 * z**2 + 3.0 * z, (3, 4, 12)).copy()
    exact = 0.04 * z**3 - 0.6 * z**2 + 1.0 * z + 3.0
    sample = np.ones(field.shape, dtype=bool)
    grads, steps, gaps = fine_gradients(field, sample)
    np.testing.assert_allclose(grads[2][..., 2:-2], np.broadcast_to(exact[2:-2], (3, 4, 8)))
    np.testing.assert_array_equal(grads[:2], 0.0)  # no variation along x and y
    assert not gaps.any()  # the image's edges are no gaps
    # the largest step between adjacent samples of voxel 5's stencil (voxels 3 to 7)
    assert steps[1, 1, 5] == pytest.approx(np.abs(np.diff(field[1, 1, 3:8])).max())
    sample[..., 6] = False  # its neighbours go one-sided, away from it; its own stays central
    quadratic = np.broadcast_to(0.5 * z**2 + 3.0 * z, (3, 4, 12))
    grads, _, gaps = fine_gradients(quadratic, sample)
    got = grads[2][..., [4, 5, 6, 7, 8]]
    np.testing.assert_allclose(got, np.broadcast_to(3.0 + z[[4, 5, 6, 7, 8]], got.shape))
    assert gaps[2][..., [5, 7]].all()
    assert gaps[2].sum() == 2 * 12


def test_aliased_field_map_keeps_its_gradients():
    """A linear field of +-237 Hz aliases at +-167 Hz (3 ms echo spacing): the gradients come
    from wrapped neighbour differences, so no voxel fails and the fit is exact; smoothing the
    aliased map made steps at the wraps and failed the voxels around them."""
    field = np.broadcast_to(6.0 * (np.arange(80.0) - 39.5), (4, 4, 80))  # Hz, 6 Hz/voxel in z
    mag = 100 * np.exp(-20 * TE_12) * np.abs(np.sinc(6.0 * TE_12))
    mag = np.broadcast_to(mag, (4, 4, 80, 12))
    phase = np.angle(np.exp(2j * np.pi * field[..., None] * TE_12))
    factor, _, unreliable = gradient_correction(mag, phase, TE_12)
    assert not unreliable.any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(TE_12, sigma=1e-6).fit(mag, decay_factor=factor)
    np.testing.assert_allclose(fit.r2star, 20.0, rtol=1e-6)


def _air_sphere(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An air sphere (radius 8 mm, 9.4 ppm at 3 T, B0 along z) in tissue with R2* = 30 1/s,
    1.5 x 1.5 x 3 mm voxels, 12 echoes 3-36 ms, SNR 100: each voxel averages the phase of
    6 x 6 x 6 spins of the dipole field (no sinc in the data). Returns magnitude, phase, tissue
    fraction and the true gradient magnitude at the voxel centres (Hz/mm)."""
    shape, voxel, radius = (32, 32, 16), np.array([1.5, 1.5, 3.0]), 8.0
    centre = np.asarray(shape) * voxel / 2 + np.array([0.3, -0.2, 0.4])  # off the grid
    axes = [(np.arange(n) + 0.5) * v - c for n, v, c in zip(shape, voxel, centre, strict=True)]
    sub = (np.arange(6) + 0.5) / 6 - 0.5
    x, y, z = (
        (a[:, None] + sub * v).reshape(shape_)
        for a, v, shape_ in zip(
            axes,
            voxel,
            [(-1, 1, 1, 6, 1, 1), (1, -1, 1, 1, 6, 1), (1, 1, -1, 1, 1, 6)],
            strict=True,
        )
    )
    k = 42.58e6 * 3.0 * 9.4e-6 / 3 * radius**3  # Hz mm^3
    r2 = x * x + y * y + z * z
    outside = r2 > radius**2
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(outside, k * (3 * z * z / r2 - 1) / r2**1.5, 0.0)
    spins = outside * np.exp(2j * np.pi * f * TE_12[0])
    step = np.exp(2j * np.pi * f * (TE_12[1] - TE_12[0]))
    signal = np.empty((*shape, 12), dtype=complex)
    for e in range(12):
        spins = spins * step if e else spins
        signal[..., e] = spins.mean(axis=(3, 4, 5))
    signal *= 100 * np.exp(-30 * TE_12)
    rng = np.random.default_rng(seed)
    signal += rng.normal(size=signal.shape) + 1j * rng.normal(size=signal.shape)
    cx, cy, cz = np.meshgrid(*axes, indexing="ij")
    r2c = cx * cx + cy * cy + cz * cz
    gx = k * (3 * cx / r2c**2.5 - 15 * cz * cz * cx / r2c**3.5)
    gy = k * (3 * cy / r2c**2.5 - 15 * cz * cz * cy / r2c**3.5)
    gz = k * (9 * cz / r2c**2.5 - 15 * cz**3 / r2c**3.5)
    gradient = np.sqrt(gx * gx + gy * gy + gz * gz)
    return np.abs(signal), np.angle(signal), outside.mean(axis=(3, 4, 5)), gradient


@pytest.fixture(scope="module")
def air_sphere():
    return _air_sphere()


def test_dipole_field_near_air_is_corrected_or_flagged(air_sphere):
    """Against the true R2* (30 1/s): where the true gradient is 5-15 Hz/mm the kept voxels
    are unbiased (the 1-voxel smoothed map left +5.8 1/s, p90 20.7), above 15 Hz/mm every
    voxel is flagged (it kept half of them, median +72 1/s), and the air is not counted."""
    mag, phase, tissue, gradient = air_sphere
    factor, _, unreliable = gradient_correction(mag, phase, TE_12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)  # flagged voxels fail
        r2 = DecayModel(TE_12, sigma=1.0).fit(mag, mask=tissue > 0.5, decay_factor=factor).r2star
    inner = np.zeros(tissue.shape, dtype=bool)
    inner[2:-2, 2:-2, 2:-2] = True
    inner &= tissue == 1.0
    error = r2 - 30.0
    flat = inner & (gradient < 1.0)
    assert np.isfinite(error[flat]).all()
    assert abs(np.median(error[flat])) < 0.2
    steep = inner & (gradient >= 5.0) & (gradient < 15.0)
    kept = steep & np.isfinite(error)
    assert steep.sum() > 2000
    assert abs(np.median(error[kept])) < 0.5
    assert np.percentile(np.abs(error[kept]), 90) < 2.5
    assert 0.3 < kept.sum() / steep.sum() < 0.8  # the rest flagged
    steeper = inner & (gradient >= 15.0)
    assert steeper.sum() > 1000
    assert unreliable[steeper].all()
    # flagged voxels are exactly those with a NaN factor; the air's noise is left alone
    np.testing.assert_array_equal(
        np.isnan(factor).any(axis=-1)[tissue == 1.0], unreliable[tissue == 1.0]
    )
    air = tissue == 0.0
    assert not unreliable[air].any()
    assert (factor[air] == 1.0).all()


def test_participant_counts_and_warns_about_voxels_beyond_the_correction(air_sphere):
    """The participant stage's count for the R2* sidecar (``B0GradientVoxelsFailed``): the
    fitted voxels the correction flagged, with a warning; none, no warning."""
    from types import SimpleNamespace

    from ironmap.workflows.session import _gradient_failures

    mag, phase, tissue, _ = air_sphere
    factor, _, unreliable = gradient_correction(mag, phase, TE_12)
    mask = tissue > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(TE_12, sigma=1.0).fit(mag, mask=mask, decay_factor=factor)
    with pytest.warns(
        IronmapWarning, match=r"sub-01: \d,\d{3} voxels are beyond the field-gradient"
    ):
        failed = _gradient_failures(fit, SimpleNamespace(data=mag), "sub-01")
    assert failed == int((unreliable & mask).sum())
    assert failed == int(np.sum(np.isnan(fit.r2star) & mask & unreliable))
    flat = DecayModel(TE_12, sigma=1.0).fit(mag[:4, :4], decay_factor=np.ones_like(mag[:4, :4]))
    assert _gradient_failures(flat, SimpleNamespace(data=mag[:4, :4]), "sub-01") == 0


@pytest.fixture(scope="module")
def sinus_subject():
    """The same simulated subject with and without the frontal-sinus field (identical noise)."""
    subject = draw_site_panel()[4]  # 2 x 2 x 3 mm, 10 echoes up to 29.5 ms
    flat = generate_subject(subject)
    sinus = generate_subject(subject, with_phase=True)
    return subject, flat, sinus


def test_simulated_sinus_bias_falls_by_80_percent_and_flat_regions_do_not_change(sinus_subject):
    subject, flat, sinus = sinus_subject
    te = np.asarray(subject.site.protocol.echo_times_s)
    brain = flat.magnitude[..., 0] > 0.5 * np.percentile(flat.magnitude[..., 0], 99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        reference = DecayModel(te).fit(flat.magnitude, mask=brain).r2star
        raw = DecayModel(te).fit(sinus.magnitude, mask=brain).r2star
        factor, _, _ = gradient_correction(sinus.magnitude, sinus.phase, te)
        corrected = DecayModel(te).fit(sinus.magnitude, mask=brain, decay_factor=factor).r2star
    # Where the true sinus field is steep (selecting on the noisy estimate would bias the test)
    f = subject.site.protocol.voxel_mm
    shape = flat.magnitude.shape[:3]
    # the air cavities' (frontal sinus, mastoids) own field: the smooth, steep background
    air = replace(sinus.susceptibility, chi_ppm=np.zeros_like(sinus.susceptibility.chi_ppm))
    true = field_hz(air, sinus.anatomy)[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    true = true.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5))
    steepness = np.max(np.abs(np.stack(np.gradient(true))), axis=0)  # Hz per voxel
    # (beyond ~30 Hz per voxel, next to the air, the phase wraps within a voxel: no correction)
    near = brain & (steepness > 4.0) & (steepness <= 30.0)
    near &= np.isfinite(corrected) & np.isfinite(raw)
    # flat: where the whole field (veins and iron included) is flat
    full = sinus.field_hz[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    full = full.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5))
    flat_field = np.max(np.abs(np.stack(np.gradient(full))), axis=0) < 0.5
    far = brain & flat_field & np.isfinite(corrected)
    assert near.sum() > 50
    bias_raw = np.mean(raw[near] - reference[near])
    bias_corrected = np.mean(corrected[near] - reference[near])
    assert bias_raw > 3.0  # the sinus inflates R2* by several 1/s
    assert abs(bias_corrected) <= 0.2 * bias_raw
    change = np.median(np.abs(corrected[far] / raw[far] - 1.0))
    assert change < 0.005
    assert abs(np.mean(corrected[far] / reference[far]) - 1.0) < 0.005


@pytest.fixture(scope="module")
def phase_cohort(tmp_path_factory):
    from ironmap.workflows.simulate import SimulateConfig, run_simulate

    root = tmp_path_factory.mktemp("phase") / "bids"
    run_simulate(SimulateConfig(root, n_hc=1, n_ms=0, seed=3, with_phase=True))
    return root


def _regions(out):
    import pandas as pd

    path = next(out.rglob("*_regions.tsv"))
    return pd.read_csv(path, sep="\t").set_index(["region", "hemisphere"])


def test_participant_stage_uses_phase_when_present(phase_cohort, tmp_path):
    import json

    from ironmap.workflows.participant import ParticipantConfig, run_participant

    for mode in ("auto", "off"):
        results = run_participant(
            ParticipantConfig(phase_cohort, tmp_path / mode, b0_correction=mode)
        )
        assert [r.status for r in results] == ["done"]
    side = json.loads(next((tmp_path / "auto").rglob("*_R2starmap.json")).read_text())
    assert side["B0GradientCorrection"] is True
    # the voxels next to the air cavities, where the phase wraps within a voxel, are beyond
    # the correction (as in real data); a few hundred of ~100,000
    assert 0 < side["B0GradientVoxelsFailed"] < 1000
    off_side = json.loads(next((tmp_path / "off").rglob("*_R2starmap.json")).read_text())
    assert "B0GradientVoxelsFailed" not in off_side
    prov = json.loads(next((tmp_path / "auto").rglob("*_provenance.json")).read_text())
    assert any("part-phase" in k for k in prov["inputs"])
    on, off = _regions(tmp_path / "auto"), _regions(tmp_path / "off")
    for region in ("thalamus", "caudate", "putamen", "pallidum", "red_nucleus"):
        ratio = (
            on.loc[(region, "both"), "r2star_median"] / off.loc[(region, "both"), "r2star_median"]
        )
        # far from the air: within 1 % (the iron of deep grey matter has its own field, whose
        # gradients at the structure's edges the correction removes)
        assert abs(ratio - 1) < 0.01
    r2_on = nib_load(tmp_path / "auto" / "sub-001" / "anat" / "sub-001_R2starmap.nii.gz")
    r2_off = nib_load(tmp_path / "off" / "sub-001" / "anat" / "sub-001_R2starmap.nii.gz")
    both = np.isfinite(r2_on) & np.isfinite(r2_off)
    assert np.percentile((r2_off - r2_on)[both], 99.9) > 3.0  # near the sinus R2* drops


def nib_load(path):
    import nibabel as nib

    return nib.load(path).get_fdata()


def test_iron_columns_and_field_strength_check(phase_cohort, tmp_path):
    import json

    from ironmap.iron import CALIBRATIONS
    from ironmap.workflows.participant import ParticipantConfig, run_participant

    config = ParticipantConfig(phase_cohort, tmp_path / "a", iron_calibration="langkammer2010")
    assert run_participant(config)[0].status == "done"
    table = _regions(tmp_path / "a")
    cal = CALIBRATIONS["langkammer2010"]
    np.testing.assert_allclose(  # as written: R2* to 0.01 1/s (0.019 mg/kg), iron to 0.01
        table["iron_median_mg_per_kg"], (table["r2star_median"] - 14.29) / 0.27, atol=0.025
    )
    assert (cal.slope, cal.intercept, cal.field_t) == (0.27, 14.29, 3.0)
    # the same data declared as 1.5 T: refused, one line, naming the file
    copy = tmp_path / "bids15"
    import shutil

    shutil.copytree(phase_cohort, copy)
    for side in copy.rglob("*_part-mag_MEGRE.json"):
        meta = json.loads(side.read_text())
        side.write_text(json.dumps({**meta, "MagneticFieldStrength": 1.5}))
    result = run_participant(
        ParticipantConfig(copy, tmp_path / "b", iron_calibration="langkammer2010")
    )[0]
    assert result.status == "failed"
    assert "acquired at 1.5 T but the langkammer2010 iron calibration holds at 3 T" in result.error


def test_fit_command_corrects_with_phase(tmp_path):
    """ironmap fit: with --phase the through-slice dephasing no longer reads as R2*; voxels
    beyond the correction are NaN and counted in the sidecar (``B0GradientVoxelsFailed``)."""
    import json

    import nibabel as nib

    from ironmap.cli import main

    te = np.arange(1, 11) * 0.003
    slope = 6.0  # Hz per voxel along z
    field = np.broadcast_to(slope * (np.arange(30.0) - 14.5), (6, 6, 30))
    mag = (100 * np.exp(-25 * te) * gradient_decay(field, te)).astype(np.float32)
    phase = np.angle(np.exp(2j * np.pi * field[..., None] * te)).astype(np.float32)
    nib.save(nib.Nifti1Image(mag, np.eye(4)), tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(phase, np.eye(4)), tmp_path / "phase.nii.gz")
    base = ["fit", str(tmp_path / "mag.nii.gz"), "--te", *map(str, te), "--sigma", "1e-4"]
    assert main([*base, "-o", str(tmp_path / "raw")]) == 0
    assert (
        main([*base, "-o", str(tmp_path / "cor"), "--phase", str(tmp_path / "phase.nii.gz")]) == 0
    )
    raw = nib.load(tmp_path / "raw_R2starmap.nii.gz").get_fdata()[:, :, 6:-6]
    cor = nib.load(tmp_path / "cor_R2starmap.nii.gz").get_fdata()[:, :, 6:-6]
    assert np.median(raw) > 26.0
    np.testing.assert_allclose(cor, 25.0, rtol=1e-4)
    side = json.loads((tmp_path / "cor_R2starmap.json").read_text())
    assert side["B0GradientVoxelsFailed"] == 0
    assert "B0GradientVoxelsFailed" not in json.loads(
        (tmp_path / "raw_R2starmap.json").read_text()
    )
    # a field that steepens to 40 Hz/voxel (1.2 cycles across a voxel at 30 ms): those fail
    steep = np.concatenate([field[..., :20], field[..., 19:20] + 40.0 * np.arange(1, 11)], -1)
    phase = np.angle(np.exp(2j * np.pi * steep[..., None] * te)).astype(np.float32)
    mag = (100 * np.exp(-25 * te) * gradient_decay(steep, te)).astype(np.float32)
    nib.save(nib.Nifti1Image(mag, np.eye(4)), tmp_path / "mag.nii.gz")
    nib.save(nib.Nifti1Image(phase, np.eye(4)), tmp_path / "phase.nii.gz")
    assert (
        main([*base, "-o", str(tmp_path / "st"), "--phase", str(tmp_path / "phase.nii.gz")]) == 0
    )
    _, _, unreliable = gradient_correction(mag, phase, te)
    failed = json.loads((tmp_path / "st_R2starmap.json").read_text())["B0GradientVoxelsFailed"]
    assert failed == int(unreliable.sum()) >= 6 * 6 * 10
    r2 = nib.load(tmp_path / "st_R2starmap.nii.gz").get_fdata()
    assert np.isnan(r2[unreliable]).all()
