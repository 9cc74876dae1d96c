"""One participant (and session) of the participant stage, as a list of named steps.

:func:`process_session` reads as the pipeline: check whether the outputs are up to date, load
the echoes, choose where the regions come from, fit R2* in that strategy's mask, segment, write
the maps, the regional tables and the QC figure, then the provenance record that marks the
session done. Every output path comes from :class:`~ironmap.io.derivatives.ParticipantOutputs`.
The steps with a module of their own: the R2* fit (:mod:`.decay`), the susceptibility map
(:mod:`.qsm`) and the provenance record that decides resuming (:mod:`.resume`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import InputError
from ..fitting import DecayFit
from ..io import (
    MultiEchoImage,
    ParticipantOutputs,
    SessionInputs,
    load_bids_echoes,
    load_volume,
    write_decay_maps,
    write_json,
    write_nifti,
    write_tsv,
)
from ..io.phase import PhaseImage, load_phase, load_real_imag
from ..iron import iron_from_r2star
from ..regions import DEEP_GM, region_masks, regional_r2star
from ..regions.catalog import MEASURED_ROWS
from ..regions.lesions import lesion_components, lesion_table
from ..report import QCNumbers, qc_figure, qc_page
from ..report.qc_page import voxel_counts
from ..report.qc_prl import prl_montage_html
from ..segmentation.strategies import Segmentation, choose_strategy
from .decay import (
    FAILED_VOXELS_WARN,
    _decay_factor,
    _failed_voxels,
    _fit,
    _gradient_failures,
)
from .qsm import CHI_PLAUSIBLE_PPM as CHI_PLAUSIBLE_PPM
from .qsm import MIN_REFERENCE_VOXELS as MIN_REFERENCE_VOXELS
from .qsm import _qsm_source, _susceptibility
from .resume import _phases_used, _provenance, _up_to_date

if TYPE_CHECKING:
    from .participant import ParticipantConfig

__all__ = ["FAILED_VOXELS_WARN", "ParticipantResult", "process_session"]


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
    montage section (:func:`~ironmap.report.qc_prl.prl_montage_html`)."""
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
    from ..report.qc_registration import registration_figure, registration_html

    labels, before, after = segmentation.moved
    png = registration_figure(
        image.data[..., 0], image.affine, labels, before, after, out.qc_registration,
        title=f"{out.name}: dseg on the first echo before and after its registration",
    )  # fmt: skip
    return registration_html(png, segmentation.registration)
