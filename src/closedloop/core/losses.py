"""Costs exactly as the paper computes them (science 1.4, 2, 6), and a per-sample variant.

All functions take a :class:`~closedloop.core.rollout.Trajectory` of T steps (states
x_0..x_T, controls u_0..u_{T-1}) and return a scalar. The target is x* = 0 for regulation.
Arrays may carry leading axes (..., batch, T, dims): the costs reduce only the last three, and
``control_cost`` may be an array (one weight per network).

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.rollout import Trajectory
>>> traj = Trajectory(states=jnp.ones((2, 3, 2)), controls=jnp.ones((2, 2, 1)))
>>> float(paper_di_cost(traj, control_cost=0.5))   # 2 steps * (1 + 0.5 * 2)
4.0
"""

from __future__ import annotations

import jax

from closedloop.config import LossConfig
from closedloop.core.plants import Plant
from closedloop.core.rollout import Trajectory
from closedloop.errors import ShapeError

Weight = float | jax.Array


def _visited(traj: Trajectory) -> jax.Array:
    if traj.states is None:
        raise ShapeError("this cost needs a plant-driven trajectory")
    return traj.states[..., :-1, :]


def paper_di_cost(traj: Trajectory, control_cost: Weight = 0.005) -> jax.Array:
    """sum_{t=0}^{T-1} [ mean_{batch, dims} x_t^2 + control_cost * sum_{batch} |u_t|^2 ].

    The authors' nonlinear double-integrator loss: the control term is summed, not averaged,
    over the batch.
    """
    states = _visited(traj)
    state_term = (states ** 2).mean(axis=(-3, -1)).sum(-1)
    return state_term + control_cost * (traj.controls ** 2).sum(axis=(-3, -2, -1))


def mean_state_cost(traj: Trajectory, control_cost: Weight = 0.0) -> jax.Array:
    """mean_{t, dims, batch} x_t^2 + control_cost * mean_batch sum_t |u_t|^2 (low-rank loss)."""
    state_term = (_visited(traj) ** 2).mean(axis=(-3, -2, -1))
    return state_term + control_cost * (traj.controls ** 2).sum(axis=(-2, -1)).mean(-1)


def per_sample_cost(traj: Trajectory, state_weight: Weight = 1.0, control_cost: Weight = 1.0
                    ) -> jax.Array:
    """mean_batch sum_t [ state_weight |x_t|^2 + control_cost |u_t|^2 ] (Q = qI, R = rI)."""
    states = _visited(traj)
    per_sample = (state_weight * (states ** 2).sum(axis=(-2, -1))
                  + control_cost * (traj.controls ** 2).sum(axis=(-2, -1)))
    return per_sample.mean(-1)


def tracking_cost(traj: Trajectory, plant: Plant, reference: jax.Array) -> jax.Array:
    """(1/T) sum_i dt * sum_axes mean_batch (C x_{i+1} - r_i)^2 (science 6); for any plant,
    its effector position in place of C x."""
    return plant.dt * _effector_error(traj, plant, reference).mean(axis=-3).sum(
        axis=-1).mean(axis=-1)


def _effector_error(traj: Trajectory, plant: Plant, reference: jax.Array) -> jax.Array:
    """(p(x_{t+1}) - r_t)^2 per batch, step and axis."""
    if traj.states is None:
        raise ShapeError("this cost needs a plant-driven trajectory")
    steps = traj.controls.shape[-2]
    positions = plant.effector(traj.states[..., 1:, :])
    return (positions - reference[..., :steps, :]) ** 2


def reaching_cost(traj: Trajectory, plant: Plant, reference: jax.Array,
                  control_cost: Weight = 0.0) -> jax.Array:
    """mean_{batch, t} |p(x_{t+1}) - r|^2 + control_cost * mean_{batch, t} |u_t|^2: the
    effector's squared distance to the target plus an effort term (science 9).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.mechanics import PointMass
    >>> traj = Trajectory(states=jnp.ones((1, 3, 4)), controls=jnp.ones((1, 2, 2)))
    >>> float(reaching_cost(traj, PointMass(), jnp.zeros((1, 2, 2)), control_cost=0.5))
    3.0
    """
    distance = _effector_error(traj, plant, reference).sum(axis=-1).mean(axis=(-2, -1))
    return distance + control_cost * (traj.controls ** 2).sum(axis=-1).mean(axis=(-2, -1))


def imitation_cost(traj: Trajectory) -> jax.Array:
    """sum_t mean_batch |u_student,t - u_teacher,t|^2 (science 2; no control cost)."""
    if traj.teacher_controls is None:
        raise ShapeError("the imitation cost needs a teacher")
    return ((traj.controls - traj.teacher_controls) ** 2).sum(axis=-1).mean(axis=-2).sum(axis=-1)


def control_objective(traj: Trajectory, config: LossConfig, plant: Plant,
                      reference: jax.Array | None = None, *,
                      control_cost: Weight | None = None) -> jax.Array:
    """The closed-loop training loss a :class:`~closedloop.config.LossConfig` names.

    ``control_cost`` replaces the config's (an ensemble passes one weight per network).
    """
    beta = config.control_cost if control_cost is None else control_cost
    if config.kind == "reaching":
        if reference is None:
            raise ShapeError("the reaching loss needs targets")
        return reaching_cost(traj, plant, reference, beta)
    if config.kind == "tracking":
        if reference is None:
            raise ShapeError("the tracking loss needs a reference")
        return tracking_cost(traj, plant, reference)
    traj = regulation_errors(traj, plant)
    if config.kind == "paper_di":
        return paper_di_cost(traj, beta)
    if config.kind == "mean_state":
        return mean_state_cost(traj, beta)
    return per_sample_cost(traj, config.state_weight, beta)


def regulation_errors(traj: Trajectory, plant: Plant) -> Trajectory:
    """The trajectory with its states replaced by the errors x_t - x* that regulation
    charges (the physical state only: a delay buffer is not charged)."""
    if traj.states is None:
        raise ShapeError("this cost needs a plant-driven trajectory")
    return Trajectory(plant.state_error(traj.states), traj.controls, traj.teacher_controls,
                      traj.hidden, traj.executed)


def evaluation_cost(traj: Trajectory, plant: Plant, reference: jax.Array | None = None,
                    kind: str = "regulation") -> jax.Array:
    """The closed-loop cost the figures plot (science 1.4): mean over steps t = 0..T-1, batch
    and state dimensions of (x_t - x*)^2; for tracking, the tracking cost; for reaching, the
    effector's mean squared distance to the target (no effort term)."""
    if kind == "reaching" and reference is not None:
        return reaching_cost(traj, plant, reference)
    if reference is not None:
        return tracking_cost(traj, plant, reference)
    return (_visited(regulation_errors(traj, plant)) ** 2).mean(axis=(-3, -2, -1))
