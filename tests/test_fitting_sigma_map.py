"""Noise that varies in space (issue 16): the local residual noise map and fits that use it.

A g-factor-like profile raises the noise 2.5-fold in the centre of a simulated head; the
magnitudes are root-sum-of-squares of N channels (seeded). The map must recover the profile,
and a fit with it must remove the bias one global sigma leaves where the noise is high.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ironmap.errors import InputError, IronmapWarning
from ironmap.fitting import DecayModel, r2star_crlb_sd
from ironmap.fitting.sigma_map import local_sigma_map
from ironmap.io import write_decay_maps
from ironmap.simulate.signal import rss_magnitude

TE = np.linspace(2.6e-3, 39.4e-3, 9)
SHAPE = (48, 48, 16)


def _head(coils: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij")
    head = (x**2 + y**2 + (0.8 * z) ** 2) < 0.9
    gfactor = 1.0 + 1.5 * np.exp(-(x**2 + y**2) / 0.3)
    r2 = np.where(rng.random(SHAPE) < 0.8, rng.uniform(15, 30, SHAPE), rng.uniform(60, 120, SHAPE))
    amp = np.where(head, 60.0, 0.0)[..., None] * np.exp(-r2[..., None] * TE)
    mag = rss_magnitude(amp, sigma=1.0, coils=coils, rng=rng) * gfactor[..., None]
    return mag, head, gfactor, r2


@pytest.fixture(scope="module", params=[1, 8])
def head(request):
    return request.param, *_head(request.param)


def test_local_map_recovers_a_g_factor_profile(head):
    _, mag, mask, gfactor, _ = head
    noise = local_sigma_map(mag, TE, mask)
    error = noise.sigma[mask] / gfactor[mask] - 1.0
    assert abs(np.median(error)) < 0.02
    assert np.percentile(np.abs(error), 95) < 0.10
    assert noise.spread == pytest.approx(
        np.percentile(gfactor[mask], 95) / np.percentile(gfactor[mask], 5), rel=0.1
    )
    assert noise.filled == 0.0
    assert np.isnan(noise.sigma[~mask]).all()


def test_fit_with_the_map_removes_the_bias_of_one_sigma_where_noise_is_high():
    mag, mask, gfactor, r2 = _head(8)
    noise = local_sigma_map(mag, TE, mask)
    centre = mask & (gfactor > 2.0) & (r2 > 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        one = DecayModel(TE, coils=8).fit(mag, mask=mask)
        mapped = DecayModel(TE, coils=8).fit(mag, mask=mask, sigma_map=noise.sigma)
    assert np.nanmean(one.r2star[centre] / r2[centre]) - 1 < -0.03  # one sigma: biased low
    assert abs(np.nanmean(mapped.r2star[centre] / r2[centre]) - 1) < 0.01
    assert mapped.sigma_source == "map"
    assert mapped.sigma == pytest.approx(np.median(noise.sigma[mask]))
    # the Cramer-Rao SD uses each voxel's own sigma
    i = tuple(np.argwhere(centre)[0])
    expected = r2star_crlb_sd(mapped.s0[i], mapped.r2star[i], TE, noise.sigma[i], coils=8)
    assert mapped.r2star_sd[i] == pytest.approx(float(expected), rel=1e-12)


def test_map_range_goes_to_the_sidecar(tmp_path):
    mag, mask, gfactor, _ = _head(1)
    noise = local_sigma_map(mag, TE, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(TE).fit(mag, mask=mask, sigma_map=noise.sigma)
    paths = write_decay_maps(fit, np.eye(4), tmp_path / "x", echo_times_s=TE, sources=["m"])
    sidecar = json.loads(paths[0].with_name(paths[0].name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["NoiseSigmaSource"] == "map"
    low, high = sidecar["NoiseSigmaRange"]
    assert low == pytest.approx(np.percentile(gfactor[mask], 5), rel=0.1)
    assert high == pytest.approx(np.percentile(gfactor[mask], 95), rel=0.1)


def test_voxels_without_a_valid_sigma_fail_and_shapes_are_checked():
    mag, mask, _, _ = _head(1)
    sigma = np.ones(SHAPE)
    sigma[mask.nonzero()[0][0], mask.nonzero()[1][0], mask.nonzero()[2][0]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(TE).fit(mag, mask=mask, sigma_map=sigma)
    assert fit.failed.sum() >= 1
    with pytest.raises(InputError, match="sigma_map shape"):
        DecayModel(TE).fit(mag, mask=mask, sigma_map=np.ones((2, 2, 2)))
    with pytest.raises(InputError, match=">= 3 echoes"):
        local_sigma_map(mag[..., :2], TE[:2], mask)
    with pytest.raises(InputError, match="mask shape"):
        local_sigma_map(mag, TE, mask[:-1])
    assert local_sigma_map(np.ones((4, 4, 1, 9)), TE) is None  # too few voxels


def test_too_few_echoes_for_a_local_map_name_the_source_file():
    """The one check of ``--sigma-map local`` on the echo count, for both workflows."""
    source = Path("sub-01") / "anat" / "sub-01_echo-1_part-mag_MEGRE.nii.gz"
    expected = f"{source}: --sigma-map local needs >= 3 echoes, got 2; use --sigma-map off"
    with pytest.raises(InputError) as raised:
        local_sigma_map(np.ones((4, 4, 1, 2)), TE[:2], source=source)
    assert str(raised.value) == expected
    with pytest.raises(InputError, match=r"^a local noise map needs >= 3 echoes, got 2$"):
        local_sigma_map(np.ones((4, 4, 1, 2)), TE[:2])  # no source: the library's words
