"""Train the jobs of a reproduction on local processes, in dependency order, with progress.

Every job's run file lives in one folder. A finished file with the job's config is reused, an
unfinished one resumed (``--resume`` semantics), anything else trained. Ready jobs start
costliest first on a pool of worker processes (one PyTorch thread each), and a Rich display
shows every running job's epoch and an overall count.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from closedloop.ensemble import shape_signature
from closedloop.errors import ClosedLoopError
from closedloop.experiments.base import Job, JobInputs
from closedloop.store import Run, is_finished, load_run, partial_dir


class JobFailedError(ClosedLoopError):
    """A job could not be built or trained."""


def finished_run(path: Path, inputs: JobInputs) -> Run | None:
    """The run at ``path`` if it is finished with exactly this config, else None."""
    if not is_finished(path):
        return None
    run = load_run(path)
    return run if run.config == inputs.config else None


def _train_job(config_json: str, path: str, initial: Any, teacher: Any, report: Any,
               name: str, threads: int) -> str:
    """Worker: train (or resume) one run; progress goes to ``report`` about once a second."""
    import torch

    from closedloop.config import config_from_json
    from closedloop.runtime import keep_freed_memory
    from closedloop.studies import ensure_run

    keep_freed_memory()
    torch.set_num_threads(threads)
    config = config_from_json(config_json)
    last = [0.0]

    def progress(record: Any) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or record.epoch == config.training.epochs:
            last[0] = now
            report.put((name, record.epoch + 1, config.training.epochs + 1))

    ensure_run(config, Path(path), initial=initial, teacher=teacher, progress=progress)
    return path


def _train_group(configs_json: list[str], paths: list[str], initials: list[Any],
                 teachers: list[Any], report: Any, names: list[str], threads: int) -> list[str]:
    """Worker: train several runs of the same shape as one ensemble (one file each)."""
    import torch

    from closedloop.config import config_from_json
    from closedloop.ensemble import train_ensemble
    from closedloop.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(threads)
    configs = [config_from_json(c) for c in configs_json]
    label = f"{names[0]} (+{len(names) - 1} seeds)"
    total = max(c.training.epochs for c in configs) + 1
    last = [0.0]

    def progress(index: int, record: Any) -> None:
        now = time.monotonic()
        if index == 0 and (now - last[0] > 0.5 or record.epoch + 1 == total):
            last[0] = now
            report.put((label, record.epoch + 1, total))

    train_ensemble(configs, [Path(p) for p in paths], initials=initials, teachers=teachers,
                   progress=progress)
    return paths


def execute(jobs: Sequence[Job], folder: Path, *, workers: int = 2, threads: int = 1,
            console: Console | None = None, quiet: bool = False
            ) -> tuple[dict[str, Run], dict[str, str]]:
    """Train what is missing among ``jobs`` (in ``folder``).

    Returns the finished runs by job name, and for jobs that could not be built or trained
    (or depend on one that could not), the reason. A failure does not stop the other jobs.
    Jobs with the same ``group`` (the same run for several seeds) that all need training from
    scratch and share shapes are trained together as one ensemble.

    Parameters
    ----------
    jobs
        Jobs; names must be unique (duplicates with the same name are merged).
    folder
        Where the run files are.
    workers, threads
        Worker processes and PyTorch threads per worker.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pending: dict[str, Job] = {}
    for job in jobs:
        pending.setdefault(job.name, job)
    unknown = {d for job in pending.values() for d in job.depends} - set(pending)
    if unknown:
        raise JobFailedError(f"jobs depend on undeclared jobs: {', '.join(sorted(unknown))}")
    done: dict[str, Run] = {}
    failed: dict[str, str] = {}
    console = console or Console(stderr=True)
    context = multiprocessing.get_context("spawn")
    with (context.Manager() as manager,
          ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
          Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, disable=quiet,
                   transient=False) as progress):
        report = manager.Queue()
        overall = progress.add_task("runs", total=len(pending))
        bars: dict[str, TaskID] = {}
        running: dict[Future[Any], list[str]] = {}
        while pending or running:
            for job in [j for j in pending.values() if any(d in failed for d in j.depends)]:
                del pending[job.name]
                failed[job.name] = "depends on a failed job: " + ", ".join(
                    d for d in job.depends if d in failed)
                progress.advance(overall)
            ready = [job for job in pending.values() if all(d in done for d in job.depends)]
            waiting_groups = {job.group for job in pending.values()
                              if job.group is not None and job not in ready}
            ready = sorted((job for job in ready if job.group not in waiting_groups
                            or job.group is None), key=lambda job: -job.cost)
            to_train: dict[str | None, list[tuple[Job, JobInputs]]] = {}
            for job in ready:
                del pending[job.name]
                path = folder / f"{job.name}.h5"
                try:
                    inputs = job.build({d: done[d] for d in job.depends})
                except ClosedLoopError as exc:
                    failed[job.name] = str(exc)
                    progress.advance(overall)
                    continue
                reused = finished_run(path, inputs)
                if reused is not None:
                    done[job.name] = reused
                    progress.advance(overall)
                    continue
                fresh = not path.exists() and not partial_dir(path).exists()
                key = job.group if fresh else None
                to_train.setdefault(key if key is not None else f"\0{job.name}", []).append(
                    (job, inputs))
            for members in to_train.values():
                if len(members) > 1 and len({shape_signature(i.config)
                                             for _, i in members}) == 1:
                    names = [job.name for job, _ in members]
                    future = pool.submit(
                        _train_group, [i.config.to_json() for _, i in members],
                        [str(folder / f"{n}.h5") for n in names],
                        [i.initial for _, i in members], [i.teacher for _, i in members],
                        report, names, threads)
                    running[future] = names
                    continue
                for job, inputs in members:
                    future = pool.submit(_train_job, inputs.config.to_json(),
                                         str(folder / f"{job.name}.h5"), inputs.initial,
                                         inputs.teacher, report, job.name, threads)
                    running[future] = [job.name]
            if not running:
                if pending and not ready:
                    blocked = ", ".join(sorted(pending))
                    raise JobFailedError(f"jobs wait on each other: {blocked}")
                continue
            finished, _ = wait(list(running), timeout=0.3, return_when=FIRST_COMPLETED)
            _drain(report, progress, bars, done)
            for future in finished:
                names = running.pop(future)
                try:
                    future.result()
                    for name in names:
                        done[name] = load_run(folder / f"{name}.h5")
                except ClosedLoopError as exc:
                    for name in names:
                        failed[name] = str(exc)
                for key in [k for k in bars if k.split(" (+")[0] in names]:
                    progress.remove_task(bars.pop(key))
                progress.advance(overall, len(names))
    return done, failed


def _drain(report: Any, progress: Progress, bars: dict[str, TaskID],
           done: Mapping[str, Run]) -> None:
    """Show the workers' progress messages (one bar per running job)."""
    while True:
        try:
            name, completed, total = report.get_nowait()
        except queue_module.Empty:
            return
        if name in done:
            continue
        if name not in bars:
            bars[name] = progress.add_task(name, total=total)
        progress.update(bars[name], completed=completed)
