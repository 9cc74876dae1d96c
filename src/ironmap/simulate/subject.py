"""One synthetic subject: anatomy -> true maps -> acquisition, and the truth to check against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..regions.catalog import CATALOG, MEASURED_ROWS, by_name
from ..regions.catalog import label_code as code
from .anatomy import LABEL_NAMES, Anatomy, make_anatomy
from .cohort import Session, Subject, subject_r2star
from .lesions import RimShells, lesion_rim_shells, lesion_truth
from .signal import acquire, acquisition_affine, t1w_image, truth_maps
from .susceptibility import FIELD_STRENGTH_T, SusceptibilityTruth, field_hz, susceptibility_map
from .tissue import DEEP_GM, lesion_r2star_factor

__all__ = ["SubjectData", "generate_subject", "truth_summary"]

#: Deep grey-matter region -> (left code, right code), from the region catalogue.
REGION_CODES = MappingProxyType({region: by_name(region).codes for region in DEEP_GM})
#: Codes of CSF and the ventricles (not brain), of the cortex and of cerebral white matter.
CSF_CODES = tuple(c for r in CATALOG if r.kind == "csf" for c in r.codes)
CORTEX_CODES = by_name("cortex").codes
CEREBRAL_WM_CODES = by_name("cerebral_wm").codes


@dataclass(frozen=True)
class SubjectData:
    """Everything generated for one subject.

    Attributes
    ----------
    anatomy : Anatomy
        Labels and lesions on the 1 mm grid.
    r2star : numpy.ndarray of float32
        True R2* (1/s) on the 1 mm grid, without the site bias.
    magnitude : numpy.ndarray of float32, shape (X, Y, Z, n_echoes)
        Simulated acquisition.
    affine : numpy.ndarray, shape (4, 4)
        Affine of the acquisition grid.
    sigma : float
        Noise SD per channel of ``magnitude``.
    phase : numpy.ndarray of float32, shape (X, Y, Z, n_echoes), optional
        With phase: the phase images (radians).
    susceptibility : SusceptibilityTruth, optional
        The susceptibility sources on the 1 mm grid (:mod:`.susceptibility`).
    rim_shells : RimShells, optional
        The paramagnetic rims (:func:`~.lesions.lesion_rim_shells`).
    field_hz : numpy.ndarray of float32, shape of ``anatomy.labels``, optional
        With phase: the true off-resonance (Hz) of the susceptibility sources on the 1 mm grid
        (the acquisition adds its smooth shim residual).
    """

    anatomy: Anatomy
    r2star: NDArray[np.float32]
    magnitude: NDArray[np.float32]
    affine: NDArray[np.float64]
    sigma: float
    phase: NDArray[np.float32] | None = None
    t1w: NDArray[np.float32] | None = None
    motion: NDArray[np.float64] | None = None
    susceptibility: SusceptibilityTruth | None = None
    rim_shells: RimShells | None = None
    field_hz: NDArray[np.float32] | None = None

    @property
    def anatomy_affine(self) -> NDArray[np.float64]:
        """Affine of the T1w, dseg and lesion mask: the anatomy's, in the scanner space of the
        T1w session (``inv(motion) @ anatomy.affine`` when the head moved before the GRE)."""
        if self.motion is None:
            return self.anatomy.affine
        return np.linalg.inv(self.motion) @ self.anatomy.affine


def generate_subject(
    subject: Subject,
    *,
    with_images: bool = True,
    with_phase: bool = False,
    anatomy: str = "phantom",
    with_t1w: bool = False,
    ventricle_margin_mm: float = 0.0,
    scan: Session | None = None,
    motion: tuple[Sequence[float], Sequence[float]] | None = None,
) -> SubjectData:
    """Draw the anatomy, the true maps and the acquisition of ``subject`` (deterministic).

    ``with_images=False`` skips the acquisition (``magnitude`` empty, ``sigma`` NaN): the truth
    alone, several times faster. ``with_phase=True`` adds the field of the susceptibility
    sources (:mod:`.susceptibility`: deep grey-matter iron, veins, lesion rims, air cavities and
    the head's air boundary, by the dipole kernel on the 1 mm grid) and returns the phase
    images too; without phase the magnitude has no susceptibility field. ``anatomy="atlas"`` draws
    the anatomy from the deformed bundled atlas (:mod:`.atlas_anatomy`, needs ``ironmap[atlas]``)
    instead of the ellipsoid phantom. ``with_t1w=True`` adds a 1 mm T1-weighted image
    (:func:`~.signal.t1w_image`, on the anatomy's grid). ``ventricle_margin_mm`` > 0 adds
    periventricular atrophy to either anatomy: the lateral ventricles grow by that margin (mm)
    into caudate, thalamus and white matter (:func:`~.anatomy.enlarge_ventricles`; the true
    labels, maps and T1w follow), the same subject otherwise. ``scan`` (a
    :class:`~.cohort.Session` whose ``subject`` is ``subject``) is a later session of the same
    head: anatomy and within-tissue texture come from the participant's seed as always, the
    acquisition (noise, receive bias, shim, T1w) from the session's seed, with its scan-rescan
    factor on R2*. ``motion = (rotation_deg xyz, translation_mm xyz)`` moves the head between
    the T1w session (T1w, dseg, lesion mask) and the GRE: a rigid transform about the centre of
    the anatomy's grid (:func:`~ironmap.segmentation.coregister.rigid_transform`), kept as
    ``SubjectData.motion`` (T1w-session scanner mm -> GRE scanner mm); the GRE is acquired on
    the moved head and the T1w-session images keep the anatomy's voxels with the affine of the
    unmoved head (:attr:`SubjectData.anatomy_affine`). The other draws are those without motion.
    """
    rng = np.random.default_rng(subject.seed)
    if anatomy == "atlas":
        from .atlas_anatomy import make_atlas_anatomy

        anat = make_atlas_anatomy(
            rng, lesion_count=subject.lesion_count, ventricle_margin_mm=ventricle_margin_mm
        )
    elif anatomy == "phantom":
        anat = make_anatomy(
            rng,
            atrophy=subject.atrophy,
            lesion_count=subject.lesion_count,
            ventricle_margin_mm=ventricle_margin_mm,
        )
    else:
        raise ValueError(f"anatomy must be 'phantom' or 'atlas', not {anatomy!r}")
    # Rims from their own stream: the subject's other draws stay what they were without them.
    shells = lesion_rim_shells(
        anat.lesions, anat.affine, np.random.default_rng(_child(subject.seed))
    )
    anat = replace(anat, lesion_rims=shells.occupancy >= 0.5)
    data = _acquire_subject(
        subject,
        anat,
        rng,
        with_images=with_images,
        with_phase=with_phase,
        scan=scan,
        shells=shells,
    )
    if with_t1w:
        data = replace(data, t1w=t1w_image(anat, rng=rng))
    if motion is not None:
        from ..segmentation.coregister import rigid_transform

        centre = anat.affine @ np.append((np.asarray(anat.labels.shape) - 1) / 2.0, 1.0)
        data = replace(data, motion=rigid_transform(*motion, centre_mm=centre[:3]))
    return data


def _child(seed: int | np.random.SeedSequence, key: int = 2018) -> np.random.SeedSequence:
    """A fixed child stream of ``seed`` that does not advance it (unlike ``spawn``): 2018 for
    the rims, 2027 for the susceptibility sources (veins, air cavities)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, key))
    return np.random.SeedSequence(seed, spawn_key=(key,))


def _acquire_subject(
    subject: Subject,
    anatomy: Anatomy,
    rng: np.random.Generator,
    *,
    with_images: bool,
    with_phase: bool,
    scan: Session | None = None,
    shells: RimShells | None = None,
) -> SubjectData:
    dd = subject.disease_duration if subject.group == "MS" else 0.0
    r2, s0 = truth_maps(
        anatomy, subject_r2star(subject), lesion_factor=float(lesion_r2star_factor(dd)), rng=rng
    )
    # The susceptibility sources from their own stream (the subject's draws stay unchanged).
    chi = susceptibility_map(
        anatomy,
        r2,
        np.random.default_rng(_child(subject.seed, 2027)),
        rim_chi_ppm=None if shells is None else shells.chi_ppm,
    )
    bias = subject.site.r2star_bias
    if scan is not None:  # another scan of the same head: its own noise, bias field and shim
        rng.bit_generator.state = np.random.default_rng(scan.seed).bit_generator.state
        bias *= scan.r2star_factor
    protocol = subject.site.protocol
    affine = acquisition_affine(anatomy.affine, protocol.voxel_mm)
    extra = {"susceptibility": chi, "rim_shells": shells}
    if not with_images:
        empty = np.empty((0, 0, 0, 0), np.float32)
        return SubjectData(anatomy, r2, empty, affine, float("nan"), **extra)
    if with_phase:
        # The field of every source by the dipole kernel on the 1 mm grid; air has no signal.
        field = field_hz(chi, anatomy, field_strength_t=FIELD_STRENGTH_T)
        s0 = np.where(chi.cavities, np.float32(0.0), s0)
        r2 = np.where(chi.cavities, np.float32(0.0), r2)
        magnitude, sigma, phase = acquire(
            r2, s0, protocol, rng=rng, r2star_bias=bias, extra_field_hz=field, with_phase=True
        )
        return SubjectData(anatomy, r2, magnitude, affine, sigma, phase, field_hz=field, **extra)
    # Magnitude only: no susceptibility field (the R2* benchmarks' field-free world).
    magnitude, sigma = acquire(r2, s0, protocol, rng=rng, r2star_bias=bias)
    return SubjectData(anatomy, r2, magnitude, affine, sigma, **extra)


def truth_summary(subject: Subject, data: SubjectData) -> dict:
    """Ground truth of one subject for the truth JSON (R2* in 1/s, volumes in mL).

    Regional R2* is the mean true R2* over the structure's 1 mm voxels, lesion voxels excluded,
    without the site bias (multiply by ``site_r2star_bias`` for what that scanner measures).
    """
    labels, lesions = data.anatomy.labels, data.anatomy.lesions
    voxel_ml = float(abs(np.linalg.det(data.anatomy.affine[:3, :3]))) / 1000.0
    keep = ~lesions
    n_codes = max(LABEL_NAMES) + 1
    counts = np.bincount(labels[keep], minlength=n_codes)
    sums = np.bincount(labels[keep], weights=data.r2star[keep], minlength=n_codes)
    all_counts = np.bincount(labels.ravel(), minlength=n_codes)

    chi = None if data.susceptibility is None else data.susceptibility.chi_ppm
    chi_sums = (
        None if chi is None else np.bincount(labels[keep], weights=chi[keep], minlength=n_codes)
    )

    def stats(codes) -> dict:
        n = int(sum(counts[c] for c in codes))
        out = {
            "r2star_mean": float(sum(sums[c] for c in codes) / n) if n else None,
            "volume_ml": float(sum(all_counts[c] for c in codes)) * voxel_ml,
        }
        if chi_sums is not None:  # mean true chi (ppm, relative to CSF), veins included
            out["chi_mean"] = float(sum(chi_sums[c] for c in codes) / n) if n else None
        return out

    def hemisphere_codes(region: str, hemisphere: str) -> tuple[int, ...]:
        if hemisphere == "both":
            return by_name(region).codes
        return (code(region, hemisphere),)

    # The rows of regions.tsv (deep grey matter per hemisphere, NAWM), then the lesions.
    regions = {
        row.name: {hemi: stats(hemisphere_codes(row.source, hemi)) for hemi in row.hemispheres}
        for row in MEASURED_ROWS
    }
    _, n_lesions = ndimage.label(lesions, structure=np.ones((3, 3, 3)))
    lesion_volume = float(lesions.sum()) * voxel_ml
    # Lesion tissue without the paramagnetic rims: what a median over the lesion voxels sees
    # (rims are a thin minority at the edges); the mean with rims is given beside it.
    rims = data.anatomy.lesion_rims
    tissue = lesions if rims is None else lesions & ~rims
    regions["lesions"] = {
        "both": {
            "r2star_mean": float(data.r2star[tissue].mean()) if tissue.any() else None,
            "r2star_mean_with_rims": float(data.r2star[lesions].mean()) if lesions.any() else None,
            "volume_ml": lesion_volume,
        }
    }
    icv = float((labels > 0).sum()) * voxel_ml
    brain = float(np.isin(labels, CSF_CODES, invert=True).sum() - (labels == 0).sum()) * voxel_ml
    return {
        "participant_id": subject.participant_id,
        "site": subject.site.name,
        "group": subject.group,
        "phenotype": subject.phenotype,
        "age": subject.age,
        "sex": subject.sex,
        "disease_duration": None if subject.group == "HC" else subject.disease_duration,
        "edss": None if subject.group == "HC" else subject.edss,
        "site_r2star_bias": subject.site.r2star_bias,
        "noise_sigma": data.sigma,
        "atrophy": subject.atrophy,
        "tissue_r2star": subject_r2star(subject),
        "regions": regions,
        "icv_ml": icv,
        "brain_ml": brain,
        "cortical_gm_ml": float(np.isin(labels, CORTEX_CODES).sum()) * voxel_ml,
        "nbv": brain / icv,
        "lesion_volume_ml": lesion_volume,
        "lesion_count": int(n_lesions),
        "lesions": lesion_truth(
            lesions,
            data.anatomy.lesion_rims,
            data.r2star,
            data.anatomy.affine,
            shells=data.rim_shells,
            chi_ppm=chi,
            central_vein=None if data.susceptibility is None else data.susceptibility.central_vein,
            vein_beside=None if data.susceptibility is None else data.susceptibility.vein_beside,
        ),
    }
