"""Seeded fuzzing of every loader: corrupt NIfTI, gzip, JSON and TSV files.

Property: each input either loads, and the result is sane (finite positive increasing echo
times, consistent shapes, integer labels with names, unique participants), or raises an
:class:`~ironmap.errors.InputError` of one line naming the file; never another exception, and
no warning other than an :class:`~ironmap.errors.IronmapWarning` naming the file. Inputs come
from ``numpy.random.default_rng([SEED, loader, variant])``, so a failure names the variant that
reproduces it.
"""

from __future__ import annotations

import gzip
import json
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cohort.tables import PARTICIPANT_COLUMNS, read_participants
from ironmap.errors import InputError, IronmapWarning
from ironmap.io.echoes import (
    MultiEchoImage,
    load_bids_echoes,
    load_image,
    load_multiecho,
    load_volume,
    read_sidecar,
)
from ironmap.regions import read_label_table

SEED = 20240514
N_VARIANTS = 200
TE = [0.004, 0.008, 0.012]

# NIfTI-1 header fields: (byte offset, struct format) of the fields worth breaking.
FIELDS = {
    "sizeof_hdr": (0, "<i"),
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow": (280, "<12f"),
    "magic": (344, "<4s"),
}
WEIRD_FLOATS = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-30, 1e30, 3.4e38, 352.0, 353.0, 1e9]
# NIfTI datatype codes: valid ones, complex, RGB(A), and codes that do not exist.
DATATYPES = (0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 1792, 2304, 255, -1)


def _run(call: Callable[[], object], names: list[Path], check: Callable[[object], None]) -> str:
    """Call a loader: 'loaded' or 'refused' when the property holds, else what went wrong."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except InputError as err:
            message = str(err)
            if "\n" in message or not any(str(n) in message for n in names):
                return f"InputError not naming {[n.name for n in names]}: {message!r}"
            result = "refused"
        except Exception as exc:  # the property under test: nothing else escapes
            return f"{type(exc).__name__}: {str(exc)[:200]}"
    for w in caught:
        text = str(w.message)
        if not issubclass(w.category, IronmapWarning) or not any(str(n) in text for n in names):
            return f"stray warning {w.category.__name__}: {text[:200]}"
    if isinstance(result, str):
        return result
    try:
        check(result)
    except AssertionError as exc:
        return f"loaded but not sane: {exc}"
    return "loaded"


def _report(outcomes: list[str], *, min_loaded: int = 5, min_refused: int = 20) -> None:
    """No failure, and both outcomes seen often enough for the variants to mean something."""
    failures = [o for o in outcomes if not o.endswith(("loaded", "refused"))]
    assert not failures, f"{len(failures)} failures, e.g.\n" + "\n".join(failures[:15])
    assert len(outcomes) == N_VARIANTS
    loaded = sum(o.endswith("loaded") for o in outcomes)
    assert min_loaded <= loaded <= N_VARIANTS - min_refused, f"{loaded} of {N_VARIANTS} loaded"


# -- NIfTI ------------------------------------------------------------------------------------


def _base_nifti(rng: np.random.Generator, shape: tuple[int, ...], affine=None) -> bytes:
    """A valid uncompressed NIfTI-1 (.nii) of magnitude-like values."""
    dtype = rng.choice([np.float32, np.int16, np.uint8, np.float64])
    data = rng.uniform(1, 120, shape).astype(dtype)
    affine = np.diag([*rng.uniform(0.5, 2.0, 3), 1.0]) if affine is None else affine
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    return img.to_bytes()


def _set_field(raw: bytearray, rng: np.random.Generator) -> str:
    name = rng.choice(list(FIELDS))
    offset, fmt = FIELDS[name]
    count = struct.calcsize(fmt)
    if name == "dim":
        values = list(struct.unpack_from(fmt, raw, offset))
        i = int(rng.integers(0, 8))
        values[i] = int(rng.choice([0, -1, 1, 2, 5, 7, 8, 1200, 32767, -32768]))
    elif name == "datatype":
        values = [int(rng.choice(DATATYPES))]
    elif name in ("bitpix", "qform_code", "sform_code"):
        values = [int(rng.integers(-5, 300))]
    elif name == "sizeof_hdr":
        values = [int(rng.choice([0, 348, 540, 349, -1, 2**31 - 1]))]
    elif name == "magic":
        values = [bytes(rng.choice([b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"xxxx"]))]
    else:
        n = count // 4
        values = list(struct.unpack_from(fmt, raw, offset))
        i = int(rng.integers(0, n))
        values[i] = float(rng.choice(WEIRD_FLOATS))
    struct.pack_into(fmt, raw, offset, *values)
    return f"{name}={values}"


def nifti_variant(
    rng: np.random.Generator, shape: tuple[int, ...], affine=None
) -> tuple[bytes, bool, str]:
    """(file bytes, gzipped, description) of one corrupt (or valid) NIfTI."""
    kind = rng.choice(
        ["truncate", "header_bytes", "data_bytes", "field", "fields", "values", "shape", "gzip"]
    )
    gz = bool(rng.random() < 0.5)
    raw = bytearray(_base_nifti(rng, shape, affine))
    desc = str(kind)
    if kind == "truncate":
        cut = int(rng.integers(0, len(raw)))
        raw = raw[:cut]
        desc += f" at {cut}"
    elif kind == "header_bytes":
        for at in rng.integers(0, 348, int(rng.integers(1, 6))):
            raw[at] = int(rng.integers(0, 256))
    elif kind == "data_bytes":
        for at in rng.integers(352, len(raw), int(rng.integers(1, 30))):
            raw[at] = int(rng.integers(0, 256))
    elif kind in ("field", "fields"):
        desc += " " + ", ".join(_set_field(raw, rng) for _ in range(1 if kind == "field" else 3))
    elif kind == "values":
        data = np.asarray(nib.Nifti1Image.from_bytes(bytes(raw)).dataobj).astype(np.float32)
        block = tuple(slice(int(rng.integers(0, n)), None) for n in data.shape)
        value = float(rng.choice([np.nan, np.inf, -np.inf, -5.0, 3e38, -3e38, 0.0]))
        data[block] = value
        affine = nib.Nifti1Image.from_bytes(bytes(raw)).affine
        raw = bytearray(nib.Nifti1Image(data, affine).to_bytes())
        desc += f" {value}"
    elif kind == "shape":
        shapes = [(7,), (5, 4), (3, 3, 3, 3, 2), (4, 4, 0), (0,), (2, 2, 2, 1, 1, 3), shape]
        new = shapes[int(rng.integers(0, len(shapes)))]
        raw = bytearray(_base_nifti(rng, new, affine))
        desc += f" {new}"
    if kind == "gzip":
        choice = rng.choice(["random", "gzip_of_random", "corrupt_stream", "truncated_stream"])
        desc += f" {choice}"
        if choice == "random":
            return rng.bytes(int(rng.integers(0, 2000))), True, desc
        if choice == "gzip_of_random":
            return gzip.compress(rng.bytes(int(rng.integers(0, 2000)))), True, desc
        packed = bytearray(gzip.compress(bytes(raw)))
        if choice == "corrupt_stream":
            for at in rng.integers(10, len(packed), int(rng.integers(1, 10))):
                packed[at] = int(rng.integers(0, 256))
        else:
            packed = packed[: int(rng.integers(10, len(packed)))]
        return bytes(packed), True, desc
    return (gzip.compress(bytes(raw)) if gz else bytes(raw)), gz, desc


def _write_nifti(folder: Path, name: str, content: bytes, gz: bool) -> Path:
    path = folder / (name + (".nii.gz" if gz else ".nii"))
    path.write_bytes(content)
    return path


def _sane_image(img: object) -> None:
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)
    assert len(img.shape) >= 1
    assert min(img.shape) >= 1
    assert np.all(np.isfinite(img.affine))


def _sane_volume(result: object) -> None:
    data, affine = result
    assert data.ndim == 3, data.shape
    assert affine.shape == (4, 4)
    assert np.all(np.isfinite(affine))


def _sane_multiecho(n_echoes: int) -> Callable[[object], None]:
    def check(image: object) -> None:
        assert isinstance(image, MultiEchoImage)
        assert image.data.ndim == 4
        assert image.data.shape[3] == n_echoes == image.echo_times_s.size
        assert image.data.dtype == np.float32
        te = image.echo_times_s
        assert np.all(np.isfinite(te)), te
        assert np.all(te > 0), te
        assert np.all(np.diff(te) > 0), te
        assert np.all(np.isfinite(image.affine))
        assert np.isfinite(image.data).any()

    return check


@pytest.mark.parametrize(
    ("loader", "shape"), [("load_image", (6, 5, 4)), ("load_volume", (6, 5, 4))]
)
def test_fuzz_nifti_single_file_loaders(tmp_path, loader, shape):
    call = {"load_image": load_image, "load_volume": load_volume}[loader]
    check = {"load_image": _sane_image, "load_volume": _sane_volume}[loader]
    outcomes: list[str] = []
    for i in range(N_VARIANTS):
        rng = np.random.default_rng([SEED, 1 if loader == "load_image" else 2, i])
        content, gz, desc = nifti_variant(rng, shape)
        path = _write_nifti(tmp_path, f"v{i}", content, gz)
        problem = _run(lambda p=path: call(p), [path], check)
        outcomes.append(f"variant {i} ({desc}): {problem}")
    _report(outcomes)


def test_fuzz_load_multiecho(tmp_path):
    outcomes: list[str] = []
    for i in range(N_VARIANTS):
        rng = np.random.default_rng([SEED, 3, i])
        content, gz, desc = nifti_variant(rng, (5, 4, 3, 3))
        path = _write_nifti(tmp_path, f"v{i}", content, gz)
        problem = _run(lambda p=path: load_multiecho(p, TE), [path], _sane_multiecho(3))
        outcomes.append(f"variant {i} ({desc}): {problem}")
    _report(outcomes)


# -- JSON sidecars ------------------------------------------------------------------------------


def json_variant(rng: np.random.Generator, te: float) -> tuple[str | bytes, str]:
    """(sidecar content, description): valid, malformed, or with strange EchoTime values."""
    kind = rng.choice(["random_text", "binary", "deep", "non_object", "echo_time", "extra", "ok"])
    if kind == "random_text":
        alphabet = list('{}[]":,0123456789.eE-+ truefalsnEchoTime\\\n')
        return "".join(rng.choice(alphabet, int(rng.integers(0, 80)))), str(kind)
    if kind == "binary":
        return rng.bytes(int(rng.integers(1, 200))), str(kind)
    if kind == "deep":
        depth = int(rng.choice([50, 1000, 5000, 200_000]))
        opener, closer = ("[", "]") if rng.random() < 0.5 else ('{"a":', "}")
        return opener * depth + "1" + closer * depth, f"deep {depth}"
    if kind == "non_object":
        return str(rng.choice(["[]", "1", '"EchoTime"', "null", "[0.004]", "true"])), str(kind)
    if kind == "echo_time":
        values = 'NaN|Infinity|-Infinity|-0.004|0|1e308|1e999|4|40|0.7|"0.004"|"4 ms"|"nan"|""'
        values += '|null|true|[0.004]|{"v": 1}|1e-320|0.004|' + "9" * 500 + "|" + "9" * 5000
        value = rng.choice(values.split("|"))
        return '{"EchoTime": ' + str(value) + "}", f"EchoTime {str(value)[:20]}"
    if kind == "extra":
        number = rng.choice(["1", "2", "3", "-1", "1.5", '"1"', "null", "true", "99999999999999"])
        return f'{{"EchoTime": {te!r}, "EchoNumber": {number}}}', f"EchoNumber {number}"
    return json.dumps({"EchoTime": te, "MagneticFieldStrength": 3}), str(kind)


def _write_echoes(folder: Path, rng: np.random.Generator) -> list[Path]:
    data = rng.uniform(10, 100, (5, 4, 3)).astype(np.float32)
    files = []
    for n, te in enumerate(TE):
        path = folder / f"sub-01_echo-{n + 1}_part-mag_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image(data * np.exp(-30 * te), np.eye(4)), path)
        (folder / path.name.replace(".nii.gz", ".json")).write_text(json.dumps({"EchoTime": te}))
        files.append(path)
    return files


def _sane_sidecar(result: object) -> None:
    meta, files = result
    assert isinstance(meta, dict)
    assert all(isinstance(f, Path) and f.exists() for f in files)


def test_fuzz_read_sidecar(tmp_path):
    files = _write_echoes(tmp_path, np.random.default_rng(SEED))
    outcomes: list[str] = []
    for i in range(N_VARIANTS):
        rng = np.random.default_rng([SEED, 4, i])
        content, desc = json_variant(rng, 0.008)
        side = tmp_path / "sub-01_echo-2_part-mag_MEGRE.json"
        if isinstance(content, bytes):
            side.write_bytes(content)
        else:
            side.write_text(content)
        problem = _run(lambda: read_sidecar(files[1]), [side], _sane_sidecar)
        outcomes.append(f"variant {i} ({desc}): {problem}")
    _report(outcomes)


def test_fuzz_load_bids_echoes(tmp_path):
    """One of three echoes corrupt: its image, or its sidecar."""
    outcomes: list[str] = []
    for i in range(N_VARIANTS):
        rng = np.random.default_rng([SEED, 5, i])
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        files = _write_echoes(folder, rng)
        which = int(rng.integers(0, 3))
        side = folder / files[which].name.replace(".nii.gz", ".json")
        if rng.random() < 0.5:
            content, desc = json_variant(rng, TE[which])
            if isinstance(content, bytes):
                side.write_bytes(content)
            else:
                side.write_text(content)
            culprit = side
        else:
            content, gz, desc = nifti_variant(rng, (5, 4, 3), np.eye(4))
            files[which].unlink()
            files[which] = _write_nifti(folder, files[which].name[: -len(".nii.gz")], content, gz)
            culprit = files[which]
        order = [int(k) for k in rng.permutation(3)]
        problem = _run(
            lambda f=files, o=order: load_bids_echoes([f[k] for k in o]),
            [culprit],
            _sane_multiecho(3),
        )
        outcomes.append(f"variant {i} (echo {which + 1}, {desc}): {problem}")
    _report(outcomes)


# -- TSV tables ---------------------------------------------------------------------------------


def _cell(rng: np.random.Generator, column: str, row: int) -> str:
    kind = rng.random()
    if kind < 0.6:
        return {
            "participant_id": f"sub-{row:02d}",
            "age": f"{rng.uniform(20, 70):.1f}",
            "sex": str(rng.choice(["M", "F", "male", "female", "o"])),
            "group": "HC" if row % 2 else "MS",
            "phenotype": "n/a" if row % 2 else str(rng.choice(["RRMS", "SPMS", "PPMS", "CIS"])),
            "disease_duration": "n/a" if row % 2 else f"{rng.uniform(0, 15):.1f}",
            "edss": "n/a" if row % 2 else str(rng.integers(0, 20) / 2),
            "site": str(rng.choice(["a", "b"])),
            "index": str(rng.integers(0, 120)),
            "name": str(rng.choice(["Left-Thalamus", "Right-Putamen", "CSF", "x"])),
        }.get(column, "1")
    choices = (
        '|n/a|NA|nan|-1|1e999|inf|0x10|10.5|\x00|é|2147483647| |"|sub-01|HC|MS|sub-|' + "9" * 40
    )
    return str(rng.choice(choices.split("|")))


def tsv_variant(rng: np.random.Generator, columns: list[str], n_rows: int) -> tuple[bytes, str]:
    """(file bytes, description) of a TSV with random cells, columns, encodings, line ends."""
    kinds = "cells binary drop_column dup_column dup_row ragged bom_crlf empty header_only ok"
    kind = rng.choice(kinds.split())
    cols = list(columns)
    if kind == "drop_column":
        cols.pop(int(rng.integers(0, len(cols))))
    if kind == "dup_column":
        cols.append(cols[int(rng.integers(0, len(cols)))])
    p_odd = 1.0 if kind == "cells" else 0.1  # share of random cells
    rows = [
        [_cell(rng, c, r + 1) if rng.random() < p_odd else _good(c, r + 1) for c in cols]
        for r in range(n_rows)
    ]
    if kind == "dup_row":
        rows.append(list(rows[0]))
    if kind == "ragged":
        rows[int(rng.integers(0, n_rows))].append("extra")
    if kind == "header_only":
        rows = []
    text = "\n".join("\t".join(r) for r in [cols, *rows]) + "\n"
    if kind == "binary":
        return rng.bytes(int(rng.integers(1, 300))), str(kind)
    if kind == "empty":
        return b"", str(kind)
    if kind == "bom_crlf":
        return ("\ufeff" + text.replace("\n", "\r\n")).encode(), str(kind)
    return text.encode(), str(kind)


def _good(column: str, row: int) -> str:
    return {
        "participant_id": f"sub-{row:02d}",
        "age": str(30 + row),
        "sex": "F" if row % 3 else "M",
        "group": "HC" if row % 2 else "MS",
        "phenotype": "n/a" if row % 2 else "RRMS",
        "disease_duration": "n/a" if row % 2 else "3",
        "edss": "n/a" if row % 2 else "2.5",
        "site": "a",
        "index": str(row * 7),
        "name": f"Structure-{row}",
    }[column]


def _sane_labels(table: object) -> None:
    assert isinstance(table, dict)
    for code, name in table.items():
        assert isinstance(code, int)
        assert code >= 0
        assert isinstance(name, str)
        assert name.strip()


def _sane_participants(table: object) -> None:
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == list(PARTICIPANT_COLUMNS)
    assert len(table) > 0
    assert table.participant_id.is_unique
    assert table.participant_id.str.startswith("sub-").all()
    assert ((table.age > 0) & (table.age <= 120)).all()
    assert set(table.group) <= {"HC", "MS"}


@pytest.mark.parametrize(
    ("name", "reader", "columns", "check"),
    [
        ("sub-01_dseg.tsv", read_label_table, ["index", "name"], _sane_labels),
        ("participants.tsv", read_participants, list(PARTICIPANT_COLUMNS), _sane_participants),
    ],
)
def test_fuzz_tables(tmp_path, name, reader, columns, check):
    outcomes: list[str] = []
    for i in range(N_VARIANTS):
        rng = np.random.default_rng([SEED, 6 if name == "participants.tsv" else 7, i])
        content, desc = tsv_variant(rng, columns, int(rng.integers(1, 8)))
        path = tmp_path / f"v{i}" / name
        path.parent.mkdir()
        path.write_bytes(content)
        problem = _run(lambda p=path: reader(p), [path], check)
        outcomes.append(f"variant {i} ({desc}): {problem}")
    _report(outcomes)
