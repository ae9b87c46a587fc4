"""Tracking analysis (science 6): single-frequency probes, acquisition epochs, and the RNN's
continuous-time spectrum.

A *probe* asks the network to track one sinusoid at a time (amplitude ``task.amplitude``,
phase 0, the task's ramp) on one axis while the other axis' reference is zero. Its error is the
mean over the episode of (position - reference)^2 on that axis, with the tracking loss' time
indexing; a network that does not track scores the not-tracking level a^2 / 2. A frequency is
*acquired* at the first snapshot epoch where its probe error falls below ``threshold`` x a^2/2.

Example
-------
>>> from closedloop.runs import load_run
>>> probes = probe_errors(load_run("runs/tracking.h5"))          # doctest: +SKIP
>>> acquisition_epochs(probes)                                     # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.core.agents import Agent, Params, build_agent
from closedloop.core.plants import LinearPlant, plant_from_config
from closedloop.core.rollout import rollout
from closedloop.core.tasks import reference_signal
from closedloop.errors import ConfigError
from closedloop.runs.store import Run

ACQUIRED = 0.2
"""Default acquisition threshold, as a fraction of the not-tracking level a^2 / 2."""


@dataclass
class Probes:
    """Probe errors of a tracking run at its snapshot epochs.

    Attributes
    ----------
    epochs
        (S,) snapshot epochs.
    frequencies
        (P,) probe frequencies in Hz, sorted; ``axes`` (P,) the axis each is probed on.
    errors
        (S, P) mean squared tracking error of each probe.
    level
        The not-tracking level a^2 / 2.
    """

    epochs: np.ndarray
    frequencies: np.ndarray
    axes: np.ndarray
    errors: np.ndarray
    level: float


def probe_references(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, axes, references (P, T, n_axes)) of a tracking run's probes, sorted by
    frequency."""
    task = run.config.task
    if task.kind != "tracking":
        raise ConfigError(f"{run.path}: probes need a tracking run")
    pairs = sorted((f, axis) for axis, freqs in enumerate(task.frequencies) for f in freqs)
    frequencies = np.array([f for f, _ in pairs])
    axes = np.array([a for _, a in pairs])
    n_axes = len(task.frequencies)
    references = np.zeros((len(pairs), task.steps, n_axes))
    for index, (frequency, axis) in enumerate(pairs):
        phase = jnp.zeros((1, 1, 1), dtype=jnp.float64)
        signal = reference_signal(phase, [[frequency]], task.amplitude, task.ramp_time,
                                  task.steps, run.config.plant.dt)
        references[index, :, axis] = np.asarray(signal[0, :, 0])
    return frequencies, axes, references


def probe_errors(run: Run, epochs: np.ndarray | None = None) -> Probes:
    """Probe errors at every snapshot epoch (or the given ones), float64, many snapshots per
    compiled call."""
    frequencies, axes, references = probe_references(run)
    plant = plant_from_config(run.config.plant)
    agent = build_agent(run.config.agent, plant.n_outputs + references.shape[2],
                        plant.n_inputs, plant.n_states)
    wanted = run.snapshot_epochs if epochs is None else np.asarray(epochs)
    rows, done, block = [], [], []

    def flush() -> None:
        count = len(block)
        block.extend(block[-1:] * (PROBE_BLOCK - count))    # one block shape, one compile
        stacked = {k: jnp.stack([p[k] for p in block]) for k in block[0]}
        rows.append(np.asarray(_probe_errors(plant, agent, run.config.task.steps,
                                             run.config.training.zero_first_control, stacked,
                                             jnp.asarray(references), jnp.asarray(axes)))[:count])
        block.clear()

    for epoch, params in run.iter_parameters():
        if epoch not in wanted:
            continue
        block.append(agent.to_params(params, jnp.float64))
        done.append(epoch)
        if len(block) == PROBE_BLOCK:
            flush()
    if block:
        flush()
    level = run.config.task.amplitude ** 2 / 2
    errors = np.concatenate(rows) if rows else np.zeros((0, len(frequencies)))
    return Probes(np.array(done, dtype=np.int64), frequencies, axes, errors, level)


PROBE_BLOCK = 64
"""Snapshots evaluated per compiled call (a fixed block: one compilation per run shape)."""


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _probe_errors(plant: LinearPlant, agent: Agent, steps: int, zero_first_control: bool,
                  params: Params, references: jax.Array, axes: jax.Array) -> jax.Array:
    """(S, P) mean squared error of each probe on its axis, for S stacked snapshots."""
    x0 = jnp.zeros((references.shape[0], plant.n_states), dtype=jnp.float64)

    def one(member: Params) -> jax.Array:
        traj = rollout(plant, agent, member, steps=steps, x0=x0, reference=references,
                       zero_first_control=zero_first_control)
        error = (plant.observe(traj.states[:, 1:]) - references) ** 2   # (P, T, axes)
        return error[jnp.arange(axes.shape[0]), :, axes].mean(-1)

    return jax.lax.map(one, params)


def acquisition_epochs(probes: Probes, threshold: float = ACQUIRED) -> list[int | None]:
    """Per probe frequency, the first epoch its error is below ``threshold`` x a^2/2."""
    below = probes.errors < threshold * probes.level
    out: list[int | None] = []
    for column in below.T:
        hits = np.flatnonzero(column)
        out.append(int(probes.epochs[hits[0]]) if hits.size else None)
    return out


def continuous_eigenvalues(run: Run) -> np.ndarray:
    """Per epoch, the eigenvalues of the RNN's continuous-time Jacobian (-I + W) / tau
    (from the recorded eig(W)), sorted by descending real part."""
    values = (run.recurrent_eigenvalues - 1.0) / run.config.agent.tau
    order = np.argsort(-values.real, axis=1)
    return np.take_along_axis(values, order, axis=1)


def outliers(eigenvalues: np.ndarray, bulk_radius: float, tau: float = 1.0,
             margin: float = 1.5) -> np.ndarray:
    """Eigenvalues of (-I + W)/tau outside the random bulk: |lambda tau + 1| > margin x the
    bulk radius (the circular law puts g W_rand's eigenvalues within radius g of -1/tau)."""
    values = np.asarray(eigenvalues)
    return values[np.abs(values * tau + 1) > margin * bulk_radius]


def matched_frequencies(eigenvalues: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """For each frequency f (Hz), the imaginary part (rad/s) of the eigenvalue nearest to
    2 pi f in imaginary part, among eigenvalues with positive imaginary part (NaN if none)."""
    upper = np.asarray(eigenvalues)[np.asarray(eigenvalues).imag > 0].imag
    if upper.size == 0:
        return np.full(len(frequencies), np.nan)
    targets = 2 * math.pi * np.asarray(frequencies)
    return np.array([upper[np.argmin(np.abs(upper - t))] for t in targets])


def outlier_frequencies_at_acquisition(run: Run, acquisitions: list[int | None],
                                       frequencies: np.ndarray) -> np.ndarray:
    """For each frequency, the outlier imaginary part (rad/s) nearest to 2 pi f at the epoch it
    was acquired (NaN if never acquired or no outlier then)."""
    spectra = continuous_eigenvalues(run)
    init = run.config.agent.init.get("W")
    bulk = (init.gain * init.resolve_scale(run.config.agent.size) * math.sqrt(
        run.config.agent.size)) if init is not None else 1.0
    tau = run.config.agent.tau
    out = []
    for epoch, frequency in zip(acquisitions, frequencies, strict=True):
        if epoch is None:
            out.append(np.nan)
            continue
        found = outliers(spectra[epoch], bulk, tau)
        out.append(matched_frequencies(found, np.array([frequency]))[0])
    return np.array(out)
