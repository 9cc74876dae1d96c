"""Finding a participant's inputs in a BIDS dataset and its derivatives.

A small entity parser rather than pybids: it reads directory listings only, so discovery stays
fast on cohorts of thousands. Layout (docs/conventions.md):

- ``sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>]_echo-<n>[_part-mag]_MEGRE.nii[.gz]``
- derivatives (``BIDS_DIR/derivatives/*`` or ``--derivatives``):
  ``sub-<label>[/ses-..]/anat/sub-<label>[_ses-..][_desc-<x>]_dseg.nii[.gz]`` (+ ``.tsv``) and
  ``..._label-lesion_mask.nii[.gz]`` (also accepted in the raw dataset);
- FreeSurfer/FastSurfer subject folders and SynthSeg outputs as they come (:mod:`.freesurfer`),
  in the derivatives or ``--freesurfer-dir``.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InputError, IronmapWarning
from .freesurfer import freesurfer_segmentation, synthseg_segmentation

__all__ = [
    "MAX_TABLE_BYTES",
    "SessionInputs",
    "find_inputs",
    "parse_entities",
    "read_bids_tsv",
    "session_name",
]

_NIFTI = re.compile(r"\.nii(\.gz)?$")


def parse_entities(name: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name.

    ``"sub-01_ses-a_echo-2_MEGRE.nii.gz"`` -> ``({"sub": "01", "ses": "a", "echo": "2"}, "MEGRE")``
    """
    stem = _NIFTI.sub("", name)
    stem = re.sub(r"\.(json|tsv)$", "", stem)
    parts = stem.split("_")
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if sep:
            entities[key] = value
    return entities, parts[-1]


@dataclass(frozen=True)
class SessionInputs:
    """The files of one participant (and session).

    Attributes
    ----------
    subject : str
        Label without ``sub-``.
    session : str or None
        Label without ``ses-``.
    echoes : tuple of Path
        Magnitude MEGRE files, one per echo.
    dseg : Path or None
        Segmentation; its ``.tsv`` (if any) in ``dseg_tsv``.
    lesion_mask : Path or None
    phases : tuple of Path
        Phase MEGRE files (``part-phase``), one per echo, or empty.
    imags : tuple of Path
        With real/imaginary pairs and no magnitudes: the ``part-imag`` MEGRE files, one per
        echo, partners of ``echoes`` (then the ``part-real`` files); empty otherwise. Read by
        :func:`ironmap.io.phase.load_real_imag`.
    t1w : Path or None
        A T1-weighted image of the same session (``*_T1w.nii[.gz]``), registration target of
        ``--segmentation atlas``.
    dseg_image : Path or None
        The image ``dseg`` was made on, when its tool says so (FreeSurfer's ``orig.mgz``,
        SynthSeg's input beside its output): the source of a registration to the GRE.
    chimap : Path or None
        An external susceptibility map in the derivatives (BIDS ``*_Chimap.nii[.gz]``, as
        QSMxT writes it; ``desc-`` variants such as QSMxT's source-separation maps are not
        taken), used instead of computing one (``--qsm auto``).
    problem : str
        Why this participant (session) cannot be processed, naming the folder (e.g. no MEGRE
        files); empty when it can. Its other fields are then empty.
    """

    subject: str
    session: str | None
    echoes: tuple[Path, ...]
    dseg: Path | None = None
    dseg_tsv: Path | None = None
    lesion_mask: Path | None = None
    phases: tuple[Path, ...] = ()
    t1w: Path | None = None
    problem: str = ""
    dseg_image: Path | None = None
    imags: tuple[Path, ...] = ()
    chimap: Path | None = None

    @property
    def name(self) -> str:
        """``sub-<label>[_ses-<label>]``: the file-name prefix of this session."""
        return session_name(self.subject, self.session)


def session_name(subject: str, session: str | None) -> str:
    """``sub-<label>[_ses-<label>]`` (labels without their ``sub-``/``ses-`` prefix)."""
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def _anat_dirs(root: Path, subject: str) -> list[tuple[str | None, Path]]:
    sub_dir = root / f"sub-{subject}"
    out = []
    if (sub_dir / "anat").is_dir():
        out.append((None, sub_dir / "anat"))
    for ses in sorted(sub_dir.glob("ses-*")):
        if (ses / "anat").is_dir():
            out.append((ses.name[4:], ses / "anat"))
    return out


def _pick(candidates: list[Path], what: str, name: str) -> Path | None:
    if not candidates:
        return None
    if len(candidates) > 1:
        warnings.warn(
            f"{name}: {len(candidates)} {what} files ({', '.join(p.name for p in candidates)}); "
            f"using {candidates[0].name}",
            IronmapWarning,
            stacklevel=3,
        )
    return candidates[0]


def _matches(path: Path, subject: str, session: str | None) -> bool:
    entities, _ = parse_entities(path.name)
    return entities.get("sub") == subject and entities.get("ses") == session


def find_inputs(
    bids_dir: str | Path,
    *,
    participant_labels: Sequence[str] | None = None,
    derivatives: Iterable[str | Path] = (),
    exclude: Iterable[str | Path] = (),
    freesurfer_dirs: Iterable[str | Path] = (),
) -> list[SessionInputs]:
    """Every participant/session with multi-echo GRE magnitudes, with its segmentation files.

    A participant (session) that cannot be processed, e.g. without an ``anat`` folder or MEGRE
    magnitudes, is returned with :attr:`SessionInputs.problem` set (one line naming the
    folder), so that it fails alone while the others run.

    Parameters
    ----------
    bids_dir : str or Path
        BIDS dataset root (must contain ``dataset_description.json`` or ``sub-*`` folders).
    participant_labels : sequence of str, optional
        Labels without ``sub-`` (a leading ``sub-`` is tolerated); default: all.
    derivatives : iterable of paths
        Extra derivatives datasets; ``BIDS_DIR/derivatives/*`` are always searched, except
        ironmap's own (their ``dataset_description.json`` names ironmap).
    exclude : iterable of paths
        Datasets never searched (e.g. the output directory).
    freesurfer_dirs : iterable of paths
        FreeSurfer ``SUBJECTS_DIR`` folders (``--freesurfer-dir``), preferred to the other
        segmentations (:mod:`.freesurfer`).

    Raises
    ------
    InputError
        A problem of the whole dataset: missing dataset or ``--derivatives`` folder, no
        ``sub-*`` folders, an unknown participant label, or no selected participant with MEGRE
        files at all.
    """
    root = Path(bids_dir)
    if not root.is_dir():
        raise InputError(f"{root}: No such directory; give the BIDS dataset root")
    subjects = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise InputError(f"{root}: no sub-* folders; is this a BIDS dataset root?")
    if participant_labels:
        wanted = [lab.removeprefix("sub-") for lab in participant_labels]
        unknown = sorted(set(wanted) - set(subjects))
        if unknown:
            raise InputError(
                f"{root}: no participant(s) {', '.join('sub-' + u for u in unknown)}; "
                "--participant-label takes labels without 'sub-'"
            )
        subjects = [s for s in subjects if s in wanted]
    skip = {Path(p).resolve() for p in exclude}
    deriv_roots = [Path(d) for d in derivatives]
    from .dataset import is_ironmap_dataset  # (it imports this module)

    # ironmap's own outputs (e.g. BIDS_DIR/derivatives/ironmap) are never inputs
    found_roots = sorted(p for p in (root / "derivatives").glob("*") if p.is_dir())
    deriv_roots += [p for p in found_roots if not is_ironmap_dataset(p)]
    for d in deriv_roots:
        if not d.is_dir():
            raise InputError(f"{d}: No such directory (given with --derivatives)")
    deriv_roots = [d for d in deriv_roots if d.resolve() not in skip]
    fs_dirs = [Path(d) for d in freesurfer_dirs]
    for d in fs_dirs:
        if not d.is_dir():
            raise InputError(f"{d}: No such directory (given with --freesurfer-dir)")

    found = []
    for subject in subjects:
        sessions = _anat_dirs(root, subject)
        if not sessions:
            problem = f"{root / ('sub-' + subject)}: no anat folder with MEGRE files"
            found.append(SessionInputs(subject, None, (), problem=problem))
        for session, anat in sessions:
            found.append(_session_inputs(subject, session, anat, deriv_roots, fs_dirs))
    if all(f.problem for f in found):
        if len(found) == 1:
            raise InputError(found[0].problem)
        raise InputError(
            f"{root}: none of the {len(found)} participants/sessions has multi-echo GRE "
            f"magnitudes (*_MEGRE.nii[.gz], names in docs/conventions.md); first: "
            f"{found[0].problem}"
        )
    return found


def _session_inputs(
    subject: str,
    session: str | None,
    anat: Path,
    deriv_roots: list[Path],
    fs_dirs: Sequence[Path] = (),
) -> SessionInputs:
    """The files of one participant (session) whose ``anat`` folder is given."""
    name = session_name(subject, session)
    echoes = sorted(
        p
        for p in anat.glob("*_MEGRE.nii*")
        if _NIFTI.search(p.name)
        and _matches(p, subject, session)
        and parse_entities(p.name)[0].get("part", "mag") == "mag"
    )
    imags: tuple[Path, ...] = ()
    if not echoes:
        echoes, imags = _real_imag(anat, subject, session, name)
    if not echoes:
        problem = (
            f"{anat}: no *_MEGRE.nii[.gz] magnitude files for {name} "
            "(names in docs/conventions.md)"
        )
        return SessionInputs(subject, session, (), problem=problem)
    if not imags:
        echoes = _one_acquisition(echoes, name)
    phases = (
        ()
        if imags
        else tuple(
            sorted(
                p for p in anat.glob("*_part-phase_MEGRE.nii*") if _matches(p, subject, session)
            )
        )
    )
    if phases and len(phases) != len(echoes):
        warnings.warn(
            f"{name}: {len(phases)} phase but {len(echoes)} magnitude echoes; phase ignored",
            IronmapWarning,
            stacklevel=3,
        )
        phases = ()
    seg_dirs = [d / rel for d in deriv_roots for rel in _relative_anat(subject, session)]
    dsegs = [
        p for d in seg_dirs for p in sorted(d.glob("*_dseg.nii*")) if _matches(p, subject, session)
    ]
    made_on = _tool_segmentations(subject, session, deriv_roots, fs_dirs)
    explicit = [p for p in made_on if any(p.is_relative_to(d) for d in fs_dirs)]
    dsegs = [*explicit, *dsegs, *(p for p in made_on if p not in explicit)]
    dseg = _pick(dsegs, "segmentation (dseg)", name)
    lesions = [
        p
        for d in [anat, *seg_dirs]
        for p in sorted(d.glob("*_label-lesion_mask.nii*"))
        if _matches(p, subject, session)
    ]
    t1ws = [p for p in sorted(anat.glob("*_T1w.nii*")) if _matches(p, subject, session)]
    chimaps = [
        p
        for d in seg_dirs
        for p in sorted(d.glob("*_Chimap.nii*"))
        if _matches(p, subject, session) and "desc" not in parse_entities(p.name)[0]
    ]
    dseg_tsv = None
    if dseg is not None and dseg not in made_on:  # FreeSurfer LUT codes: no .tsv
        tsv = dseg.with_name(_NIFTI.sub("", dseg.name) + ".tsv")
        dseg_tsv = tsv if tsv.exists() else None
    return SessionInputs(
        subject=subject,
        session=session,
        echoes=tuple(echoes),
        dseg=dseg,
        dseg_tsv=dseg_tsv,
        lesion_mask=_pick(lesions, "lesion mask", name),
        phases=phases,
        t1w=t1ws[0] if t1ws else None,  # used by --segmentation atlas only
        dseg_image=made_on.get(dseg) if dseg is not None else None,
        imags=imags,
        chimap=_pick(chimaps, "susceptibility map (Chimap)", name),
    )


def _tool_segmentations(
    subject: str, session: str | None, deriv_roots: list[Path], fs_dirs: Sequence[Path]
) -> dict[Path, Path | None]:
    """``labels -> image made on`` of FreeSurfer/FastSurfer/SynthSeg outputs (:mod:`.freesurfer`):
    ``--freesurfer-dir`` first, then FreeSurfer folders (also fMRIPrep's
    ``sourcedata/freesurfer``) and SynthSeg outputs in the derivatives."""
    found: dict[Path, Path | None] = {}
    explicit = freesurfer_segmentation(fs_dirs, subject, session, bare_labels=True)
    fs_roots = [r for d in deriv_roots for r in (d, d / "sourcedata" / "freesurfer")]
    for pair in (explicit, freesurfer_segmentation(fs_roots, subject, session)):
        if pair is not None:
            found.setdefault(*pair)
    for labels, image in synthseg_segmentation(deriv_roots, subject, session):
        found.setdefault(labels, image)
    return found


def _relative_anat(subject: str, session: str | None) -> list[Path]:
    base = Path(f"sub-{subject}")
    return [(base / f"ses-{session}" / "anat") if session else (base / "anat")]


def _real_imag(
    anat: Path, subject: str, session: str | None, name: str
) -> tuple[list[Path], tuple[Path, ...]]:
    """``part-real`` echoes and their ``part-imag`` partners (for a session without
    magnitudes); none, with a warning, when a partner is missing."""
    reals = sorted(
        p
        for p in anat.glob("*_part-real_MEGRE.nii*")
        if _NIFTI.search(p.name) and _matches(p, subject, session)
    )
    if not reals:
        return [], ()
    reals = _one_acquisition(reals, name)
    imags = [p.with_name(p.name.replace("_part-real_", "_part-imag_")) for p in reals]
    missing = [p.name for p in imags if not p.exists()]
    if missing:
        warnings.warn(
            f"{name}: part-real echoes without their part-imag partner ({missing[0]}); "
            "real/imaginary ignored",
            IronmapWarning,
            stacklevel=4,
        )
        return [], ()
    return reals, tuple(imags)


def _one_acquisition(echoes: list[Path], name: str) -> list[Path]:
    """Keep one multi-echo series when several (acq-/run-) exist, with a warning."""
    groups: dict[tuple, list[Path]] = {}
    for p in echoes:
        entities, _ = parse_entities(p.name)
        key = tuple(sorted((k, v) for k, v in entities.items() if k not in ("echo", "part")))
        groups.setdefault(key, []).append(p)
    if len(groups) > 1:
        keys = sorted(groups)
        warnings.warn(
            f"{name}: {len(groups)} multi-echo series; using the first "
            f"({groups[keys[0]][0].name}, {len(groups[keys[0]])} echoes)",
            IronmapWarning,
            stacklevel=3,
        )
        return groups[keys[0]]
    return echoes


#: Largest TSV table read (``dseg.tsv``, ``participants.tsv``), in bytes.
MAX_TABLE_BYTES = 64 * 2**20


def read_bids_tsv(path: str | Path) -> pd.DataFrame:
    """A BIDS TSV as strings: ``n/a`` is missing, nothing else is (``NA`` stays a string).

    UTF-8 with or without a byte-order mark, LF or CRLF line ends.

    Raises
    ------
    InputError
        One line naming the file: missing, larger than :data:`MAX_TABLE_BYTES`, not UTF-8
        text, empty, a column named twice, or rows that do not parse.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise InputError(f"{path}: {size} bytes, more than a {MAX_TABLE_BYTES}-byte table")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8 TSV") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    header = text.splitlines()[0].split("\t") if text.strip() else []
    if not any(h.strip() for h in header):
        raise InputError(
            f"{path}: empty file; a TSV needs a header line (see docs/conventions.md)"
        )
    seen = set()
    for name in header:
        if name in seen:
            raise InputError(f"{path}: column {name} appears twice; name each column once")
        seen.add(name)
    try:
        return pd.read_csv(
            io.StringIO(text), sep="\t", dtype=str, na_values=["n/a"], keep_default_na=False
        )
    except Exception as exc:  # pandas' parser errors: ragged rows, NUL bytes, ...
        raise InputError(f"{path}: cannot read as a TSV table ({_first_line(exc)})") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
