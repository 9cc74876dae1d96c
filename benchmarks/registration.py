"""Registration of a T1w-space dseg and lesion mask to the GRE under head motion (issue 26).

Cohort: simulated MS participants (one per site of :data:`SITE_ORDER`, seeded; phantom
anatomy with lesions, a 1 mm T1w, the dseg and lesion mask on the T1w's grid). Between the
T1w session and the GRE the head moves rigidly (``generate_subject(motion=...)``: the GRE is
acquired on the moved head; the T1w, dseg and lesion mask keep the unmoved head's affine).
Motion levels: none, and rotations of 2 / 4 / 6 deg about a random axis with translations of
3 / 6 / 8 mm in a random direction (one draw per participant and level, seeded).

Per participant the reference is the motion-free subject with ``--register-segmentation never``
(the dseg is the truth and sits in the GRE's space); every motion level (and ``none``) is run
with the default ``auto`` (the T1w is another grid than the GRE, so it is registered). Table per
motion level: the worst regional median R2* relative error against the reference over every
structure and hemisphere of ``_regions.tsv`` (deep grey matter, NAWM; goal within 2 %), the
structure where it is worst, the lesion volume on the R2* grid (``n_voxels`` of the lesions row
times the GRE voxel volume; goal within 5 %) and the lesions' median R2* error, the error of the
recovered transform at the brain's centre (mm, deg), the registration's wall time, and what the
alignment check says of the dseg *without* registration (today's behaviour: refused or doubtful).

Most regional errors are exactly 0: the simulated dseg's 1 mm grid nests in the GRE's, so the
partial-volume samples (:func:`ironmap.regions.label_fractions`) sit on 1 mm voxel centres and
change only where the transform's residual error moves a label by more than half a voxel (the
rotation residual, larger far from the centre: dentate nucleus, lesions at the periphery).

Run: ``python benchmarks/registration.py [--n 2]`` (about 2-3 min per participant on one core:
each run fits R2* again; small cohort by design, the 2 mm GRE grids of the simulated sites).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")

import numpy as np
import pandas as pd

from ironmap.cli import main
from ironmap.errors import IronmapWarning
from ironmap.regions import region_codes
from ironmap.regions.catalog import LABEL_NAMES
from ironmap.segmentation.alignment import measure_alignment
from ironmap.segmentation.coregister import Coregistration
from ironmap.simulate import SITES, draw_cohort, generate_subject
from ironmap.simulate.bids import write_dataset_files, write_subject
from ironmap.simulate.cohort import participants_table

#: Motion levels: name -> (rotation angle in deg, translation in mm).
LEVELS = {"none": (0.0, 0.0), "2 deg / 3 mm": (2.0, 3.0), "4 deg / 6 mm": (4.0, 6.0),
          "6 deg / 8 mm": (6.0, 8.0)}  # fmt: skip
GOAL_REGION, GOAL_LESION = 0.02, 0.05
#: Sites (indices of SITES) of the participants: graz (2 echoes, 2 mm), siena (4 echoes,
#: 2 x 2 x 3 mm), naples (5 echoes, 2 mm), amsterdam (9 echoes, 2 mm).
SITE_ORDER = (0, 6, 5, 1)


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _motion(level: tuple[float, float], rng: np.random.Generator):
    """(rotation_deg xyz, translation_mm xyz): the angle about a random axis, the shift along a
    random direction (the rotation vector's components, small-angle Euler)."""
    from scipy.spatial.transform import Rotation

    angle, shift = level
    rotation = Rotation.from_rotvec(np.radians(angle) * _direction(rng))
    return tuple(rotation.as_euler("xyz", degrees=True)), tuple(shift * _direction(rng))


def _run(person, motion, root: Path, mode: str):
    data = generate_subject(person, with_t1w=True, motion=motion)
    write_dataset_files(root / "bids", participants_table([person]))
    write_subject(root / "bids", person, data)
    args = ["run", str(root / "bids"), str(root / "out"), "participant", "-q"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IronmapWarning)
        code = main([*args, "--register-segmentation", mode])
    sub = person.participant_id
    anat = root / "out" / sub / "anat"
    if code != 0:
        return data, None, None
    regions = pd.read_csv(anat / f"{sub}_regions.tsv", sep="\t")
    provenance = json.loads((anat / f"{sub}_provenance.json").read_text())
    return data, regions, provenance


def _unregistered_check(data) -> str:
    """The alignment check's outcome for the dseg as written (no registration)."""
    if data.motion is None:
        return "ok"
    labels, affine = data.anatomy.labels, data.anatomy_affine
    codes = region_codes(LABEL_NAMES)
    return measure_alignment(labels, affine, codes, data.magnitude, data.affine).outcome


def main_(n: int) -> pd.DataFrame:
    people = [  # one MS participant per site, cycling through SITE_ORDER
        dataclasses.replace(
            draw_cohort(n_hc=0, n_ms=1, seed=26 + i, sites=(SITES[SITE_ORDER[i % 4]],))[0],
            label=f"{i + 1:03d}",
        )
        for i in range(n)
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for p, person in enumerate(people):
            rng = np.random.default_rng(2600 + p)
            voxel_ml = float(np.prod(person.site.protocol.voxel_mm)) / 1000.0
            _, ref, _ = _run(person, None, Path(tmp) / f"{p}-ref", "never")
            ref = ref.set_index(["region", "hemisphere"])
            for name, level in LEVELS.items():
                motion = None if level == (0.0, 0.0) else _motion(level, rng)
                start = time.perf_counter()
                data, regions, prov = _run(person, motion, Path(tmp) / f"{p}-{name}", "auto")
                wall = time.perf_counter() - start
                regions = regions.set_index(["region", "hemisphere"])
                rel = (regions.r2star_median / ref.r2star_median - 1.0).dropna()
                structures = rel.drop("lesions", level=0, errors="ignore")
                worst = structures.abs().idxmax()
                record = prov["segmentation_registration"]
                found = np.array(record["transform"])
                planted = np.eye(4) if data.motion is None else data.motion
                centre = data.anatomy.affine @ np.append(
                    (np.array(data.anatomy.labels.shape) - 1) / 2.0, 1.0
                )
                residual = Coregistration(np.linalg.inv(planted) @ found, metric=0, seconds=0)
                les_ref = ref.loc[("lesions", "both")]
                les = regions.loc[("lesions", "both")]
                rows.append(
                    {
                        "participant": person.participant_id,
                        "site": person.site.name,
                        "motion": name,
                        "unregistered_check": _unregistered_check(data),
                        "registered": record["registered"],
                        "n_structures": len(structures),
                        "max_abs_err_pct": 100 * float(structures.abs().max()),
                        "worst": f"{worst[0]} {worst[1]}",
                        "lesion_vol_err_pct": 100
                        * (les.n_voxels * voxel_ml / (les_ref.n_voxels * voxel_ml) - 1.0),
                        "lesion_median_err_pct": 100 * float(rel.get(("lesions", "both"))),
                        "transform_err_mm": float(
                            np.linalg.norm(residual.displacement_mm(centre[:3]))
                        ),
                        "transform_err_deg": residual.angle_deg,
                        "registration_s": record["seconds"],
                        "participant_s": wall,
                    }
                )
                print(pd.DataFrame(rows[-1:]).round(2).to_string(index=False, header=False))
    return pd.DataFrame(rows)


def _share(limit: float):
    """How many of a group are within ``limit`` (absolute), as ``k/n``."""
    return lambda s: f"{(s.abs() <= limit).sum()}/{len(s)}"


def _worst(s: pd.Series) -> float:
    return float(s.abs().max())


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per motion level: worst errors over participants, share within the goals, times."""
    g = table.groupby("motion", sort=False)
    return pd.DataFrame(
        {
            "n": g.size(),
            "unregistered check": g.unregistered_check.agg(lambda s: "/".join(sorted(set(s)))),
            "max |regional err| %": g.max_abs_err_pct.max(),
            "within 2 %": g.max_abs_err_pct.agg(_share(100 * GOAL_REGION)),
            "max |lesion vol err| %": g.lesion_vol_err_pct.agg(_worst),
            "within 5 %": g.lesion_vol_err_pct.agg(_share(100 * GOAL_LESION)),
            "max |lesion median err| %": g.lesion_median_err_pct.agg(_worst),
            "max transform err mm": g.transform_err_mm.max(),
            "max transform err deg": g.transform_err_deg.max(),
            "median registration s": g.registration_s.median(),
            "median participant s": g.participant_s.median(),
        }
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2, help="participants (default: 2)")
    args = parser.parse_args()
    start = time.perf_counter()
    per_run = main_(args.n)
    print()
    print("Per participant and motion level:")
    print(per_run.round(2).to_string(index=False))
    print()
    print("Per motion level (worst over participants):")
    with pd.option_context("display.width", 200):
        print(summarise(per_run).round(2).to_string())
    print(
        f"\n{platform.processor() or platform.machine()}, 1 ITK thread; "
        f"total {time.perf_counter() - start:.0f} s"
    )
