"""Phase you can trust (issue 27): units, real/imaginary and complex inputs, sign, per-echo
offsets, on the real phase of ../shared/data/invivo_megre_crop (radians / 855 as shipped)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.special import ndtri

from ironmap.errors import InputError, IronmapWarning
from ironmap.fitting.gradients import field_map
from ironmap.io.phase import (
    bipolar_offset,
    detect_phase_units,
    load_complex,
    load_phase,
    load_real_imag,
)
from ironmap.workflows.fit import FitConfig, run_fit

from conftest import SHARED_DATA

CROP = SHARED_DATA / "invivo_megre_crop"
TE = np.array([0.004, 0.008, 0.012])
#: pi / max|stored phase| of the shipped crop.
SHIPPED_FACTOR = 855.0

needs_crop = pytest.mark.skipif(
    not (CROP / "phase.nii.gz").exists(), reason=f"shared test data missing: {CROP}"
)


@pytest.fixture(scope="module")
def crop():
    """Magnitudes, the stored phase, its radians and the affine of the real crop."""
    mag_img = nib.load(CROP / "mag.nii.gz")
    stored = nib.load(CROP / "phase.nii.gz").get_fdata(dtype=np.float32)
    rad = stored.astype(np.float64) * (np.pi / np.abs(stored).max())
    return mag_img.get_fdata(dtype=np.float32), stored, rad, mag_img.affine


def _save(path: Path, data: np.ndarray, affine: np.ndarray, sidecar: dict | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path


def _bids_echoes(folder: Path, part: str, data: np.ndarray, affine: np.ndarray) -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [
        _save(
            folder / f"sub-01_echo-{n + 1}_part-{part}_MEGRE.nii.gz",
            data[..., n].astype(np.float32),
            affine,
            {"EchoTime": float(te)},
        )
        for n, te in enumerate(TE)
    ]


def _agree(field: np.ndarray, reference: np.ndarray, tol_hz: float = 0.05) -> None:
    """The field maps (Hz) agree within ``tol_hz`` in 99.9 % of the voxels and in the median
    within a tenth of it (a pair whose step sits at +/-pi may wrap the other way)."""
    diff = np.abs(field - reference)[np.isfinite(reference)]
    assert np.all(np.isfinite(diff))
    assert np.quantile(diff, 0.999) < tol_hz
    assert np.median(diff) < tol_hz / 10


# -- unit detection ---------------------------------------------------------------------------


def _wrapped(rng: np.random.Generator, n: int = 20000) -> np.ndarray:
    return rng.uniform(-np.pi, np.pi, n)


def test_radians_siemens_and_unsigned_are_recognised(rng):
    phase = _wrapped(rng)
    assert detect_phase_units(phase, source="x").units == "rad"
    assert detect_phase_units(phase + np.pi, source="x").units == "rad"  # 0..2 pi
    signed = np.clip(np.round(phase / np.pi * 4096), -4096, 4095)
    units = detect_phase_units(signed, source="x")
    assert (units.units, units.scale, units.offset) == ("siemens", np.pi / 4096, 0.0)
    np.testing.assert_allclose(units.to_radians(signed), phase, atol=np.pi / 4096)
    unsigned = np.mod(np.round((phase + np.pi) / (2 * np.pi) * 4096), 4096)
    units = detect_phase_units(unsigned, source="x")
    assert units.units == "siemens_unsigned"
    assert np.abs(np.angle(np.exp(1j * (units.to_radians(unsigned) - phase)))).max() < 1e-3


def test_other_scales_are_read_from_the_range_with_a_warning(rng):
    phase = _wrapped(rng)
    with pytest.warns(IronmapWarning, match=r"x 0\.0174"):
        units = detect_phase_units(np.degrees(phase), source="deg.nii.gz")
    assert units.units == "scaled"
    np.testing.assert_allclose(units.scale, np.pi / 180, rtol=1e-3)
    with pytest.warns(IronmapWarning, match=r"small\.nii\.gz.*x 855"):
        units = detect_phase_units(phase / 855, source="small.nii.gz")
    np.testing.assert_allclose(units.scale, 855, rtol=1e-3)
    with pytest.warns(IronmapWarning, match=r"x 0\.001"):  # milliradians: not Siemens
        units = detect_phase_units(np.round(phase * 1000), source="mrad.nii.gz")
    np.testing.assert_allclose(units.scale, 1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda p: np.full_like(p, 0.3), id="constant"),
        pytest.param(np.exp, id="magnitude-like"),
        pytest.param(lambda p: 30 * ndtri((p + np.pi) / (2 * np.pi)), id="unwrapped-like"),
    ],
)
def test_what_is_not_wrapped_phase_is_refused_in_one_line(rng, values):
    with pytest.raises(InputError, match=r"^p\.nii\.gz: phase values .*wrapped") as err:
        detect_phase_units(values(_wrapped(rng)), source="p.nii.gz")
    assert "\n" not in str(err.value)


# -- the real crop ------------------------------------------------------------------------------


@needs_crop
def test_fit_with_the_shipped_phase_corrects_r2star(tmp_path):
    """The defect: the shipped phase (radians / 855) changed nothing and got the magnitude
    check; read as radians x 855 it moves the 99th percentile of |dR2*| by ~1.3 1/s and flags
    591 voxels, exactly as the phase rescaled to radians does."""
    fits = {}
    for name, phase in (("none", None), ("shipped", CROP / "phase.nii.gz")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_fit(
                FitConfig(
                    output_prefix=tmp_path / name,
                    magnitude=CROP / "mag.nii.gz",
                    echo_times=tuple(TE),
                    phase=phase,
                )
            )
        messages = [str(w.message) for w in caught]
        assert not any("negative magnitude" in m for m in messages), messages
        fits[name] = nib.load(tmp_path / f"{name}_R2starmap.nii.gz").get_fdata()
    assert any("phase.nii.gz" in m and "x 855" in m for m in messages), messages
    side = json.loads((tmp_path / "shipped_R2starmap.json").read_text())
    assert side["B0GradientCorrection"] is True
    assert side["PhaseUnits"] == "scaled"
    assert side["PhaseScale"] == pytest.approx(SHIPPED_FACTOR, rel=1e-3)
    assert side["B0GradientVoxelsFailed"] == 591
    both = np.isfinite(fits["none"]) & np.isfinite(fits["shipped"])
    change = np.percentile(np.abs(fits["shipped"] - fits["none"])[both], 99)
    assert 1.2 < change < 1.5


@needs_crop
@pytest.mark.parametrize(
    "variant",
    [
        "radians",
        "radians-0-2pi",
        "siemens",
        "siemens-unsigned",
        "shipped",
        "degrees",
        "real-imag",
        "complex",
        "sign-option",
        "sign-sidecar",
        "offset",
    ],
)
def test_vendor_zoo_gives_one_field_map(crop, tmp_path, variant):
    """The real crop's phase written in each convention gives the field map of its radians."""
    mag, _, rad, affine = crop
    reference = field_map(mag, rad, TE)
    kw: dict = {"echo_times_s": TE, "magnitude": mag}
    expect_warning = variant in ("shipped", "degrees")
    f = tmp_path / "phase.nii.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if expect_warning:
            warnings.filterwarnings("ignore", ".*phase values span", IronmapWarning)
        if variant == "radians":
            phase = load_phase(_save(f, rad.astype(np.float32), affine), **kw)
        elif variant == "radians-0-2pi":
            phase = load_phase(_save(f, np.mod(rad, 2 * np.pi).astype(np.float32), affine), **kw)
        elif variant == "siemens":
            ints = np.clip(np.round(rad / np.pi * 4096), -4096, 4095).astype(np.int16)
            phase = load_phase(_save(f, ints, affine), **kw)
        elif variant == "siemens-unsigned":
            ints = np.mod(np.round((rad + np.pi) / (2 * np.pi) * 4096), 4096).astype(np.uint16)
            phase = load_phase(_save(f, ints, affine), **kw)
        elif variant == "shipped":
            phase = load_phase(CROP / "phase.nii.gz", **kw)
        elif variant == "degrees":
            phase = load_phase(_save(f, np.degrees(rad).astype(np.float32), affine), **kw)
        elif variant == "real-imag":
            z = mag * np.exp(1j * rad)
            image, phase = load_real_imag(
                _bids_echoes(tmp_path / "anat", "real", z.real, affine),
                _bids_echoes(tmp_path / "anat", "imag", z.imag, affine),
            )
            np.testing.assert_allclose(image.data, mag, rtol=1e-5)
        elif variant == "complex":
            z = (mag * np.exp(1j * rad)).astype(np.complex64)
            image, phase = load_complex(_save(f, z, affine), echo_times_s=TE)
            np.testing.assert_allclose(image.data, mag, rtol=1e-5)
        elif variant == "sign-option":
            phase = load_phase(_save(f, (-rad).astype(np.float32), affine), sign="-1", **kw)
        elif variant == "sign-sidecar":
            phase = load_phase(
                _save(f, (-rad).astype(np.float32), affine, {"PhaseSign": -1}), **kw
            )
        elif variant == "offset":  # a receive-coil phase phi_0(r), the same at every echo
            x = np.indices(rad.shape[:3])[0]
            offset = (2.5 + 0.3 * x + 0.1 * np.sin(x))[..., None]
            phase = load_phase(_save(f, np.angle(np.exp(1j * (rad + offset))), affine), **kw)
    assert phase.data.dtype == np.float32
    assert phase.data.shape == mag.shape
    assert np.nanmax(np.abs(phase.data)) <= np.pi + 1e-6
    # Siemens integers quantise the phase to pi / 4096 (2 pi / 4096 unsigned): a pair's step by
    # up to 2 pi / 4096, 0.06 Hz at 4 ms echo spacing; the other variants are exact (float32)
    tol = 0.1 if variant.startswith("siemens") else 0.005
    _agree(field_map(mag, phase.data, TE), reference, tol_hz=tol)


@needs_crop
def test_shipped_phase_records_its_scale(crop):
    mag, *_ = crop
    with pytest.warns(IronmapWarning, match=r"phase\.nii\.gz.*radians = value x 855"):
        phase = load_phase(CROP / "phase.nii.gz", echo_times_s=TE, magnitude=mag)
    assert phase.sidecar() == {
        "PhaseUnits": "scaled",
        "PhaseScale": pytest.approx(SHIPPED_FACTOR, rel=1e-4),
        "PhaseSign": 1,
        "ReadoutPolarity": "unipolar",
    }


@needs_crop
def test_bipolar_offset_is_recovered_and_removed(crop, tmp_path):
    """An odd/even offset beta = constant + linear in space is estimated exactly (on top of
    whatever the real data hold) and the corrected field equals the unipolar data's."""
    mag, _, rad, affine = crop
    x, _, z = np.indices(rad.shape[:3])
    beta = 0.35 + 0.02 * x - 0.015 * z
    sign = (-1.0) ** np.arange(TE.size)
    bipolar = np.angle(np.exp(1j * (rad + sign * beta[..., None])))
    own = bipolar_offset(mag, rad, TE)
    found = bipolar_offset(mag, bipolar, TE)
    np.testing.assert_allclose(found - own, beta, atol=1e-6)
    kw: dict = {"echo_times_s": TE, "magnitude": mag, "readout": "bipolar"}
    corrected = load_phase(_save(tmp_path / "b.nii.gz", bipolar.astype(np.float32), affine), **kw)
    plain = load_phase(_save(tmp_path / "p.nii.gz", rad.astype(np.float32), affine), **kw)
    assert corrected.readout == "bipolar"
    _agree(field_map(mag, corrected.data, TE), field_map(mag, plain.data, TE), tol_hz=0.05)
    # uncorrected, the offset biases the field by several Hz
    biased = field_map(mag, bipolar, TE) - field_map(mag, rad, TE)
    assert np.nanmedian(np.abs(biased)) > 1.0


@needs_crop
def test_bipolar_needs_three_equally_spaced_echoes(crop):
    mag, _, rad, _ = crop
    with pytest.raises(InputError, match="equally spaced"):
        bipolar_offset(mag, rad, [0.004, 0.008, 0.014], source="p.nii.gz")


@needs_crop
@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda m, r: m, "neither radians", id="magnitude-as-phase"),
        pytest.param(lambda m, r: np.zeros_like(r), "neither radians", id="zeros"),
    ],
)
def test_real_crop_refusals_name_the_file(crop, tmp_path, make, match):
    mag, _, rad, affine = crop
    path = _save(tmp_path / "bad.nii.gz", make(mag, rad).astype(np.float32), affine)
    with pytest.raises(InputError, match=rf"^{tmp_path}/bad\.nii\.gz: .*{match}") as err:
        load_phase(path, echo_times_s=TE, magnitude=mag)
    assert "\n" not in str(err.value)


# -- docs ---------------------------------------------------------------------------------------


def test_docs_no_longer_say_phase_is_ignored_or_radians_only():
    root = Path(__file__).resolve().parents[1]
    regions = (root / "docs" / "regions.md").read_text()
    assert "`part-phase` files are ignored" not in regions
    conventions = (root / "docs" / "conventions.md").read_text()
    assert "PhaseUnits" in conventions
    assert "PhaseScale" in conventions


# -- the participant stage ------------------------------------------------------------------------


def _dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "t", "BIDSVersion": "1.8.0"})
    )
    return root / "sub-01" / "anat"


@needs_crop
def test_bids_real_imag_pairs_give_magnitude_and_phase(crop, tmp_path):
    from types import SimpleNamespace

    from ironmap.io import find_inputs
    from ironmap.workflows.session import _load_echoes, _phases_used

    mag, _, rad, affine = crop
    anat = _dataset(tmp_path / "bids")
    anat.parent.mkdir(parents=True)
    z = mag * np.exp(1j * rad)
    _bids_echoes(anat, "real", z.real, affine)
    _bids_echoes(anat, "imag", z.imag, affine)
    (inputs,) = find_inputs(tmp_path / "bids")
    assert [p.name for p in inputs.echoes] == [
        f"sub-01_echo-{n}_part-real_MEGRE.nii.gz" for n in (1, 2, 3)
    ]
    assert [p.name for p in inputs.imags] == [
        f"sub-01_echo-{n}_part-imag_MEGRE.nii.gz" for n in (1, 2, 3)
    ]
    assert _phases_used(inputs, SimpleNamespace(b0_correction="auto")) == inputs.imags
    image, phase = _load_echoes(inputs, SimpleNamespace(b0_correction="auto"))
    np.testing.assert_allclose(image.data, mag, rtol=1e-5)
    np.testing.assert_allclose(image.echo_times_s, TE)
    assert phase.units.units == "complex"
    _agree(field_map(mag, phase.data, TE), field_map(mag, rad, TE), tol_hz=0.005)
    # a real echo without its imaginary partner: ignored with a warning, no magnitudes found
    next(anat.glob("*echo-2_part-imag_MEGRE.nii.gz")).unlink()
    with (
        pytest.warns(IronmapWarning, match="without their part-imag partner"),
        pytest.raises(InputError, match="no \\*_MEGRE"),
    ):
        find_inputs(tmp_path / "bids")


@pytest.fixture(scope="module")
def scaled_phase_cohort(tmp_path_factory):
    """One simulated participant whose part-phase echoes hold radians / 855 (as the real crop
    ships), with the sign flipped and declared by ``PhaseSign`` in the sidecars."""
    from ironmap.workflows.simulate import SimulateConfig, run_simulate

    root = tmp_path_factory.mktemp("scaled") / "bids"
    run_simulate(SimulateConfig(root, n_hc=1, n_ms=0, seed=3, with_phase=True))
    for path in root.rglob("*_part-phase_MEGRE.nii.gz"):
        img = nib.load(path)
        rad = img.get_fdata()
        nib.save(nib.Nifti1Image((-rad / 855).astype(np.float32), img.affine), path)
        side = path.with_name(path.name.replace(".nii.gz", ".json"))
        side.write_text(json.dumps({**json.loads(side.read_text()), "PhaseSign": -1}))
    return root


def test_participant_stage_reads_scaled_phase_once(scaled_phase_cohort, tmp_path, monkeypatch):
    """The participant stage detects the scale (warning naming the factor), applies the sign of
    the sidecar, records both in the R2* sidecar and loads the phase once for the field-gradient
    correction and the lesions' field."""
    import ironmap.workflows.session as session
    from ironmap.workflows.participant import ParticipantConfig, run_participant

    calls = []
    real_load = session.load_phase

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(session, "load_phase", spy)
    (result,) = run_participant(ParticipantConfig(scaled_phase_cohort, tmp_path / "out"))
    assert result.status == "done"
    assert any("x 855" in w for w in result.warnings), result.warnings
    assert not any("negative magnitude" in w for w in result.warnings)
    assert len(calls) == 1
    side = json.loads(next((tmp_path / "out").rglob("*_R2starmap.json")).read_text())
    assert side["PhaseUnits"] == "scaled"
    assert side["PhaseScale"] == pytest.approx(855, rel=2e-3)
    assert side["PhaseSign"] == -1
    # as with the radians (test_gradients.py): only voxels beside the air cavities fail
    assert 0 < side["B0GradientVoxelsFailed"] < 1000


@needs_crop
def test_fit_command_reads_a_complex_image_and_the_sign_option(crop, tmp_path):
    """``ironmap fit COMPLEX`` and ``--phase FLIPPED --phase-sign -1`` give the R2* of the phase
    in radians (the correction does not depend on the sign; the sidecar records it)."""
    from ironmap.cli import main

    mag, _, rad, affine = crop
    te = ["--te", *map(str, TE)]
    complex_path = _save(
        tmp_path / "z.nii.gz", (mag * np.exp(1j * rad)).astype(np.complex64), affine
    )
    flipped = _save(tmp_path / "flipped.nii.gz", (-rad).astype(np.float32), affine)
    radians = _save(tmp_path / "rad.nii.gz", rad.astype(np.float32), affine)
    mag_path = _save(tmp_path / "mag.nii.gz", mag, affine)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", IronmapWarning
        )  # voxels that do not decay (asserted elsewhere)
        assert main(["fit", str(complex_path), *te, "-o", str(tmp_path / "z"), "-q"]) == 0
        for name, phase, sign in (("f", flipped, "-1"), ("r", radians, "auto")):
            args = [str(mag_path), *te, "--phase", str(phase), "--phase-sign", sign]
            assert main(["fit", *args, "-o", str(tmp_path / name), "-q"]) == 0
    r2 = {n: nib.load(tmp_path / f"{n}_R2starmap.nii.gz").get_fdata() for n in "zfr"}
    np.testing.assert_allclose(r2["f"], r2["r"], rtol=1e-5, equal_nan=True)
    both = np.isfinite(r2["z"]) & np.isfinite(r2["r"])
    assert both.sum() > 0.9 * np.isfinite(r2["r"]).sum()
    assert np.percentile(np.abs(r2["z"] - r2["r"])[both], 99) < 0.01
    sides = {n: json.loads((tmp_path / f"{n}_R2starmap.json").read_text()) for n in "zfr"}
    assert (sides["z"]["PhaseUnits"], sides["f"]["PhaseSign"], sides["r"]["PhaseSign"]) == (
        "complex",
        -1,
        1,
    )
    assert sides["z"]["B0GradientVoxelsFailed"] == sides["r"]["B0GradientVoxelsFailed"] == 591


def test_declared_radians_are_trusted_within_one_cycle_and_refused_beyond():
    """A sidecar's ``"Units": "rad"`` decides a phase that spans little of the cycle unevenly
    (a smooth field without receive offset), which the values alone cannot; values beyond one
    cycle contradict it and are refused."""
    small = np.random.default_rng(0).normal(0.0, 0.1, 1000)  # a field peaked about 0
    with pytest.raises(InputError, match="do not fill"):
        detect_phase_units(small, source="p.nii.gz")
    assert detect_phase_units(small, source="p.nii.gz", declared="rad").units == "rad"
    with pytest.raises(InputError, match="declares Units 'rad'"):
        detect_phase_units(small * 20, source="p.nii.gz", declared="rad")
