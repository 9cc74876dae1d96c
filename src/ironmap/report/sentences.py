"""Sentence helpers of the Methods: a list of names joined in prose, and one sentence for
an option that every participant shares or the count of each value when it differs.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def _join(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _counts(values: pd.Series) -> list[tuple[object, int]]:
    counts = values.dropna().astype(str).value_counts()
    return list(counts.items())


def _differs(values: pd.Series, what: str, say, sentence) -> str:
    """One sentence: ``sentence(say(value))`` when everyone shares one value, else ``what``
    "differed between participants" with each ``say(value)`` and its count."""
    counts = _counts(values)
    missing = int(values.isna().sum())
    note = f" (not recorded for {missing} participants)" if missing and counts else ""
    if not counts:
        return f"{what} was not recorded."
    if len(counts) == 1:
        return sentence(say(counts[0][0])) + note + "."
    parts = [f"{say(v)} (n = {n})" for v, n in counts]
    return f"{what} differed between participants: " + "; ".join(parts) + note + "."
