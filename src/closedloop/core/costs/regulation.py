"""What the regulation costs share: the task they charge and their test loss.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.config import LossConfig
>>> from closedloop.core.costs.paper_di import PaperDI
>>> from closedloop.core.plants import double_integrator
>>> traj = Trajectory(states=jnp.ones((2, 3, 2)), controls=jnp.ones((2, 2, 1)))
>>> float(PaperDI(LossConfig()).evaluation(traj, double_integrator()))  # mean of x_t^2
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax

from closedloop.core.costs.base import Cost, Term, reduce, squared_state_error
from closedloop.core.plants import Plant
from closedloop.core.rollout import Trajectory

TEST_LOSS = Term(squared_state_error, (("mean", "btd"),))
"""The regulation test loss (science 1.4): the mean over steps t = 0..T-1, batch and state
dimensions of (x_t - x*)^2."""


@dataclass(frozen=True)
class RegulationCost(Cost):
    """A cost of bringing the state to x* = 0 (``task.kind: regulation``); its test loss is
    :data:`TEST_LOSS`, whatever the training loss."""

    task: ClassVar[str | None] = "regulation"

    def evaluation(self, traj: Trajectory, plant: Plant, reference: jax.Array | None = None
                   ) -> jax.Array:
        """The mean over steps, batch and state dimensions of (x_t - x*)^2."""
        return reduce(TEST_LOSS.quantity(traj, plant, reference), TEST_LOSS.reduction)
