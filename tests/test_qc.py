"""The per-participant QC page: slices through the nuclei, NaN in its own colour, the numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.text import Text

from ironmap.cohort.qc import collect_protocols
from ironmap.regions import DEEP_GM
from ironmap.report.protocol import flagged_participants
from ironmap.report.qc import (
    INSET_ZOOM,
    LESION_ALPHA,
    LESION_COLOUR,
    NAN_COLOUR,
    QC_VIEWS,
    QCNumbers,
    SliceView,
    choose_slices,
    qc_panels,
    qc_rgba,
)
from ironmap.report.qc_page import qc_figure, qc_page, qc_text, render_qc, voxel_counts

SHAPE = (40, 44, 36)


def _box(x: slice, y: slice, z: slice, *, both: bool = True) -> np.ndarray:
    """A box and (``both``) its mirror image across the midline x = 19.5."""
    mask = np.zeros(SHAPE, dtype=bool)
    mask[x, y, z] = True
    return mask | mask[::-1] if both else mask


def _structures() -> dict[str, np.ndarray]:
    """Deep grey matter whose structures share their group's centroid along each view's axis:
    basal ganglia at z = 22, y = 24; SN/RN at z = 12, y = 16, right x = 25; dentate z = 5."""
    s = np.s_
    return {
        "thalamus": _box(s[22:27], s[14:22], s[20:25]),
        "caudate": _box(s[24:28], s[28:34], s[19:26]),
        "putamen": _box(s[28:32], s[21:28], s[20:25]),
        "pallidum": _box(s[26:28], s[22:27], s[21:24]),
        "substantia_nigra": _box(s[23:28], s[15:18], s[10:15]),
        "red_nucleus": _box(s[24:27], s[14:19], s[11:14]),
        "dentate_nucleus": _box(s[24:29], s[4:8], s[3:8]),
    }


def _r2star() -> np.ndarray:
    r2 = np.full(SHAPE, 20.0)
    for name, mask in _structures().items():
        r2[mask] = 60.0 if name in ("pallidum", "substantia_nigra", "red_nucleus") else 35.0
    r2[8:12, 20:26, 20:24] = np.nan  # a block of failed fits through the basal-ganglia slice
    return r2


def _centroid(mask: np.ndarray, axis: int) -> float:
    return float(np.argwhere(mask)[:, axis].mean())


def test_slices_pass_through_each_structure_centroid():
    outlines = _structures()
    views = choose_slices(outlines, SHAPE)
    assert [(v.plane, v.label) for v in views] == [
        (("sagittal", "coronal", "axial")[axis], label) for label, axis, _ in QC_VIEWS
    ]
    right = np.zeros(SHAPE, dtype=bool)
    right[20:] = True
    for view, (_, axis, regions) in zip(views, QC_VIEWS, strict=True):
        for region in regions:
            mask = outlines[region] & right if axis == 0 else outlines[region]
            assert view.index == round(_centroid(mask, axis)), (view, region)
            assert np.take(mask, view.index, axis=axis).any(), (view, region)
    assert [v.index for v in views] == [22, 12, 5, 24, 16, 25]


def test_slices_cut_the_first_structure_and_skip_missing_ones():
    outlines = _structures()
    outlines["thalamus"] = _box(np.s_[22:27], np.s_[14:22], np.s_[26:31])  # above the pallidum
    del outlines["dentate_nucleus"]
    views = choose_slices(outlines, SHAPE)
    assert "dentate nuclei" not in [v.label for v in views]
    axial = views[0]
    assert np.take(outlines["pallidum"], axial.index, axis=2).any()
    assert choose_slices({}, SHAPE) == choose_slices({"x": np.zeros(SHAPE, bool)}, SHAPE)
    assert [v.plane for v in choose_slices({}, SHAPE)] == ["axial", "coronal", "sagittal"]


def test_rgba_nan_gets_the_nan_colour_and_background_stays_black():
    values = np.array([[np.nan, 0.0], [30.0, np.nan]])
    failed = np.array([[True, False], [False, False]])
    rgba = qc_rgba(values, failed=failed, vmax=60.0)
    assert tuple(rgba[0, 0]) == to_rgba(NAN_COLOUR)
    assert tuple(rgba[1, 1]) == (0.0, 0.0, 0.0, 1.0)  # NaN outside the fit: background
    assert tuple(rgba[1, 0]) == (0.5, 0.5, 0.5, 1.0)
    every = qc_rgba(values)  # without a failed mask every NaN is a failed fit
    assert tuple(every[1, 1]) == to_rgba(NAN_COLOUR)


def test_panel_shows_the_nan_block_in_the_nan_colour():
    r2 = _r2star()
    panels = qc_panels(r2, _structures(), failed=np.isnan(r2))
    axial = next(p for p in panels if p.view.plane == "axial")
    assert axial.view.index == 22  # inside the NaN block's z = 20..23
    nan_colour = np.all(axial.rgba == to_rgba(NAN_COLOUR), axis=-1)
    assert nan_colour.sum() == np.isnan(r2[:, :, 22]).sum() == 4 * 6
    # rows are y bottom-up, columns x from the subject's right (radiological): x = 8 is
    # column 40 - 1 - 8 (no crop: the finite voxels fill the grid)
    assert nan_colour[20, SHAPE[0] - 1 - 8]
    assert set(axial.outlines) == {"thalamus", "caudate", "putamen", "pallidum"}


def test_panels_follow_the_affine_orientation_and_voxel_size():
    r2, outlines = _r2star(), _structures()
    ras = qc_panels(r2, outlines, affine=np.diag([1.0, 1.0, 3.0, 1.0]))
    flip = np.diag([-1.0, -1.0, 3.0, 1.0])  # the same head stored L->R and A->P reversed
    flip[:2, 3] = [SHAPE[0] - 1, SHAPE[1] - 1]
    lps = qc_panels(r2[::-1, ::-1], {k: v[::-1, ::-1] for k, v in outlines.items()}, affine=flip)
    for a, b in zip(ras, lps, strict=True):
        assert a.view == b.view
        np.testing.assert_array_equal(a.rgba, b.rgba)
    coronal = next(p for p in ras if p.view.plane == "coronal")
    assert coronal.extent == (0.0, SHAPE[0] * 1.0, 0.0, SHAPE[2] * 3.0)  # mm, 3 mm slices


def test_text_prints_the_failed_fraction_and_sigma():
    numbers = QCNumbers(
        fit_voxels=150_000,
        failed_voxels=1_234,
        failed_reasons={"bad signal": 1_200, "no decay": 34},
        sigma=12.3456,
        sigma_source="background",
        method="auto",
    )
    assert qc_text(numbers) == [
        "failed fits (NaN): 1,234 of 150,000 intracranial voxels (0.82 %): bad signal 1,200, "
        "no decay 34",
        "estimator: auto; noise sigma: 12.35 (signal units; estimated from the image background)",
    ]
    none = QCNumbers(fit_voxels=10, failed_voxels=0, sigma=None)
    assert qc_text(none) == [
        "failed fits (NaN): 0 of 10 intracranial voxels (0.00 %)",
        "noise sigma: unknown",
    ]


def test_figure_prints_the_numbers_in_readable_text(tmp_path):
    r2 = _r2star()
    numbers = QCNumbers(fit_voxels=int(np.isfinite(r2).sum()), failed_voxels=24, sigma=3.0)
    kwargs = {"title": "sub-01: R2*", "numbers": numbers, "failed": np.isnan(r2)}
    fig = render_qc(r2, _structures(), **kwargs)
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    shown = "\n".join(t.get_text() for t in texts)
    for line in qc_text(numbers):
        assert line in shown
    assert "failed fit (NaN)" in shown
    assert "substantia nigra" in shown
    assert min(t.get_fontsize() for t in texts) >= 9
    png = qc_figure(r2, _structures(), tmp_path / "qc.png", **kwargs)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = qc_page(png, tmp_path / "qc.html", title="sub-01: R2*", numbers=numbers)
    text = page.read_text()
    assert "data:image/png;base64," in text
    assert f"<td>24 ({100 * 24 / numbers.fit_voxels:.2f} %)</td>" in text


@pytest.mark.parametrize("sigma_source", ["given", "residuals"])
def test_text_names_the_sigma_source(sigma_source):
    line = qc_text(QCNumbers(1, 0, sigma=2.0, sigma_source=sigma_source))[1]
    assert line.startswith("noise sigma: 2 (signal units; ")
    assert ("--sigma" in line) == (sigma_source == "given")


def _outputs(tmp_path, options: dict | None, *, csf: int | None = 10):
    """A participant-stage outputs folder with only sub-01's provenance record (options as given,
    none when None) and its regions rows: every deep-GM region 90 kept voxels in its both row,
    45 per hemisphere, and ``csf`` CSF-like voxels left out (no ``n_csf_excluded`` when None)."""
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    if options is not None:
        record = {"ironmap_version": "0.1.0", "inputs": {}, "options": options, "voxels": {}}
        (anat / "sub-01_provenance.json").write_text(json.dumps(record))
    rows = [
        ("sub-01", region, hemi, count, (csf or 0) // 2 if hemi != "both" else csf)
        for region in DEEP_GM
        for hemi, count in (("left", 45), ("right", 45), ("both", 90))
    ]
    columns = ["participant_id", "region", "hemisphere", "n_voxels", "n_csf_excluded"]
    regions = pd.DataFrame(rows, columns=columns)
    return regions if csf is not None else regions.drop(columns="n_csf_excluded")


def test_participant_qc_has_the_share_of_csf_like_voxels(tmp_path):
    regions = _outputs(tmp_path, {"segmentation": "auto", "csf_exclusion": "on"})
    row = collect_protocols(tmp_path, regions).iloc[0]
    assert row.csf_excluded_pct_caudate == pytest.approx(10.0)  # 100 x 10 / (90 + 10)
    assert row.csf_excluded_pct_dentate_nucleus == pytest.approx(10.0)
    assert row.csf_exclusion == "on"


def test_csf_share_is_nan_without_the_count_column(tmp_path):
    regions = _outputs(tmp_path, {"csf_exclusion": "on"}, csf=None)
    row = collect_protocols(tmp_path, regions).iloc[0]
    assert np.isnan(row.csf_excluded_pct_caudate)
    assert row.min_voxels_caudate == 45


def test_csf_share_is_nan_without_voxels(tmp_path):
    regions = _outputs(tmp_path, {"csf_exclusion": "on"}, csf=0)
    regions["n_voxels"] = 0
    row = collect_protocols(tmp_path, regions).iloc[0]
    assert np.isnan(row.csf_excluded_pct_thalamus)


def test_csf_exclusion_is_nan_for_outputs_made_before_the_option(tmp_path):
    row = collect_protocols(tmp_path, _outputs(tmp_path, {"segmentation": "auto"})).iloc[0]
    assert pd.isna(row.csf_exclusion)
    assert row.segmentation == "auto"


def test_csf_exclusion_off_is_recorded(tmp_path):
    regions = _outputs(tmp_path, {"csf_exclusion": "off"}, csf=0)
    row = collect_protocols(tmp_path, regions).iloc[0]
    assert row.csf_exclusion == "off"
    assert row.csf_excluded_pct_putamen == pytest.approx(0.0)


def test_csf_exclusion_column_follows_the_segmentation_column(tmp_path):
    columns = list(collect_protocols(tmp_path, _outputs(tmp_path, {})).columns)
    assert columns.index("csf_exclusion") == columns.index("segmentation") + 1
    assert (
        columns.index("csf_excluded_pct_thalamus")
        == columns.index("min_voxels_dentate_nucleus") + 1
    )


@pytest.mark.parametrize(
    ("csf", "why"),
    [
        (10, None),  # 10 % exactly: not above the flag
        (
            30,  # 100 x 30 / 120 = 25 %
            "segmentation does not follow the ventricles: 25 % of the caudate's voxels were "
            "CSF-like",
        ),
    ],
)
def test_report_lists_a_participant_whose_caudate_is_csf_like(tmp_path, csf, why):
    regions = _outputs(tmp_path, {"csf_exclusion": "on"}, csf=0)
    both = (regions["region"] == "caudate") & (regions["hemisphere"] == "both")
    regions.loc[both, "n_csf_excluded"] = csf
    qc = collect_protocols(tmp_path, regions).assign(site="a", group="HC", phenotype=np.nan)
    flagged = flagged_participants(qc)
    assert len(flagged) == (0 if why is None else 1)
    assert list(flagged["why"]) == ([] if why is None else [why])


# --- small nuclei: outlines that surround them, the inset, magnitude and lesions ------------

BIG = (80, 96, 60)  # a head of 2 x 2 x 3 mm voxels: panels of about 4 pixels per voxel


def _small_nuclei() -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """R2* 20 1/s with a bright (60 1/s, drawn white) 2-voxel SN and 1-voxel RN per side, the
    basal ganglia for the other views, and the affine."""
    r2 = np.full(BIG, 20.0)
    structures = {name: np.zeros(BIG, dtype=bool) for name in DEEP_GM}
    s = np.s_
    for x in (34, 45):  # left and right of the midline x = 39.5
        structures["substantia_nigra"][x, 40:42, 25] = True  # 2 voxels along y
        structures["red_nucleus"][x, 44, 25] = True
        structures["pallidum"][s[x - 3 : x + 3], 50:56, 33:36] = True
        structures["thalamus"][s[x - 2 : x + 3], 40:48, 33:36] = True
    for name in ("substantia_nigra", "red_nucleus"):
        r2[structures[name]] = 60.0
    structures = {k: v for k, v in structures.items() if v.any()}
    return r2, structures, np.diag([2.0, 2.0, 3.0, 1.0])


def _pixels_at_voxels(fig, panels, region: str) -> list[np.ndarray]:
    """The rendered RGB (0-255) at the centre of each of ``region``'s voxels, in every panel
    that shows it (axes in the order of the panels)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    height = image.shape[0]
    found = []
    for ax, panel in zip(fig.axes, panels, strict=False):
        if region not in panel.outlines:
            continue
        left, right, bottom, top = panel.extent
        rows, cols = panel.rgba.shape[:2]
        for i, j in np.argwhere(np.asarray(panel.outlines[region]) >= 0.5):
            x = left + (j + 0.5) * (right - left) / cols
            y = bottom + (i + 0.5) * (top - bottom) / rows
            px, py = ax.transData.transform((x, y))
            found.append(image[int(height - py), int(px)])
    return found


def test_outline_surrounds_a_two_voxel_nucleus_instead_of_covering_it():
    r2, structures, affine = _small_nuclei()
    magnitude = 1000.0 * np.exp(-0.005 * r2)
    for extra in ({}, {"magnitude": magnitude}):  # without and with the third row (insets)
        fig = render_qc(r2, structures, title="sub-01", affine=affine, **extra)
        panels = qc_panels(r2, structures, affine=affine, **extra)
        assert len(fig.axes) == len(panels) + 1  # and the colour bar
        for region in ("substantia_nigra", "red_nucleus"):
            centres = _pixels_at_voxels(fig, panels, region)
            assert len(centres) >= (2 if not extra else 4)
            for rgb in centres:  # the nucleus' own white, not the outline's colour or edge
                assert rgb.min() >= 200, (region, rgb)
                assert rgb.max() - rgb.min() <= 10, (region, rgb)


def test_insets_enlarge_sn_and_rn_and_the_magnitude_shows_the_lesions():
    r2, structures, affine = _small_nuclei()
    lesions = np.zeros(BIG, dtype=bool)
    lesions[20:23, 60:62, 40] = True  # 6 voxels in axial slice 40, 2 in slice 41
    lesions[30, 30, 41] = lesions[31, 30, 41] = True
    magnitude = np.full(BIG, 500.0)
    panels = qc_panels(r2, structures, affine=affine, magnitude=magnitude, lesions=lesions)
    kinds = [p.kind for p in panels]
    views = len(choose_slices(structures, BIG))  # RAS already
    assert kinds == ["r2star"] * views + ["magnitude", "inset", "inset"]  # no dentate here
    mag = panels[views]
    assert (mag.view.axis, mag.view.index) == (2, 40)  # through the most lesion voxels
    # the tint marks exactly the lesion voxels of the slice: 6, at x = 20..22, y = 60..61
    grey = np.all(mag.rgba[..., :3] == mag.rgba[..., :1], axis=-1)
    assert (~grey).sum() == 6
    assert mag.lesions.sum() == 6
    np.testing.assert_array_equal(~grey, mag.lesions)
    assert tuple(mag.rgba[~grey][0]) == pytest.approx(
        (1 - LESION_ALPHA) * np.array([1.0, 1.0, 1.0, 1.0])  # 500 is the 99.5th percentile
        + LESION_ALPHA * np.array(to_rgba(LESION_COLOUR))
    )
    plain = qc_panels(r2, structures, affine=affine, magnitude=magnitude)
    shown = next(p for p in plain if p.kind == "magnitude")  # no lesions: the first axial slice
    assert (shown.view.axis, shown.view.index, shown.lesions) == (2, plain[0].view.index, None)
    for inset in panels[-2:]:
        parent = panels[inset.parent]
        assert parent.view == SliceView(parent.view.label, inset.view.axis, inset.view.index)
        assert "substantia_nigra" in inset.outlines
        scale = [
            (parent.extent[1] - parent.extent[0]) / (inset.extent[1] - inset.extent[0]),
            (parent.extent[3] - parent.extent[2]) / (inset.extent[3] - inset.extent[2]),
        ]
        assert scale == pytest.approx([INSET_ZOOM, INSET_ZOOM], rel=0.15)
        # the crop is the parent's pixels, at the place its extent says
        rows, cols = parent.rgba.shape[:2]
        j0 = round((inset.extent[0] - parent.extent[0]) / (parent.extent[1] / cols))
        i0 = round((inset.extent[2] - parent.extent[2]) / (parent.extent[3] / rows))
        r, c = inset.rgba.shape[:2]
        np.testing.assert_array_equal(inset.rgba, parent.rgba[i0 : i0 + r, j0 : j0 + c])


def test_voxel_count_table_equals_the_regions_rows(tmp_path):
    rows = [
        ("sub-01", region, hemi, n)
        for k, region in enumerate(DEEP_GM)
        for hemi, n in (("left", 3 + k), ("right", 40 + k), ("both", 43 + 2 * k))
    ]
    rows.append(("sub-01", "nawm", "both", 9999))
    regions = pd.DataFrame(rows, columns=["participant_id", "region", "hemisphere", "n_voxels"])
    counts = voxel_counts(regions)
    assert list(counts.index) == list(DEEP_GM)
    for region, hemi, n in zip(regions.region, regions.hemisphere, regions.n_voxels, strict=True):
        if region in DEEP_GM:
            assert counts.at[region, hemi] == n
    png = tmp_path / "qc.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = qc_page(png, tmp_path / "qc.html", title="t", numbers=QCNumbers(1, 0), counts=counts)
    text = page.read_text()
    assert text.count("<td class='flag'>") == sum(3 + k < 20 for k in range(len(DEEP_GM)))
    assert "<tr><th>red nucleus</th><td class='flag'>8</td><td>45</td><td>53</td></tr>" in text


def test_sn_and_rn_in_every_view_give_no_more_insets_than_the_figure_holds():
    """Registered-atlas nuclei that spill into every view (seen with --segmentation hybrid on a
    phantom): at most three rows of three panels, and the figure is drawn (was an IndexError)."""
    r2, structures, affine = _small_nuclei()
    for name in ("substantia_nigra", "red_nucleus"):
        structures[name][30:50, 38:58, 20:40] = True  # through every view's slice
    structures["dentate_nucleus"] = np.zeros(BIG, dtype=bool)
    structures["dentate_nucleus"][30:50, 20:26, 20:24] = True
    magnitude = np.full(BIG, 500.0)
    panels = qc_panels(r2, structures, affine=affine, magnitude=magnitude)
    assert len(panels) == 9  # report.qc.MAX_PANELS
    assert [p.kind for p in panels].count("inset") == 9 - 1 - len(choose_slices(structures, BIG))
    fig = render_qc(r2, structures, title="x", affine=affine, magnitude=magnitude)
    assert len(fig.axes) >= 9
    # the views chosen for SN/RN get the insets first
    assert [panels[p.parent].view.label for p in panels if p.kind == "inset"][:2] == [
        "SN, RN",
        "SN, RN",
    ]
