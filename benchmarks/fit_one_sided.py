"""Issue 28: R2* of RSS images whose background lies on one side of the field of view only.

Each image is 64 x 60 x 16 voxels, 9 echoes 2.6-39.4 ms, magnitudes of N receive channels
combined by root-sum-of-squares (sigma = 1 per channel; ``ironmap.simulate.signal
.rss_magnitude``): tissue at x >= 20 in six stripes of R2* along y (S0 = SNR), air (pure noise)
at x < 20 only, so 40 % of the in-plane border is background (the issue's case: 41 %).

The participant stage's path fits every image (one background analysis for N and sigma):

- ``before``: what ironmap did: the background was refused (border share < 75 %), so N = 1 and
  sigma from the fit residuals, silently;
- ``after``: a one-sided background is accepted when it does not decay over the echoes.

Columns: N and sigma as estimated after, and per R2* the bias of the mean R2* (%) before and
after, and the share of tissue voxels that failed (NaN) after.

Run: ``python benchmarks/fit_one_sided.py``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from ironmap.errors import IronmapWarning
from ironmap.fitting import DecayModel, effective_coils
from ironmap.fitting.noise import diagnose_background
from ironmap.simulate.signal import rss_magnitude

from _cases import R2_GRID, SNR_GRID, TE_9, quiet_fit, score_cells, seeded_cells

COILS = (1, 12, 32)
SHAPE = (64, 60, 16)
EDGE = 20  # air at x < EDGE only


def volume(coils: int, snr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes (64, 60, 16, 9) and the true R2* map (0 in the air)."""
    stripes = np.repeat(np.array(R2_GRID), SHAPE[1] // len(R2_GRID))
    r2 = np.zeros(SHAPE)
    r2[EDGE:] = stripes[None, :, None]
    amplitude = np.where(r2 > 0, snr, 0.0)[..., None] * np.exp(-r2[..., None] * TE_9)
    rng = np.random.default_rng(seed)
    return rss_magnitude(amplitude, sigma=1.0, coils=coils, rng=rng).astype(np.float32), r2


def participant_fit(magnitude: np.ndarray, tissue: np.ndarray, *, one_sided: bool):
    """``(fit, reason)`` by the participant stage's path; ``one_sided=False`` refuses the
    one-sided background as ironmap did before issue 28."""
    background, reason = diagnose_background(magnitude)
    if not one_sided and background is not None and "one side" in reason:
        background = None
    coils, source = effective_coils(magnitude, None, background=background)
    fit = quiet_fit(DecayModel(TE_9, coils=coils), magnitude, mask=tissue, background=background)
    fit.coils_source = source
    return fit, reason


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print(
        f"RSS of N coils, {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, 9 echoes 2.6-39.4 ms, air on one "
        "side (40 % of the in-plane border); N and sigma estimated (participant path)"
    )
    print(
        f"{'N':>3}{'SNR':>5}{'N^ bef':>8}{'N^ aft':>8}{'sig^':>7}{'R2*':>6}"
        f"{'bias% before':>14}{'after':>8}{'NaN%':>6}"
    )
    for seed, coils, snr in seeded_cells(COILS, SNR_GRID):
        magnitude, r2 = volume(coils, snr, seed)
        tissue = r2 > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IronmapWarning)
            before, _ = participant_fit(magnitude, tissue, one_sided=False)
            after, _ = participant_fit(magnitude, tissue, one_sided=True)
        sigma = float("nan") if after.sigma is None else after.sigma
        for value in R2_GRID:
            cells = r2 == value
            scores = {"before": before.r2star[cells], "after": after.r2star[cells]}
            bef, aft = score_cells(scores, value, snr, coils).values()
            print(
                f"{coils:>3}{snr:>5.0f}{before.coils:>8}{after.coils:>8}{sigma:>7.3f}"
                f"{value:>6.0f}{bef.bias:>+14.2f}{aft.bias:>+8.2f}{aft.failed:>6.1f}"
            )


if __name__ == "__main__":
    main()
