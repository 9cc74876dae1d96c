"""``ironmap demo``: the whole study on the embedded synthetic cohort.

Stages that exist run; the rest are named. Re-running resumes: a cohort whose truth file exists
is reused, and participants and the group stage whose outputs match their provenance are
skipped, unless ``force`` (or a regenerated cohort) makes every stage recompute.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from ..io.derivatives import GROUP_DIR, ParticipantOutputs, read_tsv
from .group import GroupConfig, run_group
from .participant import ParticipantConfig, run_participant, summary
from .simulate import QUICK_COHORT, SimulateConfig, run_simulate, truth_path

__all__ = ["run_demo"]

log = logging.getLogger("ironmap")


def _recovery(truth: dict, derivatives: Path) -> pd.DataFrame:
    """Median over participants of |measured / true - 1| of regional median R2*, in %."""
    rows = []
    scans = [
        (sub, session.removeprefix("ses-") if session else None, t)
        for sub, subject in truth["subjects"].items()
        for session, t in (subject.get("sessions") or {None: subject}).items()
    ]
    for sub, session, t in scans:
        path = ParticipantOutputs(derivatives, sub.removeprefix("sub-"), session).regions
        if not path.exists():
            continue
        table = read_tsv(path)
        for row in table[table.hemisphere == "both"].itertuples():
            true = t["regions"].get(row.region, {}).get("both", {}).get("r2star_mean")
            if true:
                bias = t["site_r2star_bias"] * t.get("scan_r2star_factor", 1.0)
                error = 100 * abs(row.r2star_median / (true * bias) - 1)
                rows.append((row.region, error))
    errors = pd.DataFrame(rows, columns=["region", "error_percent"])
    return errors.groupby("region")["error_percent"].agg(["median", "max"]).round(2)


def run_demo(
    output_dir: Path,
    *,
    quick: bool = False,
    n_jobs: int = 2,
    force: bool = False,
    anatomy: str = "phantom",
    sessions: int = 1,
    interval_years: float = 2.0,
    with_phase: bool = True,
) -> int:
    """Simulate the cohort into ``OUTPUT_DIR/bids`` and run the existing stages.

    ``anatomy`` is :data:`~.simulate.ANATOMIES`: the ellipsoid phantom (default, fast) or the
    deformed bundled atlas (heads that look like brains; needs ``ironmap[atlas]``).
    ``sessions`` > 1 follows every participant over that many sessions, ``interval_years``
    apart on average (:class:`~.simulate.SimulateConfig`); the group stage then adds the
    longitudinal analysis. ``with_phase`` (default) simulates phase echoes too, so the
    participant stage corrects R2* for field gradients and writes susceptibility maps and
    regional chi, and the group stage analyses chi beside R2*. Returns the number of
    participants (sessions) that failed.
    """
    output_dir = Path(output_dir)
    bids = output_dir / "bids"
    derivatives = output_dir / "ironmap"
    n_hc, n_ms = QUICK_COHORT if quick else (81, 97)
    truth_file = truth_path(bids)
    reuse = False
    if truth_file.exists() and not force:
        truth = json.loads(truth_file.read_text())
        design = truth.get("longitudinal") or {"sessions": 1, "interval_years": interval_years}
        reuse = (
            truth.get("n_hc"),
            truth.get("n_ms"),
            truth.get("anatomy_kind", "phantom"),
            design["sessions"],
            design["interval_years"] if sessions > 1 else interval_years,
            truth.get("phase") is not None,
        ) == (n_hc, n_ms, anatomy, sessions, interval_years, with_phase)
    if reuse:
        print(f"[1/3] reusing the simulated cohort in {bids} (--force to regenerate)")
    else:
        scans = f", {sessions} sessions each" if sessions > 1 else ""
        print(f"[1/3] simulating {n_hc} HC + {n_ms} MS at 7 sites{scans} into {bids} ...")
        run_simulate(
            SimulateConfig(
                bids,
                n_hc=n_hc,
                n_ms=n_ms,
                n_jobs=n_jobs,
                force=True,
                anatomy=anatomy,
                sessions=sessions,
                interval_years=interval_years,
                with_phase=with_phase,
            )
        )
    print(f"[2/3] participant stage (R2* maps, regional R2*, volumes) into {derivatives} ...")
    redo = force or not reuse  # a regenerated cohort replaces every output made from the old
    results = run_participant(ParticipantConfig(bids, derivatives, n_jobs=n_jobs, force=redo))
    print(f"      {summary(results)}")
    for result in results:
        if result.status == "failed":
            print(f"      {result.name} failed: {result.error}")
    truth = json.loads(truth_file.read_text())
    print("regional median R2* vs ground truth, |error| in % over participants:")
    print(_recovery(truth, derivatives).to_string())
    print("[3/3] group stage (age/site correction, comparisons, determinants, report) ...")
    group = run_group(GroupConfig(bids, derivatives, force=redo))
    if group.skipped:
        print("      group outputs are up to date (same inputs and options): kept")
    ms_hc = group.comparison[group.comparison.contrast == "MS-HC"].set_index("region")
    print("MS - HC, age/sex/site-adjusted R2* difference (1/s):")
    print(ms_hc[["estimate", "ci_low", "ci_high", "p_fdr"]].round(3).to_string())
    if not group.comparison_chi.empty:
        chi = group.comparison_chi[group.comparison_chi.contrast == "MS-HC"].set_index("region")
        ppb = chi[["estimate", "ci_low", "ci_high"]].astype(float) * 1000.0
        print("MS - HC, age/sex/site-adjusted susceptibility difference (ppb):")
        print(ppb.assign(p_fdr=chi["p_fdr"]).round(3).to_string())
    change = group.longitudinal
    if len(change):
        rows = change[
            change["arm"].isin(["HC", "MS", "MS-HC"]) & (change["term"] != "edss_change")
        ]
        print("yearly change of harmonised R2* (1/s per year; MS-HC at equal age):")
        table = rows.pivot(index="region", columns="arm", values="estimate")
        table = table.reindex(index=rows["region"].unique())
        print(table.reindex(columns=["HC", "MS", "MS-HC"]).round(3).to_string())
    print(f"group tables: {derivatives / GROUP_DIR}; ground truth: {truth_file}")
    print(f"report: {group.report}")
    return sum(r.status == "failed" for r in results)
