"""Writing the synthetic cohort as a BIDS dataset with a segmentation derivatives dataset."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import __version__
from ..io import atomic_write_bytes, save_nifti, write_json
from ..io.bids import session_name
from .anatomy import LABEL_NAMES
from .cohort import Subject
from .subject import SubjectData

__all__ = [
    "SEGMENTATION_DIR",
    "write_cohort",
    "write_dataset_files",
    "write_sessions_file",
    "write_subject",
]

#: Derivatives dataset (inside the BIDS root) holding dseg and lesion masks.
SEGMENTATION_DIR = Path("derivatives") / "segmentation"

_PARTICIPANT_COLUMNS = {
    "participant_id": {"Description": "participant label"},
    "age": {"Description": "age at scan (the first session's)", "Units": "year"},
    "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
    "group": {"Description": "diagnosis group", "Levels": {"HC": "healthy control", "MS": "MS"}},
    "phenotype": {"Description": "MS phenotype (n/a for controls)"},
    "disease_duration": {"Description": "years since first symptoms", "Units": "year"},
    "edss": {"Description": "Expanded Disability Status Scale"},
    "site": {"Description": "acquisition centre"},
}


_SESSION_COLUMNS = {
    "session_id": {"Description": "session label"},
    "acq_time": {"Description": "date and time of the session (ISO 8601)"},
    "age": {"Description": "age at the session", "Units": "year"},
    "edss": {"Description": "Expanded Disability Status Scale at the session (n/a for HC)"},
}


def write_sessions_file(root: Path, participant_id: str, table: pd.DataFrame) -> Path:
    """``sub-<label>/sub-<label>_sessions.tsv`` (+ ``.json``): one row per session."""
    path = Path(root) / participant_id / f"{participant_id}_sessions.tsv"
    atomic_write_bytes(path, table.to_csv(sep="\t", index=False, na_rep="n/a").encode())
    write_json(path.with_suffix(".json"), _SESSION_COLUMNS)
    return path


def _image(data: np.ndarray, affine: np.ndarray, dtype) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_dataset_files(root: Path, table: pd.DataFrame) -> None:
    """``dataset_description.json``, ``participants.tsv/json`` and the derivatives description."""
    generated = [{"Name": "ironmap", "Version": __version__, "Description": "ironmap simulate"}]
    write_json(
        root / "dataset_description.json",
        {
            "Name": "ironmap synthetic multicentre MS cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": generated,
        },
    )
    atomic_write_bytes(
        root / "participants.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a").encode()
    )
    write_json(root / "participants.json", _PARTICIPANT_COLUMNS)
    write_json(
        root / SEGMENTATION_DIR / "dataset_description.json",
        {
            "Name": "ironmap synthetic segmentations and lesion masks (ground truth)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated,
        },
    )


def write_subject(
    root: Path, subject: Subject, data: SubjectData, *, session: str | None = None
) -> list[Path]:
    """Write one subject's MEGRE echoes (+ sidecars), T1w if any, dseg (+ tsv), lesion mask.

    With ``session`` (label without ``ses-``) into ``sub-<label>/ses-<session>/anat`` (and the
    same under the segmentation dataset), every name prefixed ``sub-<label>_ses-<session>``.
    """
    sub = session_name(subject.label, session)
    folder = Path(subject.participant_id) / (f"ses-{session}" if session else "") / "anat"
    anat = root / folder
    protocol = subject.site.protocol
    written = []
    stored = np.clip(np.round(data.magnitude), 0, np.iinfo(np.int16).max).astype(np.int16)
    tr = round(max(protocol.echo_times_s) + 0.006, 4)
    for n, te in enumerate(protocol.echo_times_s, start=1):
        path = anat / f"{sub}_echo-{n}_part-mag_MEGRE.nii.gz"
        save_nifti(_image(stored[..., n - 1], data.affine, np.int16), path)
        write_json(
            path.with_name(path.name.replace(".nii.gz", ".json")),
            {
                "EchoTime": te,
                "EchoNumber": n,
                "RepetitionTime": tr,
                "FlipAngle": 15,
                "MagneticFieldStrength": 3,
                "Manufacturer": protocol.manufacturer,
                "MRAcquisitionType": "3D",
                "InstitutionName": subject.site.name,
            },
        )
        written.append(path)
    if data.phase is not None:  # int16 like scanners: -4096..4095 <-> -pi..pi
        scale = np.pi / 4096.0
        stored_phase = np.clip(np.round(data.phase / scale), -4096, 4095).astype(np.int16)
        for n, te in enumerate(protocol.echo_times_s, start=1):
            path = anat / f"{sub}_echo-{n}_part-phase_MEGRE.nii.gz"
            img = _image(stored_phase[..., n - 1], data.affine, np.int16)
            img.header.set_slope_inter(scale, 0.0)
            save_nifti(img, path)
            write_json(
                path.with_name(path.name.replace(".nii.gz", ".json")),
                {"EchoTime": te, "EchoNumber": n, "Units": "rad", "MagneticFieldStrength": 3},
            )
            written.append(path)
    if data.t1w is not None:
        path = anat / f"{sub}_T1w.nii.gz"
        stored_t1 = np.clip(np.round(data.t1w), 0, np.iinfo(np.int16).max)
        save_nifti(_image(stored_t1, data.anatomy_affine, np.int16), path)
        write_json(
            path.with_name(f"{sub}_T1w.json"),
            {"MagneticFieldStrength": 3, "MRAcquisitionType": "3D", "InversionTime": 0.9},
        )
        written.append(path)
    seg = root / SEGMENTATION_DIR / folder
    dseg = seg / f"{sub}_dseg.nii.gz"
    save_nifti(_image(data.anatomy.labels, data.anatomy_affine, np.int16), dseg)
    if data.t1w is not None:  # the image it was made on (BIDS URI), for its registration
        write_json(
            dseg.with_name(f"{sub}_dseg.json"),
            {"Sources": [f"bids:raw:{(folder / f'{sub}_T1w.nii.gz').as_posix()}"]},
        )
    lut = pd.DataFrame({"index": list(LABEL_NAMES), "name": list(LABEL_NAMES.values())})
    atomic_write_bytes(seg / f"{sub}_dseg.tsv", lut.to_csv(sep="\t", index=False).encode())
    lesion = seg / f"{sub}_label-lesion_mask.nii.gz"
    save_nifti(_image(data.anatomy.lesions, data.anatomy_affine, np.uint8), lesion)
    return [*written, dseg, lesion]


def write_cohort(
    root: Path,
    subjects: list[Subject],
    *,
    with_phase: bool = False,
    anatomy: str = "phantom",
    with_t1w: bool = False,
) -> dict:
    """Write ``subjects`` as a BIDS dataset in one process; returns their truth by participant.

    ``anatomy`` is ``"phantom"`` (ellipsoids) or ``"atlas"`` (deformed bundled atlas, needs
    ``ironmap[atlas]``); ``with_t1w`` adds a 1 mm ``_T1w`` image; see
    :func:`~.subject.generate_subject`.

    :func:`ironmap.workflows.simulate.run_simulate` does the same in parallel for whole cohorts.
    """
    from .cohort import participants_table
    from .subject import generate_subject, truth_summary

    write_dataset_files(Path(root), participants_table(subjects))
    truth = {}
    for subject in subjects:
        data = generate_subject(subject, with_phase=with_phase, anatomy=anatomy, with_t1w=with_t1w)
        write_subject(Path(root), subject, data)
        truth[subject.participant_id] = truth_summary(subject, data)
    return truth


def json_safe(value):
    """Replace NaN by None recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
