"""One plain function per command; the CLI only parses arguments and calls these."""

from .fit import FitConfig, run_fit

__all__ = ["FitConfig", "run_fit"]
