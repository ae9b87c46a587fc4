"""What a figure module declares: jobs (runs to train), claims (judged), and figure data.

A figure module (``fig1`` ... ``fig6``) provides

* ``jobs(settings, seed) -> list[Job]``: the runs it needs; a job names the runs it depends
  on and builds its config (and initial weights, teacher) from them once they exist;
* ``analyze(runs, settings, seed) -> FigureAnalysis``: numbers for the claims, and the data
  the plotting module draws.

Run files are named after jobs, so figures that need the same run share it, and a second
``reproduce`` reuses every finished file whose config is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from closedloop.config import RunConfig
from closedloop.store import Run, Teacher


@dataclass(frozen=True)
class Settings:
    """How much to compute: the paper's settings, or ``quick`` ones for tests."""

    quick: bool = False
    seeds: tuple[int, ...] = (0,)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full


@dataclass
class JobInputs:
    """What a job trains: a config, and optionally initial weights and a teacher."""

    config: RunConfig
    initial: dict[str, np.ndarray] | None = None
    teacher: Teacher | None = None


@dataclass
class Job:
    """One run to train. ``build`` receives the finished runs named in ``depends``.

    ``cost`` orders the work (the costliest ready job starts first); it is a rough number of
    step-equivalents (epochs x episode length). Jobs with the same ``group`` (one run for
    several seeds) may be trained together as an ensemble.
    """

    name: str
    build: Callable[[Mapping[str, Run]], JobInputs]
    depends: tuple[str, ...] = ()
    cost: float = 1.0
    group: str | None = None


@dataclass
class Claim:
    """A claim of the paper, judged by an explicit criterion on measured numbers."""

    id: str
    statement: str
    criterion: str
    measured: dict[str, Any]
    supported: bool


@dataclass
class FigureAnalysis:
    """Claims and drawing data of one figure for one seed."""

    claims: list[Claim]
    data: dict[str, Any] = field(default_factory=dict)


def run_name(stem: str, seed: int) -> str:
    """Job and file name of a run: ``<stem>-s<seed>``."""
    return f"{stem}-s{seed}"


def source(run: Run, epoch: int | str) -> str:
    """A run reference for provenance, relative to the output folder (``file@epoch``)."""
    return f"{run.path.name}@{epoch}"


def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None, NumPy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
