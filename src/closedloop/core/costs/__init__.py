"""Costs: what a closed-loop episode costs, one module each.

=================  ==========================================================  ==============
``loss.kind``      cost                                                        module
=================  ==========================================================  ==============
``paper_di``       sum_t [mean_{batch,dims} x_t^2 + beta sum_batch u_t^2]      :mod:`.paper_di`
``mean_state``     mean x_t^2 + beta mean_batch sum_t u_t^2                    :mod:`.mean_state`
``per_sample``     mean_batch sum_t [state_weight x_t^2 + beta u_t^2]          :mod:`.per_sample`
``tracking``       (1/T) sum_t dt sum_axes mean_batch (p(x_{t+1}) - r_t)^2     :mod:`.tracking`
``reaching``       mean_{batch,t} [|p(x_{t+1}) - r|^2 + beta |u_t|^2]          :mod:`.reaching`
=================  ==========================================================  ==============

(beta is ``loss.control_cost``.) Every kind adds, when set, ``loss.effort_cost`` times the
plant's muscle effort and ``loss.hidden_cost`` times the agent's squared hidden activity
(:meth:`~closedloop.core.costs.base.Cost.regularisers`).

:class:`~closedloop.core.costs.base.Cost` says what a cost writes (its terms) and what it gets
(the episode loss, the per-step costs of the black-box estimators, the LQR weights);
:func:`register_cost` (or an entry point in the group ``closedloop.costs``) adds one. The
imitation cost of open-loop training is :mod:`.imitation`.

Example
-------
>>> from closedloop.config import load_preset
>>> type(cost_for(load_preset("tracking-closed").loss)).__name__
'Tracking'
"""

from __future__ import annotations

from closedloop.core.costs.base import (
    COSTS,
    Cost,
    QuadraticCosts,
    Term,
    cost_for,
    muscle_effort,
    register_cost,
    squared_control,
    squared_effector_error,
    squared_hidden,
    squared_state_error,
)
from closedloop.core.costs.mean_state import MeanState
from closedloop.core.costs.paper_di import PaperDI
from closedloop.core.costs.per_sample import PerSample
from closedloop.core.costs.reaching import Reaching
from closedloop.core.costs.tracking import Tracking

COSTS.builtin.update({
    "paper_di": PaperDI,
    "mean_state": MeanState,
    "per_sample": PerSample,
    "tracking": Tracking,
    "reaching": Reaching,
})

__all__ = ["COSTS", "Cost", "QuadraticCosts", "Term", "cost_for", "muscle_effort",
           "register_cost", "squared_control", "squared_effector_error", "squared_hidden",
           "squared_state_error"]
