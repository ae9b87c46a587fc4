"""The plant as a black box: the REINFORCE estimator and evolution strategies (science 9).

The returns come from the run's cost: every cost of :mod:`closedloop.core.costs` is a mean
over the batch of a sum over steps of per-sample costs c_t, and
:meth:`~closedloop.core.costs.Cost.step_costs` gives those c_t
(``mean_batch sum_t c_t = episode_loss``).

REINFORCE (cost minimisation): the plant receives u_t = mu_t + sigma eps_t, mu_t the agent's
output, eps_t ~ N(0, I), and no gradient flows through it
(:func:`~closedloop.core.rollout.black_box`). With G_t = sum_{s >= t} c_s
the cost to go and b_t a baseline, the gradient of J = E[sum_t c_t] is estimated by the batch
mean of sum_t grad log pi(u_t | h_t) (G_t - b_t); :func:`reinforce_surrogate` is the scalar whose
gradient that is. The baseline is the batch mean of G_t per step, none, or a learned value
readout of what the agent has seen (:func:`fitted_values`): any b_t that does not depend on
the episode's own exploration keeps the estimate unbiased and, the closer it is to G_t, the
less noisy.

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

from closedloop.core.rollout import Trajectory
from closedloop.errors import ShapeError


def cost_to_go(costs: jax.Array) -> jax.Array:
    """G_t = sum_{s >= t} c_s along the last axis.

    Example
    -------
    >>> cost_to_go(jnp.array([1.0, 2.0, 3.0])).tolist()
    [6.0, 5.0, 3.0]
    """
    return jnp.flip(jnp.cumsum(jnp.flip(costs, -1), axis=-1), -1)


def value_features(traj: Trajectory) -> jax.Array:
    """What a value readout reads at each step, (batch, T, F): the agent's inputs y_t, their
    pairwise products y_i y_j (i <= j), its hidden state h_t and h_t squared, and 1, tau,
    tau^2, tau^3 for tau = t / T (no gradient flows into them). For a linear plant and a
    linear policy on the state, the expected cost to go is a quadratic form in the state plus
    a function of time, which these features span up to the time-varying weights.

    Example
    -------
    >>> traj = Trajectory(states=None, controls=jnp.zeros((1, 2, 1)),
    ...                   inputs=jnp.array([[[1.0, 2.0], [3.0, 4.0]]]),
    ...                   hidden=jnp.zeros((1, 2, 0)))
    >>> value_features(traj)[0, 1].tolist()     # y, y1 y1, y1 y2, y2 y2, 1, tau, tau^2, tau^3
    [3.0, 4.0, 9.0, 12.0, 16.0, 1.0, 0.5, 0.25, 0.125]
    """
    if traj.inputs is None or traj.hidden is None:
        raise ShapeError("a value baseline needs the agent's inputs and hidden states "
                         "(rollout with record_inputs and record_hidden)")
    inputs = jax.lax.stop_gradient(traj.inputs)
    hidden = jax.lax.stop_gradient(traj.hidden)
    upper = jnp.triu_indices(inputs.shape[-1])
    products = (inputs[..., :, None] * inputs[..., None, :])[..., upper[0], upper[1]]
    steps = inputs.shape[-2]
    tau = jnp.arange(steps, dtype=inputs.dtype) / steps
    time = jnp.broadcast_to(jnp.stack([tau ** k for k in range(4)], axis=-1),
                            (*inputs.shape[:-1], 4))
    return jnp.concatenate([inputs, products, hidden, hidden ** 2, time], axis=-1)


def fitted_values(features: jax.Array, returns: jax.Array, mask: jax.Array,
                  ridge: float = 1e-3) -> jax.Array:
    """A value readout learned by ridge regression of the returns on the features, cross-fitted
    so that no episode's own return enters its value: the batch's episodes are split into
    two folds (even and odd index), and each fold's values come from the weights fitted on
    the other one (so a baseline made of them keeps REINFORCE unbiased). ``features`` (batch,
    T, F), ``returns`` and ``mask`` (batch, T); steps where ``mask`` is 0 are not fitted. The
    features are scaled to unit mean square on the fitting fold and the ridge is ``ridge``
    times the mean diagonal of their Gram matrix. Needs at least two episodes.

    Example
    -------
    >>> tau = jnp.linspace(0.0, 1.0, 5)
    >>> features = jnp.stack([jnp.ones(5), tau], -1)[None].repeat(4, 0)
    >>> values = fitted_values(features, (2.0 + 3.0 * tau)[None].repeat(4, 0),
    ...                        jnp.ones((4, 5)), ridge=0.0)
    >>> [round(v, 4) for v in values[0].tolist()]
    [2.0, 2.75, 3.5, 4.25, 5.0]
    """
    features = jax.lax.stop_gradient(features)
    returns = jax.lax.stop_gradient(returns)
    if features.shape[0] < 2:
        raise ShapeError("a cross-fitted value baseline needs at least two episodes per batch")
    fold = (jnp.arange(features.shape[0]) % 2)[:, None] * jnp.ones_like(mask)

    def fit_on(which: int) -> jax.Array:
        weight = mask * (fold == which)
        scale = jnp.sqrt((weight[..., None] * features ** 2).sum((0, 1))
                         / jnp.maximum(weight.sum(), 1.0)) + 1e-12
        scaled = features / scale
        gram = jnp.einsum("btf,btg,bt->fg", scaled, scaled, weight)
        size = gram.shape[0]
        penalty = ridge * jnp.trace(gram) / size + 1e-9 * (1.0 + jnp.trace(gram) / size)
        weights = jnp.linalg.solve(gram + penalty * jnp.eye(size, dtype=gram.dtype),
                                   jnp.einsum("btf,bt,bt->f", scaled, returns, weight))
        return scaled @ weights

    return jnp.where(fold == 0, fit_on(1), fit_on(0))


def reinforce_surrogate(traj: Trajectory, costs: jax.Array, *, std: float | jax.Array,
                        first: int, baseline: str = "batch_mean") -> jax.Array:
    """The scalar whose gradient is the REINFORCE estimate of grad J: the batch mean of
    sum_{t >= first} log pi(u_t | h_t) (G_t - b_t), with pi the Gaussian N(mu_t, std^2 I)
    around the agent's outputs ``traj.controls``, u_t the executed commands ``traj.executed``
    (no gradient; ``std`` a number or one per output, may carry a gradient), G_t the cost
    to go of ``costs`` (batch, T) and b_t the batch mean of G_t
    (``baseline="batch_mean"``), the cross-fitted value readout of :func:`value_features`
    (``"value"``; the trajectory must carry the agent's inputs and hidden states) or 0
    (``"none"``). Steps before ``first`` (the paper's u_0 = 0) are not actions of the policy.
    """
    if traj.executed is None:
        raise ShapeError("REINFORCE needs a black-box rollout (with exploration noise)")
    returns = jax.lax.stop_gradient(cost_to_go(costs))
    mask = (jnp.arange(costs.shape[-1]) >= first).astype(costs.dtype)
    if baseline == "batch_mean":
        returns = returns - returns.mean(axis=-2, keepdims=True)
    elif baseline == "value":
        returns = returns - fitted_values(value_features(traj), returns,
                                          jnp.broadcast_to(mask, returns.shape))
    residual = jax.lax.stop_gradient(traj.executed) - traj.controls
    std = jnp.broadcast_to(jnp.asarray(std, dtype=costs.dtype), residual.shape[-1:])
    log_density = (-0.5 * ((residual / std) ** 2).sum(axis=-1) - jnp.log(std).sum())
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
