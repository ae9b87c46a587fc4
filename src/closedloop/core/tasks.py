"""Episodes: initial states, tracking references and white-noise inputs (science 1.4, 2, 6).

A :class:`Batch` holds everything random about one training epoch (or the held-out test set):
initial states ``x0`` (batch, n_x), an optional ``reference`` (batch, T, n_axes) built from
``phases``, for white-noise open-loop training ``inputs`` (batch, T, n_in), and process
``noise`` (batch, T, n_x) and, for black-box training, standard-normal ``exploration`` noise
(batch, T, n_u) on the commands, or evolution strategies' ``directions`` (per parameter, a
leading population axis). It is a pytree, so batches of many networks stack along a leading
axis. Everything is drawn from an explicit ``jax.random`` key, in float64, then cast to the
training dtype (float32 and float64 runs see the same numbers up to rounding).

Example
-------
>>> import jax
>>> from closedloop.config import TaskConfig
>>> task = TaskConfig(kind="tracking", steps=300)
>>> batch = sample_batch(task, n_states=4, key=jax.random.key(0))
>>> tuple(batch.reference.shape), abs(float(batch.reference[0, 0, 0]))
((100, 300, 2), 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.config import TaskConfig


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Batch:
    """The random inputs of one episode batch (a pytree; absent parts are None): initial
    states, references (and their phases), white-noise inputs, the plant's noise, and what a
    learning rule draws for itself (``extras``: exploration noise, perturbation directions).
    Immutable: a changed batch is a new one (``dataclasses.replace``)."""

    x0: jax.Array
    reference: jax.Array | None = None
    phases: jax.Array | None = None
    inputs: jax.Array | None = None
    noise: jax.Array | None = None
    extras: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        """Number of episodes in the batch."""
        return self.x0.shape[-2]

    def astype(self, dtype: Any) -> Batch:
        """The batch cast to ``dtype``."""
        return jax.tree.map(lambda a: jnp.asarray(a, dtype=dtype), self)

    @staticmethod
    def stack(batches: Sequence[Batch]) -> Batch:
        """Batches of several networks stacked along a new leading axis.

        Example
        -------
        >>> Batch.stack([Batch(jnp.zeros((3, 2))), Batch(jnp.ones((3, 2)))]).x0.shape
        (2, 3, 2)
        """
        return jax.tree.map(lambda *parts: jnp.stack(parts), *batches)


def time_grid(steps: int, dt: float) -> np.ndarray:
    """t_i = i * dt for i = 0..steps-1, the paper's linspace(0, steps*dt, steps, endpoint=False).

    Example
    -------
    >>> time_grid(3, 0.5).tolist()
    [0.0, 0.5, 1.0]
    """
    return np.arange(steps, dtype=np.float64) * dt


def reference_tables(frequencies: Sequence[Sequence[float]], amplitude: float, ramp_time: float,
                     steps: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The phase-independent parts a cos(2 pi f t) ramp(t) and a sin(2 pi f t) ramp(t) of the
    tracking reference, each (n_axes, n_freqs, steps), float64.

    cos(w t + phi) = cos(w t) cos(phi) - sin(w t) sin(phi), so a batch of references is two
    products of these tables with cos(phi) and sin(phi) (:func:`reference_signal`).
    """
    freqs = np.array(frequencies, dtype=np.float64)
    grid = time_grid(steps, dt)
    ramp = np.clip(grid / ramp_time, 0.0, 1.0) if ramp_time > 0 else np.ones_like(grid)
    angle = 2 * math.pi * freqs[:, :, None] * grid
    return amplitude * np.cos(angle) * ramp, amplitude * np.sin(angle) * ramp


def reference_signal(phases: jax.Array, frequencies: Sequence[Sequence[float]],
                     amplitude: float, ramp_time: float, steps: int, dt: float) -> jax.Array:
    """r(t) = ramp(t) * sum_k amplitude * cos(2 pi f_k t + phi_k) per axis (science 6).

    Parameters
    ----------
    phases
        (batch, n_axes, n_freqs) phases phi_k.
    frequencies
        Per axis, the frequencies f_k in Hz.

    Returns
    -------
    jax.Array
        (batch, steps, n_axes), in the dtype of ``phases``.

    Example
    -------
    >>> r = reference_signal(jnp.zeros((1, 1, 1)), [[0.5]], 1.0, 0.0, 3, 1.0)
    >>> [round(v, 6) for v in r[0, :, 0].tolist()]
    [1.0, -1.0, 1.0]
    """
    shape = np.shape(np.array(frequencies, dtype=np.float64))
    if shape != tuple(phases.shape[1:]):
        raise ValueError(f"phases of shape {tuple(phases.shape)} do not match frequencies "
                         f"of shape {shape}")
    cos_t, sin_t = (jnp.asarray(t, dtype=phases.dtype) for t in
                    reference_tables(frequencies, amplitude, ramp_time, steps, dt))
    return (jnp.einsum("baf,aft->bta", jnp.cos(phases), cos_t)
            - jnp.einsum("baf,aft->bta", jnp.sin(phases), sin_t))


@dataclass(frozen=True, eq=False)
class ProbeSet:
    """Single-sinusoid probes of a tracking task (science 6).

    Each probe asks the network to track one of the task's sinusoids, at the task's amplitude
    and ramp, on its own axis while every other axis' reference is zero, from ``phases``
    evenly spaced phases 2 pi k / K. Its error is the mean over the episode of the squared
    position error summed over both axes (the tracking loss' time indexing: x_{i+1} against
    r_i), averaged over the phases. For a linear loop the squared error of phase phi is
    c0 + c1 cos 2 phi + c2 sin 2 phi, so K >= 3 evenly spaced phases give exactly the average
    over a uniformly random phase: the expectation of the authors' random-phase probe, free
    of the phase-dependent start-up transient.

    Attributes
    ----------
    frequencies, axes
        (P,) probe frequencies in Hz (sorted) and the axis each is probed on.
    phases
        K, the number of phases per probe.
    references
        (P * K, T, n_axes) float64 references, probe-major (probe p's phases are rows
        p K .. p K + K - 1).
    level
        The not-tracking level a^2 / 2 (a network that holds still scores about this).
    """

    frequencies: np.ndarray
    axes: np.ndarray
    phases: int
    references: np.ndarray
    level: float

    def errors(self, positions: jax.Array) -> jax.Array:
        """(..., P) probe errors from the positions (..., P * K, T, n_axes) the network
        reached, x_{i+1} for i = 0..T-1 (:func:`probe_errors`).

        Example
        -------
        >>> task = TaskConfig(kind="tracking", steps=50, frequencies=[[0.1], [0.2]])
        >>> probes = probe_set(task, dt=0.1)
        >>> still = jnp.zeros(probes.references.shape)     # a network that does not move
        >>> [round(float(e / probes.level), 2) for e in probes.errors(still)]  # mean ramp^2
        [0.86, 0.86]
        """
        return probe_errors(positions, jnp.asarray(self.references, dtype=positions.dtype),
                            self.phases)


def probe_errors(positions: jax.Array, references: jax.Array, phases: int) -> jax.Array:
    """(..., P) probe errors: the squared position error summed over the axes, averaged over
    the episode and over each probe's ``phases`` consecutive rows of ``positions`` and
    ``references`` (..., P * phases, T, n_axes).

    Example
    -------
    >>> errors = probe_errors(jnp.ones((4, 3, 2)), jnp.zeros((4, 3, 2)), phases=2)
    >>> errors.tolist()
    [2.0, 2.0]
    """
    squared = ((positions - references) ** 2).sum(axis=-1).mean(axis=-1)
    return squared.reshape(*squared.shape[:-1], -1, phases).mean(axis=-1)


def probe_set(task: TaskConfig, dt: float, phases: int = 4) -> ProbeSet:
    """The probes of a tracking task: one per frequency and axis, ``phases`` phases each.

    Example
    -------
    >>> task = TaskConfig(kind="tracking", steps=300)
    >>> probes = probe_set(task, dt=0.1)
    >>> probes.frequencies.tolist(), probes.axes.tolist(), probes.references.shape
    ([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], (16, 300, 2))
    """
    if task.kind != "tracking":
        raise ValueError(f"probes need a tracking task, not '{task.kind}'")
    if phases < 1:
        raise ValueError(f"a probe needs at least one phase, got {phases}")
    pairs = sorted((f, axis) for axis, freqs in enumerate(task.frequencies) for f in freqs)
    n_axes = len(task.frequencies)
    angles = 2 * math.pi * np.arange(phases) / phases
    references = np.zeros((len(pairs) * phases, task.steps, n_axes))
    for index, (frequency, axis) in enumerate(pairs):
        cos_t, sin_t = reference_tables([[frequency]], task.amplitude, task.ramp_time,
                                        task.steps, dt)
        rows = slice(index * phases, (index + 1) * phases)
        references[rows, :, axis] = (np.cos(angles)[:, None] * cos_t[0, 0]
                                     - np.sin(angles)[:, None] * sin_t[0, 0])
    return ProbeSet(np.array([f for f, _ in pairs]), np.array([a for _, a in pairs]), phases,
                    references, task.amplitude ** 2 / 2)


def draw_phases(task: TaskConfig, batch_size: int, key: jax.Array) -> jax.Array:
    """Phases U(-pi, pi), (batch, n_axes, n_freqs), drawn in float64."""
    shape = (batch_size, len(task.frequencies), len(task.frequencies[0]))
    return jax.random.uniform(key, shape, dtype=jnp.float64, minval=-math.pi, maxval=math.pi)


def reaching_targets(task: TaskConfig, batch_size: int, key: jax.Array | None) -> jax.Array:
    """Targets relative to the start, (batch, 2), float64: target i < n_targets at angle
    2 pi i / n_targets on the circle of ``task.target_radius``, and with ``centre_target``
    target n_targets at the start itself; drawn uniformly from ``key``, or each in turn
    without a key.

    Example
    -------
    >>> task = TaskConfig(kind="reaching", n_targets=4)
    >>> [[round(v, 6) + 0.0 for v in t] for t in reaching_targets(task, 6, None).tolist()]
    [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.0], [1.0, 0.0]]
    """
    count = task.n_targets + int(task.centre_target)
    if key is None:
        index = jnp.arange(batch_size) % count
    else:
        index = jax.random.randint(key, (batch_size,), 0, count)
    angle = 2 * math.pi * index.astype(jnp.float64) / task.n_targets
    radius = jnp.where(index < task.n_targets, task.target_radius, 0.0)
    return radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)


def go_signal(task: TaskConfig, batch_size: int, steps: int, dt: float,
              key: jax.Array | None) -> jax.Array:
    """The go cue of each trial, (batch, steps), float64: 0 before the cue, 1 from its step
    on; the cue at a time drawn uniformly from ``task.go_cue`` (seconds), never in a
    ``task.catch_fraction`` of the trials; without a key (the test set) at the middle of the
    range in every trial.

    Example
    -------
    >>> task = TaskConfig(kind="reaching", go_cue=[0.2, 0.2])
    >>> go_signal(task, 1, 5, 0.1, None).tolist()
    [[0.0, 0.0, 1.0, 1.0, 1.0]]
    """
    earliest, latest = task.go_cue
    if key is None:
        times = jnp.full(batch_size, (earliest + latest) / 2, dtype=jnp.float64)
    else:
        time_key, catch_key = jax.random.split(key)
        times = jax.random.uniform(time_key, (batch_size,), dtype=jnp.float64, minval=earliest,
                                   maxval=latest)
        caught = jax.random.uniform(catch_key, (batch_size,)) < task.catch_fraction
        times = jnp.where(caught, jnp.inf, times)
    first = jnp.round(times / dt)                       # the step the cue appears at
    return (jnp.arange(steps)[None, :] >= first[:, None]).astype(jnp.float64)


def sample_batch(task: TaskConfig, n_states: int, key: jax.Array, *,
                 batch_size: int | None = None, steps: int | None = None, dt: float = 0.1,
                 initial_state_range: float | None = None, dtype: Any = jnp.float64,
                 every_target: bool = False) -> Batch:
    """Draw one batch of episodes from ``key``.

    Regulation: offsets x0 ~ U(-a, a)^n_x (from the plant's target: the trainer adds it).
    Tracking: x0 = 0 and a reference from fresh phases. Reaching: offsets as regulation and a
    target held for the whole episode as the reference (``every_target``: each in turn, the
    test set), followed by the go cue (:func:`go_signal`) when the task has one.

    Example
    -------
    >>> batch = sample_batch(TaskConfig(batch_size=5), n_states=2, key=jax.random.key(3))
    >>> batch.x0.shape, bool(abs(batch.x0).max() <= 1.0)
    ((5, 2), True)
    """
    batch_size = batch_size or task.batch_size
    steps = steps or task.steps
    if task.kind == "tracking":
        phases = draw_phases(task, batch_size, key)
        return Batch(x0=jnp.zeros((batch_size, n_states), dtype=dtype),
                     reference=reference_signal(phases, task.frequencies, task.amplitude,
                                                task.ramp_time, steps, dt).astype(dtype),
                     phases=phases.astype(dtype))
    bound = task.initial_state_range if initial_state_range is None else initial_state_range
    if task.kind == "reaching":
        key, target_key = jax.random.split(key)
        targets = reaching_targets(task, batch_size, None if every_target else target_key)
        reference = jnp.broadcast_to(targets[:, None], (batch_size, steps, 2))
        if task.go_cue is not None:       # its own stream: tasks without a cue keep theirs
            go_key = jax.random.fold_in(target_key, 1)
            go = go_signal(task, batch_size, steps, dt, None if every_target else go_key)
            reference = jnp.concatenate([reference, go[..., None]], axis=-1)
    x0 = jax.random.uniform(key, (batch_size, n_states), dtype=jnp.float64, minval=-1.0,
                            maxval=1.0) * bound
    if task.kind == "reaching":
        return Batch(x0=x0.astype(dtype), reference=reference.astype(dtype))
    return Batch(x0=x0.astype(dtype))


def white_noise_batch(batch_size: int, steps: int, input_size: int, std: float,
                      key: jax.Array, dtype: Any = jnp.float64) -> Batch:
    """White-noise inputs y_t ~ N(0, std^2), (batch, steps, input_size), for open-loop
    imitation (science 2); there is no plant state, so ``x0`` is empty.

    Example
    -------
    >>> white_noise_batch(4, 10, 1, 1.0, jax.random.key(0)).inputs.shape
    (4, 10, 1)
    """
    inputs = jax.random.normal(key, (batch_size, steps, input_size), dtype=jnp.float64) * std
    return Batch(x0=jnp.zeros((batch_size, 0), dtype=dtype), inputs=inputs.astype(dtype))
