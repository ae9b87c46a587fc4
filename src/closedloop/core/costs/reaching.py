"""The reaching loss (science 9, ``loss.kind: reaching``): mean_{batch, t} |p(x_{t+1}) - r|^2 +
control_cost * mean_{batch, t} |u_t|^2, the effector's squared distance to the target plus an
effort term. Its test loss is the distance alone.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.config import LossConfig
>>> from closedloop.core.mechanics import PointMass
>>> from closedloop.core.rollout import Trajectory
>>> traj = Trajectory(states=jnp.ones((1, 3, 4)), controls=jnp.ones((1, 2, 2)))
>>> cost = Reaching(LossConfig(kind="reaching", control_cost=0.5))
>>> float(cost.episode_loss(traj, PointMass(), jnp.zeros((1, 2, 2))))   # 2 + 0.5 * 2
3.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from closedloop.core.costs.base import (
    Cost,
    Reduction,
    Term,
    Weight,
    squared_control,
    squared_effector_error,
)
from closedloop.core.plants import Plant

PER_STEP: Reduction = (("sum", "d"), ("mean", "bt"))


@dataclass(frozen=True)
class Reaching(Cost):
    """``loss.kind: reaching``."""

    task: ClassVar[str | None] = "reaching"

    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The effector's squared distance and the squared command, each summed over axes
        and averaged over batch and time."""
        return (Term(squared_effector_error, PER_STEP),
                Term(squared_control, PER_STEP, control_cost))
