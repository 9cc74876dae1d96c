"""Hostile inputs and faults, end to end through the command line: what a careful tester tries.

Each scenario copies a small simulated BIDS cohort (10 controls, 3 patients), breaks
one thing, runs ``ironmap run ... participant`` and/or ``group`` as a user would, and checks:

- no Python traceback, and every ``ironmap: error:`` line names a file or folder;
- the files ironmap did not write (inputs, another pipeline's outputs) keep their checksums;
- the outcome the scenario expects: a refusal naming the problem, a warning, or numbers.

Prints one row per scenario (``ok`` or what went wrong) and the count. Run:
``python benchmarks/hostile_inputs.py`` (about 2-4 min on 2 cores). Set ``IRONMAP_PYTHONPATH``
to run another checkout's ``src`` (e.g. the code before a fix) with the same scenarios.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ironmap.simulate.bids import write_cohort
from ironmap.simulate.cohort import draw_cohort

SUB = "sub-001"  # the participant most scenarios break: set in main() to one with >= 4 echoes
OTHER = "sub-002"  # another participant (set in main())
#: Every command's stderr that held a Python traceback, or an error line naming no file.
PROBLEMS: list[str] = []


@dataclass
class Run:
    """One command's exit status and output."""

    rc: int
    out: str
    err: str


def ironmap(*args: str | Path, cwd: Path | None = None) -> Run:
    """Run the ``ironmap`` command in a fresh interpreter."""
    env = dict(os.environ)
    if os.environ.get("IRONMAP_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["IRONMAP_PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, "-m", "ironmap", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    if "Traceback" in run.err:
        PROBLEMS.append("traceback")
    for line in errors(run):
        if not names_a_path(line):
            PROBLEMS.append(f"error names no file: {line[:80]}")
    return run


def checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def anat(root: Path, sub: str | None = None) -> Path:
    return root / (sub or SUB) / "anat"


def seg(root: Path, sub: str | None = None) -> Path:
    return root / "derivatives" / "segmentation" / (sub or SUB) / "anat"


def dseg_file(root: Path, sub: str | None = None) -> Path:
    return next(seg(root, sub).glob("*_dseg.nii.gz"))


def echoes(root: Path, sub: str | None = None) -> list[Path]:
    return sorted(anat(root, sub).glob("*_part-mag_MEGRE.nii.gz"))


def shift_affine(path: Path, mm: float) -> None:
    img = nib.load(path)
    affine = img.affine.copy()
    affine[0, 3] += mm
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine, img.header), path)


def errors(run: Run) -> list[str]:
    return [line for line in run.err.splitlines() if line.startswith("ironmap: error:")]


def names_a_path(line: str) -> bool:
    return "/" in line or ".nii" in line or ".tsv" in line or ".json" in line


# -- scenarios: (bids, out) -> None when as expected, else what went wrong ---------------------


def foreign_output(bids: Path, out: Path) -> str | None:
    out.mkdir()
    (out / "dataset_description.json").write_text(
        json.dumps({"Name": "fmriprep", "DatasetType": "derivative",
                    "GeneratedBy": [{"Name": "fMRIPrep"}]})
    )  # fmt: skip
    (out / SUB / "anat").mkdir(parents=True)
    (out / SUB / "anat" / f"{SUB}_R2starmap.nii.gz").write_bytes(b"not ours")
    before = checksums(out)
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    if checksums(out) != before:
        return "another pipeline's files were changed"
    return None if run.rc == 2 and errors(run) else f"not refused (rc {run.rc})"


def output_inside_input(bids: Path, out: Path) -> str | None:
    before = checksums(bids)
    target = bids / "derivatives" / "segmentation"
    run = ironmap("run", bids, target, "participant", "--participant-label", SUB[4:])
    if checksums(bids) != before:
        return "input files changed"
    return None if run.rc == 2 else f"not refused (rc {run.rc})"


def group_overwrite(bids: Path, out: Path) -> str | None:
    ironmap("run", bids, out, "participant")
    first = ironmap("run", bids, out, "group")
    table = out / "group" / "group_comparison.tsv"
    if first.rc != 0 or not table.exists():
        return f"first group run failed: {errors(first)[:1]}"
    before = table.read_bytes()
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    participants.loc[0, "age"] = float(participants.loc[0, "age"]) + 1.0
    participants.to_csv(bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    second = ironmap("run", bids, out, "group")
    if table.read_bytes() != before:
        return "group outputs overwritten without --force"
    if second.rc != 2:
        return f"changed inputs not refused (rc {second.rc})"
    forced = ironmap("run", bids, out, "group", "--force")
    return None if forced.rc == 0 else f"--force failed (rc {forced.rc})"


def concurrent_runs(bids: Path, out: Path) -> str | None:
    env = dict(os.environ)
    if os.environ.get("IRONMAP_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["IRONMAP_PYTHONPATH"]
    cmd = [sys.executable, "-m", "ironmap", "run", str(bids), str(out), "participant"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(1.5)
    second = ironmap("run", bids, out, "participant", "--fit-method", "loglin")
    first.communicate(timeout=900)
    if first.returncode != 0:
        return f"the first run failed (rc {first.returncode})"
    if second.rc != 2 or not errors(second):
        return f"the second run was not refused (rc {second.rc})"
    return None


def shifted_dseg(mm: float) -> Callable[[Path, Path], str | None]:
    def scenario(bids: Path, out: Path) -> str | None:
        shift_affine(dseg_file(bids), mm)
        run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
        flagged = run.rc != 0 or "align" in run.err.lower() or "shift" in run.err.lower()
        return None if flagged else "exit 0 without a warning"

    scenario.__name__ = f"dseg_shifted_{mm:g}mm"
    return scenario


def duplicate_dseg_index(bids: Path, out: Path) -> str | None:
    tsv = next(seg(bids).glob("*_dseg.tsv"))
    table = pd.read_csv(tsv, sep="\t")
    table.loc[table["index"] == 49, "index"] = 10  # Right-Thalamus listed as 10
    table.to_csv(tsv, sep="\t", index=False)
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    return None if run.rc != 0 and "10" in " ".join(errors(run)) else "not refused"


def deep_gm_only(bids: Path, out: Path) -> str | None:
    path = dseg_file(bids)
    img = nib.load(path)
    labels = np.asarray(img.dataobj)
    keep = np.isin(labels, (10, 11, 12, 13, 49, 50, 51, 52))
    nib.save(nib.Nifti1Image(np.where(keep, labels, 0).astype(np.int16), img.affine), path)
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    volumes = out / SUB / "anat" / f"{SUB}_volumes.tsv"
    if run.rc != 0 or not volumes.exists():
        return None if errors(run) else f"rc {run.rc} without an error line"
    row = pd.read_csv(volumes, sep="\t").iloc[0]
    return None if np.isnan(row["icv_ml"]) and np.isnan(row["nbv"]) else f"icv_ml {row.icv_ml}"


def lesion_all_ones(bids: Path, out: Path) -> str | None:
    path = next(seg(bids).glob("*_label-lesion_mask.nii.gz"))
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.ones(img.shape, np.uint8), img.affine), path)
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    return None if run.rc != 0 and errors(run) else "not refused"


def echo_number_contradiction(bids: Path, out: Path) -> str | None:
    files = echoes(bids)
    sides = [f.with_name(f.name.replace(".nii.gz", ".json")) for f in files[:2]]
    metas = [json.loads(s.read_text()) for s in sides]
    metas[0]["EchoTime"], metas[1]["EchoTime"] = metas[1]["EchoTime"], metas[0]["EchoTime"]
    for side, meta in zip(sides, metas, strict=True):
        side.write_text(json.dumps(meta))
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    return None if run.rc != 0 and errors(run) else "echoes silently re-sorted"


def bad_values(kind: str) -> Callable[[Path, Path], str | None]:
    def scenario(bids: Path, out: Path) -> str | None:
        path = echoes(bids)[2]
        img = nib.load(path)
        data = np.asarray(img.dataobj, dtype=np.float32)
        block = (slice(20, 40), slice(20, 40), slice(None))
        if kind == "nan_block":
            data[block] = np.nan
        else:  # int16 wraparound: large values become negative
            data[block] = -np.abs(data[block]) - 100.0
        nib.save(nib.Nifti1Image(data, img.affine, img.header), path)
        run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
        warned = [line for line in run.err.splitlines() if "warning" in line and SUB in line]
        said = any("could not be fitted" in w or "negative" in w for w in warned)
        return None if said else "no console warning about the failed voxels"

    scenario.__name__ = kind
    return scenario


def three_participants_group(bids: Path, out: Path) -> str | None:
    labels = sorted(d.name[4:] for d in bids.glob("sub-*"))[:3]
    for extra in sorted(bids.glob("sub-*")):
        if extra.name[4:] not in labels:
            shutil.rmtree(extra)
            shutil.rmtree(bids / "derivatives" / "segmentation" / extra.name, ignore_errors=True)
    participants = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)
    participants = participants[participants.participant_id.str[4:].isin(labels)]
    participants.to_csv(bids / "participants.tsv", sep="\t", index=False)
    ironmap("run", bids, out, "participant")
    run = ironmap("run", bids, out, "group")
    return None if "Traceback" not in run.err and (run.rc == 0 or errors(run)) else "traceback"


def truncated_gzip(bids: Path, out: Path) -> str | None:
    path = echoes(bids)[1]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return _fails_naming(bids, out, path.name)


def nested_json(bids: Path, out: Path) -> str | None:
    side = echoes(bids)[0].with_name(echoes(bids)[0].name.replace(".nii.gz", ".json"))
    side.write_text('{"EchoTime": 0.005, "x": ' + "[" * 100000 + "]" * 100000 + "}")
    return _fails_naming(bids, out, side.name)


def huge_header(bids: Path, out: Path) -> str | None:
    path = echoes(bids)[0]
    header = nib.Nifti1Header()
    header.set_data_shape((1200, 1200, 1200))
    header.set_data_dtype(np.float32)
    raw = header.binaryblock + b"\0" * 4 + b"\1" * 1024
    path.write_bytes(gzip.compress(raw))
    return _fails_naming(bids, out, path.name)


def huge_label(bids: Path, out: Path) -> str | None:
    path = dseg_file(bids)
    img = nib.load(path)
    labels = np.asarray(img.dataobj).astype(np.int32)
    labels[0, 0, 0] = 2**31 - 1
    nib.save(nib.Nifti1Image(labels, img.affine), path)
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    return None if "Traceback" not in run.err and "internal error" not in run.err else "crash"


def _fails_naming(bids: Path, out: Path, name: str) -> str | None:
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    lines = errors(run)
    if not lines:
        return f"no error (rc {run.rc})"
    if "internal error" in lines[0] or name not in lines[0]:
        return f"error does not name {name}: {lines[0][:90]}"
    return None


def empty_participants(bids: Path, out: Path) -> str | None:
    ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    (bids / "participants.tsv").write_text("")
    run = ironmap("run", bids, out, "group")
    return (
        None if run.rc == 2 and "participants.tsv" in " ".join(errors(run)) else "no clear error"
    )


def output_is_a_file(bids: Path, out: Path) -> str | None:
    out.write_text("a file")
    run = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    return None if run.rc == 2 and errors(run) and out.read_text() == "a file" else "not refused"


def subject_without_megre(bids: Path, out: Path) -> str | None:
    for f in anat(bids, OTHER).glob("*MEGRE*"):
        f.unlink()
    run = ironmap("run", bids, out, "participant")
    done = (out / SUB / "anat" / f"{SUB}_regions.tsv").exists()
    return None if run.rc == 1 and done else f"rc {run.rc}, others done: {done}"


def resume_by_other_path(bids: Path, out: Path) -> str | None:
    first = ironmap("run", bids, out, "participant", "--participant-label", SUB[4:])
    copy = bids.parent / "copy_of_bids"
    shutil.copytree(bids, copy)
    relative = ironmap(
        "run", os.path.relpath(copy, bids.parent), out, "participant", "--participant-label",
        SUB[4:], cwd=bids.parent,
    )  # fmt: skip
    ok = first.rc == 0 and relative.rc == 0 and "1 skipped" in relative.out
    return None if ok else f"rc {relative.rc}: {errors(relative)[:1]}"


SCENARIOS: list[Callable[[Path, Path], str | None]] = [
    foreign_output,
    output_inside_input,
    group_overwrite,
    concurrent_runs,
    shifted_dseg(30.0),
    shifted_dseg(6.0),
    duplicate_dseg_index,
    deep_gm_only,
    lesion_all_ones,
    echo_number_contradiction,
    bad_values("nan_block"),
    bad_values("int16_wraparound"),
    three_participants_group,
    truncated_gzip,
    nested_json,
    huge_header,
    huge_label,
    empty_participants,
    output_is_a_file,
    subject_without_megre,
    resume_by_other_path,
]


def main() -> None:
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        write_cohort(template, draw_cohort(n_hc=10, n_ms=3, seed=7))
        global SUB, OTHER
        counts = {d.name: len(echoes(template, d.name)) for d in sorted(template.glob("sub-*"))}
        SUB = max(counts, key=counts.get)
        OTHER = next(name for name in counts if name != SUB)
        for scenario in SCENARIOS:
            case = Path(tmp) / scenario.__name__
            bids, out = case / "bids", case / "out"
            shutil.copytree(template, bids)
            PROBLEMS.clear()
            start = time.perf_counter()
            try:
                problem = scenario(bids, out)
            except subprocess.TimeoutExpired:
                problem = "timed out"
            if problem is None and PROBLEMS:
                problem = PROBLEMS[0]
            rows.append(
                {
                    "scenario": scenario.__name__,
                    "result": "ok" if problem is None else problem,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )
            print(f"{scenario.__name__}: {rows[-1]['result']}", flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(f"{(table.result == 'ok').sum()} of {len(table)} scenarios as expected")


if __name__ == "__main__":
    main()
