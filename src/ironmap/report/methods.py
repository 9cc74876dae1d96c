"""The report's Methods paragraphs, written from what was run.

Acquisition and processing come from ``group/participant_qc.tsv`` (the participants' sidecars,
NIfTI headers and provenance options); harmonisation from ``group/harmonization.json``; the age
model per region from ``group/age_model.tsv``; the statistics from the group tables. An option
that differs between participants is stated with the count of each value. References are listed
in the order they are first cited, only those cited.

This module assembles the paragraphs (:func:`methods`) and writes them with their references;
each paragraph is built in its own module (:mod:`.methods_acquisition`, :mod:`.methods_regions`,
:mod:`.methods_qsm`, :mod:`.methods_statistics`) and the reference list lives in
:mod:`.references`.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..cohort.compare import MS_LABELS
from ..io import atomic_write_bytes
from ..io.derivatives import METHODS_MD, REFERENCES_BIB, group_path
from .methods_acquisition import _acquisition
from .methods_qsm import _qsm
from .methods_regions import _regions
from .methods_statistics import _harmonisation, _statistics
from .references import REFERENCES, Reference, _Citations
from .style import labels

__all__ = ["REFERENCES", "Methods", "Reference", "methods", "methods_html", "write_methods"]


def _participants(flow: pd.DataFrame) -> str:
    label = labels(flow)
    analysed = flow["status"] == "analysed"
    counts = label[analysed].value_counts()
    ms = int(label[analysed].isin(MS_LABELS).sum())
    phen = ", ".join(f"{g} {counts[g]}" for g in ("RRMS", "SPMS", "PPMS", "MS") if g in counts)
    text = (
        f"Of {len(flow)} participants listed at {flow['site'].nunique()} sites, "
        f"{int(analysed.sum())} were analysed: {int(counts.get('HC', 0))} healthy controls, "
        f"{ms} patients with clinically definite MS ({phen})"
        + (f" and {int(counts['CIS'])} with CIS" if "CIS" in counts else "")
        + "."
    )
    excluded = flow[~analysed]
    if len(excluded):
        kinds = excluded["reason"].str.split(":").str[0].value_counts()
        verb = "was" if len(excluded) == 1 else "were"
        text += (
            f" {len(excluded)} {verb} excluded ("
            + "; ".join(f"{html.escape(k)}: {n}" for k, n in kinds.items())
            + ")."
        )
    return text


@dataclass(frozen=True)
class Methods:
    """The Methods as paragraphs and the references they cite, for the report, Markdown and
    BibTeX.

    Attributes
    ----------
    paragraphs : tuple of str
        Plain sentences, HTML-escaped (no tags).
    keys : tuple of str
        The cited :data:`REFERENCES` keys, in order of first citation.
    """

    paragraphs: tuple[str, ...]
    keys: tuple[str, ...]

    def html(self) -> str:
        """The report's section: ``<div class='methods'>`` with paragraphs and references."""
        body = "".join(f"<p>{p}</p>" for p in self.paragraphs)
        items = "".join(f"<li>{html.escape(REFERENCES[k].text)}</li>" for k in self.keys)
        return (
            f"<div class='methods'>{body}<h3>References</h3><ol class='small'>{items}</ol></div>"
        )

    def markdown(self) -> str:
        """``group/methods.md``: the same paragraphs, then the references with their DOI and
        their key in ``group/references.bib`` (``[@key]``)."""
        refs = []
        for n, key in enumerate(self.keys, start=1):
            ref = REFERENCES[key]
            doi = f" https://doi.org/{ref.doi}" if ref.doi else ""
            refs.append(f"{n}. {ref.text}{doi} [@{key}]")
        return (
            "## Methods\n\n"
            + "".join(f"{html.unescape(p)}\n\n" for p in self.paragraphs)
            + f"## References\n\nBibTeX: {REFERENCES_BIB} (keys in brackets).\n\n"
            + "\n".join(refs)
            + "\n"
        )

    def bibtex(self) -> str:
        """``group/references.bib``: exactly the cited references, in citation order."""
        return "\n".join(REFERENCES[k].bibtex(k) for k in self.keys)


def methods(
    qc: pd.DataFrame,
    *,
    flow: pd.DataFrame,
    age_model: pd.DataFrame,
    harmonization: dict | None,
    comparison_mixed: pd.DataFrame,
    determinants: pd.DataFrame,
    version: str,
    mixed_table: str | None = None,
    min_voxels: str = "",
) -> Methods:
    """The Methods written from what was run.

    Parameters
    ----------
    qc : pandas.DataFrame
        ``group/participant_qc.tsv`` (what was acquired and run, per participant); its
        analysed participants are described.
    flow, age_model, comparison_mixed, determinants : pandas.DataFrame
        The group tables of the same names.
    harmonization : dict or None
        ``group/harmonization.json``.
    version : str
        ironmap's version.
    mixed_table : str, optional
        The label of the report's table of the mixed-model sensitivity analysis (e.g.
        ``"Table S2"``); the Methods describe that analysis only with it (the report shows
        the table only when it has rows).
    min_voxels : str
        The minimum-voxel rule's sentence (:func:`ironmap.report.analyses.min_voxel_methods`),
        added to the regions paragraph; '' for none.

    Returns
    -------
    Methods
        The paragraphs and the cited references' keys, in citation order.
    """
    cite = _Citations()
    analysed = set(flow.loc[flow["status"] == "analysed", "participant_id"])
    qc = qc[qc["participant_id"].isin(analysed)] if len(qc) else qc
    paragraphs = [
        f"Deep grey-matter R2* was measured as in {cite('ropele')}, with ironmap {version}. "
        + _participants(flow),
    ]
    if len(qc):
        paragraphs += [_acquisition(qc, cite), _regions(qc, cite) + min_voxels, _qsm(qc, cite)]
    paragraphs += [
        _harmonisation(age_model, harmonization, cite),
        _statistics(comparison_mixed, determinants, cite, mixed_table),
    ]
    return Methods(tuple(p for p in paragraphs if p), tuple(cite.keys))


def methods_html(qc: pd.DataFrame, **options) -> str:
    """The Methods section as HTML paragraphs and the numbered references (:func:`methods`,
    the same keyword-only options)."""
    return methods(qc, **options).html()


def write_methods(output_dir: str | Path, text: Methods) -> list[Path]:
    """Write ``group/methods.md`` and ``group/references.bib`` (atomically) of ``OUTPUT_DIR``.

    Returns
    -------
    list of Path
        The two files.
    """
    paths = [group_path(output_dir, METHODS_MD), group_path(output_dir, REFERENCES_BIB)]
    for path, content in zip(paths, (text.markdown(), text.bibtex()), strict=True):
        atomic_write_bytes(path, content.encode("utf-8"))
    return paths
