"""Sensor and motor options on any plant: which outputs are observed, observation and motor
noise, and feedback delays of their own per observed output (docs/science.md, section 9).

:class:`SensedPlant` wraps a plant and is itself a plant. With a delay k >= 1 the agent at
time t reads y_{t-k} = g(x_{t-k}) (+ noise): the wrapped state is

    s_t = (x_t, y_{t-1}, y_{t-2}, ..., y_{t-k})

(newest first), each step shifts the buffer and writes y_t, and the observation is the last
entry. The delayed observations are thus part of the loop's state, and the coupled Jacobian
(and P) of a delayed loop is built on the augmented state. At the start the buffer holds
g(x_0) k times, as if the plant had rested there.

Each observed output i may have a delay d_i of its own (proprioception faster than vision,
as in MotorNet): the buffer then keeps, at lag j = 1..K (K the largest delay), only the
outputs with d_i >= j, so it holds sum_i d_i values, and the agent reads output i at
y_{t-d_i} (now, for d_i = 0). The sets shrink with j, so a shift is one index selection.
With one delay for all outputs this is the layout above.

Noise is one vector per step, read in parts: the wrapped plant's own (process) noise, then
the motor noise added to the command, then the observation noise added to the observation
when it is sensed (one standard deviation per output, or one for all), before the delay:
written into the buffer with it, added when observed without one.

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

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.errors import ConfigError


class _Layout(NamedTuple):
    """Where the delay buffer keeps what (all positions relative to the buffer's start)."""

    lags: tuple[tuple[int, ...], ...]      # lag j = 1..K: the outputs with delay >= j
    keep: tuple[int, ...]                  # the entries a shift keeps, in their new order
    read: tuple[int, ...]                  # per output: its entry at lag d_i, or -1 (now)


@dataclass(frozen=True)
class SensedPlant:
    """A plant seen through sensors: observed outputs, noise and feedback delays.

    Parameters
    ----------
    base
        The plant (linear or nonlinear).
    observed
        Indices of the base plant's outputs the agent reads (None: all).
    delay
        Feedback delay in steps: one for all observed outputs, or one per observed output
        (a sequence as long as the observation; 0 reads that output now).
    observation_noise_std
        Standard deviation of the additive Gaussian noise on the observation: one for all
        observed outputs, or one per observed output (added when sensed, before the delay).
    motor_noise_std
        Standard deviation of the additive Gaussian noise on the command.

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.plants import point_mass_2d
    >>> sensed = SensedPlant(point_mass_2d(dt=1.0), delay=(0, 2))   # x now, y 2 steps late
    >>> sensed.n_states, sensed.state_names[4:]
    (6, ('y1@t-1', 'y1@t-2'))
    >>> s = sensed.initial_states(jnp.array([[1.0, 1.0, 2.0, 1.0]]))   # both move at 1/step
    >>> for _ in range(2):
    ...     s = sensed.step(s, jnp.zeros((1, 2)))
    >>> sensed.observe(s).tolist()          # x as it is now, y as it was two steps ago
    [[3.0, 2.0]]
    """

    base: Any
    observed: tuple[int, ...] | None = None
    delay: int | tuple[int, ...] = 0
    observation_noise_std: float | tuple[float, ...] = 0.0
    motor_noise_std: float = 0.0

    def __post_init__(self) -> None:
        if self.observed is not None:
            bad = [i for i in self.observed if not 0 <= i < self.base.n_outputs]
            if bad or not self.observed:
                raise ConfigError(f"plant.observed: indices must be in 0.."
                                  f"{self.base.n_outputs - 1} (the plant has "
                                  f"{self.base.n_outputs} outputs)")
        for name in ("delay", "observation_noise_std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple, np.ndarray)):
                if len(value) != self.n_outputs:
                    raise ConfigError(f"plant.{name}: one value per observed output "
                                      f"({self.n_outputs}), got {len(value)}")
                object.__setattr__(self, name, tuple(value))
        if any(not isinstance(d, numbers.Integral) or isinstance(d, bool) for d in self.delays):
            raise ConfigError("plant.delay must be an integer number of steps")
        if any(d < 0 for d in self.delays):
            raise ConfigError("plant.delay must be >= 0")
        if any(not math.isfinite(s) or s < 0 for s in self.noise_stds):
            raise ConfigError("plant.observation_noise_std must be finite and >= 0")

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
    def delays(self) -> tuple[int, ...]:
        """The feedback delay of each observed output, in steps."""
        if isinstance(self.delay, tuple):
            return self.delay
        return (self.delay,) * self.n_outputs

    @property
    def noise_stds(self) -> tuple[float, ...]:
        """The observation noise's standard deviation on each observed output."""
        if isinstance(self.observation_noise_std, tuple):
            return self.observation_noise_std
        return (self.observation_noise_std,) * self.n_outputs

    @property
    def n_states(self) -> int:
        """Physical state plus the delay buffer (the sum of the outputs' delays)."""
        return self.base.n_states + sum(self.delays)

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
        """Names of the wrapped state: the plant's, then ``y[i]@t-j`` for the buffer (output
        i of the observation, j steps ago)."""
        base = tuple(getattr(self.base, "state_names", ())) or tuple(
            f"x{i}" for i in range(self.base.n_states))
        return base + tuple(f"y{i}@t-{j}" for j, lag in enumerate(self._layout.lags, 1)
                            for i in lag)

    @property
    def _sizes(self) -> tuple[int, int, int]:
        motor = self.n_inputs if self.motor_noise_std > 0 else 0
        sensor = self.n_outputs if any(s > 0 for s in self.noise_stds) else 0
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
        return np.concatenate([core, *self._lagged(seen)])

    # -- the parts of the state and of the noise ------------------------------------------------

    @functools.cached_property
    def _layout(self) -> _Layout:
        delays = self.delays
        lags = tuple(tuple(i for i, d in enumerate(delays) if d >= j)
                     for j in range(1, max(delays, default=0) + 1))
        starts = np.cumsum([0, *map(len, lags)])
        keep = tuple(int(starts[j]) + lags[j].index(i) for j in range(len(lags) - 1)
                     for i in lags[j + 1])
        read = tuple(int(starts[d - 1]) + lags[d - 1].index(i) if d else -1
                     for i, d in enumerate(delays))
        return _Layout(lags, keep, read)

    def _lagged(self, seen: Any) -> list[Any]:
        """The buffer's blocks (lag 1..K) when every lag holds the observation ``seen``."""
        every = tuple(range(self.n_outputs))
        return [seen if lag == every else seen[..., np.asarray(lag, dtype=int)]
                for lag in self._layout.lags]

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
            stds = self.noise_stds
            if len(set(stds)) == 1:
                y = y + stds[0] * sensor_noise
            else:
                y = y + jnp.asarray(stds, dtype=sensor_noise.dtype) * sensor_noise
        return y

    # -- the plant protocol ----------------------------------------------------------------------

    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """The base plant's settled state under the command ``u``; the delay buffer as it
        was."""
        core = self.base.settle(x[: self.base.n_states], u)
        return jnp.concatenate([core, x[self.base.n_states:]])

    def step(self, x: jax.Array, u: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """Step the plant on the (noisy) command and shift the delay buffer: the outputs
        with a delay enter it at lag 1, each lag's entries move one lag on where their
        delay reaches it, the rest leave."""
        base_noise, motor_noise, sensor_noise = self._split_noise(noise)
        core = x[..., : self.base.n_states]
        if motor_noise is not None:
            u = u + self.motor_noise_std * motor_noise
        core_next = self.base.step(core, u, base_noise)
        layout = self._layout
        if not layout.lags:
            return core_next
        newest = self._lagged(self._sense(core, sensor_noise))[0]
        buffer = x[..., self.base.n_states:]
        kept = buffer[..., : len(layout.keep)] if layout.keep == tuple(
            range(len(layout.keep))) else buffer[..., np.asarray(layout.keep, dtype=int)]
        return jnp.concatenate([core_next, newest.astype(x.dtype), kept], axis=-1)

    def observe(self, x: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """The observation: each output from the buffer at its delay (the oldest entry for
        one delay), an output without a delay sensed now."""
        read = self._layout.read
        if all(r < 0 for r in read):
            return self._sense(x[..., : self.base.n_states], self._split_noise(noise)[2])
        buffer = x[..., self.base.n_states:]
        if min(read) >= 0:
            if read == tuple(range(read[0], read[0] + len(read))):
                return buffer[..., read[0]:read[0] + len(read)]
            return buffer[..., np.asarray(read, dtype=int)]
        now = self._sense(x[..., : self.base.n_states], self._split_noise(noise)[2])
        where = np.asarray([i if r < 0 else self.n_outputs + r for i, r in enumerate(read)])
        return jnp.concatenate([now.astype(x.dtype), buffer], axis=-1)[..., where]

    def effector(self, x: jax.Array) -> jax.Array:
        """The base plant's effector position."""
        return self.base.effector(x[..., : self.base.n_states])

    def state_error(self, x: jax.Array) -> jax.Array:
        """The base plant's state error (the buffer is not charged)."""
        return self.base.state_error(x[..., : self.base.n_states])

    def initial_states(self, offsets: jax.Array) -> jax.Array:
        """The base plant's starts, with their observation filling the buffer."""
        core = self.base.initial_states(offsets)
        if not self._layout.lags:
            return core
        seen = self._sense(core, None).astype(core.dtype)
        return jnp.concatenate([core, *self._lagged(seen)], axis=-1)

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
