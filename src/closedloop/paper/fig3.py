"""Figure 3: stage 1, negative position feedback (science 4, 7.3); claims C2 and C3
(:mod:`closedloop.analysis.claims.c2`, :mod:`~closedloop.analysis.claims.c3`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from closedloop.analysis.claims import CLAIMS, RUN
from closedloop.analysis.claims.c2 import COMPLEX_PAIR_CASE
from closedloop.analysis.claims.c3 import stage1_curves
from closedloop.analysis.summary import analyze_run, order_parameter_history
from closedloop.paper.base import FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import long_rollout, lowrank_job, lowrank_name
from closedloop.runs.store import Run
from closedloop.studies.stages import overlap_config

TITLE = "Stage 1: negative position feedback"
CURVES = {"train": ("di-lowrank-closed", "train_loss"),
          "test": ("di-lowrank-closed", "test_loss")}
"""Curves whose spread over seeds the figure shades: data key -> (run stem, metric)."""


def overlap_values(settings: Settings) -> np.ndarray:
    """Initial sigma_zm values of figure 3e."""
    return np.round(np.linspace(-0.2, 0.2, settings.pick(10, 5)), 6)


def overlap_name(value: float, seed: int) -> str:
    """Job name of a prescribed-overlap run."""
    return run_name(f"overlap{value:+.3f}", seed)


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The low-rank run and the runs from prescribed initial sigma_zm."""
    epochs = settings.pick(100, 40)
    out = [lowrank_job(settings, seed)]
    for value in overlap_values(settings):
        def build(_: Mapping[str, Run], value: float = float(value)) -> JobInputs:
            return JobInputs(overlap_config(value, epochs=epochs, seed=seed))
        out.append(Job(overlap_name(value, seed), build, cost=epochs * 50))
    return out


def _overlap_runs(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[float, Run]:
    return {float(v): runs[overlap_name(v, seed)] for v in overlap_values(settings)}


def roles(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[str, Any]:
    """The low-rank run (C2's) and the runs from prescribed sigma_zm (C3's) of one seed."""
    return {RUN: runs[lowrank_name(seed)],
            "overlap_runs": _overlap_runs(runs, settings, seed)}


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Stages of the low-rank run, the stage-1 theory against simulation, sigma_zm paths."""
    run = runs[lowrank_name(seed)]
    report = analyze_run(run)
    stages = report.stages.to_json()
    test = run.metrics["test_loss"]

    overlap_runs = _overlap_runs(runs, settings, seed)
    histories = {v: order_parameter_history(r) for v, r in overlap_runs.items()}
    curves = stage1_curves()
    c3 = CLAIMS.get("C3").judge(overlap_runs, histories, curves)
    gap = c3.measured["max_log10_gap"]
    settled = c3.measured["sigma_zm_before_stage3"]
    grid, simulated, theory = curves          # the curves C3 judges

    c2 = CLAIMS.get("C2").judge(run, report)
    s1, s2 = stages["stage1_end"], stages["stage2_end"]
    merges = c2.measured["merge_epochs"]
    onset = 0 if c2.case == COMPLEX_PAIR_CASE else merges[0] if merges else None

    probe = onset or min(8, run.last_epoch)
    summary = [f"complex pair from epoch {onset}" if onset is not None
               else "no complex-pair onset",
               f"stage 1 ends at epoch {s1}", f"stage 2 ends at epoch {s2} (stabilisation)",
               f"test loss {test[0]:.3g} -> {test[-1]:.3g}",
               f"theory vs simulation: <= {gap:.2f} decades",
               "sigma_zm before stage 3: " + ", ".join(f"{f:+.3f}" for f in settled[:5]),
               *(["   " + ", ".join(f"{f:+.3f}" for f in settled[5:])] if settled[5:] else [])]
    data = {
        "epochs": run.epochs, "train": run.metrics["train_loss"], "test": test,
        "stages": stages, "probe_epoch": probe,
        "long_rollout": long_rollout(run, probe, 4 * run.config.task.steps),
        "horizon": run.config.task.steps,
        "early_eigenvalues": run.coupled_eigenvalues[: (s1 or 20) + 10, :4],
        "grid": grid, "theory": theory, "simulated": simulated,
        "overlap_paths": {v: (h["epoch"], h["s_zm"]) for v, h in histories.items()},
        "summary": summary,
    }
    return FigureAnalysis([c2, c3], data)
