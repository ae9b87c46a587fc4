"""Figure 6: tracking (science 6, 7.6); claim C6 (:mod:`closedloop.analysis.claims.c6`)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.replay import replay, run_model
from closedloop.analysis.tracking import (
    ACQUIRED,
    acquisitions,
    continuous_eigenvalues,
    degradations,
    find_acquisitions,
    probe_errors,
)
from closedloop.core.tasks import sample_batch, time_grid
from closedloop.paper.base import FigureAnalysis, Job, Settings, run_name
from closedloop.paper.pair import closed_open_jobs, pair_roles
from closedloop.runs.store import Run
from closedloop.training.trainer import key_from_seed

TITLE = "Tracking: a staircase, frequencies acquired from low to high"
HUMAN = (0.125, 0.20, 0.30, 0.475)     # normalised acquisition times digitised in the paper
CURVES = {"closed_test": ("tracking-closed", "test_loss"),
          "open_test": ("tracking-open", "test_loss")}
"""Curves whose spread over seeds the figure shades: data key -> (run stem, metric)."""


def names(seed: int) -> tuple[str, str]:
    """(closed, open) job names."""
    return run_name("tracking-closed", seed), run_name("tracking-open", seed)


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed-loop tracking run and its open-loop twin (teacher = its last epoch)."""
    return closed_open_jobs("tracking-closed", "tracking-open", seed,
                            settings.pick(10000, 150), 300)


def _positions(run: Run, epoch: int, reference: np.ndarray) -> np.ndarray:
    plant, _ = run_model(run)
    traj = replay(run, epoch, x0=np.zeros((reference.shape[0], plant.n_states)),
                  steps=reference.shape[1], reference=reference)
    return traj.states[:, 1:] @ plant.C.T


def roles(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[str, Run]:
    """The closed-loop tracking run of one seed and its open-loop twin."""
    return pair_roles(runs, *names(seed))


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Probes, acquisitions, eigenvalues, open-loop comparison, and claim C6."""
    closed_name, open_name = names(seed)
    closed, opened = runs[closed_name], runs[open_name]
    total = closed.last_epoch
    probes = probe_errors(closed)
    found = acquisitions(probes, closed)
    claim = CLAIMS.get("C6").judge_acquisitions(
        found, degradations(probes, found), find_acquisitions(probe_errors(opened)), total)
    ends = [a.end for a in found]
    frequencies = probes.frequencies

    test = sample_batch(closed.config.task, 4, key_from_seed(closed.config.evaluation.test_seed),
                        batch_size=1, dt=closed.config.plant.dt)
    reference = np.asarray(test.reference)
    known = sorted(e for e in ends if e is not None)
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
        "frequencies": frequencies, "acquisitions": [a.to_json() for a in found],
        "time": time_grid(closed.config.task.steps, closed.config.plant.dt),
        "stage_reference": reference[0, :, 0],
        "stage_rollouts": [(e, _positions(closed, e, reference)[0, :, 0]) for e in stage_epochs],
        "eigen_epochs": np.repeat(closed.epochs[::stride], rows.shape[1]),
        "eigen_imag": np.abs(rows.imag).ravel(),
        "outlier_paths": [(a.path_epochs, np.abs(a.path.imag)) for a in found],
        "probe_epochs": probes.epochs, "probe_errors": probes.normalized,
        "acquired_level": ACQUIRED,
        "normalized_acquisition": [np.nan if e is None else e / total for e in ends],
        "human": list(HUMAN),
    }
    return FigureAnalysis([claim], data)
