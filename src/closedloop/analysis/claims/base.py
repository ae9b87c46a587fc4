"""The claim contract: one small base class, what its judge returns, and the registry behind a
claim's id.

A claim is one object: its id (``C1``), the paper's statement, the runs its judge takes (by
role), the figure of ``closedloop reproduce`` that shows it, if any, and its judge, which turns
the runs of one seed into a :class:`Judgement` (the measured numbers, the named parts of the
written criterion and whether each holds, a few headline numbers). ``closedloop reproduce``
judges every registered claim a figure shows, per seed; ``closedloop sweep-summary`` judges
every registered claim about one run or about a closed/open pair on each run of a sweep; a
script calls the same objects: ``CLAIMS.get("C1").judge(closed, opened)``.

Write one as a subclass and register an instance under its id::

    from closedloop.analysis.claims import RUN, Claim, register_claim

    class NoRise(Claim):
        id = "no-rise"
        statement = "The test loss never rises above its epoch-0 value."
        roles = {RUN: "a closed-loop run"}

        def judge(self, run):
            rise = float(run.metrics["test_loss"].max() / run.metrics["test_loss"][0])
            return self.judgement("test loss <= its epoch-0 value at every epoch",
                                  {"rise": rise}, {"never above the start": rise <= 1})

    register_claim(NoRise())

or, from an installed package, with an entry point in the group ``closedloop.claims`` that names
such an instance. :mod:`closedloop.analysis.claims.c1` is a built-in example.

Example
-------
>>> judgement = Judgement("C0", "a statement", "x > 1", {"x": 2.0}, {"x > 1": True})
>>> judgement.supported, judgement.failed
(True, [])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from closedloop.core.registry import Registry
from closedloop.errors import ConfigError

RUN = "run"
"""Role of a claim about one run (``sweep-summary`` lays out every finished run trained
without a teacher in it)."""
CLOSED, OPENED = "closed", "opened"
"""Roles of a claim about a closed-loop run and its open-loop twin, the student that imitates
it (``sweep-summary`` lays out every finished student with its finished teacher in them)."""


@dataclass
class Judgement:
    """A claim judged for one seed by its written criterion.

    Attributes
    ----------
    id, statement, criterion
        The claim's id, what the paper says, and the criterion that judges it here.
    measured
        Every number the criterion reads.
    checks
        The criterion's parts by name, and whether each holds.
    numbers
        Headline numbers of this seed (the report's per-seed table and distribution plot).
    case
        For claims judged differently in different cases (C2), the case this seed is in.

    Example
    -------
    >>> judgement = Judgement("C0", "a statement", "x > 1", {"x": 0.5}, {"x > 1": False})
    >>> judgement.supported, judgement.failed
    (False, ['x > 1'])
    """

    id: str
    statement: str
    criterion: str
    measured: dict[str, Any]
    checks: dict[str, bool]
    numbers: dict[str, float | int | None] = field(default_factory=dict)
    case: str | None = None

    @property
    def supported(self) -> bool:
        """Every part of the criterion holds (and there is at least one)."""
        return bool(self.checks) and all(self.checks.values())

    @property
    def failed(self) -> list[str]:
        """The parts of the criterion that do not hold: why a seed does not support it."""
        return [name for name, holds in self.checks.items() if not holds]


class Claim(ABC):
    """A claim about runs, judged by a written criterion. Subclass it and register an
    instance (:func:`register_claim`).

    A subclass writes
    -----------------
    id
        The claim's name (``C1``), which it is registered under.
    statement
        What the paper (or its author) says.
    roles
        The runs its judge takes, by role: the judge's keyword -> what that run is.
        :data:`RUN` (one run) and :data:`CLOSED`, :data:`OPENED` (a closed-loop run and its
        open-loop twin) are the layouts ``sweep-summary`` judges; a figure of ``reproduce``
        lays out the roles of the claims it shows.
    judge(**runs)
        The :class:`Judgement` of one seed's runs, built with :meth:`judgement`; it may take
        more (optional) arguments, such as analyses a caller has already computed.

    and, where the default does not fit, overrides
    ----------------------------------------------
    figure
        The figure of ``reproduce`` that shows it (``fig1`` ... ``fig6``; default None: none).
    applies(**runs)
        Whether the runs are what the claim is about (default: any). ``sweep-summary``, which
        meets runs of every kind, judges the claim only where it applies.

    It gets
    -------
    Its place in the report (``reproduce``: per seed, over seeds, with a plot of its
    headline numbers over seeds) when a figure shows it, and in ``sweep-summary``'s table
    (``<id>_supported``, ``<id>_failed``, and ``<id>_case`` for a claim judged by case) and
    support fractions when its roles are one of that command's layouts.

    Example
    -------
    >>> class Positive(Claim):
    ...     id = "positive"
    ...     statement = "x is positive."
    ...     roles = {RUN: "a number"}
    ...     def judge(self, run):
    ...         return self.judgement("x > 0", {"x": run}, {"x > 0": run > 0})
    >>> Positive().judge_runs({RUN: 2.0, "other": None}).supported
    True
    """

    id: ClassVar[str]
    statement: ClassVar[str]
    roles: ClassVar[Mapping[str, str]]
    figure: ClassVar[str | None] = None

    @abstractmethod
    def judge(self, *args: Any, **kwargs: Any) -> Judgement:
        """The judgement of one seed's runs (given by role)."""

    def applies(self, *args: Any, **kwargs: Any) -> bool:
        """Whether these runs (by role) are what the claim is about."""
        return True

    def judgement(self, criterion: str, measured: dict[str, Any], checks: dict[str, bool],
                  numbers: dict[str, float | int | None] | None = None,
                  case: str | None = None) -> Judgement:
        """This claim's :class:`Judgement` by ``criterion``: what it measured, the parts of
        the criterion and whether each holds, headline numbers and the seed's case."""
        return Judgement(self.id, self.statement, criterion, measured, checks,
                         dict(numbers or {}), case)

    def judge_runs(self, runs: Mapping[str, Any]) -> Judgement:
        """The judgement of the runs laid out by role in ``runs`` (which may hold more).

        Raises
        ------
        ConfigError
            When ``runs`` lacks one of the claim's roles.
        """
        missing = [role for role in self.roles if role not in runs]
        if missing:
            raise ConfigError(f"claim {self.id} needs the runs {', '.join(missing)}; here "
                              f"there are {', '.join(runs) or 'none'}")
        return self.judge(**{role: runs[role] for role in self.roles})

    def judges(self, runs: Mapping[str, Any]) -> bool:
        """Whether ``runs`` are exactly the claim's roles, and it applies to them.

        Example
        -------
        >>> class Pair(Claim):
        ...     id, statement, roles = "pair", "s", {CLOSED: "", OPENED: ""}
        ...     def judge(self, closed, opened): ...
        >>> Pair().judges({CLOSED: 1, OPENED: 2}), Pair().judges({RUN: 1})
        (True, False)
        """
        return set(runs) == set(self.roles) and self.applies(**runs)


class _ClaimRegistry(Registry):
    def check(self, name: str, claim: Any) -> None:
        if not isinstance(claim, Claim):
            raise ConfigError(f"claim '{name}': {claim!r} must be an instance of a subclass "
                              "of closedloop.analysis.claims.Claim")
        missing = [a for a in ("id", "statement", "roles") if not hasattr(claim, a)]
        if missing:
            raise ConfigError(f"claim '{name}': {type(claim).__name__} must define "
                              f"{', '.join(missing)}")
        if claim.id != name:
            raise ConfigError(f"claim '{name}': its id is '{claim.id}'")


CLAIMS = _ClaimRegistry("claim", "closedloop.claims", {}, (), key="claim", label="claim")
"""Claims by id (built-ins are added by :mod:`closedloop.analysis.claims`)."""


def register_claim(claim: Claim) -> None:
    """Add ``claim`` (an instance of a :class:`Claim` subclass) under its id: ``reproduce``
    judges it when a figure shows it, ``sweep-summary`` when its roles are one run or a
    closed/open pair.

    Example
    -------
    >>> class Finite(Claim):
    ...     id, statement, roles = "finite", "The loss stays finite.", {RUN: "a run"}
    ...     def judge(self, run):
    ...         ok = bool(np.isfinite(run.metrics["test_loss"]).all())
    ...         return self.judgement("every test loss finite", {}, {"finite": ok})
    >>> register_claim(Finite())
    >>> CLAIMS.get("finite").statement
    'The loss stays finite.'
    >>> _ = CLAIMS.registered.pop("finite")     # the example leaves no claim behind
    """
    CLAIMS.register(getattr(claim, "id", repr(claim)), claim)


def registered_claims() -> list[Claim]:
    """Every claim known now (built-ins, registered ones and entry points), by id.

    Example
    -------
    >>> [claim.id for claim in registered_claims()][:3]
    ['C1', 'C1b', 'C2']
    """
    return [CLAIMS.get(name) for name in CLAIMS.names()]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` in float64; NaN or inf for a diverged run, never an error.

    Example
    -------
    >>> ratio(1.0, 4.0), ratio(1.0, 0.0)
    (0.25, inf)
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(numerator) / np.float64(denominator))


def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None, NumPy scalars become Python ones.

    Example
    -------
    >>> finite({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)]})
    {'a': None, 'b': [1.5, 2]}
    """
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
