"""Claims of the paper as functions of runs: each returns a :class:`Claim` with the measured
numbers and the verdict of its written criterion. ``reproduce`` judges them per figure, the
sweep summary per run (so a claim can be checked over many seeds).

Example
-------
>>> from closedloop.runs import load_run
>>> judge_c1(load_run("runs/closed.h5"), load_run("runs/open.h5")).supported  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from closedloop.analysis.summary import analyze_run
from closedloop.runs.store import Run

PEAK_FACTOR = 10.0          # open peak >= this x the student's lowest earlier test loss
CLOSED_RISE = 1.1           # closed loss never above this x its epoch-0 value
GAIN_TOLERANCE = 0.1        # relative distance of the final effective gains
LOSS_TOLERANCE = 0.25       # relative difference of the final test losses
STAGE1_DROP = 10.0          # test loss falls at least this much in stage 1
PLATEAU = 10.0              # ... less than this much in stage 2
STAGE3_DROP = 10.0          # ... and at least this much after stabilisation


@dataclass
class Claim:
    """A claim of the paper, judged by an explicit criterion on measured numbers."""

    id: str
    statement: str
    criterion: str
    measured: dict[str, Any]
    supported: bool


def judge_c1(closed: Run, opened: Run) -> Claim:
    """Claim C1 for a closed-loop run and its open-loop twin."""
    test_open = opened.metrics["test_loss"]
    test_closed = closed.metrics["test_loss"]
    peak = int(np.nanargmax(test_open))
    lowest_before = float(np.nanmin(test_open[: peak + 1]))
    closed_max = float(np.nanmax(test_closed[1:])) if len(test_closed) > 1 else float("nan")
    gains_closed = closed.metrics["gains"][-1, 0]
    gains_open = opened.metrics["gains"][-1, 0]
    with np.errstate(invalid="ignore", divide="ignore"):   # a diverged run: NaN, not supported
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


def judge_c2(run: Run, report: dict | None = None) -> Claim:
    """Claim C2 (three stages in the spectrum) for one closed-loop run."""
    report = report or analyze_run(run)
    stages = report["stages"]
    test = run.metrics["test_loss"]
    s1, s2 = stages["stage1_end"], stages["stage2_end"]
    merges = [m["epoch"] for m in report["merges"]]
    measured = {"stage1_end": s1, "stage2_end": s2, "merge_epochs": merges,
                "test_loss_initial": float(test[0]), "test_loss_final": float(test[-1])}
    supported = False
    if s1 is not None and s2 is not None and s1 < s2:
        drop1, plateau, drop3 = (float(test[0] / test[s1]), float(test[s1] / test[s2]),
                                 float(test[s2] / test[-1]))
        measured.update(test_loss_stage1_end=float(test[s1]),
                        test_loss_stage2_end=float(test[s2]), stage1_drop=drop1,
                        stage2_drop=plateau, stage3_drop=drop3)
        supported = bool(merges and merges[0] <= s1 and drop1 >= STAGE1_DROP
                         and plateau < PLATEAU and drop3 >= STAGE3_DROP)
    return Claim(
        "C2",
        "Three stages are visible in the spectrum of the low-rank network: a complex pair "
        "appears, a plateau follows, and stabilisation is followed by a drop of orders of "
        "magnitude.",
        "a real pair of eig(P) merges into a complex pair by the end of stage 1 (read from the "
        "spectrum), stage 1 ends before stabilisation, the test loss falls >= "
        f"{STAGE1_DROP:g}x in stage 1, < {PLATEAU:g}x in stage 2 (the plateau) and >= "
        f"{STAGE3_DROP:g}x from stabilisation to the end.",
        measured, supported)


def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None, NumPy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
