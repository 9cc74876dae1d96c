"""The options shared by several ``ironmap`` commands, defined once (flags, help, type,
choices), and how a command adds one with its default read from the library (a config
dataclass field or a keyword argument).

Choices are imported from the library only when the options are built (a command's
parser), never at import: ``ironmap --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from typing import Any


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
    from ..defaults import B0_CORRECTIONS, SIGMA_MAPS
    from ..fitting import public_methods
    from ..workflows.simulate import ANATOMIES

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
        "anatomy": (
            ("--anatomy",),
            {
                "choices": ANATOMIES,
                "help": "phantom: ellipsoid head phantom (fast); atlas: the bundled atlas "
                "randomly deformed per subject, heads that look like brains (needs "
                "ironmap[atlas]; about 4 CPU-seconds more per subject)",
            },
        ),
        "sessions": (
            ("--sessions",),
            {
                "type": int,
                "metavar": "N",
                "help": "sessions per participant: the same heads scanned N times, R2* changing "
                "with ageing and, in MS, disease duration and EDSS (ses-01 ... with "
                "sub-<label>_sessions.tsv; 1: no ses- folders)",
            },
        ),
        "interval_years": (
            ("--interval-years",),
            {
                "type": _positive_float,
                "metavar": "Y",
                "help": "mean years between sessions (each interval x U(0.8, 1.2))",
            },
        ),
        "scanner_upgrade": (
            ("--scanner-upgrade",),
            {
                "metavar": "SITE:DATE:FACTOR",
                "help": "with --sessions: a scanner upgrade at SITE on DATE (YYYY-MM-DD) that "
                "multiplies the R2* of its later sessions by FACTOR (e.g. 1.03); the sessions "
                "files name the scanner (scanner column)",
            },
        ),
        "ventricle_margin_mm": (
            ("--ventricle-margin",),
            {
                "type": float,
                "metavar": "MM",
                "help": "periventricular atrophy: each participant's lateral ventricles grow "
                "into caudate, thalamus and white matter by up to MM mm, in proportion to its "
                "atrophy (disease duration, EDSS, age; the true labels follow; 0 to 6)",
            },
        ),
        "coils": (
            ("--coils",),
            {
                "type": int,
                "metavar": "N",
                "help": "receive channels combined by root-sum-of-squares (noncentral-chi "
                "noise; 1 = Rician, also for adaptive-combine or SENSE data); default: "
                "estimated from the image background, 1 without one (docs/fitting.md)",
            },
        ),
        "sigma_map": (
            ("--sigma-map",),
            {
                "choices": SIGMA_MAPS,
                "help": "off: one noise sigma for the image; local: a noise map from the local "
                "spread of the fit residuals, for noise that varies in space (parallel-imaging "
                "g-factor; needs >= 3 echoes; docs/fitting.md)",
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
