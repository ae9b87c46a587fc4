"""Figure 5: stage 3, policy refinement, and the reduced model (science 4, 7.5); claim C5
(:mod:`closedloop.analysis.claims.c5`)."""

from __future__ import annotations

from collections.abc import Mapping

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.summary import run_stages
from closedloop.errors import ConfigError
from closedloop.paper.base import FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import long_rollout, lowrank_job, lowrank_name
from closedloop.runs.store import Run
from closedloop.studies.stages import reduced_configs

TITLE = "Stage 3: refinement after stabilisation, and the four-overlap reduced model"
CONTROL_COSTS = (0.0, 0.5, 2.0, 5.0)
CURVES = {"train": ("di-lowrank-closed", "train_loss"),
          "test": ("di-lowrank-closed", "test_loss")}
"""Curves whose spread over seeds the figure shades: data key -> (run stem, metric)."""


def costs(settings: Settings) -> tuple[float, ...]:
    """The control costs beta."""
    return settings.pick(CONTROL_COSTS, (0.0, 2.0))


def names(beta: float, seed: int) -> tuple[str, str]:
    """(full, reduced) job names for a control cost."""
    return run_name(f"full-beta{beta:g}", seed), run_name(f"reduced-beta{beta:g}", seed)


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The low-rank run, then the full and the reduced model from its stabilisation epoch."""
    parent = lowrank_name(seed)
    out = [lowrank_job(settings, seed)]
    for beta in costs(settings):
        for index, name in enumerate(names(beta, seed)):
            def build(runs: Mapping[str, Run], beta: float = beta, index: int = index
                      ) -> JobInputs:
                run = runs[parent]
                start = run.stabilization_epoch
                if start is None:
                    raise ConfigError(f"{run.path.name} never stabilises; no stage 3 to study")
                config = reduced_configs(run, control_cost=beta, start_epoch=start)[index]
                config = config.model_copy(update={"init_from": f"{run.path.name}@{start}"})
                return JobInputs(config, initial=run.parameters(start))
            out.append(Job(name, build, depends=(parent,), cost=settings.pick(850, 150) * 50))
    return out


def _pairs(runs: Mapping[str, Run], settings: Settings, seed: int
           ) -> dict[float, tuple[Run, Run]]:
    return {beta: (runs[names(beta, seed)[0]], runs[names(beta, seed)[1]])
            for beta in costs(settings)}


def roles(runs: Mapping[str, Run], settings: Settings, seed: int
          ) -> dict[str, dict[float, tuple[Run, Run]]]:
    """The full and reduced models of one seed per control cost (C5's)."""
    return {"pairs": _pairs(runs, settings, seed)}


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Loss and spectrum after stabilisation, full against reduced per beta, claim C5."""
    run = runs[lowrank_name(seed)]
    stages = run_stages(run).to_json()
    pairs = _pairs(runs, settings, seed)
    claim = CLAIMS.get("C5").judge(pairs)
    comparisons = [{"beta": beta, "start": int(run.stabilization_epoch),
                    "full": full.metrics["train_loss"], "reduced": reduced.metrics["train_loss"],
                    "full_eig": full.coupled_eigenvalues[-1][:3],
                    "reduced_eig": reduced.coupled_eigenvalues[-1][:3]}
                   for beta, (full, reduced) in pairs.items()]
    stable = run.stabilization_epoch or 0
    data = {
        "epochs": run.epochs, "train": run.metrics["train_loss"],
        "test": run.metrics["test_loss"], "stages": stages,
        "final_rollout": long_rollout(run, run.last_epoch, 2 * run.config.task.steps),
        "horizon": run.config.task.steps,
        "late_eigenvalues": run.coupled_eigenvalues[stable:, :3], "start": stable,
        "comparisons": comparisons,
    }
    return FigureAnalysis([claim], data)
