"""Figures and reports (matplotlib, Agg backend: no display needed)."""

from .qc import QCNumbers
from .qc_page import qc_figure, qc_page

__all__ = ["QCNumbers", "qc_figure", "qc_page"]
