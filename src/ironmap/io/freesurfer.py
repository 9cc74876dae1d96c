"""Finding the segmentations users have: FreeSurfer, FastSurfer and SynthSeg outputs as they come.

Their labels are FreeSurfer LUT codes, which ironmap reads as FreeSurfer aseg codes
(:data:`ironmap.regions.catalog.CATALOG`, ``aseg``), so none needs a ``dseg.tsv``. Layouts
(docs/conventions.md#segmentations-as-freesurfer-fastsurfer-and-synthseg-write-them):

- a FreeSurfer ``SUBJECTS_DIR`` (``recon-all``; FastSurfer writes the same layout), given with
  ``--freesurfer-dir`` or ``--derivatives``: ``<DIR>/sub-<label>[_ses-<label>]/mri/`` (or
  ``<DIR>/<label>/mri/`` with ``--freesurfer-dir``) holding one of :data:`FREESURFER_LABELS`
  (the first found is used) and the image it was made on, the first of
  :data:`FREESURFER_IMAGES` (the conformed T1w, the registration source);
- SynthSeg's ``*_synthseg.nii[.gz]`` (``mri_synthseg --o``), in a derivatives dataset's
  ``sub-<label>[/ses-<label>]/anat`` folder, its subject folder or its root, named
  ``sub-<label>[_ses-<label>]_..._synthseg.nii.gz``; the image it was made on is the file of the
  same name without ``_synthseg`` beside it, when there is one.

A session's own FreeSurfer folder (``sub-<label>_ses-<label>``) is preferred; without one, the
subject's (``sub-<label>``, as fMRIPrep's ``sourcedata/freesurfer`` holds one per subject).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "FREESURFER_IMAGES",
    "FREESURFER_LABELS",
    "SYNTHSEG_SUFFIX",
    "freesurfer_segmentation",
    "synthseg_segmentation",
    "tool_of",
]

#: Label volumes of a FreeSurfer / FastSurfer subject's ``mri`` folder, in order of preference:
#: recon-all's (and FastSurfer's full run's) aseg, FastSurfer's ``--seg_only`` aseg, then the
#: volumes whose cortex is parcellated (:data:`ironmap.regions.catalog.APARC_CORTEX`).
FREESURFER_LABELS = (
    "aseg.mgz",
    "aseg.auto_noCCseg.mgz",
    "aparc+aseg.mgz",
    "aparc.DKTatlas+aseg.mgz",
    "aparc.DKTatlas+aseg.deep.mgz",
    "aparc.DKTatlas+aseg.deep.withCC.mgz",
)
#: The image the labels were made on (conformed 256^3 1 mm), in order of preference.
FREESURFER_IMAGES = ("orig.mgz", "T1.mgz", "orig_nu.mgz", "nu.mgz")
#: SynthSeg's output name ends with this (before ``.nii[.gz]``).
SYNTHSEG_SUFFIX = "_synthseg"

_NIFTI = re.compile(r"\.nii(\.gz)?$")


def tool_of(name: str) -> str | None:
    """``"freesurfer"`` (FreeSurfer or FastSurfer) or ``"synthseg"`` for a file name these
    tools' label volumes have (:data:`FREESURFER_LABELS`, ``*_synthseg.nii[.gz]``), else None."""
    if name in FREESURFER_LABELS:
        return "freesurfer"
    if _NIFTI.search(name) and _NIFTI.sub("", name).endswith(SYNTHSEG_SUFFIX):
        return "synthseg"
    return None


def _first(folder: Path, names: Sequence[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def freesurfer_segmentation(
    roots: Sequence[Path], subject: str, session: str | None, *, bare_labels: bool = False
) -> tuple[Path, Path | None] | None:
    """``(labels, image)`` of the participant's FreeSurfer/FastSurfer subject folder, or None.

    Parameters
    ----------
    roots : sequence of Path
        ``SUBJECTS_DIR``-like folders, searched in order.
    subject, session : str, str or None
        Labels without ``sub-`` / ``ses-``.
    bare_labels : bool, optional
        Also accept subject folders named by the bare label (``<DIR>/01``), as
        ``--freesurfer-dir`` does.

    Returns
    -------
    tuple of Path or None
        The label volume (first of :data:`FREESURFER_LABELS`) and the image it was made on
        (first of :data:`FREESURFER_IMAGES`, None if absent).
    """
    names = [f"sub-{subject}_ses-{session}"] if session else []
    names += [f"sub-{subject}"]
    if bare_labels:
        names += [f"{subject}_{session}"] if session else []
        names += [subject]
    for name in names:
        for root in roots:
            mri = Path(root) / name / "mri"
            labels = _first(mri, FREESURFER_LABELS) if mri.is_dir() else None
            if labels is not None:
                return labels, _first(mri, FREESURFER_IMAGES)
    return None


def synthseg_segmentation(
    roots: Sequence[Path], subject: str, session: str | None
) -> list[tuple[Path, Path | None]]:
    """``(labels, image)`` of every SynthSeg output of the participant (session) in ``roots``.

    Looked for in ``<root>/sub-<label>[/ses-<label>]/anat``, ``<root>/sub-<label>`` and
    ``<root>``; the file's ``sub``/``ses`` entities must be the participant's.
    """
    prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
    sub = Path(f"sub-{subject}")
    rels = [sub / f"ses-{session}" / "anat", sub / f"ses-{session}"] if session else []
    rels += [sub / "anat", sub, Path()]
    found: list[tuple[Path, Path | None]] = []
    for root in roots:
        for rel in rels:
            folder = Path(root) / rel
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(f"{prefix}_*{SYNTHSEG_SUFFIX}.nii*")):
                stem = _NIFTI.sub("", path.name)
                if not _NIFTI.search(path.name) or not stem.endswith(SYNTHSEG_SUFFIX):
                    continue
                if not session and "_ses-" in stem:
                    continue
                base = stem.removesuffix(SYNTHSEG_SUFFIX)
                image = _first(folder, (f"{base}.nii.gz", f"{base}.nii"))
                if (path, image) not in found:
                    found.append((path, image))
    return found
