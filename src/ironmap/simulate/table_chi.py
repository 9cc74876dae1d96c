"""Regional susceptibility (chi, ppm) for the table-level cohorts of :mod:`.tables`.

Healthy chi per region (linear in age, :data:`CHI_HEALTHY`), a between-subject offset, the
planted change of the participant's group label, an additive site offset and measurement
noise, drawn from its own random stream so that adding chi leaves the R2* cohort unchanged.
For the calibration of the group stage's chi analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CHI_HEALTHY", "add_chi"]


#: Healthy regional susceptibility (ppm, relative to CSF): value at age 45 and change per decade,
#: of the size QSM studies of the deep grey matter report (iron-rich nuclei higher, increasing
#: with age; white matter diamagnetic). For table cohorts of the chi analysis.
CHI_HEALTHY: dict[str, tuple[float, float]] = {
    "thalamus": (0.00, 0.002),
    "caudate": (0.06, 0.008),
    "putamen": (0.05, 0.012),
    "pallidum": (0.15, 0.010),
    "substantia_nigra": (0.12, 0.006),
    "red_nucleus": (0.09, 0.006),
    "dentate_nucleus": (0.10, 0.006),
    "nawm": (-0.02, 0.000),
}


def add_chi(
    long: pd.DataFrame,
    participants: pd.DataFrame,
    *,
    seed: int,
    effects: dict[str, dict[str, float]] | None = None,
    bio_sd: float = 0.012,
    noise_sd: float = 0.004,
    site_offset: dict[str, float] | None = None,
) -> pd.DataFrame:
    """A table cohort's regional susceptibility, beside its R2* (its own random stream).

    Each participant's ``chi_median`` (ppm) is::

        healthy(age) + N(0, bio_sd) + effect + site offset + N(0, noise_sd)

    with ``healthy`` from :data:`CHI_HEALTHY` (linear in age), an additive site offset (chi is
    relative to a reference region, so scanner differences shift it rather than scale it) and
    ``effect`` the planted change of the participant's group label (phenotype, or ``HC``).

    Parameters
    ----------
    long, participants : pandas.DataFrame
        The tables of :func:`simulate_table_cohort`.
    seed : int
    effects : dict, optional
        Label -> {region: additive chi change (ppm)}; default none.
    bio_sd, noise_sd : float
        Between-subject and measurement SD (ppm).
    site_offset : dict, optional
        Site -> additive chi offset (ppm).

    Returns
    -------
    pandas.DataFrame
        ``long`` with ``chi_median`` (ppm), ``chi_n_voxels`` (= ``n_voxels``) and
        ``chi_truth`` (site-free, noise-free chi, ppm).
    """
    rng = np.random.default_rng([seed, 27])
    effects, site_offset = effects or {}, site_offset or {}
    info = participants.set_index("participant_id")
    label = info["phenotype"].where(info["group"] != "HC", "HC")
    rows = long.reset_index(drop=True)
    base = rows["region"].map(lambda r: CHI_HEALTHY[r][0]).to_numpy(float)
    slope = rows["region"].map(lambda r: CHI_HEALTHY[r][1]).to_numpy(float)
    age = rows["participant_id"].map(info["age"]).to_numpy(float)
    own = rows["participant_id"].map(label)
    effect = np.array(
        [effects.get(lab, {}).get(r, 0.0) for lab, r in zip(own, rows["region"], strict=True)]
    )
    truth = base + slope * (age - 45.0) / 10.0 + rng.normal(0.0, bio_sd, len(rows)) + effect
    offset = rows["participant_id"].map(info["site"]).map(site_offset).fillna(0.0).to_numpy()
    observed = truth + offset + rng.normal(0.0, noise_sd, len(rows))
    return rows.assign(chi_median=observed, chi_n_voxels=rows["n_voxels"], chi_truth=truth)
