"""The rank-1 low-rank run behind figures 3-5, and helpers shared by those figures."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis.replay import replay
from closedloop.config import load_preset
from closedloop.paper.base import Job, JobInputs, Settings, run_name
from closedloop.runs.store import Run


def lowrank_name(seed: int) -> str:
    """Job name of the low-rank run of a seed."""
    return run_name("di-lowrank-closed", seed)


def lowrank_job(settings: Settings, seed: int) -> Job:
    """The paper's low-rank closed-loop run (1000 epochs; 250 in quick mode)."""
    epochs = settings.pick(1000, 250)

    def build(_: Mapping[str, Run]) -> JobInputs:
        return JobInputs(load_preset("di-lowrank-closed", seed=seed, epochs=epochs))

    return Job(lowrank_name(seed), build, cost=epochs * 50)


def long_rollout(run: Run, epoch: int, steps: int, x0: tuple[float, float] = (1.0, -1.0)
                 ) -> np.ndarray:
    """Positions and velocities (steps + 1, 2) of the network after ``epoch`` controlling the
    plant from ``x0`` for ``steps`` steps (beyond the training horizon if longer)."""
    return replay(run, epoch, x0=[x0], steps=steps).states[0]


def dominant_path(run: Run) -> np.ndarray:
    """Per epoch, the dominant eigenvalue of P with non-negative imaginary part."""
    values = run.coupled_eigenvalues[:, 0]
    return values.real + 1j * np.abs(values.imag)
