"""Figures and reports (matplotlib, Agg backend: no display needed)."""

from .qc import qc_figure

__all__ = ["qc_figure"]
