"""Progress on terminals (and nowhere else), -q, and one warning line per participant."""

from __future__ import annotations

import io
import logging

import pytest

from ironmap.cli import build_parser, main
from ironmap.parallel import map_ordered
from ironmap.parallel.progress import Progress, format_seconds, progress_output
from ironmap.workflows.participant import ParticipantResult, warning_lines
from test_participant import _dataset


class FakeTTY(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _square(x: int) -> int:
    return x * x


def test_progress_line_counts_elapsed_and_eta_on_a_terminal():
    stream, clock = FakeTTY(), Clock()
    with Progress(3, desc="participants", stream=stream, clock=clock) as progress:
        assert progress.enabled
        clock.now += 10
        progress.update()
        clock.now += 20
        progress.update(failed=True)
        clock.now += 95
        progress.update()
    assert stream.getvalue().split("\r")[1:] == [
        "participants: 0/3 done, 0 failed, elapsed 0:00\x1b[K",
        "participants: 1/3 done, 0 failed, elapsed 0:10, ETA 0:20\x1b[K",
        "participants: 2/3 done, 1 failed, elapsed 0:30, ETA 0:15\x1b[K",
        "participants: 3/3 done, 1 failed, elapsed 2:05\x1b[K",
        "participants: 3/3 done, 1 failed, elapsed 2:05\x1b[K\n",  # left on the terminal
    ]


def test_progress_is_silent_without_a_terminal_or_when_turned_off():
    plain = io.StringIO()
    with Progress(2, desc="x", stream=plain) as progress:
        progress.update()
    assert not progress.enabled
    assert plain.getvalue() == ""
    tty = FakeTTY()
    with progress_output(enabled=False), Progress(2, desc="x", stream=tty) as progress:
        progress.update()
    assert tty.getvalue() == ""
    with progress_output(enabled=True, stream=plain), Progress(1, desc="x") as progress:
        progress.update()
    assert plain.getvalue().endswith("x: 1/1 done, 0 failed, elapsed 0:00\x1b[K\n")


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.6, 61, 3600, 3725)] == [
        "0:00",
        "1:00",
        "1:01",
        "1:00:00",
        "1:02:05",
    ]


def test_map_ordered_shows_progress_on_a_terminal_and_logs_it_elsewhere(caplog):
    tty = FakeTTY()
    with progress_output(stream=tty), caplog.at_level(logging.INFO, logger="ironmap"):
        assert map_ordered(_square, range(4), desc="sq", failed=lambda r: r == 4) == [0, 1, 4, 9]
    assert "\rsq: 4/4 done, 1 failed, elapsed" in tty.getvalue()
    assert "sq:" not in caplog.text  # the terminal shows it: not logged twice
    caplog.clear()
    plain = io.StringIO()
    with progress_output(stream=plain), caplog.at_level(logging.INFO, logger="ironmap"):
        map_ordered(_square, range(4), desc="sq")
    assert plain.getvalue() == ""
    assert "sq: 4/4 done, 0 failed, elapsed" in caplog.text


@pytest.mark.parametrize("argv", [["-q", "demo", "d"], ["demo", "d", "-q"], ["demo", "d"]])
def test_quiet_flag_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).quiet == ("-q" in argv)


@pytest.mark.parametrize("flags", [[], ["-q"], ["-v"]])
def test_run_shows_progress_on_a_terminal_unless_quiet_or_verbose(
    tmp_path, monkeypatch, capsys, flags
):
    root = _dataset(tmp_path)
    tty = FakeTTY()
    monkeypatch.setattr("sys.stderr", tty)
    out = tmp_path / "out"
    assert (
        main(["run", str(root), str(out), "participant", "--participant-label", "01", *flags]) == 0
    )
    assert ("\rparticipants: 1/1 done, 0 failed, elapsed" in tty.getvalue()) == (flags == [])
    assert ("\r" in tty.getvalue()) == (flags == [])  # -v: log lines, no line rewritten
    if flags == ["-v"]:  # the detailed log, one line per participant
        assert "ironmap: participants: 1/1 done, 0 failed, elapsed" in tty.getvalue()
    capsys.readouterr()


def _result(name: str, *messages: str) -> ParticipantResult:
    return ParticipantResult(name, "done", warnings=list(messages))


def test_one_warning_line_per_participant():
    results = [
        _result("sub-01"),
        _result("sub-02", "sub-02: 300 of 1,000 voxels (30.0 %) could not be fitted"),
        _result("sub-03", "sub-03: first", "a second without the name", "sub-03: third"),
    ]
    assert warning_lines(results) == [
        "sub-02: 300 of 1,000 voxels (30.0 %) could not be fitted",
        "sub-03: 3 warnings: first; a second without the name; third (-v: in full)",
    ]
    assert warning_lines(results, verbose=True) == [
        "sub-02: 300 of 1,000 voxels (30.0 %) could not be fitted",
        "sub-03: first",
        "a second without the name",
        "sub-03: third",
    ]


def test_the_summary_line_keeps_the_gist_of_each_warning():
    long = "sub-04: no usable R2* voxels in " + ", ".join(["thalamus/left"] * 20)
    result = _result(
        "sub-04",
        "/data/bids/sub-04/anat/sub-04_echo-2_part-mag_MEGRE.nii.gz: 64 negative magnitude "
        "voxel value(s); those voxels are marked failed",
        "sub-04: 72 of 2,048 voxels (3.5 %) could not be fitted (bad signal 72); see "
        "sub-04_desc-failed_mask.nii.gz",
        f"{long}; those rows are NaN",
    )
    (line,) = warning_lines([result])
    assert line == (
        "sub-04: 3 warnings: sub-04_echo-2_part-mag_MEGRE.nii.gz: 64 negative magnitude voxel "
        "value(s); 72 of 2,048 voxels (3.5 %) could not be fitted (bad signal 72); "
        f"{long.removeprefix('sub-04: ')[:77]}... (-v: in full)"
    )


@pytest.mark.parametrize("verbose", [False, True])
def test_run_prints_one_warning_line_per_participant(tmp_path, monkeypatch, capsys, verbose):
    results = [
        _result("sub-01", "sub-01: a", "sub-01: b", "sub-01: c"),
        _result("sub-02", "sub-02: only"),
    ]
    monkeypatch.setattr("ironmap.workflows.participant.run_participant", lambda config: results)
    argv = ["run", str(tmp_path / "bids"), str(tmp_path / "out"), "participant"]
    assert main(argv + ["-v"] * verbose) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    if verbose:
        assert err == [
            "ironmap: warning: sub-01: a",
            "ironmap: warning: sub-01: b",
            "ironmap: warning: sub-01: c",
            "ironmap: warning: sub-02: only",
        ]
    else:
        assert err == [
            "ironmap: warning: sub-01: 3 warnings: a; b; c (-v: in full)",
            "ironmap: warning: sub-02: only",
        ]
