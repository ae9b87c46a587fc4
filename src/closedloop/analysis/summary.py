"""Reading a run: stages, stabilisation, crossings, merges and order parameters.

:func:`analyze_run` is what ``closedloop analyze`` prints; every piece is also available on
its own (:mod:`closedloop.analysis.spectrum`, :mod:`closedloop.analysis.theory`).

Example
-------
>>> from closedloop.runs import load_run
>>> report = analyze_run(load_run("runs/lowrank.h5"))                  # doctest: +SKIP
>>> report["stages"], report["stabilization_epoch"]                     # doctest: +SKIP
({'stage1_end': 19, 'stage2_end': 163}, 163)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from closedloop.analysis.spectrum import Stages, detect_stages, spectral_events, track_eigenvalues
from closedloop.core.agents import OVERLAP_NAMES, order_parameters
from closedloop.runs.store import Run

MERGE_MODULUS = 0.5
"""Real-to-complex merges are reported for eigenvalues at least this large in modulus (the
many small eigenvalues of a full-rank network merge and split constantly)."""


def run_stages(run: Run, *, window: int = 5, growth_threshold: float = 0.01) -> Stages:
    """:func:`closedloop.analysis.spectrum.detect_stages` on a run's recorded eig(P)."""
    return detect_stages(run.coupled_eigenvalues, run.metrics["spectral_radius"], run.epochs,
                         window=window, growth_threshold=growth_threshold)


def has_order_parameters(run: Run) -> bool:
    """Whether the run's agent is a rank-1 low-rank network or the reduced overlap model."""
    agent = run.config.agent
    return agent.kind == "overlaps" or (agent.kind == "lowrank" and agent.rank == 1)


def order_parameter_history(run: Run) -> dict[str, np.ndarray]:
    """The four overlaps at every snapshot epoch: {"epoch", "s_zm", "s_zu", "s_vm", "s_vu"}.

    Example
    -------
    >>> history = order_parameter_history(load_run("runs/lowrank.h5"))  # doctest: +SKIP
    >>> history["s_zm"][:3]                                             # doctest: +SKIP
    """
    if not has_order_parameters(run):
        raise ValueError(f"{run.path}: order parameters need a rank-1 low-rank or overlaps run")
    rows = []
    for _, params in run.iter_parameters():
        if run.config.agent.kind == "overlaps":
            rows.append({k: float(params[k]) for k in OVERLAP_NAMES})
        else:
            rows.append(order_parameters(params))
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


def analyze_run(run: Run, *, window: int = 5, growth_threshold: float = 0.01) -> dict[str, Any]:
    """Everything ``closedloop analyze --json`` reports for a run.

    Keys: ``path``, ``preset``, ``seed``, ``status``, ``epochs``, ``stabilization_epoch``,
    ``stages`` ({"stage1_end", "stage2_end"}), ``boundary_losses``, ``crossings`` (list of
    {"epoch", "eigenvalue": [re, im], "direction": "in"|"out"}), ``merges`` (real pairs
    becoming complex, modulus >= 0.5), ``final_eigenvalues`` (6 largest, [re, im]), ``detector``
    (the thresholds used), for rank-1 runs ``order_parameters`` (per-epoch lists under
    ``s_zm``, ``s_zu``, ``s_vm``, ``s_vu``, plus ``epoch``) and, for tracking runs,
    ``acquisitions``: per probe frequency its onset, crossing and end epochs, the outlier
    eigenvalue of (-I + W)/tau at the end, 2 pi f and the relative error
    (:mod:`closedloop.analysis.tracking`).
    """
    stages = run_stages(run, window=window, growth_threshold=growth_threshold)
    tracked = track_eigenvalues(run.coupled_eigenvalues)
    events = spectral_events(tracked, run.epochs)
    report: dict[str, Any] = {
        **_identity(run),
        "stabilization_epoch": run.stabilization_epoch,
        "stages": stages.to_json(),
        "boundary_losses": boundary_losses(run, stages),
        "crossings": [{k: v for k, v in e.to_json().items() if k != "kind"}
                      for e in events if e.kind == "crossing"],
        "merges": [{"epoch": e.epoch, "eigenvalue": e.to_json()["eigenvalue"]}
                   for e in events if e.kind == "merge" and abs(e.eigenvalue) >= MERGE_MODULUS],
        "final_eigenvalues": final_eigenvalues(run),
        "detector": {"window": window, "growth_threshold": growth_threshold},
    }
    if has_order_parameters(run):
        history = order_parameter_history(run)
        report["order_parameters"] = {k: v.tolist() for k, v in history.items()}
    if run.config.task.kind == "tracking":
        from closedloop.analysis.tracking import acquisitions, probe_errors

        report["acquisitions"] = [a.to_json() for a in acquisitions(probe_errors(run), run)]
    return report


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
