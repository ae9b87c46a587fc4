"""Nonlinear plants and sensors against hand derivations: the pendulum's equilibria and its
linearisations, the arm's kinetic energy from its links' kinematics and its conservation
(also in a curl field, which does no work), the point mass's step matrix, a delayed loop's
rollout and coupled Jacobian built by hand, where noise enters, and bad plant definitions."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.analysis.coupling import coupled_jacobian, operating_point_matrices
from closedloop.config import PlantConfig
from closedloop.core.agents import RNNAgent
from closedloop.core.mechanics import NonlinearPlant, Pendulum, PointMass, TwoLinkArm
from closedloop.core.plants import double_integrator, plant_from_config
from closedloop.core.registry import register_plant
from closedloop.core.rollout import rollout
from closedloop.core.sensors import SensedPlant
from closedloop.errors import ConfigError


def step_jacobians(plant, x, u):
    x, u = jnp.asarray(x, jnp.float64), jnp.asarray(u, jnp.float64)
    return (np.asarray(jax.jacfwd(plant.step, argnums=0)(x, u)),
            np.asarray(jax.jacfwd(plant.step, argnums=1)(x, u)))


def semi_implicit_euler(A_c, B_c, dt):
    """x = (q, v), v' = v + dt (a q + c v + d u), q' = q + dt v': the discrete (A, B)."""
    (a, c), d = A_c[1], B_c[1, 0]
    A = np.array([[1 + dt ** 2 * a, dt * (1 + dt * c)], [dt * a, 1 + dt * c]])
    return A, np.array([[dt ** 2 * d], [dt * d]])


@pytest.mark.parametrize("angle, sign", [(0.0, -1.0), (math.pi, 1.0)])
def test_pendulum_equilibria_and_their_linearisations(angle, sign):
    plant = Pendulum(mass=1.3, length=0.8, gravity=9.81, damping=0.2, dt=0.05)
    rest = np.array([angle, 0.0])
    np.testing.assert_allclose(plant.step(jnp.asarray(rest), jnp.zeros(1)), rest, atol=1e-15)
    inertia = 1.3 * 0.8 ** 2
    # science 9: at q = pi, A_c = [[0, 1], [g/l, -b/(m l^2)]]; at q = 0 gravity restores
    A_c = np.array([[0.0, 1.0], [sign * 9.81 / 0.8, -0.2 / inertia]])
    B_c = np.array([[0.0], [1.0 / inertia]])
    A, B = step_jacobians(plant, rest, [0.0])
    A_hand, B_hand = semi_implicit_euler(A_c, B_c, 0.05)
    np.testing.assert_allclose(A, A_hand, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(B, B_hand, rtol=1e-12, atol=1e-14)
    # and the continuous-time system is the step's limit
    fine = Pendulum(mass=1.3, length=0.8, damping=0.2, dt=1e-7)
    A_fine, B_fine = step_jacobians(fine, rest, [0.0])
    np.testing.assert_allclose((A_fine - np.eye(2)) / 1e-7, A_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(B_fine / 1e-7, B_c, rtol=1e-5, atol=1e-5)


def test_pendulum_torque_limit_and_sensors():
    plant = Pendulum(max_torque=2.0, dt=0.1, damping=0.0)
    hanging = jnp.zeros((2, 2))
    x = plant.step(hanging, jnp.array([[5.0], [-1.0]]))
    np.testing.assert_allclose(x[:, 1], [0.1 * 2.0, -0.1 * 1.0])       # clipped at 2, not -1
    y = plant.observe(jnp.array([[math.pi + 0.2, 0.7]]))
    np.testing.assert_allclose(y, [[0.2, 0.7]], atol=1e-15)             # angle from upright


def link_kinetic_energy(arm, q, dq):
    """0.5 I1 w1^2 (link 1 about the shoulder) + 0.5 m2 |v_c2|^2 + 0.5 I2c (w1 + w2)^2 with
    I2c = I2 - m2 s2^2 the forearm's inertia about its centre: from the links' motion."""
    l1, s2, m2 = arm.length_upper, arm.centre_fore, arm.mass_fore
    q1, q12 = q[0], q[0] + q[1]
    w1, w12 = dq[0], dq[0] + dq[1]
    v_c2 = np.array([-l1 * math.sin(q1) * w1 - s2 * math.sin(q12) * w12,
                     l1 * math.cos(q1) * w1 + s2 * math.cos(q12) * w12])
    inertia_centre = arm.inertia_fore - m2 * s2 ** 2
    return (0.5 * arm.inertia_upper * w1 ** 2 + 0.5 * m2 * v_c2 @ v_c2
            + 0.5 * inertia_centre * w12 ** 2)


def test_arm_mass_matrix_is_the_links_kinetic_energy():
    arm = TwoLinkArm()
    rng = np.random.default_rng(0)
    for _ in range(5):
        q, dq = rng.uniform(-2, 2, 2), rng.normal(size=2)
        state = jnp.asarray(np.concatenate([q, dq]))
        assert float(arm.energy(state)) == pytest.approx(link_kinetic_energy(arm, q, dq),
                                                         rel=1e-12)
    l1, l2 = arm.length_upper, arm.length_fore
    np.testing.assert_allclose(arm.hand(jnp.array([0.0, 0.0])), [l1 + l2, 0.0], atol=1e-15)
    np.testing.assert_allclose(arm.hand(jnp.array([math.pi / 2, math.pi / 2])), [-l2, l1],
                               atol=1e-15)


def energy_drift(arm, state, seconds):
    """The largest |E_t - E_0| / E_0 over ``seconds`` of free motion (tau = 0)."""
    def body(s, _):
        s = arm.step(s, jnp.zeros(2))
        return s, arm.energy(s)

    final, energies = jax.jit(lambda s: jax.lax.scan(body, s, None,
                                                     length=round(seconds / arm.dt)))(state)
    start = arm.energy(state)
    return float(jnp.max(jnp.abs(energies - start)) / start), final


@pytest.mark.parametrize("curl", [0.0, 13.0])
def test_arm_without_torque_or_damping_conserves_energy(curl):
    """No gravity, no damping, no torque: 0.5 q'^T M q' is conserved; a curl field is
    perpendicular to the hand's velocity, so it does no work either. What drifts is RK4's
    error, which falls as dt^4."""
    free = ((0.0, 0.0), (0.0, 0.0))
    state = jnp.array([0.3, 1.2, 2.0, -3.0])
    drift, final = energy_drift(TwoLinkArm(damping=free, curl=curl, dt=0.0025), state, 2.0)
    assert drift < 1e-6
    assert abs(float(final[1]) - 1.2) > 0.1                 # the arm did move
    coarse, _ = energy_drift(TwoLinkArm(damping=free, curl=curl, dt=0.005), state, 2.0)
    assert coarse > 8 * drift or coarse < 1e-9              # fourth order, not a model error
    damped, _ = energy_drift(TwoLinkArm(curl=curl, dt=0.0025), state, 0.5)
    assert damped > 0.1                                     # viscosity dissipates


def test_point_mass_step_is_the_hand_built_matrix():
    dt, mass, drag, curl = 0.05, 2.0, 0.5, 3.0
    plant = PointMass(dt=dt, mass=mass, drag=drag, curl=curl)
    # v' = (1 - dt drag/m) v + dt curl/m R v + dt/m u,  p' = p + dt v'  (state x, vx, y, vy)
    V = (1 - dt * drag / mass) * np.eye(2) + dt * curl / mass * np.array([[0, -1], [1, 0]])
    A = np.zeros((4, 4))
    B = np.zeros((4, 2))
    position, velocity = [0, 2], [1, 3]
    A[np.ix_(velocity, velocity)] = V
    A[np.ix_(position, position)] = np.eye(2)
    A[np.ix_(position, velocity)] = dt * V
    B[velocity] = dt / mass * np.eye(2)
    B[position] = dt ** 2 / mass * np.eye(2)
    A_jax, B_jax = step_jacobians(plant, np.zeros(4), np.zeros(2))
    np.testing.assert_allclose(A_jax, A, atol=1e-15)
    np.testing.assert_allclose(B_jax, B, atol=1e-15)


def linear_rnn(size=3, n_in=1, n_out=1, dt=0.5, seed=0):
    agent = RNNAgent(n_inputs=n_in, n_outputs=n_out, size=size, activation="linear", dt=dt)
    params = agent.init_params(jax.random.key(seed), jnp.float64)
    return agent, params, {k: np.asarray(v).T for k, v in params.items()}   # maths layout


@pytest.mark.parametrize("delay", [1, 3])
def test_delayed_rollout_reads_old_observations(delay):
    plant = double_integrator()
    agent, params, maths = linear_rnn()
    sensed = SensedPlant(plant, delay=delay)
    x0 = np.array([[0.7, -0.2]])
    steps = 12
    traj = rollout(sensed, agent, params, steps=steps,
                   x0=sensed.initial_states(jnp.asarray(x0)), zero_first_control=False)
    # by hand: y_t = C x_{t-k} (C x_0 before the start), h_t = (1-a) h + a (W h + W_in y_t)
    xs, h = [x0[0]], np.zeros(3)
    for t in range(steps):
        y = plant.C @ xs[max(t - delay, 0)]
        h = 0.5 * h + 0.5 * (maths["W"] @ h + maths["W_in"] @ y)
        u = maths["W_out"] @ h
        xs.append(plant.A @ xs[-1] + plant.B @ u)
    np.testing.assert_allclose(np.asarray(traj.states)[0, :, :2], np.array(xs), rtol=1e-12)


def test_delayed_coupled_jacobian_holds_the_buffer():
    """With a delay of one step, s = (x, b, h) with b = y_{t-1}: x' = A x + B W_out h,
    b' = C x, h' = (1-a) h + a (W h + W_in b') -- the agent reads C x_t one step late."""
    plant = double_integrator()
    agent, params, m = linear_rnn()
    sensed = SensedPlant(plant, delay=1)
    A, B, C = plant.A, plant.B, plant.C
    a = 0.5
    P = np.block([[A, np.zeros((2, 1)), B @ m["W_out"]],
                  [C, np.zeros((1, 1)), np.zeros((1, 3))],
                  [a * m["W_in"] @ C, np.zeros((3, 1)), (1 - a) * np.eye(3) + a * m["W"]]])
    recorded = operating_point_matrices(sensed, agent,
                                        {k: np.asarray(v)[None] for k, v in params.items()})
    np.testing.assert_allclose(recorded[0], P, atol=1e-14)
    config = plant_from_config(PlantConfig(kind="integrator", delay=1))
    assert config == sensed


def test_noise_enters_where_the_options_say():
    plant = double_integrator()
    sensed = SensedPlant(plant, motor_noise_std=0.5, observation_noise_std=2.0)
    assert sensed.noise_size == 2                       # motor (n_u = 1), observation (1)
    x, u = jnp.array([[1.0, 2.0]]), jnp.array([[0.25]])
    noise = jnp.array([[3.0, -1.0]])
    expected = plant.A @ [1.0, 2.0] + plant.B[:, 0] * (0.25 + 0.5 * 3.0)
    np.testing.assert_allclose(sensed.step(x, u, noise)[0], expected)
    np.testing.assert_allclose(sensed.observe(x, noise), [[1.0 + 2.0 * -1.0]])
    np.testing.assert_allclose(sensed.observe(x), [[1.0]])
    drawn = sensed.draw_noise(jax.random.key(0), 4000, 3, jnp.float64)
    assert drawn.shape == (4000, 3, 2)
    assert abs(float(drawn.std()) - 1.0) < 0.02 and abs(float(drawn.mean())) < 0.02


def test_observed_selects_outputs_and_names_bad_indices():
    arm = plant_from_config(PlantConfig(kind="two_link_arm", observed=[4, 5]))
    assert arm.n_outputs == 2
    state = jnp.asarray(arm.target_state)[None] + jnp.array([[0.1, 0.0, 0.0, 0.0]])
    base = TwoLinkArm()
    np.testing.assert_allclose(arm.observe(state), base.effector(state), atol=1e-15)
    with pytest.raises(ConfigError, match=re.escape("plant.observed")):
        plant_from_config(PlantConfig(kind="pendulum", observed=[2]))


@dataclass(frozen=True)
class Cart(NonlinearPlant):
    """A cart on a cubic spring (the README's user plant)."""

    stiffness: float = 1.0
    state_names = ("position", "velocity")
    input_names = ("force",)

    def dynamics(self, x, u):
        velocity = x[1] + self.dt * (u[0] - self.stiffness * x[0] ** 3)
        return jnp.stack([x[0] + self.dt * velocity, velocity])


@dataclass(frozen=True)
class WrongShape(Cart):
    def dynamics(self, x, u):
        return jnp.concatenate([x, u])


@dataclass(frozen=True)
class Explodes(Cart):
    def dynamics(self, x, u):
        return x / 0.0


def test_user_plants_register_and_bad_ones_are_refused():
    register_plant("test-cart", Cart)
    plant = plant_from_config(PlantConfig(kind="test-cart", dt=0.1, params={"stiffness": 2.0}))
    assert plant == Cart(dt=0.1, stiffness=2.0)
    np.testing.assert_allclose(plant.step(jnp.array([[1.0, 0.0]]), jnp.zeros((1, 1))),
                               [[1.0 - 0.01 * 2.0, -0.1 * 2.0]])
    register_plant("test-wrong", WrongShape)
    register_plant("test-explodes", Explodes)
    cases = {"test-wrong": "shape (3,), expected (2,)", "test-explodes": "not finite",
             "no-such-plant": "invalid value for 'plant.kind'"}
    for kind, words in cases.items():
        with pytest.raises(ConfigError, match=re.escape(words)):
            plant_from_config(PlantConfig(kind=kind))
    with pytest.raises(ConfigError, match=re.escape("unknown key 'plant.params.stiff'")):
        plant_from_config(PlantConfig(kind="test-cart", params={"stiff": 1.0}))
    with pytest.raises(ConfigError, match="built-in"):
        register_plant("pendulum", Cart)


def test_pendulum_operating_point_is_upright():
    plant = Pendulum()
    agent, params, _ = linear_rnn(n_in=2)
    J = np.asarray(coupled_jacobian(plant, agent, params, jnp.asarray(plant.target_state),
                                    jnp.zeros(3)))
    recorded = operating_point_matrices(plant, agent,
                                        {k: np.asarray(v)[None] for k, v in params.items()})
    np.testing.assert_allclose(recorded[0], J, atol=1e-14)
    assert J[1, 0] == pytest.approx(0.05 * 9.81, rel=1e-9)     # gravity topples it upright


def test_an_entry_point_names_a_plant(monkeypatch):
    """A package's ``closedloop.plants`` entry point is loaded when a config names it."""
    from importlib.metadata import EntryPoint

    from closedloop.core import registry

    point = EntryPoint("test-cart-entry", "tests.core.test_mechanics:Cart", "closedloop.plants")
    broken = EntryPoint("test-broken-entry", "tests.core.no_such_module:Cart",
                        "closedloop.plants")

    def entry_points(group, name=None):
        found = [p for p in (point, broken) if p.group == group]
        return [p for p in found if name is None or p.name == name]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    assert "test-cart-entry" in registry.PLANTS.names()
    plant = plant_from_config(PlantConfig(kind="test-cart-entry", params={"stiffness": 3.0}))
    assert plant == Cart(stiffness=3.0)
    with pytest.raises(ConfigError, match="failed to load"):
        plant_from_config(PlantConfig(kind="test-broken-entry"))


def test_jacobians_along_a_trajectory_are_the_local_linearisations():
    """With no torque the pendulum's step Jacobian at angle q is the semi-implicit
    discretisation of [[0, 1], [-g/l cos q, -b/(m l^2)]], state by state."""
    from closedloop.analysis.coupling import trajectory_jacobians
    from closedloop.core.agents import StaticGain

    plant = Pendulum(damping=0.2)
    angles = np.array([0.0, 0.7, 2.0, math.pi])
    states = np.stack([angles, np.linspace(-1, 1, 4)], axis=1)
    J = trajectory_jacobians(plant, StaticGain(2, 1), {"K": np.zeros((1, 2))}, states,
                             np.zeros((4, 0)))
    for q, jacobian in zip(angles, J, strict=True):
        A_c = np.array([[0.0, 1.0], [-9.81 * math.cos(q), -0.2]])
        A, _ = semi_implicit_euler(A_c, np.array([[0.0], [1.0]]), plant.dt)
        np.testing.assert_allclose(jacobian, A, atol=1e-12)
