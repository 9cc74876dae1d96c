"""R2* accuracy and speed of ironmap against peer tools, on the same simulated voxels.

Every case is a set of identical voxels (seeded): ``S0 = 1000`` (scanner-like units),
``S(TE) = S0 exp(-R2* TE)``, magnitudes of ``N`` receive channels combined by
root-sum-of-squares with noise SD ``sigma = S0 / SNR`` per channel and real/imaginary part
(:func:`ironmap.simulate.signal.rss_magnitude`; Rician for ``N = 1``), 9 echoes 2.6-39.4 ms or a
dual-echo 5/20 ms protocol. Fitters:

- ``numpy loglin``: ``np.linalg.lstsq`` on ``log S``, all voxels at once (the speed baseline);
- ``ironmap N``: ``DecayModel(te, method="auto", sigma=sigma, coils=N)`` (noise model told);
- ``ironmap 1``: the same with ``coils=1`` (the Rician model, what one gets by default);
- ``tedana loglin`` / ``tedana curvefit``: ``tedana.decay.fit_decay`` with every echo used
  (adaptive mask = number of echoes), echo times in ms, ``R2* = 1000 / T2*``; curvefit voxels
  that tedana flags as failed keep its log-linear estimate and count as failed;
- ``qmrpy mono``: ``qmrpy.models.t2star.T2StarMonoR2(te_ms).fit_image`` (per-voxel
  ``scipy.optimize.least_squares``, no offset term);
- ``qmri t2.fit``: qmri has no T2* fitter; its mono-exponential ``qmri.relaxometry.t2.fit``
  with ``model="reduced"`` (no offset) and ``skip_echoes=0`` is used (T2 = 0 means failure).

Reported per case and fitter: bias of the mean and of the median R2* (% of the truth), RMSE over
the Cramer-Rao bound of the noise model that generated the data
(:func:`ironmap.fitting.r2star_crlb_sd`, noncentral chi with 2N degrees of freedom), the share
of failed or non-finite voxels (statistics use the finite estimates) and voxels per second
(the fastest of repeated calls for fast fitters, after an untimed warm-up call on 16 voxels of
the case that pays for imports and one-off tables). Every fit is single-threaded (BLAS limited to
one thread, peers run with ``n_jobs=1`` / ``n_threads=1``). The summary gives each fitter's
throughput over all cases relative to ``numpy loglin`` timed in the same process.

The peers run in a side environment, ``bench_out/peers-venv``, created on first use with the
pins of ``benchmarks/peers_requirements.txt``; the project environment never gets them.
This script, run with the project interpreter, simulates the data and fits ironmap and numpy,
writes the magnitudes to ``bench_out/fit_peers/cases.npz`` and runs itself as a worker
(``--worker``) under the side environment's interpreter, which fits the peers and writes their
R2* maps back to ``bench_out/fit_peers/peers.npz`` (with timings and versions in
``peers.json``).

Run::

    .venv/bin/python benchmarks/fit_peers.py            # full run, 2000 voxels per case
    .venv/bin/python benchmarks/fit_peers.py --quick    # 200 voxels per case
    .venv/bin/python benchmarks/fit_peers.py --setup    # (re)create the side environment only
    .venv/bin/python benchmarks/fit_peers.py --no-peers # ironmap and numpy only

Options: ``--voxels N`` (voxels per case), ``--seed S``, ``--out DIR`` (default
``bench_out/fit_peers``), ``--venv DIR`` (default ``bench_out/peers-venv``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "peers_requirements.txt"
DEFAULT_OUT = ROOT / "bench_out" / "fit_peers"
DEFAULT_VENV = ROOT / "bench_out" / "peers-venv"

#: Amplitude at TE = 0 of every simulated voxel (scanner-like units; tedana's log-linear fit
#: adds 1 to the magnitudes, so unit-scaled data would be unfair to it).
S0 = 1000.0
TE_9 = np.linspace(2.6e-3, 39.4e-3, 9)
TE_DUAL = np.array([5e-3, 20e-3])

#: Fitters in the project environment and in the side environment, with their table labels.
MAIN_TOOLS = {"numpy": "numpy loglin", "ironmap": "ironmap N", "ironmap_rician": "ironmap 1"}
PEER_TOOLS = {
    "tedana_loglin": "tedana loglin",
    "tedana_curvefit": "tedana curvefit",
    "qmrpy": "qmrpy mono",
    "qmri": "qmri t2.fit",
}
#: The numpy baseline timed again inside the side environment (throughput ratios of the peers).
PEER_BASELINE = "peer_numpy"
PEER_PACKAGES = ("tedana", "qmrpy", "qmri", "numpy", "scipy")
#: Voxels of an untimed first call per fitter and case, which pays for imports and one-off
#: set-up (e.g. ironmap's per-N Bessel and information tables, built once per process).
WARMUP_VOXELS = 16


@dataclass(frozen=True)
class Case:
    """One simulated condition: every voxel has the same truth.

    Attributes
    ----------
    te : tuple of float
        Echo times in seconds.
    coils : int
        Receive channels combined by root-sum-of-squares (1: Rician).
    r2star : float
        True R2* in 1/s.
    snr : float
        ``S0 / sigma``, sigma the noise SD per channel and real/imaginary part.
    """

    te: tuple[float, ...]
    coils: int
    r2star: float
    snr: float

    @property
    def sigma(self) -> float:
        """Noise SD per channel (signal units)."""
        return S0 / self.snr

    @property
    def label(self) -> str:
        """Row label of the tables."""
        echoes = "dual 5/20ms" if len(self.te) == 2 else f"{len(self.te)} echoes"
        return f"{echoes} N={self.coils} R2*={self.r2star:g} SNR={self.snr:g}"


def cases() -> list[Case]:
    """The benchmark's conditions, in table order.

    Returns
    -------
    list of Case
    """
    te9, dual = tuple(TE_9.tolist()), tuple(TE_DUAL.tolist())
    grid = [(1, r2, 30.0) for r2 in (15.0, 30.0, 50.0, 80.0, 120.0)]
    grid += [(1, 80.0, 60.0), (1, 120.0, 60.0)]
    grid += [(8, r2, 30.0) for r2 in (30.0, 50.0, 80.0)] + [(8, 120.0, 60.0)]
    grid += [(32, r2, snr) for r2 in (30.0, 50.0) for snr in (30.0, 60.0)]
    grid += [(32, 120.0, 60.0)]
    out = [Case(te9, coils, r2, snr) for coils, r2, snr in grid]
    out += [Case(dual, 1, r2, 30.0) for r2 in (30.0, 80.0, 120.0)]
    return out


# -- fitters (each returns R2* in 1/s and a failure flag per voxel) -----------------------------


def fit_numpy_loglin(mag: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares of ``log S`` on ``(1, -TE)``, all voxels at once.

    Parameters
    ----------
    mag : numpy.ndarray, shape (n, n_echoes)
        Magnitudes (> 0).
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.

    Returns
    -------
    r2star : numpy.ndarray, shape (n,)
        In 1/s.
    failed : numpy.ndarray of bool, shape (n,)
        Non-finite estimates.
    """
    design = np.column_stack([np.ones_like(te), -te])
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.linalg.lstsq(design, np.log(mag).T, rcond=None)[0][1]
    return r2, ~np.isfinite(r2)


def fit_ironmap(
    mag: np.ndarray, te: np.ndarray, sigma: float, coils: int
) -> tuple[np.ndarray, np.ndarray]:
    """ironmap's ``auto`` fit with the noise sigma given.

    Parameters
    ----------
    mag : numpy.ndarray, shape (n, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.
    sigma : float
        Noise SD per channel.
    coils : int
        Channels the model assumes.

    Returns
    -------
    r2star, failed : numpy.ndarray, shape (n,)
    """
    from ironmap.errors import IronmapWarning
    from ironmap.fitting import DecayModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(te, method="auto", sigma=sigma, coils=coils).fit(mag)
    r2 = np.array(fit.r2star, dtype=np.float64)
    return r2, np.asarray(fit.failed) | ~np.isfinite(r2)


def fit_tedana(mag: np.ndarray, te: np.ndarray, fittype: str) -> tuple[np.ndarray, np.ndarray]:
    """``tedana.decay.fit_decay`` with every echo used; ``R2* = 1000 / T2*(ms)``.

    Parameters
    ----------
    mag : numpy.ndarray, shape (n, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds (passed to tedana in ms).
    fittype : {"loglin", "curvefit"}

    Returns
    -------
    r2star, failed : numpy.ndarray, shape (n,)
        ``failed`` also holds the voxels whose curve fit tedana flags as failed (their value is
        tedana's log-linear fallback).
    """
    from tedana.decay import fit_decay

    adaptive_mask = np.full(mag.shape[0], mag.shape[1], dtype=np.int64)
    t2s, _s0, failures, *_ = fit_decay(
        mag, te * 1e3, adaptive_mask, fittype, report=False, n_threads=1
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1e3 / np.asarray(t2s, dtype=np.float64)
    failed = ~np.isfinite(r2)
    if failures is not None:
        failed |= np.asarray(failures, dtype=bool)
    return r2, failed


def fit_qmrpy(mag: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """qmrpy's mono-exponential T2* model (``T2StarMonoR2.fit_image``), one process.

    Parameters
    ----------
    mag : numpy.ndarray, shape (n, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds (passed in ms).

    Returns
    -------
    r2star, failed : numpy.ndarray, shape (n,)
    """
    from qmrpy.models.t2star import T2StarMonoR2

    result = T2StarMonoR2(te_ms=te * 1e3).fit_image(mag, n_jobs=1)
    r2 = np.asarray(result["r2star_hz"], dtype=np.float64)
    return r2, ~np.isfinite(r2)


def fit_qmri(mag: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """qmri's mono-exponential ``relaxometry.t2.fit`` (no offset, no echo skipped).

    Parameters
    ----------
    mag : numpy.ndarray, shape (n, n_echoes)
    te : numpy.ndarray, shape (n_echoes,)
        Echo times in seconds.

    Returns
    -------
    r2star, failed : numpy.ndarray, shape (n,)
        qmri reports a failed fit (or T2 outside (0, 10] s) as T2 = 0: NaN here.
    """
    from qmri.relaxometry import t2

    result = t2.fit(mag, te, model="reduced", skip_echoes=0)
    t2s = np.asarray(result.t2, dtype=np.float64)
    failed = ~(t2s > 0)
    with np.errstate(divide="ignore"):
        r2 = np.where(failed, np.nan, 1.0 / np.where(failed, 1.0, t2s))
    return r2, failed | ~np.isfinite(r2)


PEER_FITTERS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    PEER_BASELINE: fit_numpy_loglin,
    "tedana_loglin": lambda mag, te: fit_tedana(mag, te, "loglin"),
    "tedana_curvefit": lambda mag, te: fit_tedana(mag, te, "curvefit"),
    "qmrpy": fit_qmrpy,
    "qmri": fit_qmri,
}


# -- timing and statistics -----------------------------------------------------------------------


def timed(func: Callable[[], object], min_total: float = 0.3, max_calls: int = 20):
    """Call ``func`` until ``min_total`` seconds are spent (at most ``max_calls`` times).

    Parameters
    ----------
    func : callable
        No arguments.
    min_total : float, optional
        Seconds of repeated calls for fast functions; a slower first call is not repeated.
    max_calls : int, optional

    Returns
    -------
    result : object
        The first call's return value.
    seconds : float
        The fastest call.
    """
    start = time.perf_counter()
    result = func()
    best = total = time.perf_counter() - start
    calls = 1
    while total < min_total and calls < max_calls:
        start = time.perf_counter()
        func()
        elapsed = time.perf_counter() - start
        best, total, calls = min(best, elapsed), total + elapsed, calls + 1
    return result, best


@dataclass(frozen=True)
class Metrics:
    """Accuracy of one fitter on one case.

    Attributes
    ----------
    bias_mean, bias_median : float
        ``100 (mean - truth) / truth`` and the same for the median, over finite estimates.
    rmse_crlb : float
        Root-mean-square error over finite estimates, divided by the Cramer-Rao SD.
    failed_pct : float
        Voxels flagged failed or non-finite, in %.
    """

    bias_mean: float
    bias_median: float
    rmse_crlb: float
    failed_pct: float


def accuracy(r2: np.ndarray, failed: np.ndarray, truth: float, crlb: float) -> Metrics:
    """Bias, RMSE / CRLB and failure rate of a set of estimates of the same ``truth``.

    Parameters
    ----------
    r2 : numpy.ndarray, shape (n,)
        Estimates in 1/s, NaN where failed.
    failed : numpy.ndarray of bool, shape (n,)
        The fitter's failure flags.
    truth : float
        True R2*.
    crlb : float
        Cramer-Rao SD of R2*.

    Returns
    -------
    Metrics
        NaN statistics when no estimate is finite.
    """
    r2 = np.asarray(r2, dtype=np.float64)
    finite = np.isfinite(r2)
    failed_pct = 100.0 * float(np.mean(np.asarray(failed, dtype=bool) | ~finite))
    values = r2[finite]
    if values.size == 0:
        return Metrics(np.nan, np.nan, np.nan, failed_pct)
    rmse = float(np.sqrt(np.mean((values - truth) ** 2)))
    return Metrics(
        100.0 * (float(values.mean()) - truth) / truth,
        100.0 * (float(np.median(values)) - truth) / truth,
        rmse / crlb,
        failed_pct,
    )


# -- environments -------------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    """The interpreter of the virtual environment ``venv``."""
    return venv / ("Scripts" if os.name == "nt" else "bin") / "python"


def ensure_peer_env(venv: Path, *, force: bool = False) -> tuple[Path | None, str | None]:
    """Create ``venv`` with the pinned peers unless it already holds the current pins.

    Parameters
    ----------
    venv : pathlib.Path
    force : bool, optional
        Recreate even if it looks up to date.

    Returns
    -------
    python : pathlib.Path or None
        The side environment's interpreter; None when setting it up failed.
    error : str or None
        Why it failed.
    """
    python = venv_python(venv)
    stamp = venv / "fit_peers_requirements.txt"
    wanted = REQUIREMENTS.read_text()
    if not force and python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python, None
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{venv.name}-pip.log"
    print(f"setting up the peers' environment {venv} (pip log: {log}) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        with log.open("w") as fh:
            subprocess.run(
                [str(python), "-m", "pip", "install", "-r", str(REQUIREMENTS)],
                check=True,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"side environment setup failed: {exc} (see {log})"
    stamp.write_text(wanted)
    return python, None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _limit_threads() -> object:
    """A context limiting BLAS/OpenMP pools to one thread (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency of both envs
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1)


def run_worker(cases_path: Path, out_path: Path) -> None:
    """Fit every case of ``cases_path`` with every peer; write R2* maps and a JSON summary.

    Runs in the side environment (it imports no ironmap). ``out_path`` (``.npz``) gets
    ``{tool}__r2_{i}`` and ``{tool}__failed_{i}``; ``out_path`` with suffix ``.json`` gets
    ``seconds[tool][i]``, ``errors[tool][i]``, package versions and the interpreter.

    Parameters
    ----------
    cases_path, out_path : pathlib.Path
    """
    data = np.load(cases_path)
    n_cases = int(data["n_cases"])
    arrays: dict[str, np.ndarray] = {}
    seconds: dict[str, dict[str, float]] = {}
    errors: dict[str, dict[str, str]] = {}
    warnings.simplefilter("ignore")  # OptimizeWarning of two-point curve fits, etc.
    with _limit_threads():
        for tool, fitter in PEER_FITTERS.items():
            seconds[tool], errors[tool] = {}, {}
            for i in range(n_cases):
                mag, te = data[f"mag_{i}"], data[f"te_{i}"]
                try:
                    fitter(mag[:WARMUP_VOXELS], te)  # imports, caches: not timed
                    (r2, failed), sec = timed(lambda f=fitter, m=mag, t=te: f(m, t))
                except Exception as exc:  # a peer's failure is a result, not a crash
                    errors[tool][str(i)] = f"{type(exc).__name__}: {exc}"
                    continue
                arrays[f"{tool}__r2_{i}"] = np.asarray(r2, dtype=np.float64)
                arrays[f"{tool}__failed_{i}"] = np.asarray(failed, dtype=bool)
                seconds[tool][str(i)] = sec
    np.savez(out_path, **arrays)
    meta = {
        "seconds": seconds,
        "errors": errors,
        "versions": {p: _version(p) for p in PEER_PACKAGES},
        "python": platform.python_version(),
    }
    out_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


# -- report -------------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table, first column left-aligned, the others right-aligned.

    Parameters
    ----------
    header : list of str
    rows : list of list of str

    Returns
    -------
    str
    """
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        body = [cells[0].ljust(widths[0])]
        body += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(body) + " |"

    rule = "|" + "|".join(["-" * (widths[0] + 2)] + ["-" * (w + 1) + ":" for w in widths[1:]])
    return "\n".join([line(header), rule + "|", *(line(r) for r in rows)])


def _cpu_model() -> str:
    try:
        for row in Path("/proc/cpuinfo").read_text().splitlines():
            if row.startswith("model name"):
                return row.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _short(reason: str, width: int = 40) -> str:
    return reason if len(reason) <= width else reason[: width - 3] + "..."


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=None, help="voxels per case (2000)")
    parser.add_argument("--quick", action="store_true", help="200 voxels per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="data exchange folder")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="peers' environment")
    parser.add_argument("--setup", action="store_true", help="(re)create the venv and exit")
    parser.add_argument("--no-peers", action="store_true", help="ironmap and numpy only")
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run_worker(*args.worker)
        return
    if args.setup:
        python, error = ensure_peer_env(args.venv, force=True)
        print(error or f"ready: {python}")
        sys.exit(1 if error else 0)

    from ironmap import __version__ as ironmap_version
    from ironmap.fitting import r2star_crlb_sd
    from ironmap.simulate.signal import rss_magnitude

    n_vox = args.voxels or (200 if args.quick else 2000)
    all_cases = cases()
    args.out.mkdir(parents=True, exist_ok=True)

    # Simulate, and fit with the project environment's tools.
    mags = []
    results: dict[str, list[tuple[np.ndarray, np.ndarray] | None]] = {}
    seconds: dict[str, list[float | None]] = {}
    errors: dict[str, dict[int, str]] = {}
    for i, case in enumerate(all_cases):
        rng = np.random.default_rng([args.seed, i])
        te = np.asarray(case.te)
        amplitude = np.broadcast_to(S0 * np.exp(-case.r2star * te), (n_vox, te.size))
        mags.append(rss_magnitude(amplitude, sigma=case.sigma, coils=case.coils, rng=rng))
    main_fitters = {
        "numpy": lambda c, m: fit_numpy_loglin(m, np.asarray(c.te)),
        "ironmap": lambda c, m: fit_ironmap(m, np.asarray(c.te), c.sigma, c.coils),
        "ironmap_rician": lambda c, m: fit_ironmap(m, np.asarray(c.te), c.sigma, 1),
    }
    with _limit_threads():
        for tool, fitter in main_fitters.items():
            results[tool], seconds[tool], errors[tool] = [], [], {}
            for i, (case, mag) in enumerate(zip(all_cases, mags, strict=True)):
                try:
                    fitter(case, mag[:WARMUP_VOXELS])  # imports, per-N tables: not timed
                    out, sec = timed(lambda f=fitter, c=case, m=mag: f(c, m))
                except Exception as exc:
                    errors[tool][i] = f"{type(exc).__name__}: {exc}"
                    out, sec = None, None
                results[tool].append(out)
                seconds[tool].append(sec)

    # Peers in the side environment.
    peer_meta: dict = {"versions": {}, "python": "n/a"}
    peer_tools = [PEER_BASELINE, *PEER_TOOLS]
    if args.no_peers:
        setup_error = "skipped (--no-peers)"
    else:
        python, setup_error = ensure_peer_env(args.venv)
    if setup_error is None:
        cases_path, peers_path = args.out / "cases.npz", args.out / "peers.npz"
        payload = {f"mag_{i}": m for i, m in enumerate(mags)}
        payload.update({f"te_{i}": np.asarray(c.te) for i, c in enumerate(all_cases)})
        np.savez(cases_path, n_cases=len(all_cases), **payload)
        env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--worker", cases_path, peers_path],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            setup_error = f"peer worker exited {proc.returncode}: {tail[0]}"
    for tool in peer_tools:
        results[tool], seconds[tool], errors[tool] = [], [], {}
    if setup_error is None:
        peer_meta = json.loads(peers_path.with_suffix(".json").read_text())
        peer_data = np.load(peers_path)
        for tool in peer_tools:
            for i in range(len(all_cases)):
                err = peer_meta["errors"][tool].get(str(i))
                if err is not None:
                    errors[tool][i] = err
                    results[tool].append(None)
                    seconds[tool].append(None)
                    continue
                r2, failed = peer_data[f"{tool}__r2_{i}"], peer_data[f"{tool}__failed_{i}"]
                results[tool].append((r2, failed))
                seconds[tool].append(peer_meta["seconds"][tool][str(i)])
    else:
        for tool in peer_tools:
            for i in range(len(all_cases)):
                errors[tool][i] = setup_error
                results[tool].append(None)
                seconds[tool].append(None)

    # Report.
    labels = {**MAIN_TOOLS, **PEER_TOOLS}
    pv = peer_meta["versions"]
    print("# R2* fit: ironmap vs peers, same simulated voxels\n")
    print(f"- machine: {platform.platform()}, {_cpu_model()}, {os.cpu_count()} logical CPUs")
    print(
        f"- project env: python {platform.python_version()}, ironmap {ironmap_version}, "
        f"numpy {np.__version__}, scipy {_version('scipy')}"
    )
    print(
        f"- peer env ({args.venv}): python {peer_meta['python']}, "
        + ", ".join(f"{p} {pv.get(p, 'n/a')}" for p in PEER_PACKAGES)
    )
    print(
        f"- {n_vox:,} voxels per case, seed {args.seed}, S0 = {S0:g}, sigma = S0 / SNR per "
        "channel, RSS of N channels (N = 1: Rician); 9 echoes 2.6-39.4 ms or dual 5/20 ms; "
        f"single-threaded; speed = fastest call after an untimed {WARMUP_VOXELS}-voxel warm-up"
    )
    print(
        "- ironmap N: auto, sigma given, coils = N; ironmap 1: auto, sigma given, coils = 1 "
        "(Rician model); tedana: all echoes in the adaptive mask; qmri: relaxometry.t2.fit "
        "(reduced, skip_echoes=0)\n"
    )

    tools = list(labels)
    metrics: dict[str, list[Metrics | None]] = {t: [] for t in tools}
    crlbs = []
    for i, case in enumerate(all_cases):
        crlb = float(
            r2star_crlb_sd(S0, case.r2star, np.asarray(case.te), case.sigma, coils=case.coils)
        )
        crlbs.append(crlb)
        for tool in tools:
            res = results[tool][i]
            metrics[tool].append(None if res is None else accuracy(*res, case.r2star, crlb))

    def cell(tool: str, i: int, text: Callable[[Metrics], str]) -> str:
        m = metrics[tool][i]
        return f"n/a ({_short(errors[tool][i])})" if m is None else text(m)

    tables = [
        ("Bias of the mean R2* (% of truth)", lambda m: f"{m.bias_mean:+.2f}"),
        ("Bias of the median R2* (% of truth)", lambda m: f"{m.bias_median:+.2f}"),
        ("RMSE / CRLB", lambda m: f"{m.rmse_crlb:.3f}"),
        ("Failed or NaN voxels (%)", lambda m: f"{m.failed_pct:.1f}"),
    ]
    header = ["case", *(labels[t] for t in tools)]
    for title, text in tables:
        extra = title.startswith("RMSE")
        rows = []
        for i, case in enumerate(all_cases):
            row = [case.label, *(cell(t, i, text) for t in tools)]
            if extra:
                row.insert(1, f"{crlbs[i]:.2f}")
            rows.append(row)
        head = [header[0], "CRLB 1/s", *header[1:]] if extra else header
        print(f"## {title}\n\n{markdown_table(head, rows)}\n")

    rows = []
    for i, case in enumerate(all_cases):
        row = [case.label]
        for tool in tools:
            sec = seconds[tool][i]
            row.append(f"{n_vox / sec:,.0f}" if sec else f"n/a ({_short(errors[tool][i])})")
        rows.append(row)
    print(f"## Throughput (voxels/s, fastest call)\n\n{markdown_table(header, rows)}\n")

    rows = []
    for tool in [*tools, PEER_BASELINE]:
        base = "numpy" if tool in MAIN_TOOLS else PEER_BASELINE
        done = [i for i, s in enumerate(seconds[tool]) if s is not None]
        done = [i for i in done if seconds[base][i] is not None]
        label = labels.get(tool, "numpy loglin (peer env)")
        env_name = "project" if tool in MAIN_TOOLS else "peer"
        if not done:
            reason = _short(next(iter(errors[tool].values()), "no data"))
            rows.append([label, env_name, "0", f"n/a ({reason})", "n/a"])
            continue
        total = sum(seconds[tool][i] for i in done)
        base_total = sum(seconds[base][i] for i in done)
        rows.append(
            [
                label,
                env_name,
                str(len(done)),
                f"{n_vox * len(done) / total:,.0f}",
                f"{base_total / total:.3g}",
            ]
        )
    head = ["fitter", "env", "cases", "voxels/s (all cases)", "x numpy loglin (same env)"]
    print(f"## Throughput summary\n\n{markdown_table(head, rows)}\n")

    labels[PEER_BASELINE] = "numpy loglin (peer env)"
    failures = sorted({(labels[t], e) for t in errors for e in errors[t].values()})
    if failures:
        print("## Failures\n")
        for tool, reason in failures:
            print(f"- {tool}: {reason}")


if __name__ == "__main__":
    main()
