"""The R2* fit methods: one :class:`Solver` record per estimator, in :data:`SOLVERS`.

Everything that depends on the method reads its record: :class:`~ironmap.fitting.DecayModel`
validates the name and the echo times with it and calls its ``function`` (no branching on names),
:class:`~ironmap.fitting.DecayFit` takes the sidecar description and the noise model of the
Cramer-Rao bound from it, and :data:`METHODS` (the user's choices: ``--fit-method``, configs) is
derived from it.

Adding a fit method
-------------------
One function and one record:

1. Write the solver with the one signature every method has::

       def my_method(signal, te, *, sigma, factor):
           # signal: (n, n_echoes) float64, finite and > 0; te: (n_echoes,) in s
           # sigma: noise SD (signal units) or None; factor: (n, n_echoes) or None
           return s0, r2star, converged  # shapes (n,), (n,), (n,) bool

   ``factor`` is the known extra signal factor ``F(TE)`` of ``S0 exp(-R2* TE) F(TE)``. A
   ``"gaussian"`` method never sees it: the model passes ``signal / factor`` and
   ``factor=None``. A ``"rician"`` method gets the measured magnitudes and ``factor``; one
   registered with ``multi_coil=True`` also gets ``coils=N`` (receive channels combined by
   root-sum-of-squares: noncentral chi noise) and must model it.
   Non-finite or non-decaying results need no handling: the model flags them.
2. Add ``Solver(name="my_method", function=my_method, description="...", ...)`` to
   :data:`SOLVERS` below.

The method is then accepted by ``DecayModel(method="my_method")``, listed in :data:`METHODS`,
described in provenance sidecars, and covered by the contract tests in
``tests/test_fitting_solvers.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from . import solvers
from .auto import auto

__all__ = ["METHODS", "SOLVERS", "Solver", "SolverFunction", "get_solver"]

Array = NDArray[np.float64]


class SolverFunction(Protocol):
    """The one signature of every fit method (see the module docstring)."""

    def __call__(
        self, signal: Array, te: Array, *, sigma: float | Array | None, factor: Array | None
    ) -> tuple[Array, Array, NDArray[np.bool_]]: ...


#: ``multi_coil`` solvers also take ``coils: int`` (>= 1) as a keyword.


@dataclass(frozen=True)
class Solver:
    """One R2* estimator and everything the model needs to know about it.

    Attributes
    ----------
    name : str
        Key in :data:`SOLVERS` and the value of ``DecayModel(method=...)``.
    function : SolverFunction
        ``function(signal, te, *, sigma, factor) -> (s0, r2star, converged)``: ``signal``
        of shape (n, n_echoes) (float64, finite, > 0), ``te`` of shape (n_echoes,) in seconds,
        ``sigma`` the noise SD in signal units (a float, or shape (n,) for a noise map) or
        ``None``, ``factor`` of shape
        (n, n_echoes) or ``None``; returns ``s0`` (signal units) and ``r2star`` (1/s), float
        arrays of shape (n,), and ``converged``, bool of shape (n,).
    description : str
        One line for provenance sidecars (``EstimationAlgorithm``).
    noise_model : {"gaussian", "rician"}
        The noise the estimator assumes. ``"gaussian"``: it is called with
        ``signal / factor`` and ``factor=None``, and ``r2star_sd`` is the Gaussian Cramer-Rao
        bound. ``"rician"``: it is called with the measured magnitudes and ``factor``, and
        ``r2star_sd`` is the Rician bound.
    min_echoes : int
        Fewest echoes the method accepts (checked after ``check_echo_times``).
    public : bool
        Whether users may choose it (listed in :data:`METHODS`); internal solvers are only
        reached through another record's ``dual_echo``.
    check_echo_times : callable or None
        ``check(te)`` that raises :class:`~ironmap.errors.InputError` for echo times the
        method cannot use (e.g. unequal spacing for ARLO).
    dual_echo : str or None
        Name of the solver used instead when the data have exactly two echoes (two data, two
        parameters: every Gaussian estimator reduces to the closed form), or ``None`` when this
        method handles two echoes itself.
    multi_coil : bool
        Whether ``function`` takes ``coils=N`` and models the noncentral chi noise of ``N``
        receive channels combined by root-sum-of-squares. A ``"rician"`` method without it only
        accepts ``DecayModel(coils=1)``; ``"gaussian"`` methods ignore the coil count.
    """

    name: str
    function: SolverFunction
    description: str
    noise_model: Literal["gaussian", "rician"]
    min_echoes: int = 2
    public: bool = True
    check_echo_times: Callable[[Array], object] | None = None
    dual_echo: str | None = "two_point"
    multi_coil: bool = False

    def __post_init__(self) -> None:
        if self.noise_model not in ("gaussian", "rician"):
            raise ValueError(f"noise_model must be 'gaussian' or 'rician', got {self.noise_model}")
        if self.min_echoes < 2:
            raise ValueError(f"min_echoes must be >= 2, got {self.min_echoes}")

    def validate_echo_times(self, te: Array) -> None:
        """Raise :class:`~ironmap.errors.InputError` if this method cannot use ``te`` (s)."""
        if self.check_echo_times is not None:
            self.check_echo_times(te)
        if te.size < self.min_echoes:
            raise InputError(
                f"fit method {self.name!r} needs at least {self.min_echoes} echoes, got {te.size}"
            )


def _always_converged(
    solve: Callable[[Array, Array], tuple[Array, Array]],
) -> SolverFunction:
    """Lift a closed-form ``solve(signal, te) -> (s0, r2star)`` to the solver signature."""

    def function(
        signal: Array, te: Array, *, sigma: float | Array | None, factor: Array | None
    ) -> tuple[Array, Array, NDArray[np.bool_]]:
        s0, r2star = solve(signal, te)
        return s0, r2star, np.ones(signal.shape[0], dtype=bool)

    function.__name__ = function.__qualname__ = solve.__name__
    function.__doc__ = solve.__doc__
    return function


def _nlls(
    signal: Array, te: Array, *, sigma: float | Array | None, factor: Array | None
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """:func:`~ironmap.fitting.solvers.nlls` with the solver signature."""
    return solvers.nlls(signal, te)


#: Every estimator, by name; the public ones in the order users see them.
SOLVERS: dict[str, Solver] = {
    s.name: s
    for s in (
        Solver(
            name="auto",
            function=auto,
            description=(
                "Rician maximum likelihood below the noise floor, noise-corrected WLS above it"
            ),
            noise_model="rician",
            dual_echo=None,
            multi_coil=True,
        ),
        Solver(
            name="loglin",
            function=_always_converged(solvers.loglin),
            description="log-linear ordinary least squares",
            noise_model="gaussian",
        ),
        Solver(
            name="wls",
            function=_always_converged(solvers.wls),
            description="log-linear least squares weighted by S^2 (iterated)",
            noise_model="gaussian",
        ),
        Solver(
            name="nlls",
            function=_nlls,
            description="mono-exponential non-linear least squares (Levenberg-Marquardt)",
            noise_model="gaussian",
        ),
        Solver(
            name="arlo",
            function=_always_converged(solvers.arlo),
            description="ARLO (Pei et al. 2015) with exact Simpson-rule inversion",
            noise_model="gaussian",
            min_echoes=3,
            check_echo_times=solvers.equal_spacing,
        ),
        Solver(
            name="two_point",
            function=_always_converged(solvers.two_point),
            description="closed form for two echoes: R2* = ln(S1/S2) / (TE2 - TE1)",
            noise_model="gaussian",
            public=False,
            dual_echo=None,
        ),
    )
}


def public_methods() -> tuple[str, ...]:
    """The fit methods users may choose now, in registry order (records registered later too)."""
    return tuple(name for name, s in SOLVERS.items() if s.public)


#: The fit methods users may choose (``DecayModel(method=...)``, ``--fit-method``), in order.
METHODS: tuple[str, ...] = public_methods()


def get_solver(name: str) -> Solver:
    """The record of a user-chosen fit method.

    Parameters
    ----------
    name : str
        A public method name (one of :data:`METHODS`, or one registered later).

    Returns
    -------
    Solver

    Raises
    ------
    InputError
        ``name`` is not a public method in :data:`SOLVERS`.
    """
    record = SOLVERS.get(name) if isinstance(name, str) else None
    if record is None or not record.public:
        choices = ", ".join(public_methods())
        raise InputError(f"unknown fit method {name!r}; choose one of {choices}")
    return record
