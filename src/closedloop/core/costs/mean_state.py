"""The low-rank networks' loss (``loss.kind: mean_state``): mean_{t, dims, batch} x_t^2 +
control_cost * mean_batch sum_t |u_t|^2.

Example
-------
>>> from closedloop.config import LossConfig
>>> from closedloop.core.plants import double_integrator
>>> costs = MeanState(LossConfig(control_cost=0.1)).quadratic_weights(double_integrator(),
...                                                                    16, 25)
>>> round(float(costs.R[0, 0] / costs.Q[0, 0]), 9)     # control_cost * n_x * T
5.0
"""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.core.costs.base import Term, Weight, squared_control, squared_state_error
from closedloop.core.costs.regulation import RegulationCost
from closedloop.core.plants import Plant


@dataclass(frozen=True)
class MeanState(RegulationCost):
    """``loss.kind: mean_state``."""

    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The state's mean over everything; the command's sum per sample, averaged."""
        return (Term(squared_state_error, (("mean", "btd"),)),
                Term(squared_control, (("sum", "td"), ("mean", "b")), control_cost))
