"""Agreement of ironmap's ComBat with the reference implementation, neuroHarmonize.

neuroHarmonize (Pomponio et al. 2020, built on neuroCombat, Fortin et al. 2018) pins
``numpy<2``, so it runs in its own virtual environment, ``bench_out/neuroharmonize-venv``
(created on the first run, reused afterwards). Both implementations see the same seeded
cases: log R2* of 8 regions with additive and multiplicative site effects and linear age and
sex effects. Each model is learned on the healthy controls (``harmonizationLearn`` /
``fit_combat``) and applied to patients at the same sites (``harmonizationApply`` /
``ComBatModel.apply``).

Table 1 compares the implementations as shipped: per case, the largest difference of the
harmonised controls and patients (units of log R2* and relative to the feature's SD), of
``gamma_star`` (standardised units) and of ``delta_star`` (variance ratio), and the wall time of
each side (learn + apply; interpreter start and imports excluded). Table 2 repeats the
comparison with the empirical-Bayes fixed point iterated to a relative change of 1e-10 on both
sides, and gives how far each side's shipped ``gamma_star`` is from that fixed point: the two
implementations differ only in when they stop iterating (see ``EB_TOLERANCE``). The script
exits with status 1 when a difference exceeds its tolerance, and with status 0, after one line
saying why, when the reference environment cannot be built (e.g. no network).

Two details of neuroHarmonize shape the cases:

* ``neuroCombat.make_design_matrix`` casts numeric covariates to float32, so ages are drawn on
  a grid that float32 represents exactly (1/64 year). Ages with 2 decimals are rounded by up
  to ~4e-6 years, which moves the harmonised values by ~1e-8 (up to ~2e-7 SD): a difference
  of inputs, not of methods.
* ``harmonizationApply`` one-hot encodes only the sites present in the data it is given, and
  fails (IndexError or ValueError) unless every training site has participants in that call.
  Every case therefore has patients at every site with controls; case ``a`` adds patients at
  a site without controls, which both implementations must return as NaN.

Run: ``python benchmarks/harmonize_reference.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ironmap.cohort import harmonize
from ironmap.cohort.harmonize import fit_combat

ROOT = Path(__file__).resolve().parents[1]
#: Side environment with the reference implementation (bench_out/ is git-ignored).
SIDE_VENV = ROOT / "bench_out" / "neuroharmonize-venv"
#: Inputs and neuroHarmonize's outputs, one ``.npz`` per case.
WORK = ROOT / "bench_out" / "harmonize_reference"
#: The neuroHarmonize release this benchmark was validated with (pulls neuroCombat 0.2.12).
NEUROHARMONIZE_VERSION = "2.5.2"
#: Largest accepted difference where both sides compute the same numbers: harmonised values in
#: feature SDs, gamma_star in standardised units, delta_star as a variance ratio. Holds without
#: empirical Bayes, and with it once both sides iterate the EB fixed point to ``CONVERGED``.
TOLERANCE = 1e-8
#: EB stopping tolerance used for the strict comparison (neuroCombat's ``it_sol`` default and
#: ironmap's ``_CONVERGENCE`` are both replaced by it).
CONVERGED = 1e-10
#: Largest accepted difference with each side's own EB stopping rule. Both stop the fixed-point
#: iteration at a relative change below 1e-4, but neuroCombat (like R's sva ``it.sol``) divides
#: the change of gamma by the signed ``g_old`` (features with negative gamma never delay the
#: stop) and ironmap by ``|g_old|``, so they may stop one iteration apart: the estimates agree
#: only to the precision of the iteration itself.
EB_TOLERANCE = 1e-4

#: Log R2* (R2* in 1/s) of 8 regions in healthy adults at 3 T: mean at age 50, between-subject SD,
#: change per year of age, and the mean difference of men from women.
REGIONS = ("caudate", "putamen", "pallidum", "thalamus", "RN", "SN", "dentate", "frontal_WM")
LOG_R2_MEAN = np.array([3.20, 3.35, 3.65, 3.05, 3.55, 3.60, 3.45, 3.00])
LOG_R2_SD = np.array([0.07, 0.08, 0.09, 0.05, 0.10, 0.09, 0.08, 0.05])
AGE_SLOPE = np.array([0.004, 0.006, 0.003, 0.000, 0.003, 0.003, 0.002, 0.001])
SEX_EFFECT = np.array([0.010, 0.015, 0.010, 0.005, 0.010, 0.010, 0.005, 0.005])
#: Patients' mean difference from controls (deep grey matter iron up, thalamus down).
DISEASE_SHIFT = np.array([0.03, 0.04, 0.02, -0.03, 0.02, 0.02, 0.01, 0.0])
COVARIATES = ("age", "sex")


@dataclass(frozen=True)
class Case:
    """One shared input: controls to learn from and patients to harmonise with the model."""

    name: str
    description: str
    eb: bool
    y: np.ndarray
    site: np.ndarray
    covariates: np.ndarray
    y_patients: np.ndarray
    site_patients: np.ndarray
    covariates_patients: np.ndarray


def _participants(
    rng: np.random.Generator, per_site: dict[str, int], effects: dict, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log R2* ``(n, 8)``, sites ``(n,)`` and ``[age, sex]`` ``(n, 2)`` of one group."""
    site = np.repeat(list(per_site), list(per_site.values()))
    n = site.size
    # Ages on a 1/64-year grid: exactly representable in float32 (see the module docstring).
    age = np.round(rng.uniform(20.0, 70.0, n) * 64) / 64
    sex = rng.integers(0, 2, n).astype(np.float64)
    gamma = np.array([effects[s][0] for s in site])
    scale = np.array([effects[s][1] for s in site])
    noise = rng.standard_normal((n, LOG_R2_MEAN.size))
    y = (
        LOG_R2_MEAN
        + AGE_SLOPE * (age[:, None] - 50.0)
        + SEX_EFFECT * sex[:, None]
        + LOG_R2_SD * (gamma + scale * noise)
        + shift
    )
    return y, site, np.column_stack([age, sex])


def simulate(
    name: str,
    description: str,
    *,
    controls: dict[str, int],
    patients: dict[str, int],
    eb: bool = True,
    scale_override: dict[str, float] | None = None,
    seed: int = 0,
) -> Case:
    """Draw one case with site effects in units of each feature's SD.

    Parameters
    ----------
    name, description : str
        Label and one-line summary for the table.
    controls, patients : dict of str to int
        Participants per site; patients may include sites without controls.
    eb : bool
        Empirical-Bayes pooling in both implementations.
    scale_override : dict of str to float, optional
        Noise SD multiplier replacing the drawn one at these sites (a noisy scanner).
    seed : int
        Seed of the generator.

    Returns
    -------
    Case
    """
    rng = np.random.default_rng(seed)
    p = LOG_R2_MEAN.size
    effects = {}
    for s in sorted(set(controls) | set(patients)):
        # Additive: a site-wide offset plus per-region scatter (SD units); multiplicative: a
        # site-wide SD factor with per-region scatter.
        gamma = rng.normal(0.0, 0.6) + rng.normal(0.0, 0.3, p)
        scale = np.exp(rng.normal(0.0, 0.2) + rng.normal(0.0, 0.1, p))
        if scale_override and s in scale_override:
            scale = np.full(p, scale_override[s])
        effects[s] = (gamma, scale)
    y, site, cov = _participants(rng, controls, effects, np.zeros(p))
    y_pt, site_pt, cov_pt = _participants(rng, patients, effects, DISEASE_SHIFT)
    return Case(name, description, eb, y, site, cov, y_pt, site_pt, cov_pt)


def build_cases() -> list[Case]:
    """The shared, seeded cases."""
    seven = [f"S{i}" for i in range(1, 8)]
    unbalanced = {  # cases b and d
        "controls": dict(zip(seven, [150, 12, 40, 90, 25, 60, 18], strict=True)),
        "patients": dict(zip(seven, [40, 5, 15, 30, 8, 20, 6], strict=True)),
        "scale_override": {"S3": 2.0},
    }
    return [
        simulate(
            "a",
            "7 sites x 80 HC, 20 MS per site + 15 MS at a site without HC",
            controls=dict.fromkeys(seven, 80),
            patients={**dict.fromkeys(seven, 20), "S8": 15},
            seed=1,
        ),
        simulate(
            "b",
            "unbalanced sites (12-150 HC), S3 noise SD x2",
            **unbalanced,
            seed=2,
        ),
        simulate(
            "c",
            "few HC at one site (S7: 3 HC)",
            controls={**dict.fromkeys(seven[:6], 40), "S7": 3},
            patients=dict.fromkeys(seven, 10),
            seed=3,
        ),
        simulate(
            "d",
            "as (b) without empirical Bayes (eb=False)",
            **unbalanced,
            eb=False,
            seed=2,
        ),
    ]


# Runs with the side environment's interpreter: learn on controls, apply to patients, once per
# EB stopping tolerance (argv: work folder, then variant=tolerance pairs; "default" keeps
# neuroCombat's own 1e-4).
_SIDE_SCRIPT = """
import importlib, json, sys, time
from importlib.metadata import version
from pathlib import Path
import numpy as np, pandas as pd
from neuroHarmonize import harmonizationApply, harmonizationLearn

def covars(site, cov, names):
    frame = pd.DataFrame({"SITE": site.astype(str)})
    for j, name in enumerate(names):
        frame[name] = cov[:, j]
    return frame

# The module, not the function of the same name that the package exports.
nc = importlib.import_module("neuroCombat.neuroCombat")
work = Path(sys.argv[1])
shipped = nc.it_sol.__defaults__
for variant, conv in (arg.split("=") for arg in sys.argv[2:]):
    nc.it_sol.__defaults__ = shipped if conv == "default" else (float(conv),)
    (work / "neuroharmonize" / variant).mkdir(parents=True, exist_ok=True)
    for path in sorted((work / "inputs").glob("*.npz")):
        d = np.load(path)
        names = [str(n) for n in d["covariate_names"]]
        start = time.perf_counter()
        model, controls = harmonizationLearn(
            d["y"], covars(d["site"], d["covariates"], names), eb=bool(d["eb"]))
        patients = harmonizationApply(
            d["y_patients"], covars(d["site_patients"], d["covariates_patients"], names), model)
        wall = time.perf_counter() - start
        np.savez(
            work / "neuroharmonize" / variant / path.name, controls=controls, patients=patients,
            sites=np.asarray(model["SITE_labels"]).astype(str),
            gamma_star=np.asarray(model["gamma_star"], dtype=float),
            delta_star=np.asarray(model["delta_star"], dtype=float),
            model_keys=np.array(sorted(model)), wall_s=wall)
print(json.dumps({m: version(m) for m in ("neuroHarmonize", "neuroCombat", "numpy", "pandas")}))
"""


def _side_python() -> Path:
    return SIDE_VENV / "bin" / "python"


def _installed_version(python: Path) -> str | None:
    """neuroHarmonize's version in the side environment, or None if it is not importable."""
    if not python.exists():
        return None
    probe = "import neuroHarmonize, importlib.metadata as m; print(m.version('neuroHarmonize'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_side_env() -> tuple[Path | None, str]:
    """Create (once) the side environment with neuroHarmonize.

    Returns
    -------
    python : pathlib.Path or None
        Its interpreter, or None when it could not be built.
    message : str
        What was done, or why it failed.
    """
    python = _side_python()
    if _installed_version(python) == NEUROHARMONIZE_VERSION:
        return python, f"reusing {SIDE_VENV.relative_to(ROOT)}"
    base = shutil.which("python3") or sys.executable
    steps = []
    if not python.exists():
        steps.append([base, "-m", "venv", str(SIDE_VENV)])
    steps.append(
        [str(python), "-m", "pip", "install", "-q", f"neuroHarmonize=={NEUROHARMONIZE_VERSION}"]
    )
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, f"{' '.join(map(str, step[:4]))}: {err}"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            errors = [line for line in lines if "ERROR" in line] or lines
            return None, f"{' '.join(map(str, step[:4]))} failed: {errors[-1].strip()}"
    if _installed_version(python) != NEUROHARMONIZE_VERSION:
        return None, f"neuroHarmonize {NEUROHARMONIZE_VERSION} is not importable after install"
    return python, f"created {SIDE_VENV.relative_to(ROOT)}"


def write_inputs(cases: list[Case]) -> None:
    """Save every case for the side environment (``WORK/inputs/<name>.npz``)."""
    for sub in ("inputs", "neuroharmonize"):
        shutil.rmtree(WORK / sub, ignore_errors=True)
    (WORK / "inputs").mkdir(parents=True)
    for case in cases:
        np.savez(
            WORK / "inputs" / f"{case.name}.npz",
            y=case.y,
            site=case.site.astype(str),
            covariates=case.covariates,
            y_patients=case.y_patients,
            site_patients=case.site_patients.astype(str),
            covariates_patients=case.covariates_patients,
            covariate_names=np.array(COVARIATES),
            eb=case.eb,
        )


def run_reference(python: Path) -> tuple[dict, dict[str, str]]:
    """Run neuroHarmonize on every saved case, with its shipped and a tight EB stopping rule.

    Returns
    -------
    results : dict
        ``results[variant][case]``: the arrays saved by the side script, for the variants
        ``"shipped"`` and ``"converged"``.
    versions : dict
        Versions of neuroHarmonize, neuroCombat, numpy and pandas in the side environment.
    """
    variants = ["shipped=default", f"converged={CONVERGED:g}"]
    done = subprocess.run(
        [python, "-c", _SIDE_SCRIPT, str(WORK), *variants],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"neuroHarmonize run failed:\n{done.stderr}")
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    results: dict[str, dict] = {}
    for path in sorted((WORK / "neuroharmonize").glob("*/*.npz")):
        with np.load(path) as saved:
            results.setdefault(path.parent.name, {})[path.stem] = {
                k: saved[k] for k in saved.files
            }
    return results, versions


@contextmanager
def _ironmap_stopping(tolerance: float | None) -> Iterator[None]:
    """Temporarily replace ironmap's EB stopping tolerance (None: keep it)."""
    shipped = harmonize._CONVERGENCE
    if tolerance is not None:
        harmonize._CONVERGENCE = tolerance
    try:
        yield
    finally:
        harmonize._CONVERGENCE = shipped


def run_ironmap(case: Case, tolerance: float | None = None) -> dict:
    """Learn on the controls and apply to controls and patients with ``fit_combat``.

    Parameters
    ----------
    case : Case
    tolerance : float, optional
        EB stopping tolerance replacing ironmap's own for this run.

    Returns
    -------
    dict
        Harmonised ``controls`` and ``patients``, ``sites``, ``gamma_star``, ``delta_star`` and
        the wall time ``wall_s`` of learn + apply.
    """
    with _ironmap_stopping(tolerance):
        start = time.perf_counter()
        model = fit_combat(case.y, case.site, case.covariates, eb=case.eb)
        controls = model.apply(case.y, case.site, case.covariates)
        patients = model.apply(case.y_patients, case.site_patients, case.covariates_patients)
        wall = time.perf_counter() - start
    return {
        "controls": controls,
        "patients": patients,
        "sites": model.sites,
        "gamma_star": model.gamma_star,
        "delta_star": model.delta_star,
        "wall_s": wall,
    }


def _max_diff(a: np.ndarray, b: np.ndarray, scale: np.ndarray | float = 1.0) -> float:
    """Largest ``|a - b| / scale``; inf when the NaN patterns differ."""
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return np.inf
    diff = np.abs(a - b) / scale
    return float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0


def _by_site(ours: dict, ref: dict, key: str) -> np.ndarray:
    """neuroHarmonize's site rows of ``key`` in ironmap's site order (matched by name)."""
    rows = [list(ref["sites"]).index(s) for s in ours["sites"]]
    return ref[key][rows]


def compare(case: Case, ours: dict, ref: dict) -> dict[str, float]:
    """The differences between the implementations for ``case``: one table row."""
    sd = case.y.std(axis=0, ddof=1)
    return {
        "HC max|d|": _max_diff(ours["controls"], ref["controls"]),
        "HC /SD": _max_diff(ours["controls"], ref["controls"], sd),
        "MS max|d|": _max_diff(ours["patients"], ref["patients"]),
        "MS /SD": _max_diff(ours["patients"], ref["patients"], sd),
        "gamma*": _max_diff(ours["gamma_star"], _by_site(ours, ref, "gamma_star")),
        "delta*": _max_diff(ours["delta_star"], _by_site(ours, ref, "delta_star")),
    }


def _print(table: pd.DataFrame) -> None:
    formats = {c: "{:.1e}".format for c in table.columns if table[c].dtype == float}
    formats |= {c: "{:.4f}".format for c in table.columns if c.endswith("_s")}
    print(table.to_string(formatters=formats))


def main() -> int:
    """Build the cases, run both implementations and print the comparison.

    Returns
    -------
    int
        Exit status: 1 if any difference exceeds its tolerance, else 0 (also when the
        reference environment is unavailable).
    """
    start = time.perf_counter()
    python, message = ensure_side_env()
    if python is None:
        print(f"harmonize_reference: skipped, neuroHarmonize unavailable ({message})")
        return 0
    print(f"side environment: {message} ({time.perf_counter() - start:.1f} s)")
    cases = build_cases()
    write_inputs(cases)
    start = time.perf_counter()
    reference, versions = run_reference(python)
    side_wall = time.perf_counter() - start
    print(
        "reference: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f" (pinned neuroHarmonize=={NEUROHARMONIZE_VERSION}); subprocess {side_wall:.2f} s"
    )
    keys = ", ".join(map(str, reference["shipped"][cases[0].name]["model_keys"]))
    print(f"neuroHarmonize model keys: {keys}")
    print(f"features: log R2* of {', '.join(REGIONS)}; covariates: {', '.join(COVARIATES)}\n")
    for case in cases:
        print(f"  {case.name}: {case.description}")

    shipped, converged = [], []
    for case in cases:
        ours = run_ironmap(case)
        ours_conv = run_ironmap(case, CONVERGED)
        ref, ref_conv = reference["shipped"][case.name], reference["converged"][case.name]
        size = {"eb": case.eb, "n_HC": case.y.shape[0], "n_MS": case.y_patients.shape[0]}
        shipped.append(
            {
                "case": case.name,
                **size,
                **compare(case, ours, ref),
                "ironmap_s": ours["wall_s"],
                "nH_s": float(ref["wall_s"]),
            }
        )
        # Distance of each side's shipped gamma* from the fixed point (both sides agree on it).
        converged.append(
            {
                "case": case.name,
                **size,
                **compare(case, ours_conv, ref_conv),
                "ironmap stop": _max_diff(ours["gamma_star"], ours_conv["gamma_star"]),
                "nH stop": _max_diff(
                    _by_site(ours, ref, "gamma_star"), _by_site(ours, ref_conv, "gamma_star")
                ),
            }
        )
    strict = ["HC /SD", "MS /SD", "gamma*", "delta*"]
    shipped = pd.DataFrame(shipped).set_index("case")
    limit = np.where(shipped["eb"], EB_TOLERANCE, TOLERANCE)
    shipped["ok"] = (shipped[strict].to_numpy() <= limit[:, None]).all(axis=1)
    converged = pd.DataFrame(converged).set_index("case")
    converged["ok"] = (converged[strict] <= TOLERANCE).all(axis=1)

    print("\n1. As shipped (EB iterations stop at a relative change of 1e-4)")
    _print(shipped)
    print(f"\n2. EB iterated on both sides to a relative change of {CONVERGED:g}")
    _print(converged)
    print(
        "\nmax|d|: units of log R2*; /SD: relative to each feature's SD in the controls;"
        " gamma*: standardised units; delta*: variance ratio; ironmap/nH stop: largest |gamma*|"
        " distance of the shipped estimate from the fixed point of table 2."
        f"\nok: /SD, gamma*, delta* <= {TOLERANCE:g} (eb=False and table 2) or <="
        f" {EB_TOLERANCE:g} (EB as shipped: the stopping tolerance). Times: learn + apply."
    )
    failed = [f"{n} (table 1)" for n in shipped.index[~shipped["ok"]]]
    failed += [f"{n} (table 2)" for n in converged.index[~converged["ok"]]]
    if failed:
        print(f"FAIL: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
