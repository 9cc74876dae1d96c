"""The argument parser of the ``ironmap`` command: options, their defaults and choices.

Every default and choice is read from the library (config dataclasses, registries); options
shared by several commands are defined once in :func:`.options._options`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import __version__
from .options import _add, _default, _positive_float

__all__ = ["build_parser"]

_DESCRIPTION = """\
ironmap: R2* (1/T2*) mapping of brain iron from multi-echo gradient-echo MRI, for
multiple-sclerosis cohort studies (after Ropele et al., Mult Scler 2014).

Echo times are in seconds, R2* in 1/s, volumes in mL."""

_EPILOG = """\
examples:
  ironmap fit mag.nii.gz --te 0.004 0.008 0.012 -o out/sub-01
  ironmap fit --bids-echoes sub-01/anat/sub-01_echo-*_part-mag_MEGRE.nii.gz -o out/sub-01
  ironmap demo demo_out/"""


_VERBOSE_HELP = "log every step, every warning and a progress line per job"
_QUIET_HELP = (
    "no progress display (shown on standard error when it is a terminal: jobs done / total, "
    "elapsed, ETA)"
)


#: The one-line help of each command: shown by ``ironmap --help``, which builds no command's
#: options (they import the library for their defaults and choices).
_COMMAND_HELP = {
    "fit": "R2*, T2*, S0 and SD maps from one multi-echo acquisition",
    "run": "BIDS-App: per-participant maps and regional R2*, or the group statistics",
    "simulate": "write a synthetic multicentre MS cohort (BIDS) with known ground truth",
    "demo": "run the whole study on a synthetic cohort and print where the results are",
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    Choices and defaults come from the library's configs (:class:`~.workflows.fit.FitConfig`,
    :class:`~.workflows.participant.ParticipantConfig`, ...), which also validate the values.

    Parameters
    ----------
    commands : iterable of str, optional
        The commands whose options are built (default: all). The others are listed with their
        help only, so that ``ironmap --help`` imports no numerical library.
    """
    parser = argparse.ArgumentParser(
        prog="ironmap",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ironmap {__version__}")
    verbose = argparse.ArgumentParser(add_help=False)
    for owner, default in ((verbose, argparse.SUPPRESS), (parser, False)):
        owner.add_argument(
            "-v", "--verbose", action="store_true", default=default, help=_VERBOSE_HELP
        )
        owner.add_argument("-q", "--quiet", action="store_true", default=default, help=_QUIET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    builders = {"fit": _fit_parser, "run": _run_parser, "simulate": _simulate_parser}
    builders["demo"] = _demo_parser
    for name, add in builders.items():
        if commands is None or name in commands:
            add(sub, verbose)
        else:
            sub.add_parser(name, parents=[verbose], help=_COMMAND_HELP[name])
    return parser


def _fit_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap fit``."""
    from ..defaults import PHASE_SIGNS, READOUTS
    from ..workflows.fit import FitConfig

    fit = sub.add_parser(
        "fit",
        parents=[verbose],
        help=_COMMAND_HELP["fit"],
        description="Fit S = S0 exp(-R2* TE) in every voxel and write PREFIX_R2starmap.nii.gz "
        "(1/s), PREFIX_T2starmap.nii.gz (s), PREFIX_S0map.nii.gz, "
        "PREFIX_desc-sd_R2starmap.nii.gz (1/s) and PREFIX_desc-failed_mask.nii.gz, each with "
        "a JSON sidecar. Failed voxels are NaN.",
        epilog="example: ironmap fit mag.nii.gz --te 4 8 12 --te-unit ms -o out/sub-01",
    )
    fit.add_argument(
        "magnitude",
        nargs="?",
        type=Path,
        metavar="MAG",
        help="4D magnitude NIfTI, echoes on axis 4 (a complex one also gives the phase)",
    )
    fit.add_argument(
        "--te",
        nargs="+",
        type=_positive_float,
        metavar="T",
        help="echo times, one per volume of MAG (seconds unless --te-unit ms)",
    )
    fit.add_argument(
        "--te-unit",
        choices=("s", "ms"),
        default=_default(FitConfig, "te_unit"),
        help="unit of --te (default: s)",
    )
    fit.add_argument(
        "--bids-echoes",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="per-echo BIDS MEGRE files; echo times come from their JSON sidecars",
    )
    fit.add_argument(
        "-o", "--output", required=True, type=Path, metavar="PREFIX", help="e.g. out/sub-01"
    )
    fit.add_argument("--mask", type=Path, help="fit only inside this mask (same grid as MAG)")
    fit.add_argument(
        "--sigma",
        type=_positive_float,
        help="noise SD per channel in magnitude units (default: estimated)",
    )
    fit.add_argument(
        "--phase",
        type=Path,
        metavar="PHASE",
        help="4D phase image matching MAG, for the field-gradient correction: radians, Siemens "
        "integers or another scale detected from its range (docs/conventions.md#phase)",
    )
    fit.add_argument(
        "--phase-sign",
        choices=PHASE_SIGNS,
        default=_default(FitConfig, "phase_sign"),
        help="-1 flips the stored phase so that a positive field is faster precession; auto: "
        "PhaseSign of the phase's JSON sidecar, else +1 (default: %(default)s)",
    )
    fit.add_argument(
        "--readout",
        choices=READOUTS,
        default=_default(FitConfig, "readout"),
        help="bipolar: remove the odd/even echo phase offset (constant + linear in space) of a "
        "bipolar readout; auto: ReadoutPolarity of the sidecar, else unipolar "
        "(default: %(default)s)",
    )
    _add(fit, "b0_correction", FitConfig)
    _add(fit, "sigma_map", FitConfig)
    _add(fit, "fit_method", FitConfig)
    _add(fit, "coils")
    _add(fit, "force")


def _run_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap run`` (participant and group stages)."""
    from ..defaults import CSF_EXCLUSIONS, MIN_FRACTION, MIN_VOXELS, QSM_MODES
    from ..iron import CALIBRATIONS
    from ..segmentation.coregister import REGISTER_SEGMENTATION
    from ..segmentation.strategies import SEGMENTATIONS
    from ..workflows.participant import ParticipantConfig

    run = sub.add_parser(
        "run",
        parents=[verbose],
        help=_COMMAND_HELP["run"],
        description="Run the participant stage (maps, regional R2*) or the group stage "
        "(age/site-corrected statistics, report) on a BIDS dataset.",
    )
    run.add_argument("bids_dir", type=Path, metavar="BIDS_DIR")
    run.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    run.add_argument("analysis_level", choices=("participant", "group"))
    run.add_argument(
        "--participant-label",
        nargs="+",
        metavar="LABEL",
        help="labels without 'sub-' (default: all)",
    )
    run.add_argument(
        "--derivatives",
        nargs="+",
        type=Path,
        default=_default(ParticipantConfig, "derivatives"),
        metavar="DIR",
        help="derivatives datasets holding segmentations and lesion masks (BIDS dseg, "
        "FreeSurfer/FastSurfer subject folders, SynthSeg outputs; docs/conventions.md)",
    )
    run.add_argument(
        "--freesurfer-dir",
        type=Path,
        default=_default(ParticipantConfig, "freesurfer_dir"),
        metavar="DIR",
        help="FreeSurfer/FastSurfer SUBJECTS_DIR: DIR/sub-<label>/mri/aseg.mgz (or "
        "aparc+aseg.mgz, FastSurfer's aparc.DKTatlas+aseg.deep.mgz) is the participant's "
        "segmentation, read as it is (docs/conventions.md)",
    )
    _add(run, "n_jobs", ParticipantConfig)
    run.add_argument(
        "--scheduler-address",
        metavar="ADDR",
        help="run participants on this Dask scheduler (tcp://host:port)",
    )
    run.add_argument(
        "--scheduler-file",
        metavar="FILE",
        help="run participants on the Dask scheduler described in FILE (dask-jobqueue / dask-mpi)",
    )
    run.add_argument(
        "--min-fraction",
        type=float,
        default=_default(ParticipantConfig, "min_fraction"),
        metavar="F",
        help="a voxel counts for a structure when at least this fraction of it lies "
        f"inside (default: {MIN_FRACTION}, see docs/regions.md)",
    )
    _add(run, "b0_correction", ParticipantConfig)
    _add(run, "sigma_map", ParticipantConfig)
    run.add_argument(
        "--segmentation",
        choices=SEGMENTATIONS,
        default=_default(ParticipantConfig, "segmentation"),
        help="auto: use the dseg when present (else maps only); atlas: register the bundled "
        "atlas to the T1w (else the first echo) and refine iron-rich nuclei on R2*, writing "
        "desc-ironmap_dseg (needs ironmap[atlas]; see docs/atlas.md); hybrid: the dseg, with "
        "the deep grey matter it lacks (substantia nigra, red nucleus, dentate nucleus of a "
        "FreeSurfer, FastSurfer or SynthSeg dseg) from the registered atlas (docs/regions.md); "
        "none: maps only",
    )
    run.add_argument(
        "--register-segmentation",
        choices=REGISTER_SEGMENTATION,
        default=_default(ParticipantConfig, "register_segmentation"),
        help="register the image a dseg was made on (its sidecar's Sources, else the T1w or "
        "FLAIR on its grid) rigidly to the first echo and carry the dseg and lesion mask: auto "
        "when the alignment check doubts the dseg or that image is another acquisition; always; "
        "never (needs ironmap[atlas]; default: %(default)s; docs/regions.md)",
    )
    run.add_argument(
        "--iron-calibration",
        choices=tuple(CALIBRATIONS),
        help="add iron (mg/kg wet tissue) columns to regions.tsv from a published R2* "
        "calibration (langkammer2010: 3 T only; see docs/regions.md)",
    )
    run.add_argument(
        "--erode-mm",
        type=float,
        default=_default(ParticipantConfig, "erode_mm"),
        metavar="MM",
        help="erode each structure by this radius before its statistics (default: 0)",
    )
    run.add_argument(
        "--csf-exclusion",
        choices=CSF_EXCLUSIONS,
        default=_default(ParticipantConfig, "csf_exclusion"),
        help="on: leave out the voxels of each deep grey-matter region and NAWM whose R2* says "
        "CSF (below half the region's tissue R2*, and their partial-volume neighbours), "
        "counted in n_csf_excluded; a region without such voxels is unchanged (default: on; "
        "docs/regions.md)",
    )
    run.add_argument(
        "--qsm",
        choices=QSM_MODES,
        default=_default(ParticipantConfig, "qsm"),
        help="auto: susceptibility maps (sub-*_Chimap.nii.gz, ppm) from the phase echoes, or a "
        "*_Chimap.nii[.gz] found in the derivatives (e.g. QSMxT's) instead, and regional chi "
        "beside R2* (chi_* columns); off: none (default: auto; docs/conventions.md)",
    )
    _add(run, "fit_method", ParticipantConfig)
    _add(run, "coils")
    _add(run, "force")
    run.add_argument(
        "--min-voxels",
        type=int,
        default=MIN_VOXELS,
        metavar="N",
        help="group stage: a participant's deep grey-matter structure with fewer than N R2* "
        "voxels in either hemisphere enters no group statistics (noted in "
        f"participant_flow.tsv; default: {MIN_VOXELS}, measured in benchmarks/min_voxels.py)",
    )


def _simulate_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap simulate``."""
    from ..workflows.simulate import SimulateConfig

    sim = sub.add_parser(
        "simulate",
        parents=[verbose],
        help=_COMMAND_HELP["simulate"],
        description="Write a synthetic multicentre BIDS cohort and OUT_BIDS/../<name>_truth.json.",
    )
    sim.add_argument("out_bids", type=Path, metavar="OUT_BIDS")
    for flag, what in (("--n-hc", "healthy controls"), ("--n-ms", "MS patients")):
        dest = flag[2:].replace("-", "_")
        default = _default(SimulateConfig, dest)
        sim.add_argument(flag, type=int, default=default, help=f"{what} (default: {default})")
    sim.add_argument(
        "--seed",
        type=int,
        default=_default(SimulateConfig, "seed"),
        help=f"random seed (default: {_default(SimulateConfig, 'seed')})",
    )
    sim.add_argument(
        "--quick", action="store_true", help="a 20-subject cohort (10 HC, 10 MS) for a quick look"
    )
    _add(sim, "n_jobs", SimulateConfig)
    _add(sim, "force", help="overwrite an existing OUT_BIDS")
    sim.add_argument(
        "--phase",
        dest="with_phase",
        action="store_true",
        help="add a frontal-sinus B0 field and write part-phase echoes",
    )
    _add(sim, "anatomy", SimulateConfig)
    _add(sim, "sessions", SimulateConfig)
    _add(sim, "interval_years", SimulateConfig)
    _add(sim, "scanner_upgrade", SimulateConfig)
    _add(sim, "ventricle_margin_mm", SimulateConfig)
    sim.add_argument(
        "--t1w",
        dest="with_t1w",
        action="store_true",
        help="add a 1 mm T1-weighted image (sub-<label>_T1w)",
    )


def _demo_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap demo``."""
    from ..workflows.demo import run_demo

    demo = sub.add_parser(
        "demo",
        parents=[verbose],
        help=_COMMAND_HELP["demo"],
        description="Simulate a cohort, then run every stage that exists on it.",
    )
    demo.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    demo.add_argument("--quick", action="store_true", help="20 participants instead of 178")
    _add(demo, "n_jobs", run_demo)
    _add(demo, "anatomy", run_demo)
    _add(demo, "sessions", run_demo)
    _add(demo, "interval_years", run_demo)
    _add(demo, "force", help="overwrite an existing OUTPUT_DIR")
