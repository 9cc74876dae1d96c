"""Where every output lives, and how its tables are written and read (docs/conventions.md).

One home for the names of ironmap's derivatives dataset: the participant stage writes through
:class:`ParticipantOutputs`, the group stage through :func:`group_path` and :data:`REPORT`, and
the group table collector finds the participant tables with :func:`find_participant_tables`.
Tables are BIDS TSV (:func:`write_tsv`, :func:`read_tsv`): tab-separated, ``n/a`` for missing,
each with a JSON sidecar describing its columns (from :mod:`.columns`). What BIDS has no rule for
yet is listed in ``OUTPUT_DIR/.bidsignore`` (:func:`.dataset.write_bidsignore`).

Layout of ``OUTPUT_DIR``::

    dataset_description.json
    .bidsignore              (:data:`BIDSIGNORE`: what BIDS has no rule for yet)
    .ironmap.lock            (only while a stage runs: :data:`LOCK`, see :mod:`.lock`)
    sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>]_<suffix>   (ParticipantOutputs)
    sub-<label>/figures/sub-<label>[_ses-<label>]_desc-qc_R2starmap.png
    sub-<label>/figures/sub-<label>[_ses-<label>]_desc-registration_qc.png   (registered dseg)
    group/<table>.tsv (+ <table>.json), group/harmonization.json, group/provenance.json
    group/tables/table<number>.tsv and .html   (:data:`GROUP_TABLES_DIR`: the report's tables)
    group/figures/figure<N>.svg, .pdf, .png   (the report's figures: :func:`group_figure_stem`)
    report.html
    qc/index.html            (:data:`QC_INDEX`: every participant's QC page, with flags)

ironmap writes only into a missing or empty folder or its own derivatives dataset, never inside
the input dataset (:func:`.dataset.check_output_dir`). Resume compares provenance records by
content (:func:`.provenance.provenance_changes`): inputs by file name and SHA-256, options key by
key.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from .bids import session_name
from .columns import round_table, table_sidecar
from .maps import atomic_write_bytes, decay_map_paths, write_json
from .provenance import describe_changes, provenance_changes, sha256

__all__ = [
    "BIDSIGNORE",
    "DATASET_DESCRIPTION",
    "GROUP_DIR",
    "GROUP_FIGURES_DIR",
    "GROUP_PROVENANCE",
    "GROUP_TABLES",
    "GROUP_TABLES_DIR",
    "HARMONIZATION_JSON",
    "LOCK",
    "METHODS_MD",
    "OUTPUTS",
    "QC_INDEX",
    "REFERENCES_BIB",
    "REPORT",
    "ParticipantOutputs",
    "clear_group_figures",
    "describe_changes",
    "find_participant_tables",
    "group_figure_stem",
    "group_outputs",
    "group_path",
    "lock_path",
    "outputs_markdown",
    "provenance_changes",
    "read_tsv",
    "report_outputs",
    "sha256",
    "table_kind",
    "tsv_sidecar_path",
    "write_tsv",
]

DATASET_DESCRIPTION = "dataset_description.json"
GROUP_DIR = "group"
REPORT = "report.html"
#: The group stage's QC overview, linking every participant's QC page (``OUTPUT_DIR/qc/``).
QC_INDEX = "qc/index.html"
#: Held while a stage writes ``OUTPUT_DIR`` (:func:`ironmap.io.lock.output_lock`).
LOCK = ".ironmap.lock"
#: The group stage's record of its inputs' checksums and options, beside its tables.
GROUP_PROVENANCE = "provenance.json"

#: Tables of ``OUTPUT_DIR/group/``: key (attribute of the group stage's result) -> file name.
GROUP_TABLES: dict[str, str] = {
    "regions": "regions.tsv",
    "subjects": "subjects.tsv",
    "flow": "participant_flow.tsv",
    "age_model": "age_model.tsv",
    "harmonization": "harmonization.tsv",
    "comparison": "group_comparison.tsv",
    "comparison_mixed": "group_comparison_mixed.tsv",
    "determinants": "determinants.tsv",
    "participant_qc": "participant_qc.tsv",
    "longitudinal": "longitudinal.tsv",
    "longitudinal_sessions": "longitudinal_sessions.tsv",
    "lesion_models": "lesion_models.tsv",
    # the same analyses on regional susceptibility (chi_median), when the participants have it
    "age_model_chi": "age_model_chi.tsv",
    "harmonization_chi": "harmonization_chi.tsv",
    "comparison_chi": "group_comparison_chi.tsv",
    "comparison_mixed_chi": "group_comparison_mixed_chi.tsv",
    "determinants_chi": "determinants_chi.tsv",
}
#: Folder of ``OUTPUT_DIR/group/`` with the report's numbered tables, ready to paste:
#: ``table<number>.tsv`` (the cells) and ``table<number>.html`` (a plain HTML fragment).
GROUP_TABLES_DIR = "tables"
#: Folder of the report's figures as print files (SVG, PDF, 300-dpi PNG) in ``group/``.
GROUP_FIGURES_DIR = "figures"
#: Figure N of the report: ``figure<N>.<ext>`` in :data:`GROUP_FIGURES_DIR`.
_GROUP_FIGURE = "figure{number}"
_GROUP_FIGURE_EXTENSIONS = (".svg", ".pdf", ".png")
#: The harmonisation model's description beside its table.
HARMONIZATION_JSON = "harmonization.json"
#: The report's Methods as Markdown, and the BibTeX of exactly the references it cites
#: (``OUTPUT_DIR/group/``, written with the report).
METHODS_MD = "methods.md"
REFERENCES_BIB = "references.bib"

#: Participant-stage tables the group stage collects: kind -> file-name suffix.
_TABLES = {"regions": "regions.tsv", "volumes": "volumes.tsv", "lesions": "lesions.tsv"}
#: Suffix of the participant provenance record.
_PROVENANCE = "provenance.json"
#: Folder of each participant's figures, beside its ``anat/``.
_FIGURES = "figures"
#: Susceptibility map (QSM) of the participant stage, on the R2* grid.
_CHIMAP = "Chimap.nii.gz"
#: Label table of a segmentation (BIDS ``dseg.tsv``).
_DSEG_TSV = "dseg.tsv"

#: Lists, in ``OUTPUT_DIR``, what the BIDS validator should skip (gitignore syntax).
BIDSIGNORE = ".bidsignore"


_SUB = "sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>]"
_G = {key: f"{GROUP_DIR}/{name}" for key, name in GROUP_TABLES.items()}
#: Every file ironmap writes into ``OUTPUT_DIR``: path pattern -> one line on what it holds.
#: The README's output list is generated from it (:func:`outputs_markdown`, checked by
#: ``tests/test_hygiene.py``): a new output gets its line here. Columns: docs/conventions.md.
OUTPUTS: dict[str, str] = {
    DATASET_DESCRIPTION: "the derivatives dataset (BIDS): ironmap's version, the input dataset",
    BIDSIGNORE: "what the BIDS validator should skip (outputs BIDS has no rule for yet)",
    f"{_SUB}_R2starmap.nii.gz": "R2* map (1/s), JSON sidecar with the echo times and sources",
    f"{_SUB}_T2starmap.nii.gz": "T2* map (s)",
    f"{_SUB}_S0map.nii.gz": "signal extrapolated to TE = 0",
    f"{_SUB}_desc-sd_R2starmap.nii.gz": "per-voxel SD of R2* (Cramer-Rao bound, 1/s)",
    f"{_SUB}_desc-failed_mask.nii.gz": "1 where the fit failed (the maps are NaN there)",
    f"{_SUB}_{_CHIMAP}": "with phase echoes or an external Chimap (--qsm auto): magnetic "
    "susceptibility (ppm, NaN outside its mask), JSON sidecar with the QSM methods and reference",
    f"{_SUB}_desc-ironmap_dseg.nii.gz": "with --segmentation atlas: the segmentation made "
    "(+ .tsv of its labels)",
    f"{_SUB}_{_TABLES['regions']}": "median/mean/IQR R2* per structure and hemisphere, NAWM "
    "and lesions, with voxel counts and CSF-excluded voxels",
    f"{_SUB}_{_TABLES['volumes']}": "ICV, brain, cortical GM, NBV, lesion volume and count",
    f"{_SUB}_{_TABLES['lesions']}": "one row per lesion: volume, centroid, location, core/rim R2*",
    f"{_SUB}_{_PROVENANCE}": "inputs' checksums, options and timings (resume)",
    f"sub-<label>/{_FIGURES}/sub-<label>[_ses-<label>]_desc-qc_R2starmap.png": "QC page: "
    "R2* with the structures outlined, magnitude, lesions, SN/RN insets (+ a self-contained "
    ".html with its numbers and voxel counts)",
    f"sub-<label>/{_FIGURES}/sub-<label>[_ses-<label>]_desc-registration_qc.png": "when the "
    "segmentation was registered to the GRE: its labels on the first echo before and after",
    _G["regions"]: "every participant's regional R2*, harmonised, age-corrected and z-scored",
    _G["subjects"]: "participants with clinical and MRI covariates, analysed or not",
    _G["flow"]: "participant flow: analysed or excluded, and why",
    _G["age_model"]: "the controls' age model chosen per region",
    _G["harmonization"]: "ComBat site parameters per region (the model: harmonization.json)",
    _G["comparison"]: "group differences per region and contrast (Table 2)",
    _G["comparison_mixed"]: "the same with a random site intercept (sensitivity analysis)",
    _G["determinants"]: "determinants of R2* in MS: univariable, multivariable, reduced, stepwise",
    _G["lesion_models"]: "lesion R2* relative to NAWM and rim minus core, on volume and duration "
    "(only with lesion tables)",
    _G["participant_qc"]: "protocol, processing and QC per participant",
    _G["age_model_chi"]: "with regional chi (QSM): the controls' age model of chi, as "
    "age_model.tsv (linear scale, ppm); its harmonised, corrected chi and z-scores are the chi_* "
    "columns of group/regions.tsv",
    _G["harmonization_chi"]: "ComBat site parameters of chi (additive location, ppm)",
    _G["comparison_chi"]: "group differences of age-corrected chi (ppm), as Table 2",
    _G["comparison_mixed_chi"]: "the same with a random site intercept",
    _G["determinants_chi"]: "determinants of chi in MS, as determinants.tsv (ppm)",
    _G["longitudinal"]: "yearly R2* change (mixed models; only with timed repeated sessions: "
    "provenance.json says why an analysis did not run)",
    _G["longitudinal_sessions"]: "the per-session R2* of the longitudinal models (likewise)",
    f"{GROUP_DIR}/<table>.json": "each group table's column descriptions (BIDS sidecar)",
    f"{GROUP_DIR}/{GROUP_PROVENANCE}": "the group stage's inputs' checksums and options",
    f"{GROUP_DIR}/{METHODS_MD}": "the report's Methods as Markdown, references keyed to the .bib",
    f"{GROUP_DIR}/{REFERENCES_BIB}": "BibTeX of exactly the references the Methods cite",
    f"{GROUP_DIR}/{GROUP_TABLES_DIR}/table<number>.tsv": "each numbered report table as shown, "
    "ready to paste (+ a plain .html fragment with the bold cells)",
    f"{GROUP_DIR}/{GROUP_FIGURES_DIR}/figure<N>.svg": "each report figure at print size (89 or "
    "183 mm, text >= 7 pt), also .pdf and 300-dpi .png",
    REPORT: "the self-contained HTML report (tables, figures, QC, Methods)",
    QC_INDEX: "every participant's QC page linked, with sortable flags (failed fits, alignment, "
    "fewest voxels, |z| > 3, CSF-like share)",
}


def outputs_markdown() -> str:
    """The README's list of outputs: one Markdown bullet per :data:`OUTPUTS` entry."""
    return "".join(f"- `{path}`: {what}\n" for path, what in OUTPUTS.items())


@dataclass(frozen=True)
class ParticipantOutputs:
    """Paths of one participant's (and session's) outputs under ``root`` (``OUTPUT_DIR``).

    Attributes
    ----------
    root : Path
        The derivatives dataset.
    subject : str
        Label without ``sub-``.
    session : str or None
        Label without ``ses-``.
    """

    root: Path
    subject: str
    session: str | None = None

    @property
    def name(self) -> str:
        """``sub-<label>[_ses-<label>]``, the prefix of every file name."""
        return session_name(self.subject, self.session)

    @property
    def anat_dir(self) -> Path:
        """``ROOT/sub-<label>[/ses-<label>]/anat``."""
        base = Path(self.root) / f"sub-{self.subject}"
        return (base / f"ses-{self.session}" if self.session else base) / "anat"

    @property
    def prefix(self) -> Path:
        """``anat_dir/name``: the prefix of the decay maps (:func:`~.maps.decay_map_paths`)."""
        return self.anat_dir / self.name

    def _file(self, suffix: str) -> Path:
        return self.anat_dir / f"{self.name}_{suffix}"

    @property
    def maps(self) -> dict[str, Path]:
        """The decay maps: ``{suffix: path}`` (R2*, T2*, S0, SD, failed mask)."""
        return decay_map_paths(self.prefix)

    @property
    def chimap(self) -> Path:
        """Susceptibility map (ppm) on the R2* grid (``_Chimap.nii.gz``, QSM)."""
        return self._file(_CHIMAP)

    @property
    def regions(self) -> Path:
        """Regional and lesion R2* (``_regions.tsv``)."""
        return self._file(_TABLES["regions"])

    @property
    def volumes(self) -> Path:
        """Subject volumes (``_volumes.tsv``)."""
        return self._file(_TABLES["volumes"])

    @property
    def lesions(self) -> Path:
        """One row per lesion (``_lesions.tsv``)."""
        return self._file(_TABLES["lesions"])

    @property
    def provenance(self) -> Path:
        """Inputs' checksums, options and timings of the run (``_provenance.json``)."""
        return self._file(_PROVENANCE)

    @property
    def dseg(self) -> Path:
        """The segmentation ``--segmentation atlas`` writes (``_desc-ironmap_dseg.nii.gz``)."""
        return self._file("desc-ironmap_dseg.nii.gz")

    @property
    def dseg_tsv(self) -> Path:
        """Its label table (``_desc-ironmap_dseg.tsv``)."""
        return self._file(f"desc-ironmap_{_DSEG_TSV}")

    @property
    def qc_figure(self) -> Path:
        """QC figure: R2* with deep grey-matter outlines."""
        return (
            Path(self.root)
            / f"sub-{self.subject}"
            / _FIGURES
            / (f"{self.name}_desc-qc_R2starmap.png")
        )

    @property
    def qc_page(self) -> Path:
        """QC page: the QC figure and its numbers (``_desc-qc_R2starmap.html``)."""
        return self.qc_figure.with_suffix(".html")

    @property
    def qc_registration(self) -> Path:
        """QC figure of a dseg registered to the GRE: its labels on the first echo before and
        after (``_desc-registration_qc.png``, only when it was registered)."""
        return self.qc_figure.with_name(f"{self.name}_desc-registration_qc.png")


def group_path(output_dir: str | Path, name: str) -> Path:
    """``OUTPUT_DIR/group/<name>`` (a group table or sidecar)."""
    return Path(output_dir) / GROUP_DIR / name


def group_figure_stem(output_dir: str | Path, number: int) -> Path:
    """``OUTPUT_DIR/group/figures/figure<number>``: Figure ``number`` of the report, without
    its extension (``.svg``, ``.pdf``, ``.png``)."""
    return group_path(output_dir, GROUP_FIGURES_DIR) / _GROUP_FIGURE.format(number=number)


def clear_group_figures(output_dir: str | Path) -> Path:
    """Remove the figure files of an earlier report from ``OUTPUT_DIR/group/figures/`` (and
    nothing else there); create the folder. Returns it."""
    folder = group_path(output_dir, GROUP_FIGURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    prefix = _GROUP_FIGURE.format(number="")
    for path in folder.iterdir():
        ours = path.stem.startswith(prefix) and path.stem[len(prefix) :].isdigit()
        if ours and path.suffix in _GROUP_FIGURE_EXTENSIONS and path.is_file():
            path.unlink()
    return folder


def group_outputs(output_dir: str | Path) -> list[Path]:
    """Every file the group stage writes, except its provenance record and ``.bidsignore``."""
    tables = GROUP_TABLES.values()
    sidecars = [tsv_sidecar_path(Path(t)).name for t in tables]  # harmonization.json among them
    names = dict.fromkeys([*tables, *sidecars, HARMONIZATION_JSON])
    root = Path(output_dir)
    return [
        *(group_path(output_dir, n) for n in names),
        root / QC_INDEX,
        *report_outputs(output_dir),
    ]


def report_outputs(output_dir: str | Path) -> list[Path]:
    """The files written with the report: ``report.html``, ``group/methods.md`` and
    ``group/references.bib``."""
    methods = [group_path(output_dir, n) for n in (METHODS_MD, REFERENCES_BIB)]
    return [Path(output_dir) / REPORT, *methods]


def lock_path(output_dir: str | Path) -> Path:
    """``OUTPUT_DIR/.ironmap.lock``: present while a stage writes ``OUTPUT_DIR``."""
    return Path(output_dir) / LOCK


def find_participant_tables(
    output_dir: str | Path, kind: Literal["regions", "volumes", "lesions"]
) -> list[Path]:
    """Every participant's ``_regions.tsv``, ``_volumes.tsv`` or ``_lesions.tsv`` under
    ``output_dir``, sorted."""
    return sorted(Path(output_dir).glob(f"sub-*/**/sub-*_{_TABLES[kind]}"))


def table_kind(path: str | Path) -> str | None:
    """The kind of table (:mod:`.columns`) ``path`` names, from its file name; None if unknown.

    ``group/<table>.tsv`` -> its :data:`GROUP_TABLES` key; ``sub-*_regions.tsv`` ->
    ``regions``; ``sub-*_volumes.tsv`` -> ``volumes``; ``sub-*_lesions.tsv`` -> ``lesions``;
    ``*_dseg.tsv`` -> ``dseg``.
    """
    path = Path(path)
    if path.parent.name == GROUP_DIR:
        kind = next((k for k, name in GROUP_TABLES.items() if name == path.name), None)
        if kind is not None:
            return kind
    suffixes = {**_TABLES, "dseg": _DSEG_TSV}
    return next((k for k, suffix in suffixes.items() if path.name.endswith(f"_{suffix}")), None)


def tsv_sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a TSV: the same name with ``.json`` for ``.tsv``."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".tsv") + ".json")


def write_tsv(path: str | Path, table: pd.DataFrame, *, kind: str | None = None) -> None:
    """Write a table as BIDS TSV with its JSON sidecar, atomically.

    ``n/a`` for missing values; numbers rounded by their column's rule in :mod:`.columns`
    (e.g. R2* to 0.01 1/s, volumes to 0.001 mL), others to 8 significant digits (1 µL at
    1,000 mL, without float noise such as ``1198.9679999999998``). The sidecar
    (:func:`tsv_sidecar_path`) describes every column (BIDS ``Description``, ``Format``,
    ``Units``, ``Levels``); the metadata keys of a sidecar already there are kept: the JSON of
    a ``dseg`` is its image's sidecar too, and ``group/harmonization.json`` describes the model.

    Parameters
    ----------
    path : str or Path
        The ``.tsv`` to write.
    table : pandas.DataFrame
    kind : str, optional
        The kind of table, for columns whose meaning depends on it; by default from the file
        name (:func:`table_kind`).
    """
    path = Path(path)
    kind = kind or table_kind(path)
    rounded = round_table(table, kind)
    text = rounded.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.8g")
    atomic_write_bytes(path, text.encode())
    sidecar = tsv_sidecar_path(path)
    shared = {}
    if sidecar.exists():  # also an image's (a dseg) or a model's (harmonization) sidecar
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            shared = json.loads(sidecar.read_text())
    # its metadata keys (CamelCase in BIDS) stay; column entries (lower case) are replaced
    kept = {k: v for k, v in shared.items() if k[:1].isupper()} if isinstance(shared, dict) else {}
    write_json(sidecar, {**kept, **table_sidecar(table.columns, kind)})


def read_tsv(path: str | Path, *, dtype: type | dict | None = None) -> pd.DataFrame:
    """Read a BIDS TSV: ``n/a`` is missing, nothing else is (``NA`` stays a string)."""
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtype)
