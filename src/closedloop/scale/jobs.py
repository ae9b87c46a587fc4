"""Jobs: the one way closedloop trains many runs, shared by ``reproduce``, the studies and
sweeps.

A :class:`Job` is one run file to make: a name (the file is ``FOLDER/NAME.h5``), the jobs it
depends on, and a ``build`` function that turns their finished runs into what to train (a
config, initial weights, a teacher). :func:`execute` runs the jobs in dependency order on any
``concurrent.futures`` executor: a Dask cluster's (``reproduce`` and sweeps, through
:func:`closedloop.scale.cluster.run_jobs`), or :class:`InlineExecutor` (the studies, in the
calling process). Ready jobs whose configs share a shape are trained together as one
:class:`~closedloop.training.trainer.Trainer` (split evenly over the workers, at most
``group_size`` per task), costliest first.

Every task (:func:`train_group`) locks the run files it writes, skips finished runs (after
checking their config), resumes unfinished ones from their checkpoints, and trains the rest,
so running the same jobs again does only what is missing, a task retried after its worker died
continues where it stopped, and no run file is ever written by two processes. Workers report
their epochs through :func:`progress_sender` (Dask events); :func:`execute` turns everything
else into events for a display.

Example
-------
>>> from closedloop.config import load_preset
>>> job = Job("closed-s0", lambda runs: JobInputs(load_preset("di-tanh-closed", epochs=5)))
>>> result = execute([job], Path("runs"), InlineExecutor())            # doctest: +SKIP
>>> result.runs["closed-s0"].status                                     # doctest: +SKIP
'complete'
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from closedloop.config import RunConfig, config_from_json
from closedloop.errors import ClosedLoopError, ConfigError, IncompleteRunError
from closedloop.runs.store import (
    Run,
    Teacher,
    is_finished,
    load_run,
    partial_dir,
    remove_leftovers,
)
from closedloop.training.loggers import LogSpec
from closedloop.training.trainer import shape_signature

LOCKS_FOLDER = ".locks"
PROGRESS_TOPIC = "closedloop-progress"
DEFAULT_GROUP_SIZE = 32


class JobFailedError(ClosedLoopError):
    """Jobs that cannot be scheduled (an unknown dependency, a cycle)."""


@dataclass
class JobInputs:
    """What a job trains: a config, and optionally initial weights and a teacher."""

    config: RunConfig
    initial: dict[str, np.ndarray] | None = None
    teacher: Teacher | None = None


@dataclass
class Job:
    """One run to train. ``build`` receives the finished runs named in ``depends``.

    ``cost`` orders the work (the costliest ready job starts first); it is a rough number of
    step-equivalents (epochs x episode length).
    """

    name: str
    build: Callable[[Mapping[str, Run]], JobInputs]
    depends: tuple[str, ...] = ()
    cost: float = 1.0


@dataclass
class ExecutionResult:
    """Finished runs by job name, failed jobs with the reason, and the jobs that were already
    finished before (reused without training)."""

    runs: dict[str, Run] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobsTotal:
    """The first event: how many run files the jobs make."""

    count: int


@dataclass(frozen=True)
class JobsFinished:
    """Run files made (or found already made), or, with a ``reason``, that could not be."""

    names: tuple[str, ...]
    reason: str | None = None

    @property
    def failed(self) -> bool:
        """Whether these runs failed."""
        return self.reason is not None


@dataclass(frozen=True)
class EpochProgress:
    """A training task's progress: ``epoch`` of ``total`` epochs of the task ``label``."""

    label: str
    epoch: int
    total: int


JobEvent = JobsTotal | JobsFinished | EpochProgress
EventCallback = Callable[[JobEvent], None]
"""Receives a :class:`JobsTotal`, then :class:`JobsFinished` and :class:`EpochProgress`
events as the jobs go."""


# -- locks ----------------------------------------------------------------------------------

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the lock of run file ``path`` (waiting for another holder to finish).

    An advisory ``flock`` on ``.locks/NAME.lock`` next to the run, plus a lock per process
    (two threads of one worker). A holder that dies releases it with its process.

    Example
    -------
    >>> with run_lock(Path("sweeps/pair/runs/di-tanh-closed-seed0.h5")):  # doctest: +SKIP
    ...     pass                                       # only this process writes that run
    """
    folder = path.parent / LOCKS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    with _THREAD_LOCKS_GUARD:
        local = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with local:
        descriptor = os.open(folder / f"{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


# -- the task a worker runs -----------------------------------------------------------------


def progress_sender(label: str, total: int) -> Callable[[int, Any], None] | None:
    """A training progress callback that posts ``{"label", "epoch", "total"}`` about once a
    second as a Dask event (topic :data:`PROGRESS_TOPIC`) when running on a Dask worker, else
    None."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None

    def post(message: dict[str, Any]) -> None:
        worker.log_event(PROGRESS_TOPIC, message)
    last = [0.0]

    def send(index: int, record: Any) -> None:
        now = time.monotonic()
        if index == 0 and (now - last[0] > 1.0 or record.epoch + 1 == total):
            last[0] = now
            post({"label": label, "epoch": record.epoch + 1, "total": total})

    return send


def finished_run(path: Path, config: RunConfig) -> Run:
    """The finished run at ``path``, which must have been trained with ``config``; what a
    writer killed while finishing it left next to it is removed (call it holding the run's
    lock).

    Raises
    ------
    ConfigError
        When the file holds a run with other settings (it is never overwritten).
    """
    remove_leftovers(path)
    run = load_run(path)
    if run.config != config:
        raise ConfigError(f"{path}: holds a run with other settings; move it away or use "
                          "another folder")
    return run


def ensure_run(config: RunConfig, path: str | os.PathLike[str], *,
               initial: Mapping[str, Any] | None = None, teacher: Teacher | None = None,
               progress: Callable[[Any], None] | None = None) -> Run:
    """The run at ``path``: loaded if it is there with this config, resumed if unfinished,
    trained otherwise. A finished file with another config is an error (never overwritten).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> ensure_run(load_preset("di-tanh-closed", epochs=5), "runs/a.h5").status  # doctest: +SKIP
    'complete'
    """
    train_group([config], [Path(path)], [initial], [teacher],
                progress=None if progress is None else lambda _index, record: progress(record))
    return load_run(path)


def train_group(configs: Sequence[RunConfig | str], paths: Sequence[str | os.PathLike[str]],
                initials: Sequence[Mapping[str, Any] | None] | None = None,
                teachers: Sequence[Teacher | None] | None = None, *, label: str | None = None,
                progress: Callable[[int, Any], None] | None = None,
                log: Sequence[LogSpec] = ()) -> dict[str, str]:
    """Make the runs ``paths`` (one per config; configs may be JSON): what a task runs.

    Under the lock of every path: finished runs are checked (a finished file with other
    settings is an error) and kept, unfinished ones resumed (together when they were
    checkpointed at the same epoch, else one by one), the rest trained together; each run is
    logged by the loggers ``log`` names. Returns each path's status.
    """
    from closedloop.runtime import configure_worker
    from closedloop.training import train_ensemble
    from closedloop.training.loggers import loggers_for

    configure_worker()
    configs = [config_from_json(c) if isinstance(c, str) else c for c in configs]
    paths = [Path(p) for p in paths]
    initials = list(initials or [None] * len(paths))
    teachers = list(teachers or [None] * len(paths))
    if progress is None:
        name = label or paths[0].stem
        progress = progress_sender(name, configs[0].training.epochs + 1)
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(run_lock(path))
        fresh, unfinished = [], []
        for index, path in enumerate(paths):
            if is_finished(path):
                finished_run(path, configs[index])
            elif partial_dir(path).exists():
                unfinished.append(index)
            else:
                fresh.append(index)
        groups = [unfinished] if len(unfinished) > 1 else []
        if groups:
            try:
                train_ensemble([configs[i] for i in unfinished], [paths[i] for i in unfinished],
                               resume=True, progress=progress,
                               loggers=loggers_for(log, [paths[i] for i in unfinished]))
            except IncompleteRunError:
                groups = []      # checkpointed at different epochs: one by one
        if not groups:
            for i in unfinished:
                train_ensemble([configs[i]], [paths[i]], resume=True, progress=progress,
                               loggers=loggers_for(log, [paths[i]]))
        if fresh:
            train_ensemble([configs[i] for i in fresh], [paths[i] for i in fresh],
                           initials=[initials[i] for i in fresh],
                           teachers=[teachers[i] for i in fresh], progress=progress,
                           loggers=loggers_for(log, [paths[i] for i in fresh]))
        return {str(path): load_run(path).status for path in paths}


# -- executors ------------------------------------------------------------------------------


class InlineExecutor(Executor):
    """Runs every task at once in the calling process (returns finished futures)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:       # recorded, as a worker would
            future.set_exception(exc)
        return future


# -- the driver -----------------------------------------------------------------------------


def _chunks(members: list[tuple[Job, JobInputs]], capacity: int, group_size: int | None
            ) -> list[list[tuple[Job, JobInputs]]]:
    """Ready jobs grouped by shape, each group split evenly into tasks."""
    by_shape: dict[str, list[tuple[Job, JobInputs]]] = {}
    for job, inputs in members:
        by_shape.setdefault(shape_signature(inputs.config), []).append((job, inputs))
    out = []
    for group in by_shape.values():
        size = group_size or min(DEFAULT_GROUP_SIZE, max(1, math.ceil(len(group) / capacity)))
        count = math.ceil(len(group) / size)
        width = math.ceil(len(group) / count)
        out += [group[i:i + width] for i in range(0, len(group), width)]
    return sorted(out, key=lambda chunk: -max(job.cost for job, _ in chunk))


def execute(jobs: Sequence[Job], folder: Path, executor: Executor, *, capacity: int = 1,
            group_size: int | None = None, on_event: EventCallback | None = None,
            poll: float = 0.3, log: Sequence[LogSpec] = ()) -> ExecutionResult:
    """Make every job's run file in ``folder`` (only what is missing), on ``executor``.

    Parameters
    ----------
    jobs
        Jobs; names must be unique (duplicates with the same name are merged).
    folder
        Where the run files are (``NAME.h5``); created.
    executor
        Runs the tasks (a Dask client's ``get_executor()``, :class:`InlineExecutor`).
    capacity
        How many tasks the executor runs at once (sizes the even split).
    group_size
        Most runs per task (1: every run alone). Default: the ready runs of one shape split
        evenly over ``capacity``, at most 32 per task.
    on_event
        Receives the events of :data:`EventCallback`.
    poll
        Seconds between looks at the running tasks.
    log
        Loggers for every run trained (``--log NAME DIR``; one subfolder per run).

    Returns
    -------
    ExecutionResult
        A failure does not stop the other jobs; jobs that depend on a failed one fail too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    notify = on_event or (lambda event: None)
    pending: dict[str, Job] = {}
    for job in jobs:
        pending.setdefault(job.name, job)
    unknown = {d for job in pending.values() for d in job.depends} - set(pending)
    if unknown:
        raise JobFailedError(f"jobs depend on undeclared jobs: {', '.join(sorted(unknown))}")
    result = ExecutionResult()
    notify(JobsTotal(len(pending)))
    running: dict[Future[Any], list[str]] = {}

    def fail(names: list[str], reason: str) -> None:
        result.failed.update(dict.fromkeys(names, reason))
        notify(JobsFinished(tuple(names), reason))

    while pending or running:
        for job in [j for j in pending.values() if any(d in result.failed for d in j.depends)]:
            del pending[job.name]
            fail([job.name], "depends on a failed job: " + ", ".join(
                d for d in job.depends if d in result.failed))
        ready = [job for job in pending.values() if all(d in result.runs for d in job.depends)]
        to_train: list[tuple[Job, JobInputs]] = []
        for job in ready:
            del pending[job.name]
            path = folder / f"{job.name}.h5"
            try:
                inputs = job.build({d: result.runs[d] for d in job.depends})
                if is_finished(path):        # another config fails this job, not its task
                    with run_lock(path):
                        result.runs[job.name] = finished_run(path, inputs.config)
                    result.reused.append(job.name)
                    notify(JobsFinished((job.name,)))
                    continue
            except ClosedLoopError as exc:
                fail([job.name], str(exc))
                continue
            to_train.append((job, inputs))
        for chunk in _chunks(to_train, capacity, group_size):
            names = [job.name for job, _ in chunk]
            label = names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"
            future = executor.submit(
                train_group, [i.config.to_json() for _, i in chunk],
                [str(folder.resolve() / f"{n}.h5") for n in names],
                [i.initial for _, i in chunk], [i.teacher for _, i in chunk], label=label,
                log=list(log))
            running[future] = names
        if not running:
            if not pending:
                break
            if not ready:
                raise JobFailedError("jobs wait on each other: " + ", ".join(sorted(pending)))
            continue        # jobs were reused or failed: their dependents may be ready now
        finished, _ = wait(list(running), timeout=poll, return_when=FIRST_COMPLETED)
        for future in finished:
            names = running.pop(future)
            try:
                future.result()
                for name in names:
                    result.runs[name] = load_run(folder / f"{name}.h5")
                notify(JobsFinished(tuple(names)))
            except ClosedLoopError as exc:
                fail(names, str(exc))
            except Exception as exc:     # a worker's crash is that task's failure
                fail(names, f"{type(exc).__name__}: {exc}")
    return result
