"""What a figure module declares: jobs (runs to train), its claims' runs by role, and figure
data.

A figure module (``fig1`` ... ``fig6``) provides

* ``jobs(settings, seed) -> list[Job]``: the runs it needs (:class:`closedloop.scale.jobs.Job`);
  a job names the runs it depends on and builds its config (and initial weights, teacher) from
  them once they exist;
* ``roles(runs, settings, seed) -> dict``: one seed's runs laid out by the roles of the claims
  it shows (the registered claims of :mod:`closedloop.analysis.claims` whose ``figure`` names
  it), so that ``reproduce`` judges each of them, a user's included;
* ``CURVES``: the loss curves whose spread over seeds its figure shades (data key -> (run
  stem, metric));
* ``analyze(runs, settings, seed) -> FigureAnalysis``: the data the plotting module draws
  (for the seed shown), and the judgements of the claims it reads that data from.

Run files are named after jobs, so figures that need the same run share it, and a second
``reproduce`` reuses every finished file whose config is unchanged.

Example
-------
>>> Settings(quick=True).pick(1000, 200)
200
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from closedloop.analysis.claims import Judgement, finite
from closedloop.runs.store import Run
from closedloop.scale.jobs import Job, JobInputs

__all__ = ["FigureAnalysis", "Job", "JobInputs", "Judgement", "Settings", "finite", "run_name",
           "source"]


@dataclass(frozen=True)
class Settings:
    """How much to compute: the paper's settings, or ``quick`` ones for tests."""

    quick: bool = False
    seeds: tuple[int, ...] = (0,)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full


@dataclass
class FigureAnalysis:
    """Judged claims and drawing data of one figure for one seed."""

    judgements: list[Judgement]
    data: dict[str, Any] = field(default_factory=dict)


def run_name(stem: str, seed: int) -> str:
    """Job and file name of a run: ``<stem>-s<seed>``.

    Example
    -------
    >>> run_name("di-tanh-closed", 3)
    'di-tanh-closed-s3'
    """
    return f"{stem}-s{seed}"


def source(run: Run, epoch: int | str) -> str:
    """A run reference for provenance, relative to the output folder (``file@epoch``)."""
    return f"{run.path.name}@{epoch}"
