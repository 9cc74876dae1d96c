"""The Methods claim only what ran: each sentence against the record it comes from
(participant provenance -> ``participant_qc.tsv``, the group tables, the report's tables), and
``group/methods.md`` + ``group/references.bib`` hold the same text and exactly its references."""

from __future__ import annotations

import dataclasses
import html
import json
import re

import numpy as np
import pandas as pd

from ironmap.cohort.determinants import N_BOOTSTRAP
from ironmap.cohort.qc import collect_protocols
from ironmap.io.derivatives import METHODS_MD, REFERENCES_BIB, group_path
from ironmap.regions import DEEP_GM
from ironmap.regions.csf import CORE_RATIO, RIM_RATIO, WALL_RATIO
from ironmap.report.html import write_report
from ironmap.report.methods import REFERENCES, methods
from test_report import _add_protocol, _protocol_table, cohort  # noqa: F401 (fixture)


def _text(qc, *, mixed=None, mixed_table=None, determinants=None) -> str:
    flow = qc[["participant_id", "group", "phenotype", "site"]].assign(
        status="analysed", reason=""
    )
    made = methods(
        qc,
        flow=flow,
        age_model=pd.DataFrame(columns=["region", "model", "reference_age"]),
        harmonization=None,
        comparison_mixed=pd.DataFrame() if mixed is None else mixed,
        determinants=(
            pd.DataFrame(columns=["region", "model"]) if determinants is None else determinants
        ),
        version="0.1.0",
        mixed_table=mixed_table,
    )
    return html.unescape(" ".join(made.paragraphs))


def _sentences(text: str, word: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.) (?=[A-Z])", text) if word in s]


# -- the mixed-model sensitivity analysis: claimed exactly when its table is shown -------------


def _mixed_rows(converged: list[bool]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": DEEP_GM[: len(converged)],
            "contrast": "MS-HC",
            "converged": converged,
        }
    )


def test_mixed_model_sentence_only_with_its_table_and_its_convergence_count(tmp_path):
    qc = _protocol_table(tmp_path, 2)
    mixed = _mixed_rows([True, False, True])
    absent = _text(qc, mixed=mixed, mixed_table=None)  # the report did not show the table
    shown = _text(qc, mixed=mixed, mixed_table="Table S2")
    assert "sensitivity" not in absent
    assert "Bell and McCaffrey" not in absent
    (sentence,) = _sentences(shown, "sensitivity analysis")
    assert "(REML; Table S2)" in sentence
    assert "1 of 3 fits did not converge" in shown
    assert "all 2 fits converged" in _text(qc, mixed=_mixed_rows([True, True]), mixed_table="S")
    assert "is given" not in shown  # the old wording claimed a table the report lacked


# -- CSF exclusion: said with its thresholds when it ran, and what it removed ------------------


def _with_csf(qc: pd.DataFrame, option: list[str], shares: dict[tuple[int, str], float]):
    qc = qc.copy()
    qc["csf_exclusion"] = option
    for r in DEEP_GM:
        qc[f"csf_excluded_pct_{r}"] = 0.0
    for (row, region), value in shares.items():
        qc.loc[row, f"csf_excluded_pct_{region}"] = value
    return qc


def test_csf_exclusion_is_described_with_its_thresholds_only_when_on(tmp_path):
    qc = _protocol_table(tmp_path, 3)
    on = _text(_with_csf(qc, ["on"] * 3, {(1, "caudate"): 4.2, (2, "thalamus"): 1.0}))
    (sentence,) = _sentences(on, "cerebrospinal fluid")
    for ratio in (CORE_RATIO, RIM_RATIO, WALL_RATIO):
        assert f"below {ratio:g} T" in sentence
    assert (
        "removed voxels in 2 of 3 participants, at most 4.2 % of a structure (caudate, sub-02)"
        in on
    )
    off = _text(_with_csf(qc, ["off"] * 3, {}))
    assert "cerebrospinal fluid" not in off
    assert "Voxels with CSF-like R2* were not left out (CSF exclusion off)." in off
    mixed = _text(_with_csf(qc, ["on", "off", "on"], {}))
    assert "In 2 of 3 participants (CSF exclusion on)" in mixed
    assert "No voxel of a deep grey-matter structure was CSF-like." in mixed
    assert "CSF" not in _text(qc.assign(csf_exclusion=np.nan))  # made before the option


# -- where the regions and their labels came from ----------------------------------------------


def qc_of_inputs(tmp_path, inputs: dict, options: dict | None = None) -> pd.DataFrame:
    """participant_qc.tsv of participants whose _provenance.json lists ``inputs`` (participant
    -> file names) and ``--segmentation`` ``options`` (participant -> option; default auto)."""
    rows = []
    for i, (pid, files) in enumerate(inputs.items()):
        (tmp_path / pid / "anat").mkdir(parents=True)
        _add_protocol(tmp_path, pid, seed=i)
        record = tmp_path / pid / "anat" / f"{pid}_provenance.json"
        provenance = json.loads(record.read_text())
        provenance["inputs"] = files
        provenance["options"]["segmentation"] = (options or {}).get(pid, "auto")
        record.write_text(json.dumps(provenance))
        rows += [(pid, r, h, 30) for r in DEEP_GM for h in ("left", "right", "both")]
    regions = pd.DataFrame(rows, columns=["participant_id", "region", "hemisphere", "n_voxels"])
    return collect_protocols(tmp_path, regions)


def test_segmentation_and_label_source_from_the_provenance_inputs(tmp_path):
    """participant_qc.tsv says where the regions came from, read from _provenance.json: the
    option and the input files (dseg with or without .tsv, atlas, lesion mask)."""
    inputs = {
        "sub-01": {
            "sub-01_dseg.nii.gz": "x",
            "sub-01_dseg.tsv": "x",
            "sub-01_label-lesion_mask.nii.gz": "x",
        },
        "sub-02": {"sub-02_dseg.nii.gz": "x"},
        "sub-03": {"sub-03_T1w.nii.gz": "x"},
    }
    qc = qc_of_inputs(tmp_path, inputs, {"sub-03": "atlas"})
    assert list(qc["segmentation_source"]) == ["dseg", "dseg", "atlas"]
    assert list(qc["label_source"]) == ["dseg.tsv", "aseg codes", "atlas"]
    assert list(qc["lesion_mask"]) == [True, False, False]

    qc = qc.assign(site="a", group="HC", phenotype=np.nan)
    text = _text(qc)
    assert "supplied with the data" not in text
    assert "The source of the segmentation differed between participants" in text
    assert "labels matched by name from its dseg.tsv), resampled to the R2* grid (n = 1)" in text
    assert "labels read as FreeSurfer aseg codes, without a dseg.tsv), resampled" in text
    assert (
        "thalamus, caudate, putamen and pallidum from the Harvard-Oxford subcortical atlas; "
        "substantia nigra, red nucleus and dentate nucleus from the Talairach daemon labels"
    ) in text
    assert (
        "Lesions were taken from the participants' lesion masks (label-lesion_mask; 1 of 3" in text
    )

    dseg = _text(qc.iloc[:1])
    assert "Deep grey matter and white matter were taken from each participant's own " in dseg
    assert "Harvard-Oxford" not in dseg
    assert "Lancaster" not in dseg  # the atlas's references only with the atlas
    atlas = _text(qc.iloc[2:])
    assert "from the bundled atlas registered to each participant" in atlas
    assert "Lancaster et al. 2000; Lancaster et al. 2007" in atlas
    assert "dseg" not in atlas


def test_hybrid_segmentation_names_the_structures_from_the_atlas(tmp_path):
    """--segmentation hybrid: participant_qc.tsv says ``hybrid`` and which structures came from
    the atlas (label_source of _regions.tsv); the Methods name them with their atlas only."""
    nuclei = ("substantia_nigra", "red_nucleus", "dentate_nucleus")
    rows = []
    for i, pid in enumerate(("sub-01", "sub-02")):
        (tmp_path / pid / "anat").mkdir(parents=True)
        _add_protocol(tmp_path, pid, seed=i)
        record = tmp_path / pid / "anat" / f"{pid}_provenance.json"
        provenance = json.loads(record.read_text())
        provenance["inputs"] = {f"{pid}_dseg.nii.gz": "x", f"{pid}_dseg.tsv": "x"}
        provenance["options"]["segmentation"] = "hybrid"
        record.write_text(json.dumps(provenance))
        rows += [
            (pid, r, h, 30, "atlas" if r in nuclei else "dseg")
            for r in DEEP_GM
            for h in ("left", "right", "both")
        ]
    columns = ["participant_id", "region", "hemisphere", "n_voxels", "label_source"]
    qc = collect_protocols(tmp_path, pd.DataFrame(rows, columns=columns))
    assert list(qc["segmentation_source"]) == ["hybrid", "hybrid"]
    assert list(qc["label_source"]) == ["dseg.tsv", "dseg.tsv"]
    assert list(qc["atlas_regions"]) == ["substantia_nigra;red_nucleus;dentate_nucleus"] * 2
    text = _text(qc.assign(site="a", group="HC", phenotype=np.nan))
    assert (
        "Deep grey matter and white matter were taken from each participant's own segmentation "
        "(BIDS dseg image of the input derivatives; labels matched by name from its dseg.tsv), "
        "resampled to the R2* grid; the substantia nigra, red nucleus and dentate nucleus, which "
        "it does not label, from the bundled atlas registered to the participant and refined on "
        "R2* (substantia nigra, red nucleus and dentate nucleus from the Talairach daemon labels"
    ) in text
    assert "the participant's own label kept where both labelled a voxel." in text
    assert "Harvard-Oxford" not in text  # the basal ganglia are the participants' own


def test_table_without_the_source_columns_falls_back_on_the_option(tmp_path):
    qc = _protocol_table(tmp_path, 2).drop(
        columns=["segmentation_source", "label_source", "lesion_mask"]
    )
    text = _text(qc)  # segmentation "auto" with regions: a dseg
    assert (
        "from each participant's own segmentation (BIDS dseg image of the input derivatives)"
        in text
    )
    assert "Lesions" not in text


# -- the stepwise bootstrap: its resamples and (no) strata, from the code ----------------------


def test_stepwise_bootstrap_is_stated_from_the_code_and_the_table(tmp_path):
    qc = _protocol_table(tmp_path, 2)
    rows = pd.DataFrame(
        {
            "region": "thalamus",
            "model": ["multivariable", "stepwise"],
            "inclusion_frequency": [np.nan, 0.42],
        }
    )
    text = _text(qc, determinants=rows)
    (sentence,) = _sentences(text, "bootstrap")
    assert f"over {N_BOOTSTRAP} bootstrap resamples of the patients" in sentence
    assert "not stratified" in sentence
    assert "by site" not in text
    without = _text(qc, determinants=rows.assign(inclusion_frequency=np.nan))
    assert "stepwise selection is exploratory (no bootstrap)" in without
    assert "bootstrap resamples" not in without


# -- the report, group/methods.md and group/references.bib -------------------------------------

_BIB_ENTRY = re.compile(r"@article\{(\w+),\n((?:  \w+ = \{.*\},?\n)+)\}", re.MULTILINE)


def _bib(text: str) -> dict[str, dict[str, str]]:
    entries = {}
    for key, body in _BIB_ENTRY.findall(text):
        entries[key] = dict(re.findall(r"  (\w+) = \{(.*)\},?\n", body))
    assert text.count("@article{") == len(entries)  # every entry parsed
    return entries


def test_report_methods_markdown_and_bibtex_agree(cohort, tmp_path):  # noqa: F811
    _, out, result = cohort
    page = result.report.read_text()
    shown = re.search(r"<b>(Table S\d+)\.</b> Sensitivity analysis", page)
    methods_html = page[page.index("<h2>Methods</h2>") :]
    if shown:
        assert f"(REML; {shown.group(1)})" in methods_html
    else:
        assert "sensitivity analysis" not in methods_html
    markdown = group_path(out, METHODS_MD).read_text()
    bib = _bib(group_path(out, REFERENCES_BIB).read_text())
    cited = re.findall(r"\[@(\w+)\]", markdown)
    assert cited  # at least Ropele et al. 2014
    assert set(cited) == set(bib)  # every cited reference in the .bib, and nothing else
    assert len(cited) == len(set(cited))
    for key, fields in bib.items():
        assert {"author", "title", "journal", "year", "volume", "pages"} <= set(fields)
        assert fields["year"] == str(REFERENCES[key].year)
        assert REFERENCES[key].cite in html.unescape(methods_html)  # cited in the text
    # the same paragraphs in the report and the Markdown
    paragraphs = re.findall(r"<p>(.*?)</p>", methods_html.split("<h3>References</h3>")[0])
    for p in paragraphs:
        assert html.unescape(p) in markdown

    # without the mixed-model table the sentence and its reference go, from all three files
    report = tmp_path / "report.html"
    write_report(report, dataclasses.replace(result, comparison_mixed=pd.DataFrame()))
    page = report.read_text()
    assert "Sensitivity analysis" not in page
    assert "sensitivity analysis" not in page
    assert "Bell and McCaffrey" not in page
    assert "bellmccaffrey" not in (tmp_path / "group" / REFERENCES_BIB).read_text()
    assert "sensitivity" not in (tmp_path / "group" / METHODS_MD).read_text()


def test_reference_formats_agree():
    """One home: the author-year cite, the Vancouver line and the BibTeX entry of each
    reference come from the same fields."""
    ropele = REFERENCES["ropele"]
    assert ropele.cite == "Ropele et al. 2014"
    assert ropele.text == (
        "Ropele S, Kilsdonk ID, Wattjes MP, et al. Determinants of iron accumulation in deep "
        "grey matter of multiple sclerosis patients. Mult Scler 2014;20:1692-8."
    )
    assert REFERENCES["dahnke"].cite == "Dahnke and Schaeffter 2005"
    assert REFERENCES["box"].cite == "Box 1971"
    assert REFERENCES["bh"].text.endswith("J R Stat Soc B 1995;57:289-300.")
    entry = _bib(ropele.bibtex("ropele"))["ropele"]
    assert entry["doi"] == "10.1177/1352458514531085"
    assert entry["pages"] == "1692--1698"
    assert entry["author"].endswith("and others")


def test_methods_files_go_with_the_report(cohort, tmp_path):  # noqa: F811
    """Written with the report, and removed with it when the tables are remade without one
    (a Methods of other tables would contradict them)."""
    import shutil

    from ironmap.workflows.group import GroupConfig, run_group

    bids, out, _ = cohort
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    files = [copy / "report.html", group_path(copy, METHODS_MD), group_path(copy, REFERENCES_BIB)]
    assert all(p.exists() for p in files)
    run_group(GroupConfig(bids, copy, report=False, force=True))
    assert not any(p.exists() for p in files)


def test_methods_state_table1_tests_and_determinant_units_from_their_constants():
    """The Table 1 tests and the determinants' units are stated from the constants that
    produce them (cohort.demographics.MIN_EXPECTED, cohort.determinants.UNITS)."""
    from ironmap.cohort.demographics import MIN_EXPECTED
    from ironmap.cohort.determinants import UNITS
    from ironmap.report.methods import _statistics

    class _Cite:
        def __call__(self, *keys: str) -> str:
            return ", ".join(keys)

    determinants = pd.DataFrame({"model": ["multivariable"], "region": ["thalamus"]})
    text = _statistics(pd.DataFrame(), determinants, _Cite(), None)
    assert f"expected count was below {MIN_EXPECTED}" in text
    assert "Welch's t-test" in text
    for p, (unit, _) in UNITS.items():
        assert (unit in text) == (p != "n_prl")  # the PRL count only where it was fitted
    assert "10 years (disease duration)" in text
    assert "PRL" not in text
    with_prl = determinants.assign(predictor="n_prl")
    text = _statistics(pd.DataFrame(), with_prl, _Cite(), None)
    assert "PRL (PRL count)" in text
    assert "the PRL count, each alone" in text
