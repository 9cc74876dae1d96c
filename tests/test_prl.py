"""Paramagnetic rim lesions from susceptibility (issue 27): forward-simulated shells, FLAIR-like
masks (true, dilated and eroded by 1 mm), a central vein and a vein beside a lesion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ironmap.regions.lesions import LESION_COLUMNS, PRL_SCORE_PPM, lesion_table
from ironmap.simulate.lesions import lesion_rim_shells
from ironmap.susceptibility.dipole import forward_field
from ironmap.susceptibility.inversion import tkd

FINE = (96, 96, 48)  # 1 mm
F = 2  # acquisition voxel (mm)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
WM, LESION, VEIN = -0.03, -0.01, 0.4
#: lesion centres (1 mm voxels): rim, plain, central vein, vein beside, small rim, small plain
CENTRES = {
    "rim": (24, 24, 24),
    "plain": (24, 72, 24),
    "central_vein": (72, 24, 24),
    "vein_beside": (72, 72, 24),
    "small_rim": (48, 48, 24),
    "small_plain": (48, 84, 24),
}


def _ball(centre, radii) -> np.ndarray:
    g = np.mgrid[: FINE[0], : FINE[1], : FINE[2]].astype(float)
    return sum(((g[i] - centre[i]) / radii[i]) ** 2 for i in range(3)) <= 1.0


def _tube(x: float, z: float, radius: float) -> np.ndarray:
    """Occupancy of a tube along y through (x, ., z), partial volume at its edge."""
    g = np.mgrid[: FINE[0], : FINE[1], : FINE[2]].astype(float)
    d = np.hypot(g[0] - x, g[2] - z)
    return np.clip(radius + 0.5 - d, 0.0, 1.0)


def _down(x: np.ndarray) -> np.ndarray:
    s = [n // F for n in x.shape]
    return x.reshape(s[0], F, s[1], F, s[2], F).mean(axis=(1, 3, 5))


@pytest.fixture(scope="module")
def phantom():
    """White matter with six lesions at 1 mm; chi by TKD from the 2 mm field of the truth, and
    R2* (rims 1.6 times the lesion, as simulated) averaged to 2 mm with noise."""
    lesions = {k: _ball(c, (5.0, 7.0, 5.0)) for k, c in CENTRES.items() if "small" not in k}
    lesions["small_rim"] = _ball(CENTRES["small_rim"], (3.2, 3.2, 3.2))
    lesions["small_plain"] = _ball(CENTRES["small_plain"], (3.2, 3.2, 3.2))
    any_lesion = np.any(list(lesions.values()), axis=0)
    chi = np.where(any_lesion, LESION, WM)
    r2 = np.where(any_lesion, 17.0, 20.0)  # 1/s; the rims 1.6 times the lesion (simulator)
    for name in ("rim", "small_rim"):
        shells = lesion_rim_shells(
            lesions[name],
            np.eye(4),
            np.random.default_rng(1),
            probability=1.0,
            thickness_mm=(1.0, 1.0),
            coverage=(0.75, 0.75),
            chi_ppm=(0.05, 0.05),
        )
        chi = chi + shells.chi_ppm
        r2 = np.where(shells.occupancy >= 0.5, 1.6 * 17.0, r2)
    for occupancy in (
        _tube(72, 24, 0.6) * (np.abs(np.arange(FINE[1]) - 24) < 14)[None, :, None],
        _tube(72 + 7, 24, 0.6) * (np.abs(np.arange(FINE[1]) - 72) < 14)[None, :, None],
    ):
        chi = (1 - occupancy) * chi + occupancy * VEIN
    field = forward_field(chi, (1.0, 1.0, 1.0), pad=16)  # ppm, 1 mm
    local = _down(field) - _down(field).mean()
    rng = np.random.default_rng(0)
    local = local + rng.normal(scale=0.002, size=local.shape)  # ~0.25 Hz at 3 T
    mask = np.ones(local.shape, dtype=bool)
    qsm = tkd(local, mask, (2.0, 2.0, 2.0))
    r2star = _down(r2) + rng.normal(scale=0.5, size=local.shape)
    return lesions, qsm, r2star


def _table(phantom, how: str):
    lesions, qsm, r2 = phantom
    masks = {}
    for name, lesion in lesions.items():
        if how == "dilated":
            lesion = ndimage.binary_dilation(lesion)
        elif how == "eroded":
            lesion = ndimage.binary_erosion(lesion)
        masks[name] = lesion
    fraction = _down(np.any(list(masks.values()), axis=0).astype(float))
    table = lesion_table(
        fraction,
        r2,
        AFFINE,
        participant_id="sub-01",
        min_fraction=0.9,
        tissue=fraction < 0.5,
        chi_ppm=qsm,
    )
    centres = {k: np.asarray(c, float) for k, c in CENTRES.items()}
    names = []
    for row in table.itertuples():
        xyz = np.array([row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm]) + 0.5
        names.append(min(centres, key=lambda k: np.linalg.norm(centres[k] - xyz)))
    return table.assign(name=names).set_index("name")


@pytest.mark.parametrize("how", ["true", "dilated", "eroded"])
def test_prl_score_separates_a_rim_from_no_rim_and_from_veins(phantom, how):
    table = _table(phantom, how)
    assert list(table.columns[: len(LESION_COLUMNS)]) == list(LESION_COLUMNS)
    assert set(table.index) == set(CENTRES)
    rims = table.loc[["rim", "small_rim"]]
    others = table.loc[["plain", "central_vein", "vein_beside", "small_plain"]]
    assert rims.prl_candidate.all(), rims.prl_score
    assert not others.prl_candidate.any(), others.prl_score
    assert rims.prl_score.min() > others.prl_score.max() + PRL_SCORE_PPM
    assert (rims.prl_rim_coverage > 0.5).all()
    assert table.loc["central_vein", "prl_central_vein"]
    assert not table.loc["plain", "prl_central_vein"]


def test_a_lesion_without_a_core_gets_a_score(phantom):
    table = _table(phantom, "eroded")
    small = table.loc[["small_rim", "small_plain"]]
    assert (small.n_core == 0).all()  # no R2* core (eroded 0.1 mL lesions on 2 mm voxels)
    assert small.r2star_core_median.isna().all()
    assert small.prl_score.notna().all()
    assert np.isfinite(small.chi_rim_median).all()
    assert np.isfinite(small.chi_shell_median).all()


def test_no_chi_map_leaves_the_prl_columns_empty(phantom):
    lesions, _, _ = phantom
    fraction = _down(lesions["rim"].astype(float))
    table = lesion_table(
        fraction, np.full(fraction.shape, 20.0), AFFINE, participant_id="s", min_fraction=0.9
    )
    assert table.prl_score.isna().all()
    assert table.chi_rim_median.isna().all()


def test_prl_count_per_participant_from_the_lesion_tables(tmp_path):
    from ironmap.cohort.tables import prl_counts

    rows = {
        "sub-01": [True, False, True],  # two candidates
        "sub-02": [False, False],
        "sub-03": [None, None],  # no chi map: n/a
    }
    for pid, flags in rows.items():
        folder = tmp_path / pid / "anat"
        folder.mkdir(parents=True)
        text = "participant_id\tlesion_id\tprl_candidate\n" + "".join(
            f"{pid}\t{i}\t{'n/a' if f is None else f}\n" for i, f in enumerate(flags, start=1)
        )
        (folder / f"{pid}_lesions.tsv").write_text(text)
    counts = prl_counts(tmp_path).set_index("participant_id").n_prl
    assert counts["sub-01"] == 2
    assert counts["sub-02"] == 0
    assert np.isnan(counts["sub-03"])


def test_prl_montage_shows_the_candidates_centred(phantom):
    from ironmap.report.qc_prl import prl_montage, prl_montage_html

    lesions, qsm, _ = phantom
    table = _table(phantom, "true").reset_index(drop=True)
    fraction = _down(np.any(list(lesions.values()), axis=0).astype(float))
    fig = prl_montage(table, qsm, AFFINE, lesion_fraction=fraction, local_field_ppm=qsm)
    n = int(table.prl_candidate.sum())
    assert n == 2
    assert len(fig.axes) == 2 * n  # chi and field rows, one column per candidate
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    best = table.sort_values("prl_score", ascending=False).iloc[0]
    assert titles[0] == f"#{int(best.lesion_id)} {best.prl_score:+.3f}"
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (17, 17)  # +-16 mm at 2 mm
    page = prl_montage_html(table, qsm, AFFINE, lesion_fraction=fraction)
    assert "2 candidate(s) of 6 lesions" in page
    assert page.count("<img") == 1
    none = table.assign(prl_candidate=False)
    assert "No PRL candidate" in prl_montage_html(none, qsm, AFFINE)
    assert prl_montage_html(table, None, AFFINE) == ""
