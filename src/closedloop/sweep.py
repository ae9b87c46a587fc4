"""Sweeps over settings and seeds, run as Dask tasks (local cluster or any existing one).

A sweep is a preset, a grid (``key -> values``) and a list of seeds: one run per grid point
and seed. Open-loop presets are trained as pairs: every point first gets its closed-loop
teacher (the teacher preset with the same grid settings and seed), then the student, which
starts from the teacher's epoch-0 weights and imitates its last epoch (SPEC 2).

Everything lives in one folder::

    DIR/sweep.json        the sweep's definition (a second sweep into DIR must match it)
    DIR/runs/NAME.h5      one run file per point (teachers included)
    DIR/runs/.locks/      one lock file per point (who is writing it)

Runs that share shapes (they may differ in seed, learning rate, control cost, episode length)
are trained together as ensembles of up to ``group_size`` members, one Dask task each. A task
takes a lock on every run it writes, skips runs that are finished, resumes unfinished ones and
trains the rest, so a sweep run twice does only what is missing, a task retried after its
worker died continues from the last checkpoint, and no run file is ever written by two
processes. The folder must be on a file system every worker sees.

Example
-------
>>> spec = SweepSpec("di-tanh-open", grid={"loss.control_cost": ["0", "2"]},
...                  seeds=[0, 1], epochs=50)
>>> [point.name for point in spec.points()][:2]
['di-tanh-closed_loss.control_cost=0-seed0', 'di-tanh-closed_loss.control_cost=0-seed1']
>>> result = run_sweep(spec, "sweeps/beta", workers=2)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop.config import RunConfig, load_preset
from closedloop.errors import ClosedLoopError, ConfigError, IncompleteRunError
from closedloop.store import is_finished, load_run, partial_dir
from closedloop.studies import ensure_run

TEACHER_PRESETS = {"di-tanh-open": "di-tanh-closed", "di-tanh-open-plant": "di-tanh-closed",
                   "tracking-open": "tracking-closed"}
"""The closed-loop preset that trains the teacher of each open-loop preset."""

SPEC_FILE = "sweep.json"
RUNS_FOLDER = "runs"
LOCKS_FOLDER = ".locks"
PROGRESS_TOPIC = "closedloop-sweep-progress"
DEFAULT_GROUP_SIZE = 32


class SweepError(ClosedLoopError):
    """A sweep that cannot start (its folder holds another sweep, no cluster, ...)."""


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["key=v1,v2", ...]`` -> ``{key: [v1, v2]}``; commas inside brackets stay in a value.

    Example
    -------
    >>> parse_grid(["task.steps=10,50", "agent.init.w_scale=[1,2],[3,4]"])
    {'task.steps': ['10', '50'], 'agent.init.w_scale': ['[1,2]', '[3,4]']}
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid '{item}' is not of the form key=v1,v2,...")
        if key in grid:
            raise ConfigError(f"--grid names '{key}' twice")
        values, depth, current = [], 0, ""
        for char in raw:
            depth += char in "[{("
            depth -= char in "]})"
            if char == "," and depth == 0:
                values.append(current.strip())
                current = ""
            else:
                current += char
        values.append(current.strip())
        if any(not v for v in values) or len(set(values)) != len(values):
            raise ConfigError(f"--grid '{item}': values must be non-empty and distinct")
        grid[key] = values
    return grid


@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep.

    ``role`` is ``"run"`` (a closed-loop preset's point), ``"teacher"`` or ``"student"``;
    ``teacher`` names a student's teacher point; ``settings`` are the grid values.
    """

    name: str
    preset: str
    seed: int
    settings: tuple[tuple[str, str], ...]
    role: str
    teacher: str | None = None

    @property
    def file_name(self) -> str:
        """The run file's name inside ``DIR/runs``."""
        return f"{self.name}.h5"


def _label(settings: Sequence[tuple[str, str]]) -> str:
    text = "".join(f"_{key}={value}" for key, value in settings)
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", text)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains: ``preset`` over ``grid`` x ``seeds``.

    Parameters
    ----------
    preset
        A preset name; an open-loop preset trains each point's closed-loop teacher first.
    grid
        Setting (dotted config key) -> values, as ``--set`` would take them.
    seeds
        Seeds of every grid point.
    epochs
        Training epochs (None: the preset's).
    overrides
        ``key=value`` settings applied to every run (``--set``).
    teacher_preset
        The teachers' preset for an open-loop preset (default :data:`TEACHER_PRESETS`).
    """

    preset: str
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seeds: Sequence[int] = (0,)
    epochs: int | None = None
    overrides: Sequence[str] = ()
    teacher_preset: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", {k: [str(v) for v in vs] for k, vs in self.grid.items()})
        object.__setattr__(self, "seeds", sorted({int(s) for s in self.seeds}))
        object.__setattr__(self, "overrides", [str(o) for o in self.overrides])

    # -- definition ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The definition as JSON (what ``DIR/sweep.json`` holds)."""
        return json.dumps({"preset": self.preset, "grid": self.grid, "seeds": self.seeds,
                           "epochs": self.epochs, "overrides": self.overrides,
                           "teacher_preset": self.teacher_preset}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        """Read :meth:`to_json`'s output."""
        try:
            data = json.loads(text)
            return cls(data["preset"], data["grid"], data["seeds"], data["epochs"],
                       data["overrides"], data["teacher_preset"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SweepError(f"not a sweep definition ({exc})") from None

    @property
    def student_mode(self) -> bool:
        """Whether the preset trains open loop (so every point has a teacher)."""
        return load_preset(self.preset, list(self.overrides)).training.mode != "closed"

    def _teacher_preset(self) -> str:
        name = self.teacher_preset or TEACHER_PRESETS.get(self.preset)
        if name is None:
            raise ConfigError(f"preset '{self.preset}' trains open loop; name the preset of its "
                              "closed-loop teachers with --teacher-preset")
        return name

    def settings(self) -> list[tuple[tuple[str, str], ...]]:
        """Every grid point (the Cartesian product, in grid order)."""
        points: list[tuple[tuple[str, str], ...]] = [()]
        for key, values in self.grid.items():
            points = [(*p, (key, v)) for p in points for v in values]
        return points

    def points(self) -> list[SweepPoint]:
        """Every run of the sweep, teachers first (each listed once)."""
        student = self.student_mode
        teachers: list[SweepPoint] = []
        runs: list[SweepPoint] = []
        for settings in self.settings():
            for seed in self.seeds:
                label = _label(settings)
                if not student:
                    runs.append(SweepPoint(f"{self.preset}{label}-seed{seed}", self.preset,
                                           seed, settings, "run"))
                    continue
                preset = self._teacher_preset()
                teacher = SweepPoint(f"{preset}{label}-seed{seed}", preset, seed, settings,
                                     "teacher")
                teachers.append(teacher)
                runs.append(SweepPoint(f"{self.preset}{label}-seed{seed}", self.preset, seed,
                                       settings, "student", teacher.name))
        points = teachers + runs
        names = [p.name for p in points]
        if len(set(names)) != len(names):
            raise ConfigError("two grid points get the same file name; use values that differ "
                              "in letters or digits")
        return points

    def config(self, point: SweepPoint) -> RunConfig:
        """The resolved config of one point (errors name the offending key)."""
        overrides = [*self.overrides, *(f"{k}={v}" for k, v in point.settings)]
        config = load_preset(point.preset, overrides, point.seed, self.epochs)
        if point.role == "student":
            teacher_file = f"{point.teacher}.h5"
            config = config.model_copy(update={"teacher": f"{teacher_file}@last",
                                               "init_from": f"{teacher_file}@0"})
        if point.role == "teacher" and config.training.mode != "closed":
            raise ConfigError(f"teacher preset '{point.preset}' does not train closed loop")
        return config

    def validate(self) -> list[SweepPoint]:
        """Resolve every point's config now, so a bad setting fails before any work."""
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        from closedloop.training import check_memory

        points = self.points()
        for point in points:
            check_memory([self.config(point)])
        return points


# -- locking --------------------------------------------------------------------------------

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the lock of run file ``path`` (waiting for another holder to finish).

    An advisory ``flock`` on ``.locks/NAME.lock`` next to the run, plus a lock per process
    (two threads of one Dask worker). A holder that dies releases it with its process.

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


def _progress_sender(label: str, total: int) -> Callable[[int, Any], None] | None:
    """A callback that posts (label, epoch, total) to the client about once a second."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    last = [0.0]

    def send(index: int, record: Any) -> None:
        now = time.monotonic()
        if index == 0 and (now - last[0] > 1.0 or record.epoch + 1 == total):
            last[0] = now
            worker.log_event(PROGRESS_TOPIC, {"label": label, "epoch": record.epoch + 1,
                                              "total": total})

    return send


def train_points(spec_json: str, names: Sequence[str], folder: str, threads: int = 1,
                 *after: Any) -> dict[str, str]:
    """Train (or finish, or skip) the named points of a sweep; what a Dask task runs.

    Finished runs are skipped, unfinished ones resumed, the rest trained as one ensemble
    when there are several. ``after`` carries the results of the tasks this one waits for
    (the teachers). Returns each name's status (``complete``, ``diverged``).

    Example
    -------
    >>> spec = SweepSpec("di-tanh-closed", seeds=[0, 1], epochs=5)
    >>> train_points(spec.to_json(), [p.name for p in spec.points()], "sweeps/s")  # doctest: +SKIP
    {'di-tanh-closed-seed0': 'complete', 'di-tanh-closed-seed1': 'complete'}
    """
    import torch

    from closedloop.ensemble import train_ensemble
    from closedloop.plants import plant_from_config
    from closedloop.runtime import keep_freed_memory
    from closedloop.sources import load_teacher

    keep_freed_memory()
    torch.set_num_threads(threads)
    spec = SweepSpec.from_json(spec_json)
    by_name = {p.name: p for p in spec.points()}
    runs = Path(folder) / RUNS_FOLDER
    points = [by_name[n] for n in sorted(names)]
    paths = [runs / p.file_name for p in points]
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(run_lock(path))
        fresh, unfinished = [], []
        for point, path in zip(points, paths, strict=True):
            if is_finished(path):
                ensure_run(spec.config(point), path)     # checks its config; no work
            elif partial_dir(path).exists():
                unfinished.append(point)
            else:
                fresh.append(point)
        if len(unfinished) > 1:
            configs = [spec.config(p) for p in unfinished]
            try:
                train_ensemble(configs, [runs / p.file_name for p in unfinished], resume=True,
                               progress=_progress_sender(unfinished[0].name,
                                                         configs[0].training.epochs + 1))
                unfinished = []
            except IncompleteRunError:
                pass  # members checkpointed at different epochs: resume them one by one
        for point in unfinished:
            ensure_run(spec.config(point), runs / point.file_name)
        if fresh:
            configs = [spec.config(p) for p in fresh]
            initials, teachers = [], []
            for point, config in zip(fresh, configs, strict=True):
                if point.teacher is None:
                    initials.append(None)
                    teachers.append(None)
                    continue
                teacher_path = runs / f"{point.teacher}.h5"
                initials.append(load_run(teacher_path).parameters(0))
                teachers.append(load_teacher(str(teacher_path),
                                             plant_from_config(config.plant)))
            progress = _progress_sender(f"{fresh[0].name} (+{len(fresh) - 1})"
                                        if len(fresh) > 1 else fresh[0].name,
                                        configs[0].training.epochs + 1)
            train_ensemble(configs, [runs / p.file_name for p in fresh], initials=initials,
                           teachers=teachers, progress=progress)
        return {p.name: load_run(path).status for p, path in zip(points, paths, strict=True)}


# -- the driver -----------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: runs finished now or before, runs that failed (with the
    reason), runs skipped because they were already finished, and the wall time."""

    folder: Path
    finished: list[str]
    failed: dict[str, str]
    skipped: list[str]
    elapsed: float


def _groups(spec: SweepSpec, points: Sequence[SweepPoint], size: int
            ) -> list[list[SweepPoint]]:
    """Points of one role that share shapes, in chunks of at most ``size``."""
    from closedloop.ensemble import shape_signature

    by_shape: dict[tuple[str, str], list[SweepPoint]] = {}
    for point in points:
        key = (point.role, shape_signature(spec.config(point)))
        by_shape.setdefault(key, []).append(point)
    chunks = []
    for members in by_shape.values():
        count = math.ceil(len(members) / size)
        width = math.ceil(len(members) / count)
        chunks += [members[i:i + width] for i in range(0, len(members), width)]
    return chunks


def prepare_folder(spec: SweepSpec, folder: Path) -> None:
    """Create ``folder`` and record the sweep in it; a different sweep already there is an
    error (nothing is touched).

    Example
    -------
    >>> prepare_folder(SweepSpec("di-tanh-closed"), Path("sweeps/s"))  # doctest: +SKIP
    """
    target = folder / SPEC_FILE
    if target.exists():
        stored = SweepSpec.from_json(target.read_text())
        if stored != spec:
            raise SweepError(f"{folder} holds another sweep ({SPEC_FILE}: preset "
                             f"{stored.preset}, grid {stored.grid}, seeds {len(stored.seeds)}); "
                             "use another --out")
        return
    (folder / RUNS_FOLDER).mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".json.tmp")
    temporary.write_text(spec.to_json())
    os.replace(temporary, target)


def load_spec(folder: str | os.PathLike[str]) -> SweepSpec:
    """The sweep recorded in ``folder``.

    Example
    -------
    >>> load_spec("sweeps/pair").preset                                  # doctest: +SKIP
    'di-tanh-open'
    """
    target = Path(folder) / SPEC_FILE
    if not target.is_file():
        raise SweepError(f"{folder}: no {SPEC_FILE} (not a sweep folder)")
    return SweepSpec.from_json(target.read_text())


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, connect_timeout: float = 20.0
                ) -> Iterator[Any]:
    """A client of the cluster at ``scheduler`` (given up after ``connect_timeout`` seconds),
    or of a new local cluster of ``workers`` single-threaded worker processes (default: one
    per core).

    Example
    -------
    >>> with dask_client(None, 2) as client:                             # doctest: +SKIP
    ...     len(client.nthreads())
    2
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        with client:
            yield client
        return
    count = workers or os.cpu_count() or 1
    with (LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                       dashboard_address=":0", silence_logs=logging.ERROR) as cluster,
          Client(cluster) as client):
        yield client


def run_sweep(spec: SweepSpec, folder: str | os.PathLike[str], *, scheduler: str | None = None,
              workers: int | None = None, threads: int = 1, group_size: int | None = None,
              on_event: Callable[[str, Any], None] | None = None,
              connect_timeout: float = 20.0) -> SweepResult:
    """Train every point of ``spec`` into ``folder`` on Dask.

    Parameters
    ----------
    spec
        The sweep.
    folder
        Its folder (created; a second call with the same spec does only what is missing).
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``); None starts a local
        cluster of ``workers`` processes.
    threads
        PyTorch threads per task.
    group_size
        Most runs per ensemble task (1: every run alone). Default: the runs of one shape split
        evenly over the workers, at most 32 per task.
    on_event
        Called with ``("total", n)``, ``("done", names)``, ``("failed", (names, reason))``
        and ``("epoch", {"label", "epoch", "total"})`` as the sweep goes.
    connect_timeout
        Seconds to keep trying to reach ``scheduler``.

    Returns
    -------
    SweepResult

    Example
    -------
    >>> spec = SweepSpec("di-tanh-open", seeds=range(50))
    >>> run_sweep(spec, "sweeps/pair").failed                           # doctest: +SKIP
    {}
    """
    from distributed import as_completed

    folder = Path(folder)
    points = spec.validate()
    prepare_folder(spec, folder)
    runs = folder / RUNS_FOLDER
    notify = on_event or (lambda kind, value: None)
    skipped = [p.name for p in points if is_finished(runs / p.file_name)]
    for point in points:
        if point.name in skipped:
            ensure_run(spec.config(point), runs / point.file_name)   # checks its config
    todo = [p for p in points if p.name not in skipped]
    notify("total", len(points))
    notify("done", skipped)
    started = time.perf_counter()
    finished, failed = list(skipped), {}
    if not todo:
        return SweepResult(folder, finished, failed, skipped, 0.0)
    spec_json = spec.to_json()
    where = str(folder.resolve())   # workers may run elsewhere: an absolute path
    with dask_client(scheduler, workers, connect_timeout) as client:
        capacity = max(1, sum(client.nthreads().values()))
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: notify("epoch", event[1]))
        futures: dict[Any, list[str]] = {}
        task_of: dict[str, Any] = {}
        for role in ("run", "teacher", "student"):
            members = [p for p in todo if p.role == role]
            if not members:
                continue
            size = group_size or min(DEFAULT_GROUP_SIZE,
                                     max(1, math.ceil(len(members) / capacity)))
            for chunk in _groups(spec, members, size):
                after = {task_of[p.teacher] for p in chunk
                         if p.teacher is not None and p.teacher in task_of}
                names = [p.name for p in chunk]
                future = client.submit(train_points, spec_json, names, where, threads, *after,
                                       pure=False, key=f"closedloop-{names[0]}")
                futures[future] = names
                for name in names:
                    task_of[name] = future
        for future in as_completed(list(futures)):
            names = futures[future]
            if future.status == "finished":
                finished += names
                notify("done", names)
            else:
                reason = _reason(future.exception())
                failed.update(dict.fromkeys(names, reason))
                notify("failed", (names, reason))
    return SweepResult(folder, finished, failed, skipped, time.perf_counter() - started)


def _reason(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ClosedLoopError) else text
