"""The one dictionary of ironmap's table columns: meaning, units, levels and rounding.

Every TSV ironmap writes (:func:`ironmap.io.derivatives.write_tsv`) gets a BIDS JSON sidecar
built from this dictionary (:func:`table_sidecar`: ``Description``, ``Format``, ``Units``,
``Levels`` per column), and its numbers rounded to what the measurement supports
(:func:`round_table`). The descriptions follow docs/conventions.md, which documents every
column; a column missing here gets :data:`UNDESCRIBED`, which tests/test_columns.py refuses.

A column is looked up by table kind first (the same name may mean different things in two
tables: ``ci_low`` is in 1/s in ``group_comparison.tsv`` but in the units of ``beta`` in
``determinants.tsv``), then in the columns shared by all tables, then among the column families
whose names carry a number or a code (``param_age2``, ``press_rmse_df3``, ``param_sex_M``,
``min_voxels_putamen``). Table kinds are the keys of
:data:`ironmap.io.derivatives.GROUP_TABLES`, plus ``volumes``, ``lesions`` and ``dseg``;
participant ``_regions.tsv`` files are of kind ``regions``.

Rounding rules (absent: ``write_tsv``'s 8 significant digits):

- R2* and its differences, SDs and CIs, in 1/s: 0.01 (the precision of a regional median);
- volumes in mL: 0.001 (1 µL); NBV 0.0001; ages and durations in years: 0.1;
- p-values: 3 significant digits (so that 2.3e-9 stays 2.3e-9);
- standardised effects (Cohen's d, standardised beta): 0.001; z-scores 0.01;
- model internals (ComBat's gamma and delta, log-scale SDs, regression slopes of mixed units):
  4 significant digits. The age model's ``param_*`` coefficients are not rounded: they are
  what a reader recomputes predictions from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "UNDESCRIBED",
    "Column",
    "describe",
    "round_table",
    "table_sidecar",
    "undescribed",
]

#: ``Description`` written for a column the dictionary lacks (a test fails on it).
UNDESCRIBED = "not described: ironmap.io.columns has no entry for this column"


@dataclass(frozen=True)
class Column:
    """What a column means and how its numbers are rounded.

    Attributes
    ----------
    description : str
        BIDS ``Description``.
    units : str or None
        BIDS ``Units`` (CMIXF-style: ``1/s``, ``mL``, ``year``, ``mm``, ``%``); None when
        dimensionless or not a quantity.
    levels : mapping of str to str or None
        BIDS ``Levels`` of a categorical column: value -> meaning.
    decimals : int or None
        Round to this many decimals.
    significant : int or None
        Round to this many significant digits (instead of ``decimals``).
    format : str or None
        BIDS ``Format`` (``integer``, ``number``, ``string``); by default ``number`` for a
        column with units or a rounding rule, else unset (the validator reads ``string``).
    """

    description: str
    units: str | None = None
    levels: dict[str, str] | None = None
    decimals: int | None = None
    significant: int | None = None
    format: str | None = None

    def sidecar(self) -> dict:
        """The column's BIDS sidecar entry (``Description``, ``Format``, ``Units``, ``Levels``)."""
        entry: dict = {"Description": self.description}
        numeric = self.units or self.decimals is not None or self.significant is not None
        fmt = self.format or ("number" if numeric else None)
        if fmt is not None:
            entry["Format"] = fmt
        if self.units is not None:
            entry["Units"] = self.units
        if self.levels is not None:
            entry["Levels"] = dict(self.levels)
        return entry

    def round(self, values: pd.Series) -> pd.Series:
        """``values`` rounded by the column's rule (unchanged without one or if not float)."""
        if not pd.api.types.is_float_dtype(values.dtype):
            return values
        if self.decimals is not None:
            return values.round(self.decimals) + 0.0  # + 0.0: no "-0"
        if self.significant is not None:
            x = values.to_numpy(dtype=np.float64, copy=True)
            ok = np.isfinite(x) & (x != 0)
            scale = 10.0 ** (self.significant - 1 - np.floor(np.log10(np.abs(x[ok]))))
            x[ok] = np.round(x[ok] * scale) / scale
            return pd.Series(x + 0.0, index=values.index, name=values.name)
        return values


def _r2(description: str) -> Column:
    return Column(description, "1/s", decimals=2)


def _ml(description: str) -> Column:
    return Column(description, "mL", decimals=3)


def _count(description: str) -> Column:
    return Column(description, format="integer")


def _p(description: str) -> Column:
    return Column(description, significant=3)


def _bool(description: str, true: str, false: str) -> Column:
    return Column(description, levels={"True": true, "False": false})


_DEEP_GM = {
    "thalamus": "thalamus",
    "caudate": "caudate nucleus",
    "putamen": "putamen",
    "pallidum": "globus pallidus",
    "substantia_nigra": "substantia nigra",
    "red_nucleus": "red nucleus",
    "dentate_nucleus": "dentate nucleus",
}
_NAWM = {"nawm": "normal-appearing cerebral white matter (cerebral WM minus lesions)"}
_LESIONS = {"lesions": "all lesion voxels"}
_PHENOTYPES = {
    "CIS": "clinically isolated syndrome",
    "RRMS": "relapsing-remitting MS",
    "SPMS": "secondary progressive MS",
    "PPMS": "primary progressive MS",
}


def _region(levels: dict[str, str]) -> Column:
    return Column("Brain region (canonical name, docs/regions.md)", levels=levels)


#: Columns shared by every table that has them.
COLUMNS: MappingProxyType[str, Column] = MappingProxyType(
    {
        "participant_id": Column("Participant label, sub-<label>"),
        "session": Column("Session label, ses-<label> (the baseline session in group tables)"),
        "site": Column("Acquisition site (scanner/centre), from participants.tsv"),
        "group": Column(
            "Diagnosis group, from participants.tsv",
            levels={"HC": "healthy control", "MS": "multiple sclerosis"},
        ),
        "phenotype": Column(
            "MS phenotype, from participants.tsv (n/a for HC)", levels=_PHENOTYPES
        ),
        "region": _region({**_DEEP_GM, **_NAWM}),
        "hemisphere": Column(
            "Hemisphere of the region",
            levels={"left": "left", "right": "right", "both": "both hemispheres together"},
        ),
        "r2star_median": _r2("Median R2* of the region's voxels (the value to use)"),
        "r2star_mean": _r2("Mean R2* of the region's voxels"),
        "r2star_iqr": _r2("Interquartile range of R2* of the region's voxels"),
        "n_voxels": _count("Number of R2* voxels used"),
        "volume_ml": _ml("Volume of the structure on the segmentation's own grid"),
        "iron_median_mg_per_kg": Column(
            "Iron concentration from r2star_median (--iron-calibration)", "mg/kg", decimals=2
        ),
        "iron_mean_mg_per_kg": Column(
            "Iron concentration from r2star_mean (--iron-calibration)", "mg/kg", decimals=2
        ),
        "alignment": Column(
            "How the user's segmentation fits the GRE (docs/regions.md#alignment-check)",
            levels={"ok": "aligned", "doubtful": "possibly misaligned: check the QC figure"},
        ),
        "alignment_score": Column(
            "Gain in fit of the best displaced segmentation, in units of the fit's own loss per "
            "1-3 voxel shift; 0 or negative when aligned",
            decimals=3,
        ),
        "alignment_flip_score": Column(
            "Gain in fit of the left-right mirrored segmentation, in the units of alignment_score",
            decimals=3,
        ),
        "alignment_shift_mm": Column(
            "Length of the displacement that fits the GRE best (0 when aligned)", "mm", decimals=2
        ),
        "r2star_harmonized": _r2(
            "r2star_median with the site's location removed (ComBat on log R2*; the site's "
            "scale enters r2star_z only), age kept"
        ),
        "r2star_corrected": _r2(
            "Harmonised R2* corrected to the controls' reference age (see age_model.tsv)"
        ),
        "r2star_z": Column(
            "z-score against the controls' prediction interval at the participant's age, sex "
            "and site (SD units)",
            decimals=2,
        ),
        "age": Column("Age at scan, from participants.tsv", "year", decimals=1),
        "sex": Column(
            "Sex, normalised from participants.tsv",
            levels={"M": "male", "F": "female", "O": "other"},
        ),
        "disease_duration": Column(
            "Years since first symptoms, from participants.tsv", "year", decimals=1
        ),
        "edss": Column("Expanded Disability Status Scale, from participants.tsv", decimals=1),
        "icv_ml": _ml("Intracranial volume: all labelled voxels of the segmentation"),
        "brain_ml": _ml("Brain volume: all labels except CSF and ventricles"),
        "cortical_gm_ml": _ml("Cortical grey-matter volume"),
        "nbv": Column("Normalised brain volume, brain_ml / icv_ml (fraction)", decimals=4),
        "lesion_volume_ml": _ml("Lesion mask volume (n/a without a mask)"),
        "lesion_count": _count("26-connected components of the lesion mask"),
        "n_prl": _count(
            "Paramagnetic rim lesion candidates (prl_candidate of the participant's "
            "_lesions.tsv; n/a without a chi map or a lesion mask)"
        ),
        "n_hc": _count("Number of healthy controls in the fit"),
        "estimate": _r2("Adjusted difference of means, arm A minus arm B"),
        "ci_low": _r2("Lower bound of the 95 % confidence interval of estimate"),
        "ci_high": _r2("Upper bound of the 95 % confidence interval of estimate"),
        "p": _p("Two-sided p-value"),
        "p_fdr": _p("p-value adjusted by Benjamini-Hochberg across regions within the contrast"),
        "n_a": _count("Effective n of arm A: participants at sites holding both arms"),
        "n_b": _count("Effective n of arm B: participants at sites holding both arms"),
        "contrast": Column(
            "Compared arms, A-B",
            levels={
                "MS-HC": "RRMS + SPMS + PPMS + MS without phenotype (CIS excluded) vs HC",
                "RRMS-HC": "RRMS vs HC",
                "SPMS-HC": "SPMS vs HC",
                "PPMS-HC": "PPMS vs HC",
                "CIS-HC": "CIS vs HC",
                "progressive-RRMS": "SPMS + PPMS vs RRMS",
                "SPMS-PPMS": "SPMS vs PPMS",
                "phenotype-omnibus": "F-test that RRMS, SPMS and PPMS share one mean",
            },
        ),
        "model": Column("Model formula, e.g. y ~ group + age + C(sex) + C(site)"),
    }
)


def describe(name: str, kind: str | None = None) -> Column | None:
    """The :class:`Column` of ``name`` in a table of ``kind`` (None when not described)."""
    # per-table columns and families live in a second module (module size); it imports this one
    from ._table_columns import PATTERNS, TABLE_COLUMNS

    specific = TABLE_COLUMNS.get(kind or "", {})
    if name in specific:
        return specific[name]
    if name in COLUMNS:
        return COLUMNS[name]
    for pattern, make in PATTERNS:
        match = re.fullmatch(pattern, name)
        if match:
            return make(*match.groups())
    return None


def undescribed(columns, kind: str | None = None) -> list[str]:
    """The names among ``columns`` that the dictionary does not describe."""
    return [str(c) for c in columns if describe(str(c), kind) is None]


def table_sidecar(columns, kind: str | None = None) -> dict:
    """BIDS JSON sidecar of a table: one entry per column, in the table's order."""
    return {
        str(c): (
            col.sidecar() if (col := describe(str(c), kind)) else {"Description": UNDESCRIBED}
        )
        for c in columns
    }


def round_table(table: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """A copy of ``table`` with every float column rounded by its rule."""
    rounded = table.copy()
    for name in rounded.columns:
        column = describe(str(name), kind)
        if column is not None:
            rounded[name] = column.round(rounded[name])
    return rounded
