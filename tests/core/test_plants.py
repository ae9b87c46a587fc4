import control
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.config import PlantConfig, build_config
from closedloop.core import plants
from closedloop.errors import ConfigError


def test_double_integrator_matrices():
    plant = plants.integrator(order=2, n_inputs=1, n_observed=1, dt=1.0)
    np.testing.assert_array_equal(plant.A, [[1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(plant.B, [[0.0], [1.0]])
    np.testing.assert_array_equal(plant.C, [[1.0, 0.0]])
    assert (plant.n_states, plant.n_inputs, plant.n_outputs) == (2, 1, 1)


def test_triple_integrator_two_inputs_half_step():
    plant = plants.integrator(order=3, n_inputs=2, n_observed=1, dt=0.5)
    np.testing.assert_array_equal(plant.A, [[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(plant.B, [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]])
    np.testing.assert_array_equal(plant.C, [[1.0, 0.0, 0.0]])
    assert plant.dt == 0.5


def test_point_mass_2d_matrices():
    plant = plants.point_mass_2d(dt=0.1)
    np.testing.assert_array_equal(plant.A, [[1.0, 0.1, 0.0, 0.0],
                                            [0.0, 1.0, 0.0, 0.0],
                                            [0.0, 0.0, 1.0, 0.1],
                                            [0.0, 0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(plant.B, [[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.0, 0.1]])
    np.testing.assert_array_equal(plant.C, [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_step_and_observe_by_hand():
    plant = plants.integrator(order=3, n_inputs=2, n_observed=2, dt=0.5)
    x = jnp.array([[1.0, 2.0, -4.0], [0.0, -1.0, 3.0]], dtype=jnp.float64)
    u = jnp.array([[2.0, -2.0], [1.0, 0.5]], dtype=jnp.float64)
    # x1 + 0.5 x2, x2 + 0.5 x3 + 0.5 u1, x3 + 0.5 u2
    expected = [[1.0 + 1.0, 2.0 - 2.0 + 1.0, -4.0 - 1.0],
                [0.0 - 0.5, -1.0 + 1.5 + 0.5, 3.0 + 0.25]]
    np.testing.assert_allclose(plant.step(x, u), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(plant.observe(x), [[1.0, 2.0], [0.0, -1.0]])


def test_point_mass_step_by_hand():
    plant = plants.point_mass_2d(dt=0.1)
    x = jnp.array([[1.0, 2.0, 3.0, -4.0]], dtype=jnp.float64)
    u = jnp.array([[5.0, 10.0]], dtype=jnp.float64)
    np.testing.assert_allclose(plant.step(x, u), [[1.2, 2.5, 2.6, -3.0]], atol=1e-14)


def test_clamp_after_step():
    plant = plants.point_mass_2d(dt=0.1, clamp=10.0)
    x = jnp.array([[9.9, 5.0, -9.95, -2.0]], dtype=jnp.float64)
    u = jnp.array([[60.0, -100.0]], dtype=jnp.float64)
    # unclamped: (10.4, 11.0, -10.15, -12.0)
    np.testing.assert_allclose(plant.step(x, u), [[10.0, 10.0, -10.0, -10.0]], atol=0)
    inside = jnp.array([[1.0, 1.0, 1.0, 1.0]], dtype=jnp.float64)
    np.testing.assert_allclose(plant.step(inside, jnp.zeros((1, 2), dtype=jnp.float64)),
                               [[1.1, 1.0, 1.1, 1.0]], atol=1e-15)


def test_clamp_applies_after_noise():
    plant = plants.double_integrator(clamp=1.0)
    x = jnp.array([[0.5, 0.25]], dtype=jnp.float64)
    u = jnp.zeros((1, 1), dtype=jnp.float64)
    noise = jnp.array([[0.5, -2.0]], dtype=jnp.float64)
    # A x = (0.75, 0.25); + noise = (1.25, -1.75); clamped to (1, -1)
    np.testing.assert_array_equal(plant.step(x, u, noise), [[1.0, -1.0]])


def test_noise_added_to_step():
    plant = plants.double_integrator(process_noise_std=0.1)
    x = jnp.array([[1.0, -1.0]], dtype=jnp.float64)
    u = jnp.array([[0.5]], dtype=jnp.float64)
    noise = jnp.array([[0.01, -0.02]], dtype=jnp.float64)
    np.testing.assert_allclose(plant.step(x, u, noise), [[0.01, -0.52]], atol=1e-15)


@pytest.mark.parametrize(("sigma", "dt"), [(0.3, 0.25), (2.0, 1.0), (0.5, 0.1)])
def test_process_noise_variance_is_sigma2_dt(sigma, dt):
    plant = plants.integrator(order=3, n_inputs=1, n_observed=1, dt=dt, process_noise_std=sigma)
    noise = plant.draw_noise(jax.random.key(1), 400, 50, jnp.float64)
    assert noise.shape == (400, 50, 3)
    assert noise.dtype == jnp.float64
    samples = np.asarray(noise).reshape(-1, 3)
    expected = sigma * np.sqrt(dt)
    # 20000 samples per coordinate: std error of the std ~0.5%, of the mean ~0.7% of sigma
    np.testing.assert_allclose(samples.std(axis=0), expected, rtol=0.03)
    np.testing.assert_allclose(samples.mean(axis=0), 0.0, atol=0.03 * expected)
    cross = np.corrcoef(samples.T)[np.triu_indices(3, 1)]
    assert np.all(np.abs(cross) < 0.05)


def test_no_noise_without_sigma():
    plant = plants.double_integrator()
    assert plant.draw_noise(jax.random.key(0), 4, 5, jnp.float64) is None


def test_from_control_discrete_statespace():
    A = np.array([[0.9, 0.2, 0.0], [0.0, 0.8, 0.1], [0.3, 0.0, 0.5]])
    B = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    C = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    system = control.ss(A, B, C, np.zeros((2, 2)), 0.05)
    plant = plants.from_control(system, clamp=3.0)
    np.testing.assert_array_equal(plant.A, A)
    np.testing.assert_array_equal(plant.B, B)
    np.testing.assert_array_equal(plant.C, C)
    assert plant.dt == 0.05
    assert plant.clamp == 3.0


def test_from_control_discretised_double_integrator():
    continuous = control.ss([[0.0, 1.0], [0.0, 0.0]], [[0.0], [1.0]], [[1.0, 0.0]], [[0.0]])
    plant = plants.from_control(control.c2d(continuous, 0.5, method="zoh"))
    np.testing.assert_allclose(plant.A, [[1.0, 0.5], [0.0, 1.0]], atol=1e-14)
    np.testing.assert_allclose(plant.B, [[0.125], [0.5]], atol=1e-14)
    np.testing.assert_allclose(plant.C, [[1.0, 0.0]], atol=0)
    assert plant.dt == 0.5


def test_from_control_rejects_continuous_time():
    continuous = control.ss([[0.0, 1.0], [0.0, 0.0]], [[0.0], [1.0]], [[1.0, 0.0]], [[0.0]])
    with pytest.raises(ConfigError):
        plants.from_control(continuous)


def test_from_control_rejects_unspecified_timebase():
    system = control.ss([[1.0]], [[1.0]], [[1.0]], [[0.0]], True)
    with pytest.raises(ConfigError):
        plants.from_control(system)


def test_from_control_rejects_feedthrough():
    system = control.ss([[1.0, 1.0], [0.0, 1.0]], [[0.0], [1.0]], [[1.0, 0.0]], [[0.1]], 1.0)
    with pytest.raises(ConfigError):
        plants.from_control(system)


def test_plant_from_config_linear():
    config = PlantConfig(kind="linear", A=[[1.0, 0.5], [0.0, 0.9]], B=[[0.0], [2.0]],
                         C=[[0.0, 1.0]], dt=0.5, clamp=4.0)
    plant = plants.plant_from_config(config)
    np.testing.assert_array_equal(plant.A, [[1.0, 0.5], [0.0, 0.9]])
    np.testing.assert_array_equal(plant.B, [[0.0], [2.0]])
    np.testing.assert_array_equal(plant.C, [[0.0, 1.0]])
    assert plant.dt == 0.5 and plant.clamp == 4.0


@pytest.mark.parametrize(("A", "B", "C"), [
    ([[1.0, 0.0], [0.0, 1.0]], [[1.0]], [[1.0, 0.0]]),
    ([[1.0, 0.0], [0.0, 1.0]], [[0.0], [1.0]], [[1.0, 0.0, 0.0]]),
    ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[0.0], [1.0]], [[1.0, 0.0]]),
    ([[1.0, 0.0], [0.0]], [[0.0], [1.0]], [[1.0, 0.0]]),
])
def test_plant_from_config_rejects_bad_shapes(A, B, C):
    with pytest.raises(ConfigError):      # the config is refused (before any plant is built)
        build_config({"plant": {"kind": "linear", "A": A, "B": B, "C": C}})
    with pytest.raises(ConfigError):      # and so is a config that skipped validation
        plants.plant_from_config(PlantConfig.model_construct(kind="linear", A=A, B=B, C=C,
                                                             dt=1.0, clamp=None,
                                                             process_noise_std=0.0))
