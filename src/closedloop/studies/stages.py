"""Training studies behind the stage analyses (science 4, 7): each trains runs and reads them.

Every run is a run file in ``workdir`` (a temporary folder when None); a study run again with
the same ``workdir`` reuses the files already there and trains only what is missing, and an
unfinished file is resumed.

* :func:`prescribed_overlap_runs` (stage 1, Fig. 3e): low-rank runs from prescribed initial
  sigma_zm values; sigma_zm per epoch.
* :func:`episode_length_sweep` (stage 2, Fig. 4): retrain a run from its epoch-k weights with
  other episode lengths T; the dominant-eigenvalue path per T.
* :func:`reduced_versus_full` (stage 3, Fig. 5): from a low-rank run's stabilisation epoch,
  train the reduced four-overlap model beside the full model, for several control costs.

Example
-------
>>> from closedloop.runs import load_run
>>> sweep = episode_length_sweep(load_run("runs/lowrank.h5"), epoch=10,
...                              lengths=(10, 50, 200), workdir="runs/t-sweep")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from closedloop.analysis.summary import order_parameter_history
from closedloop.analysis.theory import dominant_root
from closedloop.config import RunConfig, apply_overrides, build_config, load_preset
from closedloop.errors import ConfigError
from closedloop.runs.store import Run
from closedloop.scale.jobs import ensure_run

RunCallback = Callable[[str], None]


@contextmanager
def _folder(workdir: str | os.PathLike[str] | None) -> Any:
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="closedloop-") as tmp:
        yield Path(tmp)


def _derived_config(run_config: RunConfig, overrides: Iterable[str], **fields: Any
                    ) -> RunConfig:
    data = apply_overrides(run_config.model_dump(mode="json"), list(overrides))
    data.update(fields)
    return build_config(data)


def _label(value: float) -> str:
    return f"{value:+.4g}".replace("+", "p").replace("-", "m").replace(".", "_")


def dominant_eigenvalue_path(run: Run) -> np.ndarray:
    """Per epoch, the dominant eigenvalue of P (a complex pair's upper member)."""
    return dominant_root(run.coupled_eigenvalues[:, :2])


# --------------------------------------------------------------------------------------------
# stage 1


@dataclass
class OverlapRun:
    """A run started from a prescribed sigma_zm, and its overlap history."""

    initial_overlap: float
    run: Run
    history: dict[str, np.ndarray]


def overlap_config(value: float, *, epochs: int = 100, seed: int = 0,
                   preset: str = "di-lowrank-closed", overrides: Sequence[str] = ()
                   ) -> RunConfig:
    """The config of a low-rank run whose initial sigma_zm is ``value``."""
    return load_preset(preset, [*overrides, f"agent.prescribed_overlap={value}"], seed=seed,
                       epochs=epochs)


def prescribed_overlap_runs(values: Sequence[float], *, epochs: int = 100, seed: int = 0,
                            preset: str = "di-lowrank-closed", overrides: Sequence[str] = (),
                            workdir: str | os.PathLike[str] | None = None,
                            on_run: RunCallback | None = None) -> list[OverlapRun]:
    """Low-rank runs whose initial sigma_zm is prescribed (science 1.2 option; Fig. 3e).

    Returns
    -------
    list of OverlapRun
        One per value, with sigma_zm (and the other overlaps) per epoch in ``history``.
    """
    results = []
    with _folder(workdir) as folder:
        for value in values:
            config = overlap_config(value, epochs=epochs, seed=seed, preset=preset,
                                    overrides=overrides)
            if on_run:
                on_run(f"sigma_zm(0) = {value:+.3f}")
            run = ensure_run(config, folder / f"overlap-{_label(value)}-seed{seed}.h5")
            results.append(OverlapRun(float(value), run, order_parameter_history(run)))
    return results


# --------------------------------------------------------------------------------------------
# stage 2


@dataclass
class LengthRun:
    """The full model retrained with episode length ``steps`` from a run's epoch-k weights."""

    steps: int
    run: Run
    eigenvalue: np.ndarray
    stabilization_epoch: int | None


def length_config(run: Run, *, epoch: int, steps: int, epochs: int | None = None
                  ) -> RunConfig:
    """The config that retrains ``run`` from its epoch-``epoch`` weights with episode length
    ``steps`` (``epochs`` defaults to the rest of the run); start it from
    ``run.parameters(epoch)``."""
    epochs = run.last_epoch - epoch if epochs is None else epochs
    return _derived_config(run.config, [f"task.steps={steps}", f"training.epochs={epochs}",
                                        "training.initial_epoch_no_update=false"],
                           init_from=f"{run.path}@{epoch}")


def episode_length_sweep(run: Run, *, epoch: int = 10,
                         lengths: Sequence[int] = (10, 20, 50, 100, 200),
                         epochs: int | None = None,
                         workdir: str | os.PathLike[str] | None = None,
                         on_run: RunCallback | None = None) -> list[LengthRun]:
    """Retrain the full model from ``run``'s epoch-``epoch`` weights with each episode length
    (science 4, stage 2): short T sends the eigenvalues up, long T down. ``epochs`` defaults to
    the rest of the original run."""
    start = run.parameters(epoch)
    results = []
    with _folder(workdir) as folder:
        for steps in lengths:
            config = length_config(run, epoch=epoch, steps=steps, epochs=epochs)
            if on_run:
                on_run(f"T = {steps}")
            trained = ensure_run(config, folder / f"length-T{steps}-from{epoch}.h5",
                                 initial=start)
            results.append(LengthRun(int(steps), trained, dominant_eigenvalue_path(trained),
                                     trained.stabilization_epoch))
    return results


# --------------------------------------------------------------------------------------------
# stage 3


@dataclass
class ReducedComparison:
    """The full and the reduced model continued from the same epoch with control cost beta."""

    control_cost: float
    start_epoch: int
    full: Run
    reduced: Run

    def loss_gap(self) -> float:
        """max over epochs of |log10 L_reduced - log10 L_full| (training loss, same batches)."""
        full = self.full.metrics["train_loss"][1:]
        reduced = self.reduced.metrics["train_loss"][1:]
        return float(np.max(np.abs(np.log10(reduced) - np.log10(full))))


def reduced_configs(run: Run, *, control_cost: float, start_epoch: int,
                    epochs: int | None = None) -> tuple[RunConfig, RunConfig]:
    """Configs of the full low-rank model and of the reduced overlap model continued from
    ``run``'s epoch ``start_epoch`` with control cost ``control_cost`` (same task, optimiser
    and seed; ``epochs`` defaults to the rest of the run). Start both from
    ``run.parameters(start_epoch)``."""
    if run.config.agent.kind != "lowrank" or run.config.agent.rank != 1:
        raise ConfigError("the reduced model needs a rank-1 low-rank run")
    epochs = run.last_epoch - start_epoch if epochs is None else epochs
    settings = [f"training.epochs={epochs}", "training.initial_epoch_no_update=false",
                f"loss.control_cost={control_cost}"]
    full = _derived_config(run.config, settings, init_from=f"{run.path}@{start_epoch}")
    reduced = load_preset("di-reduced-closed")
    return full, _derived_config(full, [], preset=reduced.preset,
                                 description=reduced.description,
                                 agent=reduced.agent.model_dump(mode="json"))


def reduced_versus_full(run: Run, *, control_costs: Sequence[float] = (0.0, 0.5, 2.0, 5.0),
                        start_epoch: int | None = None, epochs: int | None = None,
                        workdir: str | os.PathLike[str] | None = None,
                        on_run: RunCallback | None = None) -> list[ReducedComparison]:
    """From a rank-1 low-rank run's stabilisation epoch (or ``start_epoch``), continue the full
    model and train the reduced four-overlap model (preset ``di-reduced-closed``) with the same
    task, optimiser, seed and control cost beta, for each beta (science 4, stage 3).

    Both start from identical dynamics (the reduction is exact), see the same batches, and
    differ only in how gradient descent moves the overlaps. ``epochs`` defaults to the rest of
    the original run.
    """
    start_epoch = run.stabilization_epoch if start_epoch is None else start_epoch
    if start_epoch is None:
        raise ConfigError(f"{run.path}: the run never stabilises; pass start_epoch")
    start = run.parameters(start_epoch)
    results = []
    with _folder(workdir) as folder:
        for beta in control_costs:
            full_config, reduced_config = reduced_configs(run, control_cost=beta,
                                                          start_epoch=start_epoch,
                                                          epochs=epochs)
            if on_run:
                on_run(f"beta = {beta:g}")
            label = f"beta{_label(beta)}-from{start_epoch}"
            results.append(ReducedComparison(
                float(beta), start_epoch,
                full=ensure_run(full_config, folder / f"full-{label}.h5", initial=start),
                reduced=ensure_run(reduced_config, folder / f"reduced-{label}.h5",
                                   initial=start)))
    return results
