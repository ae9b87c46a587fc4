"""The coupled Jacobian of the one-step closed-loop map (science 3) and the exactness of the rank-1
reduction (science 3.1), against finite differences of a one-step map written here in NumPy and
against hand-written simulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.analysis.coupling import coupled_jacobian, coupled_matrix, one_step_map
from closedloop.analysis.theory import reduced_matrix
from closedloop.core.agents import LowRankRNN, OverlapModel, RNNAgent, StaticGain, order_parameters
from closedloop.core.plants import double_integrator, point_mass_2d
from closedloop.core.rollout import rollout

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def numpy_params(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def hand_step(plant, weights, alpha, x, h, reference=None):
    """science 1.2-1.3 in maths layout: u = W_out h, x' = A x + B u, y' = C x' (followed by the
    reference), h' = (1 - a) h + a tanh(W h + W_in y'). The agent stores row layout, so the
    maths matrices are the transposes of the stored ones."""
    W_in, W, W_out = weights["W_in"].T, weights["W"].T, weights["W_out"].T
    u = W_out @ h
    x_next = plant.A @ x + plant.B @ u
    y = plant.C @ x_next
    if reference is not None:
        y = np.concatenate([y, reference])
    h_next = (1 - alpha) * h + alpha * np.tanh(W @ h + W_in @ y)
    return np.concatenate([x_next, h_next])


def finite_difference_jacobian(fun, state, step=1e-6):
    columns = []
    for k in range(state.size):
        e = np.zeros(state.size)
        e[k] = step
        columns.append((fun(state + e) - fun(state - e)) / (2 * step))
    return np.stack(columns, axis=1)


def tanh_agent(seed, n_inputs=1, n_outputs=1, size=12, dt=1.0, tau=1.0, gain=2.0):
    agent = RNNAgent(n_inputs=n_inputs, n_outputs=n_outputs, size=size, activation="tanh",
                     dt=dt, tau=tau)
    params = agent.init_params(jax.random.key(seed), jnp.float64)
    # larger weights: the operating points reach tanh's curved part
    return agent, {k: v * gain for k, v in params.items()}


def operating_points(rng, batch, n_x, size):
    x = rng.normal(scale=1.0, size=(batch, n_x))
    h = rng.uniform(-0.8, 0.8, size=(batch, size))
    return x, h


@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_tanh_jacobian_matches_finite_differences(dt, seed):
    plant = double_integrator()
    agent, params = tanh_agent(seed, dt=dt)
    weights = numpy_params(params)
    rng = np.random.default_rng(seed)
    x, h = operating_points(rng, 5, 2, agent.size)
    jac = coupled_jacobian(plant, agent, params, jnp.asarray(x), jnp.asarray(h))
    assert jac.shape == (5, 2 + agent.size, 2 + agent.size)
    for b in range(5):
        expected = finite_difference_jacobian(
            lambda s: hand_step(plant, weights, agent.alpha, s[:2], s[2:]),
            np.concatenate([x[b], h[b]]))
        np.testing.assert_allclose(np.asarray(jac[b]), expected, rtol=0, atol=1e-7)
    # the operating points are genuinely nonlinear: the local P differs from the one at 0
    P0 = coupled_matrix(plant, agent.linearisation(weights))
    assert np.abs(np.asarray(jac) - P0).max() > 1e-2


@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_tanh_jacobian_at_the_origin_is_the_coupled_matrix(dt):
    plant = double_integrator()
    agent, params = tanh_agent(7, dt=dt)
    weights = numpy_params(params)
    jac = coupled_jacobian(plant, agent, params, jnp.zeros((3, 2), dtype=jnp.float64),
                           jnp.zeros((3, agent.size), dtype=jnp.float64))
    P = coupled_matrix(plant, agent.linearisation(weights))
    np.testing.assert_allclose(np.asarray(jac), np.broadcast_to(P, jac.shape), rtol=0, atol=1e-12)
    # and the coupled matrix is the finite-difference Jacobian of the hand-written map at 0
    expected = finite_difference_jacobian(
        lambda s: hand_step(plant, weights, agent.alpha, s[:2], s[2:]), np.zeros(2 + agent.size))
    np.testing.assert_allclose(P, expected, rtol=0, atol=1e-7)


def test_one_step_map_matches_the_hand_written_map():
    plant = double_integrator()
    agent, params = tanh_agent(3, dt=0.5)
    weights = numpy_params(params)
    x, h = operating_points(np.random.default_rng(0), 4, 2, agent.size)
    x_next, h_next = one_step_map(plant, agent, params, jnp.asarray(x), jnp.asarray(h))
    for b in range(4):
        expected = hand_step(plant, weights, agent.alpha, x[b], h[b])
        np.testing.assert_allclose(np.concatenate([np.asarray(x_next[b]), np.asarray(h_next[b])]),
                                   expected, rtol=1e-13, atol=1e-14)


def test_static_gain_jacobian_is_a_plus_bk():
    plant = double_integrator()
    K = np.array([[-0.45, -1.1]])
    gain = StaticGain(2, 1)
    params = gain.to_params({"K": K}, jnp.float64)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 2)))
    jac = coupled_jacobian(plant, gain, params, x, jnp.zeros((4, 0), dtype=jnp.float64))
    expected = plant.A + plant.B @ K
    np.testing.assert_allclose(np.asarray(jac), np.broadcast_to(expected, (4, 2, 2)), rtol=0,
                               atol=1e-14)
    single = coupled_jacobian(plant, gain, params, x[0], jnp.zeros(0, dtype=jnp.float64))
    np.testing.assert_allclose(np.asarray(single), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(coupled_matrix(plant, gain.linearisation({"K": K})), expected,
                               rtol=0, atol=1e-15)


def tracking_setup(seed=5):
    plant = point_mass_2d()
    agent, params = tanh_agent(seed, n_inputs=4, n_outputs=2, size=10, dt=0.1, tau=1.0,
                               gain=3.0)
    return plant, agent, params


def test_tracking_jacobian_with_reference_matches_finite_differences():
    plant, agent, params = tracking_setup()
    weights = numpy_params(params)
    rng = np.random.default_rng(9)
    x, h = operating_points(rng, 3, 4, agent.size)
    reference = rng.normal(scale=2.0, size=(3, 2))
    jac = coupled_jacobian(plant, agent, params, jnp.asarray(x), jnp.asarray(h),
                           jnp.asarray(reference))
    assert jac.shape == (3, 4 + agent.size, 4 + agent.size)
    for b in range(3):
        expected = finite_difference_jacobian(
            lambda s, b=b: hand_step(plant, weights, agent.alpha, s[:4], s[4:], reference[b]),
            np.concatenate([x[b], h[b]]))
        np.testing.assert_allclose(np.asarray(jac[b]), expected, rtol=0, atol=1e-7)
    # the reference matters (it moves tanh's operating point) ...
    without = coupled_jacobian(plant, agent, params, jnp.asarray(x), jnp.asarray(h),
                               jnp.zeros((3, 2), dtype=jnp.float64))
    assert np.abs(np.asarray(jac) - np.asarray(without)).max() > 1e-3
    # ... unbatched inputs give the same Jacobian
    single = coupled_jacobian(plant, agent, params, jnp.asarray(x[1]), jnp.asarray(h[1]),
                              jnp.asarray(reference[1]))
    np.testing.assert_allclose(np.asarray(single), np.asarray(jac[1]), rtol=0, atol=1e-14)
    # at the origin with a zero reference it is the coupled matrix, which uses only the
    # observation columns of W_in
    origin = coupled_jacobian(plant, agent, params, jnp.zeros(4, dtype=jnp.float64),
                              jnp.zeros(agent.size, dtype=jnp.float64),
                              jnp.zeros(2, dtype=jnp.float64))
    P = coupled_matrix(plant, agent.linearisation(weights))
    np.testing.assert_allclose(np.asarray(origin), P, rtol=0, atol=1e-12)


def test_unbatched_jacobian_matches_finite_differences():
    plant = double_integrator()
    agent, params = tanh_agent(11, dt=1.0)
    weights = numpy_params(params)
    x, h = operating_points(np.random.default_rng(1), 1, 2, agent.size)
    jac = coupled_jacobian(plant, agent, params, jnp.asarray(x[0]), jnp.asarray(h[0]))
    assert jac.shape == (2 + agent.size, 2 + agent.size)
    expected = finite_difference_jacobian(
        lambda s: hand_step(plant, weights, agent.alpha, s[:2], s[2:]),
        np.concatenate([x[0], h[0]]))
    np.testing.assert_allclose(np.asarray(jac), expected, rtol=0, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# the rank-1 reduction is exact


N = 100


def low_rank_network(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"m": rng.uniform(-1, 1, (N, 1)) / np.sqrt(N),
            "z": scale * rng.uniform(-1, 1, (1, N)) / np.sqrt(N),
            "u": scale * rng.normal(size=(N, 1)) / np.sqrt(N),
            "v": scale * rng.normal(size=(N, 1)) / np.sqrt(N)}


def p_eff(s_zm, s_zu, s_vm, s_vu):
    return np.array([[1.0, 1.0, 0.0, 0.0],
                     [0.0, 1.0, s_zm, s_zu],
                     [1.0, 1.0, 0.0, 0.0],
                     [0.0, 0.0, s_vm, s_vu]])


@pytest.mark.parametrize("seed", range(3))
def test_overlap_model_coupled_matrix_is_p_eff(seed):
    network = low_rank_network(seed, scale=2.0)
    model = OverlapModel(n_inputs=1, n_outputs=1, size=2, activation="linear")
    params = model.to_params(network, jnp.float64)
    overlaps = {k: float(v) for k, v in params.items()}
    m, z, u, v = (network[k].ravel() for k in ("m", "z", "u", "v"))
    by_hand = (z @ m, z @ u, v @ m, v @ u)
    np.testing.assert_allclose([overlaps[k] for k in ("s_zm", "s_zu", "s_vm", "s_vu")],
                               by_hand, rtol=1e-14, atol=1e-16)
    P = coupled_matrix(double_integrator(), model.linearisation(numpy_params(params)))
    np.testing.assert_allclose(P, p_eff(*by_hand), rtol=0, atol=1e-15)
    np.testing.assert_allclose(P, reduced_matrix(**order_parameters(network)), rtol=0,
                               atol=1e-15)


def hand_low_rank_rollout(network, x0, steps):
    """science 1.3 for the linear rank-1 network (dt = tau): u_0 = 0, h_0 = 0; for t >= 1
    h_t = u v^T h_{t-1} + m y_t and u_t = z^T h_t; x_{t+1} = A x_t + B u_t."""
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    m, z, u, v = (network[k].ravel() for k in ("m", "z", "u", "v"))
    W = np.outer(u, v)
    states, controls = [x0], []
    h = np.zeros((x0.shape[0], N))
    for t in range(steps):
        x = states[-1]
        if t == 0:
            control = np.zeros(x0.shape[0])
        else:
            h = h @ W.T + x[:, :1] * m[None, :]
            control = h @ z
        controls.append(control[:, None])
        states.append(x @ A.T + np.stack([np.zeros_like(control), control], axis=1))
    return np.stack(states, 1), np.stack(controls, 1)


@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 3.0), (2, 6.0)])
def test_overlap_model_rollout_equals_the_full_network(seed, scale):
    network = low_rank_network(seed, scale)
    plant = double_integrator()
    x0 = jnp.asarray(np.random.default_rng(seed).uniform(-2, 2, size=(8, 2)))
    full = LowRankRNN(n_inputs=1, n_outputs=1, size=N, activation="linear")
    model = OverlapModel(n_inputs=1, n_outputs=1, size=2, activation="linear")
    big = rollout(plant, full, full.to_params(network, jnp.float64), steps=50, x0=x0,
                  record_hidden=True)
    small = rollout(plant, model, model.to_params(network, jnp.float64), steps=50, x0=x0,
                    record_hidden=True)
    states, controls = np.asarray(big.states), np.asarray(big.controls)
    scale_of = np.abs(states).max()
    assert scale_of > 1.0 and np.abs(controls).max() > 1e-2
    np.testing.assert_allclose(np.asarray(small.states), states, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(small.controls), controls, rtol=1e-10, atol=1e-10)
    # the full rollout is the hand-written one, and h = k_m m + k_u u with (k_m, k_u) the
    # reduced model's hidden state
    hand_states, hand_controls = hand_low_rank_rollout(network, np.asarray(x0), 50)
    np.testing.assert_allclose(states, hand_states, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(controls, hand_controls, rtol=1e-10, atol=1e-10)
    basis = np.hstack([network["m"], network["u"]])  # (N, 2)
    np.testing.assert_allclose(np.asarray(small.hidden) @ basis.T, np.asarray(big.hidden),
                               rtol=1e-10, atol=1e-10)
