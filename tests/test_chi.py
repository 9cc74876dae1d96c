"""chi everywhere R2* is: regional susceptibility beside R2*, the Chimap of the participant
stage (computed from the phase echoes or taken from the derivatives), and no chi without
phase."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.errors import IronmapWarning
from ironmap.regions import regional_r2star
from ironmap.regions.csf import csf_like
from ironmap.susceptibility import DEFAULT_BACKGROUND, DEFAULT_INVERSION
from ironmap.workflows.participant import ParticipantConfig, run_participant

TE = (0.005, 0.010, 0.015, 0.020)
GRID = np.diag([2.0, 2.0, 2.0, 1.0])
FINE = np.eye(4)
#: Putamen on the 2 mm grid (labels[10:16, 10:20, 6:12] at 1 mm), left and right.
PUTAMEN = {"left": np.s_[5:8, 5:10, 3:6], "right": np.s_[12:15, 5:10, 3:6]}


# -- regional statistics: one code path for both maps -----------------------------------------


def test_chi_columns_are_the_statistics_of_the_r2star_voxels(rng):
    shape = (12, 12, 8)
    r2 = np.full(shape, 30.0)
    r2[2:5, 2:5, 2:5] = 5.0  # CSF-like voxels inside the thalamus: left out of both maps
    r2[6, 6, 6] = np.nan  # a failed R2* voxel: no chi either
    chi = rng.normal(0.05, 0.02, shape)
    chi[7, 7, 5] = np.nan  # a voxel outside the QSM mask: no chi, R2* kept
    thal = np.zeros(shape, bool)
    thal[1:9, 1:9, 1:7] = True
    masks = {"thalamus/both": thal, "lesions": np.zeros(shape, bool)}
    masks["lesions"][10, 10, 2:4] = True
    kwargs = {
        "participant_id": "sub-1",
        "region_volumes_ml": {},
        "exclude_csf": True,
        "unlabelled": ("caudate", "putamen", "pallidum", "substantia_nigra", "red_nucleus",
                       "dentate_nucleus", "cerebral_wm", "thalamus"),
    }  # fmt: skip
    table = regional_r2star(r2, masks, chi=chi, **kwargs).set_index(["region", "hemisphere"])
    row = table.loc[("thalamus", "both")]
    used = thal & ~csf_like(r2, thal) & np.isfinite(r2)
    assert row.n_voxels == used.sum() == 8 * 8 * 6 - 27 - 1
    values = chi[used & np.isfinite(chi)]
    assert row.chi_n_voxels == values.size == row.n_voxels - 1
    assert row.chi_median == pytest.approx(np.median(values), abs=1e-12)
    assert row.chi_mean == pytest.approx(values.mean(), abs=1e-12)
    assert row.chi_sd == pytest.approx(values.std(ddof=1), abs=1e-12)
    lesion = table.loc[("lesions", "both")]
    assert lesion.chi_median == pytest.approx(np.median(chi[masks["lesions"]]), abs=1e-12)
    # without a chi map: NaN chi columns, 0 voxels, and no more warnings than before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = regional_r2star(r2, masks, **kwargs)
    assert caught == []
    assert plain["chi_median"].isna().all()
    assert (plain["chi_n_voxels"] == 0).all()
    assert plain.drop(columns=[c for c in plain if c.startswith("chi_")]).equals(
        table.reset_index()[plain.columns].drop(columns=[c for c in plain if c.startswith("chi_")])
    )


# -- the participant stage --------------------------------------------------------------------


def _labels() -> np.ndarray:
    labels = np.zeros((40, 40, 20), np.int16)
    labels[4:36, 4:36, 2:18] = 2  # left WM
    labels[20:36, 4:36, 2:18] = 41  # right WM
    labels[10:16, 10:20, 6:12] = 12  # left putamen
    labels[24:30, 10:20, 6:12] = 51  # right putamen
    return labels


def _write_subject(root, label, *, phase: bool, field_strength: float | None = 3.0) -> None:
    """One participant on a 2 mm grid (putamen R2* 40, WM 20 1/s) with a dseg at 1 mm; with
    ``phase``, phase echoes of a smooth field (0.5 Hz/voxel along x, 3 Hz in the putamen)."""
    labels = _labels()
    r2 = np.where(np.isin(labels, (12, 51)), 40.0, np.where(labels > 0, 20.0, 0.0))
    fine = 1000.0 * (labels > 0)[..., None] * np.exp(-r2[..., None] * np.asarray(TE))
    acq = fine.reshape(20, 2, 20, 2, 10, 2, len(TE)).mean(axis=(1, 3, 5))
    noise = np.random.default_rng(int(label)).normal(scale=2.0, size=(2, *acq.shape))
    acq = np.hypot(acq + noise[0], noise[1])
    field = 0.5 * np.arange(20)[:, None, None] + np.zeros((20, 20, 10))
    for where in PUTAMEN.values():
        field[where] += 3.0
    anat = root / f"sub-{label}" / "anat"
    anat.mkdir(parents=True)
    meta = {} if field_strength is None else {"MagneticFieldStrength": field_strength}
    for n, t in enumerate(TE, start=1):
        name = f"sub-{label}_echo-{n}_part-mag_MEGRE"
        nib.save(
            nib.Nifti1Image(acq[..., n - 1].astype(np.float32), GRID), anat / f"{name}.nii.gz"
        )
        (anat / f"{name}.json").write_text(json.dumps({"EchoTime": t, **meta}))
        if phase:
            name = f"sub-{label}_echo-{n}_part-phase_MEGRE"
            wrapped = np.angle(np.exp(2j * np.pi * field * t)).astype(np.float32)
            nib.save(nib.Nifti1Image(wrapped, GRID), anat / f"{name}.nii.gz")
            side = {"EchoTime": t, "Units": "rad", **meta}  # a small field: spans < 1 cycle
            (anat / f"{name}.json").write_text(json.dumps(side))
    seg = root / "derivatives" / "seg" / f"sub-{label}" / "anat"
    seg.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels, FINE), seg / f"sub-{label}_dseg.nii.gz")
    names = ["Left-Cerebral-White-Matter", "Right-Cerebral-White-Matter", "Left-Putamen",
             "Right-Putamen"]  # fmt: skip
    pd.DataFrame({"index": [2, 41, 12, 51], "name": names}).to_csv(
        seg / f"sub-{label}_dseg.tsv", sep="\t", index=False
    )


def _dataset(tmp_path, **kwargs):
    root = tmp_path / "bids"
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    _write_subject(root, "01", **kwargs)
    return root


def _run(root, out, **options):
    results = run_participant(ParticipantConfig(root, out, **options))
    assert [r.status for r in results] == ["done"], [r.error for r in results]
    return results[0]


def _qsm_warnings(result) -> list[str]:
    """The participant's warnings about susceptibility (this dseg has no cortex and no
    thalamus, which other warnings say)."""
    words = ("chi ", "chi_", "|chi|", "QSM", "susceptib", "Chimap", "MagneticFieldStrength")
    return [w for w in result.warnings if any(word in w for word in words)]


def _table(out):
    table = pd.read_csv(out / "sub-01/anat/sub-01_regions.tsv", sep="\t", na_values="n/a")
    return table.set_index(["region", "hemisphere"])


def test_chimap_from_phase_is_written_with_its_sidecar_and_measured(tmp_path):
    root = _dataset(tmp_path, phase=True)
    out = tmp_path / "out"
    result = _run(root, out)
    assert _qsm_warnings(result) == []
    chimap = out / "sub-01/anat/sub-01_Chimap.nii.gz"
    image = nib.load(chimap)
    assert image.get_data_dtype() == np.float32
    assert np.allclose(image.affine, GRID)
    chi = image.get_fdata()
    side = json.loads(chimap.with_name("sub-01_Chimap.json").read_text())
    assert side["Units"] == "ppm"
    assert side["QSMSource"] == "computed"
    assert side["QSMMethods"]["inversion"] == DEFAULT_INVERSION
    assert side["QSMMethods"]["background"] == DEFAULT_BACKGROUND
    assert side["MagneticFieldStrength"] == 3.0
    assert side["EchoTime"] == list(TE)
    assert side["OutsideMask"] == "NaN"
    # no ventricles in this dseg: the whole mask is the reference (its mean chi is 0)
    assert side["ReferenceRegion"] == "whole QSM mask"
    assert abs(np.nanmean(chi)) < 1e-5
    assert sum("part-phase" in s for s in side["Sources"]) == len(TE)
    assert np.isnan(chi[0, 0, 0])  # outside the mask
    table = _table(out)
    for hemi, where in PUTAMEN.items():
        row = table.loc[("putamen", hemi)]
        values = chi[where][np.isfinite(chi[where])]
        # the chi voxels are the R2* voxels inside the QSM mask (eroded by the background step)
        assert row.n_voxels == 45
        assert 0 < row.chi_n_voxels == values.size <= 45
        assert row.chi_median == pytest.approx(np.median(values), abs=6e-5)  # 4 decimals
        assert row.chi_mean == pytest.approx(values.mean(), abs=6e-5)
    # (chi against truth: tests/test_susceptibility.py, forward-simulated nuclei; this phantom's
    # uniform +3 Hz in the putamen is no susceptibility distribution's field)
    record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
    assert record["options"]["qsm"] == "computed"
    assert record["qsm"]["parameters"]["inversion"] == DEFAULT_INVERSION
    assert record["qsm"]["reference_region"] == side["ReferenceRegion"]
    # resume: the same inputs and options are skipped; --qsm off is another option
    assert run_participant(ParticipantConfig(root, out))[0].status == "skipped"
    other = run_participant(ParticipantConfig(root, out, qsm="off"))[0]
    assert other.status == "failed"
    assert "option qsm: computed -> unset" in other.error


def test_qsm_off_and_no_phase_give_no_chi_and_no_warning(tmp_path):
    root = _dataset(tmp_path, phase=True)
    for name, options in (("off", {"qsm": "off"}), ("nophase", {"b0_correction": "off"})):
        if name == "nophase":
            for path in root.rglob("*_part-phase_*"):
                path.unlink()
        out = tmp_path / name
        result = _run(root, out, **options)
        assert _qsm_warnings(result) == []
        assert not (out / "sub-01/anat/sub-01_Chimap.nii.gz").exists()
        table = _table(out)
        assert table["chi_median"].isna().all()
        assert (table["chi_n_voxels"] == 0).all()
        record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
        assert "qsm" not in record["options"]
        assert "qsm" not in record


def test_no_field_strength_warns_and_gives_nan_chi(tmp_path):
    root = _dataset(tmp_path, phase=True, field_strength=None)
    result = _run(root, tmp_path / "out")
    assert len(_qsm_warnings(result)) == 1
    assert "no MagneticFieldStrength" in _qsm_warnings(result)[0]
    assert _table(tmp_path / "out")["chi_median"].isna().all()


def _external(root, values: dict[str, float], *, scale: float = 1.0):
    """A QSMxT-like ``derivatives/qsmxt/sub-01/anat/sub-01_Chimap.nii`` at 1 mm, 0 outside."""
    labels = _labels()
    chi = np.zeros(labels.shape, np.float32)
    chi[labels > 0] = values["wm"] * scale
    chi[np.isin(labels, (12, 51))] = values["putamen"] * scale
    folder = root / "derivatives" / "qsmxt" / "sub-01" / "anat"
    folder.mkdir(parents=True)
    nib.save(nib.Nifti1Image(chi, FINE), folder / "sub-01_Chimap.nii")
    return folder / "sub-01_Chimap.nii"


def test_external_chimap_is_used_instead_of_computing_one(tmp_path):
    root = _dataset(tmp_path, phase=True)
    path = _external(root, {"wm": -0.02, "putamen": 0.11})
    out = tmp_path / "out"
    result = _run(root, out)
    assert _qsm_warnings(result) == []
    table = _table(out)
    assert table.loc[("putamen", "both"), "chi_median"] == pytest.approx(0.11, abs=1e-4)
    assert table.loc[("putamen", "left"), "chi_n_voxels"] == 45
    assert table.loc[("nawm", "both"), "chi_median"] == pytest.approx(-0.02, abs=1e-4)
    side = json.loads((out / "sub-01/anat/sub-01_Chimap.json").read_text())
    assert side["QSMSource"] == "external"
    assert side["Sources"] == [str(path)]
    assert side["Units"] == "ppm"
    chi = nib.load(out / "sub-01/anat/sub-01_Chimap.nii.gz")
    assert chi.shape == (20, 20, 10)
    assert np.allclose(chi.affine, GRID)
    record = json.loads((out / "sub-01/anat/sub-01_provenance.json").read_text())
    assert record["options"]["qsm"] == "external"
    assert record["qsm"] == {"source": "external", "file": str(path)}
    assert "sub-01_Chimap.nii" in record["inputs"]


def test_external_chimap_in_ppb_is_warned(tmp_path):
    root = _dataset(tmp_path, phase=False)
    _external(root, {"wm": -0.02, "putamen": 0.11}, scale=1000.0)
    result = _run(root, tmp_path / "out", b0_correction="off")
    assert len(_qsm_warnings(result)) == 1
    assert "99th percentile of |chi| is 110, outside 0.01-2.0 ppm" in _qsm_warnings(result)[0]
    assert _table(tmp_path / "out").loc[("putamen", "both"), "chi_median"] == pytest.approx(110)


def test_qsm_option_is_checked():
    from ironmap.errors import InputError

    with pytest.raises(InputError, match="--qsm must be one of auto, off"):
        ParticipantConfig("a", "b", qsm="on")
    assert IronmapWarning  # the warnings above are IronmapWarnings, recorded per participant


# -- the group stage on chi -------------------------------------------------------------------

#: Planted chi effects (ppm): lower thalamic and higher pallidal susceptibility in RRMS.
CHI_EFFECTS = {"RRMS": {"thalamus": -0.015, "pallidum": 0.010}}


def _table_cohort(tmp_path, *, chi: bool, seed: int = 4):
    """A seeded table cohort (2 sites, 24 HC + 24 RRMS each) written as participant-stage
    tables, with regional chi (:func:`add_chi`, :data:`CHI_EFFECTS`, site b +0.01 ppm) or
    without the chi columns (tables of an older ironmap)."""
    from ironmap.simulate.tables import TableSite, add_chi, simulate_table_cohort

    sites = [TableSite("a", 1.0, 1.0, {"HC": 24, "RRMS": 24}),
             TableSite("b", 1.05, 1.0, {"HC": 24, "RRMS": 24})]  # fmt: skip
    long, people = simulate_table_cohort(sites, seed=seed)
    long = add_chi(long, people, seed=seed, effects=CHI_EFFECTS, site_offset={"b": 0.01})
    bids, out = tmp_path / "bids", tmp_path / "out"
    bids.mkdir(parents=True)
    out.mkdir()
    description = {"Name": "t", "DatasetType": "derivative", "GeneratedBy": [{"Name": "ironmap"}]}
    (out / "dataset_description.json").write_text(json.dumps(description))
    columns = ["participant_id", "region", "hemisphere", "r2star_median", "n_voxels"]
    columns += ["chi_median", "chi_n_voxels"] if chi else []
    for pid, rows in long.groupby("participant_id"):
        anat = out / pid / "anat"
        anat.mkdir(parents=True)
        sides = [rows.assign(hemisphere=h) for h in ("left", "right", "both")]
        pd.concat(sides)[columns].to_csv(anat / f"{pid}_regions.tsv", sep="\t", index=False)
        volumes = {"participant_id": pid, "icv_ml": 1450.0, "brain_ml": 1250.0, "nbv": 0.86}
        pd.DataFrame([volumes]).to_csv(anat / f"{pid}_volumes.tsv", sep="\t", index=False)
    people.to_csv(bids / "participants.tsv", sep="\t", index=False, na_rep="n/a")
    return bids, out


def test_analyse_cohort_on_chi_finds_the_planted_differences_on_a_linear_scale():
    from ironmap.cohort.analysis import analyse_cohort
    from ironmap.simulate.tables import TableSite, add_chi, simulate_table_cohort

    sites = [TableSite("a", 1.0, 1.0, {"HC": 30, "RRMS": 30}),
             TableSite("b", 1.0, 1.0, {"HC": 30, "RRMS": 30})]  # fmt: skip
    long, people = simulate_table_cohort(sites, seed=7)
    long = add_chi(long, people, seed=7, effects=CHI_EFFECTS, site_offset={"b": -0.02})
    subjects = people.assign(icv_ml=1450.0, brain_ml=1250.0, nbv=0.86)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        result = analyse_cohort(long, subjects, mixed=False, clinical=False, measure="chi")
    comparison = result.comparison.set_index(["region", "contrast"])
    for region, effect in CHI_EFFECTS["RRMS"].items():
        row = comparison.loc[(region, "MS-HC")]
        assert row.ci_low < effect < row.ci_high
        assert row.p < 0.01
    assert comparison.loc[("thalamus", "MS-HC"), "estimate"] < 0  # a negative difference
    # controls' corrected chi: the planted healthy value at the reference age, at the pooled
    # site (the control-weighted mean of the sites' offsets: 0 and -0.02 ppm)
    hc = result.regions[
        result.regions.participant_id.isin(people[people.group == "HC"].participant_id)
    ]
    nawm = hc[hc.region == "nawm"]
    assert nawm.chi_corrected.mean() == pytest.approx(-0.02 - 0.01, abs=0.004)
    assert nawm.chi_z.std() == pytest.approx(1.0, rel=0.25)
    assert result.measure.name == "chi"
    assert set(result.age_model.scale) == {"linear"}


@pytest.mark.slow
def test_group_stage_analyses_chi_through_the_same_code_path(tmp_path):
    from ironmap.workflows.group import GroupConfig, run_group

    runs = {}
    for chi in (True, False):
        bids, out = _table_cohort(tmp_path / str(chi), chi=chi)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IronmapWarning)
            runs[chi] = run_group(GroupConfig(bids, out, report=False, mixed=False))
        assert not [w for w in caught if str(w.message).startswith("chi:")]
    group = tmp_path / "True" / "out" / "group"
    comparison = pd.read_csv(group / "group_comparison_chi.tsv", sep="\t").set_index(
        ["region", "contrast"]
    )
    # the planted effects are found, in ppm, with CIs that hold them; a null region is null
    for region, effect in CHI_EFFECTS["RRMS"].items():
        row = comparison.loc[(region, "MS-HC")]
        assert row.ci_low < effect < row.ci_high
        assert row.p_fdr < 0.01
        assert row.estimate == pytest.approx(effect, abs=0.004)
    assert comparison.loc[("caudate", "MS-HC"), "p"] > 0.05
    side = json.loads((group / "group_comparison_chi.json").read_text())
    assert side["estimate"]["Units"] == "ppm"
    # the additive site offset of +0.01 ppm is what the harmonisation removes
    harmonization = pd.read_csv(group / "harmonization_chi.tsv", sep="\t")
    offsets = harmonization.pivot(index="region", columns="site", values="location")
    assert (offsets["b"] - offsets["a"]).mean() == pytest.approx(0.01, abs=0.002)
    assert harmonization["location_percent"].isna().all()
    age = pd.read_csv(group / "age_model_chi.tsv", sep="\t")
    assert set(age.scale) == {"linear"}
    regions = pd.read_csv(group / "regions.tsv", sep="\t")
    assert {"chi_harmonized", "chi_corrected", "chi_z"} <= set(regions.columns)
    assert (regions.chi_harmonized < 0).any()  # NAWM: chi is not forced positive
    # R2*: the same tables as without chi (one code path, nothing renamed)
    for name in ("group_comparison.tsv", "age_model.tsv", "harmonization.tsv"):
        with_chi = pd.read_csv(group / name, sep="\t")
        without = pd.read_csv(tmp_path / "False" / "out" / "group" / name, sep="\t")
        pd.testing.assert_frame_equal(with_chi, without)
    # without chi: no chi tables, and the provenance says why
    plain = tmp_path / "False" / "out" / "group"
    assert not list(plain.glob("*_chi.tsv"))
    record = json.loads((plain / "provenance.json").read_text())
    assert record["analyses"]["chi"]["ran"] is False
    assert "no regional chi" in record["analyses"]["chi"]["reason"]
    assert runs[True].comparison_chi.shape[0] == runs[True].comparison.shape[0]


# -- Methods ------------------------------------------------------------------------------------


def test_methods_state_the_qsm_steps_reference_and_source_from_provenance():
    from ironmap.report.methods import REFERENCES, _Citations, _qsm

    qc = pd.DataFrame(
        {
            "qsm": ["computed", "computed", "external", "none"],
            "qsm_background": ["sharp", "sharp", None, None],
            "qsm_inversion": ["tkd", "tkd", None, None],
            "qsm_reference": ["lateral ventricles (CSF, fraction >= 0.5)"] * 2 + [None, None],
        }
    )
    cite = _Citations()
    text = _qsm(qc, cite)
    assert "mapped from the phase of the echoes in 2 of 4 participants" in text
    assert "background field removal by SHARP (Schweser et al. 2011)" in text
    assert "dipole inversion by truncated k-space division (TKD; Shmueli et al. 2009)" in text
    assert "referenced to the mean of the lateral ventricles (CSF, fraction &gt;= 0.5)" in text
    assert "For 1 of 4 participants a susceptibility map computed elsewhere" in text
    assert cite.keys == [
        "qsmconsensus2024", "robinson2017", "schweser2011", "shmueli2009", "stewart2022"
    ]  # fmt: skip
    assert all(key in REFERENCES for key in cite.keys)
    assert _qsm(qc.assign(qsm="none"), _Citations()) == ""  # no chi: no paragraph
