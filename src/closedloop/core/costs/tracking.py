"""The tracking loss (science 6, ``loss.kind: tracking``): (1/T) sum_i dt * sum_axes
mean_batch (C x_{i+1} - r_i)^2; for any plant, its effector position in place of C x. It has
no control cost.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.config import LossConfig
>>> from closedloop.core.plants import point_mass_2d
>>> from closedloop.core.rollout import Trajectory
>>> traj = Trajectory(states=jnp.ones((1, 3, 4)), controls=jnp.zeros((1, 2, 2)))
>>> cost = Tracking(LossConfig(kind="tracking"))
>>> round(float(cost.episode_loss(traj, point_mass_2d(), jnp.zeros((1, 2, 2)))), 6)  # dt * 2
0.2
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from closedloop.config import RunConfig
from closedloop.core.costs.base import Cost, Term, Weight, squared_effector_error
from closedloop.core.plants import Plant
from closedloop.errors import ConfigError


@dataclass(frozen=True)
class Tracking(Cost):
    """``loss.kind: tracking``."""

    task: ClassVar[str | None] = "tracking"

    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The effector error: averaged over the batch, summed over axes, averaged over
        time, times dt."""
        return (Term(squared_effector_error, (("mean", "b"), ("sum", "d"), ("mean", "t")),
                     plant.dt),)

    def check(self, config: RunConfig) -> None:
        """A tracking task, and no control cost (the paper's loss has none)."""
        super().check(config)
        if config.loss.control_cost != 0:
            raise ConfigError("loss.control_cost must be 0 for the tracking loss (the paper's "
                              "has none)")
