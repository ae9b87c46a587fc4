"""Sensor and motor options on any plant: which outputs are observed, observation and motor
noise, and a feedback delay of k steps (docs/science.md, section 9).

:class:`SensedPlant` wraps a plant and is itself a plant. With a delay k >= 1 the agent at
time t reads y_{t-k} = g(x_{t-k}) (+ noise): the wrapped state is

    s_t = (x_t, y_{t-1}, y_{t-2}, ..., y_{t-k})

(newest first), each step shifts the buffer and writes y_t, and the observation is the last
entry. The delayed observations are thus part of the loop's state, and the coupled Jacobian
(and P) of a delayed loop is built on the augmented state. At the start the buffer holds
g(x_0) k times, as if the plant had rested there.

Noise is one vector per step, read in parts: the wrapped plant's own (process) noise, then
the motor noise added to the command, then the observation noise added to the observation
(written into the buffer with a delay, added when observed without one).

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.plants import double_integrator
>>> delayed = SensedPlant(double_integrator(), delay=2)
>>> s0 = delayed.initial_states(jnp.array([[1.0, 0.5]]))
>>> s0.tolist(), delayed.observe(s0).tolist()
([[1.0, 0.5, 1.0, 1.0]], [[1.0]])
>>> delayed.step(s0, jnp.zeros((1, 1))).tolist()      # x moves, y_0 enters the buffer
[[1.5, 0.5, 1.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.errors import ConfigError


@dataclass(frozen=True)
class SensedPlant:
    """A plant seen through sensors: observed outputs, noise and a feedback delay.

    Parameters
    ----------
    base
        The plant (linear or nonlinear).
    observed
        Indices of the base plant's outputs the agent reads (None: all).
    delay
        Feedback delay k in steps.
    observation_noise_std, motor_noise_std
        Standard deviations of the additive Gaussian noise on the observation and on the
        command.
    """

    base: Any
    observed: tuple[int, ...] | None = None
    delay: int = 0
    observation_noise_std: float = 0.0
    motor_noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ConfigError("plant.delay must be >= 0")
        if self.observed is not None:
            bad = [i for i in self.observed if not 0 <= i < self.base.n_outputs]
            if bad or not self.observed:
                raise ConfigError(f"plant.observed: indices must be in 0.."
                                  f"{self.base.n_outputs - 1} (the plant has "
                                  f"{self.base.n_outputs} outputs)")

    # -- dimensions ------------------------------------------------------------------------

    @property
    def dt(self) -> float:
        """The base plant's step."""
        return self.base.dt

    @property
    def n_core_states(self) -> int:
        """Dimension of the physical state."""
        return self.base.n_core_states

    @property
    def n_outputs(self) -> int:
        """Dimension of the observation."""
        return self.base.n_outputs if self.observed is None else len(self.observed)

    @property
    def n_states(self) -> int:
        """Physical state plus the delay buffer."""
        return self.base.n_states + self.delay * self.n_outputs

    @property
    def n_inputs(self) -> int:
        """Dimension of u."""
        return self.base.n_inputs

    @property
    def n_effector(self) -> int:
        """Dimension of the effector position."""
        return self.base.n_effector

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the wrapped state: the plant's, then ``y[i]@t-j`` for the buffer."""
        base = tuple(getattr(self.base, "state_names", ())) or tuple(
            f"x{i}" for i in range(self.base.n_states))
        return base + tuple(f"y{i}@t-{j}" for j in range(1, self.delay + 1)
                            for i in range(self.n_outputs))

    @property
    def _sizes(self) -> tuple[int, int, int]:
        motor = self.n_inputs if self.motor_noise_std > 0 else 0
        sensor = self.n_outputs if self.observation_noise_std > 0 else 0
        return self.base.noise_size, motor, sensor

    @property
    def noise_size(self) -> int:
        """Width of the per-step noise vector: base, motor, observation parts."""
        return sum(self._sizes)

    @property
    def target_state(self) -> np.ndarray:
        """The operating point: the base plant's, with its observation in the buffer."""
        core = np.asarray(self.base.target_state, dtype=np.float64)
        with jax.ensure_compile_time_eval():          # a constant, also inside a trace
            seen = np.asarray(self._sense(jnp.asarray(core), None))
        return np.concatenate([core, np.tile(seen, self.delay)])

    # -- the parts of the state and of the noise ------------------------------------------------

    def _split_noise(self, noise: jax.Array | None) -> tuple[Any, Any, Any]:
        if noise is None:
            return None, None, None
        base, motor, sensor = self._sizes
        parts = (noise[..., :base], noise[..., base:base + motor],
                 noise[..., base + motor:base + motor + sensor])
        return tuple(p if p.shape[-1] else None for p in parts)

    def _sense(self, core: jax.Array, sensor_noise: jax.Array | None) -> jax.Array:
        y = self.base.observe(core)
        if self.observed is not None:
            y = y[..., jnp.asarray(self.observed)]
        if sensor_noise is not None:
            y = y + self.observation_noise_std * sensor_noise
        return y

    # -- the plant protocol ----------------------------------------------------------------------

    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """The base plant's settled state under the command ``u``; the delay buffer as it
        was."""
        core = self.base.settle(x[: self.base.n_states], u)
        return jnp.concatenate([core, x[self.base.n_states:]])

    def step(self, x: jax.Array, u: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """Step the plant on the (noisy) command and shift the delay buffer."""
        base_noise, motor_noise, sensor_noise = self._split_noise(noise)
        core = x[..., : self.base.n_states]
        if motor_noise is not None:
            u = u + self.motor_noise_std * motor_noise
        core_next = self.base.step(core, u, base_noise)
        if not self.delay:
            return core_next
        newest = self._sense(core, sensor_noise)
        buffer = x[..., self.base.n_states:]
        kept = buffer[..., : (self.delay - 1) * self.n_outputs]
        return jnp.concatenate([core_next, newest.astype(x.dtype), kept], axis=-1)

    def observe(self, x: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """The delayed observation (the buffer's oldest entry), or the current one."""
        if self.delay:
            return x[..., self.n_states - self.n_outputs:]
        return self._sense(x[..., : self.base.n_states], self._split_noise(noise)[2])

    def effector(self, x: jax.Array) -> jax.Array:
        """The base plant's effector position."""
        return self.base.effector(x[..., : self.base.n_states])

    def state_error(self, x: jax.Array) -> jax.Array:
        """The base plant's state error (the buffer is not charged)."""
        return self.base.state_error(x[..., : self.base.n_states])

    def initial_states(self, offsets: jax.Array) -> jax.Array:
        """The base plant's starts, with their observation filling the buffer."""
        core = self.base.initial_states(offsets)
        if not self.delay:
            return core
        seen = self._sense(core, None).astype(core.dtype)
        return jnp.concatenate([core, *([seen] * self.delay)], axis=-1)

    def draw_noise(self, key: jax.Array, batch: int, steps: int, dtype: Any = jnp.float32
                   ) -> jax.Array | None:
        """The per-step noise (batch, steps, noise_size), or None: the base plant's (from the
        same key as without sensors), then standard normal motor and observation parts."""
        base_key, own_key = jax.random.split(key)
        base = self.base.draw_noise(base_key, batch, steps, dtype)
        own = sum(self._sizes[1:])
        if base is None and not own:
            return None
        parts = [] if base is None else [base]
        if own:
            parts.append(jax.random.normal(own_key, (batch, steps, own),
                                           dtype=jnp.float64).astype(dtype))
        return jnp.concatenate(parts, axis=-1)
