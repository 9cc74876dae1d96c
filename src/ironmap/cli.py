"""The ``ironmap`` command line. Only argument parsing lives here; work is in ``workflows``."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import IronmapError

__all__ = ["main"]

_DESCRIPTION = """\
ironmap: R2* (1/T2*) mapping of brain iron from multi-echo gradient-echo MRI, for
multiple-sclerosis cohort studies (after Ropele et al., Mult Scler 2014).

Echo times are in seconds, R2* in 1/s, volumes in mL."""

_EPILOG = """\
examples:
  ironmap fit mag.nii.gz --te 0.004 0.008 0.012 -o out/sub-01
  ironmap fit --bids-echoes sub-01/anat/sub-01_echo-*_part-mag_MEGRE.nii.gz -o out/sub-01
  ironmap demo demo_out/"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _default(owner: Any, name: str) -> Any:
    """The library's default of option ``name``: a dataclass field or a keyword argument."""
    if dataclasses.is_dataclass(owner):
        return {f.name: f.default for f in dataclasses.fields(owner)}[name]
    return inspect.signature(owner).parameters[name].default


def _options() -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    """Every option shared by several commands, defined once: dest -> (flags, argparse spec).

    Choices come from the library (imported here, when the parser is built).
    """
    from .defaults import B0_CORRECTIONS
    from .fitting import public_methods

    return {
        "force": (
            ("--force",),
            {"action": "store_true", "help": "recompute and overwrite outputs"},
        ),
        "n_jobs": (("--n-jobs",), {"type": int, "metavar": "N", "help": "parallel workers"}),
        "fit_method": (
            ("--fit-method", "--method"),
            {
                "choices": public_methods(),
                "help": "R2* estimator (auto: noise-floor aware; docs/fitting.md)",
            },
        ),
        "b0_correction": (
            ("--b0-correction",),
            {
                "choices": B0_CORRECTIONS,
                "help": "correct R2* for macroscopic field gradients when phase echoes exist "
                "(--phase, or part-phase siblings of the magnitudes; docs/fitting.md)",
            },
        ),
    }


def _add(parser: argparse.ArgumentParser, dest: str, owner: Any = None, **override: Any) -> None:
    """Add shared option ``dest`` with its default taken from ``owner`` (config or function)."""
    flags, spec = _options()[dest]
    spec = {**spec, **override}
    if owner is not None and spec.get("action") != "store_true":
        spec["default"] = _default(owner, dest)
        spec["help"] += f" (default: {spec['default']})"
    parser.add_argument(*flags, dest=dest, **spec)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    Choices and defaults come from the library's configs (:class:`~.workflows.fit.FitConfig`,
    :class:`~.workflows.participant.ParticipantConfig`, ...), which also validate the values.
    """
    parser = argparse.ArgumentParser(
        prog="ironmap",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ironmap {__version__}")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="report progress"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="report progress")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_fit_parser, _run_parser, _simulate_parser, _demo_parser):
        add(sub, verbose)
    return parser


def _fit_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap fit``."""
    from .workflows.fit import FitConfig

    fit = sub.add_parser(
        "fit",
        parents=[verbose],
        help="R2*, T2*, S0 and SD maps from one multi-echo acquisition",
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
        help="4D magnitude NIfTI, echoes on axis 4",
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
        help="4D phase image (radians) matching MAG, for the field-gradient correction",
    )
    _add(fit, "b0_correction", FitConfig)
    _add(fit, "fit_method", FitConfig)
    _add(fit, "force")


def _run_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap run`` (participant and group stages)."""
    from .defaults import MIN_FRACTION
    from .iron import CALIBRATIONS
    from .segmentation.strategies import SEGMENTATIONS
    from .workflows.participant import ParticipantConfig

    run = sub.add_parser(
        "run",
        parents=[verbose],
        help="BIDS-App: per-participant maps and regional R2*, or the group statistics",
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
        help="derivatives datasets holding segmentations and lesion masks",
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
    run.add_argument(
        "--segmentation",
        choices=SEGMENTATIONS,
        default=_default(ParticipantConfig, "segmentation"),
        help="auto: use the dseg when present (else maps only); atlas: register the bundled "
        "atlas to the T1w (else the first echo) and refine iron-rich nuclei on R2*, writing "
        "desc-ironmap_dseg (needs ironmap[atlas]; see docs/atlas.md); none: maps only",
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
    _add(run, "fit_method", ParticipantConfig)
    _add(run, "force")


def _simulate_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap simulate``."""
    from .workflows.simulate import ANATOMIES, SimulateConfig

    sim = sub.add_parser(
        "simulate",
        parents=[verbose],
        help="write a synthetic multicentre MS cohort (BIDS) with known ground truth",
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
    sim.add_argument(
        "--anatomy",
        choices=ANATOMIES,
        default=_default(SimulateConfig, "anatomy"),
        help="phantom: ellipsoid head phantom; atlas: the bundled atlas randomly deformed per "
        "subject (needs ironmap[atlas]; for testing --segmentation atlas)",
    )
    sim.add_argument(
        "--t1w",
        dest="with_t1w",
        action="store_true",
        help="add a 1 mm T1-weighted image (sub-<label>_T1w)",
    )


def _demo_parser(sub: Any, verbose: argparse.ArgumentParser) -> None:
    """The options of ``ironmap demo``."""
    from .workflows.demo import run_demo

    demo = sub.add_parser(
        "demo",
        parents=[verbose],
        help="run the whole study on a synthetic cohort and print where the results are",
        description="Simulate a cohort, then run every stage that exists on it.",
    )
    demo.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR")
    demo.add_argument("--quick", action="store_true", help="20 participants instead of 178")
    _add(demo, "n_jobs", run_demo)
    _add(demo, "force", help="overwrite an existing OUTPUT_DIR")


def _config(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """``cls(**values)`` plus every argument whose name is a field of ``cls``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    return cls(**{**given, **values})


def _cmd_fit(args: argparse.Namespace) -> int:
    from .workflows.fit import FitConfig, run_fit

    written = run_fit(
        _config(
            FitConfig,
            args,
            output_prefix=args.output,
            echo_times=tuple(args.te) if args.te else None,
            bids_echoes=tuple(args.bids_echoes) if args.bids_echoes else None,
        )
    )
    print(f"wrote {len(written)} maps: {written[0].parent}/{args.output.name}_*.nii.gz")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Exit status: 0 all done or skipped, 1 some participants failed, 2 (raised) usage/input."""
    if args.analysis_level == "group":
        from .io.derivatives import GROUP_DIR
        from .workflows.group import GroupConfig, run_group

        result = run_group(
            GroupConfig(bids_dir=args.bids_dir, output_dir=args.output_dir, force=args.force)
        )
        if result.skipped:
            print(
                f"group stage: outputs in {args.output_dir / GROUP_DIR} are up to date (same "
                "inputs and options); nothing recomputed (--force to recompute); "
                f"report: {result.report}"
            )
        else:
            print(f"group tables: {args.output_dir / GROUP_DIR}; report: {result.report}")
        return 0
    from .workflows.participant import (
        ParticipantConfig,
        needs_attention,
        run_participant,
        summary,
        summary_table,
    )

    results = run_participant(
        _config(
            ParticipantConfig,
            args,
            participant_labels=tuple(args.participant_label or ()),
            derivatives=tuple(args.derivatives or ()),
        )
    )
    for result in results:
        for message in result.warnings:
            print(f"ironmap: warning: {message}", file=sys.stderr)
        if result.status == "failed":
            print(f"ironmap: error: {result.name}: {result.error}", file=sys.stderr)
    if args.verbose or len(results) > 1 or needs_attention(results):
        print(summary_table(results).round(2).to_string(index=False))
    print(f"participant stage: {summary(results)}; outputs in {args.output_dir}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .workflows.simulate import QUICK_COHORT, SimulateConfig, run_simulate

    n_hc, n_ms = QUICK_COHORT if args.quick else (args.n_hc, args.n_ms)
    truth = run_simulate(_config(SimulateConfig, args, n_hc=n_hc, n_ms=n_ms))
    print(f"wrote the BIDS cohort {args.out_bids} and its ground truth {truth}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .workflows.demo import run_demo

    failed = run_demo(args.output_dir, quick=args.quick, n_jobs=args.n_jobs, force=args.force)
    return 1 if failed else 0


_COMMANDS = {"fit": _cmd_fit, "run": _cmd_run, "simulate": _cmd_simulate, "demo": _cmd_demo}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).splitlines()[0] if str(message) else category.__name__
    print(f"ironmap: warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ironmap`` command; returns the exit status.

    0: everything done (or up to date and skipped); 1: some participants failed (each named on
    standard error, the count in the summary line); 2: a usage or input error (one line).
    """
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("ironmap")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ironmap: %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logger.propagate = False
    with warnings.catch_warnings():  # restores the caller's filters and showwarning
        warnings.simplefilter("default")
        warnings.showwarning = _one_line_warning
        try:
            return _COMMANDS[args.command](args)
        except IronmapError as exc:
            print(f"ironmap: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # one line naming the file, never a traceback
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"ironmap: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
