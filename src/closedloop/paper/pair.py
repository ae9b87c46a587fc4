"""The nonlinear double-integrator pair behind figures 1 and 2: a closed-loop network and its
open-loop twin (the student starts from the closed-loop network's epoch-0 weights and
imitates its last epoch on white noise, science 2)."""

from __future__ import annotations

from collections.abc import Mapping

from closedloop.analysis.claims import CLOSED, OPENED
from closedloop.config import load_preset
from closedloop.core.plants import plant_from_config
from closedloop.paper.base import Job, JobInputs, Settings, run_name, source
from closedloop.runs.store import Run
from closedloop.training.sources import load_teacher


def pair_names(seed: int) -> tuple[str, str]:
    """(closed, open) job names for a seed."""
    return run_name("di-tanh-closed", seed), run_name("di-tanh-open", seed)


def pair_roles(runs: Mapping[str, Run], closed: str, opened: str) -> dict[str, Run]:
    """The runs named ``closed`` and ``opened`` in the roles of a claim about a closed/open
    pair.

    Example
    -------
    >>> pair_roles({"a-s0": "closed run", "b-s0": "open run"}, "a-s0", "b-s0")
    {'closed': 'closed run', 'opened': 'open run'}
    """
    return {CLOSED: runs[closed], OPENED: runs[opened]}


def closed_open_jobs(closed_preset: str, open_preset: str, seed: int, epochs: int,
                     steps: int) -> list[Job]:
    """A closed-loop run and its open-loop twin: the student starts from the closed run's
    epoch-0 weights and imitates its last epoch (science 2). ``steps`` sizes the jobs' cost."""
    closed, opened = run_name(closed_preset, seed), run_name(open_preset, seed)

    def build_closed(_: Mapping[str, Run]) -> JobInputs:
        return JobInputs(load_preset(closed_preset, seed=seed, epochs=epochs))

    def build_open(runs: Mapping[str, Run]) -> JobInputs:
        teacher_run = runs[closed]
        config = load_preset(open_preset, seed=seed, epochs=epochs).model_copy(update={
            "teacher": source(teacher_run, "last"), "init_from": source(teacher_run, 0)})
        teacher = load_teacher(str(teacher_run.path),
                               plant_from_config(teacher_run.config.plant))
        return JobInputs(config, initial=teacher_run.parameters(0), teacher=teacher)

    return [Job(closed, build_closed, cost=epochs * steps),
            Job(opened, build_open, depends=(closed,), cost=epochs * steps)]


def pair_jobs(settings: Settings, seed: int) -> list[Job]:
    """The double-integrator closed-loop run and its open-loop twin."""
    return closed_open_jobs("di-tanh-closed", "di-tanh-open", seed, settings.pick(1000, 200),
                            50)
