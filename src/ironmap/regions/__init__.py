"""Regions: label tables, partial-volume resampling onto the R2* grid, ROI statistics, volumes."""

from .labels import DEEP_GM, RegionCodes, read_label_table, region_codes
from .resample import label_fractions
from .stats import (
    REGION_COLUMNS,
    VOLUME_COLUMNS,
    region_groups,
    region_masks,
    regional_r2star,
    volumes,
)

__all__ = [
    "DEEP_GM",
    "REGION_COLUMNS",
    "VOLUME_COLUMNS",
    "RegionCodes",
    "label_fractions",
    "read_label_table",
    "region_codes",
    "region_groups",
    "region_masks",
    "regional_r2star",
    "volumes",
]
