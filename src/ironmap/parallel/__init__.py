"""Executors: one interface for running independent per-participant jobs.

- :class:`LocalExecutor`: the current machine, ``n_jobs`` worker processes (serial when 1).
- :class:`DaskExecutor`: an existing Dask distributed cluster (``--scheduler-address`` or
  ``--scheduler-file``), e.g. one started by ``dask-jobqueue`` on SLURM/PBS/SGE; needs the
  ``ironmap[dask]`` extra.

:func:`map_ordered` runs a function over items on any executor, shows its progress on a
terminal (:class:`Progress`: jobs done and failed, elapsed, ETA; :func:`progress_output` turns
it off) and returns the results in input order. Every job runs with BLAS pinned
to one thread, so ``n`` workers use ``n`` cores.
"""

from .executors import DaskExecutor, Executor, LocalExecutor, make_executor, map_ordered
from .progress import Progress, progress_output

__all__ = [
    "DaskExecutor",
    "Executor",
    "LocalExecutor",
    "Progress",
    "make_executor",
    "map_ordered",
    "progress_output",
]
