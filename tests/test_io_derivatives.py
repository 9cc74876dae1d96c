"""The derivatives layout: every output path in one place, and BIDS TSV writing and reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.io.derivatives import (
    GROUP_TABLES,
    ParticipantOutputs,
    find_participant_tables,
    group_path,
    read_tsv,
    write_tsv,
)


def test_participant_paths_follow_the_conventions(tmp_path):
    plain = ParticipantOutputs(tmp_path, "01")
    assert plain.regions == tmp_path / "sub-01/anat/sub-01_regions.tsv"
    assert plain.volumes == tmp_path / "sub-01/anat/sub-01_volumes.tsv"
    assert plain.provenance == tmp_path / "sub-01/anat/sub-01_provenance.json"
    assert plain.maps["R2starmap"] == tmp_path / "sub-01/anat/sub-01_R2starmap.nii.gz"
    assert plain.maps["desc-sd_R2starmap"].name == "sub-01_desc-sd_R2starmap.nii.gz"
    assert plain.dseg.name == "sub-01_desc-ironmap_dseg.nii.gz"
    assert plain.qc_figure == tmp_path / "sub-01/figures/sub-01_desc-qc_R2starmap.png"
    ses = ParticipantOutputs(tmp_path, "01", "b")
    assert ses.regions == tmp_path / "sub-01/ses-b/anat/sub-01_ses-b_regions.tsv"
    assert ses.qc_figure == tmp_path / "sub-01/figures/sub-01_ses-b_desc-qc_R2starmap.png"
    assert group_path(tmp_path, GROUP_TABLES["comparison"]) == (
        tmp_path / "group/group_comparison.tsv"
    )


def test_the_collector_finds_what_the_participant_stage_writes(tmp_path):
    written = [
        ParticipantOutputs(tmp_path, "02").regions,
        ParticipantOutputs(tmp_path, "01", "2").regions,
        ParticipantOutputs(tmp_path, "01", "1").regions,
    ]
    for path in written:
        write_tsv(path, pd.DataFrame({"participant_id": [path.name[:6]]}))
    write_tsv(ParticipantOutputs(tmp_path, "01", "1").volumes, pd.DataFrame({"a": [1]}))
    write_tsv(group_path(tmp_path, "regions.tsv"), pd.DataFrame({"a": [1]}))  # not collected
    assert find_participant_tables(tmp_path, "regions") == sorted(written)
    assert find_participant_tables(tmp_path, "volumes") == [
        Path(tmp_path / "sub-01/ses-1/anat/sub-01_ses-1_volumes.tsv")
    ]


def test_tsv_round_trip_keeps_missing_values_and_eight_digits(tmp_path):
    table = pd.DataFrame({"code": ["NA", "x"], "value": [1198.9679999999998, np.nan], "n": [3, 4]})
    path = tmp_path / "t.tsv"
    write_tsv(path, table)
    assert path.read_text().splitlines() == ["code\tvalue\tn", "NA\t1198.968\t3", "x\tn/a\t4"]
    back = read_tsv(path)
    assert back["code"].tolist() == ["NA", "x"]  # "NA" is a value, only n/a is missing
    assert back["value"].iloc[0] == 1198.968
    assert np.isnan(back["value"].iloc[1])


def test_source_dataset_url_is_a_file_uri(tmp_path):
    """BIDS ``SourceDatasets[].URL`` is a URI: ``file:///...`` of the resolved input, not a
    bare path; a space in the path is percent-encoded."""
    import json
    from urllib.parse import unquote, urlparse

    from ironmap.io.dataset import write_dataset_description

    bids = tmp_path / "my bids"
    bids.mkdir()
    write_dataset_description(tmp_path / "out", bids_dir=bids)
    description = json.loads((tmp_path / "out" / "dataset_description.json").read_text())
    url = description["SourceDatasets"][0]["URL"]
    assert url.startswith("file:///")
    assert " " not in url
    parsed = urlparse(url)
    assert parsed.scheme == "file"
    assert Path(unquote(parsed.path)) == bids.resolve()
