"""The one format of the numbers in the report's tables: every estimate, CI bound, Cohen's
d and test statistic with :data:`DECIMALS` decimals (:func:`fmt_number`,
:func:`fmt_ci`), every p-value as :func:`fmt_p` writes it, and a cell on one line for a
TSV (:func:`flat`).
"""

from __future__ import annotations

import numpy as np

from ..cohort.stats import ALPHA

#: Decimals of every estimate, CI bound, Cohen's d and test statistic in the report's tables.
DECIMALS = 2
#: p-values below this are shown as ``<0.001``.
P_FLOOR = 0.001


def fmt_number(value: float, decimals: int = DECIMALS) -> str:
    """``value`` with ``decimals`` decimals (``0.00``, never ``-0.00``); ``n/a`` if not finite."""
    if value is None or not np.isfinite(value):
        return "n/a"
    text = f"{value:.{decimals}f}"
    return text.removeprefix("-") if float(text) == 0 else text


def fmt_ci(estimate: float, low: float, high: float, *, decimals: int = DECIMALS) -> str:
    """``estimate [low, high]``, each by :func:`fmt_number`: ``-0.23 [-0.46, 0.01]``."""
    numbers = (fmt_number(v, decimals) for v in (estimate, low, high))
    return "{} [{}, {}]".format(*numbers)


def fmt_p(p: float) -> str:
    """A p-value: ``<0.001`` below :data:`P_FLOOR`, else 2 significant digits (``0.013``,
    ``0.10``), 3 where 2 would round a p below the significance level up to it (``0.0496``);
    ``n/a`` if not finite."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p < P_FLOOR:
        return f"<{P_FLOOR:g}"
    text = f"{p:#.2g}"
    return f"{p:#.3g}" if float(text) >= ALPHA > p else text


def p_is(name: str, p: float) -> str:
    """``p_FDR = 0.013``, ``p_FDR < 0.001`` or ``p_FDR n/a``: a named p-value in a cell."""
    text = fmt_p(p)
    if text.startswith("<"):
        return f"{name} < {text[1:]}"
    return f"{name} n/a" if text == "n/a" else f"{name} = {text}"


def flat(text) -> str:
    """A cell or header on one line, for a TSV: line breaks become ``; ``; NaN empty."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return ""
    return "; ".join(str(text).split("\n"))
