"""Ground-truth tissue properties: S0 and R2* (1/s at 3 T) per tissue, age and disease.

Healthy R2* follows the Hallgren-Sourander form of brain iron accumulation,
``R2*(age) = c + a (1 - exp(-b age))``, calibrated to 3 T literature values at age 45
(pallidum ~40, putamen ~28, caudate ~24, thalamus ~21, substantia nigra ~33, red nucleus ~31,
dentate ~32, white matter ~21, cortex ~17, CSF ~3 1/s); the thalamus plateaus and then declines
by ``decline`` 1/s per year after ``decline_after`` years.

MS changes R2* by ``duration_slope * disease_duration + edss_slope * EDSS + atrophy_slope *
(atrophy - ATROPHY_REF)`` (1/s), scaled by ``PROGRESSIVE_FACTOR`` in secondary and primary
progressive MS. The defaults follow the 2014 MAGNIMS findings: increases in all deep grey
matter except pallidum and substantia nigra, larger in progressive MS; disease duration and
EDSS independent determinants; cortical atrophy adding only in substantia nigra and red
nucleus (centred on a typical patient's atrophy, so that it adds no MS-HC difference).
Lesions have R2* below normal-appearing white matter that falls with duration.

Every tissue is one :class:`Tissue` record of :data:`TISSUES`, keyed by the region names of the
catalogue (:mod:`ironmap.regions.catalog`) plus ``scalp``; a region simulated as another
region's tissue (the ventricles as CSF) is mapped in :data:`SHARED_TISSUE`. ``AGE_MODELS``,
``S0``, ``T1W``, ``MS_EFFECTS`` and ``CODE_TISSUE`` are read-only views derived from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..regions.catalog import CATALOG, DEEP_GM

__all__ = [
    "AGE_MODELS",
    "ATROPHY_REF",
    "BIOLOGICAL_SD",
    "BIOLOGICAL_SD_SHARED",
    "BIOLOGICAL_SD_TISSUE",
    "CODE_TISSUE",
    "DEEP_GM",
    "MS_EFFECTS",
    "S0",
    "SHARED_TISSUE",
    "T1W",
    "TISSUES",
    "AgeModel",
    "MSEffect",
    "Tissue",
    "healthy_r2star",
    "lesion_r2star_factor",
    "ms_r2star_change",
    "tissue_of",
]


@dataclass(frozen=True)
class AgeModel:
    """``R2*(age) = c + a (1 - exp(-b age)) - decline * max(age - decline_after, 0)`` (1/s)."""

    c: float
    a: float
    b: float
    decline: float = 0.0
    decline_after: float = 200.0

    def __call__(self, age: ArrayLike) -> NDArray[np.float64]:
        age = np.asarray(age, dtype=np.float64)
        rise = self.c + self.a * -np.expm1(-self.b * age)
        return rise - self.decline * np.maximum(age - self.decline_after, 0.0)


@dataclass(frozen=True)
class MSEffect:
    """Change of R2* in MS (1/s): per year of disease, per EDSS point and per unit of atrophy.

    ``atrophy_slope`` multiplies ``Subject.atrophy - ATROPHY_REF`` (the cortical ribbon's
    thinning fraction, :mod:`.cohort`, relative to a typical patient's): cortical grey matter
    as % of ICV is about ``P (1 - atrophy)`` with ``P`` ~ 31 %, so its slope per % of ICV in
    the determinants is about ``-atrophy_slope / P``.
    """

    duration_slope: float = 0.0
    edss_slope: float = 0.0
    atrophy_slope: float = 0.0


@dataclass(frozen=True)
class Tissue:
    """The simulated physics of one tissue.

    Attributes
    ----------
    age : AgeModel
        Healthy R2* (1/s) against age.
    s0 : float
        Relative proton-density-weighted signal at TE = 0 (arbitrary units; white matter 0.7).
    t1w : float
        Relative T1-weighted (MPRAGE-like) intensity, for simulated T1w images.
    ms_effect : MSEffect or None
        Planted R2* change in MS, reported in the truth JSON; None: no effect planted (and none
        reported). ``MSEffect()`` states a planted null effect.
    """

    age: AgeModel
    s0: float
    t1w: float
    ms_effect: MSEffect | None = None


#: Tissue physics, keyed by catalogue region name (plus ``scalp``: the head outside the brain).
#: MS effects are at the scale of the literature (MS - HC differences of 1-3 1/s, Cohen's d
#: 0.3-0.8 against a between-subject SD of 8 % of R2*; larger in progressive MS through its
#: longer duration and higher EDSS; none in pallidum and substantia nigra, as in the 2014 study).
#: The order fixes the per-subject random draws (:func:`.cohort._biological_offsets`): append
#: new tissues rather than reordering, or every simulated cohort changes.
TISSUES: Mapping[str, Tissue] = MappingProxyType(
    {
        "pallidum": Tissue(AgeModel(c=20.0, a=21.0, b=0.09), 0.72, 0.86, MSEffect()),
        "putamen": Tissue(AgeModel(c=17.0, a=13.0, b=0.04), 0.78, 0.72, MSEffect(0.07, 0.28)),
        "caudate": Tissue(AgeModel(c=17.0, a=8.0, b=0.05), 0.80, 0.68, MSEffect(0.07, 0.28)),
        "thalamus": Tissue(
            AgeModel(c=17.0, a=5.0, b=0.1, decline=0.06, decline_after=40.0),
            0.76,
            0.78,
            MSEffect(0.04, 0.15),
        ),
        "substantia_nigra": Tissue(
            AgeModel(c=20.0, a=13.0, b=0.08), 0.72, 0.74, MSEffect(atrophy_slope=12.0)
        ),
        "red_nucleus": Tissue(
            AgeModel(c=18.0, a=14.0, b=0.07), 0.72, 0.78, MSEffect(0.05, 0.18, 12.0)
        ),
        "dentate_nucleus": Tissue(
            AgeModel(c=18.0, a=15.0, b=0.06), 0.72, 0.80, MSEffect(0.05, 0.20)
        ),
        "cerebral_wm": Tissue(AgeModel(c=18.0, a=3.0, b=0.05), 0.70, 1.0),
        "cortex": Tissue(AgeModel(c=14.0, a=3.0, b=0.05), 0.82, 0.6),
        "cerebellum_wm": Tissue(AgeModel(c=17.0, a=3.0, b=0.05), 0.70, 0.95),
        "cerebellum_cortex": Tissue(AgeModel(c=14.5, a=2.5, b=0.05), 0.82, 0.62),
        "brainstem": Tissue(AgeModel(c=19.0, a=3.0, b=0.05), 0.72, 0.9),
        "csf": Tissue(AgeModel(c=3.0, a=0.0, b=0.0), 1.0, 0.15),
        "scalp": Tissue(AgeModel(c=30.0, a=0.0, b=0.0), 0.6, 0.8),
    }
)

#: Catalogue regions simulated with another region's tissue (one R2* draw per subject for both).
SHARED_TISSUE: Mapping[str, str] = MappingProxyType({"lateral_ventricle": "csf"})

# Order of MS_EFFECTS (and so of the truth JSON's "ms_effects") in ironmap 0.1.0, kept so that
# a seed's truth JSON stays byte-identical; other tissues with an effect follow in TISSUES order.
_MS_EFFECTS_ORDER = (
    "caudate",
    "putamen",
    "thalamus",
    "red_nucleus",
    "dentate_nucleus",
    "pallidum",
    "substantia_nigra",
)


def tissue_of(region: str) -> str:
    """Key of :data:`TISSUES` that simulates catalogue region ``region``."""
    return SHARED_TISSUE.get(region, region)


def _ms_rank(tissue: str) -> int:
    return _MS_EFFECTS_ORDER.index(tissue) if tissue in _MS_EFFECTS_ORDER else len(TISSUES)


#: Views of :data:`TISSUES`: tissue -> healthy age model, S0, T1w intensity, planted MS effect
#: (only tissues with one).
AGE_MODELS: Mapping[str, AgeModel] = MappingProxyType({k: t.age for k, t in TISSUES.items()})
S0: Mapping[str, float] = MappingProxyType({k: t.s0 for k, t in TISSUES.items()})
T1W: Mapping[str, float] = MappingProxyType({k: t.t1w for k, t in TISSUES.items()})
MS_EFFECTS: Mapping[str, MSEffect] = MappingProxyType(
    {
        k: TISSUES[k].ms_effect
        for k in sorted((k for k, t in TISSUES.items() if t.ms_effect is not None), key=_ms_rank)
    }
)

#: Label code -> tissue key of :data:`TISSUES` (0 = scalp where inside the head), from the
#: catalogue's codes.
CODE_TISSUE: Mapping[int, str] = MappingProxyType(
    {0: "scalp", **{code: tissue_of(r.name) for r in CATALOG for code in r.codes}}
)

#: Progressive MS (SPMS, PPMS) multiplies the planted effects by this factor.
PROGRESSIVE_FACTOR = 1.0

#: Between-subject variation of R2*, as fractions of the healthy value at age 45: a part
#: shared by all tissues of a subject (iron-rich subjects are iron-rich everywhere, so the
#: contrast between neighbouring structures varies less than their level) and a part of each
#: tissue's own.
BIOLOGICAL_SD_SHARED = 0.07
BIOLOGICAL_SD_TISSUE = 0.03
#: Total between-subject SD of one tissue's R2* (fraction), for table-level cohorts.
BIOLOGICAL_SD = float(np.hypot(BIOLOGICAL_SD_SHARED, BIOLOGICAL_SD_TISSUE))


def healthy_r2star(tissue: str, age: ArrayLike) -> NDArray[np.float64]:
    """Normative R2* (1/s) of ``tissue`` (or of the tissue of a catalogue region) at ``age``."""
    return TISSUES[tissue_of(tissue)].age(age)


#: ``Subject.atrophy`` of a typical patient: the planted atrophy effect is 0 there.
ATROPHY_REF = 0.10


def ms_r2star_change(
    tissue: str,
    *,
    disease_duration: float,
    edss: float,
    progressive: bool,
    atrophy: float = ATROPHY_REF,
) -> float:
    """Planted R2* change (1/s) of ``tissue`` in a patient (0 where none is planted).

    ``atrophy``: the patient's ``Subject.atrophy`` (default :data:`ATROPHY_REF`, no atrophy
    effect).
    """
    record = TISSUES.get(tissue_of(tissue))
    effect = record.ms_effect if record is not None and record.ms_effect else MSEffect()
    delta = (
        effect.duration_slope * disease_duration
        + effect.edss_slope * edss
        + effect.atrophy_slope * (atrophy - ATROPHY_REF)
    )
    return float(delta * (PROGRESSIVE_FACTOR if progressive else 1.0))


def lesion_r2star_factor(disease_duration: ArrayLike) -> NDArray[np.float64]:
    """Lesion R2* as a fraction of normal-appearing WM: 0.88 at onset, -0.008 per year, >= 0.6."""
    return np.maximum(0.88 - 0.008 * np.asarray(disease_duration, dtype=np.float64), 0.6)
