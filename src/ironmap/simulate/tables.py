"""Table-level cohorts (no images): regional R2* per participant with known truth.

For the statistics of the group stage: calibration (false-positive rate, z-scores, coverage,
power) is measured over thousands of seeded cohorts, which image simulation cannot afford.
Each participant's regional R2* (1/s) is::

    (healthy(age) + biological offset + MS effect) * site bias + measurement noise * site noise

with the healthy ageing curves of :mod:`.tissue` (NAWM: cerebral white matter). Site bias is
multiplicative (scanner R2* differences scale with R2*), a site may be noisier, patients may
be older than controls and concentrated at some sites, and a phenotype may be more variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..regions.catalog import MEASURED_ROWS
from .tissue import BIOLOGICAL_SD, TISSUES, tissue_of

__all__ = ["TableSite", "simulate_table_cohort"]

#: The measured rows of ``regions.tsv`` (deep grey matter, then NAWM), from the catalogue.
REGIONS = tuple(row.name for row in MEASURED_ROWS)
# regions.tsv row -> tissue of :data:`.tissue.TISSUES` it is drawn from (NAWM: cerebral_wm).
_TISSUE = {row.name: tissue_of(row.source) for row in MEASURED_ROWS}


@dataclass(frozen=True)
class TableSite:
    """A site: its multiplicative R2* bias, noise factor and participants per group label."""

    name: str
    bias: float = 1.0
    noise: float = 1.0
    n: dict[str, int] = field(default_factory=dict)  # label (HC, RRMS, ...) -> count


def simulate_table_cohort(
    sites: list[TableSite],
    *,
    seed: int,
    effects: dict[str, dict[str, float]] | None = None,
    bio_sd: float = BIOLOGICAL_SD,
    noise_sd: float = 0.4,
    extra_sd: dict[str, float] | None = None,
    age: dict[str, tuple[float, float]] | None = None,
    regions: tuple[str, ...] = REGIONS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw one cohort.

    Parameters
    ----------
    sites : list of TableSite
    seed : int
    effects : dict, optional
        Label -> {region: additive R2* change (1/s)}; default none (a null cohort).
    bio_sd : float
        Between-subject SD as a fraction of the healthy value at age 45.
    noise_sd : float
        Measurement noise SD (1/s) at a site with ``noise = 1``.
    extra_sd : dict, optional
        Label -> extra between-subject SD factor (e.g. ``{"PPMS": 2.0}``).
    age : dict, optional
        Label -> (mean, SD) of age in years; default HC (40, 12), patients (42, 10).

    Returns
    -------
    long : pandas.DataFrame
        ``participant_id, region, hemisphere ("both"), r2star_median, n_voxels, truth`` where
        ``truth`` is the participant's site-free, noise-free R2* (1/s).
    participants : pandas.DataFrame
        ``participants.tsv`` columns.
    """
    rng = np.random.default_rng(seed)
    effects = effects or {}
    extra_sd = extra_sd or {}
    age = {"HC": (40.0, 12.0), **(age or {})}
    people, rows = [], []
    count = 0
    for site in sites:
        for label, n in site.n.items():
            mean, sd = age.get(label, (42.0, 10.0))
            ages = np.clip(rng.normal(mean, sd, n), 18.0, 80.0).round(1)
            for a in ages:
                count += 1
                pid = f"sub-{count:04d}"
                ms = label != "HC"
                dd = float(min(rng.gamma(4.0, 2.5), a - 16.0)) if ms else np.nan
                people.append(
                    {
                        "participant_id": pid,
                        "age": a,
                        "sex": "F" if rng.random() < (0.68 if ms else 0.55) else "M",
                        "group": "MS" if ms else "HC",
                        "phenotype": label if ms else np.nan,
                        "disease_duration": round(dd, 1) if ms else np.nan,
                        "edss": float(np.clip(np.round(rng.normal(3, 1.5) * 2) / 2, 0, 9.5))
                        if ms
                        else np.nan,
                        "site": site.name,
                    }
                )
                for region in regions:
                    model = TISSUES[_TISSUE[region]].age
                    sd_bio = bio_sd * float(model(45.0)) * extra_sd.get(label, 1.0)
                    truth = (
                        float(model(a))
                        + rng.normal(0.0, sd_bio)
                        + effects.get(label, {}).get(region, 0.0)
                    )
                    observed = truth * site.bias + rng.normal(0.0, noise_sd * site.noise)
                    rows.append((pid, region, "both", observed, 200, truth))
    long = pd.DataFrame(
        rows,
        columns=["participant_id", "region", "hemisphere", "r2star_median", "n_voxels", "truth"],
    )
    return long, pd.DataFrame(people)
