"""Figure 4: stage 2, building a world model (science 4, 7.4); claim C4."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis.summary import run_stages
from closedloop.analysis.theory import crossing_window
from closedloop.core.agents import order_parameters
from closedloop.paper.base import Claim, FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import (
    dominant_path,
    long_rollout,
    lowrank_job,
    lowrank_name,
)
from closedloop.runs.store import Run
from closedloop.scale.studies import length_config

TITLE = "Stage 2: the zig-zag to stabilisation, a trade-off set by alpha and by T"
START_EPOCH = 10            # science 4: descents and retraining start from epoch 10
DESCENT_STEPS = 1000        # SGD steps of each surrogate descent (see analyze)


def lengths(settings: Settings) -> tuple[int, ...]:
    """Episode lengths of the T sweep."""
    return settings.pick((10, 20, 50, 100, 200), (10, 50, 200))


def length_name(steps: int, seed: int) -> str:
    """Job name of a T-sweep run."""
    return run_name(f"length-T{steps}", seed)


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The low-rank run and its retraining with other episode lengths from epoch 10."""
    epochs = settings.pick(500, 100)
    parent = lowrank_name(seed)
    out = [lowrank_job(settings, seed)]
    for steps in lengths(settings):
        def build(runs: Mapping[str, Run], steps: int = steps) -> JobInputs:
            run = runs[parent]
            config = length_config(run, epoch=START_EPOCH, steps=steps, epochs=epochs)
            config = config.model_copy(update={"init_from": f"{run.path.name}@{START_EPOCH}"})
            return JobInputs(config, initial=run.parameters(START_EPOCH))
        out.append(Job(length_name(steps, seed), build, depends=(parent,),
                       cost=epochs * steps))
    return out


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """The zig-zag, the alpha sweep from epoch-10 overlaps, the T sweep, and claim C4."""
    run = runs[lowrank_name(seed)]
    stages = run_stages(run).to_json()
    # science 4's ~200 steps reach the unit circle from a pair just outside it (|lambda| =
    # 1.0006 at epoch 10 of the PyTorch version's seed 0); from further out more are needed, so
    # each descent runs until its pair crosses, collides on the real axis, or DESCENT_STEPS
    # pass: the crossing, not the number of steps, is what the claim reads
    paths = crossing_window(order_parameters(run.parameters(START_EPOCH)),
                            steps=DESCENT_STEPS)
    crossing = [(p.alpha, p.crossing_eigenvalue) for p in paths if p.crossing_step is not None]
    alpha_imag = [float(abs(value.imag)) for _, value in crossing]
    alpha_monotone = len(crossing) >= 3 and bool(np.all(np.diff(alpha_imag) < 0))

    sweep = []
    for steps in lengths(settings):
        retrained = runs[length_name(steps, seed)]
        stable = retrained.stabilization_epoch
        path = dominant_path(retrained)
        sweep.append({"steps": steps, "stabilization_epoch": stable, "path": path,
                      "imag_at_stabilization": None if stable is None
                      else float(abs(path[stable].imag))})
    t_imag = [s["imag_at_stabilization"] for s in sweep]
    t_monotone = all(v is not None for v in t_imag) and bool(np.all(np.diff(t_imag) < 0))
    claim = Claim(
        "C4",
        "The crossing eigenvalue moves monotonically with the trade-off weight alpha (theory) "
        "and with the episode length T (experiment): the more weight on long-term stability, "
        "the smaller its imaginary part when it crosses the unit circle.",
        "gradient descent on L_eff(alpha) from the epoch-10 overlaps crosses the unit circle "
        "for at least 3 alphas on a 0.01 grid, with the crossing eigenvalue's imaginary part "
        "strictly decreasing in alpha; and retraining from epoch 10 with T = "
        f"{', '.join(map(str, lengths(settings)))} stabilises every run, with the dominant "
        "eigenvalue's imaginary part at stabilisation strictly decreasing in T.",
        {"crossing_alphas": [a for a, _ in crossing], "crossing_imag_by_alpha": alpha_imag,
         "lengths": list(lengths(settings)), "imag_at_stabilization_by_T": t_imag,
         "stabilization_epoch_by_T": [s["stabilization_epoch"] for s in sweep]},
        bool(alpha_monotone and t_monotone))

    s1, s2 = stages["stage1_end"], stages["stage2_end"]
    plateau_epoch = (s1 + s2) // 2 if s1 is not None and s2 is not None else START_EPOCH
    end = (s2 or run.last_epoch) + 10
    data = {
        "epochs": run.epochs, "train": run.metrics["train_loss"],
        "test": run.metrics["test_loss"], "stages": stages, "plateau_epoch": plateau_epoch,
        "plateau_rollout": long_rollout(run, plateau_epoch, 4 * run.config.task.steps),
        "horizon": run.config.task.steps,
        "zigzag": dominant_path(run)[(s1 or 0): end + 1], "zigzag_start": s1 or 0,
        "alpha_paths": [(p.alpha, p.eigenvalue[: p.valid]) for p in paths],
        "alpha_crossings": crossing,
        "length_crossings": [(s["steps"], s["imag_at_stabilization"]) for s in sweep],
        "length_paths": [(s["steps"], s["path"], s["stabilization_epoch"]) for s in sweep],
    }
    return FigureAnalysis([claim], data)
