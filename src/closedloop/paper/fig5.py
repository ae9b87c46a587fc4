"""Figure 5: stage 3, policy refinement, and the reduced model (science 4, 7.5); claim C5."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis.summary import run_stages
from closedloop.errors import ConfigError
from closedloop.paper.base import Claim, FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import long_rollout, lowrank_job, lowrank_name
from closedloop.runs.store import Run
from closedloop.scale.studies import reduced_configs

TITLE = "Stage 3: refinement after stabilisation, and the four-overlap reduced model"
CONTROL_COSTS = (0.0, 0.5, 2.0, 5.0)
FINAL_RATIO = 1.25          # reduced/full final test loss within [1/1.25, 1.25]
CURVE_DECADES = 0.5         # and per-epoch training losses within half a decade


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


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Loss and spectrum after stabilisation, full against reduced per beta, claim C5."""
    run = runs[lowrank_name(seed)]
    stages = run_stages(run).to_json()
    comparisons, ratios, gaps = [], [], []
    for beta in costs(settings):
        full, reduced = (runs[n] for n in names(beta, seed))
        ratio = float(reduced.metrics["test_loss"][-1] / full.metrics["test_loss"][-1])
        gap = float(np.max(np.abs(np.log10(reduced.metrics["train_loss"][1:])
                                  - np.log10(full.metrics["train_loss"][1:]))))
        ratios.append(ratio)
        gaps.append(gap)
        comparisons.append({"beta": beta, "start": int(run.stabilization_epoch),
                            "full": full.metrics["train_loss"],
                            "reduced": reduced.metrics["train_loss"],
                            "full_eig": full.coupled_eigenvalues[-1][:3],
                            "reduced_eig": reduced.coupled_eigenvalues[-1][:3]})
    supported = all(1 / FINAL_RATIO <= r <= FINAL_RATIO for r in ratios) and all(
        g <= CURVE_DECADES for g in gaps)
    claim = Claim(
        "C5",
        "Trained directly on its four overlaps from the stabilisation epoch, the reduced model "
        "reproduces the full model's loss curve and final eigenvalues, for every control cost "
        "beta.",
        f"for every beta in {list(costs(settings))}: reduced/full final test loss within "
        f"[{1 / FINAL_RATIO:.2f}, {FINAL_RATIO}] and the training losses (same batches) within "
        f"{CURVE_DECADES} decades at every epoch.",
        {"betas": list(costs(settings)), "final_test_loss_ratio": ratios,
         "max_log10_training_loss_gap": gaps}, bool(supported))
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
