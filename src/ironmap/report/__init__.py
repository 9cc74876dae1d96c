"""Figures and reports (matplotlib, Agg backend: no display needed)."""

from .qc import QCNumbers, qc_figure, qc_page

__all__ = ["QCNumbers", "qc_figure", "qc_page"]
