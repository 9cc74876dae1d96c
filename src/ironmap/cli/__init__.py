"""The ``ironmap`` command line: argument parsing (:mod:`.parser`) and printing; the work is
in ``workflows``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import IronmapError, IronmapWarning
from ..parallel.progress import progress_output
from .parser import build_parser

__all__ = ["build_parser", "main"]


def _config(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """``cls(**values)`` plus every argument whose name is a field of ``cls``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in fields}
    return cls(**{**given, **values})


def _cmd_fit(args: argparse.Namespace) -> int:
    from ..workflows.fit import FitConfig, run_fit

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
        from ..io.derivatives import GROUP_DIR
        from ..workflows.group import GroupConfig, run_group

        result = run_group(
            GroupConfig(
                bids_dir=args.bids_dir,
                output_dir=args.output_dir,
                force=args.force,
                min_voxels=args.min_voxels,
            )
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
    from ..workflows.participant import (
        ParticipantConfig,
        needs_attention,
        run_participant,
        summary,
        summary_table,
        warning_lines,
    )

    results = run_participant(
        _config(
            ParticipantConfig,
            args,
            participant_labels=tuple(args.participant_label or ()),
            derivatives=tuple(args.derivatives or ()),
        )
    )
    for line in warning_lines(results, verbose=args.verbose):
        print(f"ironmap: warning: {line}", file=sys.stderr)
    for result in results:
        if result.status == "failed":
            print(f"ironmap: error: {result.name}: {result.error}", file=sys.stderr)
    if args.verbose or len(results) > 1 or needs_attention(results):
        print(summary_table(results).round(2).to_string(index=False))
    print(f"participant stage: {summary(results)}; outputs in {args.output_dir}")
    return 1 if any(r.status == "failed" for r in results) else 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ..workflows.simulate import QUICK_COHORT, SimulateConfig, run_simulate

    n_hc, n_ms = QUICK_COHORT if args.quick else (args.n_hc, args.n_ms)
    truth = run_simulate(_config(SimulateConfig, args, n_hc=n_hc, n_ms=n_ms))
    print(f"wrote the BIDS cohort {args.out_bids} and its ground truth {truth}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..workflows.demo import run_demo

    failed = run_demo(
        args.output_dir,
        quick=args.quick,
        n_jobs=args.n_jobs,
        force=args.force,
        anatomy=args.anatomy,
        sessions=args.sessions,
        interval_years=args.interval_years,
    )
    return 1 if failed else 0


_COMMANDS = {"fit": _cmd_fit, "run": _cmd_run, "simulate": _cmd_simulate, "demo": _cmd_demo}


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = str(message).splitlines()[0] if str(message) else category.__name__
    if not issubclass(category, IronmapWarning):  # not ours (numpy's...): say where it arose
        where = Path(filename)
        parts = where.parts[where.parts.index("ironmap") :] if "ironmap" in where.parts else ()
        text += f" ({category.__name__} at {'/'.join(parts) or where.name}:{lineno})"
    print(f"ironmap: warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ironmap`` command; returns the exit status.

    0: everything done (or up to date and skipped); 1: some participants failed (each named on
    standard error, the count in the summary line); 2: a usage or input error (one line).
    """
    if list(sys.argv[1:] if argv is None else argv) == ["--version"]:
        # answered before the parser, which imports the whole library for its defaults
        from .. import __version__

        print(f"ironmap {__version__}")
        return 0
    given = list(sys.argv[1:] if argv is None else argv)
    # only the command given gets its options (which import the library): a fast --help
    command = next((a for a in given if not a.startswith("-")), None)
    args = build_parser(commands=[command] if command in _COMMANDS else []).parse_args(argv)
    logger = logging.getLogger("ironmap")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ironmap: %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    logger.propagate = False
    # the progress line: on a terminal, unless -q, or -v (which logs it instead)
    display = False if args.quiet or args.verbose else None
    with warnings.catch_warnings(), progress_output(enabled=display):
        warnings.simplefilter("default")  # catch_warnings restores filters and showwarning
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
