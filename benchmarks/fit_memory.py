"""Peak memory of fitting a whole-head volume: 256 x 256 x 176 voxels x 12 echoes, float32.

The volume (553 MB) holds an ellipsoidal head of brain-like tissue in Rician background noise and
is fitted without a mask by the default method, so background voxels exercise the failure path.
The fit runs in a fresh subprocess whose peak resident set size (``ru_maxrss``) is reported;
the input array itself is part of it. Target: < 4 GB.

Run: ``python benchmarks/fit_memory.py [--shape 256 256 176 12]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

_CHILD = """
import json, resource, sys, time, warnings
sys.path[:0] = {path!r}
from fit_memory import make_volume
from ironmap.errors import IronmapWarning
from ironmap.fitting import DecayModel
data, te = make_volume(tuple({shape!r}))
start = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore", IronmapWarning)
    fit = DecayModel(te).fit(data)
    maps = [fit.r2star, fit.t2star, fit.s0, fit.r2star_sd]
seconds = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
fitted = int((fit.status == 0).sum())
result = {{"seconds": seconds, "peak_mb": peak_mb, "input_mb": data.nbytes / 2**20}}
print(json.dumps({{**result, "fitted": fitted}}))
"""


def make_volume(
    shape: tuple[int, int, int, int], *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 head phantom of shape ``(x, y, z, n_echoes)``, generated slice by slice."""
    nx, ny, nz, ne = shape
    te = np.linspace(2.5e-3, 2.5e-3 + (ne - 1) * 3.5e-3, ne)
    rng = np.random.default_rng(seed)
    data = np.empty(shape, dtype=np.float32)
    x, y = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    for k, zk in enumerate(np.linspace(-1, 1, nz)):
        inside = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (zk / 0.85) ** 2 < 1.0
        r2 = np.where(inside, 20.0 + 15.0 * (x**2 + y**2) + rng.gamma(2.0, 4.0, inside.shape), 0.0)
        s0 = np.where(inside, 80.0, 0.0)
        amp = (s0[..., None] * np.exp(-r2[..., None] * te)).astype(np.float32)
        noise = rng.standard_normal((2, *amp.shape), dtype=np.float32)
        data[:, :, k] = np.hypot(amp + noise[0], noise[1])
    return data, te


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=4, default=[256, 256, 176, 12])
    args = parser.parse_args(argv)
    here = str(__import__("pathlib").Path(__file__).resolve().parent)
    code = _CHILD.format(path=[here, *sys.path], shape=list(args.shape))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    total = time.perf_counter() - start
    print(
        f"{'shape':<22}{'input MB':>10}{'peak RSS MB':>13}{'fit s':>8}{'total s':>9}{'fitted':>11}"
    )
    print(
        f"{'x'.join(map(str, args.shape)):<22}{res['input_mb']:>10.0f}{res['peak_mb']:>13.0f}"
        f"{res['seconds']:>8.1f}{total:>9.1f}{res['fitted']:>11,}"
    )


if __name__ == "__main__":
    main()
