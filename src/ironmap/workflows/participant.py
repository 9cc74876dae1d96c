"""``ironmap run BIDS_DIR OUTPUT_DIR participant``: maps, regional and lesion R2*, volumes.

Per participant (and session): fit R2* inside the intracranial mask of the segmentation (or a
magnitude-based head mask), transfer the segmentation and lesion mask onto the R2* grid with
partial-volume fractions, and write maps, ``_regions.tsv``, ``_volumes.tsv``, a QC figure and a
provenance record. A participant whose provenance matches is skipped; a failing participant is
reported and the others go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .. import __version__
from ..errors import InputError, IronmapError, IronmapWarning
from ..fitting import METHODS, DecayModel, sigma_from_background
from ..fitting.gradients import gradient_correction
from ..io import (
    SessionInputs,
    find_inputs,
    load_bids_echoes,
    load_volume,
    read_sidecar,
    write_decay_maps,
    write_json,
    write_nifti,
    write_tsv,
)
from ..iron import CALIBRATIONS, iron_from_r2star
from ..parallel import make_executor, map_ordered
from ..regions import (
    DEEP_GM,
    MIN_FRACTION,
    label_fractions,
    read_label_table,
    region_codes,
    region_groups,
    regional_r2star,
    volumes,
)
from ..report import qc_figure

__all__ = [
    "ParticipantConfig",
    "ParticipantResult",
    "run_participant",
    "summary",
    "summary_table",
]

log = logging.getLogger("ironmap")


@dataclass(frozen=True)
class ParticipantConfig:
    """Options of the participant stage."""

    bids_dir: Path
    output_dir: Path
    participant_labels: tuple[str, ...] = ()
    derivatives: tuple[Path, ...] = ()
    method: str = "auto"
    min_fraction: float = MIN_FRACTION
    erode_mm: float = 0.0
    b0_correction: str = "auto"
    iron_calibration: str | None = None
    segmentation: str = "auto"
    n_jobs: int = 1
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    force: bool = False


@dataclass
class ParticipantResult:
    """What happened to one participant/session."""

    name: str
    status: str  # "done", "skipped" or "failed"
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    peak_rss_mb: float = float("nan")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _provenance(inputs: SessionInputs, config: ParticipantConfig) -> dict:
    atlas = config.segmentation == "atlas"
    files = [
        *inputs.echoes,
        *_phases_used(inputs, config),
        None if atlas else inputs.dseg,
        None if atlas else inputs.dseg_tsv,
        inputs.t1w if atlas else None,
        inputs.lesion_mask,
    ]
    sidecars = [p.with_name(p.name.split(".nii")[0] + ".json") for p in inputs.echoes]
    hashed = [p for p in [*files, *sidecars] if p is not None and p.exists()]
    return {
        "ironmap_version": __version__,
        "inputs": {str(p): _sha256(p) for p in hashed},
        "options": {
            "fit_method": config.method,
            "min_fraction": config.min_fraction,
            "erode_mm": config.erode_mm,
            "b0_correction": bool(_phases_used(inputs, config)),
            "iron_calibration": config.iron_calibration,
            "segmentation": config.segmentation,
        },
    }


def _phases_used(inputs: SessionInputs, config: ParticipantConfig) -> tuple[Path, ...]:
    """Phase files the field-gradient correction uses (none when it is off)."""
    return inputs.phases if config.b0_correction == "auto" else ()


def _head_mask(first_echo: np.ndarray) -> np.ndarray:
    """Head mask from magnitudes when there is no segmentation: above 5 background sigma,
    largest connected component, holes filled; everything if there is no background."""
    sigma = sigma_from_background(first_echo[..., None])
    if sigma is None:
        return np.ones(first_echo.shape, dtype=bool)
    mask = first_echo > 5.0 * sigma
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == (np.argmax(sizes) + 1)
    return ndimage.binary_fill_holes(mask)


def _one(inputs: SessionInputs, config: ParticipantConfig) -> ParticipantResult:
    name = inputs.name
    with warnings.catch_warnings(record=True) as caught:  # reported by the parent process
        warnings.simplefilter("always", IronmapWarning)
        try:
            result = _process(inputs, config)
        except (IronmapError, OSError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            result = ParticipantResult(name, "failed", message)
        except Exception as exc:  # a bug must not stop the other participants
            first = str(exc).splitlines()[0] if str(exc) else ""
            result = ParticipantResult(
                name, "failed", f"internal error {type(exc).__name__}: {first}"
            )
    result.warnings = [str(w.message).splitlines()[0] for w in caught]
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


@dataclass
class _Segmentation:
    """A segmentation (and lesion mask) transferred to the R2* grid."""

    mask: np.ndarray
    fractions: dict[str, np.ndarray] = field(default_factory=dict)
    lesion_fraction: np.ndarray | None = None
    subject_volumes: dict = field(default_factory=dict)
    region_ml: dict[str, float] = field(default_factory=dict)


def _transfer_segmentation(inputs: SessionInputs, grid, affine: np.ndarray) -> _Segmentation:
    """Label fractions of every region on the R2* grid, fitting mask, volumes."""
    labels, seg_affine = load_volume(inputs.dseg)
    table = read_label_table(inputs.dseg_tsv) if inputs.dseg_tsv is not None else None
    codes = region_codes(table)
    if not any(codes.codes(r) for r in DEEP_GM):
        warnings.warn(
            f"{inputs.dseg}: no known deep grey-matter structure "
            f"({'see its .tsv' if table else 'no .tsv, so FreeSurfer aseg codes'}); "
            "regional rows are NaN",
            IronmapWarning,
            stacklevel=3,
        )
    present = np.unique(labels)
    groups = {**region_groups(codes), "icv": tuple(int(c) for c in present if c > 0)}
    fractions = label_fractions(
        labels, seg_affine, grid, affine, groups, source_name=str(inputs.dseg)
    )
    if fractions["_inside"].mean() < 0.05:
        raise InputError(
            f"{inputs.dseg}: covers only {100 * fractions['_inside'].mean():.1f} % of the "
            "R2* image; check that its affine maps to the same scanner space"
        )
    lesion, lesion_affine, lesion_fraction = None, None, None
    if inputs.lesion_mask is not None:
        lesion, lesion_affine = load_volume(inputs.lesion_mask)
        lesion = np.nan_to_num(lesion) != 0
        lesion_fraction = label_fractions(
            lesion.astype(np.uint8),
            lesion_affine,
            grid,
            affine,
            {"lesion": (1,)},
            source_name=str(inputs.lesion_mask),
        )["lesion"]
    subject_volumes, region_ml = volumes(
        labels,
        seg_affine,
        codes,
        participant_id=f"sub-{inputs.subject}",
        lesion_mask=lesion,
        lesion_affine=lesion_affine,
    )
    return _Segmentation(
        mask=ndimage.binary_dilation(fractions["icv"] >= 0.5),
        fractions=fractions,
        lesion_fraction=lesion_fraction,
        subject_volumes=subject_volumes,
        region_ml=region_ml,
    )


def _decay_factor(inputs: SessionInputs, image, config: ParticipantConfig) -> np.ndarray | None:
    """Field-gradient dephasing factor from the phase echoes (None without them)."""
    phases = _phases_used(inputs, config)
    if not phases:
        return None
    phase = load_bids_echoes(phases, part="phase")
    if phase.data.shape != image.data.shape or not np.allclose(
        phase.echo_times_s, image.echo_times_s
    ):
        raise InputError(
            f"{phases[0]}: phase echoes do not match the magnitude echoes (grid or EchoTime)"
        )
    factor, _, unreliable = gradient_correction(image.data, phase.data, image.echo_times_s)
    log.info(
        "%s: field-gradient correction; %d voxels beyond it", inputs.name, int(unreliable.sum())
    )
    return factor


def _fit(image, config: ParticipantConfig, *, mask, factor, name: str):
    """Fit R2*; the fitting's own warnings go to the log (its summary is in the maps)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IronmapWarning)
        fit = DecayModel(image.echo_times_s, method=config.method).fit(
            image.data, mask=mask, decay_factor=factor
        )
    for w in caught:
        log.info("%s: %s", name, w.message)
    return fit


def _atlas_segmentation(
    inputs: SessionInputs,
    image,
    factor: np.ndarray | None,
    config: ParticipantConfig,
    out_dir: Path,
    seconds: dict,
):
    """Fit R2* in the head, segment with the registered atlas refined on R2*, write the dseg.

    Returns the fit and ``inputs`` pointing at the written ``desc-ironmap_dseg``.
    """
    from ..segmentation.autoseg import atlas_segmentation, label_table

    name = inputs.name
    start = time.perf_counter()
    fit = _fit(image, config, mask=_head_mask(image.data[..., 0]), factor=factor, name=name)
    seconds["fit"] = time.perf_counter() - start
    if inputs.t1w is not None:
        target, target_affine = load_volume(inputs.t1w)
        target_name = str(inputs.t1w)
    else:
        target, target_affine = image.data[..., 0], image.affine
        target_name = f"{inputs.echoes[0]} (first echo)"
    log.info("%s: registering the atlas to %s", name, target_name)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max((cores or 1) // max(config.n_jobs, 1), 1)
    seg = atlas_segmentation(
        fit.r2star,
        image.affine,
        target=target,
        target_affine=target_affine,
        n_threads=threads,
        target_name=target_name,
    )
    seconds.update(seg.seconds)
    dseg = out_dir / f"{name}_desc-ironmap_dseg.nii.gz"
    tsv = out_dir / f"{name}_desc-ironmap_dseg.tsv"
    write_nifti(
        seg.labels,
        seg.affine,
        dseg,
        sidecar={
            "Units": "1",
            "Description": "Deep grey matter from the bundled atlas registered to the subject "
            "(ANTs affine + SyN), iron-rich nuclei refined on R2*; on the R2* grid subdivided "
            "to about 1 mm; codes and names in the .tsv",
            "EstimationAlgorithm": "ironmap --segmentation atlas (docs/atlas.md)",
            "EchoTime": [float(te) for te in image.echo_times_s],
            "Sources": [
                *(str(p) for p in inputs.echoes),
                *([str(inputs.t1w)] if inputs.t1w else []),
            ],
            "RegistrationTarget": target_name,
            "Atlas": seg.sources,
            "Refinement": json.loads(seg.refinement.to_json(orient="records")),
        },
        force=True,  # our own output of an unfinished or forced run
        dtype=np.int16,
    )
    write_tsv(tsv, label_table(seg.labels))
    return fit, replace(inputs, dseg=dseg, dseg_tsv=tsv)


def _process(inputs: SessionInputs, config: ParticipantConfig) -> ParticipantResult:
    name = inputs.name
    out_dir = Path(config.output_dir) / inputs.anat_dir
    prov_path = out_dir / f"{name}_provenance.json"
    seconds: dict[str, float] = {}
    provenance = _provenance(inputs, config)
    if prov_path.exists():
        previous = json.loads(prov_path.read_text())
        same = {k: previous.get(k) for k in provenance} == provenance
        if same and not config.force:
            return ParticipantResult(name, "skipped")
        if not same and not config.force:
            raise InputError(
                f"{prov_path}: outputs exist from other inputs or options; pass --force to redo"
            )
    start = time.perf_counter()
    image = load_bids_echoes(inputs.echoes)
    voxel_mm = np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0))

    factor = _decay_factor(inputs, image, config)
    fit = None
    if config.segmentation == "atlas":
        fit, inputs = _atlas_segmentation(inputs, image, factor, config, out_dir, seconds)
        start = time.perf_counter()
        seg = _transfer_segmentation(inputs, image.data.shape[:3], image.affine)
    elif inputs.dseg is not None:
        seg = _transfer_segmentation(inputs, image.data.shape[:3], image.affine)
    else:
        warnings.warn(
            f"{name}: no segmentation (dseg) found; writing maps only, no regional R2*",
            IronmapWarning,
            stacklevel=2,
        )
        seg = _Segmentation(mask=_head_mask(image.data[..., 0]))
    fractions, lesion_fraction, mask = seg.fractions, seg.lesion_fraction, seg.mask
    subject_volumes, region_ml = seg.subject_volumes, seg.region_ml
    seconds["resample"] = time.perf_counter() - start

    start = time.perf_counter()
    phases = _phases_used(inputs, config)
    if fit is None:  # the atlas path fitted inside the head mask already
        fit = _fit(image, config, mask=mask, factor=factor, name=name)
    prefix = out_dir / name
    write_decay_maps(
        fit,
        image.affine,
        prefix,
        echo_times_s=image.echo_times_s,
        sources=[str(p) for p in inputs.echoes],
        force=True,  # our own outputs of an unfinished or forced run
        header=image.header,
        extra_sidecar={"B0GradientCorrection": bool(phases)},
    )
    seconds["fit"] = seconds.get("fit", 0.0) + time.perf_counter() - start

    start = time.perf_counter()
    if fractions:
        regions = regional_r2star(
            fit.r2star,
            fractions,
            participant_id=f"sub-{inputs.subject}",
            region_volumes_ml=region_ml,
            lesion_fraction=lesion_fraction,
            min_fraction=config.min_fraction,
            erode_mm=config.erode_mm,
            voxel_mm=voxel_mm,
        )
        if config.iron_calibration:
            meta, _ = read_sidecar(inputs.echoes[0])
            field = meta.get("MagneticFieldStrength")
            try:
                field = None if field is None else float(field)
            except (TypeError, ValueError):
                field = None
            for column in ("median", "mean"):
                regions[f"iron_{column}_mg_per_kg"] = iron_from_r2star(
                    regions[f"r2star_{column}"],
                    calibration=config.iron_calibration,
                    field_t=field,
                    source=str(inputs.echoes[0]),
                )
        if inputs.session:
            regions.insert(1, "session", f"ses-{inputs.session}")
        write_tsv(out_dir / f"{name}_regions.tsv", regions)
        table = pd.DataFrame([subject_volumes])
        if inputs.session:
            table.insert(1, "session", f"ses-{inputs.session}")
        write_tsv(out_dir / f"{name}_volumes.tsv", table)
        outlines = {
            region: fractions[f"{region}/both"] >= config.min_fraction
            for region in DEEP_GM
            if fractions[f"{region}/both"].any()
        }
        slices = None
        if config.segmentation == "atlas":  # through dentate, red nucleus, pallidum, thalamus
            slices = [
                round(float(np.flatnonzero(outlines[r].any(axis=(0, 1))).mean()))
                for r in ("dentate_nucleus", "red_nucleus", "pallidum", "thalamus")
                if r in outlines
            ]
        qc_figure(
            fit.r2star,
            outlines,
            Path(config.output_dir)
            / f"sub-{inputs.subject}"
            / "figures"
            / f"{name}_desc-qc_R2starmap.png",
            slices=slices,
            title=f"{name}: R2* (1/s) with deep grey-matter outlines"
            + (" (registered atlas, nuclei refined on R2*)" if slices else ""),
        )
    seconds["stats"] = time.perf_counter() - start
    write_json(prov_path, {**provenance, "seconds": seconds})
    return ParticipantResult(name, "done", seconds=seconds)


def run_participant(config: ParticipantConfig) -> list[ParticipantResult]:
    """Run the participant stage; returns one result per participant/session."""
    if not 0.0 < config.min_fraction <= 1.0:
        raise InputError(f"--min-fraction must be in (0, 1], got {config.min_fraction}")
    if config.erode_mm < 0:
        raise InputError(f"--erode-mm must be >= 0, got {config.erode_mm}")
    if config.iron_calibration is not None and config.iron_calibration not in CALIBRATIONS:
        raise InputError(
            f"unknown --iron-calibration {config.iron_calibration!r}; "
            f"choose one of {', '.join(CALIBRATIONS)}"
        )
    if config.segmentation not in ("auto", "atlas"):
        raise InputError(f"--segmentation must be auto or atlas, got {config.segmentation!r}")
    if config.segmentation == "atlas":
        from ..segmentation.atlas import load_atlas
        from ..segmentation.register import check_ants

        load_atlas()  # fail now, in one line, when the atlas extra is missing
        check_ants()
    if config.b0_correction not in ("off", "auto"):
        raise InputError(f"--b0-correction must be off or auto, got {config.b0_correction!r}")
    if config.method not in METHODS:
        raise InputError(
            f"unknown fit method {config.method!r}; choose one of {', '.join(METHODS)}"
        )
    out = Path(config.output_dir)
    if out.resolve() == Path(config.bids_dir).resolve():
        raise InputError(f"{out}: the output directory must differ from the BIDS dataset")
    sessions = find_inputs(
        config.bids_dir,
        participant_labels=config.participant_labels or None,
        derivatives=config.derivatives,
        exclude=[out],
    )
    write_json(
        out / "dataset_description.json",
        {
            "Name": "ironmap R2* maps and regional R2*",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "ironmap", "Version": __version__}],
            "SourceDatasets": [{"URL": str(Path(config.bids_dir).resolve())}],
        },
    )
    executor = make_executor(
        n_jobs=config.n_jobs,
        scheduler_address=config.scheduler_address,
        scheduler_file=config.scheduler_file,
    )
    log.info("participant stage: %d participant(s)/session(s) on %r", len(sessions), executor)
    try:
        results = map_ordered(
            partial(_one, config=config),
            sessions,
            executor=executor,
            desc="participants",
            failed=_is_failed,
        )
    except BrokenProcessPool as exc:
        raise IronmapError(
            "a worker process died (killed, or out of memory); rerun the same command to "
            "resume: finished participants are kept"
        ) from exc
    finally:
        if hasattr(executor, "close"):
            executor.close()
    for result in results:
        if result.status == "failed":
            log.error("%s: %s", result.name, result.error)
    return results


def _is_failed(result: ParticipantResult) -> bool:
    return result.status == "failed"


def summary_table(results: list[ParticipantResult]) -> pd.DataFrame:
    """Per status: count, mean seconds per step, and the largest worker peak RSS (MB)."""
    rows = []
    for status in ("done", "skipped", "failed"):
        part = [r for r in results if r.status == status]
        if not part:
            continue
        times = pd.DataFrame([r.seconds for r in part])
        row = {"status": status, "participants": len(part)}
        steps = ["resample", "fit", "stats"]
        if "registration" in times:
            steps.insert(1, "registration")
        for step in steps:
            row[f"{step}_s"] = float(times[step].mean()) if step in times else np.nan
        row["peak_rss_mb"] = float(np.nanmax([r.peak_rss_mb for r in part]))
        rows.append(row)
    return pd.DataFrame(rows)


def summary(results: list[ParticipantResult]) -> str:
    """One line: how many were done, skipped and failed."""
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return ", ".join(f"{n} {s}" for s, n in counts.items())
