"""The nonlinear double-integrator pair behind figures 1 and 2: a closed-loop network and its
open-loop twin (the student starts from the closed-loop network's epoch-0 weights and
imitates its last epoch on white noise, SPEC 2)."""

from __future__ import annotations

from collections.abc import Mapping

from closedloop.config import load_preset
from closedloop.experiments.base import Job, JobInputs, Settings, run_name, source
from closedloop.plants import plant_from_config
from closedloop.sources import load_teacher
from closedloop.store import Run


def pair_names(seed: int) -> tuple[str, str]:
    """(closed, open) job names for a seed."""
    return run_name("di-tanh-closed", seed), run_name("di-tanh-open", seed)


def pair_jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed-loop run and its open-loop twin."""
    epochs = settings.pick(1000, 200)
    closed, opened = pair_names(seed)

    def build_closed(_: Mapping[str, Run]) -> JobInputs:
        return JobInputs(load_preset("di-tanh-closed", seed=seed, epochs=epochs))

    def build_open(runs: Mapping[str, Run]) -> JobInputs:
        teacher_run = runs[closed]
        config = load_preset("di-tanh-open", seed=seed, epochs=epochs).model_copy(update={
            "teacher": source(teacher_run, "last"), "init_from": source(teacher_run, 0)})
        teacher = load_teacher(str(teacher_run.path),
                               plant_from_config(teacher_run.config.plant))
        return JobInputs(config, initial=teacher_run.parameters(0), teacher=teacher)

    return [Job(closed, build_closed, cost=epochs * 50),
            Job(opened, build_open, depends=(closed,), cost=epochs * 50)]
