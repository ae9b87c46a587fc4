"""The imitation cost of open-loop training (science 2): how far the student's commands are
from its teacher's. It compares two agents, not a trajectory with its plant, so it is not a
``loss.kind``; the imitation learning rules use it.

Example
-------
>>> import jax.numpy as jnp
>>> traj = Trajectory(states=None, controls=jnp.ones((2, 3, 1)),
...                   teacher_controls=jnp.zeros((2, 3, 1)))
>>> float(imitation_cost(traj))         # 3 steps * mean_batch 1
3.0
"""

from __future__ import annotations

import jax

from closedloop.core.costs.base import batch_factor
from closedloop.core.rollout import Trajectory
from closedloop.errors import ShapeError


def imitation_cost(traj: Trajectory, batch_share: float = 1.0) -> jax.Array:
    """sum_t mean_batch |u_student,t - u_teacher,t|^2 (no control cost); times
    ``batch_share`` for a part of a batch split over devices (the parts then add up to the
    whole batch's cost)."""
    if traj.teacher_controls is None:
        raise ShapeError("the imitation cost needs a teacher")
    cost = ((traj.controls - traj.teacher_controls) ** 2).sum(axis=-1).mean(axis=-2).sum(axis=-1)
    return batch_factor("mean", batch_share) * cost
