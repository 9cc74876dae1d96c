"""Regenerate the figures of the README and docs (needs matplotlib: pip install matplotlib).

Run: ``python docs/make_figures.py`` from the repository root; writes ``docs/phantom.png``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ironmap.errors import IronmapWarning  # noqa: E402
from ironmap.fitting import DecayModel  # noqa: E402
from ironmap.simulate import draw_cohort, generate_subject  # noqa: E402
from ironmap.simulate.cohort import SITES  # noqa: E402

HERE = Path(__file__).resolve().parent


def phantom_figure(path: Path) -> None:
    """Labels, true R2*, one simulated echo and the fitted R2* map of one MS subject."""
    subject = next(s for s in draw_cohort(n_hc=0, n_ms=8, seed=7) if s.lesion_count > 8)
    site = next(s for s in SITES if s.name == "barcelona")  # 12 echoes, 2 mm
    subject = type(subject)(**{**subject.__dict__, "site": site})
    data = generate_subject(subject)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        fit = DecayModel(site.protocol.echo_times_s).fit(data.magnitude)
    z_fine = 64 + 2  # axial slice through the basal ganglia (z = 2.5 mm)
    z_acq = z_fine // site.protocol.voxel_mm[2]
    panels = [
        (data.anatomy.labels[:, :, z_fine], "labels (1 mm)", "tab20", None),
        (data.r2star[:, :, z_fine], "true R2* (1/s, 1 mm)", "inferno", (0, 50)),
        (
            data.magnitude[:, :, z_acq, 3],
            f"echo 4, TE {1e3 * site.protocol.echo_times_s[3]:.1f} ms",
            "gray",
            None,
        ),
        (fit.r2star[:, :, z_acq], "fitted R2* (1/s, 2 mm)", "inferno", (0, 50)),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.6))
    for ax, (img, title, cmap, lim) in zip(axes, panels, strict=True):
        shown = ax.imshow(
            np.rot90(img),
            cmap=cmap,
            vmin=None if lim is None else lim[0],
            vmax=None if lim is None else lim[1],
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        if lim is not None:
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(
        f"ironmap phantom: {subject.phenotype}, {subject.age:.0f} y, "
        f"{subject.disease_duration:.0f} y disease, {subject.lesion_count} lesions",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    phantom_figure(HERE / "phantom.png")
