"""Sweeps over settings and seeds, run as Dask tasks (a local cluster, any existing one, or SLURM).

A sweep is a preset, a grid (``key -> values``) and a list of seeds: one run per grid point
and seed. Open-loop presets are trained as pairs: every point first gets its closed-loop
teacher (the teacher preset with the same grid settings and seed), then the student, which
starts from the teacher's epoch-0 weights and imitates its last epoch (science 2).

Everything lives in one folder::

    DIR/sweep.json        the sweep's definition (a second sweep into DIR must match it)
    DIR/runs/NAME.h5      one run file per point (teachers included)
    DIR/runs/.locks/      one lock file per point (who is writing it)

The points are jobs of :mod:`closedloop.scale.jobs` run on a Dask cluster's executor: runs that
share shapes (they may differ in seed, learning rate, clipping, control cost, initialisation)
are trained together, at most ``group_size`` per Dask task; a task locks every run it writes,
skips finished runs, resumes unfinished ones and trains the rest, so a sweep run twice does
only what is missing, a task retried after its worker died continues from the last checkpoint,
and no run file is ever written by two processes. The folder must be on a file system every
worker sees.

Example
-------
>>> spec = SweepSpec("di-tanh-open", grid={"loss.control_cost": ["0", "2"]},
...                  seeds=[0, 1], epochs=50)
>>> [point.name for point in spec.points()][:2]
['di-tanh-closed_loss.control_cost=0-seed0', 'di-tanh-closed_loss.control_cost=0-seed1']
>>> result = run_sweep(spec, "sweeps/beta", workers=2)                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from closedloop.config import (
    RunConfig,
    is_config_file,
    load_preset,
    preset_dict,
    resolve_config,
)
from closedloop.core.plants import plant_from_config
from closedloop.errors import ClosedLoopError, ConfigError
from closedloop.runs.store import Run, is_finished, load_run
from closedloop.scale.cluster import SlurmOptions, run_jobs
from closedloop.scale.jobs import EventCallback, Job, JobInputs, JobsFinished, JobsTotal
from closedloop.training.loggers import LogSpec
from closedloop.training.rules import rule_for
from closedloop.training.sources import load_teacher

TEACHER_PRESETS = {"di-tanh-open": "di-tanh-closed", "di-tanh-open-plant": "di-tanh-closed",
                   "tracking-open": "tracking-closed",
                   "pendulum-upright-open": "pendulum-upright-closed",
                   "reach-muscle-arm-open": "reach-muscle-arm"}
"""The closed-loop preset that trains the teacher of each open-loop preset."""

SPEC_FILE = "sweep.json"
RUNS_FOLDER = "runs"


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


def _stem(source: str) -> str:
    """A preset's name, or a config file's stem (run files are named after it)."""
    return Path(source).stem if is_config_file(source) else source


def _label(settings: Sequence[tuple[str, str]]) -> str:
    text = "".join(f"_{key}={value}" for key, value in settings)
    return re.sub(r"[^A-Za-z0-9._=+,-]", "_", text)


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep trains: ``preset`` over ``grid`` x ``seeds``.

    Parameters
    ----------
    preset
        A preset name or a config file's path; an open-loop preset trains each point's
        closed-loop teacher first.
    grid
        Setting (dotted config key) -> values, as ``--set`` would take them.
    seeds
        Seeds of every grid point.
    epochs
        Training epochs (None: the preset's).
    overrides
        ``key=value`` settings applied to every run (``--set``).
    teacher_preset
        The teachers' preset (or config file) for an open-loop preset (default
        :data:`TEACHER_PRESETS`).
    files
        The contents of the config files named by ``preset`` and ``teacher_preset``, read
        once when the sweep is defined and kept in ``sweep.json``: workers (and a rerun) never
        read the files again.
    """

    preset: str
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seeds: Sequence[int] = (0,)
    epochs: int | None = None
    overrides: Sequence[str] = ()
    teacher_preset: str | None = None
    files: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", {k: [str(v) for v in vs] for k, vs in self.grid.items()})
        object.__setattr__(self, "seeds", sorted({int(s) for s in self.seeds}))
        object.__setattr__(self, "overrides", [str(o) for o in self.overrides])
        files = dict(self.files)
        for source in (self.preset, self.teacher_preset):
            if source is not None and source not in files and is_config_file(source):
                files[source] = preset_dict(source)
        object.__setattr__(self, "files", files)

    def _resolve(self, source: str, overrides: list[str], seed: int | None = None
                 ) -> RunConfig:
        if source in self.files:
            return resolve_config(self.files[source], overrides, seed, self.epochs,
                                  source=source)
        return load_preset(source, overrides, seed, self.epochs)

    # -- definition ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The definition as JSON (what ``DIR/sweep.json`` holds)."""
        return json.dumps({"preset": self.preset, "grid": self.grid, "seeds": self.seeds,
                           "epochs": self.epochs, "overrides": self.overrides,
                           "teacher_preset": self.teacher_preset, "files": self.files},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> SweepSpec:
        """Read :meth:`to_json`'s output."""
        try:
            data = json.loads(text)
            return cls(data["preset"], data["grid"], data["seeds"], data["epochs"],
                       data["overrides"], data["teacher_preset"], data.get("files", {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise SweepError(f"not a sweep definition ({exc})") from None

    @property
    def student_mode(self) -> bool:
        """Whether the preset trains open loop (so every point has a teacher)."""
        return rule_for(self._resolve(self.preset, list(self.overrides))).needs_teacher

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
                label = f"{_label(settings)}-seed{seed}"
                if not student:
                    runs.append(SweepPoint(_stem(self.preset) + label, self.preset, seed,
                                           settings, "run"))
                    continue
                preset = self._teacher_preset()
                teacher = SweepPoint(_stem(preset) + label, preset, seed, settings, "teacher")
                teachers.append(teacher)
                runs.append(SweepPoint(_stem(self.preset) + label, self.preset, seed,
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
        config = self._resolve(point.preset, overrides, point.seed)
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
        from closedloop.training.memory import check_memory

        points = self.points()
        for point in points:
            check_memory([self.config(point)])
        return points


# -- jobs -----------------------------------------------------------------------------------


def sweep_jobs(spec: SweepSpec) -> list[Job]:
    """The sweep's points as jobs: a student depends on its teacher, starts from the
    teacher's epoch-0 weights and imitates its last epoch.

    Example
    -------
    >>> [job.depends for job in sweep_jobs(SweepSpec("di-tanh-open", seeds=[0]))]
    [(), ('di-tanh-closed-seed0',)]
    """
    jobs = []
    for point in spec.points():
        config = spec.config(point)
        cost = float(config.training.epochs * config.task.steps)
        if point.teacher is None:
            jobs.append(Job(point.name, lambda _runs, c=config: JobInputs(c), cost=cost))
            continue

        def build(runs: Mapping[str, Run], config: RunConfig = config,
                  teacher: str = point.teacher) -> JobInputs:
            teacher_run = runs[teacher]
            return JobInputs(config, initial=teacher_run.parameters(0),
                             teacher=load_teacher(str(teacher_run.path),
                                                  plant_from_config(config.plant)))

        jobs.append(Job(point.name, build, depends=(point.teacher,), cost=cost))
    return jobs


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


def run_sweep(spec: SweepSpec, folder: str | os.PathLike[str], *, scheduler: str | None = None,
              workers: int | None = None, slurm: SlurmOptions | None = None,
              group_size: int | None = None, on_event: EventCallback | None = None,
              connect_timeout: float = 20.0, log: Sequence[LogSpec] = ()) -> SweepResult:
    """Train every point of ``spec`` into ``folder`` on Dask.

    Parameters
    ----------
    spec
        The sweep.
    folder
        Its folder (created; a second call with the same spec does only what is missing).
    scheduler
        Address of an existing Dask scheduler (``tcp://host:8786``); None starts a local
        cluster of ``workers`` processes (or a SLURM cluster, with ``slurm``).
    slurm
        Train on a ``dask_jobqueue.SLURMCluster`` of these batch jobs.
    group_size
        Most runs per task (1: every run alone). Default: the runs of one shape split
        evenly over the workers, at most 32 per task.
    on_event
        Called with ``("total", n)``, ``("done", names)``, ``("failed", (names, reason))``
        and ``("epoch", {"label", "epoch", "total"})`` as the sweep goes.
    connect_timeout
        Seconds to keep trying to reach ``scheduler``.
    log
        Loggers for every run trained (one subfolder per run).

    Returns
    -------
    SweepResult

    Example
    -------
    >>> spec = SweepSpec("di-tanh-open", seeds=range(50))
    >>> run_sweep(spec, "sweeps/pair").failed                           # doctest: +SKIP
    {}
    """
    folder = Path(folder)
    spec.validate()
    prepare_folder(spec, folder)
    notify = on_event or (lambda event: None)
    runs = folder / RUNS_FOLDER
    points = spec.points()
    if all(is_finished(runs / p.file_name)
           and load_run(runs / p.file_name).config == spec.config(p) for p in points):
        names = sorted(p.name for p in points)     # nothing to do: no cluster needed
        notify(JobsTotal(len(names)))
        notify(JobsFinished(tuple(names)))
        return SweepResult(folder, names, {}, names, 0.0)
    started = time.perf_counter()
    result = run_jobs(sweep_jobs(spec), runs, scheduler=scheduler, workers=workers, slurm=slurm,
                      group_size=group_size, on_event=notify, connect_timeout=connect_timeout,
                      log=log)
    return SweepResult(folder, sorted(result.runs), result.failed, sorted(result.reused),
                       time.perf_counter() - started)
