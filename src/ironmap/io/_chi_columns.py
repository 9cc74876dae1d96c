"""Susceptibility (chi, QSM) columns: the regional chi columns of ``regions.tsv`` and the chi
tables of the group stage, which mirror the R2* analyses' tables in ppm.

Part of the one column dictionary (:data:`ironmap.io._table_columns.TABLE_COLUMNS` gathers
them; :func:`ironmap.io.columns.describe` reads it). Descriptions follow docs/conventions.md.
"""

from __future__ import annotations

from dataclasses import replace

from ._group_columns import GROUP_COLUMNS
from .columns import (
    COLUMNS,
    Column,
    _count,
)

__all__ = ["CHI_COLUMNS"]


def _chi(description: str) -> Column:
    """A susceptibility (QSM) column: ppm, to 0.1 ppb."""
    return Column(description, "ppm", decimals=4)


#: The regional susceptibility columns of ``regions.tsv`` (participant and group tables).
_CHI_REGION_COLUMNS = {
    "chi_median": _chi(
        "Median susceptibility (QSM, sub-*_Chimap.nii.gz) of the very voxels of r2star_median "
        "(n/a without phase echoes or an external Chimap)"
    ),
    "chi_mean": _chi("Mean susceptibility of the region's voxels"),
    "chi_sd": _chi("Standard deviation of the susceptibility of the region's voxels"),
    "chi_n_voxels": _count(
        "Voxels with a susceptibility among the region's R2* voxels (0 without QSM)"
    ),
    "chi_harmonized": _chi(
        "chi_median with the site's additive location removed (ComBat on chi, linear scale; "
        "group/regions.tsv, when chi was analysed), age kept"
    ),
    "chi_corrected": _chi(
        "Harmonised chi corrected to the controls' reference age (see age_model_chi.tsv)"
    ),
    "chi_z": Column(
        "z-score of chi against the controls' prediction interval at the participant's age, "
        "sex and site (SD units)",
        decimals=2,
    ),
}


# -- the chi tables of the group stage: the R2* analyses' columns, in ppm -------------------

#: Group table kind of the chi analysis -> the R2* table it mirrors (io.derivatives.GROUP_TABLES).
_CHI_KINDS = {
    "age_model_chi": "age_model",
    "harmonization_chi": "harmonization",
    "comparison_chi": "comparison",
    "comparison_mixed_chi": "comparison_mixed",
    "determinants_chi": "determinants",
}


def _as_chi(column: Column) -> Column:
    """A column of an R2* group table as it reads in the chi table of the same analysis: 1/s
    becomes ppm (4 significant digits), R2* chi (chi is modelled on its own, linear, scale)."""
    words = column.description.replace("log R2*", "chi").replace("R2*", "chi")
    words = words.replace("r2star_", "chi_").replace("log(1/s)", "ppm").replace("1/s", "ppm")
    if column.units and "1/s" in column.units:
        units = column.units.replace("log(1/s)", "ppm").replace("1/s", "ppm")
        return replace(column, description=words, units=units, decimals=None, significant=4)
    return replace(column, description=words)


_CHI_EXTRA = {
    "residual_sd": _chi("Controls' residual SD of chi (linear scale)"),
    **{
        f"param_age{k}": Column(
            f"Coefficient of age basis b{k} (ppm per decade: the curve's slope at knot {k}, or "
            "its increment for a monotone curve)",
            format="number",
        )
        for k in range(1, 5)
    },
    **{
        f"param_sex_{code}": Column(
            f"Difference in chi (ppm) of sex {code} from the baseline sex", format="number"
        )
        for code in ("F", "M", "O")
    },
    **{
        f"press_rmse_df{k}": Column(
            f"Leave-one-out (PRESS) RMSE of the {k}-knot age model of chi", "ppm", significant=4
        )
        for k in range(1, 5)
    },
    "reference_chi": _chi("The controls' expected chi at the reference age (baseline sex)"),
    "location": _chi("The site's additive chi offset removed by the harmonisation"),
    "location_sd": _chi("Posterior SD of location"),
    "residual_sd_log": Column("n/a: chi is modelled on a linear scale (see residual_sd)"),
    "location_percent": Column("n/a: chi's site offset is additive (see location)"),
    "location_sd_percent": Column("n/a: chi's site offset is additive (see location_sd)"),
}
#: Chi table kind -> its columns (the R2* table's, in ppm, and the chi-only ones).
CHI_COLUMNS: dict[str, dict[str, Column]] = {}
for _kind, _base in _CHI_KINDS.items():
    CHI_COLUMNS[_kind] = {
        **{name: _as_chi(c) for name, c in {**COLUMNS, **GROUP_COLUMNS.get(_base, {})}.items()},
        **_CHI_EXTRA,
    }
