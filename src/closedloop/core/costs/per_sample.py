"""An LQR-style loss (``loss.kind: per_sample``): mean_batch sum_t [ state_weight |x_t|^2 +
control_cost |u_t|^2 ], i.e. Q = state_weight I and R = control_cost I per sample.

Example
-------
>>> from closedloop.config import LossConfig
>>> from closedloop.core.plants import double_integrator
>>> cost = PerSample(LossConfig(kind="per_sample", state_weight=2.0, control_cost=0.5))
>>> costs = cost.quadratic_weights(double_integrator(), 16, 25)
>>> costs.Q.tolist(), costs.R.tolist()
([[2.0, 0.0], [0.0, 2.0]], [[0.5]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from closedloop.core.costs.base import (
    Reduction,
    Term,
    Weight,
    squared_control,
    squared_state_error,
)
from closedloop.core.costs.regulation import RegulationCost
from closedloop.core.plants import Plant

PER_SAMPLE: Reduction = (("sum", "td"),)


@dataclass(frozen=True)
class PerSample(RegulationCost):
    """``loss.kind: per_sample``: the terms are added per sample, then averaged."""

    then: ClassVar[Reduction] = (("mean", "b"),)

    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The state and the command, each summed over time and dimensions."""
        return (Term(squared_state_error, PER_SAMPLE, self.config.state_weight),
                Term(squared_control, PER_SAMPLE, control_cost))
