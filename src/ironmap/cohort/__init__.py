"""Cohort statistics: site harmonisation and normative age models fitted on controls, group
comparisons, clinical determinants, and the participant flow."""

from .age import AGE_DF, NormativeModel, fit_normative
from .compare import COMPARISON_COLUMNS, CONTRASTS, compare_groups, compare_groups_mixed
from .determinants import DETERMINANT_COLUMNS, PREDICTORS, determinants
from .harmonize import ComBatModel, fit_combat
from .tables import SUBJECT_COLUMNS, collect_regions, read_participants, subjects_table

__all__ = [
    "AGE_DF",
    "COMPARISON_COLUMNS",
    "CONTRASTS",
    "DETERMINANT_COLUMNS",
    "PREDICTORS",
    "SUBJECT_COLUMNS",
    "ComBatModel",
    "NormativeModel",
    "collect_regions",
    "compare_groups",
    "compare_groups_mixed",
    "determinants",
    "fit_combat",
    "fit_normative",
    "read_participants",
    "subjects_table",
]
