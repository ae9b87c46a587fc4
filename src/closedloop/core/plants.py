"""Plants: the protocol every plant follows, the linear time-invariant systems (docs/science.md,
section 1.1) and :func:`plant_from_config`, which builds any kind (linear, the nonlinear ones
of :mod:`closedloop.core.mechanics`, a user's registered kind), wrapped in sensors
(:mod:`closedloop.core.sensors`) when the config asks for observation choices, noise or delay.

    x_{t+1} = A x_t + B u_t + w_t,    y_t = C x_t,    w_t ~ N(0, sigma_w^2 dt I)

Matrices are stored in the column-vector convention of the maths (``A`` is n_x x n_x, ``B``
n_x x n_u, ``C`` n_y x n_x) as float64 NumPy arrays. Arrays in the rollout are batch-first
rows, so a step is ``x @ A.T + u @ B.T``; :meth:`LinearPlant.step` does exactly that, in the
dtype of ``x``. A plant is immutable and compares (and hashes) by value, so two runs on the
same plant share one compiled program.

Example
-------
>>> import jax.numpy as jnp
>>> plant = double_integrator()
>>> plant.A.tolist(), plant.B.tolist(), plant.C.tolist()
([[1.0, 1.0], [0.0, 1.0]], [[0.0], [1.0]], [[1.0, 0.0]])
>>> plant.step(jnp.array([[1.0, 2.0]]), jnp.array([[0.5]])).tolist()
[[3.0, 2.5]]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.config import PlantConfig, plant_matrices
from closedloop.core.mechanics import process_noise
from closedloop.core.registry import LINEAR_PLANT_KINDS, PLANTS
from closedloop.errors import ConfigError, ShapeError


class Plant(Protocol):
    """What the rollout, the losses and the spectra need of a plant.

    All functions take batch-first arrays (..., n) and are pure JAX, so the loop is
    differentiated, batched and linearised by JAX. ``noise`` is the per-step noise vector
    (``noise_size`` wide) drawn by ``draw_noise``; the plant reads its parts.
    """

    dt: float

    @property
    def n_states(self) -> int: ...
    @property
    def n_core_states(self) -> int: ...
    @property
    def n_inputs(self) -> int: ...
    @property
    def n_outputs(self) -> int: ...
    @property
    def n_effector(self) -> int: ...
    @property
    def noise_size(self) -> int: ...
    @property
    def target_state(self) -> np.ndarray: ...

    def step(self, x: jax.Array, u: jax.Array, noise: jax.Array | None = None
             ) -> jax.Array: ...
    def observe(self, x: jax.Array, noise: jax.Array | None = None) -> jax.Array: ...
    def effector(self, x: jax.Array) -> jax.Array: ...
    def state_error(self, x: jax.Array) -> jax.Array: ...
    def initial_states(self, offsets: jax.Array) -> jax.Array: ...
    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array: ...
    def draw_noise(self, key: jax.Array, batch: int, steps: int, dtype: Any
                   ) -> jax.Array | None: ...


@runtime_checkable
class MusclePlant(Protocol):
    """A plant driven by muscles: it says what a state's muscle effort is (what
    ``loss.effort_cost`` charges)."""

    @property
    def n_states(self) -> int:
        """Dimension of its state."""
        ...

    def effort(self, x: jax.Array) -> jax.Array:
        """The per-muscle effort (..., n_muscles) of states ``x`` (..., n_x)."""
        ...


def muscles_of(plant: Plant) -> MusclePlant | None:
    """The plant with muscles behind ``plant`` (itself, or the plant a sensor wrapper reads),
    or None when it has no effort to charge.

    Example
    -------
    >>> muscles_of(double_integrator()) is None
    True
    """
    base = getattr(plant, "base", plant)
    return base if isinstance(base, MusclePlant) else None


@dataclass(frozen=True, eq=False)
class LinearPlant:
    """A discrete-time LTI plant with optional process noise and state clamping.

    Parameters
    ----------
    A, B, C
        System matrices (column-vector maths): n_x x n_x, n_x x n_u, n_y x n_x.
    dt
        Time step; scales the process-noise variance.
    process_noise_std
        sigma_w; the noise w_t ~ N(0, sigma_w^2 dt I) is added after every step.
    clamp
        If set, the state is clipped to [-clamp, clamp] after every step.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    dt: float = 1.0
    process_noise_std: float = 0.0
    clamp: float | None = None

    sensor_groups: ClassVar[dict[str, tuple[int, ...]]] = {}
    """Named groups of outputs (``plant.sensors`` keys): none for a linear plant."""

    def __post_init__(self) -> None:
        A, B, C = plant_matrices(self.A, self.B, self.C)
        for name, matrix in (("A", A), ("B", B), ("C", C)):
            matrix.setflags(write=False)
            object.__setattr__(self, name, matrix)

    def _key(self) -> tuple[Any, ...]:
        return (self.A.shape, self.A.tobytes(), self.B.shape, self.B.tobytes(), self.C.shape,
                self.C.tobytes(), self.dt, self.process_noise_std, self.clamp)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearPlant) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def n_states(self) -> int:
        """Dimension of x."""
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        """Dimension of u."""
        return self.B.shape[1]

    @property
    def n_outputs(self) -> int:
        """Dimension of y = C x."""
        return self.C.shape[0]

    @property
    def output_names(self) -> tuple[str, ...]:
        """``y0``, ``y1``, ...: the rows of C (what ``plant.sensors`` may name)."""
        return tuple(f"y{i}" for i in range(self.n_outputs))

    @property
    def n_core_states(self) -> int:
        """Dimension of the physical state (all of x)."""
        return self.n_states

    @property
    def n_effector(self) -> int:
        """The effector position is the observation C x."""
        return self.n_outputs

    @property
    def noise_size(self) -> int:
        """Width of the per-step process noise (0 without noise)."""
        return self.n_states if self.process_noise_std > 0 else 0

    @property
    def target_state(self) -> np.ndarray:
        """x* = 0."""
        return np.zeros(self.n_states)

    def observe(self, x: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """y = C x for a batch of states ``x`` (..., n_x), in the dtype of ``x`` (``noise``
        is not read: observation noise is a sensor option)."""
        return x @ jnp.asarray(self.C.T, dtype=x.dtype)

    def effector(self, x: jax.Array) -> jax.Array:
        """C x: what the tracking cost compares with the reference."""
        return self.observe(x)

    def state_error(self, x: jax.Array) -> jax.Array:
        """x - x* = x."""
        return x

    def initial_states(self, offsets: jax.Array) -> jax.Array:
        """x_0 = offsets (the target is 0)."""
        return offsets

    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """A linear plant has no internal states that settle under a held command: ``x``."""
        return x

    def step(self, x: jax.Array, u: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """One step x_{t+1} = A x + B u (+ noise), clamped if the plant clamps.

        ``noise`` is the already-scaled w_t (see :meth:`draw_noise`).
        """
        x_next = x @ jnp.asarray(self.A.T, dtype=x.dtype) + u @ jnp.asarray(self.B.T,
                                                                           dtype=x.dtype)
        if noise is not None:
            x_next = x_next + noise
        if self.clamp is not None:
            x_next = jnp.clip(x_next, -self.clamp, self.clamp)
        return x_next

    def draw_noise(self, key: jax.Array, batch: int, steps: int, dtype: Any = jnp.float32
                   ) -> jax.Array | None:
        """Process noise for a whole episode, (batch, steps, n_x) (drawn in float64, then
        cast), or None for a noiseless plant."""
        return process_noise(key, batch, steps, self.n_states, self.process_noise_std, self.dt,
                             dtype)


def integrator(order: int = 2, n_inputs: int = 1, n_observed: int = 1, dt: float = 1.0,
               **options: Any) -> LinearPlant:
    """The k-th order integrator: A = I + dt * superdiagonal, B = dt on the last m coordinates,
    C selects the first c coordinates.

    Example
    -------
    >>> integrator(3, n_inputs=2, n_observed=1, dt=0.5).B.tolist()
    [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]
    """
    if not 1 <= n_inputs <= order or not 1 <= n_observed <= order:
        raise ConfigError("an integrator needs 1 <= n_inputs, n_observed <= order")
    A = np.eye(order) + dt * np.eye(order, k=1)
    B = np.zeros((order, n_inputs))
    for i in range(1, n_inputs + 1):
        B[order - i, n_inputs - i] = dt
    C = np.eye(order)[:n_observed]
    return LinearPlant(A, B, C, dt=dt, **options)


def double_integrator(dt: float = 1.0, **options: Any) -> LinearPlant:
    """The paper's plant: position and velocity, force input, position observed.

    Example
    -------
    >>> double_integrator().C.tolist()
    [[1.0, 0.0]]
    """
    return integrator(2, 1, 1, dt, **options)


def point_mass_2d(dt: float = 0.1, **options: Any) -> LinearPlant:
    """Two independent double integrators: state (x, v_x, y, v_y), input (a_x, a_y),
    positions (x, y) observed.

    Example
    -------
    >>> point_mass_2d().C.tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """
    block = integrator(2, 1, 1, dt)
    A = np.kron(np.eye(2), block.A)
    B = np.kron(np.eye(2), block.B)
    C = np.kron(np.eye(2), block.C)
    return LinearPlant(A, B, C, dt=dt, **options)


def from_control(system: Any, **options: Any) -> LinearPlant:
    """A plant from a discrete-time ``control.StateSpace`` (the optional ``control`` extra).

    The feedthrough D must be zero: the agent's output reaches its input only through the plant.

    Example
    -------
    >>> import control                                                   # doctest: +SKIP
    >>> system = control.ss([[1, 1], [0, 1]], [[0], [1]], [[1, 0]], 0, dt=1.0)  # doctest: +SKIP
    >>> from_control(system).n_states                                    # doctest: +SKIP
    2
    """
    dt = getattr(system, "dt", None)
    if dt is None or dt is True or dt == 0:
        raise ConfigError("from_control needs a discrete-time system with a numeric dt "
                          "(use control.c2d to discretise)")
    D = np.asarray(system.D, dtype=np.float64)
    if np.any(D != 0):
        raise ConfigError("from_control needs D = 0 (no direct feedthrough)")
    return LinearPlant(np.asarray(system.A), np.asarray(system.B), np.asarray(system.C),
                       dt=float(dt), **options)


SENSOR_OPTIONS = ("observed", "delay", "observation_noise_std", "motor_noise_std", "sensors")
"""PlantConfig fields that put a plant behind :class:`~closedloop.core.sensors.SensedPlant`."""


def plant_from_config(config: PlantConfig) -> Plant:
    """Build the plant a :class:`~closedloop.config.PlantConfig` describes: a linear kind, a
    nonlinear built-in or a registered kind (with ``plant.params``), behind sensors when
    any of :data:`SENSOR_OPTIONS` asks for them.

    ``plant.sensors`` gives groups of the plant's outputs (its ``sensor_groups``) or single
    outputs (its ``output_names``) a delay and an observation noise of their own; an output's
    own entry overrides its group's, and what neither sets is ``plant.delay`` and
    ``plant.observation_noise_std``.

    Raises
    ------
    ConfigError
        For an unknown kind, parameter or sensor name, a sensor that reads no observed
        output, and for a plant whose step or observation has the wrong shape or is not
        finite at its operating point.

    Example
    -------
    >>> from closedloop.config import PlantConfig
    >>> plant_from_config(PlantConfig(kind="point_mass_2d", dt=0.1)).n_states
    4
    >>> plant_from_config(PlantConfig(kind="pendulum", delay=2)).n_states
    6
    >>> arm = plant_from_config(PlantConfig(
    ...     kind="muscle_arm", sensors={"proprioception": {"delay": 2}, "vision": {"delay": 5}}))
    >>> arm.n_states - arm.n_core_states               # 12 outputs x 2 steps + 2 x 5
    34
    """
    options = {"process_noise_std": config.process_noise_std, "clamp": config.clamp}
    if config.kind in LINEAR_PLANT_KINDS:
        base: Plant = _linear_plant(config, options)
    else:
        base = _nonlinear_plant(config, options)
    delay, noise_std = _sensor_settings(config, base)
    if config.observed is None and not any(np.atleast_1d(delay)) \
            and not any(np.atleast_1d(noise_std)) and not config.motor_noise_std:
        return base
    from closedloop.core.sensors import SensedPlant

    observed = None if config.observed is None else tuple(config.observed)
    return SensedPlant(base, observed, delay, noise_std, config.motor_noise_std)


def _sensor_settings(config: PlantConfig, base: Any
                     ) -> tuple[int | tuple[int, ...], float | tuple[float, ...]]:
    """The delay and the observation noise of each observed output (one value when they are
    all the same): ``plant.delay`` and ``plant.observation_noise_std``, with
    ``plant.sensors`` applied (groups first, then single outputs)."""
    if not config.sensors:
        return config.delay, config.observation_noise_std
    observed = list(range(base.n_outputs)) if config.observed is None else config.observed
    delays = [config.delay] * len(observed)
    stds = [config.observation_noise_std] * len(observed)
    groups = {name: tuple(indices) for name, indices in base.sensor_groups.items()}
    names = base.output_names if base.output_names is not None else base.state_names
    for name in config.sensors:
        if name not in groups and name not in names:
            raise ConfigError(
                f"unknown key 'plant.sensors.{name}' for plant.kind '{config.kind}' (allowed: "
                f"sensor groups {', '.join(groups) or 'none'}; outputs {', '.join(names)})")
    ordered = [*(n for n in config.sensors if n in groups),
               *(n for n in config.sensors if n not in groups)]
    for name in ordered:
        spec = config.sensors[name]
        indices = groups[name] if name in groups else (list(names).index(name),)
        places = [p for p, i in enumerate(observed) if i in indices]
        if not places:
            what = f"its outputs {list(indices)} are" if name in groups else \
                f"output {indices[0]} is"
            raise ConfigError(f"plant.sensors.{name}: {what} not in plant.observed "
                              f"{list(observed)}")
        for p in places:
            if spec.delay is not None:
                delays[p] = spec.delay
            if spec.noise_std is not None:
                stds[p] = spec.noise_std
    return (delays[0] if len(set(delays)) == 1 else tuple(delays),
            stds[0] if len(set(stds)) == 1 else tuple(stds))


def _linear_plant(config: PlantConfig, options: dict[str, Any]) -> LinearPlant:
    dt = 1.0 if config.dt is None else config.dt
    if config.kind == "integrator":
        return integrator(config.order, config.n_inputs, config.n_observed, dt, **options)
    if config.kind == "point_mass_2d":
        return point_mass_2d(dt, **options)
    try:
        return LinearPlant(np.array(config.A), np.array(config.B), np.array(config.C),
                           dt=dt, **options)
    except (ShapeError, ValueError) as exc:
        raise ConfigError(f"invalid value for 'plant.A/B/C': {exc}") from None


def _nonlinear_plant(config: PlantConfig, options: dict[str, Any]) -> Plant:
    cls = PLANTS.get(config.kind)
    fields = {f.name for f in dataclasses.fields(cls)} - {"dt", *options}
    unknown = sorted(set(config.params) - fields)
    if unknown:
        raise ConfigError(f"unknown key 'plant.params.{unknown[0]}' for plant.kind "
                          f"'{config.kind}' (allowed: {', '.join(sorted(fields)) or 'none'})")
    params = {k: _hashable(v) for k, v in config.params.items()}
    if config.dt is not None:
        params["dt"] = config.dt
    try:
        plant = cls(**params, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"plant.kind '{config.kind}' refuses plant.params: {exc}") from None
    check_plant(plant, config.kind)
    return plant


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def check_plant(plant: Plant, kind: str) -> None:
    """Step and observe ``plant`` once at its operating point (float64, zero command) and
    refuse it, with one line naming ``kind``, when a shape is wrong or a value not finite.

    Example
    -------
    >>> from closedloop.core.mechanics import Pendulum
    >>> check_plant(Pendulum(), "pendulum")                 # fine: returns quietly
    """
    target = np.asarray(plant.target_state, dtype=np.float64)
    if target.shape != (plant.n_states,):
        raise ConfigError(f"plant '{kind}': its target has shape {target.shape}, expected "
                          f"({plant.n_states},) (one value per state name)")
    x = jnp.asarray(target[None])
    u = jnp.zeros((1, plant.n_inputs), dtype=jnp.float64)
    try:
        x_next = plant.step(x, u)
        y = plant.observe(x)
    except Exception as exc:          # a user's plant: any failure is one clear line
        raise ConfigError(f"plant '{kind}': stepping it fails ({type(exc).__name__}: {exc})"
                          ) from None
    for name, value, width in (("step", x_next, plant.n_states),
                               ("observation", y, plant.n_outputs)):
        if tuple(value.shape) != (1, width):
            raise ConfigError(f"plant '{kind}': its {name} of one state has shape "
                              f"{tuple(value.shape[1:])}, expected ({width},)")
        if not bool(jnp.all(jnp.isfinite(value))):
            raise ConfigError(f"plant '{kind}': its {name} at the operating point is not "
                              "finite")


KIND_FIELDS = {"integrator": ("order", "n_inputs", "n_observed", "dt"), "point_mass_2d": ("dt",),
               "linear": ("A", "B", "C", "dt")}
"""The PlantConfig fields each linear kind reads (besides noise, clamp and sensors)."""
COMMON_FIELDS = ("process_noise_std", "clamp", *SENSOR_OPTIONS)


def plant_section(config: PlantConfig) -> dict[str, Any]:
    """The ``plant:`` section of a config file written out for its kind: the fields that kind
    reads, and for a nonlinear kind every constant of the plant (``params``, its defaults
    filled in) and its ``dt``; what ``closedloop presets --show`` prints.

    Example
    -------
    >>> section = plant_section(PlantConfig(kind="pendulum", params={"mass": 2.0}))
    >>> section["dt"], section["params"]["mass"], section["params"]["gravity"]
    (0.05, 2.0, 9.81)
    """
    data = config.model_dump(mode="json")
    if config.kind in KIND_FIELDS:
        keys = ("kind", *KIND_FIELDS[config.kind], *COMMON_FIELDS)
        return {k: (1.0 if k == "dt" and data[k] is None else data[k]) for k in keys}
    plant = _nonlinear_plant(config, {"process_noise_std": config.process_noise_std,
                                      "clamp": config.clamp})
    constants = {k: _listed(v) for k, v in plant.parameters.items()
                 if k not in ("dt", "process_noise_std", "clamp")}
    return {"kind": config.kind, "dt": plant.dt, "params": constants,
            **{k: data[k] for k in COMMON_FIELDS}}


def _listed(value: Any) -> Any:
    return [_listed(v) for v in value] if isinstance(value, tuple) else value
