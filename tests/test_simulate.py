"""The synthetic cohort: reproducible files, truth that follows the planted models, BIDS that
ironmap's own loader reads, and plausible anatomy."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.io import load_bids_echoes
from ironmap.regions.catalog import CATALOG, IRON_RICH, LABEL_NAMES, REGION_NAMES
from ironmap.regions.catalog import label_code as code
from ironmap.simulate import draw_cohort, generate_subject, truth_summary
from ironmap.simulate.anatomy import DEEP_SHAPES, make_anatomy
from ironmap.simulate.cohort import FULL_ATROPHY, SITES, subject_r2star, ventricle_margin_mm
from ironmap.simulate.tissue import (
    AGE_MODELS,
    CODE_TISSUE,
    DEEP_GM,
    MS_EFFECTS,
    PROGRESSIVE_FACTOR,
    SHARED_TISSUE,
    TISSUES,
    healthy_r2star,
    ms_r2star_change,
    tissue_of,
)
from ironmap.workflows.simulate import SimulateConfig, run_simulate


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "bids"
    truth = run_simulate(SimulateConfig(root, n_hc=1, n_ms=2, seed=11, n_jobs=2))
    return root, json.loads(truth.read_text())


def test_same_seed_gives_identical_files(cohort, tmp_path):
    root, _ = cohort
    again = tmp_path / "bids"
    run_simulate(SimulateConfig(again, n_hc=1, n_ms=2, seed=11, n_jobs=1))  # other worker count
    assert _digest(again) == _digest(root)
    assert (tmp_path / "bids_truth.json").read_bytes() == (
        root.parent / "bids_truth.json"
    ).read_bytes()


def test_written_dataset_passes_the_bids_loader(cohort):
    root, truth = cohort
    table = pd.read_csv(root / "participants.tsv", sep="\t", keep_default_na=False)
    assert list(table.columns) == [
        "participant_id",
        "age",
        "sex",
        "group",
        "phenotype",
        "disease_duration",
        "edss",
        "site",
    ]
    assert set(table["group"]) == {"HC", "MS"}
    hc = table[table["group"] == "HC"].iloc[0]
    assert (hc["phenotype"], hc["disease_duration"], hc["edss"]) == ("n/a", "n/a", "n/a")
    sites = {s.name: s for s in SITES}
    for sub in table["participant_id"]:
        files = sorted((root / sub / "anat").glob("*_MEGRE.nii.gz"))
        image = load_bids_echoes(files)
        protocol = sites[truth["subjects"][sub]["site"]].protocol
        np.testing.assert_allclose(image.echo_times_s, protocol.echo_times_s)
        np.testing.assert_allclose(np.abs(np.diag(image.affine)[:3]), protocol.voxel_mm)
        seg = root / "derivatives" / "segmentation" / sub / "anat"
        dseg = nib.load(seg / f"{sub}_dseg.nii.gz")
        names = pd.read_csv(seg / f"{sub}_dseg.tsv", sep="\t")
        assert {"Left-Putamen", "Right-Red-Nucleus", "Left-Dentate-Nucleus"} <= set(names["name"])
        assert set(np.unique(np.asarray(dseg.dataobj))) <= {0, *names["index"]}
        lesion = np.asarray(nib.load(seg / f"{sub}_label-lesion_mask.nii.gz").dataobj)
        expected = truth["subjects"][sub]["lesion_volume_ml"]
        assert lesion.sum() / 1000.0 == pytest.approx(expected)
    desc = json.loads((root / "derivatives/segmentation/dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"


def test_existing_output_is_not_overwritten_without_force(cohort, capsys):
    root, _ = cohort
    assert main(["simulate", str(root), "--n-hc", "1", "--n-ms", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ironmap: error: {root} exists and is not empty; pass --force to replace it"


def test_healthy_truth_follows_the_age_model():
    """Regional mean truth of controls = age model + the subject's offset, up to the smooth
    +-3 % texture, which averages out over subjects and regions."""
    deviations = []
    for subject in draw_cohort(n_hc=8, n_ms=0, seed=5):
        truth = truth_summary(subject, generate_subject(subject, with_images=False))
        for region in DEEP_GM:
            expected = healthy_r2star(region, subject.age) + subject.r2star_offset[region]
            got = truth["regions"][region]["both"]["r2star_mean"]
            deviations.append(got / expected - 1.0)
    deviations = np.asarray(deviations)
    assert abs(deviations.mean()) < 0.01
    assert 0.005 < deviations.std() < 0.04
    assert np.abs(deviations).max() < 0.1


def test_age_models_are_calibrated_to_3t_literature_at_45():
    ranges = {
        "pallidum": (36, 42),
        "putamen": (26, 31),
        "caudate": (22, 26),
        "thalamus": (19, 22),
        "substantia_nigra": (28, 35),
        "red_nucleus": (28, 34),
        "dentate_nucleus": (28, 36),
        "cerebral_wm": (19, 22),
        "cortex": (15, 18),
        "csf": (1, 5),
    }
    for tissue, (lo, hi) in ranges.items():
        assert lo <= healthy_r2star(tissue, 45.0) <= hi, tissue
    # iron accumulates early; the thalamus declines after ~40
    assert healthy_r2star("pallidum", 30.0) > healthy_r2star("pallidum", 10.0)
    assert healthy_r2star("thalamus", 70.0) < healthy_r2star("thalamus", 40.0)


def test_planted_ms_effects_appear_in_the_truth():
    subjects = draw_cohort(n_hc=0, n_ms=40, seed=3)
    for s in subjects:
        r2 = subject_r2star(s)
        for tissue in DEEP_GM:
            healthy = float(AGE_MODELS[tissue](s.age)) + s.r2star_offset[tissue]
            effect = ms_r2star_change(
                tissue,
                disease_duration=s.disease_duration,
                edss=s.edss,
                progressive=s.progressive,
                atrophy=s.atrophy,
            )
            assert r2[tissue] == pytest.approx(healthy + effect)
            if tissue == "pallidum":
                assert effect == 0.0
            if tissue == "substantia_nigra":  # cortical atrophy only (issue 24, the seed's)
                assert effect == pytest.approx(12.0 * (s.atrophy - 0.10))
    s = next(x for x in subjects if x.phenotype == "SPMS")
    slope = MS_EFFECTS["putamen"]
    expected = PROGRESSIVE_FACTOR * (
        slope.duration_slope * s.disease_duration + slope.edss_slope * s.edss
    )
    assert ms_r2star_change(
        "putamen", disease_duration=s.disease_duration, edss=s.edss, progressive=True
    ) == pytest.approx(expected)


def test_cohort_demographics_follow_the_study_design():
    subjects = draw_cohort()
    table = pd.DataFrame(
        {
            "group": s.group,
            "phenotype": s.phenotype,
            "dd": s.disease_duration,
            "edss": s.edss,
            "site": s.site.name,
        }
        for s in subjects
    )
    assert (table["group"] == "HC").sum() == 81
    assert (table["group"] == "MS").sum() == 97
    assert table["site"].nunique() == 7
    ms = table[table["group"] == "MS"]
    assert set(ms["phenotype"]) == {"RRMS", "SPMS", "PPMS"}
    assert np.corrcoef(ms["dd"], ms["edss"])[0, 1] > 0.3
    assert (
        ms.groupby("phenotype")["edss"].mean()["SPMS"]
        > ms.groupby("phenotype")["edss"].mean()["RRMS"]
    )
    assert {len(s.protocol.echo_times_s) for s in SITES} >= {2, 12}


def test_lesions_atrophy_and_volumes(cohort):
    _, truth = cohort
    for t in truth["subjects"].values():
        assert 1000 < t["icv_ml"] < 1700
        assert 0.75 < t["nbv"] < 0.95
        assert 250 < t["cortical_gm_ml"] < 600
        assert 5 < t["regions"]["thalamus"]["both"]["volume_ml"] < 16
        assert 0.2 < t["regions"]["red_nucleus"]["both"]["volume_ml"] < 0.6
        if t["group"] == "MS":
            assert t["lesion_count"] >= 1
            lesion = t["regions"]["lesions"]["both"]["r2star_mean"]
            assert lesion < t["regions"]["nawm"]["both"]["r2star_mean"]
        else:
            assert t["lesion_count"] == 0


def test_every_catalogue_region_has_simulator_data():
    """A catalogue row added without its simulator data fails here, naming what to add."""
    no_tissue = [r.name for r in CATALOG if tissue_of(r.name) not in TISSUES]
    assert not no_tissue, (
        f"catalogue region(s) {no_tissue} have no simulated tissue: add a Tissue record (age "
        "model, S0, T1w, MS effect) to TISSUES in src/ironmap/simulate/tissue.py, or map the "
        "region to another tissue in SHARED_TISSUE there"
    )
    stale = sorted(set(TISSUES) - {*REGION_NAMES, "scalp"}) + sorted(
        set(SHARED_TISSUE) - set(REGION_NAMES)
    )
    assert not stale, f"TISSUES/SHARED_TISSUE name(s) {stale} are not catalogue regions"
    no_shape = [r for r in DEEP_GM if r not in DEEP_SHAPES]
    assert not no_shape, (
        f"deep grey-matter region(s) {no_shape} have no phantom shape: add their centre and "
        "radii (right hemisphere, mm) to DEEP_SHAPES in src/ironmap/simulate/anatomy.py"
    )
    assert set(DEEP_SHAPES) <= set(DEEP_GM), "DEEP_SHAPES holds regions that are not deep GM"
    assert set(CODE_TISSUE) == {0, *LABEL_NAMES}
    from ironmap.simulate.atlas_anatomy import KEEP_OUT, SURROUNDING_WM

    assert set(SURROUNDING_WM) | set(KEEP_OUT) <= set(IRON_RICH)
    named = {*SURROUNDING_WM.values(), *(n for names in KEEP_OUT.values() for n in names)}
    assert named <= set(REGION_NAMES)


def test_tissue_views_derive_from_the_records():
    assert list(AGE_MODELS) == list(TISSUES)
    assert all(AGE_MODELS[t] is TISSUES[t].age for t in TISSUES)
    assert set(MS_EFFECTS) == {t for t, rec in TISSUES.items() if rec.ms_effect is not None}
    assert CODE_TISSUE[code("lateral_ventricle", "left")] == "csf"
    assert CODE_TISSUE[code("thalamus", "right")] == "thalamus"
    with pytest.raises(TypeError):
        AGE_MODELS["new"] = AGE_MODELS["csf"]  # read-only: edit TISSUES instead
    with pytest.raises(ValueError, match="no midline label"):
        code("thalamus", "midline")


def test_phantom_draws_exactly_the_catalogue_codes():
    labels = make_anatomy(np.random.default_rng(0), atrophy=0.05, lesion_count=3).labels
    drawn = set(np.unique(labels).tolist()) - {0}
    unknown = sorted(drawn - set(LABEL_NAMES))
    assert not unknown, f"the phantom draws code(s) {unknown} that are not in LABEL_NAMES"
    absent = sorted(LABEL_NAMES[c] for c in set(LABEL_NAMES) - drawn)
    assert not absent, (
        f"the phantom never draws {absent}: give the region a shape (DEEP_SHAPES for deep grey "
        "matter, make_anatomy in src/ironmap/simulate/anatomy.py otherwise)"
    )


def _enlargement_is_a_margin_into_caudate_thalamus_and_wm(before, after, margin_mm) -> None:
    """Every caudate, thalamus or cerebral WM voxel within ``margin_mm`` of a ventricle became
    ventricle (of the nearer side); nothing else changed."""
    from scipy import ndimage

    ventricle_codes = (code("lateral_ventricle", "left"), code("lateral_ventricle", "right"))
    ventricle = np.isin(before, ventricle_codes)
    distance = ndimage.distance_transform_edt(~ventricle)  # 1 mm grid
    eaten = ("caudate", "thalamus", "cerebral_wm")
    tissue = np.isin(before, [c for r in eaten for c in (code(r, "left"), code(r, "right"))])
    taken = tissue & (distance <= margin_mm)
    changed = before != after
    np.testing.assert_array_equal(changed, taken)
    assert np.isin(after[taken], ventricle_codes).all()
    x_left = np.argwhere(after[:72] == code("lateral_ventricle", "right"))  # left of midline
    assert x_left.shape[0] < 0.02 * np.sum(after == code("lateral_ventricle", "right"))


@pytest.mark.parametrize("margin_mm", [2.0, 4.0])
def test_phantom_ventricles_grow_by_the_margin_into_caudate_thalamus_and_wm(margin_mm):
    before = make_anatomy(np.random.default_rng(5), lesion_count=4)
    after = make_anatomy(np.random.default_rng(5), lesion_count=4, ventricle_margin_mm=margin_mm)
    _enlargement_is_a_margin_into_caudate_thalamus_and_wm(before.labels, after.labels, margin_mm)
    counts = [np.bincount(a.labels.ravel(), minlength=110) for a in (before, after)]
    ventricles = [c[code("lateral_ventricle", "left")] for c in counts]
    caudate = [c[code("caudate", "left")] for c in counts]
    # ~2 x 18 mL of ventricle wall per cm: +2 mm doubles the ~4.5 mL ventricle, +4 mm triples it
    assert ventricles[1] / ventricles[0] == pytest.approx(1.0 + 0.5 * margin_mm, rel=0.25)
    assert 0.3 < caudate[1] / caudate[0] < 0.9  # the caudate loses its ventricular side
    for unchanged in ("putamen", "pallidum", "cortex", "substantia_nigra"):
        assert counts[1][code(unchanged, "right")] == counts[0][code(unchanged, "right")]
    assert not np.isin(after.labels[after.lesions], [4, 43]).any()  # lesions stay in WM


# -- longitudinal cohorts (ironmap simulate --sessions) ------------------------------------------


@pytest.fixture(scope="module")
def sessions_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions") / "bids"
    truth = run_simulate(
        SimulateConfig(root, n_hc=0, n_ms=1, seed=11, n_jobs=2, sessions=2, interval_years=3.0)
    )
    return root, json.loads(truth.read_text())


def test_sessions_are_the_same_head_scanned_again(sessions_cohort):
    root, truth = sessions_cohort
    sub = "sub-001"
    sessions = pd.read_csv(root / sub / f"{sub}_sessions.tsv", sep="\t")
    assert sessions.columns.tolist() == ["session_id", "acq_time", "age", "edss"]
    assert sessions.session_id.tolist() == ["ses-01", "ses-02"]
    days = np.diff(pd.to_datetime(sessions.acq_time)).astype("timedelta64[D]").astype(float)
    assert 0.8 * 3 * 365.25 - 1 <= days[0] <= 1.2 * 3 * 365.25 + 1  # 3 years x U(0.8, 1.2)
    assert not (root / sub / "anat").exists()
    seg = root / "derivatives" / "segmentation" / sub
    dseg = [nib.load(seg / s / "anat" / f"{sub}_{s}_dseg.nii.gz") for s in ("ses-01", "ses-02")]
    np.testing.assert_array_equal(dseg[0].get_fdata(), dseg[1].get_fdata())  # same anatomy
    echoes = [
        nib.load(root / sub / s / "anat" / f"{sub}_{s}_echo-1_part-mag_MEGRE.nii.gz")
        for s in ("ses-01", "ses-02")
    ]
    np.testing.assert_array_equal(echoes[0].affine, echoes[1].affine)  # same grid
    assert not np.array_equal(echoes[0].get_fdata(), echoes[1].get_fdata())  # a new scan
    # participants.tsv: the baseline, as in a one-session cohort of the same seed
    from ironmap.simulate import participants_table

    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    baseline = participants_table(draw_cohort(n_hc=0, n_ms=1, seed=11))
    assert participants.age.tolist() == baseline.age.tolist()
    assert truth["longitudinal"]["sessions"] == 2


def test_planted_change_between_sessions_follows_the_truth_model(sessions_cohort):
    _, truth = sessions_cohort
    subject = truth["subjects"]["sub-001"]
    first, second = subject["sessions"]["ses-01"], subject["sessions"]["ses-02"]
    t = second["time_years"] - first["time_years"]
    assert second["age"] - first["age"] == pytest.approx(t)
    assert second["disease_duration"] - first["disease_duration"] == pytest.approx(t)
    gained = second["edss"] - first["edss"]
    for tissue, effect in MS_EFFECTS.items():
        change = second["tissue_r2star"][tissue] - first["tissue_r2star"][tissue]
        ageing = float(
            healthy_r2star(tissue, second["age"]) - healthy_r2star(tissue, first["age"])
        )
        planted = ageing + effect.duration_slope * t + effect.edss_slope * gained
        # the rest is the participant's biological random slope, N(0, 0.02) 1/s per year
        assert abs(change - planted) < 4 * 0.02 * t, tissue
    for name in ("putamen", "pallidum"):
        measured = [s["regions"][name]["both"]["r2star_mean"] for s in (first, second)]
        assert measured[1] - measured[0] == pytest.approx(
            second["tissue_r2star"][name] - first["tissue_r2star"][name], abs=0.15
        )
    assert first["scan_r2star_factor"] != second["scan_r2star_factor"]


def test_sessions_options_are_checked(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "a"), "--sessions", "0"]) == 2
    assert "--sessions must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", str(tmp_path / "b"), "--sessions", "2", "--interval-years", "-1"])
    assert "must be > 0" in capsys.readouterr().err


# -- periventricular atrophy in a cohort (ironmap simulate --ventricle-margin) -------------------


def test_ventricle_margin_follows_each_participants_atrophy():
    subjects = draw_cohort(n_hc=40, n_ms=60, seed=3)
    margins = np.array([ventricle_margin_mm(s, max_mm=4.0) for s in subjects])
    atrophy = np.array([s.atrophy for s in subjects])
    expected = np.round(4.0 * np.minimum(atrophy / FULL_ATROPHY, 1.0), 1)
    np.testing.assert_allclose(margins, expected)
    ms = np.array([s.group == "MS" for s in subjects])
    progressive = np.array([s.progressive for s in subjects])
    assert margins[progressive].mean() > margins[ms & ~progressive].mean()
    assert margins[ms & ~progressive].mean() > margins[~ms].mean()
    assert max(ventricle_margin_mm(s, max_mm=0.0) for s in subjects) == 0.0


def test_simulate_ventricle_margin_enlarges_ventricles_in_images_and_truth(tmp_path, capsys):
    root = tmp_path / "bids"
    args = ["simulate", str(root), "--n-hc", "0", "--n-ms", "2", "--seed", "12"]
    assert main([*args, "--ventricle-margin", "4"]) == 0
    truth = json.loads((tmp_path / "bids_truth.json").read_text())
    assert truth["periventricular_atrophy"]["max_margin_mm"] == 4.0
    subjects = {s.participant_id: s for s in draw_cohort(n_hc=0, n_ms=2, seed=12)}
    plain = run_simulate(SimulateConfig(tmp_path / "plain", n_hc=0, n_ms=2, seed=12))
    plain = json.loads(plain.read_text())
    assert "periventricular_atrophy" not in plain
    for pid, record in truth["subjects"].items():
        margin = ventricle_margin_mm(subjects[pid], max_mm=4.0)
        assert margin >= 1.0  # seed 12: two RRMS patients, 1.2 and 1.4 mm
        assert record["ventricle_margin_mm"] == margin
        assert "ventricle_margin_mm" not in plain["subjects"][pid]
        caudate = record["regions"]["caudate"]["both"]["volume_ml"]
        assert caudate < 0.9 * plain["subjects"][pid]["regions"]["caudate"]["both"]["volume_ml"]
        dseg = nib.load(
            root / "derivatives" / "segmentation" / pid / "anat" / f"{pid}_dseg.nii.gz"
        )
        labels = np.asarray(dseg.dataobj)
        expected = generate_subject(subjects[pid], with_images=False, ventricle_margin_mm=margin)
        np.testing.assert_array_equal(labels, expected.anatomy.labels)
    assert main(["simulate", str(tmp_path / "c"), "--ventricle-margin", "7"]) == 2
    assert "--ventricle-margin must be between 0 and 6 mm" in capsys.readouterr().err
