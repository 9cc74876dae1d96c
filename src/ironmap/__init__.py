"""ironmap: R2* mapping and cohort statistics for brain-iron research in multiple sclerosis."""

__version__ = "0.1.0"

__all__ = ["__version__"]
