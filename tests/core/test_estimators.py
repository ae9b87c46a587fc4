"""The black-box estimators against exact gradients: on a linear plant with a linear Gaussian
policy the expected quadratic cost has a closed form (the covariance recursion of science 9),
whose gradient the mean of many REINFORCE estimates must match within the Monte-Carlo error;
and per-step costs sum to every closed-loop objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.config import LossConfig
from closedloop.core.agents import StaticGain
from closedloop.core.costs import cost_for
from closedloop.core.estimators import reinforce_surrogate
from closedloop.core.plants import double_integrator
from closedloop.core.rollout import Given, Trajectory, black_box, run_loop

STEPS, SIGMA, EFFORT = 8, 0.3, 0.1


def expected_cost(K, A, B, S0, steps, sigma, effort):
    """E sum_{t<T} x^T x + effort u^T u for u = K x + sigma eps, x0 ~ (0, S0): the covariance
    recursion S_{t+1} = (A + B K) S_t (A + B K)^T + sigma^2 B B^T."""
    closed = A + B @ K
    total, S = 0.0, S0
    for _ in range(steps):
        total = total + jnp.trace(S) + effort * (jnp.trace(K @ S @ K.T)
                                                 + sigma ** 2 * K.shape[0])
        S = closed @ S @ closed.T + sigma ** 2 * B @ B.T
    return total


def linear_gaussian_problem():
    """The problem the REINFORCE tests share: a static gain K on the double integrator
    (dt 0.5), the per-sample quadratic cost, and its closed-form expected cost as a function
    of (K, sigma) for x0 ~ U(-1, 1)^2 (covariance I/3)."""
    plant = double_integrator(dt=0.5)
    A, B = jnp.asarray(plant.A), jnp.asarray(plant.B)

    def exact_cost(K, sigma):
        return expected_cost(K, A, B, jnp.eye(2) / 3.0, STEPS, sigma, EFFORT)

    cost = cost_for(LossConfig(kind="per_sample", state_weight=1.0, control_cost=EFFORT))
    return plant, StaticGain(2, 1), cost, jnp.array([[-0.3, -0.6]]), exact_cost


def test_mean_reinforce_estimate_is_the_exact_gradient():
    plant, gain, cost, K, exact_cost = linear_gaussian_problem()
    exact = jax.grad(exact_cost)(K, SIGMA)

    def surrogate(K, x0, noise):
        traj = run_loop(black_box(plant, gain, {"K": K}, SIGMA), steps=STEPS, x0=x0[None],
                        given=Given(exploration=noise[None]), zero_first_control=False)
        costs = cost.step_costs(Trajectory(traj.states, traj.executed), plant)
        return reinforce_surrogate(traj, costs, std=SIGMA, first=0, baseline="none")

    episodes = 40_000
    key_x, key_e = jax.random.split(jax.random.key(0))
    x0 = jax.random.uniform(key_x, (episodes, 2), jnp.float64, -1.0, 1.0)   # covariance I/3
    noise = jax.random.normal(key_e, (episodes, STEPS, 1), jnp.float64)
    per_episode = jax.jit(jax.vmap(jax.grad(surrogate), in_axes=(None, 0, 0)))(K, x0, noise)
    mean = per_episode.mean(axis=0)
    error = per_episode.std(axis=0) / np.sqrt(episodes)
    assert np.all(np.abs(np.asarray(mean - exact)) < 4 * np.asarray(error))
    assert np.all(np.asarray(error) < 0.1 * np.abs(np.asarray(exact)))   # sharp enough


def test_mean_es_estimate_is_the_exact_gradient_of_a_quadratic():
    """For f = 0.5 w^T H w + b^T w each antithetic term is (e e^T) grad f exactly, so the mean
    over many directions is grad f = H w + b within the Monte-Carlo error."""
    from closedloop.core.estimators import es_gradient

    rng = np.random.default_rng(3)
    M = rng.normal(size=(4, 4))
    H, b = jnp.asarray(M @ M.T + np.eye(4)), jnp.asarray(rng.normal(size=4))
    w = jnp.asarray(rng.normal(size=4))

    def cost(params):
        v = params["w"]
        return 0.5 * v @ H @ v + b @ v

    exact = H @ w + b
    count = 20_000
    directions = {"w": jax.random.normal(jax.random.key(1), (count, 4), jnp.float64)}
    estimate = es_gradient(cost, {"w": w}, directions, std=0.05)["w"]
    terms = (jax.vmap(lambda e: (cost({"w": w + 0.05 * e}) - cost({"w": w - 0.05 * e}))
                      / 0.1 * e)(directions["w"]))
    error = terms.std(axis=0) / np.sqrt(count)
    assert np.all(np.abs(np.asarray(estimate - exact)) < 4 * np.asarray(error))
    assert np.linalg.norm(error) < 0.05 * np.linalg.norm(exact)      # sharp enough
    # rank shaping depends on the costs' order only: any increasing transform, same estimate
    shaped = es_gradient(cost, {"w": w}, directions, std=0.05, rank_shaping=True)["w"]
    exp_shaped = es_gradient(lambda p: jnp.exp(cost(p) / 10), {"w": w}, directions, std=0.05,
                             rank_shaping=True)["w"]
    np.testing.assert_allclose(shaped, exp_shaped, rtol=1e-12)
    assert float(shaped @ exact) > 0                       # and it still points uphill


def test_reinforce_gradient_of_a_learned_log_std_is_exact():
    """The score function also estimates dJ/d log(sigma): the closed form's
    sigma * dJ/dsigma, within the Monte-Carlo error."""
    plant, gain, cost, K, exact_cost = linear_gaussian_problem()
    exact = SIGMA * jax.grad(exact_cost, argnums=1)(K, SIGMA)

    def surrogate(log_std, x0, noise):
        std = SIGMA * jnp.exp(log_std)
        traj = run_loop(black_box(plant, gain, {"K": K}, std), steps=STEPS, x0=x0[None],
                        given=Given(exploration=noise[None]), zero_first_control=False)
        costs = cost.step_costs(Trajectory(traj.states, traj.executed), plant)
        return reinforce_surrogate(traj, costs, std=std, first=0, baseline="none")

    episodes = 40_000
    key_x, key_e = jax.random.split(jax.random.key(5))
    x0 = jax.random.uniform(key_x, (episodes, 2), jnp.float64, -1.0, 1.0)
    noise = jax.random.normal(key_e, (episodes, STEPS, 1), jnp.float64)
    per_episode = jax.jit(jax.vmap(jax.grad(surrogate), in_axes=(None, 0, 0)))(
        jnp.zeros(1), x0, noise)
    mean, error = per_episode.mean(axis=0), per_episode.std(axis=0) / np.sqrt(episodes)
    assert np.all(np.abs(np.asarray(mean - exact)) < 4 * np.asarray(error))
    assert np.all(np.asarray(error) < 0.1 * abs(float(exact)))          # sharp enough


def test_value_baseline_keeps_the_estimate_exact_and_halves_its_noise():
    """A value readout cross-fitted on the other half of the batch does not depend on an
    episode's own exploration, so the mean of many batch estimates is still the closed form's
    gradient; and it removes the state-dependent part of the return that the batch mean per
    step leaves (the estimates' spread is measured at about half the batch mean's)."""
    plant, gain, cost, K, exact_cost = linear_gaussian_problem()
    exact = jax.grad(exact_cost)(K, SIGMA)

    def surrogate(K, x0, noise, baseline):
        traj = run_loop(black_box(plant, gain, {"K": K}, SIGMA), steps=STEPS, x0=x0,
                        given=Given(exploration=noise), zero_first_control=False,
                        record_inputs=True, record_hidden=True)
        costs = cost.step_costs(Trajectory(traj.states, traj.executed), plant)
        return reinforce_surrogate(traj, costs, std=SIGMA, first=0, baseline=baseline)

    batches, size, chunk = 1200, 32, 300
    key_x, key_e = jax.random.split(jax.random.key(0))
    x0 = jax.random.uniform(key_x, (batches, size, 2), jnp.float64, -1.0, 1.0)
    noise = jax.random.normal(key_e, (batches, size, STEPS, 1), jnp.float64)
    per_batch = jax.jit(jax.vmap(jax.grad(surrogate), in_axes=(None, 0, 0, None)),
                        static_argnums=3)

    def estimates(baseline):
        return np.concatenate([per_batch(K, x0[i:i + chunk], noise[i:i + chunk], baseline)
                               for i in range(0, batches, chunk)])

    value, batch_mean = estimates("value"), estimates("batch_mean")
    error = value.std(axis=0) / np.sqrt(batches)
    assert np.all(np.abs(value.mean(axis=0) - np.asarray(exact)) < 4 * error)
    assert np.linalg.norm(value.std(axis=0)) < 0.7 * np.linalg.norm(batch_mean.std(axis=0))


def test_fitted_values_recover_a_return_the_features_span():
    """Returns that are an exact combination of the features (a product of inputs, a squared
    hidden unit, a cubic in time) are predicted exactly from the other fold's fit."""
    from closedloop.core.estimators import fitted_values, value_features

    rng = np.random.default_rng(4)
    inputs = jnp.asarray(rng.normal(size=(40, 5, 2)))
    hidden = jnp.asarray(rng.normal(size=(40, 5, 3)))
    traj = Trajectory(states=None, controls=jnp.zeros((40, 5, 1)), inputs=inputs,
                      hidden=hidden)
    tau = jnp.arange(5) / 5
    returns = (1.0 + inputs[..., 0] * inputs[..., 1] - 2.0 * hidden[..., 2] ** 2
               + 3.0 * tau ** 3)
    mask = jnp.ones((40, 5)).at[:, 0].set(0.0)
    values = fitted_values(value_features(traj), returns, mask, ridge=0.0)
    np.testing.assert_allclose(values, returns, atol=1e-6)
