"""The susceptibility (QSM) step of one participant/session.

Where the session's susceptibility map comes from (an external ``Chimap`` in the derivatives,
or the phase echoes through :class:`~ironmap.susceptibility.QSMModel`), the map on the R2* grid
in ppm, and its ``_Chimap.nii.gz`` with sidecar and provenance entry. Called by
:func:`ironmap.workflows.session.process_session`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, IronmapWarning
from ..io import MultiEchoImage, ParticipantOutputs, SessionInputs, load_volume, write_nifti
from ..io.phase import PhaseImage
from ..segmentation.autoseg import _resample
from ..segmentation.strategies import Segmentation
from ..susceptibility import QSMModel, b0_direction

if TYPE_CHECKING:
    from .participant import ParticipantConfig

log = logging.getLogger("ironmap")

#: An external Chimap is taken to be in ppm; the 99th percentile of its |chi| in the brain
#: outside this range (ppm) suggests another unit (ppb: 1000x; SI dimensionless: 1e-6x), warned.
CHI_PLAUSIBLE_PPM = (0.01, 2.0)
#: Lateral-ventricle voxels (fraction >= 0.5, inside the QSM mask) needed for the CSF reference;
#: with fewer, chi is referenced to the mean of the whole mask.
MIN_REFERENCE_VOXELS = 20


def _qsm_source(inputs: SessionInputs, config: ParticipantConfig) -> str:
    """Where this session's susceptibility map comes from: ``external`` (a Chimap in the
    derivatives), ``computed`` (the phase echoes), or ``""`` (none: no phase, ``--qsm off``)."""
    if config.qsm == "off":
        return ""
    if inputs.chimap is not None:
        return "external"
    return "computed" if inputs.phases or inputs.imags else ""


def _qsm_inputs(inputs: SessionInputs, config: ParticipantConfig) -> tuple[Path, ...]:
    """The files the susceptibility map is made from (for the provenance checksums)."""
    source = _qsm_source(inputs, config)
    if source == "external":
        return (inputs.chimap,)
    return (*inputs.phases, *inputs.imags) if source == "computed" else ()


def _susceptibility(
    out: ParticipantOutputs,
    image: MultiEchoImage,
    phase: PhaseImage | None,
    segmentation: Segmentation | None,
    inputs: SessionInputs,
    config: ParticipantConfig,
) -> tuple[np.ndarray | None, dict]:
    """The susceptibility map (ppm, NaN outside its mask) on the R2* grid, written to
    ``_Chimap.nii.gz`` with its sidecar, and its provenance entry; ``(None, {})`` with a
    warning when it cannot be made (no field strength for QSM)."""
    if _qsm_source(inputs, config) == "external":
        chi = _external_chi(inputs.chimap, image, name=out.name)
        record = {"source": "external", "file": str(inputs.chimap)}
        sidecar = {
            "Description": "external susceptibility map, resampled to the R2* grid if needed",
            "Sources": [str(inputs.chimap)],
        }
    else:
        fitted = _fit_qsm(image, phase, segmentation, name=out.name)
        if fitted is None:
            return None, {}
        chi, record = fitted
        sidecar = {
            "Description": "magnetic susceptibility from the phase echoes (QSM), relative to "
            f"the reference region ({record['reference_region']})",
            "QSMMethods": record["parameters"],
            "ReferenceRegion": record["reference_region"],
            "EchoTime": [float(t) for t in image.echo_times_s],
            "MagneticFieldStrength": image.field_strength_t,
            "Sources": [*(str(p) for p in image.sources), *(str(p) for p in phase.sources)],
        }
    write_nifti(
        chi,
        image.affine,
        out.chimap,
        sidecar={
            "Units": "ppm",
            "QSMSource": record["source"],
            **sidecar,
            "OutsideMask": "NaN",
        },
        force=True,
        header=image.header,
    )
    return chi, record


def _fit_qsm(
    image: MultiEchoImage,
    phase: PhaseImage,
    segmentation: Segmentation | None,
    *,
    name: str,
) -> tuple[np.ndarray, dict] | None:
    """:class:`~ironmap.susceptibility.QSMModel` on the magnitudes and phases: the mask is the
    segmentation's intracranial volume (fraction >= 0.5) when there is one, else the model's
    own brain mask; chi is referenced to the lateral ventricles' CSF when the segmentation
    labels at least :data:`MIN_REFERENCE_VOXELS` of them, else to the mask's mean. None, with a
    warning, when the model refuses the data (no field strength, or its own checks)."""
    if not image.field_strength_t:
        warnings.warn(
            f"{name}: no MagneticFieldStrength in the echoes' sidecars ({image.sources[0]}); "
            "no susceptibility map, chi columns are n/a",
            IronmapWarning,
            stacklevel=3,
        )
        return None
    fractions = {} if segmentation is None else segmentation.fractions
    mask = fractions["icv"] >= 0.5 if "icv" in fractions else None
    voxel_mm = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))
    ventricles = fractions.get("lateral_ventricle/both")
    reference = None if ventricles is None else ventricles >= 0.5
    if reference is not None and mask is not None:
        reference &= mask
    csf = reference is not None and int(reference.sum()) >= MIN_REFERENCE_VOXELS
    model = QSMModel(
        image.echo_times_s,
        voxel_mm,
        field_strength_t=image.field_strength_t,
        direction=b0_direction(image.affine),
        reference="csf" if csf else "brain",
    )
    try:
        fit = model.fit(
            image.data, phase.data, mask=mask, reference_mask=reference if csf else None
        )
    except InputError as err:  # chi is an extra measure: R2* and its tables are still written
        warnings.warn(
            f"{name}: no susceptibility map ({err}); chi columns are n/a",
            IronmapWarning,
            stacklevel=3,
        )
        return None
    chi = fit.chi_ppm
    region = "lateral ventricles (CSF, fraction >= 0.5)" if csf else "whole QSM mask"
    parameters = {k: v for k, v in fit.parameters.items() if k != "reference"}
    log.info("%s: susceptibility map (%s), reference %s", name, parameters, region)
    record = {
        "source": "computed",
        "parameters": parameters,
        "reference_region": region,
        "mask": "segmentation ICV" if mask is not None else "first-echo magnitude threshold",
    }
    return chi.astype(np.float32), record


def _external_chi(path: Path, image: MultiEchoImage, *, name: str) -> np.ndarray:
    """An external Chimap on the R2* grid (ppm): exact zeros (outside QSMxT's and SEPIA's
    masks) are NaN; another grid is resampled trilinearly, NaN where most of the
    interpolation weight lies outside its mask; a warning when its values do not look like
    ppm (:data:`CHI_PLAUSIBLE_PPM`)."""
    data, affine = load_volume(path)
    data = np.asarray(data, dtype=np.float64)
    chi = np.where(np.isfinite(data) & (data != 0), data, np.nan)
    shape = image.data.shape[:3]
    if chi.shape != shape or not np.allclose(affine, image.affine, atol=1e-3):
        inside = np.isfinite(chi)
        values = _resample(np.where(inside, chi, 0.0), affine, shape, image.affine)
        weight = _resample(inside.astype(np.float32), affine, shape, image.affine)
        with np.errstate(invalid="ignore", divide="ignore"):
            chi = np.where(weight > 0.5, values / weight, np.nan)
    finite = np.abs(chi[np.isfinite(chi)])
    if finite.size == 0:
        raise InputError(f"{path}: the susceptibility map has no value on the R2* grid")
    p99 = float(np.percentile(finite, 99))
    low, high = CHI_PLAUSIBLE_PPM
    if not low <= p99 <= high:
        warnings.warn(
            f"{name}: {path.name}: 99th percentile of |chi| is {p99:.3g}, outside "
            f"{low}-{high} ppm; the map is used as ppm (is it in ppb, or dimensionless?)",
            IronmapWarning,
            stacklevel=3,
        )
    return chi.astype(np.float32)
