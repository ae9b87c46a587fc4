"""The muscle-driven arm motor-control modellers use (docs/science.md, section 10): MotorNet's
``arm26``, a planar two-joint skeleton pulled by six Hill-type muscles with rigid tendons and
first-order activation dynamics, stepped in MotorNet's order.

State (16): the joint angles q = (shoulder from +x, elbow relative to the upper arm), their
velocities, the six muscles' activations and their forces (the skeleton is driven by the
forces of the state; a step computes the next ones, as MotorNet does). Command (6): one value
per muscle, mapped to an excitation by ``excitation`` (``sigmoid``, the default, so that any
agent's unbounded output drives the muscles; ``clip`` to feed excitations directly), kept in
[``min_activation``, 1]. Sensors (14): proprioception (the muscles' normalised fibre lengths
and velocities) and vision (the hand position from the start posture), the sensor groups
``proprioception`` and ``vision`` that ``plant.sensors`` gives a delay and a noise of their
own. Every constant is a field, so a config sets it under ``plant.params``.

Example
-------
>>> import jax.numpy as jnp
>>> arm = MuscleArm()
>>> np.asarray(arm.mass_matrix(jnp.array([0.0, 0.0])), dtype=float).round(5).tolist()
[[0.46246, 0.16884], [0.16884, 0.09593]]
>>> np.asarray(arm.hand(jnp.deg2rad(jnp.array([45.0, 90.0]))), dtype=float).round(4).tolist()
[-0.017, 0.454]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.core.mechanics import (
    NonlinearPlant,
    two_link_acceleration,
    two_link_hand,
    two_link_mass_matrix,
)

MUSCLES = ("pectoralis", "deltoid", "brachioradialis", "triceps_lateral", "biceps",
           "triceps_long")
"""The six muscles, in the order of the state, the command and the sensors."""

PASSIVE_GAIN = 14.793           # F_PE = gain max(l~ - 1.4, 0)^2
PASSIVE_START = 1.4
FORCE_LENGTH_WIDTH = 0.66       # F_L = max(1 - (l~ - 1)^2 / width^2, 0.01)
FORCE_LENGTH_FLOOR = 0.01
HILL_A = 0.41                   # the force-velocity curve's a (times F_L when l~ > 1)
HILL_B = 5.2                    # its b at activations >= 0.3
HILL_SLOPE = 0.001              # s, the lengthening branch's slope
MAX_VELOCITY = 10.0             # v~ = v / (10 l_opt)


def _sixfold(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def passive_force(length: jax.Array) -> jax.Array:
    """F_PE = 14.793 max(l~ - 1.4, 0)^2, in units of F_max, of normalised fibre lengths."""
    return PASSIVE_GAIN * jnp.maximum(length - PASSIVE_START, 0.0) ** 2


def force_length(length: jax.Array) -> jax.Array:
    """F_L = max(1 - (l~ - 1)^2 / 0.66^2, 0.01)."""
    return jnp.maximum(1 - (length - 1) ** 2 / FORCE_LENGTH_WIDTH ** 2, FORCE_LENGTH_FLOOR)


def active_force(length: jax.Array, velocity: jax.Array, activation: jax.Array) -> jax.Array:
    """The rigid-tendon Hill muscle's active force F_A (Kistemaker, Wong and Gribble 2010), in
    units of F_max, of normalised fibre lengths l~ and velocities v~ (negative: shortening)
    at ``activation``.

    Example
    -------
    >>> round(float(active_force(jnp.array(1.0), jnp.array(0.0), jnp.array(0.7))), 6)
    0.7
    """
    curve = force_length(length)
    a_coefficient = jnp.where(length > 1, HILL_A * curve, HILL_A)
    b_coefficient = jnp.where(activation >= 0.3, HILL_B,
                              HILL_B * (1 - 0.9 * (activation - 0.3) / (0.005 - 0.3)) ** 2)
    isometric = activation * curve
    d_coefficient = activation * (curve + a_coefficient) / b_coefficient
    offset = (isometric / 2) / (2 * d_coefficient - HILL_SLOPE)
    shortening_velocity = jnp.minimum(velocity, 0.0)     # each branch on its own domain, so
    lengthening_velocity = jnp.maximum(velocity, 0.0)    # that no NaN reaches a gradient
    shortening = activation * (a_coefficient * shortening_velocity + b_coefficient * curve) / (
        b_coefficient - shortening_velocity)
    lengthening = (1.5 * isometric + HILL_SLOPE * lengthening_velocity
                   - (isometric / 2) ** 2 / ((2 * d_coefficient - HILL_SLOPE)
                                             * (lengthening_velocity + offset)))
    return jnp.where(velocity < 0, shortening, lengthening)


@dataclass(frozen=True)
class MuscleArm(NonlinearPlant):
    """Two-joint arm driven by six Hill-type muscles (science 10; MotorNet's
    ``RigidTendonArm26`` with ``RigidTendonHillMuscle``).

    One step of ``dt`` (explicit Euler, MotorNet's order, checked against MotorNet itself):
    the activations move toward the excitations with time constant 0.015 (0.5 + 1.5 a) s when
    rising, 0.05 / (0.5 + 1.5 a) s when falling; the new muscle forces follow from the new
    activations and the step's starting fibre lengths and velocities; meanwhile the skeleton
    is accelerated by the joint torques of the state's forces, tau = -sum_i F_i r_i (and J^T F
    of the optional curl field on the hand), q'' = M^-1 (tau - c); q' += q'' dt and
    q += (old q') dt, a velocity that pushes into a reached joint limit is set to 0 and the
    angles are clipped to their ranges. A force thus acts on the skeleton one step after the
    activation that made it.

    The target (where episodes start) is the start posture at rest with every activation at
    its floor and the forces it makes there. At the operating point the coupled spectrum is
    read at, the activations are those the agent's command settles them at (:meth:`settle`),
    with their forces: the muscles' states are then stationary, and the skeleton is too as far
    as those forces balance (a network that holds still at the start makes them balance).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> arm = MuscleArm()
    >>> state = jnp.concatenate([jnp.deg2rad(jnp.array([45.0, 90.0])), jnp.zeros(2),
    ...                          jnp.full(6, 0.5)])
    >>> np.asarray(arm.muscle_forces(state[:4], state[4:]), dtype=float).round(2).tolist()
    [418.87, 603.01, 691.87, 751.15, 192.74, 264.32]
    """

    dt: float = 0.01
    mass_upper: float = 1.82
    mass_fore: float = 1.43
    centre_upper: float = 0.135
    centre_fore: float = 0.165
    inertia_upper: float = 0.051
    inertia_fore: float = 0.057
    length_upper: float = 0.309
    length_fore: float = 0.333
    shoulder_range: tuple[float, float] = (0.0, math.radians(135.0))
    elbow_range: tuple[float, float] = (0.0, math.radians(155.0))
    max_force: tuple[float, ...] = _sixfold((838, 1207, 1422, 1549, 414, 603))
    optimal_length: tuple[float, ...] = _sixfold((0.134, 0.140, 0.092, 0.093, 0.137, 0.127))
    slack_length: tuple[float, ...] = _sixfold((0.039, 0.066, 0.172, 0.187, 0.204, 0.217))
    path_offset: tuple[float, ...] = _sixfold((0.151, 0.2322, 0.2859, 0.2355, 0.3329, 0.2989))
    path_shoulder: tuple[float, ...] = _sixfold((-0.03, 0.03, 0.0, 0.0, -0.03, 0.03))
    path_elbow: tuple[float, ...] = _sixfold((0.0, 0.0, -0.014, 0.025, -0.016, 0.03))
    path_elbow_squared: tuple[float, ...] = _sixfold((0.0, 0.0, -0.004, -0.0022, -0.0057,
                                                      -0.0032))
    activation_time: float = 0.015
    deactivation_time: float = 0.05
    min_activation: float = 0.001
    excitation: str = "sigmoid"
    curl: float = 0.0
    start_shoulder: float = math.radians(67.5)
    start_elbow: float = math.radians(77.5)

    state_names = ("shoulder", "elbow", "shoulder_velocity", "elbow_velocity",
                   *(f"activation_{m}" for m in MUSCLES), *(f"force_{m}" for m in MUSCLES))
    input_names = tuple(f"excitation_{m}" for m in MUSCLES)
    output_names = (*(f"length_{m}" for m in MUSCLES), *(f"velocity_{m}" for m in MUSCLES),
                    "hand_x", "hand_y")
    effector_names = ("hand_x", "hand_y")
    sensor_groups: ClassVar[dict[str, tuple[int, ...]]] = {
        "proprioception": tuple(range(12)), "vision": (12, 13)}

    def __post_init__(self) -> None:
        for name in ("max_force", "optimal_length", "slack_length", "path_offset",
                     "path_shoulder", "path_elbow", "path_elbow_squared"):
            if len(getattr(self, name)) != len(MUSCLES):
                raise ValueError(f"muscle_arm: {name} needs one value per muscle "
                                 f"({len(MUSCLES)}), got {len(getattr(self, name))}")
        if self.excitation not in ("sigmoid", "clip"):
            raise ValueError(f"muscle_arm: excitation must be 'sigmoid' or 'clip', not "
                             f"'{self.excitation}'")

    # -- the skeleton ----------------------------------------------------------------------

    def _inertias(self) -> tuple[float, float, float]:
        """(a, b, d) of M(q2) = [[a + 2 b cos q2, d + b cos q2], [d + b cos q2, d]] (inertias
        about the segments' centres of mass)."""
        m1, m2 = self.mass_upper, self.mass_fore
        g1, g2, l1 = self.centre_upper, self.centre_fore, self.length_upper
        d = m2 * g2 ** 2 + self.inertia_fore
        a = m1 * g1 ** 2 + self.inertia_upper + m2 * (g2 ** 2 + l1 ** 2) + self.inertia_fore
        return a, m2 * l1 * g2, d

    def mass_matrix(self, angles: jax.Array) -> jax.Array:
        """M(q) of the skeleton."""
        return two_link_mass_matrix(angles, *self._inertias())

    def hand(self, angles: jax.Array) -> jax.Array:
        """Hand position (L1 cos q1 + L2 cos(q1 + q2), L1 sin q1 + L2 sin(q1 + q2))."""
        return two_link_hand(angles, self.length_upper, self.length_fore)

    def energy(self, x: jax.Array) -> jax.Array:
        """Kinetic energy 0.5 q'^T M(q) q' of one state."""
        return 0.5 * x[2:4] @ self.mass_matrix(x[:2]) @ x[2:4]

    def acceleration(self, x: jax.Array, torque: jax.Array) -> jax.Array:
        """q'' = M(q)^-1 (tau + J^T F - c(q, q')) for joint torques ``torque`` (the curl field
        F = curl R v_hand, if any)."""
        return two_link_acceleration(self, x[:2], x[2:4], torque, self._inertias()[1],
                                     self.curl)

    # -- the muscles -----------------------------------------------------------------------

    def path_lengths(self, angles: jax.Array) -> jax.Array:
        """Muscle-tendon lengths (6,): c0 + c1 . phi + c2 phi_elbow^2, phi = (q1 - pi/2,
        q2)."""
        shoulder, elbow = angles[0] - math.pi / 2, angles[1]
        return (jnp.asarray(self.path_offset) + jnp.asarray(self.path_shoulder) * shoulder
                + jnp.asarray(self.path_elbow) * elbow
                + jnp.asarray(self.path_elbow_squared) * elbow ** 2).astype(angles.dtype)

    def moment_arms(self, angles: jax.Array) -> jax.Array:
        """r (2, 6): d l_MT / d q, per joint and muscle (negative flexes)."""
        elbow = jnp.asarray(self.path_elbow) + 2 * jnp.asarray(self.path_elbow_squared) \
            * angles[1]
        return jnp.stack([jnp.asarray(self.path_shoulder) + 0 * elbow, elbow]).astype(
            angles.dtype)

    def fibres(self, kinematics: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised fibre lengths l~ = max(l_MT - l_s, 0) / l_opt and velocities
        v~ = r^T q' / (10 l_opt) of the six muscles, from (q, q') (4,)."""
        angles, velocity = kinematics[:2], kinematics[2:4]
        optimal = jnp.asarray(self.optimal_length, dtype=kinematics.dtype)
        length = jnp.maximum(self.path_lengths(angles) - jnp.asarray(self.slack_length), 0.0)
        speed = velocity @ self.moment_arms(angles)
        return length / optimal, speed / (MAX_VELOCITY * optimal)

    def muscle_forces(self, kinematics: jax.Array, activation: jax.Array) -> jax.Array:
        """Forces F = F_max (max(F_A, 0) + F_PE) of the six muscles (N) at (q, q') with
        ``activation``."""
        length, velocity = self.fibres(kinematics)
        return jnp.asarray(self.max_force, dtype=kinematics.dtype) * (
            jnp.maximum(active_force(length, velocity, activation), 0.0)
            + passive_force(length))

    def torques(self, kinematics: jax.Array, forces: jax.Array) -> jax.Array:
        """Joint torques tau = -sum_i F_i r_i (2,)."""
        return -(self.moment_arms(kinematics[:2]) @ forces)

    def excitations(self, command: jax.Array) -> jax.Array:
        """The command mapped to excitations (``excitation``: ``sigmoid`` or ``clip``), kept in
        the activations' range [min_activation, 1] as MotorNet keeps them."""
        mapped = command if self.excitation == "clip" else jax.nn.sigmoid(command)
        return jnp.clip(mapped, self.min_activation, 1.0)

    def activation_step(self, activation: jax.Array, excitation: jax.Array) -> jax.Array:
        """One Euler step of a' = (u - a) / tau(u, a), clipped to [min_activation, 1]."""
        scale = 0.5 + 1.5 * activation
        time = jnp.where(excitation > activation, self.activation_time * scale,
                         self.deactivation_time / scale)
        return jnp.clip(activation + self.dt * (excitation - activation) / time,
                        self.min_activation, 1.0)

    # -- the plant protocol ----------------------------------------------------------------

    def dynamics(self, x: jax.Array, u: jax.Array) -> jax.Array:
        kinematics, activation, force = x[:4], x[4:10], x[10:]
        activation = self.activation_step(activation, self.excitations(u))
        new_force = self.muscle_forces(kinematics, activation)
        acceleration = self.acceleration(kinematics, self.torques(kinematics, force))
        angles, velocity = kinematics[:2], kinematics[2:4]
        new_velocity = velocity + self.dt * acceleration
        new_angles = angles + self.dt * velocity
        low = jnp.asarray([self.shoulder_range[0], self.elbow_range[0]], dtype=x.dtype)
        high = jnp.asarray([self.shoulder_range[1], self.elbow_range[1]], dtype=x.dtype)
        blocked = ((new_angles >= high) & (new_velocity > 0)) | (
            (new_angles <= low) & (new_velocity < 0))
        new_velocity = jnp.where(blocked, 0.0, new_velocity)
        return jnp.concatenate([jnp.clip(new_angles, low, high), new_velocity, activation,
                                new_force])

    def resting_state(self, angles: Any, activation: Any) -> np.ndarray:
        """The state at rest at ``angles`` (2,) with ``activation`` (6,) and the forces they
        make there (float64): what a step starts from."""
        kinematics = np.concatenate([np.asarray(angles, dtype=np.float64), np.zeros(2)])
        activation = np.broadcast_to(np.asarray(activation, dtype=np.float64), len(MUSCLES))
        with jax.ensure_compile_time_eval():       # also while a program is being traced
            force = np.asarray(self.muscle_forces(jnp.asarray(kinematics),
                                                  jnp.asarray(activation)))
        return np.concatenate([kinematics, activation, force])

    def target(self) -> np.ndarray:
        return self.resting_state([self.start_shoulder, self.start_elbow], self.min_activation)

    def settle(self, x: jax.Array, u: jax.Array) -> jax.Array:
        """Under a constant command the activations settle at its excitations and the forces
        at what they make at the posture of ``x``: the operating point's muscle states."""
        activation = self.excitations(u).astype(x.dtype)
        return jnp.concatenate([x[:4], activation, self.muscle_forces(x[:4], activation)])

    def effort(self, x: jax.Array) -> jax.Array:
        """The muscles' effort (..., 6) of states ``x`` (..., 16): each activation weighted by
        its muscle's share of the summed maximal forces, squared, (a_i F_max,i / sum_j
        F_max,j)^2 (what ``loss.effort_cost`` charges; a strong muscle's activation costs
        more).

        Example
        -------
        >>> arm = MuscleArm()
        >>> state = jnp.asarray(arm.resting_state([1.0, 1.0], 1.0))
        >>> round(float(arm.effort(state).sum()), 4)   # sum_i (F_max,i / sum_j F_max,j)^2
        0.1955
        """
        force = jnp.asarray(self.max_force, dtype=x.dtype)
        return (x[..., 4:10] * force / force.sum()) ** 2

    def position(self, x: jax.Array) -> jax.Array:
        start = jnp.asarray([self.start_shoulder, self.start_elbow], dtype=x.dtype)
        return self.hand(x[:2]) - self.hand(start)

    def sensors(self, x: jax.Array) -> jax.Array:
        length, velocity = self.fibres(x[:4])
        return jnp.concatenate([length, velocity, self.position(x)])
