"""Segmentations as users have them: a FreeSurfer subject folder (``mri/aseg.mgz`` on the
conformed 256^3 1 mm LIA grid, ``mri/orig.mgz``) and a SynthSeg output (``*_synthseg.nii.gz``),
read without conversion; regional R2* equal to those of the equivalent BIDS dseg.

The fixture draws one simulated healthy control (the fastest protocol) with a T1w, and writes:

- ``bids``: the BIDS dataset with the simulator's dseg (+ ``.tsv``) in
  ``derivatives/segmentation`` (the reference);
- ``raw``: the same dataset without its derivatives (lesion mask in the raw ``anat`` folder);
- ``fs/sub-001/mri/{aseg,orig}.mgz``: the labels as FreeSurfer's aseg would hold them (no
  substantia nigra, red nucleus or dentate: those voxels are brain stem and cerebellar white
  matter, as in aseg), nearest-neighbour resampled to the conformed grid FreeSurfer makes:
  256^3, 1 mm, LIA, its centre (voxel 128) at the centre of the T1w, so its voxels are half a
  voxel off the simulator's (as ``mri_convert --conform`` puts them);
- the same conformed labels as a BIDS dseg (NIfTI, no ``.tsv``: aseg codes), the exact
  equivalent of ``aseg.mgz``;
- ``synthseg/sub-001/anat/sub-001_T1w_synthseg.nii.gz``: the aseg-like labels on the T1w grid.
"""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ironmap.errors import InputError
from ironmap.io import find_inputs
from ironmap.regions import DEEP_GM
from ironmap.segmentation.sources import read_segmentation_source, segmentation_source
from ironmap.workflows.participant import ParticipantConfig, run_participant

#: Structures FreeSurfer, FastSurfer and SynthSeg segment (compared with the BIDS dseg).
SEGMENTED = ("thalamus", "caudate", "putamen", "pallidum")
#: Structures they do not segment (left to the hybrid mode's atlas).
NOT_SEGMENTED = ("substantia_nigra", "red_nucleus", "dentate_nucleus")
#: Simulator codes of those nuclei -> the aseg code of the tissue that holds them in aseg.
_ASEG_OF_NUCLEUS = {101: 16, 102: 16, 103: 16, 104: 16, 105: 7, 106: 46}

#: FreeSurfer's conformed grid: 256^3 voxels of 1 mm, LIA (i: right->left, j: superior->
#: inferior, k: posterior->anterior).
CONFORMED_SHAPE = (256, 256, 256)
_LIA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def conformed_affine(centre: np.ndarray) -> np.ndarray:
    """vox2ras (scanner RAS) of a conformed volume whose voxel 128 sits at ``centre`` (mm)."""
    affine = np.eye(4)
    affine[:3, :3] = _LIA
    affine[:3, 3] = centre - _LIA @ np.full(3, 128.0)
    return affine


def resample_nearest(data: np.ndarray, affine: np.ndarray, shape, target_affine: np.ndarray):
    """``data`` on the target grid, nearest neighbour (ties upwards), 0 outside."""
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    transform = np.linalg.inv(affine) @ target_affine
    src = transform[:3, :3] @ ijk + transform[:3, 3:4]
    src = np.floor(src + 0.5 + 1e-6).astype(np.int64)
    inside = np.all((src >= 0) & (src < np.array(data.shape)[:, None]), axis=0)
    out = np.zeros(int(np.prod(shape)), dtype=data.dtype)
    out[inside] = data[src[0, inside], src[1, inside], src[2, inside]]
    return out.reshape(shape)


def aseg_like(labels: np.ndarray) -> np.ndarray:
    """The simulator's labels with its nuclei given to the tissue aseg puts them in."""
    out = labels.astype(np.int32)
    for nucleus, tissue in _ASEG_OF_NUCLEUS.items():
        out[labels == nucleus] = tissue
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    from ironmap.simulate.bids import SEGMENTATION_DIR, write_dataset_files, write_subject
    from ironmap.simulate.cohort import draw_site_panel, participants_table
    from ironmap.simulate.subject import generate_subject

    tmp = tmp_path_factory.mktemp("freesurfer")
    subject = draw_site_panel(group="HC")[0]  # two echoes: the fastest to fit
    data = generate_subject(subject, with_t1w=True)
    bids = tmp / "bids"
    write_dataset_files(bids, participants_table([subject]))
    written = write_subject(bids, subject, data)
    sub = subject.participant_id
    raw = tmp / "raw"
    shutil.copytree(bids, raw, ignore=shutil.ignore_patterns("derivatives"))
    shutil.copy(written[-1], raw / sub / "anat" / written[-1].name)  # the lesion mask

    anat_affine = data.anatomy.affine
    centre = anat_affine[:3, :3] @ ((np.array(data.anatomy.labels.shape) - 1) / 2)
    centre += anat_affine[:3, 3]
    conformed = conformed_affine(centre)
    labels = aseg_like(data.anatomy.labels)
    aseg = resample_nearest(labels, anat_affine, CONFORMED_SHAPE, conformed)
    t1w = np.clip(data.t1w, 0, 255).astype(np.float32)
    orig = resample_nearest(t1w, anat_affine, CONFORMED_SHAPE, conformed).astype(np.uint8)
    mri = tmp / "fs" / sub / "mri"
    mri.mkdir(parents=True)
    nib.save(nib.MGHImage(aseg, conformed), mri / "aseg.mgz")
    nib.save(nib.MGHImage(orig, conformed), mri / "orig.mgz")
    # the exact equivalent as a BIDS dseg (aseg codes, no .tsv)
    conformed_bids = tmp / "conformed_dseg"
    shutil.copytree(raw, conformed_bids)
    seg = conformed_bids / SEGMENTATION_DIR / sub / "anat"
    seg.mkdir(parents=True)
    nib.save(nib.Nifti1Image(aseg, conformed), seg / f"{sub}_dseg.nii.gz")
    synthseg = tmp / "synthseg" / sub / "anat"
    synthseg.mkdir(parents=True)
    nib.save(nib.Nifti1Image(labels, anat_affine), synthseg / f"{sub}_T1w_synthseg.nii.gz")
    left_thalamus = np.argwhere(data.anatomy.labels == 10).mean(axis=0)
    return {
        "tmp": tmp,
        "bids": bids,
        "raw": raw,
        "conformed_bids": conformed_bids,
        "sub": sub,
        "thalamus_centre_mm": anat_affine[:3, :3] @ left_thalamus + anat_affine[:3, 3],
    }


def _run(bids, out, **options):
    results = run_participant(ParticipantConfig(bids_dir=bids, output_dir=out, **options))
    assert [r.status for r in results] == ["done"], [r.error for r in results]
    sub = results[0].name
    table = pd.read_csv(out / sub / "anat" / f"{sub}_regions.tsv", sep="\t")
    return table.set_index(["region", "hemisphere"]), results[0].warnings


@pytest.fixture(scope="module")
def reference(datasets):
    return _run(datasets["bids"], datasets["tmp"] / "out_bids")[0]


def test_freesurfer_subject_folder_is_found_in_derivatives_and_freesurfer_dir(datasets):
    """``--derivatives DIR`` and ``--freesurfer-dir DIR`` with ``DIR/sub-<label>/mri/aseg.mgz``:
    the aseg is the segmentation (aseg codes, no .tsv), ``orig.mgz`` the image it was made on."""
    fs = datasets["tmp"] / "fs"
    for found in (
        find_inputs(datasets["raw"], derivatives=[fs]),
        find_inputs(datasets["raw"], freesurfer_dirs=[fs]),
    ):
        (inputs,) = found
        assert inputs.dseg == fs / datasets["sub"] / "mri" / "aseg.mgz"
        assert inputs.dseg_tsv is None
        assert inputs.dseg_image == fs / datasets["sub"] / "mri" / "orig.mgz"
    # the registration helper's hook: labels and the image they were made on, in scanner space
    source = segmentation_source(inputs)
    assert source.kind == "freesurfer"
    assert source.lut is None
    read = read_segmentation_source(source)
    assert read.labels.shape == read.image.shape == CONFORMED_SHAPE
    assert nib.aff2axcodes(read.affine) == nib.aff2axcodes(read.image_affine) == ("L", "I", "A")
    np.testing.assert_allclose(read.affine, read.image_affine)
    # orig.mgz's T1w and aseg.mgz's thalamus where the simulator put them
    thalamus = np.argwhere(read.labels == 10).mean(axis=0)
    centre = read.affine[:3, :3] @ thalamus + read.affine[:3, 3]
    truth = datasets["thalamus_centre_mm"]
    np.testing.assert_allclose(centre, truth, atol=0.6)


@pytest.fixture(scope="module")
def freesurfer_run(datasets):
    """The raw dataset with ``--freesurfer-dir fs``: ``(regions table, warnings)``; not
    registered (``auto`` would register orig.mgz, another acquisition, to the GRE: that is
    tests/test_coregister.py's), so the numbers compare the reading of .mgz alone."""
    tmp = datasets["tmp"]
    return _run(
        datasets["raw"], tmp / "out_fs", freesurfer_dir=tmp / "fs", register_segmentation="never"
    )


def test_aseg_mgz_gives_the_regional_r2star_of_the_same_labels_as_a_bids_dseg(
    datasets, freesurfer_run
):
    """The conformed LIA aseg.mgz read through its vox2ras: the same numbers as the same array
    written as a NIfTI dseg (aseg codes)."""
    equivalent, _ = _run(datasets["conformed_bids"], datasets["tmp"] / "out_conformed")
    table, _ = freesurfer_run
    for region in SEGMENTED:
        for hemi in ("left", "right", "both"):
            row = table.loc[(region, hemi)]
            assert row.n_voxels == equivalent.loc[(region, hemi)].n_voxels > 0
            assert row.r2star_median == pytest.approx(
                equivalent.loc[(region, hemi)].r2star_median, rel=1e-9
            )
    assert set(table.loc[list(SEGMENTED)].alignment) == {"ok"}


def test_aseg_mgz_within_1_percent_of_the_bids_dseg(freesurfer_run, reference):
    """Against the simulator's own 1 mm dseg (the conformed grid is half a voxel off it): basal
    ganglia and thalamus within 1 % (measured: 0.5 %); the nuclei aseg lacks are NaN rows,
    named in a warning."""
    table, messages = freesurfer_run
    for region in SEGMENTED:
        for hemi in ("left", "right", "both"):
            got, want = table.loc[(region, hemi)], reference.loc[(region, hemi)]
            assert got.r2star_median == pytest.approx(want.r2star_median, rel=0.01), (region, hemi)
    assert_missing_nuclei(table, messages)


def assert_missing_nuclei(table: pd.DataFrame, messages: list[str]) -> None:
    """SN/RN/DN without ``--segmentation hybrid``: NaN rows, 0 voxels, and one warning naming
    each of them and the option that fills them from the atlas (tests/test_hybrid.py)."""
    for region in NOT_SEGMENTED:
        for hemi in ("left", "right", "both"):
            assert np.isnan(table.loc[(region, hemi)].r2star_median)
            assert table.loc[(region, hemi)].n_voxels == 0
    named = [m for m in messages if "--segmentation hybrid" in m]
    assert len(named) == 1, messages
    for region in NOT_SEGMENTED:
        assert region.replace("_", " ") in named[0]


def test_synthseg_output_gives_the_regional_r2star_of_the_bids_dseg(datasets, reference):
    """``*_synthseg.nii.gz`` (FreeSurfer LUT codes, no .tsv) found in a derivatives folder:
    basal ganglia and thalamus as with the BIDS dseg of the same labels; the nuclei SynthSeg
    does not segment are NaN rows with a warning that names them (the hybrid mode's hook)."""
    tmp = datasets["tmp"]
    (inputs,) = find_inputs(datasets["raw"], derivatives=[tmp / "synthseg"])
    assert inputs.dseg.name == f"{datasets['sub']}_T1w_synthseg.nii.gz"
    assert segmentation_source(inputs).kind == "synthseg"
    table, messages = _run(datasets["raw"], tmp / "out_synthseg", derivatives=(tmp / "synthseg",))
    for region in SEGMENTED:
        for hemi in ("left", "right", "both"):
            got, want = table.loc[(region, hemi)], reference.loc[(region, hemi)]
            assert got.r2star_median == pytest.approx(want.r2star_median, rel=1e-9), (region, hemi)
    assert_missing_nuclei(table, messages)
    assert set(DEEP_GM) == set(SEGMENTED) | set(NOT_SEGMENTED)


def test_load_volume_reads_mgz_with_its_scanner_vox2ras(tmp_path):
    """An .mgz is read like a NIfTI: its data and nibabel's vox2ras (scanner RAS, not the
    tkr-RAS FreeSurfer's surfaces use)."""
    from ironmap.io import load_volume

    affine = conformed_affine(np.array([3.0, -12.0, 20.0]))
    labels = np.zeros((8, 9, 10), dtype=np.int32)
    labels[2, 3, 4] = 10
    path = tmp_path / "aseg.mgz"
    nib.save(nib.MGHImage(labels, affine), path)
    data, got = load_volume(path)
    np.testing.assert_array_equal(data, labels)
    np.testing.assert_allclose(got, affine, atol=1e-5)
    tkr = nib.load(path).header.get_vox2ras_tkr()
    assert not np.allclose(got, tkr, atol=1e-3)  # the centre is not at the origin
    # a damaged .mgz: one line naming the file
    truncated = tmp_path / "truncated.mgz"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match=r"truncated\.mgz: truncated or corrupt image data"):
        load_volume(truncated)
    truncated.write_bytes(path.read_bytes()[:10])  # not even the header
    with pytest.raises(InputError, match=r"truncated\.mgz: cannot read as FreeSurfer MGH \("):
        load_volume(truncated)


def test_a_freesurfer_folder_in_derivatives_is_not_ignored(tmp_path):
    """Layouts: ``sub-<label>/mri/aseg.mgz`` (preferred to ``aparc+aseg.mgz``), FastSurfer's
    ``aparc.DKTatlas+aseg.deep.mgz`` alone, a session's ``sub-<label>_ses-<label>`` folder."""
    raw = tmp_path / "raw"
    for sub, ses in (("01", None), ("02", None), ("03", "a"), ("04", None)):
        anat = raw / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
        anat.mkdir(parents=True)
        name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
        (anat / f"{name}_echo-1_MEGRE.nii.gz").write_bytes(b"")
    fs = tmp_path / "fs"
    for folder, files in (
        ("sub-01", ("aparc+aseg.mgz", "aseg.mgz", "orig.mgz", "T1.mgz")),
        ("sub-02", ("aparc.DKTatlas+aseg.deep.mgz", "orig.mgz")),
        ("sub-03_ses-a", ("aseg.mgz", "T1.mgz")),
    ):
        (fs / folder / "mri").mkdir(parents=True)
        for f in files:
            (fs / folder / "mri" / f).write_bytes(b"")
    fmriprep = tmp_path / "fmriprep"  # fMRIPrep keeps FreeSurfer in sourcedata/freesurfer
    (fmriprep / "sourcedata" / "freesurfer" / "sub-04" / "mri").mkdir(parents=True)
    (fmriprep / "sourcedata" / "freesurfer" / "sub-04" / "mri" / "aseg.mgz").write_bytes(b"")
    found = {i.subject: i for i in find_inputs(raw, derivatives=[fs, fmriprep])}
    assert found["04"].dseg == fmriprep / "sourcedata" / "freesurfer" / "sub-04/mri/aseg.mgz"
    assert found["01"].dseg == fs / "sub-01" / "mri" / "aseg.mgz"
    assert found["01"].dseg_image == fs / "sub-01" / "mri" / "orig.mgz"
    assert found["02"].dseg == fs / "sub-02" / "mri" / "aparc.DKTatlas+aseg.deep.mgz"
    assert found["03"].dseg == fs / "sub-03_ses-a" / "mri" / "aseg.mgz"
    assert found["03"].dseg_image == fs / "sub-03_ses-a" / "mri" / "T1.mgz"
    assert all(i.dseg_tsv is None for i in found.values())
    kinds = {s: segmentation_source(i).kind for s, i in found.items()}
    assert kinds == {
        "01": "freesurfer",
        "02": "fastsurfer",
        "03": "freesurfer",
        "04": "freesurfer",
    }


def test_parcellated_cortex_of_aparc_aseg_counts_as_cortex():
    """aparc+aseg.mgz, FastSurfer's aparc.DKTatlas+aseg.deep.mgz and ``mri_synthseg --parc``
    replace cortex (3, 42) by parcels (1000-1035, 2000-2035): cortical GM, ICV and brain
    volumes still count them (1 mm voxels: 1 uL each)."""
    from ironmap.regions import region_codes, volumes

    labels = np.zeros((10, 10, 10), dtype=np.int32)
    labels[0, 0, :3] = 1005  # ctx-lh-cuneus
    labels[1, 0, :2] = 2010  # ctx-rh-isthmuscingulate
    labels[2, 0, :1] = 3
    labels[3, 0, :4] = 2  # cerebral white matter
    labels[4, 0, :5] = 41
    codes = region_codes(None)
    assert {1005, 3} <= set(codes.codes("cortex", "left"))
    assert 2010 in codes.codes("cortex", "right")
    subject, _ = volumes(labels, np.eye(4), codes, participant_id="sub-01")
    assert subject["cortical_gm_ml"] == pytest.approx(6e-3)
    assert subject["icv_ml"] == pytest.approx(15e-3)
    assert subject["brain_ml"] == pytest.approx(15e-3)


def test_freesurfer_dir_option_reaches_the_discovery(datasets, tmp_path, capsys):
    """``ironmap run ... --freesurfer-dir DIR``: a missing DIR is a one-line error naming it."""
    from ironmap.cli import main

    missing = tmp_path / "no_subjects_dir"
    argv = ["run", str(datasets["raw"]), str(tmp_path / "out"), "participant"]
    assert main([*argv, "--freesurfer-dir", str(missing)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"ironmap: error: {missing}: No such directory (given with --freesurfer-dir)"
    ]


def test_participant_qc_and_methods_name_freesurfer_and_synthseg(tmp_path):
    """participant_qc.tsv's sources from the provenance inputs: an aseg.mgz or a *_synthseg
    output is the participant's own segmentation (was: no source at all, so the Methods said
    nothing of where the regions came from), its labels FreeSurfer LUT codes of that tool."""

    from test_methods import _text, qc_of_inputs

    inputs = {
        "sub-01": {"aseg.mgz": "x"},
        "sub-02": {"sub-02_T1w_synthseg.nii.gz": "x", "sub-02_label-lesion_mask.nii.gz": "x"},
        "sub-03": {"sub-03_dseg.nii.gz": "x"},
    }
    qc = qc_of_inputs(tmp_path, inputs)
    assert list(qc["segmentation_source"]) == ["dseg", "dseg", "dseg"]
    assert list(qc["label_source"]) == ["freesurfer", "synthseg", "aseg codes"]
    assert list(qc["lesion_mask"]) == [False, True, False]
    text = _text(qc.assign(site="a", group="HC", phenotype=np.nan))
    assert (
        "from each participant's own segmentation (FreeSurfer or FastSurfer aseg; Fischl et al. "
        "2002; Henschel et al. 2020), labels read as FreeSurfer LUT codes, resampled to the R2* "
        "grid (n = 1)"
    ) in text
    assert (
        "(SynthSeg; Billot et al. 2023), labels read as FreeSurfer LUT codes, resampled to the "
        "R2* grid (n = 1)"
    ) in text


def test_several_segmentations_warn_and_freesurfer_dir_wins(tmp_path):
    """A BIDS dseg and a FreeSurfer folder for the same participant: the dseg is used, with a
    warning naming both; given with ``--freesurfer-dir``, the FreeSurfer folder is used."""
    from ironmap.errors import IronmapWarning

    anat = tmp_path / "raw" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-01_echo-1_MEGRE.nii.gz").write_bytes(b"")
    seg = tmp_path / "seg" / "sub-01" / "anat"
    seg.mkdir(parents=True)
    (seg / "sub-01_dseg.nii.gz").write_bytes(b"")
    (seg / "sub-01_dseg.tsv").write_bytes(b"")
    mri = tmp_path / "fs" / "sub-01" / "mri"
    mri.mkdir(parents=True)
    (mri / "aseg.mgz").write_bytes(b"")
    roots = [tmp_path / "seg", tmp_path / "fs"]
    with pytest.warns(
        IronmapWarning,
        match=r"2 segmentation \(dseg\) files \(sub-01_dseg.nii.gz, "
        r"aseg.mgz\); using sub-01_dseg.nii.gz",
    ):
        (inputs,) = find_inputs(tmp_path / "raw", derivatives=roots)
    assert inputs.dseg == seg / "sub-01_dseg.nii.gz"
    assert inputs.dseg_tsv == seg / "sub-01_dseg.tsv"
    assert inputs.dseg_image is None
    with pytest.warns(IronmapWarning, match=r"using aseg.mgz"):
        (inputs,) = find_inputs(
            tmp_path / "raw", derivatives=[tmp_path / "seg"], freesurfer_dirs=[tmp_path / "fs"]
        )
    assert inputs.dseg == mri / "aseg.mgz"
    assert inputs.dseg_tsv is None
