"""Never lose a file, never a traceback, never a silently wrong number (issue 14).

Output ownership (another pipeline's folder, the input dataset), one run per output dataset (a
lock), group-stage resume, resume by content, exit codes, one-line errors for unwritable
outputs, and failed-voxel summaries printed without ``-v``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.errors import InputError, IronmapError, IronmapWarning
from ironmap.io import atomic_write_bytes, find_inputs, load_bids_echoes, read_tsv
from ironmap.segmentation.strategies import choose_strategy
from ironmap.workflows.group import GroupConfig, run_group
from ironmap.workflows.participant import ParticipantConfig, run_participant, summary_table
from test_group import _write_cohort
from test_participant import _dataset, _write_subject

KEEP_OUT = "choose a new or empty OUTPUT_DIR (--force does not override this)"
OUTSIDE = (
    "choose an OUTPUT_DIR outside BIDS_DIR, or BIDS_DIR/derivatives/<name> (inputs are never "
    "written)"
)


def _checksums(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


# -- 1. another pipeline's folder is never written --------------------------------------------

FOREIGN = {
    "another pipeline": (
        {"Name": "p", "DatasetType": "derivative", "GeneratedBy": [{"Name": "fMRIPrep"}]},
        "holds the outputs of fMRIPrep (GeneratedBy in dataset_description.json), not of "
        f"ironmap; {KEEP_OUT}",
    ),
    "no GeneratedBy": (
        {"Name": "segmentations", "BIDSVersion": "1.9.0", "DatasetType": "derivative"},
        "its dataset_description.json names no GeneratedBy pipeline, so it is not ironmap's; "
        + KEEP_OUT,
    ),
    "no description": (
        None,
        f"is not empty and is not an ironmap derivatives dataset (no dataset_description.json); "
        f"{KEEP_OUT}",
    ),
}


@pytest.mark.parametrize("stage", ["participant", "group"])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_another_pipelines_folder_is_never_written(tmp_path, capsys, kind, force, stage):
    root = _dataset(tmp_path)
    out = tmp_path / "theirs"
    anat = out / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_regions.tsv").write_text("theirs\n")  # files with ironmap's names
    (anat / "sub-01_R2starmap.nii.gz").write_bytes(b"theirs")
    description, message = FOREIGN[kind]
    if description is not None:
        (out / "dataset_description.json").write_text(json.dumps(description))
    before = _checksums(out)
    code, captured = _cli(capsys, "run", root, out, stage, *(["--force"] if force else []))
    assert code == 2
    assert _lines(captured.err) == [f"ironmap: error: {out}: {message}"]
    assert _checksums(out) == before


def test_an_empty_folder_and_ironmaps_own_dataset_are_written(tmp_path, capsys):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    code, captured = _cli(capsys, "run", root, out, "participant", "--participant-label", "01")
    assert code == 0
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "ironmap"
    code, captured = _cli(capsys, "run", root, out, "participant")  # its own dataset: resumes
    assert code == 0
    assert "1 done, 1 skipped, 0 failed" in captured.out


# -- 2. the input dataset is never written ----------------------------------------------------


@pytest.mark.parametrize("stage", ["participant", "group"])
@pytest.mark.parametrize(
    "where",
    [
        "derivatives",
        "derivatives/seg/sub-01",
        "derivatives/new/ironmap",
        "sub-01/ironmap",
        "link",
        "root",
    ],
)
def test_output_inside_the_input_dataset_is_refused(tmp_path, capsys, where, stage):
    """Only ``BIDS_DIR/derivatives/<name>`` itself may be written, nothing else in BIDS_DIR."""
    root = _dataset(tmp_path)
    (root / "participants.tsv").write_text("participant_id\tage\tsex\tgroup\n")
    before = _checksums(root)
    if where == "link":  # a symlink outside BIDS_DIR that points into it
        (tmp_path / "link").symlink_to(root / "sub-01", target_is_directory=True)
        out = tmp_path / "link" / "ironmap"
    else:
        out = root if where == "root" else root / where
    code, captured = _cli(capsys, "run", root, out, stage, "--force")
    assert code == 2
    what = "is the input dataset" if where == "root" else f"is inside the input dataset {root}"
    assert _lines(captured.err) == [f"ironmap: error: {out}: {what}; {OUTSIDE}"]
    assert _checksums(root) == before


def test_ironmap_made_inputs_in_the_input_dataset_are_not_an_output(tmp_path, capsys):
    """``BIDS_DIR/derivatives/seg`` written by ``ironmap simulate`` (GeneratedBy ironmap, no
    SourceDatasets) holds input segmentations: never an output, always searched for inputs."""
    root = _dataset(tmp_path)
    out = root / "derivatives" / "seg"
    generated = [{"Name": "ironmap", "Version": "0.1.0", "Description": "ironmap simulate"}]
    description = {"Name": "truth", "DatasetType": "derivative", "GeneratedBy": generated}
    (out / "dataset_description.json").write_text(json.dumps(description))
    (found,) = [s for s in find_inputs(root, participant_labels=["01"]) if s.subject == "01"]
    assert found.dseg == out / "sub-01/anat/sub-01_dseg.nii.gz"
    before = _checksums(root)
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out}: holds inputs made by ironmap, not its outputs (no "
        "SourceDatasets in its dataset_description.json, e.g. the ground truth of `ironmap "
        f"simulate`); {KEEP_OUT}"
    ]
    assert _checksums(root) == before


@pytest.mark.parametrize("stage", ["participant", "group"])
@pytest.mark.parametrize(
    ("kind", "message"),
    [(k, FOREIGN[k][1]) for k in ("another pipeline", "no GeneratedBy")]
    + [("no description", FOREIGN["no description"][1])],
)
def test_another_pipelines_derivatives_in_the_input_dataset_are_refused(
    tmp_path, capsys, kind, message, stage
):
    """``BIDS_DIR/derivatives/seg`` holds the input segmentations: never written."""
    root = _dataset(tmp_path)
    (root / "participants.tsv").write_text("participant_id\tage\tsex\tgroup\n")
    out = root / "derivatives" / "seg"
    description = FOREIGN[kind][0]
    if description is not None:
        (out / "dataset_description.json").write_text(json.dumps(description))
    before = _checksums(root)
    code, captured = _cli(capsys, "run", root, out, stage, "--force")
    assert code == 2
    assert _lines(captured.err) == [f"ironmap: error: {out}: {message}"]
    assert _checksums(root) == before


@pytest.mark.parametrize("link", [False, True])
def test_output_in_the_datasets_own_derivatives_folder_is_written(tmp_path, capsys, link):
    """``BIDS_DIR/derivatives/ironmap`` (BIDS habit): written when new, empty or ironmap's own;
    its maps and its atlas dseg are never read back as inputs, the raw data never touched."""
    root = _dataset(tmp_path)
    before = _checksums(root)
    out = root / "derivatives" / "ironmap"
    if link:  # the same folder named through a symbolic link outside BIDS_DIR
        (tmp_path / "link").symlink_to(root / "derivatives", target_is_directory=True)
        out = tmp_path / "link" / "ironmap"
    code, captured = _cli(capsys, "run", root, out, "participant", "--participant-label", "01")
    assert code == 0, captured.err
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "ironmap"
    after = _checksums(root)
    assert {k: v for k, v in after.items() if not k.startswith("derivatives/ironmap/")} == before
    table = pd.read_csv(out / "sub-01/anat/sub-01_regions.tsv", sep="\t")
    put = table[(table.region == "putamen") & (table.hemisphere == "both")].iloc[0]
    assert put.r2star_median == pytest.approx(40.0, rel=0.02)  # the dseg of derivatives/seg
    code, captured = _cli(capsys, "run", root, out, "participant")  # its own dataset: resumes
    assert code == 0
    assert "1 done, 1 skipped, 0 failed" in captured.out
    # ironmap's outputs there are no input of another run: a planted dseg is never picked
    fake = out / "sub-01" / "anat" / "sub-01_desc-ironmap_dseg.nii.gz"
    shutil.copy(root / "derivatives/seg/sub-01/anat/sub-01_dseg.nii.gz", fake)
    (found,) = [s for s in find_inputs(root, participant_labels=["01"]) if s.subject == "01"]
    assert found.dseg == root / "derivatives/seg/sub-01/anat/sub-01_dseg.nii.gz"


def test_output_that_contains_the_input_dataset_is_refused(tmp_path, capsys):
    root = _dataset(tmp_path / "study")
    before = _checksums(tmp_path)
    out = tmp_path / "study"
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out}: contains the input dataset {root}; {OUTSIDE}"
    ]
    assert _checksums(tmp_path) == before


# -- 3. the group stage resumes like the participant stage -----------------------------------


@pytest.fixture(scope="module")
def group_done(tmp_path_factory):
    """A cohort of hand-written participant tables and one finished group stage (CLI)."""
    base = tmp_path_factory.mktemp("group_done")
    bids, out = _write_cohort(base)
    assert main(["run", str(bids), str(out), "group"]) == 0
    return bids, out


@pytest.fixture
def group_copy(group_done, tmp_path):
    bids, out = group_done
    shutil.copytree(bids, tmp_path / "bids")
    shutil.copytree(out, tmp_path / "out")
    return tmp_path / "bids", tmp_path / "out"


def _group_files(out) -> dict[str, str]:
    files = _checksums(out / "group")
    files["report.html"] = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    return files


def test_group_rerun_with_the_same_inputs_is_skipped(group_copy, capsys):
    bids, out = group_copy
    before = _group_files(out)
    code, captured = _cli(capsys, "run", bids, out, "group")
    assert code == 0
    assert _lines(captured.out) == [
        f"group stage: outputs in {out / 'group'} are up to date (same inputs and options); "
        f"nothing recomputed (--force to recompute); report: {out / 'report.html'}"
    ]
    assert _group_files(out) == before
    result = run_group(GroupConfig(bids, out))
    assert result.skipped
    assert result.analysis is None
    assert result.report == out / "report.html"
    pd.testing.assert_frame_equal(
        result.comparison, read_tsv(out / "group" / "group_comparison.tsv")
    )
    assert len(result.subjects) == 90
    provenance = json.loads((out / "group" / "provenance.json").read_text())
    assert set(provenance) >= {"ironmap_version", "inputs", "options"}
    assert (
        provenance["inputs"]["participants.tsv"]
        == hashlib.sha256((bids / "participants.tsv").read_bytes()).hexdigest()
    )
    assert (
        provenance["inputs"]["sub-003_regions.tsv"]
        == hashlib.sha256(
            (out / "sub-003" / "anat" / "sub-003_regions.tsv").read_bytes()
        ).hexdigest()
    )
    assert len(provenance["inputs"]) == 1 + 2 * 90  # participants.tsv + regions + volumes
    assert str(out) not in json.dumps(provenance)  # keyed by file name, not by path


def test_group_refuses_other_inputs_without_force_and_recomputes_with_it(group_copy, capsys):
    bids, out = group_copy
    before = _group_files(out)
    table = out / "sub-003" / "anat" / "sub-003_regions.tsv"
    table.write_text(table.read_text().replace("\t5.0\n", "\t5.5\n"))  # one volume changed
    with open(bids / "participants.tsv", "a") as handle:  # a participant without outputs
        handle.write("sub-999\t40\tF\tHC\tn/a\tn/a\tn/a\ta\n")
    code, captured = _cli(capsys, "run", bids, out, "group")
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out / 'group' / 'provenance.json'}: group outputs exist from other "
        "inputs or options (input participants.tsv changed content; input sub-003_regions.tsv "
        "changed content); pass --force to recompute"
    ]
    assert _group_files(out) == before
    code, captured = _cli(capsys, "run", bids, out, "group", "--force")
    assert code == 0
    assert "1 of 91 participants excluded" in captured.err
    flow = read_tsv(out / "group" / "participant_flow.tsv")
    assert len(flow) == 91
    provenance = json.loads((out / "group" / "provenance.json").read_text())
    assert (
        provenance["inputs"]["sub-003_regions.tsv"]
        == hashlib.sha256(table.read_bytes()).hexdigest()
    )


def test_group_option_change_is_named(group_copy):
    bids, out = group_copy
    with pytest.raises(InputError) as info:
        run_group(GroupConfig(bids, out, mixed=False))
    assert "(option mixed: True -> False); pass --force to recompute" in str(info.value)


def test_group_outputs_without_provenance_are_refused(group_copy, capsys):
    bids, out = group_copy
    (out / "group" / "provenance.json").unlink()  # as an older ironmap left them
    before = _group_files(out)
    code, captured = _cli(capsys, "run", bids, out, "group")
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out / 'group'}: group outputs exist without a provenance record "
        "(written by an older ironmap); pass --force to recompute them"
    ]
    assert _group_files(out) == before
    result = run_group(GroupConfig(bids, out, force=True, report=False, mixed=False))
    assert not result.skipped
    assert (out / "group" / "provenance.json").exists()


def test_an_interrupted_group_run_is_redone_without_force(group_copy):
    bids, out = group_copy
    path = out / "group" / "provenance.json"
    provenance = json.loads(path.read_text())
    path.write_text(json.dumps({**provenance, "complete": False, "inputs": {}}))
    result = run_group(GroupConfig(bids, out, report=False))
    assert not result.skipped
    assert json.loads(path.read_text())["complete"] is True


# -- 4. one run per output dataset ------------------------------------------------------------

STARTED = "2024-05-01T10:00:00+00:00"


def _write_lock(out, pid: int, host: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": STARTED,
        "stage": "participant",
        "command": "ironmap run bids out participant",
    }
    (out / ".ironmap.lock").write_text(json.dumps(record))


def _held(out, pid: int, host: str) -> str:
    return (
        f"ironmap: error: {out} is being written by ironmap (pid {pid} on {host} since "
        f"{STARTED}); wait for it to finish, or delete {out / '.ironmap.lock'} if that run "
        "is gone"
    )


@pytest.mark.parametrize("host", ["this", "another"])
def test_a_running_ironmap_keeps_a_second_run_out(tmp_path, capsys, host):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    name = socket.gethostname() if host == "this" else "node17.cluster"
    try:
        _write_lock(out, other.pid, name)
        before = _checksums(out)
        code, captured = _cli(capsys, "run", root, out, "participant", "--force")
    finally:
        other.kill()
        other.wait()
    assert code == 2
    assert _lines(captured.err) == [_held(out, other.pid, name)]
    assert _checksums(out) == before  # the other run's lock, untouched; nothing written


def test_a_running_ironmap_keeps_the_group_stage_out(group_copy, capsys):
    bids, out = group_copy
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, other.pid)
        before = _group_files(out)
        code, captured = _cli(capsys, "run", bids, out, "group", "--force")
    finally:
        other.kill()
        other.wait()
    assert code == 2
    assert _lines(captured.err) == [_held(out, other.pid, socket.gethostname())]
    assert _group_files(out) == before


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _write_lock(out, gone.pid)
    host = socket.gethostname()
    with pytest.warns(IronmapWarning) as record:
        results = run_participant(ParticipantConfig(root, out))
    assert [str(w.message) for w in record] == [
        f"{out / '.ironmap.lock'}: taking over the lock of ironmap pid {gone.pid} on {host} "
        f"(since {STARTED}), which is no longer running"
    ]
    assert [r.status for r in results] == ["done", "done"]
    assert not (out / ".ironmap.lock").exists()


def test_the_lock_is_held_for_the_stage_and_always_removed(tmp_path, monkeypatch):
    from ironmap.workflows import participant

    root = _dataset(tmp_path)
    out = tmp_path / "out"
    seen = []

    def spy(inputs, config):
        seen.append(json.loads((out / ".ironmap.lock").read_text()))
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of the stage

    monkeypatch.setattr(participant, "process_session", spy)
    with pytest.raises(KeyboardInterrupt):
        run_participant(ParticipantConfig(root, out))
    assert seen[0]["pid"] == os.getpid()
    assert seen[0]["host"] == socket.gethostname()
    assert seen[0]["stage"] == "participant"
    assert not (out / ".ironmap.lock").exists()


# -- 5. unwritable outputs: one line naming the path and what to do --------------------------


@pytest.mark.parametrize("stage", ["participant", "group"])
def test_output_dir_that_is_a_file(tmp_path, capsys, stage):
    root = _dataset(tmp_path)
    out = tmp_path / "out.tsv"
    out.write_text("mine\n")
    code, captured = _cli(capsys, "run", root, out, stage)
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out}: is a file, not a folder; give a folder for OUTPUT_DIR"
    ]
    assert out.read_text() == "mine\n"


def test_read_only_output_dir_simulated(tmp_path, capsys, monkeypatch):
    """Root ignores permission bits: refuse every write under OUTPUT_DIR as a read-only mount."""
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(out)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 2
    assert _lines(captured.err) == [
        f"ironmap: error: {out}: cannot write: Permission denied; choose an output folder you "
        "can write to"
    ]
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_output_dir_chmod(tmp_path, capsys):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, captured = _cli(capsys, "run", root, out, "participant")
    finally:
        out.chmod(0o755)
    assert code == 2
    assert "cannot write: Permission denied; choose an output folder you can write to" in (
        captured.err
    )


def _disk_full_for(monkeypatch, part: str) -> None:
    """Writes to files whose name contains ``part`` fail with ENOSPC."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, *args, **kwargs):
        if isinstance(fd, int) and part in os.readlink(f"/proc/self/fd/{fd}"):
            return Full(fd)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)


FULL = "cannot write: No space left on device; free space on that disk or choose another output"


def test_disk_full_names_the_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    _disk_full_for(monkeypatch, "R2starmap")
    target = tmp_path / "sub-01_R2starmap.nii.gz"
    with pytest.raises(IronmapError) as info:
        atomic_write_bytes(target, b"payload")
    assert str(info.value) == f"{target}: {FULL} folder"
    assert list(tmp_path.iterdir()) == []


def test_disk_full_fails_the_participant_in_one_line(tmp_path, capsys, monkeypatch):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    _disk_full_for(monkeypatch, "_R2starmap.nii.gz")
    code, captured = _cli(capsys, "run", root, out, "participant", "--participant-label", "01")
    assert code == 1
    target = out / "sub-01" / "anat" / "sub-01_R2starmap.nii.gz"
    errors = [line for line in _lines(captured.err) if line.startswith("ironmap: error:")]
    assert errors == [f"ironmap: error: sub-01: {target}: {FULL} folder"]
    assert not list(out.rglob("*.tmp"))


# -- 6. a subject without MEGRE fails alone ---------------------------------------------------


@pytest.mark.parametrize("layout", ["no anat folder", "empty anat folder"])
def test_a_subject_without_megre_fails_alone(tmp_path, capsys, layout):
    root = _dataset(tmp_path)
    folder = root / "sub-03"
    if layout == "no anat folder":
        (folder / "func").mkdir(parents=True)
        problem = f"{folder}: no anat folder with MEGRE files"
    else:
        (folder / "anat").mkdir(parents=True)
        problem = (
            f"{folder / 'anat'}: no *_MEGRE.nii[.gz] magnitude files for sub-03 "
            "(names in docs/conventions.md)"
        )
    out = tmp_path / "out"
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 1
    errors = [line for line in _lines(captured.err) if line.startswith("ironmap: error:")]
    assert errors == [f"ironmap: error: sub-03: {problem}"]
    assert "2 done, 0 skipped, 1 failed" in captured.out
    for sub in ("01", "02"):
        assert (out / f"sub-{sub}" / "anat" / f"sub-{sub}_regions.tsv").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "No such directory; give the BIDS dataset root"),
        (lambda tmp: tmp, "no sub-* folders; is this a BIDS dataset root?"),
    ],
)
def test_whole_dataset_problems_stay_usage_errors(tmp_path, capsys, make, message):
    root = make(tmp_path / "in")
    (tmp_path / "in").mkdir()
    code, captured = _cli(capsys, "run", root, tmp_path / "out", "participant")
    assert code == 2
    assert _lines(captured.err) == [f"ironmap: error: {root}: {message}"]


# -- 7. exit codes: 0 done, 1 some failed, 2 usage or input error --------------------------


def test_exit_status_is_one_however_many_failed(tmp_path, capsys):
    root = _dataset(tmp_path, sidecar_te=[5, 10, 15, 20])
    _write_subject(root, "03", sidecar_te=[5, 10, 15, 20])
    out = tmp_path / "out"
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 1  # before: 2, the number that failed, read as a usage error
    assert f"participant stage: 1 done, 0 skipped, 2 failed; outputs in {out}" in captured.out


def test_demo_exit_status_is_one_when_participants_failed(tmp_path, monkeypatch):
    from ironmap.workflows import demo

    def three_failed(
        output_dir,
        *,
        quick=False,
        n_jobs=2,
        force=False,
        anatomy="phantom",
        sessions=1,
        interval_years=2.0,
    ):
        return 3

    monkeypatch.setattr(demo, "run_demo", three_failed)
    assert main(["demo", str(tmp_path / "demo")]) == 1


# -- 8. resume by content, not by path ---------------------------------------------------------


def test_resume_by_content_whatever_the_path(tmp_path, capsys, monkeypatch):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    assert _cli(capsys, "run", root, out, "participant")[0] == 0
    monkeypatch.chdir(tmp_path)
    code, captured = _cli(capsys, "run", "bids", "out", "participant")  # relative paths
    assert (code, captured.err) == (0, "")
    assert "0 done, 2 skipped, 0 failed" in captured.out
    copy = tmp_path / "elsewhere" / "bids"
    shutil.copytree(root, copy)  # an identical copy of the dataset
    code, captured = _cli(capsys, "run", copy, out, "participant")
    assert (code, captured.err) == (0, "")
    assert "0 done, 2 skipped, 0 failed" in captured.out


def test_provenance_keyed_by_absolute_paths_is_understood(tmp_path, capsys):
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    assert _cli(capsys, "run", root, out, "participant")[0] == 0
    for path in out.rglob("*_provenance.json"):  # as ironmap <= 0.x wrote them
        record = json.loads(path.read_text())
        files = {p.name: p for p in root.rglob("*") if p.is_file()}
        record["inputs"] = {
            str(files[Path(key).name]): sha for key, sha in record["inputs"].items()
        }
        path.write_text(json.dumps(record))
    copy = tmp_path / "moved" / "bids"
    shutil.copytree(root, copy)
    code, captured = _cli(capsys, "run", copy, out, "participant")
    assert (code, captured.err) == (0, "")
    assert "0 done, 2 skipped, 0 failed" in captured.out


def test_what_changed_is_named_in_one_line_printed_once(tmp_path, capsys):
    root = _dataset(tmp_path, tsv=False)
    out = tmp_path / "out"
    assert _cli(capsys, "run", root, out, "participant")[0] == 0
    seg = root / "derivatives" / "seg"
    shutil.copy(seg / "sub-01/anat/sub-01_dseg.tsv", seg / "sub-02/anat/sub-02_dseg.tsv")
    echo = root / "sub-02" / "anat" / "sub-02_echo-2_part-mag_MEGRE.nii.gz"
    image = nib.load(echo)
    nib.save(nib.Nifti1Image(image.get_fdata().astype(np.float32) * 1.01, image.affine), echo)
    (seg / "sub-01" / "anat" / "sub-01_label-lesion_mask.nii.gz").unlink()
    for verbose in ([], ["-v"]):
        code, captured = _cli(
            capsys, *verbose, "run", root, out, "participant", "--fit-method", "loglin"
        )
        assert code == 1
        errors = [line for line in _lines(captured.err) if "outputs exist" in line]
        prov = out / "sub-{0}" / "anat" / "sub-{0}_provenance.json"
        assert errors == [
            f"ironmap: error: sub-01: {str(prov).format('01')}: outputs exist from other inputs "
            "or options (option fit_method: auto -> loglin; input "
            "sub-01_label-lesion_mask.nii.gz removed); pass --force to redo",
            f"ironmap: error: sub-02: {str(prov).format('02')}: outputs exist from other inputs "
            "or options (option fit_method: auto -> loglin; input sub-02_dseg.tsv new; input "
            "sub-02_echo-2_part-mag_MEGRE.nii.gz changed content); pass --force to redo",
        ]


# -- 9. failed voxels are counted and reported without -v ----------------------------------


def _plant_bad_signal(root) -> int:
    """A negative block and a NaN block in sub-02's echoes; returns the voxels planted."""
    for echo, value, box in (
        (2, -5.0, np.s_[4:8, 4:8, 2:6]),
        (3, np.nan, np.s_[12:14, 12:14, 4:6]),
    ):
        path = root / "sub-02" / "anat" / f"sub-02_echo-{echo}_part-mag_MEGRE.nii.gz"
        image = nib.load(path)
        data = image.get_fdata().astype(np.float32)
        data[box] = value
        nib.save(nib.Nifti1Image(data, image.affine), path)
    return 4 * 4 * 4 + 2 * 2 * 2


def _tissue(root, label: str) -> np.ndarray:
    """The fit mask inside the dseg's intracranial volume (without its 1-voxel margin)."""
    inputs = find_inputs(root, participant_labels=[label])[0]
    strategy = choose_strategy(inputs, segmentation="auto")
    with warnings.catch_warnings():  # the inputs' own warnings are tested elsewhere
        warnings.simplefilter("ignore", IronmapWarning)
        image = load_bids_echoes(inputs.echoes)
        fit_mask = strategy.fit_mask(image)
        icv = strategy.segment(image, None).fractions["icv"] >= 0.5
    assert (icv & ~fit_mask).sum() == 0
    return icv


def test_failed_voxels_are_counted_per_participant(tmp_path):
    root = _dataset(tmp_path)
    planted = _plant_bad_signal(root)
    tissue = _tissue(root, "02")
    n_mask = int(tissue.sum())
    assert n_mask == 16 * 16 * 8  # labels [4:36, 4:36, 2:18] at 1 mm on the 2 mm grid
    out = tmp_path / "out"
    first, second = run_participant(ParticipantConfig(root, out))
    assert (first.fit_voxels, first.failed_voxels, first.failed_reasons) == (
        n_mask,
        0,
        {},
    )
    assert second.fit_voxels == n_mask
    assert second.failed_voxels == planted
    assert second.failed_reasons == {"bad signal": planted}
    assert second.failed_fraction == pytest.approx(planted / n_mask)
    failed = nib.load(out / "sub-02" / "anat" / "sub-02_desc-failed_mask.nii.gz").get_fdata()
    assert failed[tissue].sum() == planted  # the margin's background is marked, not counted
    assert [w for w in second.warnings if "could not be fitted" in w] == [
        f"sub-02: {planted} of {n_mask:,} voxels ({100 * planted / n_mask:.1f} %) could not be "
        f"fitted (bad signal {planted}); see sub-02_desc-failed_mask.nii.gz"
    ]
    assert not any("could not be fitted" in w for w in first.warnings)
    table = summary_table([first, second])
    assert table.loc[0, "max_failed_voxels_pct"] == pytest.approx(100 * planted / n_mask)
    # a resumed run reads the counts back from the provenance record
    again = run_participant(ParticipantConfig(root, out))
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert (again[1].fit_voxels, again[1].failed_voxels) == (n_mask, planted)
    assert again[1].failed_reasons == {"bad signal": planted}


def test_failed_voxels_are_printed_without_verbose(tmp_path, capsys):
    root = _dataset(tmp_path)
    planted = _plant_bad_signal(root)
    tissue = _tissue(root, "02")
    n_mask = int(tissue.sum())
    assert n_mask == 16 * 16 * 8  # labels [4:36, 4:36, 2:18] at 1 mm on the 2 mm grid
    code, captured = _cli(
        capsys, "run", root, tmp_path / "out", "participant", "--participant-label", "02"
    )
    assert code == 0
    (line,) = [line for line in _lines(captured.err) if "could not be fitted" in line]
    # one line per participant: its 4 warnings in short, this one without the mask's name
    assert line.startswith("ironmap: warning: sub-02: 4 warnings: ")
    assert line.endswith(" (-v: in full)")
    assert (
        f"; {planted} of {n_mask:,} voxels ({100 * planted / n_mask:.1f} %) could not be "
        f"fitted (bad signal {planted})"
    ) in line
    header, row = _lines(captured.out)[:2]
    assert header.split() == [
        "status",
        "participants",
        "load_s",
        "resample_s",
        "fit_s",
        "stats_s",
        "peak_rss_mb",
        "max_failed_voxels_pct",
    ]
    assert row.split()[:2] == ["done", "1"]
    assert float(row.split()[-1]) == pytest.approx(100 * planted / n_mask, abs=0.005)
    code, captured = _cli(
        capsys, "run", root, tmp_path / "out2", "participant", "--participant-label", "02", "-v"
    )
    warned = [line for line in _lines(captured.err) if line.startswith("ironmap: warning: ")]
    assert [line for line in warned if "could not be fitted" in line] == [  # -v: in full
        f"ironmap: warning: sub-02: {planted} of {n_mask:,} voxels "
        f"({100 * planted / n_mask:.1f} %) could not be fitted (bad signal {planted}); "
        "see sub-02_desc-failed_mask.nii.gz"
    ]


def test_coils_option_in_provenance_only_when_given(tmp_path, capsys):
    """A record written before --coils existed still matches a default run; --coils 4 does not."""
    root = _dataset(tmp_path)
    out = tmp_path / "out"
    assert _cli(capsys, "run", root, out, "participant")[0] == 0
    record = out / "sub-01" / "anat" / "sub-01_provenance.json"
    assert "coils" not in json.loads(record.read_text())["options"]
    code, captured = _cli(capsys, "run", root, out, "participant")
    assert code == 0
    assert "0 done, 2 skipped, 0 failed" in captured.out
    code, captured = _cli(capsys, "run", root, out, "participant", "--coils", "4")
    assert code == 1
    assert "option coils: unset -> 4" in captured.err
