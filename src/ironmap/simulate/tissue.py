"""Ground-truth tissue properties: S0 and R2* (1/s at 3 T) per tissue, age and disease.

Healthy R2* follows the Hallgren-Sourander form of brain iron accumulation,
``R2*(age) = c + a (1 - exp(-b age))``, calibrated to 3 T literature values at age 45
(pallidum ~40, putamen ~28, caudate ~24, thalamus ~21, substantia nigra ~33, red nucleus ~31,
dentate ~32, white matter ~21, cortex ~17, CSF ~3 1/s); the thalamus plateaus and then declines
by ``decline`` 1/s per year after ``decline_after`` years.

MS changes R2* by ``duration_slope * disease_duration + edss_slope * EDSS`` (1/s), scaled by
``PROGRESSIVE_FACTOR`` in secondary and primary progressive MS. The defaults follow the 2014
MAGNIMS findings: increases in all deep grey matter except pallidum and substantia nigra, larger
in progressive MS. Lesions have R2* below normal-appearing white matter that falls with duration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..regions.labels import DEEP_GM

__all__ = [
    "AGE_MODELS",
    "BIOLOGICAL_SD",
    "BIOLOGICAL_SD_SHARED",
    "BIOLOGICAL_SD_TISSUE",
    "CODE_TISSUE",
    "DEEP_GM",
    "MS_EFFECTS",
    "S0",
    "T1W",
    "AgeModel",
    "MSEffect",
    "healthy_r2star",
    "lesion_r2star_factor",
    "ms_r2star_change",
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


AGE_MODELS: dict[str, AgeModel] = {
    "pallidum": AgeModel(c=20.0, a=21.0, b=0.09),
    "putamen": AgeModel(c=17.0, a=13.0, b=0.04),
    "caudate": AgeModel(c=17.0, a=8.0, b=0.05),
    "thalamus": AgeModel(c=17.0, a=5.0, b=0.1, decline=0.06, decline_after=40.0),
    "substantia_nigra": AgeModel(c=20.0, a=13.0, b=0.08),
    "red_nucleus": AgeModel(c=18.0, a=14.0, b=0.07),
    "dentate_nucleus": AgeModel(c=18.0, a=15.0, b=0.06),
    "cerebral_wm": AgeModel(c=18.0, a=3.0, b=0.05),
    "cortex": AgeModel(c=14.0, a=3.0, b=0.05),
    "cerebellum_wm": AgeModel(c=17.0, a=3.0, b=0.05),
    "cerebellum_cortex": AgeModel(c=14.5, a=2.5, b=0.05),
    "brainstem": AgeModel(c=19.0, a=3.0, b=0.05),
    "csf": AgeModel(c=3.0, a=0.0, b=0.0),
    "scalp": AgeModel(c=30.0, a=0.0, b=0.0),
}

#: Relative proton-density-weighted signal at TE = 0 per tissue (arbitrary units).
S0: dict[str, float] = {
    "pallidum": 0.72,
    "putamen": 0.78,
    "caudate": 0.80,
    "thalamus": 0.76,
    "substantia_nigra": 0.72,
    "red_nucleus": 0.72,
    "dentate_nucleus": 0.72,
    "cerebral_wm": 0.70,
    "cortex": 0.82,
    "cerebellum_wm": 0.70,
    "cerebellum_cortex": 0.82,
    "brainstem": 0.72,
    "csf": 1.0,
    "scalp": 0.6,
}

#: Relative T1-weighted (MPRAGE-like) intensity per tissue, for simulated T1w images.
T1W: dict[str, float] = {
    "pallidum": 0.86,
    "putamen": 0.72,
    "caudate": 0.68,
    "thalamus": 0.78,
    "substantia_nigra": 0.74,
    "red_nucleus": 0.78,
    "dentate_nucleus": 0.80,
    "cerebral_wm": 1.0,
    "cortex": 0.6,
    "cerebellum_wm": 0.95,
    "cerebellum_cortex": 0.62,
    "brainstem": 0.9,
    "csf": 0.15,
    "scalp": 0.8,
}

#: Label code -> tissue key of :data:`AGE_MODELS` (0 = scalp where inside the head).
CODE_TISSUE: dict[int, str] = {
    0: "scalp",
    2: "cerebral_wm",
    41: "cerebral_wm",
    3: "cortex",
    42: "cortex",
    4: "csf",
    43: "csf",
    24: "csf",
    7: "cerebellum_wm",
    46: "cerebellum_wm",
    8: "cerebellum_cortex",
    47: "cerebellum_cortex",
    16: "brainstem",
    10: "thalamus",
    49: "thalamus",
    11: "caudate",
    50: "caudate",
    12: "putamen",
    51: "putamen",
    13: "pallidum",
    52: "pallidum",
    101: "substantia_nigra",
    102: "substantia_nigra",
    103: "red_nucleus",
    104: "red_nucleus",
    105: "dentate_nucleus",
    106: "dentate_nucleus",
}


@dataclass(frozen=True)
class MSEffect:
    """Change of R2* in MS (1/s): per year of disease and per EDSS point."""

    duration_slope: float = 0.0
    edss_slope: float = 0.0


#: Planted MS effects per tissue (tissues not listed: none), at the scale of the literature
#: (MS - HC differences of 1-3 1/s, Cohen's d 0.3-0.8 against a between-subject SD of 8 %
#: of R2*; larger in progressive MS through its longer duration and higher EDSS; none in
#: pallidum and substantia nigra, as in the 2014 study).
MS_EFFECTS: dict[str, MSEffect] = {
    "caudate": MSEffect(duration_slope=0.07, edss_slope=0.28),
    "putamen": MSEffect(duration_slope=0.07, edss_slope=0.28),
    "thalamus": MSEffect(duration_slope=0.04, edss_slope=0.15),
    "red_nucleus": MSEffect(duration_slope=0.05, edss_slope=0.18),
    "dentate_nucleus": MSEffect(duration_slope=0.05, edss_slope=0.20),
    "pallidum": MSEffect(),
    "substantia_nigra": MSEffect(),
}

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
    """Normative R2* (1/s) of ``tissue`` at ``age`` (years)."""
    return AGE_MODELS[tissue](age)


def ms_r2star_change(
    tissue: str, *, disease_duration: float, edss: float, progressive: bool
) -> float:
    """Planted R2* change (1/s) of ``tissue`` in a patient."""
    effect = MS_EFFECTS.get(tissue, MSEffect())
    delta = effect.duration_slope * disease_duration + effect.edss_slope * edss
    return float(delta * (PROGRESSIVE_FACTOR if progressive else 1.0))


def lesion_r2star_factor(disease_duration: ArrayLike) -> NDArray[np.float64]:
    """Lesion R2* as a fraction of normal-appearing WM: 0.88 at onset, -0.008 per year, >= 0.6."""
    return np.maximum(0.88 - 0.008 * np.asarray(disease_duration, dtype=np.float64), 0.6)
