"""Claim C2: three stages in the spectrum of the rank-1 low-rank network (science 4, 7.3),
judged per seed by the case it is in.

Example
-------
>>> ThreeStages().figure, list(ThreeStages().roles)
('fig3', ['run'])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from closedloop.analysis.claims.base import RUN, Claim, Judgement, ratio
from closedloop.analysis.summary import RunAnalysis, analyze_run, has_order_parameters
from closedloop.core.agents import order_parameters
from closedloop.errors import ConfigError
from closedloop.runs.store import Run

STAGE1_DROP = 10.0          # test loss falls at least this much in stage 1
PLATEAU = 10.0              # ... less than this much in stage 2
STAGE3_DROP = 10.0          # ... and at least this much after stabilisation

REAL_PAIR_CASE = "real pair at start (sigma_zm > 0)"
COMPLEX_PAIR_CASE = "complex pair from the start (sigma_zm <= 0)"


def initial_overlap(run: Run) -> float:
    """sigma_zm = z.m of a rank-1 run's epoch-0 weights (science 4)."""
    return float(order_parameters(run.parameters(0))["s_zm"])


class ThreeStages(Claim):
    """C2: a complex pair appears, a plateau follows, and stabilisation is followed by a drop
    of orders of magnitude.

    The seed is judged by the case it is in (science 4). A network whose initial sigma_zm is
    positive starts with a real pair of eig(P): its stage 1 must merge that pair into the
    complex pair by the end of stage 1 and drop the test loss at least
    :data:`STAGE1_DROP` times. A network whose sigma_zm is not positive starts where stage 1
    ends, with the complex pair from epoch 0 (its stage 1 may be a few epochs long, with no
    fast fall to make): that the pair is complex at epoch 0 is checked instead, and no
    stage-1 drop is required. In both cases stage 1 must end before stabilisation, stage 2
    must be a plateau and stage 3 must drop the loss.
    """

    id = "C2"
    statement = ("Three stages are visible in the spectrum of the low-rank network: a complex "
                 "pair appears, a plateau follows, and stabilisation is followed by a drop of "
                 "orders of magnitude.")
    roles: ClassVar = {RUN: "a rank-1 low-rank closed-loop run"}
    figure = "fig3"

    def applies(self, run: Run) -> bool:
        """A rank-1 low-rank network (not the reduced overlap model, not a full-rank
        network)."""
        return run.config.agent.kind == "lowrank" and has_order_parameters(run)

    def judge(self, run: Run, report: RunAnalysis | None = None) -> Judgement:
        """C2 for one low-rank closed-loop run; ``report`` is its
        :func:`~closedloop.analysis.summary.analyze_run` when already computed.

        Raises
        ------
        ConfigError
            When the run is not a rank-1 low-rank network (the claim is about that model).
        """
        if not self.applies(run):
            raise ConfigError(f"{run.path.name}: C2 is judged on rank-1 low-rank runs, not on "
                              f"'{run.config.agent.kind}' agents")
        report = report or analyze_run(run)
        test = run.metrics["test_loss"]
        s1, s2 = report.stages.stage1_end, report.stages.stage2_end
        merges = [m.epoch for m in report.merges]
        overlap = initial_overlap(run)
        dominant = complex(run.coupled_eigenvalues[0, 0])
        real_start = overlap > 0
        measured: dict[str, Any] = {
            "initial_sigma_zm": overlap, "dominant_eigenvalue_epoch_0": [dominant.real,
                                                                         dominant.imag],
            "stage1_end": s1, "stage2_end": s2, "merge_epochs": merges,
            "test_loss_initial": float(test[0]), "test_loss_final": float(test[-1])}
        bounded = s1 is not None and s2 is not None and s1 < s2
        drops = (math.nan, math.nan, math.nan)
        if s1 is not None and s2 is not None and s1 <= s2:
            # read also where stage 1 ends at stabilisation: each part fails on its own
            drops = (ratio(test[0], test[s1]), ratio(test[s1], test[s2]),
                     ratio(test[s2], test[-1]))
            measured.update(test_loss_stage1_end=float(test[s1]),
                            test_loss_stage2_end=float(test[s2]), stage1_drop=drops[0],
                            stage2_drop=drops[1], stage3_drop=drops[2])
        if real_start:
            stage1 = {"the real pair merges into a complex pair by the end of stage 1":
                      bool(merges and s1 is not None and merges[0] <= s1),
                      "stage 1 ends before stabilisation": bounded,
                      f"stage 1 drops the loss >= {STAGE1_DROP:g}x":
                      bool(drops[0] >= STAGE1_DROP)}
        else:
            stage1 = {"the dominant pair is complex from epoch 0": dominant.imag != 0,
                      "stage 1 ends before stabilisation": bounded}
        checks = {
            **stage1,
            f"stage 2 is a plateau (< {PLATEAU:g}x)": bool(drops[1] < PLATEAU),
            f"stage 3 drops the loss >= {STAGE3_DROP:g}x": bool(drops[2] >= STAGE3_DROP),
        }
        return self.judgement(
            "judged by the seed's case: with a positive initial sigma_zm the pair of eig(P) "
            "starts real, and stage 1 must merge it into a complex pair by its end (read from "
            f"the spectrum) while the test loss falls >= {STAGE1_DROP:g}x; with sigma_zm <= 0 "
            "the network starts where stage 1 ends (science 4: complex pair from the start, "
            "stage 1 perhaps only a few epochs long, no fast fall to make), so the dominant "
            "pair of eig(P) must be complex at epoch 0 and no stage-1 drop is required. In "
            f"both, stage 1 ends before stabilisation, the test loss falls < {PLATEAU:g}x in "
            f"stage 2 (the plateau) and >= {STAGE3_DROP:g}x from stabilisation to the end.",
            measured, checks,
            {"initial sigma_zm": overlap, "stage 1 end": s1, "stabilisation epoch": s2,
             "stage-1 drop": drops[0], "stage-3 drop": drops[2]},
            REAL_PAIR_CASE if real_start else COMPLEX_PAIR_CASE)
