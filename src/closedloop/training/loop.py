"""The epoch loop: train runs to run files, record every epoch, checkpoint, resume.

:func:`train` trains one run, :func:`train_ensemble` several of one shape at once (one
:class:`~closedloop.training.trainer.Trainer` with a member axis); both write each run to its own
run file (:mod:`closedloop.runs.store`) exactly as if it had been trained alone.

The loop keeps both cores busy: while the compiled program computes chunk c, the host
fetches chunk c - 1, solves its effective gains (from the normal equations the compiled epoch
accumulated over the gain-fit rollouts, or by least squares on the test rollout: see
``evaluation.gain_fit_states``), and starts its spectra (eig(P) at the
origin and eig(W), float64 LAPACK) on a second thread; chunk c - 2, whose spectra are done by
then, is written as one segment followed by a checkpoint. A killed run resumes from its last
checkpoint and equals an uninterrupted one bit for bit on CPU.

Example
-------
>>> from closedloop.config import load_preset
>>> config = load_preset("di-tanh-closed", overrides=["agent.size=8"], epochs=3)
>>> train(config, "runs/tiny.h5").status                          # doctest: +SKIP
'complete'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from closedloop.analysis.coupling import operating_point_spectra
from closedloop.config import RunConfig, config_difference
from closedloop.errors import ClosedLoopError, ConfigError, IncompleteRunError
from closedloop.runs.store import CheckpointState, EpochRecord, RunWriter, Teacher, partial_dir
from closedloop.runtime import available_cores
from closedloop.training.loggers import Logger
from closedloop.training.memory import check_memory
from closedloop.training.sources import training_inputs
from closedloop.training.trainer import Trainer, recorded_gains


class OutputExistsError(ClosedLoopError):
    """The output path already holds a run (or an unfinished one)."""


@dataclass
class TrainResult:
    """What :func:`train` returns for a run."""

    path: Path
    status: str
    diverged_epoch: int | None
    last_record: EpochRecord | None


ProgressCallback = Callable[[EpochRecord], None]
MemberProgress = Callable[[int, EpochRecord], None]


def train(config: RunConfig, out: str | os.PathLike[str], *,
          initial: Mapping[str, Any] | None = None, teacher: Teacher | None = None,
          resume: bool = False, overwrite: bool = False,
          progress: ProgressCallback | None = None, loggers: Sequence[Logger] = ()
          ) -> TrainResult:
    """Train a run and write it to ``out`` (an ``.h5`` run file).

    Parameters
    ----------
    config
        The resolved config. On ``resume`` it must equal the stored one.
    out
        Path of the run file.
    initial, teacher
        Initial parameters and the teacher of an open-loop run (stored in the run file).
    resume
        Continue the unfinished run at ``out`` from its last checkpoint.
    overwrite
        Replace an existing run (finished or not) at ``out``.
    progress
        Called with every epoch's record.
    loggers
        :class:`~closedloop.training.loggers.Logger` objects that receive the run's records
        as they are written (e.g. a TensorBoard writer).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> config = load_preset("di-tanh-closed", overrides=["training.epochs=3"])
    >>> train(config, "runs/tiny.h5").status                          # doctest: +SKIP
    'complete'
    """
    return train_ensemble([config], [out], initials=[initial], teachers=[teacher],
                          resume=resume, overwrite=overwrite, loggers=[loggers],
                          progress=None if progress is None else
                          lambda _index, record: progress(record))[0]


def _named_inputs(configs: Sequence[RunConfig],
                  initials: Sequence[Mapping[str, Any] | None] | None,
                  teachers: Sequence[Teacher | None] | None, resume: bool
                  ) -> tuple[list[RunConfig], list[Mapping[str, Any] | None],
                             list[Teacher | None]]:
    """Per member, the initial parameters and teacher its config names where the caller gave
    neither (on ``resume`` only the config is completed: the run's folder holds the rest)."""
    configs = list(configs)
    initials = list(initials) if initials is not None else [None] * len(configs)
    teachers = list(teachers) if teachers is not None else [None] * len(configs)
    if len(initials) != len(configs) or len(teachers) != len(configs):
        raise ConfigError("give one initial-parameter set and one teacher (or None) per run")
    for index, config in enumerate(configs):
        named = config.teacher is not None or config.init_from is not None
        if named and initials[index] is None and teachers[index] is None:
            inputs = training_inputs(config, load=not resume)
            configs[index] = inputs.config
            initials[index], teachers[index] = inputs.initial, inputs.teacher
    return configs, initials, teachers


def train_ensemble(configs: Sequence[RunConfig], outs: Sequence[str | os.PathLike[str]], *,
                   initials: Sequence[Mapping[str, Any] | None] | None = None,
                   teachers: Sequence[Teacher | None] | None = None, resume: bool = False,
                   overwrite: bool = False, progress: MemberProgress | None = None,
                   loggers: Sequence[Sequence[Logger]] | None = None) -> list[TrainResult]:
    """Train ``configs`` together, member i recorded to ``outs[i]`` (a normal run file).

    Parameters
    ----------
    configs, outs
        One config and one output path per member (configs may differ only in
        :data:`~closedloop.training.trainer.VARYING`).
    initials, teachers
        Per-member initial parameters and teachers (stored in each run file). A member given
        neither whose config names a ``teacher`` or ``init_from`` (``RUN@EPOCH``, ``gain:K``,
        ``lqr``) has them read from there, as ``closedloop train`` does
        (:func:`~closedloop.training.sources.training_inputs`: a run teacher's epoch 0 is the
        default start).
    resume, overwrite
        As :func:`train`, for every member together.
    progress
        Called with (member index, record) for every epoch of every member.
    loggers
        Per member, the loggers that receive its records.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> configs = [load_preset("di-tanh-closed", ["agent.size=8"], seed=s, epochs=2)
    ...            for s in range(3)]
    >>> [r.status for r in train_ensemble(configs, [f"runs/e{s}.h5" for s in range(3)])
    ...  ]                                                              # doctest: +SKIP
    ['complete', 'complete', 'complete']
    """
    outs = [Path(o) for o in outs]
    if len(outs) != len(configs) or len(set(outs)) != len(outs):
        raise ConfigError("give one distinct output path per run")
    loggers = [list(member) for member in loggers] if loggers else [[] for _ in outs]
    if len(loggers) != len(outs):
        raise ConfigError("give one list of loggers per run")
    configs, initials, teachers = _named_inputs(configs, initials, teachers, resume)
    check_memory(list(configs))
    writers = [RunWriter(o, c) for o, c in zip(outs, configs, strict=True)]
    if resume:
        trainer, start, done = _resume(configs, outs, writers)
    else:
        for out in outs:
            folder = partial_dir(out)
            if (out.exists() or folder.exists()) and not overwrite:
                what = "an unfinished run" if folder.exists() else "a run"
                hint = "--resume to continue it or " if folder.exists() else ""
                raise OutputExistsError(f"{out}: {what} is already there (pass {hint}"
                                        "--overwrite to replace it)")
        trainer = Trainer(configs, initials, teachers)
        for index, writer in enumerate(writers):
            writer.start(trainer.parameters_numpy(index), trainer.teacher_sources[index])
        start, done = 0, {}
    recorder = _Recorder(trainer, writers, done, progress, loggers)
    for index, (config, out) in enumerate(zip(configs, outs, strict=True)):
        if index not in done:
            for logger in loggers[index]:
                logger.start(config, out)
    recorder.run(start)
    return recorder.results()


def _resume(configs: Sequence[RunConfig], outs: Sequence[Path], writers: Sequence[RunWriter]
            ) -> tuple[Trainer, int, dict[int, TrainResult]]:
    initials, teachers, states = [], [], []
    for out, writer, config in zip(outs, writers, configs, strict=True):
        if out.exists() and not partial_dir(out).exists():
            raise OutputExistsError(f"{out}: the run is already complete; nothing to resume")
        if not partial_dir(out).is_dir():
            raise IncompleteRunError(f"{out}: nothing to resume (no unfinished run there)")
        writer.check_resumable()
        stored = writer.stored_config()
        if stored != config:
            raise ConfigError(f"{out}: --resume needs the same settings as the unfinished run; "
                              f"differs in {', '.join(config_difference(stored, config))}")
        initial, teacher = writer.stored_inputs()
        initials.append(initial)
        teachers.append(teacher)
        states.append(writer.resume())
    trainer = Trainer(list(configs), initials, teachers)
    next_epochs = {None if s is None else s.next_epoch for s in states}
    if len(next_epochs) != 1:
        raise IncompleteRunError("these runs were checkpointed at different epochs; resume "
                                 "them one by one")
    start = next_epochs.pop() or 0
    done: dict[int, TrainResult] = {}
    if start:
        trainer.load_member_states([s.trainer_state for s in states])
        for index, state in enumerate(states):
            diverged = int(state.trainer_state["diverged_epoch"])
            if diverged >= 0:
                writers[index].finish("diverged", diverged)
                done[index] = TrainResult(outs[index], "diverged", diverged, None)
    return trainer, start, done


def recorded_spectra(trainer: Trainer, params: Mapping[str, np.ndarray], epochs: np.ndarray,
                     *, threads: int | None = 1) -> dict[str, np.ndarray]:
    """The spectra every epoch records, for parameter sets (leading axis) of ``epochs``: at
    the operating point of the plant that epoch trained on (the perturbed one from the
    perturbation's epoch on).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> trainer = Trainer(load_preset("di-tanh-closed", ["agent.size=4"]))
    >>> recorded_spectra(trainer, trainer.parameters_numpy(), np.array([0]))[
    ...     "coupled_eigenvalues"].shape
    (1, 6)
    """
    perturbation = trainer.configs[0].perturbation
    coupled = trainer.plant_jacobian_failure is None
    if perturbation is None:
        return operating_point_spectra(trainer.plant, trainer.agent, params, threads=threads,
                                       coupled=coupled)
    late = np.asarray(epochs) >= perturbation.epoch
    parts = [(mask, plant) for mask, plant in ((~late, trainer.plant),
                                               (late, trainer.perturbed_plant)) if mask.any()]
    results = [(mask, operating_point_spectra(plant, trainer.agent,
                                              {k: v[mask] for k, v in params.items()},
                                              threads=threads, coupled=coupled))
               for mask, plant in parts]
    merged = {}
    for name, value in results[0][1].items():
        merged[name] = np.empty((len(late), *value.shape[1:]), dtype=value.dtype)
    for mask, result in results:
        for name, value in result.items():
            merged[name][mask] = value
    return merged


def spectra_device(trainer: Trainer) -> jax.Device | None:
    """Where the recorded spectra's small JAX programs run: a CPU device the run does not
    train on when it trains on several (queued on a training device behind a chunk whose part
    waits in the all-reduce, such a program held the other part's thread and XLA aborted the
    stuck rendezvous, seen on 2 cores); None (JAX's default) otherwise."""
    spare = [d for d in jax.devices("cpu") if d not in trainer.devices]
    return spare[-1] if len(trainer.devices) > 1 and spare else None


def _spectra_on(device: jax.Device | None, trainer: Trainer, params: Mapping[str, np.ndarray],
                epochs: np.ndarray, *, threads: int | None) -> dict[str, np.ndarray]:
    with jax.default_device(device):
        return recorded_spectra(trainer, params, epochs, threads=threads)


@dataclass(frozen=True)
class _FetchedChunk:
    """A finished chunk on the host: per member and epoch whether it is recorded (``valid``;
    ``rows`` its (member, epoch) pairs), the parameters, the compiled records and trainer
    state, the effective gains per row, and the spectra being computed on the second
    thread."""

    epochs: np.ndarray
    valid: np.ndarray
    rows: np.ndarray
    params: dict[str, np.ndarray]
    records: dict[str, Any]
    state: dict[str, Any]
    gains: list[np.ndarray] | None
    spectra: Future[dict[str, np.ndarray]] | None


class _Recorder:
    """Turns compiled chunks into records, segments and checkpoints (see the module doc)."""

    def __init__(self, trainer: Trainer, writers: Sequence[RunWriter],
                 done: dict[int, TrainResult], progress: MemberProgress | None,
                 loggers: Sequence[Sequence[Logger]]) -> None:
        self.trainer, self.writers, self.done, self.progress = trainer, writers, done, progress
        self.loggers = loggers
        self.last_epoch = trainer.configs[0].training.epochs
        self.last_records: dict[int, EpochRecord] = {}
        # the eigenvalue problems get the cores training leaves free: all but one when the
        # CPU trains, all of them when an accelerator does
        cores = available_cores()
        self.spectra_threads = cores if trainer.device.platform != "cpu" else max(1, cores - 1)
        self.spectra_device = spectra_device(trainer)
        self.in_flight: tuple[int, Any, Any] | None = None   # dispatched, not yet fetched
        self.fetched: _FetchedChunk | None = None            # fetched, not yet written

    def run(self, start: int) -> None:
        trainer = self.trainer
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spectra") as spectra:
            for first in range(start, self.last_epoch + 1, trainer.program.chunk):
                if len(self.done) == trainer.members:
                    break
                self._shift((first, *trainer.run_chunk(first)), spectra)
            self._shift(None, spectra)      # drain: fetch the last chunk, then write it
            self._shift(None, spectra)
        for index in range(len(self.writers)):
            if index not in self.done:     # zero epochs to train, or resumed at the very end
                self._finish(index, "complete", None)

    def _shift(self, dispatched: tuple[int, Any, Any] | None, spectra: ThreadPoolExecutor
               ) -> None:
        """One step of the pipeline: fetch the chunk in flight, write the one fetched before,
        and put ``dispatched`` (None when draining) in flight."""
        ready = None if self.in_flight is None else self._fetch(*self.in_flight, spectra)
        if self.fetched is not None:
            self._write(self.fetched)
        self.fetched, self.in_flight = ready, dispatched

    def _fetch(self, first: int, state: Any, records: Any, spectra: ThreadPoolExecutor
               ) -> _FetchedChunk:
        """Host copies of a finished chunk; its spectra start on the second thread."""
        trainer = self.trainer
        host = jax.device_get({"state": state, "records": records})
        records = host["records"]
        epochs = first + np.arange(trainer.program.chunk)
        diverged = host["state"]["diverged"]
        valid = np.zeros((trainer.members, epochs.size), dtype=bool)
        for index in range(trainer.members):
            if index in self.done:
                continue
            end = self.last_epoch if diverged[index] < 0 else min(self.last_epoch,
                                                                  int(diverged[index]))
            valid[index] = epochs <= end
        params = trainer.merged_params(records["params"])
        rows = np.argwhere(valid)
        selected = {k: v[rows[:, 0], rows[:, 1]] for k, v in params.items()}
        future: Future[dict[str, np.ndarray]] | None = None
        if len(rows):
            future = spectra.submit(_spectra_on, self.spectra_device, trainer, selected,
                                    epochs[rows[:, 1]],
                                    threads=self.spectra_threads)
        gains = None
        if ("gain_fit_xtx" in records or "test_states" in records) and len(rows):
            gains = [recorded_gains(records, i, k) for i, k in rows]
        return _FetchedChunk(epochs, valid, rows, params, records, host["state"], gains, future)

    def _write(self, chunk: _FetchedChunk) -> None:
        """Records of a chunk to the writers, one segment and a checkpoint per run."""
        trainer = self.trainer
        spectra = chunk.spectra.result() if chunk.spectra is not None else None
        records, epochs = chunk.records, chunk.epochs
        interval = trainer.snapshot_interval
        for position, (index, k) in enumerate(chunk.rows):
            epoch = int(epochs[k])
            diverged_at = int(chunk.state["diverged"][index])
            snapshot = epoch % interval == 0 or epoch == self.last_epoch or epoch == diverged_at
            record = EpochRecord(
                epoch=epoch, train_loss=float(records["train_loss"][index, k]),
                test_loss=float(records["test_loss"][index, k]),
                grad_norm=float(records["grad_norm"][index, k]),
                spectral_radius=float(spectra["spectral_radius"][position]),
                coupled_eigenvalues=spectra["coupled_eigenvalues"][position],
                recurrent_eigenvalues=spectra["recurrent_eigenvalues"][position],
                gains=None if chunk.gains is None else chunk.gains[position],
                probe_errors=np.asarray(records["probe_errors"][index, k], dtype=np.float64)
                if "probe_errors" in records else None,
                snapshot={n: v[index, k].copy() for n, v in chunk.params.items()}
                if snapshot else None)
            self.writers[index].append(record)
            self.last_records[index] = record
            if self.progress is not None:
                self.progress(int(index), record)
            for logger in self.loggers[index]:
                logger.epoch(record)
        for index in range(trainer.members):
            if index in self.done or not chunk.valid[index].any():
                continue
            last = int(epochs[chunk.valid[index]][-1])
            state = trainer.member_state(index, chunk.state)
            self.writers[index].save(CheckpointState(last + 1, state))
            diverged_at = int(chunk.state["diverged"][index])
            if diverged_at >= 0:
                self._finish(index, "diverged", diverged_at)
            elif last == self.last_epoch:
                self._finish(index, "complete", None)

    def _finish(self, index: int, status: str, diverged_at: int | None) -> None:
        """Member ``index`` has ended: its run file, its result, its loggers."""
        self.writers[index].finish(status, diverged_at)
        self.done[index] = TrainResult(self.writers[index].path, status, diverged_at,
                                       self.last_records.get(index))
        for logger in self.loggers[index]:
            logger.finish(status)

    def results(self) -> list[TrainResult]:
        return [self.done[index] for index in range(self.trainer.members)]
