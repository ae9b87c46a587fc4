"""The authors' nonlinear double-integrator loss (science 1.4, ``loss.kind: paper_di``):
sum_{t=0}^{T-1} [ mean_{batch, dims} x_t^2 + control_cost * sum_batch |u_t|^2 ]; the control
term is summed, not averaged, over the batch.

Example
-------
>>> from closedloop.config import LossConfig
>>> from closedloop.core.plants import double_integrator
>>> costs = PaperDI(LossConfig(control_cost=0.005)).quadratic_weights(double_integrator(),
...                                                                    100, 50)
>>> float(costs.R[0, 0] / costs.Q[0, 0])       # R / Q = control_cost * n_x * batch
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from closedloop.core.costs.base import Term, Weight, squared_control, squared_state_error
from closedloop.core.costs.regulation import RegulationCost
from closedloop.core.plants import Plant


@dataclass(frozen=True)
class PaperDI(RegulationCost):
    """``loss.kind: paper_di``."""

    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The state's mean over batch and dimensions summed over time; the command's sum."""
        return (Term(squared_state_error, (("mean", "bd"), ("sum", "t"))),
                Term(squared_control, (("sum", "btd"),), control_cost))
