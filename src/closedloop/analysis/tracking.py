"""Tracking analysis (science 6): single-frequency probes, acquisitions, and the outlier
eigenvalues of the RNN's continuous-time Jacobian.

*Probes* (:func:`closedloop.core.tasks.probe_set`) ask the network to track one sinusoid at a
time on its axis, averaged over evenly spaced phases, and score the squared error of both axes;
a network that does not track scores about the not-tracking level a^2 / 2. Runs record them at
every epoch; for runs written before that, they are computed from the parameter snapshots.

An *acquisition* is read from a probe's error curve e(t) in units of a^2 / 2 (science 6: the
authors pick theirs by hand at the end of each drop of the loss curve, so the rule here finds
that point):

* the **crossing** is the first epoch with e < ``acquired`` (half the not-tracking level): the
  frequency is being acquired;
* the **onset** is the last epoch before it with e >= ``onset`` (0.9): the drop began;
* the **end** is the first epoch from the crossing on after which e falls by less than
  ``settle`` (10 %) of its value within the next ``window`` (1 % of training): the drop has
  finished and the error has settled.

The acquisition's *outlier* is the eigenvalue of (-I + W) / tau (upper half plane) farthest
from the random bulk's centre -1/tau at the end of the acquisition (each newly acquired
frequency is the highest so far; the authors' figure values are exactly these outermost
eigenvalues), with its path followed as one eigenvalue trajectory from the onset.

Example
-------
>>> from closedloop.runs import load_run
>>> run = load_run("runs/tracking.h5")                              # doctest: +SKIP
>>> for acquisition in acquisitions(probe_errors(run), run):       # doctest: +SKIP
...     print(acquisition.frequency, acquisition.end, acquisition.relative_error)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.analysis.spectrum import track_eigenvalues
from closedloop.core.agents import Agent, Params, build_agent
from closedloop.core.plants import Plant, plant_from_config
from closedloop.core.rollout import rollout
from closedloop.core.tasks import ProbeSet, probe_set
from closedloop.core.tasks import probe_errors as tracking_probe_errors
from closedloop.errors import ConfigError
from closedloop.runs.store import Run

ACQUIRED = 0.5
"""A frequency is being acquired once its probe error falls below this x a^2/2."""
ONSET = 0.9
"""The drop begins at the last epoch before that with the error at or above this x a^2/2."""
SETTLE = 0.1
"""The drop has ended when the error falls by less than this fraction of its value ..."""
SETTLE_WINDOW = 0.01
"""... within the next this fraction of the run's epochs (at least one epoch)."""
OUTLIER_MARGIN = 1.5
"""An outlier lies farther than this x the epoch-0 bulk radius from -1/tau."""
MATCH = 0.15
"""An outlier's imaginary part matches 2 pi f within this fraction (claim C6's tolerance)."""


@dataclass
class Probes:
    """Probe errors of a tracking run.

    Attributes
    ----------
    epochs
        (S,) epochs at which the probes were evaluated.
    frequencies
        (P,) probe frequencies in Hz, sorted; ``axes`` (P,) the axis each is probed on.
    errors
        (S, P) probe errors (squared error of both axes, averaged over the episode and the
        phases).
    level
        The not-tracking level a^2 / 2.
    """

    epochs: np.ndarray
    frequencies: np.ndarray
    axes: np.ndarray
    errors: np.ndarray
    level: float

    @property
    def normalized(self) -> np.ndarray:
        """(S, P) errors in units of the not-tracking level a^2 / 2."""
        return self.errors / self.level


def probes_of(run: Run) -> ProbeSet:
    """The probe set of a tracking run (its task, plant time step and probe phases)."""
    if run.config.task.kind != "tracking":
        raise ConfigError(f"{run.path}: probes need a tracking run, not a "
                          f"'{run.config.task.kind}' task")
    return probe_set(run.config.task, run.config.plant.dt,
                     getattr(run.config.evaluation, "probe_phases", 4))


def probe_errors(run: Run, epochs: np.ndarray | None = None) -> Probes:
    """Probe errors of a tracking run: the recorded ones (every epoch), or, for runs recorded
    without them or when ``epochs`` are given, computed at those snapshot epochs (all by
    default) in float64, many snapshots per compiled call.

    Example
    -------
    >>> probes = probe_errors(load_run("runs/tracking.h5"))          # doctest: +SKIP
    >>> probes.normalized[-1].round(2)                                # doctest: +SKIP
    array([0.03, 0.07, 0.05, 0.06])
    """
    probes = probes_of(run)
    if epochs is None and "probe_errors" in run.metrics:
        return Probes(run.epochs.copy(), probes.frequencies, probes.axes,
                      np.asarray(run.metrics["probe_errors"], dtype=np.float64), probes.level)
    plant = plant_from_config(run.config.plant)
    agent = build_agent(run.config.agent, plant.n_outputs + probes.references.shape[2],
                        plant.n_inputs, plant.n_states)
    wanted = set((run.snapshot_epochs if epochs is None else np.asarray(epochs)).tolist())
    evaluate = functools.partial(_probe_errors, plant, agent, probes.phases,
                                 run.config.training.zero_first_control,
                                 references=jnp.asarray(probes.references))
    rows, done, block = [], [], []

    def flush() -> None:
        count = len(block)
        block.extend(block[-1:] * (PROBE_BLOCK - count))    # one block shape, one compile
        stacked = {k: jnp.stack([p[k] for p in block]) for k in block[0]}
        rows.append(np.asarray(evaluate(stacked))[:count])
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
    errors = np.concatenate(rows) if rows else np.zeros((0, len(probes.frequencies)))
    return Probes(np.array(done, dtype=np.int64), probes.frequencies, probes.axes, errors,
                  probes.level)


PROBE_BLOCK = 64
"""Snapshots evaluated per compiled call (a fixed block: one compilation per run shape)."""


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _probe_errors(plant: Plant, agent: Agent, phases: int, zero_first_control: bool,
                  params: Params, references: jax.Array) -> jax.Array:
    """(S, P) probe errors for S stacked snapshots."""
    x0 = plant.initial_states(jnp.zeros((references.shape[0], plant.n_core_states),
                                        dtype=references.dtype))

    def one(member: Params) -> jax.Array:
        traj = rollout(plant, agent, member, steps=references.shape[1], x0=x0,
                       reference=references, zero_first_control=zero_first_control)
        return tracking_probe_errors(plant.effector(traj.states[:, 1:]), references, phases)

    return jax.lax.map(one, params)


# -- acquisitions ---------------------------------------------------------------------------


@dataclass(eq=False)
class Acquisition:
    """One frequency's acquisition, read from its probe error curve and the spectrum.

    Attributes
    ----------
    frequency
        The probe frequency in Hz.
    onset, crossing, end
        The epochs where the drop begins, where the error crosses ``acquired`` x a^2/2, and
        where the drop has ended (None: never acquired, or not settled before the run ends).
    outlier
        The acquisition's outlier eigenvalue of (-I + W) / tau at ``end`` (None if not read).
    path_epochs, path
        The outlier's trajectory (epochs and eigenvalues) from the onset to the end.
    matched_at
        The first epoch, from the end on, at which that trajectory's imaginary part comes
        within :data:`MATCH` of 2 pi f (None if it never does): how long after its drop the
        outlier reaches the frequency.
    """

    frequency: float
    onset: int | None = None
    crossing: int | None = None
    end: int | None = None
    outlier: complex | None = None
    path_epochs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    path: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.complex128))
    matched_at: int | None = None

    @property
    def target(self) -> float:
        """2 pi f in rad/s."""
        return 2 * math.pi * self.frequency

    @property
    def relative_error(self) -> float:
        """(Im outlier - 2 pi f) / 2 pi f (NaN without an outlier)."""
        if self.outlier is None:
            return math.nan
        return (abs(self.outlier.imag) - self.target) / self.target

    def to_json(self) -> dict[str, Any]:
        """The numbers ``closedloop analyze`` prints (NaN as None); besides the relative error
        of the imaginary part, that of the outlier's natural frequency |lambda| (a damped
        mode's resonance lies near |lambda|, not Im lambda)."""
        error = self.relative_error
        return {"frequency_hz": self.frequency, "onset": self.onset,
                "crossing": self.crossing, "end": self.end,
                "outlier": None if self.outlier is None else [self.outlier.real,
                                                              abs(self.outlier.imag)],
                "target_rad_per_s": self.target,
                "relative_error": None if math.isnan(error) else error,
                "natural_frequency_error": None if self.outlier is None
                else abs(self.outlier) / self.target - 1,
                "matched_at": self.matched_at}


def find_acquisitions(probes: Probes, *, acquired: float = ACQUIRED, onset: float = ONSET,
                      settle: float = SETTLE, window: int | None = None
                      ) -> list[Acquisition]:
    """Per probe frequency, the onset, crossing and end of its acquisition (module docstring).

    Parameters
    ----------
    probes
        The probe errors (their epochs need not be consecutive).
    acquired, onset
        Levels in units of a^2/2: the crossing and the start of the drop.
    settle, window
        The drop has ended when the error falls by less than ``settle`` of its value within
        the next ``window`` epochs (default :data:`SETTLE_WINDOW` of the run's epochs).

    Example
    -------
    >>> epochs = np.arange(301)
    >>> error = np.where(epochs < 100, 1.0, 0.1 + 0.9 * np.exp(-(epochs - 100) / 10.0))
    >>> probes = Probes(epochs, np.array([0.1]), np.array([0]), error[:, None], 1.0)
    >>> found = find_acquisitions(probes, window=30)[0]
    >>> found.onset, found.crossing, found.end
    (101, 109, 144)
    """
    epochs = np.asarray(probes.epochs)
    if window is None:
        span = int(epochs[-1] - epochs[0]) if len(epochs) else 0
        window = max(1, round(SETTLE_WINDOW * span))
    out = []
    for frequency, error in zip(probes.frequencies.tolist(), probes.normalized.T, strict=True):
        found = Acquisition(float(frequency))
        below = np.flatnonzero(error < acquired)
        if below.size:
            first = int(below[0])
            above = np.flatnonzero(error[:first] >= onset)
            found.crossing = int(epochs[first])
            found.onset = int(epochs[above[-1]]) if above.size else int(epochs[0])
            found.end = _settled(epochs, error, first, window, settle)
        out.append(found)
    return out


def _settled(epochs: np.ndarray, error: np.ndarray, first: int, window: int, settle: float
             ) -> int | None:
    """First epoch from index ``first`` on whose error falls by less than ``settle`` of its
    value within the next ``window`` epochs (None if the run ends before that is known)."""
    for index in range(first, len(epochs)):
        ahead = np.flatnonzero((epochs > epochs[index]) & (epochs <= epochs[index] + window))
        if epochs[-1] < epochs[index] + window or not ahead.size:
            return None
        if error[index] - error[ahead].min() < settle * error[index]:
            return int(epochs[index])
    return None


def continuous_eigenvalues(run: Run) -> np.ndarray:
    """Per epoch, the eigenvalues of the RNN's continuous-time Jacobian (-I + W) / tau
    (from the recorded eig(W)), sorted by descending real part."""
    values = (run.recurrent_eigenvalues - 1.0) / run.config.agent.tau
    order = np.argsort(-values.real, axis=1)
    return np.take_along_axis(values, order, axis=1)


def bulk_radius(spectrum: np.ndarray, tau: float = 1.0) -> float:
    """The radius of the random bulk of (-I + W) / tau around -1/tau, measured on a spectrum
    before learning shapes it (epoch 0): max |lambda tau + 1|.

    Example
    -------
    >>> bulk_radius(np.array([-1 + 0.2j, -1.1, -0.9 - 0.1j]))
    0.2
    """
    values = np.asarray(spectrum)
    values = values[np.isfinite(values)]
    return float(np.max(np.abs(values * tau + 1))) if values.size else math.nan


def read_outliers(spectra: np.ndarray, epochs: np.ndarray, found: list[Acquisition], *,
                  tau: float = 1.0, margin: float = OUTLIER_MARGIN,
                  radius: float | None = None) -> list[Acquisition]:
    """Fill in each acquisition's outlier: at the end of the acquisition, the eigenvalue with
    Im > 0 farthest from -1/tau, if it lies outside ``margin`` x the epoch-0 bulk radius; and
    its path, followed back to the onset as one eigenvalue trajectory
    (:func:`~closedloop.analysis.spectrum.track_eigenvalues`).

    Parameters
    ----------
    spectra
        (E, N) eigenvalues of (-I + W) / tau at ``epochs`` (E,), in any order per row.
    found
        Acquisitions from :func:`find_acquisitions` (changed in place and returned).
    radius
        The bulk radius (default: :func:`bulk_radius` of the first row, the untrained
        network's spectrum when ``spectra`` start at epoch 0).

    Example
    -------
    >>> epochs = np.arange(3)
    >>> spectra = np.array([[-1 + 0.1j, -1 - 0.1j], [-0.5 + 0.5j, -0.5 - 0.5j],
    ...                     [-0.4 + 0.6j, -0.4 - 0.6j]])
    >>> [a] = read_outliers(spectra, epochs, [Acquisition(0.1, 0, 1, 2)])
    >>> a.outlier, round(a.relative_error, 3), a.path.imag.tolist()
    ((-0.4+0.6j), -0.045, [0.1, 0.5, 0.6])
    """
    spectra = np.asarray(spectra, dtype=np.complex128)
    epochs = np.asarray(epochs)
    if radius is None:
        radius = bulk_radius(spectra[0], tau) if len(spectra) else math.nan
    for acquisition in found:
        if acquisition.onset is None or acquisition.end is None:
            continue
        first = int(np.searchsorted(epochs, acquisition.onset))
        last = int(np.searchsorted(epochs, acquisition.end))
        tracked = track_eigenvalues(spectra[first:last + 1])
        final = tracked[-1]
        distance = np.where(final.imag > 0, np.abs(final * tau + 1), -np.inf)
        column = int(np.argmax(distance))
        if not distance[column] > margin * radius:
            continue
        acquisition.path_epochs = epochs[first:last + 1].copy()
        acquisition.path = tracked[:, column]
        acquisition.outlier = complex(final[column])
        acquisition.matched_at = _matched_at(spectra[last:], epochs[last:], column,
                                             tracked[-1], acquisition.target)
    return found


def _matched_at(spectra: np.ndarray, epochs: np.ndarray, column: int, start: np.ndarray,
                target: float, block: int = 500) -> int | None:
    """The first epoch at which trajectory ``column`` (starting from the row ``start``, in the
    tracked order) has |Im - target| <= MATCH x target; tracked block by block, so that an
    early match ends the work early."""
    previous = start
    for begin in range(0, len(spectra), block):
        rows = spectra[begin:begin + block]
        tracked = track_eigenvalues(np.concatenate([previous[None, :], rows]))[1:]
        path = np.abs(tracked[:, column].imag)
        hits = np.flatnonzero(np.abs(path - target) <= MATCH * target)
        if hits.size:
            return int(epochs[begin + hits[0]])
        if not np.all(np.isfinite(tracked[-1])):
            return None
        previous = tracked[-1]
    return None


def acquisitions(probes: Probes, run: Run, **detector: float) -> list[Acquisition]:
    """:func:`find_acquisitions` on ``probes`` with the outliers read from ``run``'s recorded
    spectra (:func:`read_outliers`).

    Example
    -------
    >>> run = load_run("runs/tracking.h5")                           # doctest: +SKIP
    >>> [a.end for a in acquisitions(probe_errors(run), run)]        # doctest: +SKIP
    [96, 376, 873, 2058]
    """
    found = find_acquisitions(probes, **detector)
    return read_outliers((run.recurrent_eigenvalues - 1.0) / run.config.agent.tau, run.epochs,
                         found, tau=run.config.agent.tau)


def degradations(probes: Probes, found: list[Acquisition]) -> list[dict[str, float | int]]:
    """How much each acquisition raises the errors of the frequencies acquired before it:
    per (later, earlier) pair, the earlier error's highest value during the later drop
    (onset to end) over its value at that onset, and its last recorded value over that peak.

    Example
    -------
    >>> epochs = np.arange(5)
    >>> errors = np.array([[0.2, 1.0], [0.2, 0.9], [0.3, 0.3], [0.2, 0.1], [0.1, 0.1]])
    >>> probes = Probes(epochs, np.array([0.1, 0.2]), np.array([0, 1]), errors, 1.0)
    >>> found = [Acquisition(0.1, 0, 0, 0), Acquisition(0.2, 1, 2, 3)]
    >>> [(d["frequency"], d["during"], round(d["rise"], 3), round(d["recovery"], 3))
    ...  for d in degradations(probes, found)]
    [(0.1, 0.2, 1.5, 0.333)]
    """
    epochs = np.asarray(probes.epochs)
    errors = probes.normalized
    settled = [a.onset is not None and a.crossing is not None and a.end is not None
               for a in found]
    out = []
    for later, later_settled in zip(found, settled, strict=True):
        if not later_settled:
            continue
        inside = (epochs >= later.onset) & (epochs <= later.end)
        start = int(np.searchsorted(epochs, later.onset))
        for index, earlier in enumerate(found):
            if not settled[index] or earlier.crossing >= later.crossing:
                continue
            peak = float(errors[inside, index].max())
            out.append({"frequency": earlier.frequency, "during": later.frequency,
                        "rise": peak / float(errors[start, index]),
                        "recovery": float(errors[-1, index]) / peak})
    return out
