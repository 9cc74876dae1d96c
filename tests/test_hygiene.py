"""What users expect around the code: a LICENSE matching pyproject, a valid CITATION.cff of
this version citing the seed study, and a README whose output list cannot drift from the
outputs ironmap writes (generated from :data:`ironmap.io.derivatives.OUTPUTS`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ironmap import __version__
from ironmap.io.derivatives import (
    BIDSIGNORE,
    DATASET_DESCRIPTION,
    GROUP_FIGURES_DIR,
    GROUP_TABLES,
    GROUP_TABLES_DIR,
    METHODS_MD,
    OUTPUTS,
    QC_INDEX,
    REFERENCES_BIB,
    REPORT,
    ParticipantOutputs,
    outputs_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- outputs:[^\n]*-->\n(.*?)<!-- /outputs -->", re.DOTALL)


def test_readme_output_list_is_the_generated_one():
    (block,) = BLOCK.findall((ROOT / "README.md").read_text())
    assert block == outputs_markdown(), (
        "README.md's output list differs from ironmap.io.derivatives.OUTPUTS: paste the "
        "output of python -c 'from ironmap.io.derivatives import outputs_markdown; "
        'print(outputs_markdown(), end="")\' between the outputs markers'
    )


def test_output_list_names_every_file_written():
    """Every output name defined in io/derivatives.py has a line in OUTPUTS."""
    listed = "\n".join(OUTPUTS)
    for name in [
        *GROUP_TABLES.values(),
        METHODS_MD,
        REFERENCES_BIB,
        GROUP_TABLES_DIR,
        GROUP_FIGURES_DIR,
    ]:
        assert f"group/{name}" in listed
    for name in (DATASET_DESCRIPTION, BIDSIGNORE, REPORT, QC_INDEX):
        assert name in OUTPUTS
    outputs = ParticipantOutputs(Path(), "<label>")
    participant = [
        *outputs.maps.values(),
        outputs.regions,
        outputs.volumes,
        outputs.lesions,
        outputs.provenance,
        outputs.dseg,
        outputs.qc_figure,
        outputs.qc_registration,
    ]
    for path in participant:
        suffix = path.name.removeprefix("sub-<label>")
        assert any(key.endswith(suffix) for key in OUTPUTS), path.name
    for name in ("lesion_models.tsv", "participant_qc.tsv", "_lesions.tsv"):  # issue 25
        assert name in outputs_markdown()


def test_license_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    holder = project["authors"][0]["name"]
    assert re.search(rf"Copyright \(c\) \d{{4}} {re.escape(holder)}\n", text)
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_citation_cff_is_valid_and_current():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "version", "license"):
        assert cff[key], key
    assert cff["version"] == __version__
    assert cff["license"] == "MIT"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["authors"] == [{"name": project["authors"][0]["name"]}]
    (seed,) = [r for r in cff["references"] if r["doi"] == "10.1177/1352458514531085"]
    assert seed["type"] == "article"
    assert seed["authors"][0] == {"family-names": "Ropele", "given-names": "Stefan"}
    assert (seed["year"], seed["volume"], seed["start"], seed["end"]) == (2014, 20, 1692, 1698)
    for person in seed["authors"]:
        assert set(person) <= {"family-names", "given-names", "name-particle"}
