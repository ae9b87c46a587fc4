"""Claim C1b: the closed/open pair of C1 in gain space (science 5, 7.2).

Example
-------
>>> GainSpacePath().figure
'fig2'
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from closedloop.analysis.claims.base import CLOSED, OPENED, Claim, Judgement
from closedloop.runs.store import Run


class GainSpacePath(Claim):
    """C1b: the open-loop student cuts through the unstable-oscillatory region and reaches
    the stable region later than the closed-loop network."""

    id = "C1b"
    statement = ("In gain space the open-loop student cuts through the unstable-oscillatory "
                 "region (its test-loss peak) and reaches the stable region later than the "
                 "closed-loop network, which moves along the stability boundary.")
    roles: ClassVar = {CLOSED: "a closed-loop run of the double integrator (two gains)",
                       OPENED: "its open-loop twin (the student imitating it)"}
    figure = "fig2"

    def applies(self, closed: Run, opened: Run) -> bool:
        """A pair in the gain space of the double integrator: both record effective gains,
        two of them."""
        return ("gains" in closed.metrics and "gains" in opened.metrics
                and opened.metrics["gains"].shape[-1] == 2)

    def judge(self, closed: Run, opened: Run) -> Judgement:
        """C1b for a closed-loop run and its open-loop twin."""
        from closedloop.analysis.gains import (
            REGION_NAMES,
            UNSTABLE_OSCILLATORY,
            classify_static_gains,
        )

        gains_open = opened.metrics["gains"][:, 0]
        peak = int(np.nanargmax(opened.metrics["test_loss"]))
        region = int(classify_static_gains(*gains_open[peak]))
        stab_closed, stab_open = closed.stabilization_epoch, opened.stabilization_epoch
        measured = {
            "open_peak_epoch": peak, "open_gains_at_peak": gains_open[peak].tolist(),
            "region_of_open_gains_at_peak": REGION_NAMES[region],
            "stabilization_epoch_closed": stab_closed, "stabilization_epoch_open": stab_open,
        }
        checks = {
            "open-loop gains at the peak unstable-oscillatory": region == UNSTABLE_OSCILLATORY,
            "open loop stabilises later": bool(stab_open is not None and stab_closed is not None
                                               and stab_open > stab_closed),
        }
        return self.judgement(
            "the open-loop effective gains at the student's test-loss peak are classified "
            "unstable-oscillatory (Jury), and the student's coupled matrix P stabilises at a "
            "later epoch than the closed-loop network's.",
            measured, checks,
            {"stabilisation epoch, closed": stab_closed, "stabilisation epoch, open": stab_open})
