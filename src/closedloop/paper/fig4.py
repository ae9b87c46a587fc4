"""Figure 4: stage 2, building a world model (science 4, 7.4); claim C4
(:mod:`closedloop.analysis.claims.c4`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from closedloop.analysis.claims import CLAIMS, RUN
from closedloop.analysis.claims.c4 import START_EPOCH, surrogate_paths
from closedloop.analysis.summary import run_stages
from closedloop.paper.base import FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import dominant_path, long_rollout, lowrank_job, lowrank_name
from closedloop.runs.store import Run
from closedloop.studies.stages import length_config

TITLE = "Stage 2: the zig-zag to stabilisation, a trade-off set by alpha and by T"
CURVES = {"train": ("di-lowrank-closed", "train_loss"),
          "test": ("di-lowrank-closed", "test_loss")}
"""Curves whose spread over seeds the figure shades: data key -> (run stem, metric)."""


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


def _retrained(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[int, Run]:
    return {steps: runs[length_name(steps, seed)] for steps in lengths(settings)}


def roles(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[str, Any]:
    """The low-rank run of one seed and its retraining with other episode lengths (C4's)."""
    return {RUN: runs[lowrank_name(seed)], "retrained": _retrained(runs, settings, seed)}


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """The zig-zag, the alpha sweep from epoch-10 overlaps, the T sweep, and claim C4."""
    run = runs[lowrank_name(seed)]
    stages = run_stages(run).to_json()
    paths = surrogate_paths(run)
    retrained = _retrained(runs, settings, seed)
    claim = CLAIMS.get("C4").judge(run, retrained, paths)
    crossing = [(p.alpha, p.crossing_point) for p in paths if p.crossing_step is not None]
    sweep = [(steps, dominant_path(r), r.stabilization_epoch) for steps, r in retrained.items()]
    imag = claim.measured["imag_at_stabilization_by_T"]

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
        "length_crossings": list(zip(retrained, imag, strict=True)),
        "length_paths": sweep,
    }
    return FigureAnalysis([claim], data)
