"""Receive channels and sigma that were not estimated from a background (issue 28).

A root-sum-of-squares image of 12 channels whose background lies on one side of the field of
view only used to fall back silently to N = 1 with the residual sigma: R2* 4-54 % low. Such a
background is now recognised (it does not decay over the echoes), and whenever N or sigma is
still assumed the user is told once, with the option that sets it.
"""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from ironmap.errors import IronmapWarning
from ironmap.fitting import DecayModel, effective_coils
from ironmap.fitting.noise import diagnose_background
from ironmap.simulate.signal import rss_magnitude

TE = np.linspace(2.6e-3, 39.4e-3, 9)
R2_GRID = (15.0, 30.0, 50.0, 80.0)


def one_sided(coils: int, *, edge: int = 20, snr: float = 30.0, seed: int = 0):
    """(64, 64, 16, 9) RSS magnitudes of ``coils`` channels (sigma 1): tissue at x >= ``edge``
    in four stripes of R2* along y, air (pure noise) at x < ``edge`` only: 40 % of the in-plane
    border is background. Returns the magnitudes, the tissue mask and the true R2* map."""
    shape = (64, 64, 16)
    tissue = np.zeros(shape, dtype=bool)
    tissue[edge:] = True
    stripe = np.repeat(np.array(R2_GRID), shape[1] // len(R2_GRID))
    r2 = np.where(tissue, stripe[None, :, None], 0.0)
    amplitude = np.where(tissue, snr, 0.0)[..., None] * np.exp(-r2[..., None] * TE)
    rng = np.random.default_rng(seed)
    magnitude = rss_magnitude(amplitude, sigma=1.0, coils=coils, rng=rng)
    return magnitude.astype(np.float32), tissue, r2


def participant_path(magnitude, mask):
    """The participant stage's fit: one background analysis for N and sigma."""
    background = diagnose_background(magnitude)[0]
    coils, source = effective_coils(magnitude, None, background=background)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(TE, coils=coils).fit(magnitude, mask=mask, background=background)
    fit.coils_source = source
    return fit


@pytest.mark.parametrize("coils", [1, 12])
def test_background_on_one_side_of_the_field_of_view_is_found(coils):
    magnitude, _, _ = one_sided(coils)
    estimate, reason = diagnose_background(magnitude)
    assert estimate is not None, reason
    assert estimate.n_coils == coils
    assert estimate.sigma == pytest.approx(1.0, rel=0.03)
    assert "one side" in reason


def test_r2star_of_a_one_sided_12_channel_image_is_unbiased():
    magnitude, tissue, r2 = one_sided(12)
    fit = participant_path(magnitude, tissue)
    assert (fit.coils, fit.coils_source, fit.sigma_source) == (12, "background", "background")
    for value in R2_GRID:
        estimates = fit.r2star[r2 == value]
        assert np.all(np.isfinite(estimates))
        assert 100.0 * (estimates.mean() - value) / value == pytest.approx(0.0, abs=1.0)


def test_dark_tissue_on_one_side_is_not_a_background():
    """A dark tissue class filling one side of the image is noise-like in each echo but decays
    over the echoes: it stays refused, as a dark class filling half of a one-echo image."""
    rng = np.random.default_rng(3)
    shape = (64, 64, 16)
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    level = np.where(x < 20, 6.0, 40.0)
    amplitude = level[..., None] * np.exp(-20.0 * TE)
    magnitude = rss_magnitude(amplitude, sigma=1.0, coils=1, rng=rng)
    estimate, reason = diagnose_background(magnitude)
    assert estimate is None
    assert "decay" in reason


def test_a_one_sided_background_needs_echoes_to_be_told_from_tissue():
    """With one echo (no decay to check) one side of dark values is refused as before."""
    magnitude, _, _ = one_sided(12)
    estimate, reason = diagnose_background(magnitude[..., :1])
    assert estimate is None
    assert "border" in reason


# ---------------------------------------------------------------------------------------------
# The warning: N or sigma not estimated from a background.
# ---------------------------------------------------------------------------------------------


def no_background(seed: int = 1) -> np.ndarray:
    """(24, 24, 8, 9) magnitudes of tissue filling the whole image (R2* 30 1/s, SNR 50)."""
    rng = np.random.default_rng(seed)
    amplitude = np.broadcast_to(50.0 * np.exp(-30.0 * TE), (24, 24, 8, TE.size))
    return rss_magnitude(amplitude, sigma=1.0, coils=1, rng=rng).astype(np.float32)


def _assumed(caught) -> list[str]:
    return [str(w.message) for w in caught if "not estimated" in str(w.message)]


def _run_fit(tmp_path, **options):
    from ironmap.workflows.fit import FitConfig, run_fit

    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "mag.nii.gz"
    nib.save(nib.Nifti1Image(no_background(), np.eye(4)), path)
    config = FitConfig(
        output_prefix=tmp_path / "out" / "x", magnitude=path, echo_times=tuple(TE), **options
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_fit(config)
    return _assumed(caught)


def test_ironmap_fit_says_once_which_noise_it_assumed(tmp_path):
    (message,) = _run_fit(tmp_path)
    assert "N = 1" in message
    assert "--coils" in message
    assert "residuals" in message
    assert "--sigma" in message


def test_ironmap_fit_names_only_what_was_assumed(tmp_path):
    (message,) = _run_fit(tmp_path, coils=1)
    assert "--sigma" in message
    assert "--coils" not in message
    assert _run_fit(tmp_path / "given", coils=1, sigma=1.0) == []


def test_the_participant_stage_says_which_noise_it_assumed(tmp_path):
    from ironmap.io.echoes import MultiEchoImage
    from ironmap.workflows.participant import ParticipantConfig
    from ironmap.workflows.session import _fit

    data = no_background()
    image = MultiEchoImage(data, np.eye(4), nib.Nifti1Header(), TE, (tmp_path / "mag.nii",))
    config = ParticipantConfig(bids_dir=tmp_path, output_dir=tmp_path / "out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = _fit(image, config, mask=np.ones(data.shape[:3], bool), factor=None, name="sub-01")
    (message,) = _assumed(caught)
    assert message.startswith("sub-01: ")
    assert "N = 1" in message
    assert "--coils" in message
    assert "residuals" in message
    assert "--sigma " not in message
    assert (fit.coils_source, fit.sigma_source) == ("default", "residuals")
