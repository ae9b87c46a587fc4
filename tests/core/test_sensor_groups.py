"""Feedback delays and observation noise per observed output, and per sensor group of a plant
(the muscle arm's proprioception and vision), against independent truths: the base plant's own
past outputs, stepped directly; the scalar delay's trajectories, bit for bit; where each
output's noise goes; a hand-built coupled Jacobian of a mixed-delay loop; and config errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.analysis.coupling import operating_point_matrices, operating_point_spectra
from closedloop.config import PlantConfig, build_config
from closedloop.core.agents import RNNAgent
from closedloop.core.muscle_arm import MuscleArm
from closedloop.core.plants import plant_from_config, point_mass_2d
from closedloop.core.rollout import rollout
from closedloop.core.sensors import SensedPlant
from closedloop.errors import ConfigError

COMMANDS = np.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.0], [0.5, 0.5], [0.0, -1.0],
                     [2.0, 1.0], [-0.25, 0.75], [1.0, 1.0]])
"""A known command sequence for the 2-D point mass (8 steps)."""


def base_outputs(plant, x0, commands):
    """y_t = C x_t of the plant stepped directly on the commands, t = 0..T."""
    xs = [np.asarray(x0, dtype=np.float64)]
    for u in commands:
        xs.append(plant.A @ xs[-1] + plant.B @ u)
    return np.array([plant.C @ x for x in xs])


@pytest.mark.parametrize("delays", [(0, 2), (2, 0), (1, 3), (3, 3)])
def test_each_output_reads_the_plant_at_its_own_delay(delays):
    plant = point_mass_2d(dt=0.5)
    sensed = SensedPlant(plant, delay=delays)
    assert sensed.n_states == 4 + sum(delays)
    x0 = np.array([0.3, -0.2, 1.0, 0.4])
    ys = base_outputs(plant, x0, COMMANDS)
    s = sensed.initial_states(jnp.asarray(x0[None]))
    for t in range(len(COMMANDS) + 1):
        seen = np.asarray(sensed.observe(s))[0]
        # output i at t - d_i (before the start: the start itself, as if resting there)
        expected = [ys[max(t - d, 0), i] for i, d in enumerate(delays)]
        np.testing.assert_allclose(seen, expected, rtol=1e-14, atol=1e-14)
        if t < len(COMMANDS):
            s = sensed.step(s, jnp.asarray(COMMANDS[t][None]))


def test_the_buffer_holds_only_what_is_read_later():
    sensed = SensedPlant(point_mass_2d(), delay=(1, 3))
    assert sensed.state_names[4:] == ("y0@t-1", "y1@t-1", "y1@t-2", "y1@t-3")
    assert sensed.delays == (1, 3)
    assert SensedPlant(point_mass_2d(), delay=(0, 2)).state_names[4:] == ("y1@t-1", "y1@t-2")
    with pytest.raises(ConfigError, match="one value per observed output"):
        SensedPlant(point_mass_2d(), delay=(1, 2, 3))
    with pytest.raises(ConfigError, match=re.escape("plant.delay must be >= 0")):
        SensedPlant(point_mass_2d(), delay=(1, -1))


def linear_rnn(n_in, size=3, n_out=1, seed=0):
    agent = RNNAgent(n_inputs=n_in, n_outputs=n_out, size=size, activation="linear", dt=0.5)
    params = agent.init_params(jax.random.key(seed), jnp.float64)
    return agent, params, {k: np.asarray(v).T for k, v in params.items()}   # maths layout


def test_a_mixed_delay_rollout_is_the_hand_loop():
    """A linear RNN on the point mass, reading x now and y two steps late."""
    plant = point_mass_2d(dt=0.5)
    agent, params, m = linear_rnn(n_in=2, n_out=2)
    sensed = SensedPlant(plant, delay=(0, 2))
    x0 = np.array([[0.7, -0.2, -0.4, 0.1]])
    steps = 10
    traj = rollout(sensed, agent, params, steps=steps,
                   x0=sensed.initial_states(jnp.asarray(x0)), zero_first_control=False)
    xs, h = [x0[0]], np.zeros(3)
    for t in range(steps):
        y = np.array([plant.C[0] @ xs[t], plant.C[1] @ xs[max(t - 2, 0)]])
        h = 0.5 * h + 0.5 * (m["W"] @ h + m["W_in"] @ y)
        xs.append(plant.A @ xs[-1] + plant.B @ (m["W_out"] @ h))
    np.testing.assert_allclose(np.asarray(traj.states)[0, :, :4], np.array(xs), rtol=1e-12)


def test_uniform_per_output_values_are_the_scalar_bit_for_bit():
    plant = point_mass_2d(dt=0.5)
    agent, params, _ = linear_rnn(n_in=2, n_out=2)
    scalar = SensedPlant(plant, delay=2, observation_noise_std=0.3, motor_noise_std=0.1)
    per_output = SensedPlant(plant, delay=(2, 2), observation_noise_std=(0.3, 0.3),
                             motor_noise_std=0.1)
    for name in ("n_states", "state_names", "noise_size"):
        assert getattr(per_output, name) == getattr(scalar, name)
    assert np.array_equal(per_output.target_state, scalar.target_state)
    x0 = jnp.asarray([[0.7, -0.2, -0.4, 0.1], [0.1, 0.2, 0.3, -0.4]])
    noise = scalar.draw_noise(jax.random.key(3), 2, 12, jnp.float64)
    assert np.array_equal(per_output.draw_noise(jax.random.key(3), 2, 12, jnp.float64), noise)
    runs = [rollout(p, agent, params, steps=12, x0=p.initial_states(x0), noise=noise,
                    zero_first_control=False) for p in (scalar, per_output)]
    assert np.array_equal(np.asarray(runs[0].states), np.asarray(runs[1].states))
    assert np.array_equal(np.asarray(runs[0].controls), np.asarray(runs[1].controls))
    # through the config: groups with one delay are the plain delay (the same plant)
    grouped = plant_from_config(PlantConfig(kind="muscle_arm", sensors={
        "proprioception": {"delay": 3}, "vision": {"delay": 3}}))
    assert grouped == plant_from_config(PlantConfig(kind="muscle_arm", delay=3))


def test_each_output_gets_its_own_noise():
    plant = point_mass_2d(dt=0.5)
    x = jnp.asarray([[1.0, 2.0, -3.0, 0.5]])
    y = np.asarray(plant.observe(x))[0]
    drawn = np.array([[0.8, -1.3]])
    now = SensedPlant(plant, observation_noise_std=(0.0, 0.25))
    assert now.noise_size == 2
    np.testing.assert_array_equal(now.observe(x, jnp.asarray(drawn))[0],
                                  [y[0], y[1] + 0.25 * -1.3])
    np.testing.assert_array_equal(now.observe(x)[0], y)
    # with delays: noise added when sensed, before the delay (written into the buffer)
    late = SensedPlant(plant, delay=(1, 0), observation_noise_std=(0.5, 0.0))
    s = late.initial_states(x)
    s_next = late.step(s, jnp.zeros((1, 2)), jnp.asarray(drawn))
    assert float(s_next[0, 4]) == y[0] + 0.5 * 0.8                  # y0@t-1, noisy
    seen = np.asarray(late.observe(s_next, jnp.asarray(drawn)))[0]
    assert seen[0] == y[0] + 0.5 * 0.8
    assert seen[1] == float(plant.observe(s_next[:, :4])[0, 1])     # now, noise-free
    noise = late.draw_noise(jax.random.key(0), 5, 4, jnp.float64)
    assert noise.shape == (5, 4, 2)


def test_the_muscle_arm_senses_proprioception_and_vision_with_their_own_delays():
    arm = plant_from_config(PlantConfig(kind="muscle_arm", sensors={
        "proprioception": {"delay": 2}, "vision": {"delay": 5}}))
    base = MuscleArm()
    assert MuscleArm.sensor_groups == {"proprioception": tuple(range(12)), "vision": (12, 13)}
    assert arm.n_states - base.n_states == 12 * 2 + 2 * 5
    assert arm.delays == (2,) * 12 + (5, 5)
    assert "y13@t-5" in arm.state_names and "y0@t-3" not in arm.state_names
    commands = jax.random.normal(jax.random.key(1), (9, 1, 6), dtype=jnp.float64)
    x = jnp.asarray(base.target_state)[None]
    s = arm.initial_states(jnp.zeros((1, base.n_states)))
    xs = [x]
    for t in range(len(commands) + 1):
        seen = np.asarray(arm.observe(s))[0]
        np.testing.assert_allclose(seen[:12], base.observe(xs[max(t - 2, 0)])[0, :12],
                                   rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(seen[12:], base.effector(xs[max(t - 5, 0)])[0],
                                   rtol=1e-13, atol=1e-15)
        if t < len(commands):
            s = arm.step(s, commands[t])
            xs.append(base.step(xs[-1], commands[t]))
            np.testing.assert_array_equal(s[:, :base.n_states], xs[-1])


def test_sensor_config_errors_name_what_is_allowed():
    with pytest.raises(ConfigError, match=r"plant\.sensors\.visoin.*proprioception, vision"):
        plant_from_config(PlantConfig(kind="muscle_arm", sensors={"visoin": {"delay": 1}}))
    with pytest.raises(ConfigError, match=r"plant\.sensors\.vision\.delay"):
        build_config({"plant": {"kind": "muscle_arm", "sensors": {"vision": {"delay": -1}}}})
    with pytest.raises(ConfigError, match=r"plant\.sensors\.hand_x.*not in plant\.observed"):
        plant_from_config(PlantConfig(kind="muscle_arm", observed=[0, 1],
                                      sensors={"hand_x": {"delay": 1}}))
    # an output's own entry overrides its group's; unset values are the plant-wide ones
    arm = plant_from_config(PlantConfig(kind="muscle_arm", delay=1, observation_noise_std=0.1,
                                        sensors={"hand_y": {"noise_std": 0.0},
                                                 "vision": {"delay": 4, "noise_std": 0.2}}))
    assert arm.delays == (1,) * 12 + (4, 4)
    assert arm.noise_stds == (0.1,) * 12 + (0.2, 0.0)
    # a linear plant names its outputs y0, y1, ...
    plant = plant_from_config(PlantConfig(kind="point_mass_2d", sensors={"y1": {"delay": 2}}))
    assert plant.delays == (0, 2)


def test_a_mixed_delay_coupled_jacobian_is_the_hand_built_one():
    """Point mass, x read now and y one step late: s = (x, b, h) with b = C_1 x_{t-1};
    x' = A x + B W_out h, b' = C_1 x, h' = (1-a) h + a (W h + W_in y') with
    y' = (C_0 x', b')."""
    plant = point_mass_2d(dt=0.5)
    agent, params, m = linear_rnn(n_in=2, n_out=2)
    sensed = SensedPlant(plant, delay=(0, 1))
    A, B, C0, C1 = plant.A, plant.B, plant.C[:1], plant.C[1:]
    a, win0, win1 = 0.5, m["W_in"][:, :1], m["W_in"][:, 1:]
    P = np.block([[A, np.zeros((4, 1)), B @ m["W_out"]],
                  [C1, np.zeros((1, 1)), np.zeros((1, 3))],
                  [a * (win0 @ C0 @ A + win1 @ C1), np.zeros((3, 1)),
                   (1 - a) * np.eye(3) + a * m["W"] + a * win0 @ C0 @ B @ m["W_out"]]])
    recorded = operating_point_matrices(sensed, agent,
                                        {k: np.asarray(v)[None] for k, v in params.items()})
    np.testing.assert_allclose(recorded[0], P, atol=1e-14)


def test_an_unread_delayed_output_leaves_the_spectral_radius_alone():
    """When the agent ignores the delayed output (its W_in column is 0), the buffer only
    adds eigenvalues 0: the spectral radius is the loop's without that output's delay."""
    plant = point_mass_2d(dt=0.5)
    agent, params, _ = linear_rnn(n_in=2, n_out=2, size=4, seed=2)
    params = {**params, "W_in": params["W_in"].at[1].set(0.0)}      # (inputs, units) layout
    stacked = {k: np.asarray(v)[None] for k, v in params.items()}
    mixed = operating_point_spectra(SensedPlant(plant, delay=(0, 3)), agent, stacked)
    plain = operating_point_spectra(plant, agent, stacked)
    assert mixed["coupled_eigenvalues"].shape == (1, 4 + 3 + 4)
    assert np.isfinite(mixed["spectral_radius"]).all()
    np.testing.assert_allclose(mixed["spectral_radius"], plain["spectral_radius"], rtol=1e-10)
    eigenvalues = mixed["coupled_eigenvalues"][0]
    nonzero = np.sort_complex(eigenvalues[np.argsort(-np.abs(eigenvalues))[:8]])
    np.testing.assert_allclose(nonzero, np.sort_complex(plain["coupled_eigenvalues"][0]),
                               atol=1e-10)
    # reading it, the delay changes the spectrum (the check above is not vacuous)
    read = operating_point_spectra(SensedPlant(plant, delay=(0, 3)), agent,
                                   {k: np.asarray(v)[None] for k, v in
                                    linear_rnn(n_in=2, n_out=2, size=4, seed=2)[1].items()})
    assert not np.allclose(read["spectral_radius"], plain["spectral_radius"])
