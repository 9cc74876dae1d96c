"""Exceptions raised by ironmap.

Every message is one line that says what is wrong and how to fix it, naming the file when a
file is involved; the command line prints it without a traceback.
"""

from __future__ import annotations


class IronmapError(Exception):
    """Base class of every error ironmap raises on purpose."""


class InputError(IronmapError, ValueError):
    """The user's input (file, echo times, option) cannot be used as given."""


class IronmapWarning(UserWarning):
    """Something was computed, but not everywhere or not as asked (e.g. voxels set to NaN)."""
