"""Claim C1: the open-loop student's transient peak (science 2, 7.1), on a closed-loop run
and its open-loop twin.

Example
-------
>>> claim = OpenLoopPeak()
>>> claim.id, claim.figure, sorted(claim.roles)
('C1', 'fig1', ['closed', 'opened'])
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from closedloop.analysis.claims.base import CLOSED, OPENED, Claim, Judgement, ratio
from closedloop.runs.store import Run

PEAK_FACTOR = 10.0          # open peak >= this x the student's lowest earlier test loss
CLOSED_RISE = 1.1           # closed loss never above this x its epoch-0 value
GAIN_TOLERANCE = 0.1        # relative distance of the final effective gains
LOSS_TOLERANCE = 0.25       # relative difference of the final test losses


class OpenLoopPeak(Claim):
    """C1: the open-loop student's test loss peaks far above its earlier values, the
    closed-loop network's does not, and both end at the same controller."""

    id = "C1"
    statement = ("The open-loop student's closed-loop test loss has a transient peak far above "
                 "its earlier values while the closed-loop network has none, and both end at "
                 "the same controller.")
    roles: ClassVar = {CLOSED: "a closed-loop run of a regulation task",
                       OPENED: "its open-loop twin (the student imitating it)"}
    figure = "fig1"

    def applies(self, closed: Run, opened: Run) -> bool:
        """A regulation pair: both runs record effective gains (a tracking pair does not)."""
        return "gains" in closed.metrics and "gains" in opened.metrics

    def judge(self, closed: Run, opened: Run) -> Judgement:
        """C1 for a closed-loop run and its open-loop twin."""
        test_open = opened.metrics["test_loss"]
        test_closed = closed.metrics["test_loss"]
        peak = int(np.nanargmax(test_open))
        lowest_before = float(np.nanmin(test_open[: peak + 1]))
        closed_max = (float(np.nanmax(test_closed[1:])) if len(test_closed) > 1
                      else float("nan"))
        gains_closed = closed.metrics["gains"][-1, 0]
        gains_open = opened.metrics["gains"][-1, 0]
        gain_distance = ratio(np.linalg.norm(gains_open - gains_closed),
                              np.linalg.norm(gains_closed))
        loss_difference = ratio(abs(test_open[-1] - test_closed[-1]), test_closed[-1])
        peak_ratio = ratio(test_open[peak], lowest_before)
        measured = {
            "open_peak_test_loss": float(test_open[peak]), "open_peak_epoch": peak,
            "open_initial_test_loss": float(test_open[0]),
            "open_lowest_before_peak": lowest_before,
            "open_peak_over_lowest_before": peak_ratio,
            "closed_initial_test_loss": float(test_closed[0]),
            "closed_max_test_loss_after_epoch_0": closed_max,
            "final_gains_closed": gains_closed.tolist(),
            "final_gains_open": gains_open.tolist(),
            "final_gain_distance": gain_distance,
            "final_test_loss_closed": float(test_closed[-1]),
            "final_test_loss_open": float(test_open[-1]),
            "final_test_loss_relative_difference": loss_difference,
        }
        checks = {
            "open-loop peak far above its earlier values": bool(peak_ratio >= PEAK_FACTOR),
            "open-loop peak above its epoch-0 value": bool(test_open[peak] > test_open[0]),
            "no closed-loop rise": bool(closed_max <= CLOSED_RISE * test_closed[0]),
            "same final gains": bool(gain_distance <= GAIN_TOLERANCE),
            "same final test loss": bool(loss_difference <= LOSS_TOLERANCE),
        }
        return self.judgement(
            f"open peak >= {PEAK_FACTOR:g} x the student's lowest test loss before it and "
            f"above its epoch-0 value; closed-loop test loss after epoch 0 never above "
            f"{CLOSED_RISE:g} x its epoch-0 value; final effective gains within "
            f"{GAIN_TOLERANCE:.0%} (relative norm) and final test losses within "
            f"{LOSS_TOLERANCE:.0%}.",
            measured, checks,
            {"open peak / lowest before": peak_ratio, "open peak epoch": peak,
             "final gain distance": gain_distance})
