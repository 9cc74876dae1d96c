"""The official BIDS validator accepts the simulated raw dataset and ironmap's derivatives.

Slow (the quick demo, about 2 minutes) and needs the validator, which the tests never install:
``make validate`` builds it in ``bench_out/validator-venv`` (``pip install bids-validator-deno``,
which brings Deno), or point ``IRONMAP_BIDS_VALIDATOR`` at a ``bids-validator-deno``
executable. It runs offline: the BIDS schema is bundled with it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from ironmap.cli import main
from ironmap.io.columns import UNDESCRIBED
from ironmap.io.derivatives import read_tsv, tsv_sidecar_path

pytestmark = pytest.mark.slow

#: Where ``make validate`` installs the validator.
DEFAULT = Path(__file__).resolve().parents[1] / "bench_out/validator-venv/bin/bids-validator-deno"


def _validator() -> Path:
    given = os.environ.get("IRONMAP_BIDS_VALIDATOR")
    path = Path(given) if given else DEFAULT
    if not path.exists():
        pytest.skip(
            f"no BIDS validator at {path}: run `make validate` once (it installs "
            "bids-validator-deno in bench_out/validator-venv) or set IRONMAP_BIDS_VALIDATOR"
        )
    return path


def _issues(validator: Path, dataset: Path, *options: str) -> list[dict]:
    """Every issue of ``dataset`` (and of its nested derivatives, with ``-r``)."""
    result = subprocess.run(
        [str(validator), str(dataset), "--format", "json", *options],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    nested = report.get("derivativesSummary", {}).values()
    return [*report["issues"]["issues"], *(i for d in nested for i in d["issues"]["issues"])]


def _errors(issues: list[dict]) -> Counter:
    return Counter(
        (i["code"], i.get("location", "")) for i in issues if i.get("severity") == "error"
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    _validator()  # skip before the demo's 2 minutes when there is no validator
    out = tmp_path_factory.mktemp("validate") / "demo"
    assert main(["demo", str(out), "--quick"]) == 0
    return out


def test_simulated_raw_dataset_is_valid(demo):
    issues = _issues(_validator(), demo / "bids", "--datasetTypes", "raw")
    assert not _errors(issues)
    segmentation = demo / "bids/derivatives/segmentation"
    assert not _errors(_issues(_validator(), segmentation, "--datasetTypes", "derivative"))


def test_derivatives_are_valid(demo):
    issues = _issues(_validator(), demo / "ironmap", "--datasetTypes", "derivative")
    assert not _errors(issues)


def test_every_table_of_the_demo_is_described(demo):
    tables = sorted((demo / "ironmap").rglob("*.tsv"))
    assert tables
    for path in tables:
        sidecar = json.loads(tsv_sidecar_path(path).read_text())
        columns = list(read_tsv(path, dtype=str).columns)
        assert [k for k in sidecar if not k[:1].isupper()] == columns, path
        assert all(sidecar[c]["Description"] != UNDESCRIBED for c in columns), path
