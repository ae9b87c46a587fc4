"""The plant as a black box: per-step costs, the REINFORCE estimator and evolution strategies
(science 9).

The closed-loop objectives of :mod:`closedloop.core.losses` are all means over the batch of a
sum over steps of a per-sample cost c_t; :func:`step_costs` returns those c_t, so that
``mean_batch sum_t step_costs = control_objective`` for every loss kind.

REINFORCE (cost minimisation): the plant receives u_t = mu_t + sigma eps_t, mu_t the agent's
output, eps_t ~ N(0, I), and no gradient flows through it
(:func:`~closedloop.core.rollout.rollout` with ``exploration``). With G_t = sum_{s >= t} c_s
the cost to go and b_t a baseline, the gradient of J = E[sum_t c_t] is estimated by the batch
mean of sum_t grad log pi(u_t | h_t) (G_t - b_t); :func:`reinforce_surrogate` is the scalar whose
gradient that is.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.rollout import Trajectory
>>> traj = Trajectory(states=jnp.zeros((1, 3, 1)), controls=jnp.zeros((1, 2, 1)),
...                   executed=jnp.ones((1, 2, 1)))
>>> costs = jnp.array([[1.0, 2.0]])
>>> float(reinforce_surrogate(traj, costs, std=1.0, first=0, baseline="none"))  # -0.5*(3+2)
-2.5
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from closedloop.config import LossConfig
from closedloop.core.losses import Weight, regulation_errors
from closedloop.core.plants import Plant
from closedloop.core.rollout import Trajectory
from closedloop.errors import ShapeError


def step_costs(traj: Trajectory, config: LossConfig, plant: Plant,
               reference: jax.Array | None = None, *, control_cost: Weight | None = None
               ) -> jax.Array:
    """Per-sample, per-step costs c_t (batch, T) of the objective ``config`` names, on the
    trajectory's controls (pass a trajectory whose ``controls`` are the executed ones).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.plants import double_integrator
    >>> traj = Trajectory(states=jnp.ones((2, 3, 2)), controls=jnp.ones((2, 2, 1)))
    >>> step_costs(traj, LossConfig(kind="paper_di", control_cost=0.5),
    ...            double_integrator()).tolist()          # 1 + 0.5 * batch (2) * 1
    [[2.0, 2.0], [2.0, 2.0]]
    """
    beta = config.control_cost if control_cost is None else control_cost
    effort = (traj.controls ** 2).sum(axis=-1)
    steps = traj.controls.shape[-2]
    if config.kind in ("tracking", "reaching"):
        if reference is None or traj.states is None:
            raise ShapeError(f"the {config.kind} cost needs a plant-driven trajectory and a "
                             "reference")
        error = ((plant.effector(traj.states[..., 1:, :]) - reference[..., :steps, :]) ** 2
                 ).sum(axis=-1)
        if config.kind == "tracking":
            return plant.dt * error / steps
        return (error + beta * effort) / steps
    states = regulation_errors(traj, plant).states[..., :-1, :]
    if config.kind == "paper_di":
        batch = traj.controls.shape[-3]
        return (states ** 2).mean(axis=-1) + beta * batch * effort
    if config.kind == "mean_state":
        return (states ** 2).mean(axis=-1) / steps + beta * effort
    return config.state_weight * (states ** 2).sum(axis=-1) + beta * effort


def cost_to_go(costs: jax.Array) -> jax.Array:
    """G_t = sum_{s >= t} c_s along the last axis.

    Example
    -------
    >>> cost_to_go(jnp.array([1.0, 2.0, 3.0])).tolist()
    [6.0, 5.0, 3.0]
    """
    return jnp.flip(jnp.cumsum(jnp.flip(costs, -1), axis=-1), -1)


def reinforce_surrogate(traj: Trajectory, costs: jax.Array, *, std: float | jax.Array,
                        first: int, baseline: str = "batch_mean") -> jax.Array:
    """The scalar whose gradient is the REINFORCE estimate of grad J: the batch mean of
    sum_{t >= first} log pi(u_t | h_t) (G_t - b_t), with pi the Gaussian N(mu_t, std^2 I)
    around the agent's outputs ``traj.controls``, u_t the executed commands ``traj.executed``
    (no gradient; ``std`` a number or one per output, may carry a gradient), G_t the cost
    to go of ``costs`` (batch, T) and b_t the batch mean of G_t
    (``baseline="batch_mean"``) or 0 (``"none"``). Steps before ``first`` (the paper's u_0 = 0)
    are not actions of the policy.
    """
    if traj.executed is None:
        raise ShapeError("REINFORCE needs a black-box rollout (with exploration noise)")
    returns = jax.lax.stop_gradient(cost_to_go(costs))
    if baseline == "batch_mean":
        returns = returns - returns.mean(axis=-2, keepdims=True)
    residual = jax.lax.stop_gradient(traj.executed) - traj.controls
    std = jnp.broadcast_to(jnp.asarray(std, dtype=costs.dtype), residual.shape[-1:])
    log_density = (-0.5 * ((residual / std) ** 2).sum(axis=-1) - jnp.log(std).sum())
    mask = (jnp.arange(costs.shape[-1]) >= first).astype(costs.dtype)
    return (log_density * returns * mask).sum(axis=-1).mean(axis=-1)


def centred_ranks(values: jax.Array) -> jax.Array:
    """Ranks of ``values`` scaled to [-0.5, 0.5] (the lowest cost gets -0.5): the fitness
    shaping of evolution strategies, invariant to any increasing transform of the costs.

    Example
    -------
    >>> centred_ranks(jnp.array([10.0, -3.0, 2.0])).tolist()
    [0.5, -0.5, 0.0]
    """
    ranks = jnp.argsort(jnp.argsort(values)).astype(values.dtype)
    return ranks / max(values.shape[0] - 1, 1) - 0.5


def es_gradient(cost: Callable[[Any], jax.Array], params: Any, directions: Any, std: float,
                rank_shaping: bool = False) -> Any:
    """The antithetic evolution-strategies estimate of grad cost(params): with eps_i the
    ``directions`` (pytree of params' shapes with a leading population axis n, standard
    normal), the mean over i of (J(params + std eps_i) - J(params - std eps_i)) / (2 std) eps_i
    (for a quadratic cost its expectation is the exact gradient); with ``rank_shaping`` the 2n
    costs are first replaced by their centred ranks (a direction, not the gradient's size).

    Example
    -------
    >>> directions = {"w": jnp.array([[1.0, 0.0], [0.0, 1.0]])}
    >>> g = es_gradient(lambda p: (p["w"] ** 2).sum(), {"w": jnp.array([1.0, 2.0])}, directions,
    ...                 std=0.1)                          # (2 w.e_i) e_i, averaged over n = 2
    >>> [round(v, 9) for v in g["w"].tolist()]
    [1.0, 2.0]
    """
    def shifted(sign: float) -> jax.Array:
        return jax.vmap(lambda d: cost(jax.tree.map(lambda p, e: p + sign * std * e, params,
                                                    d)))(directions)

    plus, minus = shifted(1.0), shifted(-1.0)
    count = plus.shape[0]
    if rank_shaping:
        shaped = centred_ranks(jnp.concatenate([plus, minus]))
        plus, minus = shaped[:count], shaped[count:]
    weights = (plus - minus) / (2 * std * count)
    return jax.tree.map(lambda e: jnp.tensordot(weights, e, axes=1), directions)
