"""Option defaults shared by the library and the command line (one home each).

Kept free of heavy imports so that ``ironmap --help`` stays fast.
"""

from __future__ import annotations

__all__ = [
    "B0_CORRECTIONS",
    "CSF_EXCLUSIONS",
    "MIN_FRACTION",
    "MIN_VOXELS",
    "PHASE_SIGNS",
    "READOUTS",
    "SIGMA_MAPS",
    "check_coils",
]

#: Partial-volume threshold: a voxel counts for a structure when at least this fraction of it
#: lies inside (``--min-fraction``; measured per site in docs/regions.md).
MIN_FRACTION = 0.9

#: ``--b0-correction`` choices: ``auto`` corrects R2* for macroscopic field gradients when phase
#: echoes exist (docs/fitting.md); ``off`` never does.
B0_CORRECTIONS = ("auto", "off")

#: ``--phase-sign`` choices: the factor on the stored phase so that a positive field is faster
#: precession (:mod:`ironmap.io.phase`); ``auto`` reads ``PhaseSign`` from the phase's sidecar
#: (+1 without one).
PHASE_SIGNS = ("auto", "+1", "-1")

#: ``--readout`` choices: ``bipolar`` removes the odd/even echo phase offset (constant plus linear
#: in space) of a bipolar readout (:func:`ironmap.io.phase.bipolar_offset`); ``auto`` reads
#: ``ReadoutPolarity`` from the phase's sidecar (unipolar without one).
READOUTS = ("auto", "unipolar", "bipolar")
#: ``--qsm`` choices: ``auto`` maps susceptibility (QSM, ``sub-*_Chimap.nii.gz``, ppm) from the
#: phase echoes, or takes a ``*_Chimap.nii[.gz]`` found in the derivatives (e.g. QSMxT's) instead,
#: and measures regional chi beside R2*; ``off`` never does (docs/conventions.md).
QSM_MODES = ("auto", "off")

#: ``--sigma-map`` choices: ``off`` fits with one noise sigma for the whole image; ``local``
#: with a noise map from the local spread of the fit residuals, for noise that varies in space
#: (parallel-imaging g-factor; :mod:`ironmap.fitting.sigma_map`).
SIGMA_MAPS = ("off", "local")

#: ``--csf-exclusion`` choices: ``on`` leaves out the voxels of each deep grey-matter region and
#: NAWM whose R2* says CSF (:func:`ironmap.regions.csf.csf_like`; counted in ``n_csf_excluded``);
#: ``off`` keeps every voxel the segmentation gives.
CSF_EXCLUSIONS = ("on", "off")

#: Minimum-voxel rule of the group stage (``--min-voxels``): a participant's bilateral value of a
#: deep grey-matter structure enters no group statistics when either hemisphere has fewer R2*
#: voxels than this (NaN for that structure only, warned, noted in participant_flow.tsv).
#: Chosen in benchmarks/min_voxels.py on the default demo: the error of a hemisphere's median
#: against the planted truth follows var = 0.014 + 1.17 / n (1/s)^2, and 5 is the smallest count
#: at which it is at most twice the error at ``cohort.qc.MIN_REGION_VOXELS`` (20) voxels, the
#: count below which the QC only flags (measured: 0.50 1/s RMSE at 1-4 voxels against 0.25 at
#: 20-30). docs/regions.md.
MIN_VOXELS = 5


def check_coils(coils: object) -> None:
    """``--coils``: None (estimated from the image background) or an integer >= 1."""
    if coils is None:
        return
    if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
        from .errors import InputError

        raise InputError(f"--coils must be an integer >= 1, got {coils!r}")
