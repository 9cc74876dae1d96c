"""Rendering a table of display strings: the report's HTML table (:func:`html_table`), and
the same cells as a TSV and a plain HTML fragment to paste into a manuscript
(:func:`table_files`, written by :func:`write_table_files`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_bytes
from .formats import flat


def html_table(
    frame: pd.DataFrame,
    caption: str = "",
    *,
    left: int = 1,
    text: tuple[str, ...] = (),
    cell_class: Callable[[int, str], str] | None = None,
    css: str = "",
) -> str:
    """An HTML table of display strings: escaped, newlines as ``<br>``, NaN as empty.

    ``caption`` is HTML. The ``left`` first columns and the columns named in ``text`` are
    left-aligned text that may wrap; ``cell_class(row, column) -> str`` may give a cell a CSS
    class (``flag``, ``sig``); ``css`` is the table's class.
    """

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        return html.escape(str(value)).replace("\n", "<br>")

    is_text = [i < left or c in text for i, c in enumerate(frame.columns)]
    head = "".join(
        f"<th class='text'>{cell(c)}</th>" if t and i > 0 else f"<th>{cell(c)}</th>"
        for i, (c, t) in enumerate(zip(frame.columns, is_text, strict=True))
    )
    body = []
    for r, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for i, (column, value) in enumerate(zip(frame.columns, row, strict=True)):
            classes = ["text"] if is_text[i] and i > 0 else []  # CSS: first column is text
            extra = cell_class(r, column) if cell_class else ""
            classes += [extra] if extra else []
            attr = f" class='{' '.join(classes)}'" if classes else ""
            cells.append(f"<td{attr}>{cell(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<p class='caption'>{caption}</p>" if caption else ""
    klass = f" class='{css}'" if css else ""
    table = f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"{cap}<div class='scroll'>{table}</div>"


def _cell_html(value) -> str:
    """A cell's HTML: escaped, newlines as ``<br>``, NaN empty (as :func:`html_table`)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.escape(str(value)).replace("\n", "<br>")


def fragment_table(
    frame: pd.DataFrame, caption: str = "", *, bold: Callable[[int, str], bool] | None = None
) -> str:
    """A plain HTML ``<table>`` of ``frame`` for a word processor or an HTML-to-LaTeX converter.

    No classes or styles: ``<caption>`` (``caption`` is HTML), ``<thead>``/``<tbody>``, line
    breaks as ``<br>``, and ``<b>`` around the cells ``bold(row, column)`` marks.
    """
    head = "".join(f"<th>{_cell_html(c)}</th>" for c in frame.columns)
    body = []
    for r, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for column, value in zip(frame.columns, row, strict=True):
            text = _cell_html(value)
            strong = bool(bold and text and bold(r, column))
            cells.append(f"<td><b>{text}</b></td>" if strong else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    rows = "\n".join(body)
    return f"<table>\n{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>\n"


def table_files(
    frame: pd.DataFrame, caption: str = "", *, bold: Callable[[int, str], bool] | None = None
) -> tuple[str, str]:
    """The TSV text (cells and headers by :func:`flat`, no index) and the HTML fragment
    (:func:`fragment_table`) of one report table: the same cells as the report shows."""
    cells = frame.map(flat) if len(frame.columns) else frame
    cells.columns = [flat(c) for c in frame.columns]
    return cells.to_csv(sep="\t", index=False, lineterminator="\n"), fragment_table(
        frame, caption, bold=bold
    )


def write_table_files(folder: str | Path, files: dict[str, tuple[str, str]]) -> list[Path]:
    """Write ``<name>.tsv`` and ``<name>.html`` per entry of ``files`` (name -> the texts of
    :func:`table_files`) into ``folder``, each atomically, then remove every other file there
    (the folder is ironmap's: a table of an earlier run does not survive).

    Returns the paths written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (tsv, fragment) in files.items():
        for suffix, text in ((".tsv", tsv), (".html", fragment)):
            path = folder / f"{name}{suffix}"
            atomic_write_bytes(path, text.encode("utf-8"))
            written.append(path)
    for path in folder.iterdir():
        if path not in written and path.is_file():
            path.unlink()
    return written
