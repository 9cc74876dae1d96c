"""The noise SD from the residuals of a mono-exponential fit (images without a background).

In voxels well above the noise floor the residuals of a least-squares fit are Gaussian with
variance ``sigma^2`` (the SD of one channel, whatever the number of channels) and
``n_echoes - 2`` degrees of freedom. Model misfit inflates the estimate, so it is an upper bound
in tissue that is not mono-exponential (:mod:`.misfit` checks it against the background level).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

__all__ = ["MIN_RESIDUAL_ECHOES", "sigma_from_residuals"]

#: Echoes a residual-based sigma needs: a mono-exponential fit has two parameters, so two echoes
#: leave no residual. The one home of the rule (global residual sigma, ``--sigma-map local``).
MIN_RESIDUAL_ECHOES = 3


def sigma_from_residuals(residual_ss: NDArray[np.float64], n_echoes: int) -> float | None:
    """Noise SD from per-voxel residual sums of squares of a mono-exponential fit.

    Parameters
    ----------
    residual_ss : numpy.ndarray, shape (n_voxels,)
        ``sum_i (M_i - S_i)^2`` of high-SNR voxels (Rician bias negligible).
    n_echoes : int
        Echoes per voxel (>= 3).

    Returns
    -------
    float or None
        ``sqrt(median(RSS) / median(chi2(n_echoes - 2)))``: the median makes it robust to the
        few voxels (vessels, edges) the model does not describe. ``None`` with < 3 echoes or
        no finite residuals.
    """
    dof = n_echoes - 2
    rss = residual_ss[np.isfinite(residual_ss)]
    if dof < 1 or rss.size == 0:
        return None
    sigma = float(np.sqrt(np.median(rss) / stats.chi2.median(dof)))
    return sigma if sigma > 0 else None
