import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.analysis.coupling import (
    coupled_matrix,
    operating_point_matrices,
    sorted_eigenvalues,
)
from closedloop.core.agents import LowRankRNN, RNNAgent, StaticGain
from closedloop.core.plants import LinearPlant, double_integrator, integrator
from closedloop.core.rollout import rollout


def numpy_params(params):
    return {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def random_plant():
    rng = np.random.default_rng(7)
    A = rng.normal(size=(3, 3))
    A *= 0.9 / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(3, 2))
    C = rng.normal(size=(2, 3))
    assert np.abs(C @ B).min() > 1e-2
    return LinearPlant(A, B, C)


def iterate(P, s0, steps):
    states = [s0]
    for _ in range(steps):
        states.append(states[-1] @ P.T)
    return np.stack(states, 1)


@pytest.mark.parametrize("plant_kind", ["double_integrator", "cb_nonzero"])
@pytest.mark.parametrize("dt", [1.0, 0.1])
def test_linear_rnn_rollout_follows_coupled_matrix(plant_kind, dt):
    plant = double_integrator() if plant_kind == "double_integrator" else random_plant()
    size, steps = 12, 25
    agent = RNNAgent(n_inputs=plant.n_outputs, n_outputs=plant.n_inputs, size=size,
                     activation="linear", dt=dt, tau=1.0)
    params = agent.init_params(jax.random.key(3), jnp.float64)
    params = {**params, "W": params["W"] * 0.5, "W_out": params["W_out"] * 0.3}
    x0 = jnp.array([[1.0, -0.5, 0.3][:plant.n_states], [-0.7, 0.2, 0.9][:plant.n_states]],
                   dtype=jnp.float64)
    traj = rollout(plant, agent, params, steps=steps, x0=x0, zero_first_control=True,
                   record_hidden=True)
    P = coupled_matrix(plant, agent.linearisation(numpy_params(params)))
    assert P.shape == (plant.n_states + size, plant.n_states + size)
    s0 = np.concatenate([np.asarray(x0), np.zeros((2, size))], 1)
    s = iterate(P, s0, steps)
    n_x = plant.n_states
    states, hidden = np.asarray(traj.states), np.asarray(traj.hidden)
    assert np.abs(states).max() > 0.1 and np.abs(hidden[:, 1:]).max() > 1e-2
    np.testing.assert_allclose(states, s[:, :, :n_x], rtol=0, atol=1e-10)
    np.testing.assert_allclose(hidden, s[:, :steps, n_x:], rtol=0, atol=1e-10)
    # h_0 = 0 makes u_0 = W_out h_0 = 0: the t = 0 convention is the first step of P
    np.testing.assert_array_equal(np.asarray(traj.controls[:, 0]), 0.0)
    np.testing.assert_allclose(np.asarray(traj.controls),
                               s[:, :steps, n_x:] @ np.asarray(params["W_out"]),
                               rtol=0, atol=1e-10)


def test_without_zero_first_control_rollout_starts_from_updated_hidden():
    plant = random_plant()
    alpha, size, steps = 0.1, 8, 15
    agent = RNNAgent(n_inputs=2, n_outputs=2, size=size, activation="linear", dt=alpha, tau=1.0)
    params = agent.init_params(jax.random.key(1), jnp.float64)
    x0 = jnp.array([[0.4, -1.0, 0.8]], dtype=jnp.float64)
    traj = rollout(plant, agent, params, steps=steps, x0=x0, zero_first_control=False,
                   record_hidden=True)
    p = numpy_params(params)
    h0 = alpha * p["W_in"].T @ plant.C @ np.asarray(x0)[0]
    s = iterate(coupled_matrix(plant, agent.linearisation(p)),
                np.concatenate([np.asarray(x0)[0], h0])[None], steps)
    np.testing.assert_allclose(np.asarray(traj.states), s[:, :, :3], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(traj.hidden), s[:, :steps, 3:], rtol=0,
                               atol=1e-10)


def test_coupled_matrix_blocks_by_hand():
    plant = random_plant()
    agent = RNNAgent(n_inputs=2, n_outputs=2, size=5, activation="linear", dt=0.25, tau=1.0)
    params = numpy_params(agent.init_params(jax.random.key(0), jnp.float64))
    w_in, w, w_out = params["W_in"].T, params["W"].T, params["W_out"].T
    A, B, C, a = plant.A, plant.B, plant.C, 0.25
    expected = np.block([[A, B @ w_out],
                         [a * w_in @ C @ A, (1 - a) * np.eye(5) + a * (w + w_in @ C @ B @ w_out)]])
    np.testing.assert_allclose(coupled_matrix(plant, agent.linearisation(params)), expected,
                               rtol=0, atol=1e-14)


def lowrank_agent_params(seed, size=100, orthogonal=None):
    agent = LowRankRNN(n_inputs=1, n_outputs=1, size=size, activation="linear", rank=1)
    params = numpy_params(agent.init_params(jax.random.key(seed), jnp.float64))
    m, z = params["m"][:, 0], params["z"][0]
    if orthogonal == "vm":
        v = params["v"][:, 0]
        params["v"] = (v - (v @ m) / (m @ m) * m)[:, None]
    elif orthogonal == "zu":
        u = params["u"][:, 0]
        params["u"] = (u - (u @ z) / (z @ z) * z)[:, None]
    return agent, params


def overlaps(params):
    m, z = params["m"][:, 0], params["z"][0]
    u, v = params["u"][:, 0], params["v"][:, 0]
    return z @ m, z @ u, v @ m, v @ u


def p_eff(s_zm, s_zu, s_vm, s_vu):
    return np.array([[1.0, 1.0, 0.0, 0.0],
                     [0.0, 1.0, s_zm, s_zu],
                     [1.0, 1.0, 0.0, 0.0],
                     [0.0, 0.0, s_vm, s_vu]])


@pytest.mark.parametrize("seed", [0, 1, 3])   # seeds whose memory product s_vm s_zu is not tiny
def test_lowrank_spectrum_is_p_eff(seed):
    agent, params = lowrank_agent_params(seed)
    s_zm, s_zu, s_vm, s_vu = overlaps(params)
    assert abs(s_vm * s_zu) > 1e-4
    P = coupled_matrix(double_integrator(), agent.linearisation(params))
    assert P.shape == (102, 102)
    full = sorted_eigenvalues(P)
    reduced = sorted_eigenvalues(p_eff(s_zm, s_zu, s_vm, s_vu))
    assert abs(reduced[3]) < 1e-12
    np.testing.assert_allclose(full[:3], reduced[:3], rtol=0, atol=1e-8)
    assert np.abs(full[3:]).max() < 1e-6
    coefficients = [1.0, -(s_vu + 2), 2 * s_vu - s_zm + 1, s_vu * s_zm - s_vu - s_vm * s_zu]
    np.testing.assert_allclose(np.polyval(coefficients, full[:3]), 0.0, atol=1e-10)


@pytest.mark.parametrize("orthogonal", ["vm", "zu"])
@pytest.mark.parametrize("seed", [0, 3])
def test_lowrank_closed_form_roots(orthogonal, seed):
    agent, params = lowrank_agent_params(seed, orthogonal=orthogonal)
    s_zm, s_zu, s_vm, s_vu = overlaps(params)
    assert abs(s_vm * s_zu) < 1e-15
    P = coupled_matrix(double_integrator(), agent.linearisation(params))
    root = np.sqrt(complex(s_zm))
    expected = sorted_eigenvalues(np.diag([s_vu, 1 + root, 1 - root]))
    np.testing.assert_allclose(sorted_eigenvalues(P)[:3], expected, rtol=0, atol=1e-8)


def test_lowrank_prescribed_negative_overlap_gives_complex_pair():
    agent = LowRankRNN(n_inputs=1, n_outputs=1, size=100, activation="linear", rank=1,
                       prescribed_overlap=-0.04)
    params = numpy_params(agent.init_params(jax.random.key(5), jnp.float64))
    m, v = params["m"][:, 0], params["v"][:, 0]
    params["v"] = (v - (v @ m) / (m @ m) * m)[:, None]
    s_zm, _, s_vm, s_vu = overlaps(params)
    assert s_zm == pytest.approx(-0.04, abs=1e-12)
    assert abs(s_vm) < 1e-15 and abs(s_vu) < 0.9
    P = coupled_matrix(double_integrator(), agent.linearisation(params))
    top = sorted_eigenvalues(P)[:2]
    np.testing.assert_allclose(sorted(top, key=lambda z: z.imag), [1 - 0.2j, 1 + 0.2j], atol=1e-8)


def test_static_gain_double_integrator():
    gain = StaticGain(n_states=2, n_outputs=1)
    params = {"K": np.array([[-0.3, -0.8]])}
    P = coupled_matrix(double_integrator(), gain.linearisation(params))
    np.testing.assert_allclose(P, [[1.0, 1.0], [-0.3, 0.2]], rtol=0, atol=1e-15)


def test_static_gain_triple_integrator_two_inputs():
    plant = integrator(order=3, n_inputs=2, n_observed=1, dt=0.5)
    gain = StaticGain(n_states=3, n_outputs=2)
    params = {"K": np.array([[1.0, 2.0, 3.0], [-4.0, -2.0, 6.0]])}
    P = coupled_matrix(plant, gain.linearisation(params))
    # A = I + 0.5 superdiag; B K puts 0.5 K[0] in row 1 and 0.5 K[1] in row 2
    np.testing.assert_allclose(P, [[1.0, 0.5, 0.0],
                                   [0.5, 2.0, 2.0],
                                   [-2.0, -1.0, 4.0]], rtol=0, atol=1e-15)


def tanh_step(s, A, B, C, w_in, w, w_out, b, b_out, alpha, n_x):
    x, h = s[:n_x], s[n_x:]
    x_next = A @ x + B @ (w_out @ h + b_out)
    h_next = (1 - alpha) * h + alpha * np.tanh(w @ h + w_in @ (C @ x_next) + b)
    return np.concatenate([x_next, h_next])


@pytest.mark.parametrize("bias", ["none", "hidden", "hidden+output"])
@pytest.mark.parametrize("plant_kind", ["double_integrator", "cb_nonzero"])
@pytest.mark.parametrize("dt", [1.0, 0.3])
def test_tanh_coupled_matrix_is_jacobian_at_origin(plant_kind, dt, bias):
    plant = double_integrator() if plant_kind == "double_integrator" else random_plant()
    size = 7
    agent = RNNAgent(n_inputs=plant.n_outputs, n_outputs=plant.n_inputs, size=size,
                     activation="tanh", dt=dt, tau=1.0, bias=bias != "none",
                     output_bias=bias == "hidden+output")
    params = numpy_params(agent.init_params(jax.random.key(11), jnp.float64))
    rng = np.random.default_rng(4)
    b = rng.normal(size=size) if bias != "none" else np.zeros(size)
    b_out = rng.normal(size=plant.n_inputs) if bias == "hidden+output" else np.zeros(
        plant.n_inputs)
    if bias != "none":
        params["b"] = b
    if bias == "hidden+output":
        params["b_out"] = b_out
    w_in, w, w_out = params["W_in"].T, params["W"].T, params["W_out"].T
    n = plant.n_states + size
    eps = 1e-6
    jacobian = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        args = (plant.A, plant.B, plant.C, w_in, w, w_out, b, b_out, dt, plant.n_states)
        jacobian[:, j] = (tanh_step(e, *args) - tanh_step(-e, *args)) / (2 * eps)
    P = coupled_matrix(plant, agent.linearisation(params))
    np.testing.assert_allclose(P, jacobian, rtol=0, atol=1e-8)
    # what every epoch records: the Jacobian of the rollout's one-step map at the operating
    # point, the target x* = 0 with the network at its fixed point reading y = C x* = 0
    # (the origin without biases; found here by plain iteration of the update)
    h_star = np.zeros(size)
    for _ in range(2000):
        h_star = (1 - dt) * h_star + dt * np.tanh(w @ h_star + b)
    start = np.concatenate([np.zeros(plant.n_states), h_star])
    at_fixed_point = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        at_fixed_point[:, j] = (tanh_step(start + e, *args) - tanh_step(start - e, *args)) / (
            2 * eps)
    recorded = operating_point_matrices(plant, agent,
                                        {k: np.asarray(v)[None] for k, v in params.items()})
    np.testing.assert_allclose(recorded[0], at_fixed_point, rtol=0, atol=1e-8)
    if bias == "none":
        np.testing.assert_allclose(recorded[0], jacobian, rtol=0, atol=1e-8)


@pytest.mark.parametrize("dt", [1.0, 0.25])
def test_relu_coupled_matrix_at_origin_takes_the_right_derivative(dt):
    """Without biases every pre-activation at s = 0 is 0, where relu' is taken as 1 (the right
    derivative): P is then the linear network's P, in the formula and in what runs record."""
    plant = random_plant()
    agent = RNNAgent(n_inputs=2, n_outputs=2, size=5, activation="relu", dt=dt, tau=1.0)
    params = numpy_params(agent.init_params(jax.random.key(0), jnp.float64))
    w_in, w, w_out = params["W_in"].T, params["W"].T, params["W_out"].T
    A, B, C = plant.A, plant.B, plant.C
    expected = np.block([[A, B @ w_out],
                         [dt * w_in @ C @ A,
                          (1 - dt) * np.eye(5) + dt * (w + w_in @ C @ B @ w_out)]])
    np.testing.assert_allclose(coupled_matrix(plant, agent.linearisation(params)), expected,
                               rtol=0, atol=1e-14)
    recorded = operating_point_matrices(plant, agent, {k: v[None] for k, v in params.items()})
    np.testing.assert_allclose(recorded[0], expected, rtol=0, atol=1e-14)
