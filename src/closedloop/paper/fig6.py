"""Figure 6: tracking (science 6, 7.6); claim C6."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np

from closedloop.analysis.claims import Claim
from closedloop.analysis.replay import replay, run_model
from closedloop.analysis.tracking import (
    ACQUIRED,
    acquisition_epochs,
    continuous_eigenvalues,
    outlier_frequencies_at_acquisition,
    probe_errors,
)
from closedloop.core.tasks import sample_batch, time_grid
from closedloop.paper.base import FigureAnalysis, Job, Settings, run_name
from closedloop.paper.pair import closed_open_jobs
from closedloop.runs.store import Run
from closedloop.training.trainer import key_from_seed

TITLE = "Tracking: a staircase, frequencies acquired from low to high"
HUMAN = (0.125, 0.20, 0.30, 0.475)     # normalised acquisition times digitised in the paper
SEPARATION = 0.02                      # consecutive acquisitions >= 2 % of training apart
FREQUENCY_TOLERANCE = 0.15             # |Im lambda - 2 pi f| <= 15 % of 2 pi f


def names(seed: int) -> tuple[str, str]:
    """(closed, open) job names."""
    return run_name("tracking-closed", seed), run_name("tracking-open", seed)


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed-loop tracking run and its open-loop twin (teacher = its last epoch)."""
    return closed_open_jobs("tracking-closed", "tracking-open", seed,
                            settings.pick(10000, 150), 300)


def _separated(epochs: list[int | None], total: int) -> bool:
    if any(e is None for e in epochs):
        return False
    ordered = sorted(epochs)
    return bool(np.all(np.diff(ordered) >= SEPARATION * total))


def _positions(run: Run, epoch: int, reference: np.ndarray) -> np.ndarray:
    plant, _ = run_model(run)
    traj = replay(run, epoch, x0=np.zeros((reference.shape[0], plant.n_states)),
                  steps=reference.shape[1], reference=reference)
    return traj.states[:, 1:] @ plant.C.T


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Probes, acquisitions, eigenvalues, open-loop comparison, and claim C6."""
    closed_name, open_name = names(seed)
    closed, opened = runs[closed_name], runs[open_name]
    total = closed.last_epoch
    probes = probe_errors(closed)
    acquired = acquisition_epochs(probes)
    frequencies = probes.frequencies
    open_probes = probe_errors(opened)
    open_acquired = acquisition_epochs(open_probes)
    staircase = _separated(acquired, total)
    ordered = all(a is not None for a in acquired) and bool(
        np.all(np.diff([a for a in acquired if a is not None]) > 0))
    matched = outlier_frequencies_at_acquisition(closed, acquired, frequencies)
    targets = 2 * math.pi * frequencies
    locked = bool(np.all(np.abs(matched - targets) <= FREQUENCY_TOLERANCE * targets))
    open_staircase = _separated(open_acquired, opened.last_epoch)
    claim = Claim(
        "C6",
        "In closed loop the tracking loss falls as a staircase: frequencies are acquired one "
        "at a time from low to high, each adding an eigenvalue pair of the RNN's "
        "continuous-time Jacobian at 2 pi f; the open-loop student shows no staircase.",
        f"every probe frequency is acquired (error < {ACQUIRED:g} x a^2/2) in closed loop, "
        f"consecutive acquisitions >= {SEPARATION:.0%} of training apart, in increasing "
        "order of frequency; at each acquisition epoch (-I + W)/tau has an outlier "
        "eigenvalue (outside 1.5 x the random bulk's radius) with |Im - 2 pi f| <= "
        f"{FREQUENCY_TOLERANCE:.0%} of 2 pi f; and the open-loop student's acquisitions are "
        "not so separated (no staircase).",
        {"frequencies_hz": frequencies.tolist(), "acquisition_epochs_closed": acquired,
         "acquisition_epochs_open": open_acquired, "total_epochs": total,
         "normalized_acquisition_closed": [None if a is None else a / total
                                           for a in acquired],
         "human_normalized_acquisition": list(HUMAN),
         "outlier_imag_at_acquisition_rad_per_s": matched.tolist(),
         "targets_rad_per_s": targets.tolist(),
         "staircase_closed": staircase, "ordered_low_to_high": ordered,
         "staircase_open": open_staircase},
        bool(staircase and ordered and locked and not open_staircase))

    test = sample_batch(closed.config.task, 4, key_from_seed(closed.config.evaluation.test_seed),
                        batch_size=1, dt=closed.config.plant.dt)
    reference = np.asarray(test.reference)
    known = sorted(a for a in acquired if a is not None)
    marks = [0, *known, total]
    stage_epochs = sorted({int(closed.snapshot_epochs[np.argmin(np.abs(
        closed.snapshot_epochs - (lo + hi) / 2))]) for lo, hi in itertools.pairwise(marks)})
    eigen = continuous_eigenvalues(closed)
    stride = max(1, len(eigen) // 400)
    rows = eigen[::stride, :12]
    data = {
        "example": {"reference": reference[0],
                    "position": _positions(closed, closed.last_epoch, reference)[0]},
        "epochs": closed.epochs, "closed_test": closed.metrics["test_loss"],
        "open_epochs": opened.epochs, "open_test": opened.metrics["test_loss"],
        "frequencies": frequencies, "acquisitions": acquired,
        "time": time_grid(closed.config.task.steps, closed.config.plant.dt),
        "stage_reference": reference[0, :, 0],
        "stage_rollouts": [(e, _positions(closed, e, reference)[0, :, 0]) for e in stage_epochs],
        "eigen_epochs": np.repeat(closed.epochs[::stride], rows.shape[1]),
        "eigen_imag": np.abs(rows.imag).ravel(),
        "probe_epochs": probes.epochs, "probe_errors": probes.errors,
        "threshold": ACQUIRED * probes.level,
        "normalized_acquisition": [np.nan if a is None else a / total for a in acquired],
        "human": list(HUMAN),
    }
    return FigureAnalysis([claim], data)
