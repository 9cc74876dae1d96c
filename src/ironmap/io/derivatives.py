"""Where every output lives, and how its tables are written and read (docs/conventions.md).

One home for the names of ironmap's derivatives dataset: the participant stage writes through
:class:`ParticipantOutputs`, the group stage through :func:`group_path` and :data:`REPORT`, and
the group table collector finds the participant tables with :func:`find_participant_tables`.
Tables are BIDS TSV (:func:`write_tsv`, :func:`read_tsv`): tab-separated, ``n/a`` for missing.

Layout of ``OUTPUT_DIR``::

    dataset_description.json
    sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>]_<suffix>   (ParticipantOutputs)
    sub-<label>/figures/sub-<label>[_ses-<label>]_desc-qc_R2starmap.png
    group/<table>.tsv, group/harmonization.json
    report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from .bids import session_name
from .maps import atomic_write_bytes, decay_map_paths

__all__ = [
    "DATASET_DESCRIPTION",
    "GROUP_DIR",
    "GROUP_TABLES",
    "HARMONIZATION_JSON",
    "REPORT",
    "ParticipantOutputs",
    "find_participant_tables",
    "group_path",
    "read_tsv",
    "write_tsv",
]

DATASET_DESCRIPTION = "dataset_description.json"
GROUP_DIR = "group"
REPORT = "report.html"

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
}
#: The harmonisation model's description beside its table.
HARMONIZATION_JSON = "harmonization.json"

#: Participant-stage tables the group stage collects: kind -> file-name suffix.
_TABLES = {"regions": "regions.tsv", "volumes": "volumes.tsv"}


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
    def regions(self) -> Path:
        """Regional and lesion R2* (``_regions.tsv``)."""
        return self._file(_TABLES["regions"])

    @property
    def volumes(self) -> Path:
        """Subject volumes (``_volumes.tsv``)."""
        return self._file(_TABLES["volumes"])

    @property
    def provenance(self) -> Path:
        """Inputs' checksums, options and timings of the run (``_provenance.json``)."""
        return self._file("provenance.json")

    @property
    def dseg(self) -> Path:
        """The segmentation ``--segmentation atlas`` writes (``_desc-ironmap_dseg.nii.gz``)."""
        return self._file("desc-ironmap_dseg.nii.gz")

    @property
    def dseg_tsv(self) -> Path:
        """Its label table (``_desc-ironmap_dseg.tsv``)."""
        return self._file("desc-ironmap_dseg.tsv")

    @property
    def qc_figure(self) -> Path:
        """QC figure: R2* with deep grey-matter outlines."""
        return (
            Path(self.root)
            / f"sub-{self.subject}"
            / "figures"
            / (f"{self.name}_desc-qc_R2starmap.png")
        )


def group_path(output_dir: str | Path, name: str) -> Path:
    """``OUTPUT_DIR/group/<name>`` (a group table or sidecar)."""
    return Path(output_dir) / GROUP_DIR / name


def find_participant_tables(
    output_dir: str | Path, kind: Literal["regions", "volumes"]
) -> list[Path]:
    """Every participant's ``_regions.tsv`` or ``_volumes.tsv`` under ``output_dir``, sorted."""
    return sorted(Path(output_dir).glob(f"sub-*/**/sub-*_{_TABLES[kind]}"))


def write_tsv(path: str | Path, table: pd.DataFrame) -> None:
    """Write a table as BIDS TSV atomically: ``n/a`` for missing, 8 significant digits.

    8 digits keep 1 µL at 1,000 mL and 1e-6 1/s at 10 1/s, without float noise such as
    ``1198.9679999999998``.
    """
    text = table.to_csv(sep="\t", index=False, na_rep="n/a", float_format="%.8g")
    atomic_write_bytes(path, text.encode())


def read_tsv(path: str | Path, *, dtype: type | dict | None = None) -> pd.DataFrame:
    """Read a BIDS TSV: ``n/a`` is missing, nothing else is (``NA`` stays a string)."""
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, dtype=dtype)
