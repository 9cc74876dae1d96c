"""Cohort statistics: normative age/site models, group comparisons, clinical determinants."""

from .age import AGE_MODELS, NormativeModel, age_correct, fit_normative
from .compare import COMPARISON_COLUMNS, CONTRASTS, compare_groups
from .determinants import DETERMINANT_COLUMNS, PREDICTORS, determinants
from .tables import SUBJECT_COLUMNS, collect_regions, read_participants, subjects_table

__all__ = [
    "AGE_MODELS",
    "COMPARISON_COLUMNS",
    "CONTRASTS",
    "DETERMINANT_COLUMNS",
    "PREDICTORS",
    "SUBJECT_COLUMNS",
    "NormativeModel",
    "age_correct",
    "collect_regions",
    "compare_groups",
    "determinants",
    "fit_normative",
    "read_participants",
    "subjects_table",
]
