"""The report's numbering of figures and tables (Figure 1, Table 2, Table S3), in the order
they appear; each numbered table is also kept as the texts of its TSV and HTML files
under ``group/tables/`` and each figure exported under ``group/figures/``.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..io.derivatives import group_figure_stem
from . import tables
from .style import embed, export


class _Numbers:
    """Numbered figures and tables, in the order they appear.

    Each numbered table is also kept as the texts of ``table<number>.tsv`` and ``.html``
    (:func:`~.tables.table_files`), written by :meth:`write_tables`.
    """

    def __init__(self, output_dir: Path | None = None) -> None:
        self.figures = 0
        self.tables: dict[str, int] = {}
        self.table_files: dict[str, tuple[str, str]] = {}
        #: Where Figure N is also written as SVG, PDF and PNG (group/figures/); None: nowhere.
        self.output_dir = output_dir
        self.labels: dict[str, str] = {}  # key given to table() -> "Table S2"

    def figure(self, made, caption: str, alt: str) -> str:
        if isinstance(made, str):  # why there is no figure
            return f"<p>{html.escape(made)}</p>"
        self.figures += 1
        png = None
        if self.output_dir is not None:
            png = export(made, group_figure_stem(self.output_dir, self.figures))
        return embed(made, html.escape(caption), self.figures, alt, png=png)

    def table(
        self, frame: pd.DataFrame, caption: str, *, kind: str = "", key: str = "", **kw
    ) -> str:
        self.tables[kind] = self.tables.get(kind, 0) + 1
        number = f"{kind}{self.tables[kind]}"
        if key:
            self.labels[key] = f"Table {number}"
        caption = f"<b>Table {number}.</b> {html.escape(caption)}"
        mark = kw.get("cell_class")
        self.table_files[f"table{number}"] = tables.table_files(
            frame, caption, bold=(lambda r, c: mark(r, c) == "sig") if mark else None
        )
        return tables.html_table(frame, caption, **kw)

    def write_tables(self, folder: str | Path | None) -> None:
        """Write every numbered table into ``folder`` (and nothing else stays there)."""
        if folder is not None:
            tables.write_table_files(folder, self.table_files)
