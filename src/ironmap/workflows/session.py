"""One participant (and session) of the participant stage, as a list of named steps.

:func:`process_session` reads as the pipeline: check whether the outputs are up to date, load
the echoes, choose where the regions come from, fit R2* in that strategy's mask, segment, write
the maps, the regional tables and the QC figure, then the provenance record that marks the
session done. Every output path comes from :class:`~ironmap.io.derivatives.ParticipantOutputs`.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import InputError, IronmapWarning
from ..fitting import DecayFit, DecayModel, FitStatus, effective_coils
from ..fitting.assumptions import warn_assumed_noise
from ..fitting.gradients import gradient_correction
from ..fitting.noise import NoiseEstimate, noise_from_background
from ..fitting.sigma_map import SigmaMap, local_sigma_map
from ..io import (
    MultiEchoImage,
    ParticipantOutputs,
    SessionInputs,
    load_bids_echoes,
    load_volume,
    sidecar_path,
    write_decay_maps,
    write_json,
    write_nifti,
    write_tsv,
)
from ..io.derivatives import describe_changes, provenance_changes, sha256
from ..io.phase import PhaseImage, load_phase, load_real_imag
from ..iron import iron_from_r2star
from ..regions import DEEP_GM, region_masks, regional_r2star
from ..regions.catalog import MEASURED_ROWS
from ..regions.lesions import lesion_components, lesion_table
from ..report import QCNumbers, qc_figure, qc_page
from ..report.qc import prl_montage_html, voxel_counts
from ..segmentation.autoseg import _resample
from ..segmentation.coregister import DEFAULT_REGISTER_SEGMENTATION
from ..segmentation.strategies import Segmentation, SegmentationStrategy, choose_strategy
from ..susceptibility import QSMModel, b0_direction

if TYPE_CHECKING:
    from .participant import ParticipantConfig

__all__ = ["FAILED_VOXELS_WARN", "ParticipantResult", "process_session"]

log = logging.getLogger("ironmap")

#: Above this share of the fit mask's voxels failing, a participant gets a warning.
FAILED_VOXELS_WARN = 0.01


@dataclass
class ParticipantResult:
    """What happened to one participant/session.

    ``fit_voxels`` counts the voxels of the fit mask inside the intracranial volume (the
    segmentation's, without the fit mask's one-voxel margin of skull and background; the whole
    fit mask without a segmentation), ``failed_voxels`` those of them that could not be fitted
    (NaN in the maps), ``failed_reasons`` the failures per :class:`~ironmap.fitting.FitStatus`
    (e.g. ``{"bad signal": 20000, "no decay": 343}``).
    """

    name: str
    status: str  # "done", "skipped" or "failed"
    error: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    peak_rss_mb: float = float("nan")
    fit_voxels: int = 0
    failed_voxels: int = 0
    failed_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def failed_fraction(self) -> float:
        """Share of the fit mask's voxels that could not be fitted (NaN without a fit)."""
        return self.failed_voxels / self.fit_voxels if self.fit_voxels else float("nan")


class _Timer:
    """Seconds per named step, summed when a step runs more than once."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({step: time.perf_counter() - start})

    def add(self, seconds: dict[str, float]) -> None:
        for step, value in seconds.items():
            self.seconds[step] = self.seconds.get(step, 0.0) + value


def process_session(inputs: SessionInputs, config: ParticipantConfig) -> ParticipantResult:
    """Run the participant stage on one participant/session (see the module docstring)."""
    out = ParticipantOutputs(Path(config.output_dir), inputs.subject, inputs.session)
    strategy = choose_strategy(
        inputs,
        segmentation=config.segmentation,
        register_segmentation=config.register_segmentation,
    )
    provenance = _provenance(inputs, config, strategy)
    previous = _up_to_date(out.provenance, provenance, force=config.force)
    if previous is not None:
        return ParticipantResult(inputs.name, "skipped", **previous.get("voxels", {}))
    timer = _Timer()
    with timer("load"):
        image, phase = _load_echoes(inputs, config)
        correct = phase if _phases_used(inputs, config) else None
        factor, field_hz = _decay_factor(image, correct, inputs.name)
    with timer("resample"):
        mask = strategy.fit_mask(image)
    with timer("fit"):
        fit = _fit(image, config, mask=mask, factor=factor, name=inputs.name)
    with timer("resample"):
        segmentation = strategy.segment(image, fit)
    voxels = _failed_voxels(fit, segmentation, out)
    with timer("fit"):
        _write_maps(out, image, fit, inputs, config, phase=phase)
    chi, qsm = None, {}
    if _qsm_source(inputs, config):
        with timer("qsm"):
            chi, qsm = _susceptibility(out, image, phase, segmentation, inputs, config)
    if segmentation is not None:
        timer.add(segmentation.seconds)
        with timer("stats"):
            _write_regions(
                out, image, fit, segmentation, inputs, config, voxels=voxels, field_hz=field_hz,
                chi=chi,
            )  # fmt: skip
    if segmentation is not None and segmentation.registration:
        provenance["segmentation_registration"] = segmentation.registration
    if qsm:
        provenance["qsm"] = qsm
    write_json(out.provenance, {**provenance, "voxels": voxels, "seconds": timer.seconds})
    return ParticipantResult(inputs.name, "done", seconds=timer.seconds, **voxels)


# -- resume ---------------------------------------------------------------------------------


def _phases_used(inputs: SessionInputs, config: ParticipantConfig) -> tuple[Path, ...]:
    """Phase files the field-gradient correction uses (none when it is off): the
    ``part-phase`` echoes, or the ``part-imag`` ones of real/imaginary pairs."""
    return (inputs.phases or inputs.imags) if config.b0_correction == "auto" else ()


def _provenance(
    inputs: SessionInputs, config: ParticipantConfig, strategy: SegmentationStrategy
) -> dict:
    """Checksums of every input file (keyed by file name) and the options that change the
    outputs: the same data reached by another path or copied elsewhere resume."""
    files = [
        *inputs.echoes,
        *_phases_used(inputs, config),
        *_qsm_inputs(inputs, config),
        *strategy.input_files(),
        inputs.lesion_mask,
    ]
    sidecars = [sidecar_path(p) for p in [*inputs.echoes, *_phases_used(inputs, config)]]
    hashed = list(dict.fromkeys(p for p in [*files, *sidecars] if p is not None and p.exists()))
    return {
        "ironmap_version": __version__,
        "inputs": {p.name: sha256(p) for p in hashed},
        "options": {
            "fit_method": config.fit_method,
            # recorded when given: outputs made before --coils existed (estimated = default)
            # still match a run with the default
            **({"coils": config.coils} if config.coils is not None else {}),
            **({"sigma_map": config.sigma_map} if config.sigma_map != "off" else {}),
            "min_fraction": config.min_fraction,
            "erode_mm": config.erode_mm,
            "b0_correction": bool(_phases_used(inputs, config)),
            "iron_calibration": config.iron_calibration,
            "segmentation": config.segmentation,
            "csf_exclusion": config.csf_exclusion,
            # recorded when the session has a susceptibility map: outputs without one resume
            **({"qsm": source} if (source := _qsm_source(inputs, config)) else {}),
            # recorded when not the default: outputs made before the option still resume
            **(
                {"register_segmentation": config.register_segmentation}
                if config.register_segmentation != DEFAULT_REGISTER_SEGMENTATION
                else {}
            ),
        },
    }


def _up_to_date(path: Path, provenance: dict, *, force: bool) -> dict | None:
    """The previous record when ``path`` records these inputs and options (skip), None to
    compute; refuse outputs of other inputs or options, naming what changed."""
    if not path.exists() or force:
        return None
    try:
        previous = json.loads(path.read_text())
    except ValueError:
        raise InputError(
            f"{path}: not a readable provenance record; pass --force to redo"
        ) from None
    changes = provenance_changes(previous, provenance)
    if not changes:
        return previous
    raise InputError(
        f"{path}: outputs exist from other inputs or options ({describe_changes(changes)}); "
        "pass --force to redo"
    )


# -- fitting --------------------------------------------------------------------------------


def _load_echoes(
    inputs: SessionInputs, config: ParticipantConfig
) -> tuple[MultiEchoImage, PhaseImage | None]:
    """The magnitudes and, when the field-gradient correction uses them, the phase echoes in
    radians (:mod:`ironmap.io.phase`: units detected, ``PhaseSign``/``ReadoutPolarity`` from the
    sidecars); loaded once per participant, for the correction, the lesions' local field and
    any later step that needs the phase."""
    wanted = bool(_phases_used(inputs, config)) or _qsm_source(inputs, config) == "computed"
    if inputs.imags:  # part-real/part-imag pairs: magnitudes and phase from them
        image, phase = load_real_imag(inputs.echoes, inputs.imags)
        return image, phase if wanted else None
    image = load_bids_echoes(inputs.echoes)
    phases = inputs.phases
    if not (wanted and phases):
        return image, None
    phase = load_phase(phases, echo_times_s=image.echo_times_s, magnitude=image.data)
    if not np.allclose(phase.affine, image.affine, atol=1e-4):
        raise InputError(f"{phases[0]}: phase echoes do not match the magnitude echoes (grid)")
    return image, phase


def _decay_factor(
    image: MultiEchoImage, phase: PhaseImage | None, name: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Field-gradient dephasing factor from the phase echoes and the field map (Hz) it was
    computed from, for the lesions' local field (both None without phase echoes)."""
    if phase is None:
        return None, None
    factor, field_hz, unreliable = gradient_correction(image.data, phase.data, image.echo_times_s)
    log.info(
        "%s: field-gradient correction; %d voxels of the image beyond it",
        name,
        int(unreliable.sum()),
    )
    return factor, field_hz


def _gradient_failures(fit: DecayFit, image: MultiEchoImage, name: str) -> int:
    """Voxels of the fit mask that the field-gradient correction flagged as beyond it (its
    factor is NaN there, so they fail as ``BAD_SIGNAL`` though their echoes are valid); a
    warning when there are any. The count goes to the R2* map's sidecar."""
    factor = fit.decay_factor  # the factor of _decay_factor, as the fit was given it
    if factor is None:
        return 0
    data = image.data
    valid = np.all(np.isfinite(data) & (data > 0), axis=-1)
    fitted = fit.status != FitStatus.NOT_FITTED
    failed = int(np.sum(fitted & valid & ~np.all(np.isfinite(factor), axis=-1)))
    if failed:
        warnings.warn(
            f"{name}: {failed:,} voxels are beyond the field-gradient correction (dephasing "
            "too strong or the field too steep to sample, near air) and are NaN in the maps "
            "(B0GradientVoxelsFailed in the R2* map's sidecar)",
            IronmapWarning,
            stacklevel=2,
        )
    return failed


def _fit(image: MultiEchoImage, config: ParticipantConfig, *, mask, factor, name: str) -> DecayFit:
    """Fit R2*; the fitting's own warnings go to the log (its summary is in the maps)."""
    # The background is analysed once, for the number of channels and for sigma.
    background = noise_from_background(image.data)
    coils, source = effective_coils(image.data, config.coils, background=background)
    sigma_map = _sigma_map(image, config, mask=mask, background=background, name=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IronmapWarning)
        fit = DecayModel(image.echo_times_s, method=config.fit_method, coils=coils).fit(
            image.data,
            mask=mask,
            decay_factor=factor,
            background=background,
            sigma_map=None if sigma_map is None else sigma_map.sigma,
        )
        fit.coils_source = source
    for w in caught:
        log.info("%s: %s", name, w.message)
    warn_assumed_noise(fit, name=name, sigma_option=None)  # N or sigma not from a background
    return fit


def _sigma_map(
    image: MultiEchoImage,
    config: ParticipantConfig,
    *,
    mask: np.ndarray,
    background: NoiseEstimate | None,
    name: str,
) -> SigmaMap | None:
    """The local noise map of ``--sigma-map local`` (None: one sigma), with a warning when the
    background shows noise that varies in space and no map was asked for."""
    if config.sigma_map == "off":
        if background is not None and not background.uniform:
            warnings.warn(
                f"{name}: noise varies in space, use --sigma-map local (background sigma "
                f"{background.spread:.2f}x between image blocks; one sigma under-corrects the "
                "noise floor where the noise is high)",
                IronmapWarning,
                stacklevel=2,
            )
        return None
    noise = local_sigma_map(image.data, image.echo_times_s, mask, source=image.sources[0])
    if noise is None:
        warnings.warn(
            f"{name}: too few voxels decay slowly enough for a local noise map; "
            "one sigma is used (--sigma-map off)",
            IronmapWarning,
            stacklevel=2,
        )
        return None
    log.info(
        "%s: local noise map from %d voxels, sigma %.4g, 95th/5th percentile %.2f",
        name,
        noise.samples,
        noise.global_sigma,
        noise.spread,
    )
    return noise


def _failed_voxels(
    fit: DecayFit, segmentation: Segmentation | None, out: ParticipantOutputs
) -> dict:
    """Fitted voxels inside the intracranial volume, those that failed and why; a warning
    above 1 % failed.

    The fit mask of a segmentation is its intracranial volume dilated by one voxel; that margin
    is mostly skull and background, where "no signal" is expected, so it is not counted.
    """
    tissue = fit.status != FitStatus.NOT_FITTED
    if segmentation is not None and "icv" in segmentation.fractions:
        tissue &= segmentation.fractions["icv"] >= 0.5
    counts = np.bincount(fit.status[tissue], minlength=len(FitStatus))
    reasons = {
        status.name.lower().replace("_", " "): int(counts[status])
        for status in FitStatus
        if status not in (FitStatus.OK, FitStatus.NOT_FITTED) and counts[status]
    }
    voxels = {
        "fit_voxels": int(tissue.sum()),
        "failed_voxels": sum(reasons.values()),
        "failed_reasons": reasons,
    }
    n, failed = voxels["fit_voxels"], voxels["failed_voxels"]
    if n and failed / n > FAILED_VOXELS_WARN:
        why = ", ".join(f"{reason} {count:,}" for reason, count in reasons.items())
        warnings.warn(
            f"{out.name}: {failed:,} of {n:,} voxels ({100 * failed / n:.1f} %) could not be "
            f"fitted ({why}); see {out.maps['desc-failed_mask'].name}",
            IronmapWarning,
            stacklevel=2,
        )
    return voxels


# -- outputs --------------------------------------------------------------------------------


def _write_maps(
    out: ParticipantOutputs,
    image: MultiEchoImage,
    fit: DecayFit,
    inputs: SessionInputs,
    config: ParticipantConfig,
    *,
    phase: PhaseImage | None = None,
) -> None:
    """The decay maps with their sidecars (ours to replace: an unfinished or forced run); with
    ``phase``, its units, scale, sign and readout (:meth:`PhaseImage.sidecar`)."""
    write_decay_maps(
        fit,
        image.affine,
        out.prefix,
        echo_times_s=image.echo_times_s,
        sources=[str(p) for p in image.sources],  # echo-time order, as EchoTime
        force=True,
        header=image.header,
        extra_sidecar={
            "B0GradientCorrection": bool(_phases_used(inputs, config)),
            **(
                {"B0GradientVoxelsFailed": _gradient_failures(fit, image, out.name)}
                if _phases_used(inputs, config)
                else {}
            ),
            **(phase.sidecar() if phase is not None else {}),
            "MagneticFieldStrength": image.field_strength_t,
            "ReceiveCoilsSource": fit.coils_source,
        },
    )


def _write_regions(
    out: ParticipantOutputs,
    image: MultiEchoImage,
    fit: DecayFit,
    segmentation: Segmentation,
    inputs: SessionInputs,
    config: ParticipantConfig,
    *,
    voxels: dict,
    field_hz: np.ndarray | None = None,
    chi: np.ndarray | None = None,
) -> None:
    """``_regions.tsv``, ``_volumes.tsv``, ``_lesions.tsv``, the QC figure, and the dseg ironmap
    made; ``voxels`` are the failed-voxel counts of :func:`_failed_voxels`, ``field_hz`` the
    field map of :func:`_decay_factor` (None without phase echoes), ``chi`` the susceptibility
    map (ppm) of :func:`_susceptibility` (None without one)."""
    if segmentation.written is not None:
        dseg = segmentation.written
        write_nifti(
            dseg.labels, dseg.affine, out.dseg, sidecar=dseg.sidecar, force=True, dtype=np.int16
        )
        write_tsv(out.dseg_tsv, dseg.table)
    fractions = {k: v for k, v in segmentation.fractions.items() if "/" in k}
    if segmentation.lesion_fraction is not None:
        fractions["lesions"] = segmentation.lesion_fraction
    masks = region_masks(fractions, min_fraction=config.min_fraction)
    regions = _regional_table(image, fit, segmentation, masks, inputs, config, chi=chi)
    volumes = pd.DataFrame([segmentation.subject_volumes])
    for table in (regions, volumes):
        if inputs.session:
            table.insert(1, "session", f"ses-{inputs.session}")
    write_tsv(out.regions, regions)
    write_tsv(out.volumes, volumes)
    prl = ""
    if "lesions" in masks:
        lesions = _lesion_table(
            image, fit, segmentation, regions, inputs, config, field_hz=field_hz, chi=chi
        )
        if inputs.session:
            lesions.insert(1, "session", f"ses-{inputs.session}")
        write_tsv(out.lesions, lesions)
        prl = prl_montage_html(
            lesions, chi, image.affine, lesion_fraction=segmentation.lesion_fraction
        )
    outlines = {r: fractions[f"{r}/both"] for r in DEEP_GM if fractions[f"{r}/both"].any()}
    _write_qc(
        out, image, fit, segmentation, outlines, voxels=voxels, regions=regions,
        lesions=masks.get("lesions"), prl=prl,
    )  # fmt: skip


def _lesion_table(
    image: MultiEchoImage,
    fit: DecayFit,
    segmentation: Segmentation,
    regions: pd.DataFrame,
    inputs: SessionInputs,
    config: ParticipantConfig,
    *,
    field_hz: np.ndarray | None = None,
    chi: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per lesion of the pooled ``lesions`` mask (``_lesions.tsv``), with the NAWM
    median as reference, the shell in white matter, the distance to the lateral ventricles
    (their fraction >= 0.5) and, with phase echoes, the local field of ``field_hz`` (the field
    map :func:`_decay_factor` computed for the gradient correction; None without phase)."""
    nawm = regions.loc[regions.region == "nawm", "r2star_median"]
    wm = segmentation.fractions.get("cerebral_wm/both")
    ventricles = segmentation.fractions.get("lateral_ventricle/both")
    mask, mask_affine = load_volume(inputs.lesion_mask)
    mask_affine = segmentation.carry_lesion(mask_affine)  # registered to the GRE, if so
    components = lesion_components(
        mask, mask_affine, fit.r2star.shape, image.affine, source_name=str(inputs.lesion_mask)
    )
    return lesion_table(
        segmentation.lesion_fraction,
        fit.r2star,
        image.affine,
        participant_id=f"sub-{inputs.subject}",
        min_fraction=config.min_fraction,
        components=components,
        nawm_median=float(nawm.iloc[0]) if len(nawm) else float("nan"),
        tissue=None if wm is None else wm >= 0.5,
        field_hz=field_hz,
        ventricles=None if ventricles is None else ventricles >= 0.5,
        chi_ppm=chi,
    )


def _regional_table(
    image: MultiEchoImage,
    fit: DecayFit,
    segmentation: Segmentation,
    masks: dict[str, np.ndarray],
    inputs: SessionInputs,
    config: ParticipantConfig,
    *,
    chi: np.ndarray | None = None,
) -> pd.DataFrame:
    """Regional and lesion R2* (and iron, with a calibration), and chi of the same voxels
    with a susceptibility map (``chi``, ppm): the ``_regions.tsv`` rows."""
    lesion = segmentation.lesion_fraction
    regions = regional_r2star(
        fit.r2star,
        masks,
        participant_id=f"sub-{inputs.subject}",
        region_volumes_ml=segmentation.region_ml,
        lesion_free=None if lesion is None else lesion == 0,
        erode_mm=config.erode_mm,
        voxel_mm=np.sqrt((image.affine[:3, :3] ** 2).sum(axis=0)),
        exclude_csf=config.csf_exclusion == "on",
        csf=segmentation.fractions["_csf"] >= 0.5 if "_csf" in segmentation.fractions else None,
        unlabelled=segmentation.unlabelled,
        chi=chi,
    )
    if config.iron_calibration:
        for column in ("median", "mean"):
            regions[f"iron_{column}_mg_per_kg"] = iron_from_r2star(
                regions[f"r2star_{column}"],
                calibration=config.iron_calibration,
                field_t=image.field_strength_t,
                source=str(image.sources[0]),
            )
    for key, value in segmentation.qc.items():  # the dseg-to-GRE alignment check
        regions[key] = value
    return _with_label_source(regions, segmentation)


def _with_label_source(regions: pd.DataFrame, segmentation: Segmentation) -> pd.DataFrame:
    """``label_source`` of each row (:attr:`Segmentation.label_source`; ``lesion_mask`` for
    the lesions row with a mask); NaN, and ``volume_ml`` NaN, where no label covered the
    structure (its row is NaN: the volume is unknown, not 0)."""
    source_of = {row.name: row.source for row in MEASURED_ROWS}
    sources = (
        regions["region"]
        .map(lambda r: segmentation.label_source.get(source_of.get(r, r), np.nan))
        .astype(object)
    )
    if segmentation.lesion_fraction is not None:
        sources[regions["region"] == "lesions"] = "lesion_mask"
    unlabelled = sources.isna() & (regions["region"] != "lesions")
    regions.loc[unlabelled, "volume_ml"] = np.nan
    regions["label_source"] = sources
    return regions


def _write_qc(
    out: ParticipantOutputs,
    image: MultiEchoImage,
    fit: DecayFit,
    segmentation: Segmentation,
    outlines: dict[str, np.ndarray],
    *,
    voxels: dict,
    regions: pd.DataFrame | None = None,
    lesions: np.ndarray | None = None,
    prl: str = "",
) -> None:
    """R2* with the deep grey-matter outlines (``outlines``: each structure's partial-volume
    fraction, outlined at 50 %), the first-echo magnitude, the ``lesions`` mask, the failed
    fits inside the intracranial volume and the noise sigma; PNG and HTML page, with the voxel
    counts per structure and hemisphere of ``regions`` (``_regions.tsv``); ``prl``: the PRL
    montage section (:func:`~ironmap.report.qc.prl_montage_html`)."""
    numbers = QCNumbers(
        **voxels, sigma=fit.sigma, sigma_source=fit.sigma_source, method=fit.method
    )
    icv = segmentation.fractions.get("icv")
    title = f"{out.name}: R2* with deep grey-matter outlines" + (
        " (registered atlas, nuclei refined on R2*)" if segmentation.written is not None else ""
    )
    from_atlas = [r for r, s in segmentation.label_source.items() if s == "atlas"]
    if segmentation.written is None and from_atlas:  # --segmentation hybrid
        # initials for two-word names (SN, RN, DN, as the views say): the title fits its line
        names = ", ".join(
            "".join(w[0].upper() for w in r.split("_")) if "_" in r else r for r in from_atlas
        )
        title += f" ({names} from the registered atlas)"
    png = qc_figure(
        fit.r2star,
        outlines,
        out.qc_figure,
        title=title,
        numbers=numbers,
        affine=image.affine,
        failed=fit.failed,
        icv=None if icv is None else icv >= 0.5,
        magnitude=image.data[..., 0],  # the first (shortest) echo
        lesions=lesions,
    )
    counts = None if regions is None else voxel_counts(regions)
    extra = _registration_qc(out, image, segmentation) + prl
    qc_page(png, out.qc_page, title=title, numbers=numbers, counts=counts, extra=extra)


def _registration_qc(
    out: ParticipantOutputs, image: MultiEchoImage, segmentation: Segmentation
) -> str:
    """The before/after figure of a dseg registered to the GRE and its QC-page section
    (empty when it was not registered)."""
    if segmentation.moved is None or not segmentation.registration.get("registered"):
        return ""
    from ..report.qc import registration_figure, registration_html

    labels, before, after = segmentation.moved
    png = registration_figure(
        image.data[..., 0], image.affine, labels, before, after, out.qc_registration,
        title=f"{out.name}: dseg on the first echo before and after its registration",
    )  # fmt: skip
    return registration_html(png, segmentation.registration)


# -- susceptibility (QSM) -------------------------------------------------------------------

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
