"""Lesions one by one: per-lesion volume, rim detection and pooling, against simulated truth.

A seeded cohort of MS patients (``ironmap simulate --n-hc 0 --n-ms N --phase``: the demo's sites,
SNR and lesion load; a share of the larger lesions has a paramagnetic rim: a susceptibility shell
of +0.03 to +0.09 ppm, 0.5-1.5 mm thick, covering 65-100 % of the edge, R2* 1.6x where it fills
half a voxel, its field the dipole field on the 1 mm grid, ``ironmap.simulate.lesions`` and
``ironmap.simulate.susceptibility``) goes through the participant stage.
Each row of ``sub-*_lesions.tsv`` is matched to the nearest true lesion (centroids within
4 mm, one to one). Printed:

- per-lesion volume error (%) by size (R2* voxels), acceptance: within 10 % for >= 10 voxels;
- how well the rim-core contrast separates rim lesions from the others (ROC AUC over matched
  lesions with a core), from R2* and from the local field; acceptance: AUC >= 0.9;
- whether the rows add up to the pooled ``lesions`` row of ``regions.tsv`` (voxels and mean);
- how often ``location`` (periventricular within 3 mm of the lateral ventricles on the R2* grid,
  else deep_white_matter) agrees with the truth of the simulator's 1 mm labels and lesion mask:
  a lesion is truly periventricular when one of its 1 mm voxels touches (26-neighbour) a
  lateral-ventricle voxel (labels 4, 43). A 2 x 2 table, sensitivity and specificity, and the
  lesions where they disagree with their true distance (1 mm voxel centres, as
  ``ventricle_distance_mm``).
- the lesion model (``ironmap.cohort.lesions.lesion_models``: MixedLM, lesions nested in
  participants, age, sex and site as covariates) on every listed lesion, against the planted
  truth (``ironmap.simulate.tissue.lesion_r2star_factor``: lesion R2* = (0.88 - 0.008 x
  disease duration) x the white matter's, so 100 (lesion / NAWM - 1) has intercept -12 % at
  duration 0, slope -0.8 % per year and no volume effect), with the outcome from the lesion's
  core (ironmap's) and, for comparison, from the whole lesion, rim voxels included.

``--prl`` instead: PRL detection in memory (:func:`prl_benchmark`): each patient simulated with
phase, a FLAIR-like mask (each lesion kept, or dilated or eroded by 1 mm: a quarter each), R2*
(``DecayModel``), the field map and QSM (``QSMModel``), then ``lesion_table`` with the chi map;
rim vs non-rim ROC AUC on lesions >= 0.1 mL of today's R2* and local-field rim-core contrasts
and of ``prl_score`` from the QSM and from the true chi averaged to the acquisition grid, with
the share scored, the sensitivity at 90 % specificity, AUC per mask kind, and the
``prl_candidate`` sensitivity and specificity.

``--table-reps N`` instead: the lesion model's calibration over N seeded table-level cohorts
(no images; :func:`table_cohort`: 30 patients at 3 sites, Poisson(8) + 1 lesions each, the
planted model on the core outcome, a participant SD of 1 % against a lesion SD of 4 % so that
some fits end at the boundary): coverage of the planted intercept and duration slope, and the
false-positive rate of the volume slope (none planted), with how many fits were refitted by
clustered least squares or had no usable fit.

Run: ``python benchmarks/lesions.py [--n-ms 12] [--seed 7]`` (about 10 s per patient),
``python benchmarks/lesions.py --prl --n-ms 22 --seed 11`` (about 5 s per patient), or
``python benchmarks/lesions.py --table-reps 200``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage, stats

from ironmap.cli import main as ironmap
from ironmap.regions.catalog import by_name
from ironmap.simulate.bids import SEGMENTATION_DIR

_CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-neighbourhood


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties counted half."""
    ranks = stats.rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def true_locations(bids: Path, pid: str, truth: list[dict]) -> None:
    """Add ``periventricular`` and ``ventricle_mm`` to each true lesion of ``truth`` (in place),
    from the simulator's 1 mm labels and lesion mask.

    A lesion (26-connected component of the mask, as ``lesion_truth`` numbers them) is
    periventricular when one of its voxels touches a lateral-ventricle voxel (26-neighbour);
    ``ventricle_mm`` is the smallest distance between the centres of its voxels and of a
    ventricle voxel. Components are paired with the records by centroid (the same voxels: 0 mm).
    """
    seg = bids / SEGMENTATION_DIR / pid / "anat"
    dseg = nib.load(seg / f"{pid}_dseg.nii.gz")
    mask = np.asarray(nib.load(seg / f"{pid}_label-lesion_mask.nii.gz").dataobj) != 0
    ventricle = np.isin(np.asarray(dseg.dataobj), by_name("lateral_ventricle").codes)
    labels, n = ndimage.label(mask, structure=_CUBE)
    if not n or not truth:
        return
    index = np.arange(1, n + 1)
    near = ndimage.binary_dilation(ventricle, structure=_CUBE)
    touching = np.asarray(ndimage.maximum(near, labels, index)) > 0
    if ventricle.any():
        edt = ndimage.distance_transform_edt(~ventricle, sampling=dseg.header.get_zooms()[:3])
        distance = np.asarray(ndimage.minimum(edt, labels, index), dtype=float)
    else:
        distance = np.full(n, np.nan)
    ijk = np.asarray(ndimage.center_of_mass(mask, labels, index)).reshape(-1, 3)
    centres = ijk @ dseg.affine[:3, :3].T + dseg.affine[:3, 3]
    for record in truth:
        gap = np.linalg.norm(centres - np.asarray(record["centroid_mm"]), axis=1)
        k = int(gap.argmin())
        assert gap[k] < 0.01, f"{pid}: no mask component at {record['centroid_mm']}"
        record["periventricular"] = bool(touching[k])
        record["ventricle_mm"] = float(distance[k])


def match(table: pd.DataFrame, truth: list[dict], *, max_mm: float = 4.0) -> pd.DataFrame:
    """Each estimated lesion with its nearest true lesion (greedy, one to one, <= max_mm)."""
    est = table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    true = np.array([t["centroid_mm"] for t in truth], dtype=float).reshape(-1, 3)
    if not len(est) or not len(true):
        return table.iloc[:0].assign(
            true_volume_ml=[], rim=[], true_periventricular=[], true_ventricle_mm=[]
        )
    dist = np.linalg.norm(est[:, None, :] - true[None, :, :], axis=2)
    pairs, used_e, used_t = [], set(), set()
    for e, t in zip(*np.unravel_index(np.argsort(dist, axis=None), dist.shape), strict=True):
        if dist[e, t] > max_mm:
            break
        if e in used_e or t in used_t:
            continue
        used_e.add(e)
        used_t.add(t)
        pairs.append((e, t))
    rows = table.iloc[[e for e, _ in pairs]].copy()
    rows["true_volume_ml"] = [truth[t]["volume_ml"] for _, t in pairs]
    rows["rim"] = [truth[t]["rim"] for _, t in pairs]
    rows["true_periventricular"] = [truth[t].get("periventricular") for _, t in pairs]
    rows["true_ventricle_mm"] = [truth[t].get("ventricle_mm", np.nan) for _, t in pairs]
    return rows


def print_locations(lesions: pd.DataFrame) -> None:
    """The 2 x 2 table of true vs measured location, sensitivity, specificity, disagreements."""
    true = lesions.true_periventricular.astype(bool)
    measured = lesions.location
    n_na = int(measured.isna().sum())
    print(
        "\nLocation vs truth (matched lesions; truly periventricular: a 1 mm lesion voxel touches"
        " a lateral-ventricle voxel)"
    )
    print(f"{'':<24}{'measured peri':>15}{'measured deep':>15}{'n/a':>6}")
    cells = {}
    for label, truly in (("true periventricular", True), ("true deep white matter", False)):
        part = measured[true == truly]
        cells[truly] = (
            int((part == "periventricular").sum()),
            int((part == "deep_white_matter").sum()),
        )
        print(f"{label:<24}{cells[truly][0]:>15}{cells[truly][1]:>15}{int(part.isna().sum()):>6}")
    tp, fn = cells[True]
    fp, tn = cells[False]
    sens = 100 * tp / (tp + fn) if tp + fn else float("nan")
    spec = 100 * tn / (tn + fp) if tn + fp else float("nan")
    print(
        f"sensitivity {sens:.0f} % ({tp}/{tp + fn}), specificity {spec:.0f} % ({tn}/{tn + fp})"
        + (f"; {n_na} without a location" if n_na else "")
    )
    wrong = lesions[
        ((measured == "periventricular") & ~true) | ((measured == "deep_white_matter") & true)
    ].sort_values("true_ventricle_mm")
    if wrong.empty:
        print("no disagreement")
        return
    print(f"{len(wrong)} disagreements:")
    print(
        f"  {'lesion':<16}{'true':>6}{'measured':>18}{'true mm':>9}{'measured mm':>13}"
        f"{'voxels':>8}"
    )
    for row in wrong.itertuples(index=False):
        name = f"{row.participant_id} #{row.lesion_id}"
        truly = "peri" if row.true_periventricular else "deep"
        print(
            f"  {name:<16}{truly:>6}{row.location:>18}{row.true_ventricle_mm:>9.2f}"
            f"{row.ventricle_distance_mm:>13.1f}{row.n_voxels:>8}"
        )


def table_cohort(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lesion rows of 30 patients at 3 sites with the planted model on the core (% of NAWM):
    ``-12 - 0.8 duration + participant (SD 1) + lesion (SD 4)``, no volume, age, sex or site
    effect; volumes log-normal (median 0.15 mL), durations and ages as the demo's."""
    rng = np.random.default_rng(seed)
    people, rows = [], []
    for i in range(30):
        duration = float(rng.gamma(4.0, 2.5))
        pid = f"sub-{i:03d}"
        people.append(
            {
                "participant_id": pid,
                "disease_duration": duration,
                "age": 25 + duration + float(rng.normal(10, 6)),
                "sex": "F" if rng.random() < 0.68 else "M",
                "site": f"s{i % 3}",
            }
        )
        u = rng.normal(0, 1.0)
        for _ in range(int(rng.poisson(8)) + 1):
            pct = -12 - 0.8 * duration + u + rng.normal(0, 4.0)
            rows.append(
                {
                    "participant_id": pid,
                    "volume_ml": float(np.exp(rng.normal(np.log(0.15), 1.0))),
                    "r2star_nawm_median": 25.0,
                    "r2star_core_median": 25.0 * (1 + pct / 100),
                    "r2star_median": 25.0 * (1 + pct / 100),
                    "r2star_rim_core_diff": rng.normal(0, 2),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(people)


def table_calibration(reps: int) -> None:
    """Coverage and false-positive rate of the lesion model over seeded table-level cohorts."""
    from ironmap.cohort.lesions import lesion_models

    start = time.perf_counter()
    out = []
    for seed in range(reps):
        lesions, people = table_cohort(10_000 + seed)
        table = lesion_models(lesions, people)
        pct = table[table.outcome == "lesion_r2star_pct"].set_index("term")
        row = {"ols": "OLS" in pct.model.iloc[0], "unusable": pct.estimate.isna().all()}
        for term, truth in PLANTED.items():
            r = pct.loc[term]
            row[f"{term} covered"] = r.ci_low <= truth <= r.ci_high
            row[f"{term} p<0.05"] = r.p < 0.05
        row["optimizer"] = pct.optimizer.iloc[0]
        out.append(row)
    runs = pd.DataFrame(out)
    print(
        f"Lesion model calibration: {reps} seeded table-level cohorts (30 patients, 3 sites, "
        f"planted -12 % - 0.8 %/year, no volume effect; {time.perf_counter() - start:.0f} s)"
    )
    for term in PLANTED:
        print(
            f"  {term:<18} coverage {runs[f'{term} covered'].mean():.3f}   "
            f"p < 0.05 in {runs[f'{term} p<0.05'].mean():.3f}"
        )
    print(
        f"  boundary refits (clustered OLS) {runs.ols.mean():.3f}; no usable fit "
        f"{runs.unusable.mean():.3f}; optimizers kept: "
        + ", ".join(f"{k} {v}" for k, v in runs.optimizer.value_counts().items())
    )


#: FLAIR-like masks: each true lesion's mask is kept, dilated or eroded by 1 mm (a quarter each
#: dilated and eroded, the rest unchanged).
MASK_KINDS = ("true", "true", "dilated", "eroded")


def _down(x: np.ndarray, f: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """Mean of each ``f`` block of a 1 mm map: the acquisition grid's voxels."""
    x = np.asarray(x, dtype=np.float64)[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    return x.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).mean(axis=(1, 3, 5))


def flair_like_mask(
    lesions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """The lesion mask as a FLAIR segmentation draws it, and the truth of each true lesion.

    Each 26-connected lesion is kept, dilated or eroded by one 1 mm voxel (6-connected), drawn
    from :data:`MASK_KINDS`. Returns the mask and per true lesion its label, centroid (voxel
    indices) and mask kind.
    """
    labels, n = ndimage.label(lesions, structure=_CUBE)
    kinds = rng.choice(MASK_KINDS, size=n)
    mask = np.zeros(lesions.shape, dtype=bool)
    cross = ndimage.generate_binary_structure(3, 1)
    records = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        pad = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in box)
        lesion = labels[pad] == index
        kind = str(kinds[index - 1])
        if kind == "dilated":
            lesion = ndimage.binary_dilation(lesion, structure=cross)
        elif kind == "eroded":
            lesion = ndimage.binary_erosion(lesion, structure=cross)
        mask[pad] |= lesion
        ijk = np.argwhere(labels[pad] == index).mean(axis=0) + [s.start for s in pad]
        records.append({"label": index, "ijk": ijk, "kind": kind})
    return mask, records


def prl_subject(subject, rng: np.random.Generator) -> pd.DataFrame:
    """One simulated patient through R2*, field map, QSM and the lesion table; matched rows.

    The chi columns twice: from ``QSMModel`` on the simulated magnitude and phase (``prl_*``),
    and from the true chi averaged to the acquisition grid (``truth_prl_score``: what the
    definitions give without reconstruction errors).
    """
    import warnings

    from ironmap.errors import IronmapWarning
    from ironmap.fitting import DecayModel
    from ironmap.fitting.gradients import field_map
    from ironmap.regions.lesions import lesion_components, lesion_table
    from ironmap.simulate import generate_subject
    from ironmap.susceptibility import QSMModel

    data = generate_subject(subject, with_phase=True)
    anatomy, protocol = data.anatomy, subject.site.protocol
    f, shape = protocol.voxel_mm, data.magnitude.shape[:3]
    te = np.asarray(protocol.echo_times_s)
    voxel_mm = tuple(float(v) for v in f)
    mask, records = flair_like_mask(anatomy.lesions, rng)
    fraction = _down(mask, f, shape)
    brain = _down(anatomy.labels > 0, f, shape) >= 0.5
    wm = _down(np.isin(anatomy.labels, by_name("cerebral_wm").codes), f, shape) >= 0.5
    components = lesion_components(mask, anatomy.affine, shape, data.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        r2 = DecayModel(te).fit(data.magnitude, mask=brain).r2star
    field = field_map(data.magnitude, data.phase, te)
    qsm = QSMModel(te, voxel_mm, field_strength_t=3.0).fit(data.magnitude, data.phase, mask=brain)
    common = dict(
        participant_id=subject.participant_id,
        min_fraction=0.9,
        components=components,
        tissue=wm,
    )
    table = lesion_table(fraction, r2, data.affine, field_hz=field, chi_ppm=qsm.chi_ppm, **common)
    true_chi = np.where(brain, _down(data.susceptibility.chi_ppm, f, shape), np.nan)
    ideal = lesion_table(fraction, r2, data.affine, chi_ppm=true_chi, **common)
    table["truth_prl_score"] = ideal["prl_score"].to_numpy()
    # the true lesions: rim, veins, mask kind, volume
    shells = data.rim_shells.records
    voxels = np.bincount(ndimage.label(anatomy.lesions, structure=_CUBE)[0].ravel())
    truth = []
    for record in records:
        label = record["label"]
        centre = anatomy.affine[:3, :3] @ record["ijk"] + anatomy.affine[:3, 3]
        truth.append(
            {
                "centroid_mm": centre,
                "volume_ml": float(voxels[label]) / 1000.0,
                "rim": bool(shells[label - 1]["rim"]),
                "central_vein": bool(data.susceptibility.central_vein[label - 1]),
                "vein_beside": bool(data.susceptibility.vein_beside[label - 1]),
                "kind": record["kind"],
            }
        )
    rows = match(table, truth)
    est = rows[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    centres = np.array([t["centroid_mm"] for t in truth]).reshape(-1, 3)
    picked = [truth[int(np.argmin(np.linalg.norm(centres - e, axis=1)))] for e in est]
    for key in ("central_vein", "vein_beside", "kind"):
        rows[key] = [t[key] for t in picked]
    missing = [t for t in truth if t["volume_ml"] >= 0.1 and not any(t is p for p in picked)]
    rows.attrs["unmatched_large"] = len(missing)
    return rows


def sensitivity_at_specificity(scores, positive, specificity: float = 0.9) -> float:
    """Share of positives above the ``specificity`` quantile of the negatives' scores."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    threshold = np.quantile(scores[~positive], specificity)
    return float(np.mean(scores[positive] > threshold))


def prl_benchmark(n_ms: int, seed: int) -> None:
    """PRL detection on simulated patients with FLAIR-like masks (``--prl``)."""
    from ironmap.regions.lesions import PRL_SCORE_PPM
    from ironmap.simulate import draw_cohort

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    parts, unmatched = [], 0
    for subject in draw_cohort(n_hc=0, n_ms=n_ms, seed=seed):
        rows = prl_subject(subject, rng)
        unmatched += rows.attrs.get("unmatched_large", 0)
        parts.append(rows)
    lesions = pd.concat(parts, ignore_index=True)
    large = lesions[lesions.true_volume_ml >= 0.1].copy()
    rim = large.rim.to_numpy(bool)
    seconds = time.perf_counter() - start
    print(
        f"PRL detection: {n_ms} simulated MS patients (seed {seed}; susceptibility physics of "
        f"ironmap.simulate.susceptibility; FLAIR-like masks: a quarter dilated, a quarter eroded "
        f"by 1 mm; {seconds:.0f} s)"
    )
    print(
        f"lesions >= 0.1 mL (true volume): {len(large)} matched ({unmatched} unmatched), "
        f"{rim.sum()} with a rim; {int(large.central_vein.sum())} with a central vein, "
        f"{int(large.vein_beside.sum())} with a vein beside; "
        + ", ".join(
            f"{k} mask {int((large.kind == k).sum())}" for k in ("true", "dilated", "eroded")
        )
    )
    print(
        f"{'score':<40}{'scored':>8}{'AUC':>7}{'sens@90%spec':>14}"
        f"{'AUC true':>10}{'dilated':>9}{'eroded':>8}"
    )
    for column, label in (
        ("r2star_rim_core_diff", "R2* rim - core (1/s), today"),
        ("field_rim_core_diff_hz", "local field rim - core (Hz), today"),
        ("prl_score", "prl_score (QSM chi, ppm)"),
        ("truth_prl_score", "prl_score (true chi at 2-3 mm, ppm)"),
    ):
        values = large[column].to_numpy(float)
        ok = np.isfinite(values)
        by_kind = []
        for kind in ("true", "dilated", "eroded"):
            sel = ok & (large.kind == kind).to_numpy()
            by_kind.append(auc(values[sel], rim[sel]))
        print(
            f"{label:<40}{100 * ok.mean():>7.0f}%{auc(values[ok], rim[ok]):>7.3f}"
            f"{sensitivity_at_specificity(values[ok], rim[ok]):>14.2f}"
            + "".join(f"{a:>{w}.3f}" for a, w in zip(by_kind, (10, 9, 8), strict=True))
        )
    flag = large.prl_candidate.astype(bool).to_numpy()
    print(
        f"prl_candidate (prl_score >= {PRL_SCORE_PPM} ppm): sensitivity "
        f"{flag[rim].mean():.2f} ({flag[rim].sum()}/{rim.sum()}), specificity "
        f"{(~flag[~rim]).mean():.2f} ({(~flag[~rim]).sum()}/{(~rim).sum()}); false positives "
        f"with a central vein {int((flag & ~rim & large.central_vein.to_numpy(bool)).sum())}, "
        f"with a vein beside {int((flag & ~rim & large.vein_beside.to_numpy(bool)).sum())}"
    )
    print(
        f"n_core 0 among lesions >= 0.1 mL: {100 * (large.n_core == 0).mean():.0f} % "
        "(no R2* rim-core contrast; prl_score needs no core)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--table-reps", type=int, default=0, help="table-level calibration")
    parser.add_argument(
        "--prl", action="store_true", help="PRL detection with FLAIR-like masks (in memory)"
    )
    args = parser.parse_args(argv)
    if args.prl:
        prl_benchmark(args.n_ms, args.seed)
        return
    if args.table_reps:
        table_calibration(args.table_reps)
        return
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bids, out = Path(tmp) / "bids", Path(tmp) / "out"
        common = ["-q", "--n-jobs", str(args.n_jobs)]
        simulate = ["simulate", str(bids), "--n-hc", "0", "--n-ms", str(args.n_ms)]
        assert ironmap([*simulate, "--seed", str(args.seed), "--phase", *common]) == 0
        assert ironmap(["run", str(bids), str(out), "participant", *common]) == 0
        truth = json.loads((Path(tmp) / "bids_truth.json").read_text())["subjects"]
        matched, pooled_checks, n_true, n_est, every = [], [], 0, 0, []
        participants = pd.read_csv(bids / "participants.tsv", sep="\t", na_values="n/a")
        for pid, record in truth.items():
            anat = out / pid / "anat"
            table = pd.read_csv(anat / f"{pid}_lesions.tsv", sep="\t")
            regions = pd.read_csv(anat / f"{pid}_regions.tsv", sep="\t")
            n_true += len(record["lesions"])
            n_est += len(table)
            every.append(table)
            true_locations(bids, pid, record["lesions"])
            matched.append(match(table, record["lesions"]))
            row = regions[regions.region == "lesions"].iloc[0]
            w = table.n_voxels.where(table.r2star_mean.notna(), 0)
            mean = (table.r2star_mean.fillna(0) * w).sum() / w.sum() if w.sum() else np.nan
            pooled_checks.append((table.n_voxels.sum() == row.n_voxels, mean, row.r2star_mean))
    lesions = pd.concat(matched, ignore_index=True)
    every = pd.concat(every, ignore_index=True)
    lesions["volume_error_pct"] = 100 * (lesions.volume_ml / lesions.true_volume_ml - 1)
    print(
        f"{args.n_ms} MS patients (seed {args.seed}): {n_true} true lesions, {n_est} listed, "
        f"{len(lesions)} matched within 4 mm ({time.perf_counter() - start:.0f} s)\n"
    )
    print("Per-lesion volume error (%), by size in R2* voxels")
    print(f"{'size':<12}{'lesions':>8}{'median':>9}{'max |err|':>11}{'within 10 %':>13}")
    bins = [(1, 10), (10, 30), (30, 100), (100, 10**9)]
    for lo, hi in bins:
        part = lesions[(lesions.n_voxels >= lo) & (lesions.n_voxels < hi)].volume_error_pct
        if part.empty:
            continue
        label = f"{lo}-{hi - 1}" if hi < 10**9 else f">= {lo}"
        within = 100 * (part.abs() <= 10).mean()
        print(
            f"{label:<12}{len(part):>8}{part.median():>+9.1f}{part.abs().max():>11.1f}"
            f"{within:>12.0f}%"
        )
    cored = lesions[lesions.n_core > 0]
    rim = cored.rim.to_numpy(bool)
    print(
        f"\nRim lesions vs the others (matched lesions with a core: {rim.sum()} rim, "
        f"{(~rim).sum()} without)"
    )
    for column, label in (
        ("r2star_rim_core_diff", "R2* rim - core (1/s)"),
        ("field_rim_core_diff_hz", "local field rim - core (Hz)"),
    ):
        values = cored[column].to_numpy(float)
        ok = np.isfinite(values)
        print(
            f"  {label:<28} AUC {auc(values[ok], rim[ok]):.3f}   median rim "
            f"{np.median(values[ok & rim]):+.2f}, others {np.median(values[ok & ~rim]):+.2f}"
        )
    voxels_match = all(v for v, _, _ in pooled_checks)
    worst = max(abs(m - p) for _, m, p in pooled_checks if np.isfinite(p))
    print(
        f"\nRows add up to the pooled lesion row: voxels {'yes' if voxels_match else 'NO'} in "
        f"{len(pooled_checks)} patients; largest difference of the mean {worst:.2e} 1/s"
    )
    print_locations(lesions)
    print_models(every, participants)


#: The planted lesion model (``simulate.tissue.lesion_r2star_factor``), % of NAWM.
PLANTED = {"Intercept": -12.0, "disease_duration": -0.8, "log2_volume": 0.0}


def print_models(lesions: pd.DataFrame, participants: pd.DataFrame) -> None:
    """The lesion model's planted terms with the core outcome and with the whole lesion."""
    from ironmap.cohort.lesions import lesion_models

    print("\nLesion model against the planted truth (% of NAWM; every listed lesion)")
    print(
        f"  {'outcome from':<14}{'term':<18}{'planted':>8}{'estimate [95 % CI]':>26}{'p':>9}"
        f"{'covered':>9}{'lesions':>9}"
    )
    whole = lesions.assign(r2star_core_median=lesions["r2star_median"])
    for label, rows in (("core", lesions), ("whole lesion", whole)):
        table = lesion_models(rows, participants)
        pct = table[table.outcome == "lesion_r2star_pct"].set_index("term")
        for term, truth in PLANTED.items():
            if term not in pct.index or pd.isna(pct.loc[term, "estimate"]):
                print(f"  {label:<14}{term:<18}{truth:>8.2f}  not estimated: {pct.note.iloc[0]}")
                continue
            r = pct.loc[term]
            ci = f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}]"
            covered = "yes" if r.ci_low <= truth <= r.ci_high else "NO"
            print(
                f"  {label:<14}{term:<18}{truth:>8.2f}{ci:>26}{r.p:>9.3g}{covered:>9}"
                f"{int(r.n_lesions):>9}"
            )
        first = pct.iloc[0]
        print(
            f"  {'':<14}(optimizer {first.optimizer or '-'}, participant SD "
            f"{first.participant_sd:.2f}; {first.note or 'no note'})"
        )


if __name__ == "__main__":
    main()
