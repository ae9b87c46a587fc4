"""Reading a run: stages, stabilisation, crossings, merges and order parameters.

:func:`analyze_run` is what ``closedloop analyze`` prints; every piece is also available on
its own (:mod:`closedloop.analysis.spectrum`, :mod:`closedloop.analysis.theory`).

Example
-------
>>> from closedloop.runs import load_run
>>> report = analyze_run(load_run("runs/lowrank.h5"))                  # doctest: +SKIP
>>> report.stages.stage1_end, report.stabilization_epoch              # doctest: +SKIP
(19, 163)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from closedloop.analysis.spectrum import (
    SpectralEvent,
    Stages,
    detect_stages,
    spectral_events,
    track_eigenvalues,
)
from closedloop.core.agents import OVERLAP_NAMES
from closedloop.runs.store import Run

if TYPE_CHECKING:
    from closedloop.analysis.tracking import Acquisition

MERGE_MODULUS = 0.5
"""Real-to-complex merges are reported for eigenvalues at least this large in modulus (the
many small eigenvalues of a full-rank network merge and split constantly)."""


def run_stages(run: Run, *, window: int = 5, growth_threshold: float = 0.01) -> Stages:
    """:func:`closedloop.analysis.spectrum.detect_stages` on a run's recorded eig(P)."""
    return detect_stages(run.coupled_eigenvalues, run.metrics["spectral_radius"], run.epochs,
                         window=window, growth_threshold=growth_threshold)


def has_order_parameters(run: Run) -> bool:
    """Whether the run's agent has the order parameters of a rank-1 network (a rank-1
    low-rank network, the reduced overlap model)."""
    return run.config.agent.has_order_parameters()


def order_parameter_history(run: Run) -> dict[str, np.ndarray]:
    """The four overlaps at every snapshot epoch: {"epoch", "s_zm", "s_zu", "s_vm", "s_vu"}.

    Example
    -------
    >>> history = order_parameter_history(load_run("runs/lowrank.h5"))  # doctest: +SKIP
    >>> history["s_zm"][:3]                                             # doctest: +SKIP
    """
    if not has_order_parameters(run):
        raise ValueError(f"{run.path}: order parameters need a rank-1 low-rank or overlaps run")
    rows = [run.config.agent.order_parameters(params) for _, params in run.iter_parameters()]
    history = {k: np.array([row[k] for row in rows]) for k in OVERLAP_NAMES}
    history["epoch"] = run.snapshot_epochs.copy()
    return history


def boundary_losses(run: Run, stages: Stages) -> dict[str, dict[str, Any] | None]:
    """Train and test loss at each stage boundary."""
    out: dict[str, dict[str, Any] | None] = {}
    for name, epoch in stages.to_json().items():
        if epoch is None:
            out[name] = None
            continue
        out[name] = {"epoch": epoch,
                     "train_loss": _finite(run.metrics["train_loss"][epoch]),
                     "test_loss": _finite(run.metrics["test_loss"][epoch])}
    return out


def final_eigenvalues(run: Run, count: int = 6) -> list[list[float]]:
    """The ``count`` largest eigenvalues of P at the last epoch, as [re, im] pairs."""
    last = run.coupled_eigenvalues[-1] if len(run.coupled_eigenvalues) else np.zeros(0)
    return [[float(v.real), float(v.imag)] for v in last[np.isfinite(last)][:count]]


def _identity(run: Run) -> dict[str, Any]:
    return {"path": str(run.path), "preset": run.config.preset, "seed": run.config.seed,
            "status": run.status, "epochs": run.last_epoch}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class RunAnalysis:
    """What ``closedloop analyze`` reports for a run (:func:`analyze_run`); :meth:`to_json`
    is what ``--json`` prints.

    Attributes
    ----------
    path, preset, seed, status, epochs
        Which run (``epochs``: its last epoch).
    stabilization_epoch
        The first epoch from which rho(P) < 1 (None: never).
    stages
        The stage boundaries read from the spectrum.
    boundary_losses
        Per boundary (``stage1_end``, ``stage2_end``): its epoch and the train and test loss
        there, None where it is not reached.
    crossings, merges
        Unit-circle crossings, and real pairs becoming complex with modulus >=
        :data:`MERGE_MODULUS`, along the tracked eigenvalues of P.
    final_eigenvalues
        The largest eigenvalues of P at the last epoch.
    window, growth_threshold
        The stage-1 detector's settings.
    order_parameters
        Rank-1 runs: s_zm, s_zu, s_vm, s_vu per snapshot epoch (and ``epoch``); else None.
    acquisitions
        Tracking runs: each probe frequency's acquisition
        (:class:`~closedloop.analysis.tracking.Acquisition`); else None.
    """

    path: str
    preset: str
    seed: int
    status: str
    epochs: int
    stabilization_epoch: int | None
    stages: Stages
    boundary_losses: dict[str, dict[str, Any] | None]
    crossings: list[SpectralEvent]
    merges: list[SpectralEvent]
    final_eigenvalues: list[complex]
    window: int
    growth_threshold: float
    order_parameters: dict[str, np.ndarray] | None = None
    acquisitions: list[Acquisition] | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: ``path``, ``preset``, ``seed``, ``status``,
        ``epochs``, ``stabilization_epoch``, ``stages``, ``boundary_losses``, ``crossings``
        ({"epoch", "eigenvalue": [re, im], "direction"}), ``merges`` ({"epoch",
        "eigenvalue"}), ``final_eigenvalues`` ([re, im] pairs), ``detector``, and where they
        apply ``order_parameters`` (lists) and ``acquisitions``."""
        report: dict[str, Any] = {
            "path": self.path, "preset": self.preset, "seed": self.seed,
            "status": self.status, "epochs": self.epochs,
            "stabilization_epoch": self.stabilization_epoch,
            "stages": self.stages.to_json(),
            "boundary_losses": self.boundary_losses,
            "crossings": [{k: v for k, v in e.to_json().items() if k != "kind"}
                          for e in self.crossings],
            "merges": [{"epoch": e.epoch, "eigenvalue": e.to_json()["eigenvalue"]}
                       for e in self.merges],
            "final_eigenvalues": [[v.real, v.imag] for v in self.final_eigenvalues],
            "detector": {"window": self.window, "growth_threshold": self.growth_threshold},
        }
        if self.order_parameters is not None:
            report["order_parameters"] = {k: v.tolist()
                                          for k, v in self.order_parameters.items()}
        if self.acquisitions is not None:
            report["acquisitions"] = [a.to_json() for a in self.acquisitions]
        return report


def analyze_run(run: Run, *, window: int = 5, growth_threshold: float = 0.01) -> RunAnalysis:
    """Everything ``closedloop analyze`` reports for a run: stages, stabilisation, crossings
    and merges of eig(P), for rank-1 runs the order parameters, for tracking runs each
    frequency's acquisition (:mod:`closedloop.analysis.tracking`).
    """
    stages = run_stages(run, window=window, growth_threshold=growth_threshold)
    events = spectral_events(track_eigenvalues(run.coupled_eigenvalues), run.epochs)
    acquired = None
    if run.config.task.kind == "tracking":
        from closedloop.analysis.tracking import acquisitions, probe_errors

        acquired = acquisitions(probe_errors(run), run)
    return RunAnalysis(
        path=str(run.path), preset=run.config.preset, seed=run.config.seed,
        status=run.status, epochs=run.last_epoch,
        stabilization_epoch=run.stabilization_epoch, stages=stages,
        boundary_losses=boundary_losses(run, stages),
        crossings=[e for e in events if e.kind == "crossing"],
        merges=[e for e in events if e.kind == "merge" and abs(e.eigenvalue) >= MERGE_MODULUS],
        final_eigenvalues=[complex(re, im) for re, im in final_eigenvalues(run)],
        window=window, growth_threshold=growth_threshold,
        order_parameters=order_parameter_history(run) if has_order_parameters(run) else None,
        acquisitions=acquired)


def _finite_list(values: np.ndarray) -> list[Any]:
    """Nested list of floats with NaN/inf as None (JSON null)."""
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(array), array, None).tolist()


def summarize_run(run: Run) -> dict[str, Any]:
    """The JSON summary ``closedloop inspect --json`` prints: identity, per-epoch curves,
    stabilisation, stages and the final eigenvalues."""
    metrics = run.metrics
    summary: dict[str, Any] = {
        **_identity(run),
        "diverged_epoch": run.diverged_epoch,
        "mode": run.config.training.mode,
        "teacher": run.teacher.source if run.teacher else None,
        "init_from": run.config.init_from,
        "epoch": metrics["epoch"].tolist(),
        "train_loss": _finite_list(metrics["train_loss"]),
        "test_loss": _finite_list(metrics["test_loss"]),
        "grad_norm": _finite_list(metrics["grad_norm"]),
        "spectral_radius": _finite_list(metrics["spectral_radius"]),
        "stabilization_epoch": run.stabilization_epoch,
        "stages": run_stages(run).to_json(),
        "final_eigenvalues": final_eigenvalues(run),
    }
    if "gains" in metrics:
        gains = metrics["gains"]
        summary["gains"] = _finite_list(gains[:, 0, :] if gains.shape[1] == 1 else gains)
    return summary
