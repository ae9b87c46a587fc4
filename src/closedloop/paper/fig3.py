"""Figure 3: stage 1, negative position feedback (science 4, 7.3); claims C2 and C3."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis.claims import Claim, judge_c2
from closedloop.analysis.summary import analyze_run, order_parameter_history
from closedloop.analysis.theory import position_feedback_loss, stage1_loss
from closedloop.paper.base import FigureAnalysis, Job, JobInputs, Settings, run_name
from closedloop.paper.lowrank import long_rollout, lowrank_job, lowrank_name
from closedloop.runs.store import Run
from closedloop.scale.studies import overlap_config

TITLE = "Stage 1: negative position feedback"
THEORY_DECADES = 1.1        # |log10 L_sim - log10 L_theory| allowed where |s_zm| >= 0.05
FINAL_OVERLAP = (-0.1, 0.0)


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


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Stages of the low-rank run, the stage-1 theory against simulation, sigma_zm paths."""
    run = runs[lowrank_name(seed)]
    report = analyze_run(run)
    stages = report["stages"]
    test = run.metrics["test_loss"]

    grid = np.linspace(-0.2, 0.2, 401)
    theory, simulated = stage1_loss(grid), position_feedback_loss(grid)
    regime = np.abs(grid) >= 0.05
    gap = float(np.max(np.abs(np.log10(simulated[regime]) - np.log10(theory[regime]))))
    overlap_runs = {float(v): runs[overlap_name(v, seed)] for v in overlap_values(settings)}
    histories = {v: order_parameter_history(r) for v, r in overlap_runs.items()}
    # stage 1 is judged before stage 3 begins: a run that stabilises within its epochs is read
    # at its stabilisation epoch (stage 3's policy refinement moves sigma_zm again), the others
    # at their last epoch
    judged_at = {v: r.last_epoch if r.stabilization_epoch is None else r.stabilization_epoch
                 for v, r in overlap_runs.items()}
    settled = [float(h["s_zm"][np.flatnonzero(h["epoch"] == judged_at[v])[0]])
               for v, h in histories.items()]
    finals = [float(h["s_zm"][-1]) for h in histories.values()]
    converged = all(FINAL_OVERLAP[0] <= f < FINAL_OVERLAP[1] for f in settled)
    c3 = Claim(
        "C3",
        "The stage-1 theory L(sigma_zm) matches simulated rollouts, and gradient descent "
        "drives sigma_zm to small negative values from every start in [-0.2, 0.2].",
        f"|log10 L_simulated - log10 L_theory| <= {THEORY_DECADES} where |sigma_zm| >= 0.05 "
        "(the formula keeps the dominant mode's rate and drops its prefactor, while L spans "
        "~30 decades), and every run from a prescribed sigma_zm has sigma_zm in "
        f"[{FINAL_OVERLAP[0]}, {FINAL_OVERLAP[1]}) before stage 3 (at its stabilisation epoch "
        "if it stabilises within its epochs, else at its last epoch).",
        {"max_log10_gap": gap, "sigma_zm_before_stage3": settled,
         "judged_at_epoch": list(judged_at.values()), "final_sigma_zm": finals},
        bool(gap <= THEORY_DECADES and converged))

    c2 = judge_c2(run, report)
    s1, s2 = stages["stage1_end"], stages["stage2_end"]
    merges = c2.measured["merge_epochs"]

    probe = merges[0] if merges else min(8, run.last_epoch)
    summary = [f"complex pair from epoch {merges[0]}" if merges else "no complex-pair onset",
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
