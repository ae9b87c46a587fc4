"""Where jobs run: a Dask cluster, local by default, any scheduler by address, or SLURM.

``reproduce`` and sweeps both train through :func:`run_jobs`: it starts (or connects to) the
cluster, turns the workers' progress events into the caller's events, and runs
:func:`closedloop.scale.jobs.execute` on the cluster's executor. A worker that dies (killed,
or its SLURM job cancelled) has its task retried by Dask on another worker; the task resumes
the runs it was writing from their checkpoints (the run files' locks make sure no run is
written twice).

==============================  ============================================================
``scheduler=None``              a local cluster of ``workers`` single-threaded processes
``scheduler="tcp://h:8786"``    an existing Dask cluster (every worker must see the folder)
``slurm=SlurmOptions(jobs=4)``  a ``dask_jobqueue.SLURMCluster`` of 4 batch jobs
==============================  ============================================================

Example
-------
>>> options = SlurmOptions(jobs=2, cores=4, settings={"walltime": "02:00:00"})
>>> options.cluster_arguments()["processes"], options.capacity
(4, 8)
>>> parse_slurm_settings(["queue=debug", "job_extra_directives=['--exclusive']"])
{'queue': 'debug', 'job_extra_directives': ['--exclusive']}
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from closedloop.errors import ClosedLoopError, ConfigError
from closedloop.scale.jobs import (
    PROGRESS_TOPIC,
    EpochProgress,
    EventCallback,
    ExecutionResult,
    Job,
    JobEvent,
    execute,
)
from closedloop.training.loggers import LogSpec

WORKER_WAIT = 300.0
"""Seconds to wait for the first SLURM worker to join (its batch job may queue)."""


class ClusterError(ClosedLoopError):
    """A cluster that cannot be reached or started."""


def parse_slurm_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> keyword arguments of ``SLURMCluster`` (values read as YAML,
    so numbers and lists work: ``job_extra_directives=['--exclusive']``).

    Example
    -------
    >>> parse_slurm_settings(["memory=4GB", "cores=2"])
    {'memory': '4GB', 'cores': 2}
    """
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option '{item}' is not of the form key=value")
        try:
            settings[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--slurm-option '{item}': the value is not valid YAML") from None
    return settings


@dataclass(frozen=True)
class SlurmOptions:
    """A SLURM cluster of ``jobs`` batch jobs, each running ``cores`` single-threaded Dask
    worker processes with ``memory`` in all.

    ``settings`` are further ``dask_jobqueue.SLURMCluster`` arguments (``queue``,
    ``account``, ``walltime``, ``job_extra_directives``, ``log_directory``, ...); the
    jobqueue section of Dask's configuration supplies what is not given here.
    """

    jobs: int = 1
    cores: int = 1
    memory: str = "4GB"
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_cli(cls, jobs: int, items: Sequence[str]) -> SlurmOptions:
        """``--slurm JOBS`` and its ``--slurm-option key=value`` items (``cores`` and
        ``memory`` among them).

        Example
        -------
        >>> SlurmOptions.from_cli(3, ["cores=2", "queue=debug"])
        SlurmOptions(jobs=3, cores=2, memory='4GB', settings={'queue': 'debug'})
        """
        settings = parse_slurm_settings(items)
        cores = settings.pop("cores", 1)
        if not isinstance(cores, int) or cores < 1:
            raise ConfigError(f"--slurm-option cores={cores}: a positive whole number")
        return cls(jobs, cores, str(settings.pop("memory", "4GB")), settings)

    @property
    def capacity(self) -> int:
        """Worker processes once every job runs."""
        return self.jobs * self.cores

    def cluster_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``SLURMCluster``."""
        return {"cores": self.cores, "processes": self.cores, "memory": self.memory,
                **self.settings}


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                slurm: SlurmOptions | None = None, connect_timeout: float = 20.0
                ) -> Iterator[tuple[Any, int]]:
    """A client of the chosen cluster and how many tasks it runs at once.

    ``scheduler``: an existing cluster's address (given up after ``connect_timeout``
    seconds); ``slurm``: a new SLURM cluster; neither: a new local cluster of ``workers``
    single-threaded worker processes (default: one per core).

    Example
    -------
    >>> with dask_client(workers=2) as (client, capacity):             # doctest: +SKIP
    ...     capacity
    2
    """
    from distributed import Client, LocalCluster

    if scheduler is not None and slurm is not None:
        raise ConfigError("give either a scheduler address or SLURM options, not both")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({exc})"
                               ) from None
        with client:
            yield client, max(1, sum(client.nthreads().values()))
        return
    if slurm is not None:
        with _slurm_client(slurm) as client:
            yield client, slurm.capacity
        return
    count = workers or os.cpu_count() or 1
    with (LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                       dashboard_address=":0", silence_logs=logging.ERROR) as cluster,
          Client(cluster) as client):
        yield client, count


@contextlib.contextmanager
def _slurm_client(options: SlurmOptions) -> Iterator[Any]:
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError("--slurm needs dask-jobqueue: pip install 'closedloop[slurm]'"
                           ) from None
    from distributed import Client

    try:
        cluster = SLURMCluster(**options.cluster_arguments())
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"SLURM options: {exc}") from None
    with cluster, Client(cluster) as client:
        cluster.scale(jobs=options.jobs)
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT)
        except TimeoutError:
            raise ClusterError(f"no SLURM worker joined within {WORKER_WAIT:g} s; see squeue "
                               "and the jobs' logs") from None
        yield client


def _epoch_progress(message: dict[str, Any]) -> EpochProgress:
    """A worker's progress message (Dask adds the ``worker`` that sent it) as an event."""
    return EpochProgress(str(message["label"]), int(message["epoch"]), int(message["total"]))


def run_jobs(jobs: Sequence[Job], folder: Path, *, scheduler: str | None = None,
             workers: int | None = None, slurm: SlurmOptions | None = None,
             group_size: int | None = None, on_event: EventCallback | None = None,
             connect_timeout: float = 20.0, log: Sequence[LogSpec] = ()) -> ExecutionResult:
    """Make ``jobs``' run files in ``folder`` on a Dask cluster (see :func:`dask_client`),
    each run logged by the loggers ``log`` names.

    Events reach ``on_event`` as :func:`closedloop.scale.jobs.execute` sends them, the
    workers' epochs included, from one thread at a time.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> from closedloop.scale.jobs import JobInputs
    >>> job = Job("a", lambda runs: JobInputs(load_preset("di-tanh-closed", epochs=5)))
    >>> run_jobs([job], Path("runs"), workers=1).failed                 # doctest: +SKIP
    {}
    """
    report = on_event or (lambda event: None)
    guard = threading.Lock()

    def notify(event: JobEvent) -> None:
        with guard:      # progress events arrive on the client's thread, the rest on this one
            report(event)

    with dask_client(scheduler, workers, slurm, connect_timeout) as (client, capacity):
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: notify(_epoch_progress(event[1])))
        return execute(jobs, folder, client.get_executor(pure=False), capacity=capacity,
                       group_size=group_size, on_event=notify, log=log)
