"""``ironmap run BIDS_DIR OUTPUT_DIR group``: the cohort statistics and the report.

Reads ``participants.tsv`` and the participant-stage tables, and writes ``OUTPUT_DIR/group/``:
``regions.tsv`` (with age/site-corrected R2* and z-scores), ``subjects.tsv``,
``age_model.tsv``, ``group_comparison.tsv``, ``determinants.tsv``, and
``OUTPUT_DIR/report.html``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort import (
    age_correct,
    collect_regions,
    compare_groups,
    determinants,
    fit_normative,
    read_participants,
    subjects_table,
)
from ..errors import InputError, IronmapWarning
from ..io import atomic_write_bytes
from ..regions import DEEP_GM

__all__ = ["GroupConfig", "GroupResult", "run_group"]

log = logging.getLogger("ironmap")

CORRECTED_REGIONS = (*DEEP_GM, "nawm")


@dataclass(frozen=True)
class GroupConfig:
    """Options of the group stage."""

    bids_dir: Path
    output_dir: Path
    report: bool = True


@dataclass
class GroupResult:
    """The group tables (pandas DataFrames) and where they were written."""

    regions: pd.DataFrame
    subjects: pd.DataFrame
    age_model: pd.DataFrame
    comparison: pd.DataFrame
    determinants: pd.DataFrame
    report: Path | None


def _write(path: Path, table: pd.DataFrame) -> None:
    atomic_write_bytes(path, table.to_csv(sep="\t", index=False, na_rep="n/a").encode())


def _age_models(long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit the control models; return (age_model table, corrected values per row)."""
    hc_all = long[(long.group == "HC") & (long.region.isin(CORRECTED_REGIONS))]
    reference_age = float(np.round(hc_all.drop_duplicates("participant_id").age.median()))
    site_counts = hc_all.drop_duplicates("participant_id").site.value_counts()
    reference_site = str(site_counts.index[0])
    rows, corrected = [], []
    no_controls: set[str] = set()
    for region in CORRECTED_REGIONS:
        part = long[long.region == region].rename(columns={"r2star_median": "y"})
        hc = part[part.group == "HC"]
        if hc.y.notna().sum() < 8:
            log.warning("%s: fewer than 8 controls with R2*; no age model", region)
            continue
        model = fit_normative(hc[["y", "age", "site"]], region=region)
        values, z = age_correct(
            part,
            model,
            reference_age=reference_age,
            reference_site=reference_site,
            region=region,
            warn=False,
        )
        no_controls |= set(part["site"].dropna()) - set(model.site_effects)
        corrected.append(
            pd.DataFrame({"index": part.index, "r2star_corrected": values, "r2star_z": z})
        )
        row = {
            "region": region,
            "model": model.kind,
            "n_hc": model.n_hc,
            "residual_sd": model.residual_sd,
            "reference_age": reference_age,
            "reference_site": reference_site,
            **{f"cv_rmse_{k}": v for k, v in model.cv_rmse.items()},
            **{f"param_{k}": v for k, v in model.params.items()},
            "param_rate": model.rate if model.rate is not None else np.nan,
            **{f"site_{k}": v for k, v in model.site_effects.items()},
        }
        rows.append(row)
    if no_controls:
        warnings.warn(
            f"site(s) {', '.join(sorted(no_controls))} have no controls; their R2* is corrected "
            "for age with the pooled site term",
            IronmapWarning,
            stacklevel=3,
        )
    corr = pd.concat(corrected).set_index("index") if corrected else pd.DataFrame()
    return pd.DataFrame(rows), corr


def run_group(config: GroupConfig) -> GroupResult:
    """Run the group stage."""
    out = Path(config.output_dir)
    participants = read_participants(Path(config.bids_dir) / "participants.tsv")
    regions = collect_regions(out)
    unknown = sorted(set(regions.participant_id) - set(participants.participant_id))
    if unknown:
        raise InputError(
            f"{Path(config.bids_dir) / 'participants.tsv'}: no row for {', '.join(unknown[:3])}"
            + (" ..." if len(unknown) > 3 else "")
            + "; every processed participant needs one"
        )
    subjects = subjects_table(participants, out)
    both = regions[regions.hemisphere == "both"]
    long = both.merge(subjects, on="participant_id", how="left")
    age_model, corrected = _age_models(long)
    regions = regions.copy()
    regions["r2star_corrected"] = np.nan
    regions["r2star_z"] = np.nan
    if len(corrected):
        idx = both.index[corrected.index]
        regions.loc[idx, "r2star_corrected"] = corrected["r2star_corrected"].to_numpy()
        regions.loc[idx, "r2star_z"] = corrected["r2star_z"].to_numpy()
    long = regions[regions.hemisphere == "both"].merge(subjects, on="participant_id", how="left")
    comparison = compare_groups(long[long.region.isin(CORRECTED_REGIONS)])
    ms = long[long.group == "MS"].copy()
    ms["y"] = np.where(ms.region == "lesions", ms.r2star_median, ms.r2star_corrected)
    table = determinants(ms[ms.region.isin((*CORRECTED_REGIONS, "lesions"))])
    group_dir = out / "group"
    _write(group_dir / "regions.tsv", regions)
    _write(group_dir / "subjects.tsv", subjects)
    _write(group_dir / "age_model.tsv", age_model)
    _write(group_dir / "group_comparison.tsv", comparison)
    _write(group_dir / "determinants.tsv", table)
    report = None
    if config.report:
        from ..report.html import write_report

        report = write_report(
            out / "report.html",
            regions=regions,
            subjects=subjects,
            age_model=age_model,
            comparison=comparison,
            determinants=table,
        )
    return GroupResult(regions, subjects, age_model, comparison, table, report)
