"""Option defaults shared by the library and the command line (one home each).

Kept free of heavy imports so that ``ironmap --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["B0_CORRECTIONS", "CSF_EXCLUSIONS", "MIN_FRACTION", "SIGMA_MAPS", "check_coils"]

#: Partial-volume threshold: a voxel counts for a structure when at least this fraction of it
#: lies inside (``--min-fraction``; measured per site in docs/regions.md).
MIN_FRACTION = 0.9

#: ``--b0-correction`` choices: ``auto`` corrects R2* for macroscopic field gradients when phase
#: echoes exist (docs/fitting.md); ``off`` never does.
B0_CORRECTIONS = ("auto", "off")

#: ``--sigma-map`` choices: ``off`` fits with one noise sigma for the whole image; ``local``
#: with a noise map from the local spread of the fit residuals, for noise that varies in space
#: (parallel-imaging g-factor; :mod:`ironmap.fitting.sigma_map`).
SIGMA_MAPS = ("off", "local")

#: ``--csf-exclusion`` choices: ``on`` leaves out the voxels of each deep grey-matter region and
#: NAWM whose R2* says CSF (:func:`ironmap.regions.csf.csf_like`; counted in ``n_csf_excluded``);
#: ``off`` keeps every voxel the segmentation gives.
CSF_EXCLUSIONS = ("on", "off")


def check_coils(coils: object) -> None:
    """``--coils``: None (estimated from the image background) or an integer >= 1."""
    if coils is None:
        return
    if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
        from .errors import InputError

        raise InputError(f"--coils must be an integer >= 1, got {coils!r}")
