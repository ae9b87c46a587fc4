"""Figure 1: closed versus open loop (SPEC 2, 7.1) and claim C1."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis import run_stages
from closedloop.experiments.base import Claim, FigureAnalysis, Job, Settings
from closedloop.experiments.pair import pair_jobs, pair_names
from closedloop.store import Run

TITLE = "Closed versus open loop: the open-loop student's transient peak"
PEAK_FACTOR = 10.0          # open peak >= this x the student's lowest earlier test loss
CLOSED_RISE = 1.1           # closed loss never above this x its epoch-0 value
GAIN_TOLERANCE = 0.1        # relative distance of the final effective gains
LOSS_TOLERANCE = 0.25       # relative difference of the final test losses


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed/open pair."""
    return pair_jobs(settings, seed)


def judge_c1(closed: Run, opened: Run) -> Claim:
    """Claim C1 for a closed-loop run and its open-loop twin."""
    test_open = opened.metrics["test_loss"]
    test_closed = closed.metrics["test_loss"]
    peak = int(np.nanargmax(test_open))
    lowest_before = float(np.nanmin(test_open[: peak + 1]))
    closed_max = float(np.nanmax(test_closed[1:])) if len(test_closed) > 1 else float("nan")
    gains_closed = closed.metrics["gains"][-1, 0]
    gains_open = opened.metrics["gains"][-1, 0]
    gain_distance = float(np.linalg.norm(gains_open - gains_closed)
                          / np.linalg.norm(gains_closed))
    loss_difference = float(abs(test_open[-1] - test_closed[-1]) / test_closed[-1])
    measured = {
        "open_peak_test_loss": float(test_open[peak]), "open_peak_epoch": peak,
        "open_initial_test_loss": float(test_open[0]),
        "open_lowest_before_peak": lowest_before,
        "open_peak_over_lowest_before": float(test_open[peak] / lowest_before),
        "closed_initial_test_loss": float(test_closed[0]),
        "closed_max_test_loss_after_epoch_0": closed_max,
        "final_gains_closed": gains_closed.tolist(), "final_gains_open": gains_open.tolist(),
        "final_gain_distance": gain_distance,
        "final_test_loss_closed": float(test_closed[-1]),
        "final_test_loss_open": float(test_open[-1]),
        "final_test_loss_relative_difference": loss_difference,
    }
    supported = bool(
        test_open[peak] >= PEAK_FACTOR * lowest_before and test_open[peak] > test_open[0]
        and closed_max <= CLOSED_RISE * test_closed[0]
        and gain_distance <= GAIN_TOLERANCE and loss_difference <= LOSS_TOLERANCE)
    return Claim(
        "C1",
        "The open-loop student's closed-loop test loss has a transient peak far above its "
        "earlier values while the closed-loop network has none, and both end at the same "
        "controller.",
        f"open peak >= {PEAK_FACTOR:g} x the student's lowest test loss before it and above "
        f"its epoch-0 value; closed-loop test loss after epoch 0 never above {CLOSED_RISE:g} x "
        f"its epoch-0 value; final effective gains within {GAIN_TOLERANCE:.0%} (relative "
        f"norm) and final test losses within {LOSS_TOLERANCE:.0%}.",
        measured, supported)


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Loss curves of both runs, the closed run's stages, and claim C1."""
    closed_name, open_name = pair_names(seed)
    closed, opened = runs[closed_name], runs[open_name]
    claim = judge_c1(closed, opened)
    stages = run_stages(closed)
    data = {
        "epochs": closed.epochs, "open_epochs": opened.epochs,
        "closed_train": closed.metrics["train_loss"], "closed_test": closed.metrics["test_loss"],
        "open_train": opened.metrics["train_loss"], "open_test": opened.metrics["test_loss"],
        "stages": stages.to_json(), "open_peak_epoch": claim.measured["open_peak_epoch"],
    }
    return FigureAnalysis([claim], data)
