"""Costs exactly as the paper computes them (SPEC 1.4, 2, 6), and a per-sample variant.

All functions take a :class:`~closedloop.rollout.Trajectory` of T steps (states x_0..x_T,
controls u_0..u_{T-1}) and return a scalar tensor. The target is x* = 0 for regulation.
Tensors may carry leading ensemble axes (..., batch, T, dims): the costs reduce only the
last three axes, so an ensemble gets one loss per member (and ``control_cost`` may be a
per-member tensor).

Example
-------
>>> import torch
>>> from closedloop.rollout import Trajectory
>>> traj = Trajectory(states=torch.ones(2, 3, 2), controls=torch.ones(2, 2, 1))
>>> float(paper_di_cost(traj, control_cost=0.5))   # 2 steps * (1 + 0.5 * 2)
4.0
"""

from __future__ import annotations

import torch

from closedloop.config import LossConfig
from closedloop.errors import ShapeError
from closedloop.plants import LinearPlant
from closedloop.rollout import Trajectory


def _visited(traj: Trajectory) -> torch.Tensor:
    if traj.states is None:
        raise ShapeError("this cost needs a plant-driven trajectory")
    return traj.states[..., :-1, :]


def paper_di_cost(traj: Trajectory, control_cost: float = 0.005) -> torch.Tensor:
    """sum_{t=0}^{T-1} [ mean_{batch, dims} x_t^2 + control_cost * sum_{batch} |u_t|^2 ].

    The authors' nonlinear double-integrator loss: the control term is summed, not averaged,
    over the batch.
    """
    states = _visited(traj)
    state_term = (states ** 2).mean(dim=(-3, -1)).sum(-1)
    if _zero(control_cost):
        return state_term
    return state_term + control_cost * (traj.controls ** 2).sum(dim=(-3, -2, -1))


def mean_state_cost(traj: Trajectory, control_cost: float = 0.0) -> torch.Tensor:
    """mean_{t, dims, batch} x_t^2 + control_cost * mean_batch sum_t |u_t|^2 (low-rank loss)."""
    state_term = (_visited(traj) ** 2).mean(dim=(-3, -2, -1))
    if _zero(control_cost):
        return state_term
    return state_term + control_cost * (traj.controls ** 2).sum(dim=(-2, -1)).mean(-1)


def per_sample_cost(traj: Trajectory, state_weight: float = 1.0, control_cost: float = 1.0
                    ) -> torch.Tensor:
    """mean_batch sum_t [ state_weight |x_t|^2 + control_cost |u_t|^2 ] (Q = qI, R = rI)."""
    states = _visited(traj)
    per_sample = (state_weight * (states ** 2).sum(dim=(-2, -1))
                  + control_cost * (traj.controls ** 2).sum(dim=(-2, -1)))
    return per_sample.mean(-1)


def tracking_cost(traj: Trajectory, plant: LinearPlant, reference: torch.Tensor) -> torch.Tensor:
    """(1/T) sum_i dt * sum_axes mean_batch (C x_{i+1} - r_i)^2 (SPEC 6)."""
    if traj.states is None:
        raise ShapeError("the tracking cost needs a plant-driven trajectory")
    steps = traj.controls.shape[-2]
    positions = plant.observe(traj.states[..., 1:, :])
    error = (positions - reference[..., :steps, :]) ** 2
    return plant.dt * error.mean(dim=-3).sum(dim=-1).mean(dim=-1)


def imitation_cost(traj: Trajectory) -> torch.Tensor:
    """sum_t mean_batch |u_student,t - u_teacher,t|^2 (SPEC 2; no control cost)."""
    if traj.teacher_controls is None:
        raise ShapeError("the imitation cost needs a teacher")
    return ((traj.controls - traj.teacher_controls) ** 2).sum(dim=-1).mean(dim=-2).sum(dim=-1)


def control_objective(traj: Trajectory, config: LossConfig, plant: LinearPlant,
                      reference: torch.Tensor | None = None) -> torch.Tensor:
    """The closed-loop training loss a :class:`~closedloop.config.LossConfig` names."""
    if config.kind == "paper_di":
        return paper_di_cost(traj, config.control_cost)
    if config.kind == "mean_state":
        return mean_state_cost(traj, config.control_cost)
    if config.kind == "per_sample":
        return per_sample_cost(traj, config.state_weight, config.control_cost)
    if reference is None:
        raise ShapeError("the tracking loss needs a reference")
    return tracking_cost(traj, plant, reference)


def evaluation_cost(traj: Trajectory, plant: LinearPlant, reference: torch.Tensor | None = None
              ) -> torch.Tensor:
    """The closed-loop state cost the figures plot (SPEC 1.4): mean over steps t = 0..T-1,
    batch and state dimensions of x_t^2; for tracking, the tracking cost."""
    if reference is not None:
        return tracking_cost(traj, plant, reference)
    return (_visited(traj) ** 2).mean(dim=(-3, -2, -1))


def _zero(value: float | torch.Tensor) -> bool:
    return bool(torch.all(torch.as_tensor(value) == 0))
