"""The muscle-driven arm against the closed-form values of science 10 (MotorNet's numbers):
the mass matrix, the hand, the forces and torques at a given posture, the Hill muscle's
defining points, moment arms as finite differences of path lengths, the work-energy relation
of the skeleton, one step worked by hand in MotorNet's order, the joint limits, and its
config."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.config import PlantConfig
from closedloop.core.muscle_arm import (
    MUSCLES,
    MuscleArm,
    active_force,
    force_length,
    passive_force,
)
from closedloop.core.plants import plant_from_config
from closedloop.errors import ConfigError

ARM = MuscleArm()
POSTURE = np.deg2rad([45.0, 90.0])
FORCES_AT_HALF = [418.87, 603.01, 691.87, 751.15, 192.74, 264.32]   # science 10, a = 0.5, v = 0
TORQUES_AT_HALF = [-7.672, 6.056]


def _state(angles, velocity=(0.0, 0.0), activation=0.5, arm=ARM) -> jnp.ndarray:
    """A state (16,): the kinematics, the activations and the forces they make there."""
    state = arm.resting_state(angles, activation)
    state[2:4] = velocity
    return jnp.asarray(state, dtype=jnp.float64)


def test_skeleton_matches_the_closed_form_values():
    np.testing.assert_allclose(ARM.mass_matrix(jnp.zeros(2)),
                               [[0.46246, 0.16884], [0.16884, 0.09593]], atol=5e-6)
    np.testing.assert_allclose(ARM.hand(jnp.asarray(POSTURE)), [-0.0170, 0.4540], atol=5e-5)
    at_rest = _state(POSTURE, activation=0.2)
    np.testing.assert_allclose(ARM.acceleration(at_rest, jnp.zeros(2)), 0.0, atol=1e-15)


def test_forces_and_torques_at_a_given_posture():
    kinematics = _state(POSTURE)[:4]
    forces = ARM.muscle_forces(kinematics, jnp.full(6, 0.5))
    np.testing.assert_allclose(forces, FORCES_AT_HALF, atol=5e-3)
    np.testing.assert_allclose(ARM.torques(kinematics, forces), TORQUES_AT_HALF, atol=5e-4)


def test_the_hill_muscle_at_its_defining_points():
    """F_L(1) = 1; at v~ = 0 both branches give a F_L (the curve is continuous there); the
    shortening branch reaches zero force at v~ = -B F_L / A; no passive force below 1.4."""
    assert float(force_length(jnp.array(1.0))) == 1.0
    lengths = jnp.array([0.7, 0.95, 1.0, 1.2])
    for activation in (0.05, 0.3, 0.8):
        a = jnp.full(4, activation)
        expected = activation * force_length(lengths)
        np.testing.assert_allclose(active_force(lengths, jnp.zeros(4), a), expected,
                                   rtol=1e-12)
        for tiny in (-1e-9, 1e-9):
            np.testing.assert_allclose(active_force(lengths, jnp.full(4, tiny), a), expected,
                                       rtol=1e-6)
        b = 5.2 if activation >= 0.3 else 5.2 * (1 - 0.9 * (activation - 0.3) / -0.295) ** 2
        curve = force_length(lengths)
        a_coefficient = jnp.where(lengths > 1, 0.41 * curve, 0.41)
        np.testing.assert_allclose(active_force(lengths, -b * curve / a_coefficient, a), 0.0,
                                   atol=1e-12)
    np.testing.assert_array_equal(passive_force(jnp.array([0.5, 1.0, 1.4])), 0.0)
    assert float(passive_force(jnp.array(1.5))) == pytest.approx(14.793 * 0.01)


def test_moment_arms_are_derivatives_of_the_path_lengths():
    rng = np.random.default_rng(0)
    step = 1e-6
    for _ in range(5):
        angles = rng.uniform([0.1, 0.1], [2.2, 2.6])
        arms = np.asarray(ARM.moment_arms(jnp.asarray(angles)))
        for joint in range(2):
            shift = np.zeros(2)
            shift[joint] = step
            difference = (np.asarray(ARM.path_lengths(jnp.asarray(angles + shift)))
                          - np.asarray(ARM.path_lengths(jnp.asarray(angles - shift)))) / (
                2 * step)
            np.testing.assert_allclose(arms[joint], difference, atol=1e-9)


def test_the_skeleton_turns_torque_into_kinetic_energy():
    """In continuous time d(0.5 q'^T M q')/dt = q'^T tau (no gravity; a curl field does no
    work)."""
    rng = np.random.default_rng(1)
    for curl in (0.0, 7.0):
        arm = MuscleArm(curl=curl)
        for _ in range(4):
            state = _state(rng.uniform(0.2, 2.0, 2), rng.normal(size=2))
            torque = jnp.asarray(rng.normal(size=2))
            derivative = jnp.concatenate([state[2:4], arm.acceleration(state, torque),
                                          jnp.zeros(12)])
            _, power = jax.jvp(arm.energy, (state,), (derivative,))
            assert float(power) == pytest.approx(float(state[2:4] @ torque), rel=1e-10)


def test_one_step_in_motornets_order():
    """From rest at (45, 90) deg with a = 0.5, its forces, and excitations 0.5 (fed
    directly): the activations and forces stay, the torques are science 10's, q' becomes
    M^-1 tau dt, and q does not move yet (it moves by the old q')."""
    arm = MuscleArm(excitation="clip")
    state = _state(POSTURE, arm=arm)
    new = arm.step(state[None], jnp.full((1, 6), 0.5))[0]
    mass = np.asarray(arm.mass_matrix(jnp.asarray(POSTURE)))
    np.testing.assert_allclose(new[:2], POSTURE, atol=1e-15)
    np.testing.assert_allclose(new[2:4], np.linalg.solve(mass, TORQUES_AT_HALF) * arm.dt,
                               rtol=1e-3)
    np.testing.assert_allclose(new[4:10], 0.5, atol=1e-15)
    np.testing.assert_allclose(new[10:], FORCES_AT_HALF, atol=5e-3)
    again = arm.step(new[None], jnp.full((1, 6), 0.5))[0]
    np.testing.assert_allclose(again[:2], POSTURE + arm.dt * np.asarray(new[2:4]), atol=1e-15)


def test_activation_rises_and_falls_with_its_own_time_constants():
    arm = MuscleArm(dt=0.001, excitation="clip")
    low, high = jnp.full(6, 0.001), jnp.full(6, 0.8)
    rising = arm.activation_step(low, jnp.ones(6))
    np.testing.assert_allclose(rising, 0.001 + 0.001 * 0.999 / (0.015 * (0.5 + 1.5 * 0.001)),
                               rtol=1e-12)
    falling = arm.activation_step(high, jnp.zeros(6))
    np.testing.assert_allclose(falling, 0.8 - 0.001 * 0.8 / (0.05 / (0.5 + 1.5 * 0.8)),
                               rtol=1e-12)
    np.testing.assert_allclose(MuscleArm().activation_step(low, jnp.ones(6)), 1.0)   # clipped
    np.testing.assert_allclose(arm.excitations(jnp.array([-1.0, 0.5, 2.0])), [0.001, 0.5, 1.0])
    np.testing.assert_allclose(MuscleArm().excitations(jnp.zeros(1)), 0.5)


def test_a_reached_joint_limit_stops_the_joint():
    arm = MuscleArm(excitation="clip")
    state = _state([0.0, math.radians(155.0)], velocity=(-1.0, 2.0), activation=0.001, arm=arm)
    new = arm.step(state[None], jnp.zeros((1, 6)))[0]
    assert float(new[0]) == 0.0 and float(new[1]) == pytest.approx(math.radians(155.0))
    np.testing.assert_array_equal(new[2:4], 0.0)


def test_sensors_and_config():
    arm = plant_from_config(PlantConfig(kind="muscle_arm", params={"curl": 3.0}))
    assert isinstance(arm, MuscleArm) and arm.curl == 3.0
    assert (arm.n_states, arm.n_inputs, arm.n_outputs) == (16, 6, 14)
    start = jnp.asarray(arm.target_state)
    observed = np.asarray(arm.observe(start))
    lengths = (np.asarray(arm.path_lengths(start[:2])) - np.asarray(arm.slack_length)) / \
        np.asarray(arm.optimal_length)
    np.testing.assert_allclose(observed[:6], lengths, rtol=1e-12)
    np.testing.assert_allclose(observed[6:], 0.0, atol=1e-15)     # at rest, at the start
    np.testing.assert_allclose(start[10:], arm.muscle_forces(start[:4], start[4:10]))
    assert len(MUSCLES) == 6
    with pytest.raises(ConfigError, match="max_force needs one value per muscle"):
        plant_from_config(PlantConfig(kind="muscle_arm", params={"max_force": [1.0, 2.0]}))


def test_the_same_excitations_through_motornet_itself():
    """MotorNet's ``RigidTendonArm26`` with ``RigidTendonHillMuscle`` (PyTorch, float32) and
    this plant (float64) fed the same excitation sequences from the same postures: joint
    angles and velocities, hand positions and muscle forces agree over 100 steps (1 s)."""
    torch = pytest.importorskip("torch")
    motornet = pytest.importorskip("motornet")
    rng = np.random.default_rng(0)
    batch, steps = 8, 100
    angles = np.deg2rad(rng.uniform([30, 40], [100, 120], (batch, 2)))
    excitations = rng.uniform(0, 1, (steps, batch, 6)) ** 2
    theirs = motornet.effector.RigidTendonArm26(muscle=motornet.muscle.RigidTendonHillMuscle(),
                                                 timestep=0.01)
    theirs.reset(options={"joint_state": torch.tensor(
        np.concatenate([angles, np.zeros((batch, 2))], 1), dtype=torch.float32)})
    arm = MuscleArm(excitation="clip")
    activation = theirs.states["muscle"][:, 0, :].numpy()
    state = jnp.asarray(np.stack([arm.resting_state(q, a) for q, a in zip(angles, activation,
                                                                           strict=True)]))
    step = jax.jit(arm.step)
    hand = jax.jit(jax.vmap(arm.hand))
    for t in range(steps):
        theirs.step(torch.tensor(excitations[t], dtype=torch.float32))
        state = step(state, jnp.asarray(excitations[t]))
        joint = theirs.states["joint"].numpy()
        np.testing.assert_allclose(state[:, :2], joint[:, :2], atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(state[:, 2:4], joint[:, 2:], atol=1e-3, err_msg=f"step {t}")
        np.testing.assert_allclose(hand(state[:, :2]), theirs.states["fingertip"].numpy(),
                                   atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(state[:, 10:], theirs.states["muscle"][:, 6, :].numpy(),
                                   rtol=1e-4, atol=1e-3, err_msg=f"step {t}")


def test_at_the_operating_point_the_muscles_are_stationary():
    """The coupled spectrum is read where the agent's command holds the muscles: one step on
    that command leaves the activations and forces where they are, and the Jacobian has no
    explicit-Euler activation mode outside the unit circle (it would at the activation floor
    under a stronger command: 1 - dt (1.5 (u - a) + 0.5 + 1.5 a) / (0.015 (0.5 + 1.5 a)^2)
    = -2.3 for a = 0.001, u = 0.5)."""
    from closedloop.analysis.coupling import coupled_jacobian, operating_point
    from closedloop.config import load_preset
    from closedloop.core.rollout import build_loop
    from closedloop.training import Trainer

    # without the readout bias the untrained network's command holds every muscle above its
    # activation floor, where the step is smooth (at the floor it has a kink)
    config = load_preset("reach-muscle-arm", ["agent.size=8", "agent.output_bias=false"])
    plant, agent = build_loop(config)
    params = {k: jnp.asarray(v, jnp.float64)
              for k, v in Trainer(config).parameters_numpy(0).items()}
    x, hidden, reference = operating_point(plant, agent, params)
    observation = jnp.concatenate([plant.observe(x), reference])
    _, command = agent.step(agent.prepare(params), hidden[None], observation[None])
    after = plant.step(x[None], command)[0]
    np.testing.assert_allclose(after[4:], x[4:], rtol=1e-12, atol=1e-12)
    assert not np.allclose(x[4:10], 0.001)                   # settled above the floor
    np.testing.assert_allclose(x[:4], plant.target_state[:4])
    activation_block = np.asarray(coupled_jacobian(plant, agent, params, x, hidden,
                                                   reference))[4:10, 4:10]
    np.testing.assert_allclose(np.diag(activation_block),
                               1 - 0.01 * (0.5 + 1.5 * np.asarray(x[4:10])) / 0.05, rtol=1e-9)


def test_fixed_points_of_a_muscle_arm_loop_print_its_wide_state_in_brief(tmp_path, capsys):
    """``closedloop fixed-points`` on a (tiny, untrained: only slow points) muscle-arm run: the
    table shows the first four of the 16 plant states and says where the rest are; --json
    has every entry."""
    from tests.test_cli import run_cli

    out = tmp_path / "arm.h5"
    code, _, _ = run_cli(capsys, "train", "reach-muscle-arm", "--epochs", "2", "--quiet",
                         "--out", out, "--set", "agent.size=8", "--set", "task.steps=10",
                         "--set", "task.batch_size=4")
    assert code == 0
    code, text, _ = run_cli(capsys, "fixed-points", out, "--starts", "8", "--slow")
    assert code == 0
    assert "... (+12)" in text and "(all 16 with --json)" in text
    code, text, _ = run_cli(capsys, "fixed-points", out, "--starts", "8", "--slow", "--json")
    assert code == 0
    points = json.loads(text)["points"]
    assert points and all(len(p["state"]) == 16 + 8 for p in points)
