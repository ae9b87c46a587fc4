"""Replaying a recorded network: the closed loop of a run's snapshot, in float64.

Example
-------
>>> from closedloop.runs import load_run
>>> traj = replay(load_run("runs/lowrank.h5"), 8, x0=[[1.0, -1.0]], steps=200)  # doctest: +SKIP
>>> traj.states.shape                                                          # doctest: +SKIP
(1, 201, 2)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.core.agents import Agent, Params
from closedloop.core.plants import Plant
from closedloop.core.rollout import Trajectory, build_loop, rollout
from closedloop.runs.store import Run


def run_model(run: Run, epoch: int | None = None) -> tuple[Plant, Agent]:
    """The plant and the agent a run was trained with (at ``epoch``, for a run whose plant is
    perturbed during training; by default its first plant)."""
    config = run.config
    if epoch is not None:
        config = config.model_copy(update={"plant": config.plant_at(epoch)})
    return build_loop(config)


def replay(run: Run, epoch: int | str, *, x0: Any, steps: int, reference: Any = None
           ) -> Trajectory:
    """The closed loop of ``run``'s parameters after ``epoch`` from initial states ``x0``
    (batch, n_x) for ``steps`` steps (any horizon, also beyond the training one), with the
    run's time convention and no process noise; NumPy float64 arrays.

    Parameters
    ----------
    reference
        (batch, >= steps, n_ref) references for a tracking network.
    """
    number = int(run.snapshot_epochs[-1]) if epoch == "last" else int(epoch)
    plant, agent = run_model(run, number)
    params = agent.to_params(run.parameters(epoch), jnp.float64)
    traj = closed_loop(plant, agent, steps, run.config.training.zero_first_control, params,
                       jnp.asarray(np.asarray(x0, dtype=np.float64)),
                       None if reference is None else jnp.asarray(np.asarray(reference,
                                                                             dtype=np.float64)))
    return jax.tree.map(np.asarray, traj)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def closed_loop(plant: Plant, agent: Agent, steps: int, zero_first_control: bool,
                params: Params, x0: jax.Array, reference: jax.Array | None) -> Trajectory:
    """The compiled closed-loop rollout of ``plant`` and ``agent`` (no noise; compiled once
    per plant, agent, length and convention)."""
    return rollout(plant, agent, params, steps=steps, x0=x0, reference=reference,
                   zero_first_control=zero_first_control)
