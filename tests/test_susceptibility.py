"""The dipole kernel against the closed-form field of a sphere, and QSM on a forward phantom."""

from __future__ import annotations

import numpy as np
import pytest

from ironmap.susceptibility import QSMModel, dipole_kernel, forward_field, hz_per_ppm


def _grid(shape, voxel=1.0):
    c = [(np.arange(n) - (n - 1) / 2) * voxel for n in shape]
    return np.meshgrid(*c, indexing="ij")


def test_sphere_field_is_the_closed_form_dipole():
    """Outside a uniform sphere: chi/3 (a/r)^3 (3 cos^2 - 1); inside: 0 (Lorentz sphere)."""
    shape, a, chi = (96, 96, 96), 8.0, 0.1
    x, y, z = _grid(shape)
    r = np.sqrt(x**2 + y**2 + z**2)
    field = forward_field(np.where(r <= a, chi, 0.0), (1, 1, 1), pad=48)
    outside = (r > 2 * a) & (r < 3 * a)
    expected = chi / 3 * (a / r[outside]) ** 3 * (3 * (z[outside] / r[outside]) ** 2 - 1)
    assert np.abs(field[outside] - expected).max() < 0.03 * chi / 3 * (a / (2 * a)) ** 3 * 2
    assert abs(np.median(field[r < a / 2])) < 0.01 * chi


def test_kernel_is_zero_at_dc_and_one_third_across():
    kernel = dipole_kernel((8, 8, 8), (1, 1, 1))
    assert kernel[0, 0, 0] == 0
    assert kernel[1, 0, 0] == pytest.approx(1 / 3)  # k perpendicular to B0
    assert kernel[0, 0, 1] == pytest.approx(-2 / 3)  # k along B0


def test_qsm_recovers_a_sphere_in_a_head():
    """Forward phantom: an iron-like sphere in a brain ellipsoid plus a background field from
    an air cavity outside the brain; 3 echoes; chi of the sphere relative to the brain."""
    shape, voxel = (80, 80, 64), (2.0, 2.0, 2.0)
    x, y, z = _grid(shape, 2.0)
    brain = (x / 60) ** 2 + (y / 70) ** 2 + (z / 50) ** 2 <= 1
    sphere = (x - 10) ** 2 + y**2 + z**2 <= 12**2
    air = (x / 15) ** 2 + ((y - 78) / 10) ** 2 + ((z + 40) / 10) ** 2 <= 1
    chi = np.where(sphere, 0.15, 0.0) + np.where(air, 9.4, 0.0)
    delta = forward_field(chi, voxel, pad=32)
    te = np.array([0.005, 0.010, 0.015])
    hz = delta * hz_per_ppm(3.0)
    mag = np.where(brain, 1000.0, 0.0)[..., None] * np.exp(-20 * te)
    phase = np.angle(np.exp(2j * np.pi * hz[..., None] * te))
    fit = QSMModel(te, voxel, field_strength_t=3.0).fit(mag, phase, mask=brain)
    inner = sphere & fit.mask & ((x - 10) ** 2 + y**2 + z**2 <= 8**2)
    # TKD underestimates (threshold 0.19): between 60 % and 110 % of the truth
    assert 0.6 * 0.15 < np.median(fit.chi_ppm[inner]) < 1.1 * 0.15
