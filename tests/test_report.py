"""The group report a PI can put in a paper: Methods written from what was run, Table 2, the
forest plot's rows, the palette and the per-participant protocol/QC table (fast: tables and tiny
maps written by hand)."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cohort.qc import QC_COLUMNS, collect_protocols
from ironmap.fitting import SOLVERS
from ironmap.io.derivatives import read_tsv
from ironmap.regions import DEEP_GM
from ironmap.report.clinical import PREDICTOR_LABELS, clinical_lines, forest_rows
from ironmap.report.methods import methods_html
from ironmap.report.style import PALETTE, RENDER_DPI, embed, new_figure, plotting
from ironmap.report.tables import table1, table2
from ironmap.workflows.group import GroupConfig, run_group
from test_group import _write_cohort

TE = [0.0026, 0.0072, 0.0118, 0.0164, 0.021]


def _add_protocol(
    out,
    pid,
    *,
    fit_method="auto",
    min_fraction=0.9,
    te=TE,
    sigma=10.0,
    field=3.0,
    b0=False,
    voxel=(2.0, 2.0, 3.0),
    failed=7,
    fit_voxels=1400,
    seed=0,
    session=None,
    iron_calibration=None,
):
    """The maps, sidecar and provenance record the participant stage writes (tiny maps)."""
    rng = np.random.default_rng(seed)
    anat = out / pid / (f"ses-{session}/anat" if session else "anat")
    pid = f"{pid}_ses-{session}" if session else pid
    affine = np.diag([*voxel, 1.0])
    r2star = rng.uniform(15, 40, (6, 5, 4)).astype(np.float32)
    r2star[0] = np.nan  # failed / outside the fit mask
    s0 = rng.uniform(500, 1500, r2star.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(r2star, affine), anat / f"{pid}_R2starmap.nii.gz")
    nib.save(nib.Nifti1Image(s0, affine), anat / f"{pid}_S0map.nii.gz")
    sidecar = {
        "Units": "1/s",
        "EstimationAlgorithm": f"ironmap {fit_method}: {SOLVERS[fit_method].description}",
        "EchoTime": list(te),
        "NoiseSigma": sigma,
        "NoiseSigmaSource": "background",
        "B0GradientCorrection": b0,
        "MagneticFieldStrength": field,
    }
    (anat / f"{pid}_R2starmap.json").write_text(json.dumps(sidecar))
    provenance = {
        "ironmap_version": "0.1.0",
        "inputs": {},
        "options": {
            "fit_method": fit_method,
            "min_fraction": min_fraction,
            "erode_mm": 0.0,
            "b0_correction": b0,
            "iron_calibration": iron_calibration,
            "segmentation": "auto",
        },
        "voxels": {"fit_voxels": fit_voxels, "failed_voxels": failed, "failed_reasons": {}},
    }
    (anat / f"{pid}_provenance.json").write_text(json.dumps(provenance))
    return r2star, s0


def protocol_cohort(tmp):
    """The test_group cohort (40 HC, 50 MS, 3 sites) with protocol files, 2 and 3 mm slices
    alternating: (BIDS_DIR, OUTPUT_DIR) before the group stage."""
    bids, out = _write_cohort(tmp)
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    for i, pid in enumerate(participants.participant_id):
        _add_protocol(out, pid, voxel=(2.0, 2.0, 3.0 if i % 2 else 2.0), seed=i)
    return bids, out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The test_group cohort (40 HC, 50 MS, 3 sites) with protocol files; the group stage run."""
    bids, out = protocol_cohort(tmp_path_factory.mktemp("report"))
    result = run_group(GroupConfig(bids, out))
    return bids, out, result


def _protocol_table(tmp_path, n, **options):
    """collect_protocols on n hand-written participants with these participant options."""
    rows = []
    for i in range(n):
        pid = f"sub-{i + 1:02d}"
        (tmp_path / pid / "anat").mkdir(parents=True)
        _add_protocol(tmp_path, pid, seed=i, **options)
        for region in DEEP_GM:
            for hemi, count in (("left", 9 + i), ("right", 11), ("both", 20 + i)):
                rows.append((pid, region, hemi, count))
    regions = pd.DataFrame(rows, columns=["participant_id", "region", "hemisphere", "n_voxels"])
    subjects = pd.DataFrame(
        {
            "participant_id": [f"sub-{i + 1:02d}" for i in range(n)],
            "site": ["a"] * n,
            "group": ["HC"] * n,
            "phenotype": [np.nan] * n,
        }
    )
    return collect_protocols(tmp_path, regions, subjects)


def _methods(qc):
    flow = qc[["participant_id", "group", "phenotype", "site"]].assign(
        status="analysed", reason=""
    )
    return methods_html(
        qc,
        flow=flow,
        age_model=pd.DataFrame(columns=["region", "model", "reference_age"]),
        harmonization=None,
        comparison_mixed=pd.DataFrame(),
        determinants=pd.DataFrame(columns=["region", "model"]),
        version="0.1.0",
    )


def test_methods_are_written_from_the_options_that_were_run(tmp_path):
    default = _methods(_protocol_table(tmp_path / "a", 3))
    loglin = _methods(_protocol_table(tmp_path / "b", 3, fit_method="loglin", min_fraction=0.5))
    assert default != loglin
    assert SOLVERS["auto"].description in default
    assert "at least 90 %" in default
    assert "Sijbers" in default  # the estimator's reference, cited and listed
    assert SOLVERS["loglin"].description in loglin
    assert "at least 50 %" in loglin
    assert "Rician" not in loglin
    assert "Sijbers" not in loglin
    for text in (default, loglin):
        assert "3 T, 5 echoes, TE 2.6-21 ms, 2 × 2 × 3 mm" in text
        assert "Ropele" in text
        assert "No correction for macroscopic field gradients" in text


def test_methods_state_options_that_differ_between_participants(tmp_path):
    one = _protocol_table(tmp_path / "a", 2)
    two = _protocol_table(
        tmp_path / "b",
        1,
        fit_method="loglin",
        min_fraction=0.5,
        b0=True,
        iron_calibration="langkammer2010",
    )
    two["participant_id"] = "sub-99"
    text = _methods(pd.concat([one, two], ignore_index=True))
    assert "The R2* fit method differed between participants" in text
    assert "(n = 2)" in text
    assert "(n = 1)" in text
    assert "The partial-volume threshold differed between participants: 90 % (n = 2)" in text
    assert "corrected in 1 of 3 participants" in text
    assert "Yablonskiy" in text  # the field-gradient correction's references
    assert "Langkammer et al. 2010; 1 of 3 participants" in text
    assert "Quantitative MR imaging of brain iron" in text


def test_qc_table_equals_the_participants_sidecars_and_provenance(tmp_path):
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)
    r2star, s0 = _add_protocol(
        tmp_path, "sub-01", sigma=12.5, field=1.5, b0=True, voxel=(1.0, 1.5, 2.5), failed=21
    )
    regions = pd.DataFrame(
        {
            "participant_id": "sub-01",
            "region": ["red_nucleus"] * 3 + ["thalamus"] * 3,
            "hemisphere": ["left", "right", "both"] * 2,
            "n_voxels": [9, 11, 20, 400, 380, 780],
            "alignment": ["ok"] * 6,
        }
    )
    row = collect_protocols(tmp_path, regions).iloc[0]
    sidecar = json.loads((tmp_path / "sub-01" / "anat" / "sub-01_R2starmap.json").read_text())
    provenance = json.loads((tmp_path / "sub-01" / "anat" / "sub-01_provenance.json").read_text())
    assert row.n_echoes == len(sidecar["EchoTime"])
    assert row.te_min_ms == pytest.approx(1e3 * min(sidecar["EchoTime"]))
    assert row.te_max_ms == pytest.approx(1e3 * max(sidecar["EchoTime"]))
    assert row.field_t == sidecar["MagneticFieldStrength"] == 1.5
    assert row.noise_sigma == sidecar["NoiseSigma"]
    assert row.noise_sigma_source == "background"
    assert row.estimation_algorithm == sidecar["EstimationAlgorithm"]
    assert (row.voxel_x_mm, row.voxel_y_mm, row.voxel_z_mm) == (1.0, 1.5, 2.5)
    assert bool(row.b0_correction) is True
    for key in ("fit_method", "min_fraction", "erode_mm", "segmentation"):
        assert row[key] == provenance["options"][key]
    assert row.failed_voxels == 21
    assert row.failed_voxel_pct == pytest.approx(100 * 21 / 1400)
    ok = np.isfinite(r2star)
    snr = np.median(s0[ok] * np.exp(-r2star[ok] * min(TE))) / 12.5
    assert row.snr == pytest.approx(snr, rel=1e-5)
    assert row.min_voxels_red_nucleus == 9
    assert row.min_voxels_thalamus == 380
    assert np.isnan(row.min_voxels_caudate)
    assert row.alignment == "ok"
    assert list(collect_protocols(tmp_path, regions).columns) == [
        c for c in QC_COLUMNS if c != "session"
    ]


def test_qc_table_reads_the_baseline_session_and_tolerates_missing_records(tmp_path):
    (tmp_path / "sub-01" / "ses-2" / "anat").mkdir(parents=True)
    _add_protocol(tmp_path, "sub-01", sigma=7.0, session="2")
    (tmp_path / "sub-02" / "anat").mkdir(parents=True)  # tables only: no maps, no record
    regions = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02"],
            "session": ["ses-2", np.nan],
            "region": "thalamus",
            "hemisphere": "left",
            "n_voxels": [300, 280],
        }
    )
    qc = collect_protocols(tmp_path, regions).set_index("participant_id")
    assert qc.at["sub-01", "session"] == "ses-2"
    assert qc.at["sub-01", "noise_sigma"] == 7.0
    assert qc.at["sub-01", "fit_method"] == "auto"
    assert qc.loc["sub-02", ["noise_sigma", "fit_method", "snr", "n_echoes"]].isna().all()
    assert qc.at["sub-02", "min_voxels_thalamus"] == 280


def test_group_stage_writes_the_qc_table(cohort):
    bids, out, result = cohort
    qc = read_tsv(out / "group" / "participant_qc.tsv")
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    assert list(qc.participant_id) == list(participants.participant_id)
    assert list(qc.columns) == [c for c in QC_COLUMNS if c != "session"]
    assert set(qc.voxel_z_mm) == {2.0, 3.0}
    assert (qc.fit_method == "auto").all()
    assert (qc.min_voxels_thalamus == 100).all()
    assert qc.site.tolist() == participants.site.tolist()
    assert len(result.participant_qc) == len(qc)


def test_table2_numbers_come_from_the_group_tables(cohort):
    _, out, result = cohort
    regions = read_tsv(out / "group" / "regions.tsv")
    subjects = read_tsv(out / "group" / "subjects.tsv")
    comparison = read_tsv(out / "group" / "group_comparison.tsv")
    hc = subjects[(subjects.group == "HC") & subjects.analysed].participant_id
    thalamus = regions[
        (regions.region == "thalamus")
        & (regions.hemisphere == "both")
        & regions.participant_id.isin(hc)
    ].r2star_median
    mean, sd = thalamus.mean(), thalamus.std(ddof=1)
    long = regions[regions.hemisphere == "both"].merge(
        subjects[subjects.analysed], on="participant_id"
    )
    table, significant = table2(long, comparison)
    assert table.at["thalamus", "HC"] == f"{mean:.1f} ({sd:.1f})"
    row = comparison[(comparison.region == "putamen") & (comparison.contrast == "MS-HC")].iloc[0]
    cell = table.at["putamen", "MS-HC"]
    assert cell.startswith(f"{row.estimate:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]")
    assert significant.at["putamen", "MS-HC"]  # the planted effect
    page = result.report.read_text()
    assert f"<td>{mean:.1f} ({sd:.1f})</td>" in page
    assert "Table 1." in page
    assert "Table 2." in page
    n_a, n_b = comparison.loc[comparison.contrast == "MS-HC", ["n_a", "n_b"]].max()
    assert f"MS-HC (n = {n_a} vs {n_b})" in page
    ms = table1(subjects[subjects.analysed]).set_index("group").loc["MS (all)"]
    assert ms["n"] == "50"


def test_forest_rows_are_keyed_by_predictor_name(cohort):
    _, _, result = cohort
    rows = forest_rows(result.determinants)
    lesion = rows[rows.region == "lesions"].set_index("predictor")
    assert set(lesion.index) == {"disease_duration", "lesion_volume_ml"}
    # the rows are the fitted predictors in PREDICTOR_LABELS order: no PRL count here, so no
    # empty "PRL count" row (n_prl is optional)
    order = [p for p in PREDICTOR_LABELS if p != "n_prl"]
    assert "n_prl" not in set(result.determinants.predictor)
    assert lesion.at["lesion_volume_ml", "row"] == order.index("lesion_volume_ml")
    assert lesion.at["lesion_volume_ml", "row"] != order.index("cortical_gm_ml")
    putamen = rows[rows.region == "putamen"].set_index("predictor")
    assert putamen.at["lesion_volume_ml", "row"] == lesion.at["lesion_volume_ml", "row"]
    assert sorted(putamen.row) == list(range(len(order)))


def test_clinical_lines_use_the_univariable_slopes(cohort):
    _, _, result = cohort
    long = result.regions[result.regions.hemisphere == "both"].merge(
        result.subjects[result.subjects.analysed], on="participant_id"
    )
    lines = clinical_lines(long, result.determinants, "edss")
    det = result.determinants.set_index(["model", "region", "predictor"])
    line = lines["putamen"]
    assert line["beta"] == det.loc[("univariable", "putamen", "edss"), "beta"]
    assert np.diff(line["y"]) / np.diff(line["x"]) == pytest.approx(line["beta"])
    assert set(line["points"]["label"]) <= {"RRMS", "SPMS", "PPMS", "MS"}


def test_report_has_numbered_figures_at_display_size(cohort):
    _, _, result = cohort
    page = result.report.read_text()
    numbers = [int(n) for n in re.findall(r"<b>Figure (\d+)\.</b>", page)]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 6
    assert "<script" not in page
    assert "NAWM" in page
    assert "participant_qc.tsv" in page
    assert "Sijbers" in page  # Methods from the participants' fit method (auto)


#: Machado, Oliveira & Fernandes 2009 (severity 1), on linear RGB.
CVD = {
    "normal": np.eye(3),
    "protanopia": np.array(
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ]
    ),
    "deuteranopia": np.array(
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ]
    ),
}


def _lab(hex_colour: str, vision: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour as seen with ``vision``."""
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    linear = np.clip(vision @ linear, 0, 1)
    to_xyz = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_tells_groups_apart_with_colour_vision_deficiency():
    """Controls against every patient group, and RRMS against the progressive phenotypes,
    differ by a CIELAB distance of at least 50 with normal vision, protanopia and
    deuteranopia. Before: HC and PPMS (#4c72b0, #8172b3) differed by 13 with normal vision."""
    assert len(set(PALETTE.values())) == len(PALETTE)
    pairs = [("HC", g) for g in PALETTE if g != "HC"] + [("RRMS", "SPMS"), ("RRMS", "PPMS")]
    for name, vision in CVD.items():
        for a, b in pairs:
            distance = np.linalg.norm(_lab(PALETTE[a], vision) - _lab(PALETTE[b], vision))
            assert distance >= 50, (name, a, b, distance)
    old = np.linalg.norm(_lab("#4c72b0", np.eye(3)) - _lab("#8172b3", np.eye(3)))
    assert old < 50


def test_figures_are_embedded_at_the_size_they_are_drawn():
    with plotting():
        fig, axes = new_figure(2, 1, height=2.0, width=6.0)
        axes[0].plot([0, 1], [0, 1])
        tag = embed(fig, "caption", 7, "alt")
        sizes = [t.get_fontsize() for t in axes[0].get_xticklabels()]
    assert "<b>Figure 7.</b> caption" in tag
    assert re.search(r"width='(\d+)'", tag).group(1) == "900"  # 6 in at 150 CSS px per inch
    assert RENDER_DPI >= 300
    # drawn at print size (>= 7 pt); on screen a 7 pt label is 7 / 72 * 150 = 14.6 CSS px
    assert min(sizes) >= 7
    assert min(sizes) / 72 * 150 >= 14


# -- lesions one by one ------------------------------------------------------------------------


def _lesion_models_table() -> pd.DataFrame:
    """A hand-made group/lesion_models.tsv: a fitted lesion_r2star_pct model and a
    rim_core_r2star outcome with too few lesions."""
    from ironmap.cohort.lesions import LESION_MODEL_COLUMNS

    model = "lesion_r2star_pct ~ ... + (1 | participant)"
    fitted = [
        ("Intercept", -10.744, -13.3004, -8.1891, 1.72e-16),
        ("location[periventricular]", 4.9779, 4.1041, 5.8517, 6.0e-29),
        ("log2_volume", 3.241, 2.8837, 3.5983, 1.0e-70),
        ("disease_duration", 0.5318, 0.3509, 0.7128, 0.0312),
    ]
    rows = [
        {
            "outcome": "lesion_r2star_pct",
            "term": term,
            "estimate": estimate,
            "ci_low": low,
            "ci_high": high,
            "p": p,
            "n_lesions": 385,
            "n_participants": 40,
            "participant_sd": 2.9,
            "converged": True,
            "model": model,
            "note": "",
        }
        for term, estimate, low, high, p in fitted
    ]
    rows.append(
        {
            "outcome": "rim_core_r2star",
            "n_lesions": 12,
            "n_participants": 4,
            "note": "too few lesions (12) or participants (4) with this outcome; needs 20 and 5",
        }
    )
    return pd.DataFrame(rows).reindex(columns=LESION_MODEL_COLUMNS)


def _lesion_rows(subjects: pd.DataFrame) -> pd.DataFrame:
    """24 lesions, 4 in each of 6 MS participants: 10 periventricular, 14 deep; NAWM 20 1/s,
    lesion R2* 18 1/s (-10 %); rim-core contrast finite in 15 of them."""
    people = subjects.loc[subjects.group == "MS", "participant_id"].iloc[:6]
    rows = []
    for i in range(24):
        rows.append(
            {
                "participant_id": people.iloc[i % 6],
                "volume_ml": 0.05 * (i + 1),
                "r2star_median": 18.0,
                "r2star_core_median": 18.0,
                "r2star_nawm_median": 20.0,
                "r2star_rim_core_diff": float(i % 5) - 1.0 if i < 15 else np.nan,
                "location": "periventricular" if i < 10 else "deep_white_matter",
            }
        )
    return pd.DataFrame(rows)


def test_lesion_model_table_shows_the_models_numbers():
    from ironmap.report.lesions import lesion_model_table

    shown, flags = lesion_model_table(_lesion_models_table())
    assert shown.columns.tolist() == [
        "outcome",
        "term",
        "estimate [95 % CI]",
        "p",
        "n lesions",
        "n participants",
    ]
    assert shown.outcome.tolist()[:2] == ["lesion R2* relative to NAWM (%)", ""]
    location = shown.iloc[1]
    assert location.term == "periventricular vs deep white matter"
    assert location["estimate [95 % CI]"] == "4.98 [4.10, 5.85]"
    assert location.p == "<0.001"  # the one p format (report.tables.fmt_p)
    assert location["n lesions"] == "385"
    assert location["n participants"] == "40"
    assert shown.iloc[3].p == "0.031"
    assert shown.iloc[2]["estimate [95 % CI]"] == "3.24 [2.88, 3.60]"
    assert flags["p"].tolist() == [True, True, True, True, False]
    rim = shown.iloc[4]
    assert (rim.outcome, rim.term, rim["estimate [95 % CI]"]) == (
        "rim - core R2* (1/s)",
        "not fitted",
        "",
    )
    assert rim["n lesions"] == "12"


def test_lesion_figure_draws_every_lesion_by_location(cohort):
    from ironmap.cohort.lesions import lesion_outcomes
    from ironmap.report.lesions import lesion_figure

    _, _, result = cohort
    data = lesion_outcomes(_lesion_rows(result.subjects), result.subjects)
    assert data.lesion_r2star_pct.tolist() == pytest.approx([-10.0] * 24)
    with plotting():
        fig = lesion_figure(data, _lesion_models_table())
        left, right = fig.axes
        points = [len(c.get_offsets()) for c in left.collections]
        assert points == [10, 14]
        assert left.get_xscale() == "log"
        assert sum(p.get_height() for p in right.patches) == 15
        assert [line.get_label() for line in left.get_lines()][:2] == [
            "fitted, deep white matter",
            "fitted, periventricular",
        ]
        deep, peri = left.get_lines()[:2]
        assert peri.get_ydata()[0] - deep.get_ydata()[0] == pytest.approx(4.9779)


def test_report_has_the_lesion_section_only_with_lesion_tables(cohort, tmp_path):
    import dataclasses

    from ironmap.report.html import write_report

    _, _, result = cohort
    assert result.lesion_models.empty  # the hand-written cohort has no lesion tables
    page = result.report.read_text()  # the section only says why the models did not run
    assert (
        "<h2>Lesions one by one</h2><p>The lesion models were not run: no lesion tables "
        "(sub-*_lesions.tsv: no lesion masks). group/lesion_models.tsv is not written.</p>"
    ) in page
    with_lesions = dataclasses.replace(
        result, lesion_models=_lesion_models_table(), lesions=_lesion_rows(result.subjects)
    )
    page = write_report(tmp_path / "report.html", with_lesions).read_text()
    section = page[page.index("<h2>Lesions one by one</h2>") :]
    section = section[: section.index("<h2>", 5)]
    assert "24 lesions of 6 MS participants" in section
    assert "10 periventricular, 14 deep white matter" in section
    assert "median volume 0.625 mL" in section
    assert "<td class='sig'>4.98 [4.10, 5.85]</td>" in section
    assert "<td>385</td>" in section
    assert "<img alt='lesion R2* against volume by location" in section
    assert "too few lesions (12) or participants (4)" in section
    numbers = [int(n) for n in re.findall(r"<b>Figure (\d+)\.</b>", page)]
    assert numbers == list(range(1, len(numbers) + 1))


def test_group_stage_writes_the_qc_index_with_the_tables_numbers(cohort):
    from ironmap.cohort.qc import Z_FLAG
    from ironmap.io.derivatives import QC_INDEX
    from test_qc_index import FAILED, MIN_VOXELS, PARTICIPANT, Z_OVER, index_rows, sort_value

    _, out, _ = cohort
    qc = read_tsv(out / "group" / "participant_qc.tsv").set_index("participant_id")
    regions = read_tsv(out / "group" / "regions.tsv")
    rows = index_rows((out / QC_INDEX).read_text())
    names = [re.sub(r"<[^>]+>|\(no QC page\)", "", r[PARTICIPANT][1]).strip() for r in rows]
    assert sorted(names) == sorted(qc.index)
    both = regions[regions.region.isin(DEEP_GM) & (regions.hemisphere == "both")]
    over = (both.r2star_z.abs() > Z_FLAG).groupby(both.participant_id).sum()
    for row, pid in zip(rows, names, strict=True):
        assert sort_value(row[FAILED]) == pytest.approx(qc.at[pid, "failed_voxel_pct"])
        smallest = qc.loc[pid, [f"min_voxels_{r}" for r in DEEP_GM]].min()
        assert sort_value(row[MIN_VOXELS]) == smallest
        if both[both.participant_id == pid].r2star_z.notna().any():
            assert sort_value(row[Z_OVER]) == over[pid]
    assert f"href='{QC_INDEX}'" in (out / "report.html").read_text()
    assert "/qc" in (out / ".bidsignore").read_text().splitlines()
