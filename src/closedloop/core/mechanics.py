"""Nonlinear plants: the base class a user plant extends, and the built-in damped pendulum,
planar two-link arm and point mass with drag and a curl force field (docs/science.md, section
9; docs/plants.md).

A plant is a frozen dataclass whose fields are its constants (each one a config field:
``plant.params.NAME``). A subclass writes the physics for **one** state, in JAX:

* ``dynamics(x, u)``: the next state x' = f(x, u) after one step of ``dt`` (n_x,), (n_u,)
  -> (n_x,);
* optionally ``sensors(x)`` (what the agent can read; default x - x*, the error from the
  target), ``target()`` (the operating point x*; default 0) and ``effector(x)`` (the
  task-space position that reaching costs charge).

The base class batches them (``jnp.vectorize``), adds process noise and the optional state
clamp, and provides what the rollout needs (:class:`closedloop.core.plants.Plant`). Everything
is differentiable, so the coupled Jacobian of a loop with any of these plants is
``jax.jacfwd`` of the rollout's own step.

Example
-------
>>> import jax.numpy as jnp
>>> pendulum = Pendulum()
>>> [round(v, 6) for v in pendulum.step(jnp.array([jnp.pi, 0.5]), jnp.zeros(1)).tolist()]
[3.166468, 0.4975]
>>> [round(v, 6) for v in pendulum.observe(jnp.array([jnp.pi + 0.1, 0.5])).tolist()]
[0.1, 0.5]
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np


def process_noise(key: jax.Array, batch: int, steps: int, size: int, std: float, dt: float,
                  dtype: Any) -> jax.Array | None:
    """w_t ~ N(0, std^2 dt I) for a whole episode, (batch, steps, size) (drawn in float64,
    then cast), or None when ``std`` is 0."""
    if std == 0.0:
        return None
    noise = jax.random.normal(key, (batch, steps, size), dtype=jnp.float64)
    return (noise * (std * math.sqrt(dt))).astype(dtype)


@dataclass(frozen=True)
class NonlinearPlant(ABC):
    """Base class of plants written as one-state JAX functions (see the module docstring).

    Parameters
    ----------
    dt
        The time step of :meth:`dynamics`.
    process_noise_std
        sigma_w: w_t ~ N(0, sigma_w^2 dt I) is added to the state after every step.
    clamp
        If set, the state is clipped to [-clamp, clamp] after every step.

    Example
    -------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Spring(NonlinearPlant):
    ...     stiffness: float = 1.0
    ...     state_names = ("position", "velocity")
    ...     input_names = ("force",)
    ...     def dynamics(self, x, u):
    ...         velocity = x[1] + self.dt * (u[0] - self.stiffness * x[0] ** 3)
    ...         return jnp.stack([x[0] + self.dt * velocity, velocity])
    >>> x = Spring(dt=0.1).step(jnp.array([[1.0, 0.0]]), jnp.array([[0.0]]))
    >>> [round(v, 4) for v in x[0].tolist()]
    [0.99, -0.1]
    """

    dt: float = 0.05
    process_noise_std: float = 0.0
    clamp: float | None = None

    state_names: ClassVar[tuple[str, ...]] = ()
    input_names: ClassVar[tuple[str, ...]] = ()
    output_names: ClassVar[tuple[str, ...] | None] = None
    effector_names: ClassVar[tuple[str, ...]] = ()
    sensor_groups: ClassVar[dict[str, tuple[int, ...]]] = {}
    """Named groups of outputs (indices into the sensors) that ``plant.sensors`` may give a
    delay and a noise of their own (none by default)."""

    # -- what a subclass writes (one state) ------------------------------------------------

    @abstractmethod
    def dynamics(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """x' = f(x, u) for one state (n_x,) and command (n_u,): what every plant defines
        (a class without it cannot be registered or built)."""

    def target(self) -> np.ndarray:
        """The operating point x* (what regulation drives the state to); default 0."""
        return np.zeros(len(self.state_names))

    def sensors(self, x: jax.Array) -> jax.Array:
        """What the agent can observe of one state; default the error x - x*."""
        return x - jnp.asarray(self.target(), dtype=x.dtype)

    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """The operating point's state when the agent holds the command ``u`` there: the
        target ``x`` with whatever internal states (an actuator's activation, say) settle
        under a constant command. Default: ``x`` itself. The sensors must not read those
        states (the agent's fixed point there is found before they settle)."""
        return x

    def position(self, x: jax.Array) -> jax.Array:
        """The task-space position of one state that reaching costs charge (relative to the
        operating point); plants with ``effector_names`` define it, the others have none (an
        empty vector, which a reaching or tracking task refuses by its size)."""
        return jnp.zeros(0, dtype=x.dtype)

    # -- the plant protocol (batched) ------------------------------------------------------

    @property
    def parameters(self) -> dict[str, Any]:
        """The plant's constants by name (its dataclass fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def n_states(self) -> int:
        """Dimension of x."""
        return len(self.state_names)

    @property
    def n_core_states(self) -> int:
        """Dimension of the physical state (no delay buffer here)."""
        return self.n_states

    @property
    def n_inputs(self) -> int:
        """Dimension of u."""
        return len(self.input_names)

    @property
    def n_outputs(self) -> int:
        """Dimension of the observation."""
        return len(self.output_names if self.output_names is not None else self.state_names)

    @property
    def n_effector(self) -> int:
        """Dimension of the effector position."""
        return len(self.effector_names)

    @property
    def noise_size(self) -> int:
        """Width of the per-step noise vector :meth:`step` reads (0: none)."""
        return self.n_states if self.process_noise_std > 0 else 0

    @property
    def target_state(self) -> np.ndarray:
        """x* as float64."""
        return np.asarray(self.target(), dtype=np.float64)

    def step(self, x: jax.Array, u: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """One step for states (..., n_x) and commands (..., n_u) (+ process noise)."""
        x_next = jnp.vectorize(self.dynamics, signature="(n),(m)->(k)")(x, u.astype(x.dtype))
        if noise is not None and self.noise_size:
            x_next = x_next + noise[..., : self.n_states]
        if self.clamp is not None:
            x_next = jnp.clip(x_next, -self.clamp, self.clamp)
        return x_next.astype(x.dtype)

    def observe(self, x: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """The sensors of states (..., n_x); ``noise`` is not read (observation noise is a
        sensor option, :class:`closedloop.core.sensors.SensedPlant`)."""
        return jnp.vectorize(self.sensors, signature="(n)->(p)")(x).astype(x.dtype)

    def effector(self, x: jax.Array) -> jax.Array:
        """The effector positions of states (..., n_x)."""
        return jnp.vectorize(self.position, signature="(n)->(p)")(x).astype(x.dtype)

    def state_error(self, x: jax.Array) -> jax.Array:
        """x - x*, what regulation costs charge."""
        return x - jnp.asarray(self.target_state, dtype=x.dtype)

    def initial_states(self, offsets: jax.Array) -> jax.Array:
        """Episode starts x_0 = x* + offsets."""
        return offsets + jnp.asarray(self.target_state, dtype=offsets.dtype)

    def draw_noise(self, key: jax.Array, batch: int, steps: int, dtype: Any = jnp.float32
                   ) -> jax.Array | None:
        """Process noise for an episode, (batch, steps, n_x), or None."""
        return process_noise(key, batch, steps, self.n_states, self.process_noise_std,
                             self.dt, dtype)


@dataclass(frozen=True)
class Pendulum(NonlinearPlant):
    """Damped pendulum with gravity and a torque limit (science 9): angle q from hanging down,
    m l^2 q'' = -m g l sin q - b q' + clip(u, -u_max, u_max), integrated with semi-implicit
    Euler (velocity first). The target (and operating point) is q = ``target_angle``
    (pi: held upright), at rest; the sensors read the angle from the target and the angular
    velocity.

    Example
    -------
    >>> float(Pendulum().step(jnp.array([0.0, 0.0]), jnp.array([100.0]))[1])  # torque limit
    0.25
    """

    dt: float = 0.05
    mass: float = 1.0
    length: float = 1.0
    gravity: float = 9.81
    damping: float = 0.1
    max_torque: float = 5.0
    target_angle: float = math.pi

    state_names = ("angle", "angular_velocity")
    input_names = ("torque",)
    output_names = ("angle_from_target", "angular_velocity")

    def dynamics(self, x: jax.Array, u: jax.Array) -> jax.Array:
        angle, velocity = x[0], x[1]
        torque = jnp.clip(u[0], -self.max_torque, self.max_torque)
        inertia = self.mass * self.length ** 2
        acceleration = (-self.mass * self.gravity * self.length * jnp.sin(angle)
                        - self.damping * velocity + torque) / inertia
        velocity = velocity + self.dt * acceleration
        return jnp.stack([angle + self.dt * velocity, velocity])

    def target(self) -> np.ndarray:
        return np.array([self.target_angle, 0.0])


ROTATION = np.array([[0.0, -1.0], [1.0, 0.0]])
"""The curl field's rotation by +90 degrees: F = k ROTATION v."""


@dataclass(frozen=True)
class PointMass(NonlinearPlant):
    """A planar point mass with viscous drag and an optional curl force field
    F = k [[0, -1], [1, 0]] v (Shadmehr and Mussa-Ivaldi, 1994; science 9):
    m a = u - drag v + F, semi-implicit Euler. State (x, v_x, y, v_y) relative to the start,
    input (f_x, f_y); the sensors read the whole state, the effector is (x, y).

    Example
    -------
    >>> PointMass(dt=0.1, drag=0.0, curl=1.0).step(jnp.array([0.0, 1.0, 0.0, 0.0]),
    ...                                            jnp.zeros(2)).round(4).tolist()
    [0.1, 1.0, 0.01, 0.1]
    """

    dt: float = 0.05
    mass: float = 1.0
    drag: float = 0.5
    curl: float = 0.0

    state_names = ("x", "velocity_x", "y", "velocity_y")
    input_names = ("force_x", "force_y")
    effector_names = ("x", "y")

    def dynamics(self, x: jax.Array, u: jax.Array) -> jax.Array:
        position, velocity = x[jnp.array([0, 2])], x[jnp.array([1, 3])]
        field = self.curl * (jnp.asarray(ROTATION, dtype=x.dtype) @ velocity)
        velocity = velocity + self.dt * (u - self.drag * velocity + field) / self.mass
        position = position + self.dt * velocity
        return jnp.stack([position[0], velocity[0], position[1], velocity[1]])

    def position(self, x: jax.Array) -> jax.Array:
        return x[jnp.array([0, 2])]


def two_link_mass_matrix(angles: jax.Array, a1: float, a2: float, a3: float) -> jax.Array:
    """A planar two-link arm's M(q) = [[a1 + 2 a2 cos q2, a3 + a2 cos q2], [a3 + a2 cos q2,
    a3]] (q2 the elbow relative to the upper arm)."""
    c2 = jnp.cos(angles[1])
    return jnp.stack([jnp.stack([a1 + 2 * a2 * c2, a3 + a2 * c2]),
                      jnp.stack([a3 + a2 * c2, a3 + 0 * c2])])


def two_link_hand(angles: jax.Array, l1: float, l2: float) -> jax.Array:
    """Hand position (l1 cos q1 + l2 cos(q1 + q2), l1 sin q1 + l2 sin(q1 + q2))."""
    return jnp.stack([l1 * jnp.cos(angles[0]) + l2 * jnp.cos(angles[0] + angles[1]),
                      l1 * jnp.sin(angles[0]) + l2 * jnp.sin(angles[0] + angles[1])])


def two_link_acceleration(arm: Any, angles: jax.Array, velocity: jax.Array,
                          torque: jax.Array, a2: float, curl: float,
                          damping: jax.Array | None = None) -> jax.Array:
    """q'' = M(q)^-1 (tau + J^T F - c(q, q') - damping) of a planar two-link ``arm`` (its
    ``mass_matrix`` and ``hand``), with c the Coriolis and centripetal torques
    a2 sin q2 (-q2' (2 q1' + q2'), q1'^2) and F = curl R v_hand the curl field on the hand."""
    coriolis = a2 * jnp.sin(angles[1]) * jnp.stack(
        [-velocity[1] * (2 * velocity[0] + velocity[1]), velocity[0] ** 2])
    jacobian = jax.jacfwd(arm.hand)(angles)
    field = curl * (jnp.asarray(ROTATION, dtype=velocity.dtype) @ (jacobian @ velocity))
    force = torque + jacobian.T @ field - coriolis
    if damping is not None:
        force = force - damping
    return jnp.linalg.solve(arm.mass_matrix(angles), force)


@dataclass(frozen=True)
class TwoLinkArm(NonlinearPlant):
    """Planar two-link arm driven by shoulder and elbow torques (Li and Todorov 2004; science
    9): M(q) q'' + c(q, q') + B q' = tau + J(q)^T F, with F = k [[0, -1], [1, 0]] v_hand the
    optional curl field; fourth-order Runge-Kutta with tau held over the step. No gravity (a
    horizontal plane). State (q1, q2, q1', q2'); the operating point is the start posture at
    rest; the sensors read the joint angles from it, the joint velocities and the hand
    position from the start; the effector is the hand position from the start.

    Example
    -------
    >>> arm = TwoLinkArm()
    >>> arm.mass_matrix(jnp.array([0.0, 0.0])).round(3).tolist()
    [[0.256, 0.093], [0.093, 0.045]]
    """

    dt: float = 0.01
    mass_upper: float = 1.4
    mass_fore: float = 1.0
    length_upper: float = 0.30
    length_fore: float = 0.33
    centre_upper: float = 0.11
    centre_fore: float = 0.16
    inertia_upper: float = 0.025
    inertia_fore: float = 0.045
    damping: tuple[tuple[float, float], tuple[float, float]] = ((0.05, 0.025), (0.025, 0.05))
    curl: float = 0.0
    start_shoulder: float = math.pi / 4
    start_elbow: float = math.pi / 2

    state_names = ("shoulder", "elbow", "shoulder_velocity", "elbow_velocity")
    input_names = ("shoulder_torque", "elbow_torque")
    output_names = ("shoulder_from_start", "elbow_from_start", "shoulder_velocity",
                    "elbow_velocity", "hand_x", "hand_y")
    effector_names = ("hand_x", "hand_y")

    def _constants(self) -> tuple[float, float, float]:
        a1 = self.inertia_upper + self.inertia_fore + self.mass_fore * self.length_upper ** 2
        a2 = self.mass_fore * self.length_upper * self.centre_fore
        return a1, a2, self.inertia_fore

    def mass_matrix(self, angles: jax.Array) -> jax.Array:
        """M(q) = [[a1 + 2 a2 cos q2, a3 + a2 cos q2], [a3 + a2 cos q2, a3]]."""
        return two_link_mass_matrix(angles, *self._constants())

    def hand(self, angles: jax.Array) -> jax.Array:
        """Hand position (l1 cos q1 + l2 cos(q1 + q2), l1 sin q1 + l2 sin(q1 + q2))."""
        return two_link_hand(angles, self.length_upper, self.length_fore)

    def energy(self, x: jax.Array) -> jax.Array:
        """Kinetic energy 0.5 q'^T M(q) q' of one state."""
        return 0.5 * x[2:] @ self.mass_matrix(x[:2]) @ x[2:]

    def acceleration(self, x: jax.Array, torque: jax.Array) -> jax.Array:
        """q'' = M(q)^-1 (tau + J^T F - c(q, q') - B q')."""
        return two_link_acceleration(self, x[:2], x[2:], torque, self._constants()[1],
                                     self.curl, jnp.asarray(self.damping, dtype=x.dtype) @ x[2:])

    def dynamics(self, x: jax.Array, u: jax.Array) -> jax.Array:
        def derivative(state: jax.Array) -> jax.Array:
            return jnp.concatenate([state[2:], self.acceleration(state, u)])

        k1 = derivative(x)
        k2 = derivative(x + 0.5 * self.dt * k1)
        k3 = derivative(x + 0.5 * self.dt * k2)
        k4 = derivative(x + self.dt * k3)
        return x + self.dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def target(self) -> np.ndarray:
        return np.array([self.start_shoulder, self.start_elbow, 0.0, 0.0])

    def position(self, x: jax.Array) -> jax.Array:
        start = jnp.asarray(self.target()[:2], dtype=x.dtype)
        return self.hand(x[:2]) - self.hand(start)

    def sensors(self, x: jax.Array) -> jax.Array:
        start = jnp.asarray(self.target(), dtype=x.dtype)
        return jnp.concatenate([x - start, self.position(x)])


BUILTIN_PLANTS: dict[str, type[NonlinearPlant]] = {
    "pendulum": Pendulum,
    "point_mass": PointMass,
    "two_link_arm": TwoLinkArm,
}
"""The nonlinear plants closedloop ships, by ``plant.kind``."""
