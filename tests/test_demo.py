"""``ironmap demo --quick`` end to end (slow: ~30 s; run with ``make test-slow``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ironmap.cli import main


@pytest.mark.slow
def test_quick_demo_runs_resumes_and_recovers_r2star(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--quick"]) == 0
    first = capsys.readouterr().out
    assert "12 fitted, 0 already done" in first
    truth = json.loads((out / "bids_truth.json").read_text())
    assert len(truth["subjects"]) == 12
    # resume: nothing is recomputed
    assert main(["demo", str(out), "--quick"]) == 0
    assert "0 fitted, 12 already done" in capsys.readouterr().out
    # in voxels lying wholly inside a structure, the maps recover its true R2* (x site bias)
    for sub, t in truth["subjects"].items():
        r2 = nib.load(out / "ironmap" / sub / "anat" / f"{sub}_R2starmap.nii.gz")
        seg = out / "bids" / "derivatives" / "segmentation" / sub / "anat"
        labels = np.asarray(nib.load(seg / f"{sub}_dseg.nii.gz").dataobj)
        lesion = np.asarray(nib.load(seg / f"{sub}_label-lesion_mask.nii.gz").dataobj) > 0
        for region, codes in {"nawm": (2, 41), "putamen": (12, 51), "thalamus": (10, 49)}.items():
            inside = _pure_voxels(np.isin(labels, codes) & ~lesion, r2.shape, r2.affine)
            got = np.nanmedian(r2.get_fdata()[inside])
            expected = t["regions"][region]["both"]["r2star_mean"] * t["site_r2star_bias"]
            assert got == pytest.approx(expected, rel=0.03), (sub, region)


def _pure_voxels(fine_mask: np.ndarray, shape, affine) -> np.ndarray:
    """Acquisition voxels (integer multiples of the 1 mm grid) wholly inside ``fine_mask``."""
    f = np.round(np.abs(np.diag(affine)[:3])).astype(int)
    crop = fine_mask[: shape[0] * f[0], : shape[1] * f[1], : shape[2] * f[2]]
    blocks = crop.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2])
    return blocks.all(axis=(1, 3, 5))
