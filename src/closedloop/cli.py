"""The ``closedloop`` command.

User mistakes (an unknown preset, a bad ``--set``, a missing teacher, a file that is not a run
file) print one line on stderr and exit with code 2, never a traceback.

Example
-------
::

    closedloop train di-tanh-closed --out runs/closed.h5 --seed 0
    closedloop train di-tanh-open --teacher runs/closed.h5 --out runs/open.h5 --seed 0
    closedloop inspect runs/open.h5 --json
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from closedloop import __version__
from closedloop.analysis.summary import summarize_run
from closedloop.config import load_preset, preset_dict, preset_names, preset_yaml
from closedloop.errors import ClosedLoopError, ConfigError
from closedloop.runs.store import EpochRecord, Run, load_run

if TYPE_CHECKING:
    from closedloop.analysis.summary import RunAnalysis
    from closedloop.scale.jobs import JobEvent
    from closedloop.training.loggers import LogSpec

err_console = Console(stderr=True)
SHOWN_STATES = 6
"""The widest plant state ``closedloop fixed-points`` prints whole (--json has every entry)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="closedloop")
def cli() -> None:
    """Train RNN controllers in closed loop with a plant, compare with open-loop training, and
    read the learning dynamics from the coupled agent-environment spectrum.

    \b
    Example:
      closedloop presets
      closedloop train di-tanh-closed --out runs/closed.h5 --seed 0
      closedloop inspect runs/closed.h5
    """


@cli.command()
@click.option("--show", "shown", default=None, metavar="NAME",
              help="Print preset NAME as a complete config file (every field) to start from.")
def presets(shown: str | None) -> None:
    """List the shipped presets, one line each; --show NAME prints one as a config file.

    \b
    Example:
      closedloop presets
      closedloop presets --show di-tanh-closed > mine.yaml
      closedloop train mine.yaml
    """
    if shown is not None:
        from closedloop.core.plants import plant_section

        click.echo(preset_yaml(shown, plant_section(load_preset(shown).plant)), nl=False)
        return
    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        click.echo(f"{name:<{width}}  {preset_dict(name).get('description', '')}")


def parse_seeds(text: str) -> list[int]:
    """``0-31``, ``0,3,5`` or ``0-9,20`` -> a sorted list of distinct seeds.

    Example
    -------
    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    """
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            low, high = int(first), int(last or first)
            if low < 0 or high < low:
                raise ValueError
            seeds.update(range(low, high + 1))
    except ValueError:
        raise ConfigError(f"--seeds '{text}' is not a list like 0-31 or 0,3,5") from None
    return sorted(seeds)


def log_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--log NAME DIR`` (repeatable): live logs of every run trained, one subfolder per run
    (``tensorboard``, or a registered logger)."""
    return click.option("--log", "log_items", type=(str, click.Path(path_type=Path)),
                        multiple=True, metavar="NAME DIR",
                        help="Log every run live, into DIR/<run name> (repeat for several): "
                             "tensorboard (needs tensorboardX), or a logger registered with "
                             "closedloop.register_logger.")(command)


def _log_specs(items: tuple[tuple[str, Path], ...]) -> list[LogSpec]:
    """The ``--log`` items as checked specs (an unknown name fails before any work)."""
    from closedloop.training.loggers import LogSpec

    specs = [LogSpec(name, str(folder)) for name, folder in items]
    for spec in specs:
        spec.check()
    return specs


@cli.command(name="train")
@click.argument("preset", required=False)
@click.option("--config-from", "config_from", default=None, metavar="RUN.h5",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Repeat a run: its stored config (and teacher and initial weights), with "
                   "--seed, --epochs and --set applied on top; instead of PRESET.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run file to write (default runs/PRESET-seedN.h5); with --seeds, a folder "
                   "(default runs/) that gets PRESET-seedN.h5 per seed.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Seed of initialisation and batches (default: the config's own, 0 for "
                   "the presets; with --config-from, the run's).")
@click.option("--seeds", "seed_list", default=None, metavar="LIST",
              help="Train one network per seed (e.g. 0-31) as one vectorised ensemble, each "
                   "recorded to its own run file.")
@click.option("--epochs", type=click.IntRange(0, 10_000_000), default=None,
              help="Number of updates (overrides the preset).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set training.lr=1e-3 (repeatable).")
@click.option("--init-from", default=None, metavar="RUN@EPOCH",
              help="Start from another run's parameters after EPOCH (default 0); '{seed}' in "
                   "the path is replaced by each seed.")
@click.option("--teacher", default=None, metavar="RUN[@EPOCH]|gain:K|lqr[:R]",
              help="Teacher of an open-loop preset: a run (default its last epoch; '{seed}' "
                   "is replaced by each seed), a static gain u = K x, or the LQR gain.")
@click.option("--resume", is_flag=True, help="Continue an unfinished run at --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run at --out.")
@click.option("--device", default=None,
              help="cpu (default), gpu (gpu:N for the N-th) or auto (JAX's default device).")
@click.option("--devices", type=click.IntRange(1, 4096), default=None,
              help="Train on N devices of --device's kind (on a CPU, one per core): "
                   "--seeds whose number N divides are shared out between them, otherwise "
                   "every batch is split (N must divide task.batch_size).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@log_option
def train_command(preset: str | None, config_from: Path | None, out: Path | None,
                  seed: int | None,
                  seed_list: str | None, epochs: int | None, overrides: tuple[str, ...],
                  init_from: str | None, teacher: str | None, resume: bool, overwrite: bool,
                  device: str | None, devices: int | None, quiet: bool,
                  log_items: tuple[tuple[str, Path], ...]) -> None:
    """Train PRESET (a shipped preset or a config file FILE.yaml) and record every epoch to a
    run file.

    \b
    Example:
      closedloop train di-tanh-closed --out runs/closed.h5 --seed 0
      closedloop presets --show di-tanh-closed > mine.yaml   # edit, then
      closedloop train mine.yaml --seed 1
      closedloop train --config-from runs/closed.h5 --out runs/again.h5
      closedloop train di-tanh-open --init-from runs/closed.h5@0 \\
          --teacher runs/closed.h5 --out runs/open.h5 --seed 0
      closedloop train di-tanh-closed --seeds 0-31 --out runs/
      closedloop train di-tanh-open --seeds 0-31 --out runs/ \\
          --teacher 'runs/di-tanh-closed-seed{seed}.h5'
      closedloop train di-tanh-closed --log tensorboard logs/   # tensorboard --logdir logs
      closedloop train tracking-closed --devices 2   # each batch split over two cores
    """
    from closedloop.training.loggers import loggers_for
    from closedloop.training.sources import TrainingSource

    log = _log_specs(log_items)
    settings = list(overrides)
    if device is not None:
        settings.append(f"training.device={device}")
    if devices is not None:
        settings.append(f"training.devices={devices}")
    seeds = parse_seeds(seed_list) if seed_list is not None else [seed]
    source = TrainingSource.of(preset, config_from)
    jobs = [source.resolve(s, settings, epochs, init_from, teacher, resume) for s in seeds]
    for job in jobs:
        if job.defaulted_init and not (quiet or resume):
            click.echo(f"student starts from {job.config.init_from}, the teacher run's initial "
                       "weights (--init-from changes it)", err=True)
    preset = source.label
    started = time.perf_counter()
    if seed_list is None:
        job = jobs[0]
        out = out or Path("runs") / f"{preset}-seed{job.config.seed}.h5"
        from closedloop.training import train

        with _progress(job.config.training.epochs, preset, quiet) as update:
            results = [train(job.config, out, initial=job.initial, teacher=job.teacher,
                             resume=resume, overwrite=overwrite, progress=update,
                             loggers=loggers_for(log, [out])[0])]
    else:
        from closedloop.training import train_ensemble

        folder = out or Path("runs")
        if folder.suffix == ".h5":
            raise ConfigError("with --seeds, --out is a folder (one run file per seed)")
        folder.mkdir(parents=True, exist_ok=True)
        outs = [folder / f"{preset}-seed{s}.h5" for s in seeds]
        epochs_total = max(job.config.training.epochs for job in jobs)
        label = f"{preset} x{len(seeds)}"
        with _progress(epochs_total, label, quiet) as update:
            results = train_ensemble(
                [job.config for job in jobs], outs, initials=[job.initial for job in jobs],
                teachers=[job.teacher for job in jobs], resume=resume, overwrite=overwrite,
                progress=lambda index, record: update(record) if index == 0 else None,
                loggers=loggers_for(log, outs))
    elapsed = time.perf_counter() - started
    for result in results:
        last = result.last_record
        summary = f"{result.path}: {result.status}"
        if last is not None:
            summary += (f", epoch {last.epoch}, test loss {last.test_loss:.4g}, "
                        f"spectral radius {last.spectral_radius:.4f}")
            if last.gains is not None and last.gains.size == 2:
                summary += f", gains ({last.gains.flat[0]:.4f}, {last.gains.flat[1]:.4f})"
        if result.status == "diverged":
            err_console.print(f"[yellow]{result.path}: diverged at epoch "
                              f"{result.diverged_epoch} (recorded in the run file)[/yellow]")
        click.echo(summary)
    click.echo(f"{len(results)} run(s) in {elapsed:.1f} s")


class _progress:
    """A Rich progress bar showing the current losses and spectral radius; it appears with the
    first finished epoch, so set-up errors print alone."""

    def __init__(self, epochs: int, label: str, quiet: bool) -> None:
        self.epochs, self.label, self.quiet = epochs, label, quiet
        self.progress: Progress | None = None

    def __enter__(self) -> Any:
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def update(self, record: EpochRecord) -> None:
        if self.quiet:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=err_console)
            self.progress.__enter__()
            self.task = self.progress.add_task(self.label, total=self.epochs + 1, status="")
        status = (f"train {record.train_loss:.3g}  test {record.test_loss:.3g}  "
                  f"rho {record.spectral_radius:.3f}")
        self.progress.update(self.task, completed=record.epoch + 1, status=status)


def cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where a command's training runs: ``--workers`` (local cluster), ``--scheduler`` (an
    existing Dask cluster) or ``--slurm JOBS`` with ``--slurm-option`` (a SLURM cluster)."""
    options = [
        click.option("--workers", type=click.IntRange(1, 1024), default=None,
                     help="Worker processes of the local cluster (default: one per core)."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="An existing Dask scheduler (tcp://host:8786) instead of a local "
                          "cluster; the output folder must be shared with its workers."),
        click.option("--slurm", "slurm_jobs", type=click.IntRange(1, 10_000), default=None,
                     metavar="JOBS",
                     help="Train on a SLURM cluster of JOBS batch jobs (needs dask-jobqueue: "
                          "pip install 'closedloop[slurm]').",),
        click.option("--slurm-option", "slurm_items", multiple=True, metavar="KEY=VALUE",
                     help="A dask-jobqueue SLURMCluster setting (repeat): cores (single-"
                          "threaded workers per job, default 1), memory (default 4GB), queue, "
                          "account, walltime, job_extra_directives, ..."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _slurm(jobs: int | None, items: tuple[str, ...]) -> Any:
    from closedloop.scale.cluster import SlurmOptions

    if jobs is None:
        if items:
            raise ConfigError("--slurm-option needs --slurm JOBS")
        return None
    return SlurmOptions.from_cli(jobs, items)


@cli.command()
@click.argument("preset")
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...",
              help="A setting and its values (repeat for a Cartesian product).")
@click.option("--seeds", "seed_list", default="0", show_default=True, metavar="LIST",
              help="Seeds of every grid point, e.g. 0-49 or 0,3,5.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Sweep folder (sweep.json, runs/, summaries).")
@click.option("--epochs", type=click.IntRange(0, 10_000_000), default=None,
              help="Training epochs (default: the preset's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="A setting for every run of the sweep.")
@cluster_options
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="XLA CPU threads per worker of the local cluster (workers of an existing "
                   "cluster keep their own settings).")
@click.option("--group-size", type=click.IntRange(1, 1024), default=None,
              help="Most runs trained together as one ensemble task (1: every run alone; "
                   "default: runs of one shape split evenly over the workers, at most 32).")
@click.option("--teacher-preset", default=None,
              help="Preset of the closed-loop teachers of an open-loop preset (default: "
                   "di-tanh-closed for di-tanh-open*, tracking-closed for tracking-open).")
@click.option("--quiet", is_flag=True, help="No progress display.")
@log_option
def sweep(preset: str, grid_items: tuple[str, ...], seed_list: str, out: Path,
          epochs: int | None, overrides: tuple[str, ...], workers: int | None,
          scheduler: str | None, slurm_jobs: int | None, slurm_items: tuple[str, ...],
          threads: int, group_size: int | None, teacher_preset: str | None,
          quiet: bool, log_items: tuple[tuple[str, Path], ...]) -> None:
    """Train PRESET over a grid of settings and seeds, as Dask tasks.

    Runs go to OUT/runs/ (one file each); finished runs are skipped, so running the same
    command again finishes a killed sweep. An open-loop preset trains each point's
    closed-loop teacher first. Summarise with 'closedloop sweep-summary OUT'.

    \b
    Example:
      closedloop sweep di-tanh-open --seeds 0-49 --out sweeps/pair
      closedloop sweep di-lowrank-closed --grid task.steps=10,50,200 \\
          --grid training.lr=5e-4,1e-3 --seeds 0-9 --out sweeps/lowrank
      closedloop sweep di-tanh-closed --seeds 0-99 --out /scratch/sweep \\
          --scheduler tcp://10.0.0.5:8786
      closedloop sweep di-tanh-open --seeds 0-99 --out /scratch/pair --slurm 8 \\
          --slurm-option cores=4 --slurm-option walltime=02:00:00
    """
    from closedloop.runtime import set_xla_threads
    from closedloop.scale.sweep import SweepSpec, parse_grid, run_sweep

    log = _log_specs(log_items)
    spec = SweepSpec(preset, parse_grid(grid_items), parse_seeds(seed_list), epochs,
                     list(overrides), teacher_preset)
    set_xla_threads(threads)         # for the worker processes of a local cluster
    display = _JobsDisplay(quiet)
    with display:
        result = run_sweep(spec, out, scheduler=scheduler, workers=workers,
                           slurm=_slurm(slurm_jobs, slurm_items), group_size=group_size,
                           on_event=display.event, log=log)
    new = len(result.finished) - len(result.skipped)
    click.echo(f"{out}: {len(result.finished)} of {len(result.finished) + len(result.failed)} "
               f"runs finished ({new} now, {len(result.skipped)} already there) in "
               f"{result.elapsed / 60:.1f} min")
    for reason in sorted(set(result.failed.values())):
        names = [n for n, r in result.failed.items() if r == reason]
        err_console.print(f"[red]failed ({len(names)}): {', '.join(names[:5])}"
                          f"{' ...' if len(names) > 5 else ''}: {reason}[/red]")
    click.echo(f"summarise with: closedloop sweep-summary {out}")
    if result.failed:
        raise click.exceptions.Exit(1)


class _JobsDisplay:
    """Progress of many runs (a sweep, a reproduction): finished runs overall and the epoch of
    every running task, as Rich bars on a terminal, or as a plain line per finished task (and
    per task about once a minute) when stderr is a log file (a batch job)."""

    LOG_INTERVAL = 60.0

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.plain = quiet, not err_console.is_terminal
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=err_console,
                                 disable=quiet or self.plain)
        self.overall: Any = None
        self.tasks: dict[str, Any] = {}
        self.done = self.total = 0
        self.started = time.monotonic()
        self.logged: dict[str, float] = {}

    def __enter__(self) -> _JobsDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def _log(self, text: str) -> None:
        if self.plain and not self.quiet:
            minutes = (time.monotonic() - self.started) / 60
            click.echo(f"[{minutes:6.1f} min] {text}", err=True)

    def event(self, event: JobEvent) -> None:
        from closedloop.scale.jobs import EpochProgress, JobsFinished, JobsTotal

        if isinstance(event, JobsTotal):
            self.total = event.count
            self.overall = self.progress.add_task("runs finished", total=event.count)
        elif isinstance(event, JobsFinished):
            names = event.names
            self.done += len(names)
            self.progress.advance(self.overall, len(names))
            if names:
                self._log(f"runs finished {self.done}/{self.total}"
                          + (f" ({len(names)} failed)" if event.failed else ""))
            for label in [k for k in self.tasks if k.split(" (+")[0] in names]:
                self.progress.remove_task(self.tasks.pop(label))
        elif isinstance(event, EpochProgress):
            label = event.label
            now = time.monotonic()
            if now - self.logged.get(label, 0.0) > self.LOG_INTERVAL:
                self.logged[label] = now
                self._log(f"{label}: epoch {event.epoch}/{event.total}")
            if label not in self.tasks:
                self.tasks[label] = self.progress.add_task(f"  {label}", total=event.total)
            self.progress.update(self.tasks[label], completed=event.epoch)


@cli.command(name="sweep-summary")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(1, 1024), default=None,
              help="Processes reading runs (default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print the claim support as JSON.")
def sweep_summary(folder: Path, workers: int | None, as_json: bool) -> None:
    """Tabulate a sweep: one row per run (CSV and Parquet), claim support, summary plots.

    \b
    Example:
      closedloop sweep-summary sweeps/pair
      python -c "import pandas; print(pandas.read_parquet('sweeps/pair/summary.parquet'))"
    """
    from closedloop.scale.sweep_summary import summarize_sweep, write_summary

    with Progress(TextColumn("[bold]reading runs"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console) as progress:
        task = progress.add_task("rows", total=None)
        summary = summarize_sweep(folder, workers=workers, progress=lambda done, total:
                                  progress.update(task, completed=done, total=total))
    paths = write_summary(summary, folder)
    if as_json:
        click.echo(json.dumps(summary.support))
        return
    statuses: dict[str, int] = {}
    for row in summary.rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    click.echo(f"{len(summary.rows)} runs: " + ", ".join(f"{n} {s}"
                                                         for s, n in sorted(statuses.items())))
    for claim, support in summary.support.items():
        if support["judged"]:
            click.echo(f"{claim}: supported by {support['supported']} of {support['judged']} "
                       f"runs ({support['fraction']:.0%})")
    click.echo("wrote " + ", ".join(str(p) for p in paths))


@cli.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(run_path: Path, as_json: bool) -> None:
    """Summarise a run file; --json prints the per-epoch curves as one JSON object.

    \b
    Example:
      closedloop inspect runs/closed.h5
      closedloop inspect runs/open.h5 --json > open.json
    """
    run = load_run(run_path)
    summary = summarize_run(run)
    if as_json:
        click.echo(json.dumps(summary, allow_nan=False))
        return
    _print_summary(run, summary)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reproduction"), show_default=True,
              help="Output folder (run files in OUT/runs are reused on a second call).")
@click.option("--only", default=None, metavar="FIGS",
              help="Comma-separated figures to make, e.g. fig1,fig3 (default all).")
@click.option("--quick", is_flag=True,
              help="Reduced settings for tests: a few minutes instead of the full run.")
@click.option("--seeds", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Repeat every stochastic experiment over N seeds; claims report the "
                   "fraction of seeds that support them.")
@cluster_options
@click.option("--device", default="cpu", show_default=True, metavar="cpu|gpu|gpu:N|auto",
              help="Where the workers train; with a GPU use --workers 1 (per GPU): the seeds "
                   "of every run train as one batched ensemble.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@log_option
def reproduce(out: Path, only: str | None, quick: bool, seeds: int, workers: int | None,
              scheduler: str | None, slurm_jobs: int | None, slurm_items: tuple[str, ...],
              device: str, quiet: bool, log_items: tuple[tuple[str, Path], ...]) -> None:
    """Regenerate every figure of the paper, judge each claim, and write a report
    (OUT/index.html, OUT/results.json, OUT/fig1.png ... fig6.png and .svg).

    \b
    Example:
      closedloop reproduce                       # the paper's settings
      closedloop reproduce --quick --out quick   # a few minutes
      closedloop reproduce --only fig1,fig2 --seeds 5
      closedloop reproduce --seeds 20 --out /shared/repro --slurm 10
    """
    from closedloop.paper import reproduce as run_reproduction
    from closedloop.runtime import available_cores

    log = _log_specs(log_items)
    figures = [f.strip() for f in only.split(",") if f.strip()] if only else None
    workers = workers or available_cores()
    started = time.perf_counter()
    display = _JobsDisplay(quiet)
    with display:
        result = run_reproduction(out, only=figures, quick=quick, seeds=seeds, workers=workers,
                                  scheduler=scheduler, slurm=_slurm(slurm_jobs, slurm_items),
                                  device=device, on_event=display.event, log=log)
    console = Console()
    table = Table(title="claims")
    for column in ("claim", "figure", "verdict", "support"):
        table.add_column(column)
    for claim in result.results["claims"]:
        style = {"supported": "green", "not supported": "red"}.get(claim["verdict"], "yellow")
        table.add_row(claim["id"], claim["figure"], f"[{style}]{claim['verdict']}[/{style}]",
                      f"{sum(claim['per_seed'])}/{len(claim['per_seed'])}")
    console.print(table)
    for figure in result.results["figures"]:
        if figure.get("error"):
            console.print(f"[red]{figure['figure']}: {figure['error']}[/red]")
    minutes = (time.perf_counter() - started) / 60
    click.echo(f"report: {result.page} ({minutes:.1f} min)")


@cli.command()
@click.argument("name", metavar="NAME")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Study folder (default studies/NAME); run files in OUT/runs are reused.")
@click.option("--seeds", "seed_list", default="0-4", show_default=True, metavar="LIST",
              help="Seeds, e.g. 0-4 or 0,3,5 (each preset's seeds train as one ensemble).")
@click.option("--epochs", type=click.IntRange(1, 10_000_000), default=None,
              help="Training epochs of every run (default: the presets').")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def study(name: str, out: Path | None, seed_list: str, epochs: int | None, quiet: bool) -> None:
    """Run a study of a loop beyond the paper, shipped as presets: pendulum-pair (closed
    versus open loop on a pendulum held upright), curl-field (reaching with a point mass,
    then a curl force field switched on), muscle-curl-field (the same with the muscle arm,
    with the spectrum at the hold posture and the trained loop's fixed points) or
    compare-modes (the double integrator trained four ways). Writes OUT/NAME.png, .svg and
    .json.

    \b
    Example:
      closedloop study pendulum-pair --seeds 0-4
      closedloop study curl-field --seeds 0-4 --out studies/curl
      closedloop study muscle-curl-field --seeds 0-4
    """
    from closedloop.studies.loops import STUDIES, run_study

    if name not in STUDIES:
        raise ConfigError(f"unknown study '{name}' (available: {', '.join(STUDIES)})")
    seeds = parse_seeds(seed_list)
    out = out or Path("studies") / name
    started = time.perf_counter()
    display = _StudyProgress(quiet)
    with display:
        summary = run_study(name, out, seeds, epochs=epochs, progress=display.start)
    for key, count in summary["support"].items():
        click.echo(f"{key}: {count}/{len(seeds)} seeds")
    click.echo(f"wrote {out / name}.png, .svg, .json ({(time.perf_counter() - started) / 60:.1f}"
               " min)")


class _StudyProgress:
    """A progress bar per group of runs a study trains (its first member's epochs)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: _progress | None = None

    def __enter__(self) -> _StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, label: str, epochs: int) -> Callable[[int, EpochRecord], None]:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        self.bar = _progress(epochs, label, self.quiet)
        update = self.bar.__enter__()
        return lambda index, record: update(record) if index == 0 else None


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def bench(arguments: tuple[str, ...]) -> None:
    """Time closedloop against the baseline a user would write instead (eager PyTorch), side
    by side, and print the ratios: the benchmarks of a source checkout (benchmarks/run.py;
    they need the benchmark extra: pip install -e '.[bench]'). Options are passed on.

    \b
    Example:
      closedloop bench
      closedloop bench --quick --only one-network,tracking
    """
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"
    if not script.is_file():
        raise ConfigError("closedloop bench runs the benchmarks of a source checkout "
                          "(benchmarks/run.py next to src/); this installation has none")
    spec = importlib.util.spec_from_file_location("benchmarks.run", script)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = runner             # dataclasses look their module up there
    spec.loader.exec_module(runner)
    code = runner.main(list(arguments))
    if code:
        raise click.exceptions.Exit(code)


@cli.command()
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--window", type=click.IntRange(1, 10_000), default=5, show_default=True,
              help="Stage-1 detector: epochs averaged.")
@click.option("--growth-threshold", type=click.FloatRange(0, 10, min_open=True), default=0.01,
              show_default=True,
              help="Stage-1 detector: relative growth of Im(lambda) per epoch called settled.")
def analyze(run_path: Path, as_json: bool, window: int, growth_threshold: float) -> None:
    """Stages, stabilisation, unit-circle crossings and (rank-1 runs) order parameters of a
    run, read from the spectrum of the coupled matrix P; for a tracking run also each
    frequency's acquisition (onset, crossing, end) and the outlier eigenvalue of (-I + W)/tau
    at its end against 2 pi f.

    \b
    Example:
      closedloop analyze runs/lowrank.h5
      closedloop analyze runs/closed.h5 --json > closed-analysis.json
      closedloop analyze runs/tracking.h5
    """
    from closedloop.analysis.summary import analyze_run

    run = load_run(run_path)
    report = analyze_run(run, window=window, growth_threshold=growth_threshold)
    if as_json:
        click.echo(json.dumps(report.to_json(), allow_nan=False))
        return
    _print_analysis(report)


@cli.command(name="fixed-points")
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.option("--epoch", default="last", show_default=True, metavar="EPOCH|last",
              help="Snapshot epoch whose network is analysed.")
@click.option("--starts", type=click.IntRange(1, 100_000), default=64, show_default=True,
              help="Starts of the search (states the loop visits, pushed a little).")
@click.option("--slow", is_flag=True, help="Also list slow points (minima with F(s) != s).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def fixed_points(run_path: Path, epoch: str, starts: int, slow: bool, as_json: bool) -> None:
    """Fixed points of a run's closed loop (network and plant together), each with the
    spectrum of the coupled Jacobian there and whether it is stable: q(s) = |F(s) - s|^2 is
    minimised from many starts, as in RNN fixed-point analysis.

    \b
    Example:
      closedloop fixed-points runs/pendulum.h5
      closedloop fixed-points runs/pendulum.h5 --epoch 0 --json > fixed.json
    """
    from closedloop.analysis.fixed_points import run_fixed_points

    at: int | str = epoch if epoch == "last" else _epoch_number(epoch)
    result = run_fixed_points(load_run(run_path), at, starts, include_slow=slow)
    if as_json:
        click.echo(json.dumps({"path": str(run_path), **result.to_json()}, allow_nan=False))
        return
    table = Table(title=f"fixed points of {run_path} (epoch {result.epoch}, {starts} starts)")
    for column in ("#", "plant state", "|h|", "residual", "rho", "stable", "leading eig",
                   "starts"):
        table.add_column(column, no_wrap=True)
    n_x, names = result.n_states, result.state_names
    shown = n_x if n_x <= SHOWN_STATES else 4      # a wide state: its first entries
    for index, point in enumerate(result.points):
        state = ", ".join(f"{v:+.4f}" for v in point.state[:shown]) + (
            f", ... (+{n_x - shown})" if shown < n_x else "")
        kind = ("[green]yes[/green]" if point.stable else "[red]no[/red]") + (
            "" if point.fixed else " (slow)")
        lead = _complex(complex(point.eigenvalues[0])) if point.eigenvalues.size else "-"
        table.add_row(str(index), state, f"{np.linalg.norm(point.state[n_x:]):.3g}",
                      f"{point.residual:.1e}", f"{point.spectral_radius:.4f}", kind, lead,
                      str(point.starts))
    Console(width=max(120, Console().width)).print(table)
    if names:
        click.echo("plant state: " + ", ".join(names[:shown])
                   + (f", ... (all {n_x} with --json)" if shown < n_x else ""))


def _epoch_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--epoch '{text}' is not an epoch number or 'last'") from None


def _print_analysis(report: RunAnalysis) -> None:
    console = Console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", f"{report.path} ({report.preset}, seed {report.seed}, "
                         f"epochs 0..{report.epochs}, {report.status})")
    for name, label in (("stage1_end", "stage 1 ends"), ("stage2_end", "stage 2 ends")):
        boundary = report.boundary_losses[name]
        if boundary is None:
            table.add_row(label, "not reached")
        else:
            table.add_row(label, f"epoch {boundary['epoch']} (train loss "
                                 f"{_fmt(boundary['train_loss'] or math.nan)}, test loss "
                                 f"{_fmt(boundary['test_loss'] or math.nan)})")
    stabilization = report.stabilization_epoch
    table.add_row("stabilisation", "never" if stabilization is None else f"epoch {stabilization}")
    table.add_row("merges", ", ".join(f"epoch {m.epoch} -> {_complex(m.eigenvalue)}"
                                      for m in report.merges[:6]) or "none")
    crossings = report.crossings
    shown = ", ".join(f"{c.epoch} {c.direction}" for c in crossings[:12])
    more = f" (+{len(crossings) - 12} more)" if len(crossings) > 12 else ""
    table.add_row("crossings", (shown + more) or "none")
    table.add_row("final eig(P)", ", ".join(_complex(v) for v in report.final_eigenvalues))
    if report.order_parameters is not None:
        order = report.order_parameters
        for name in ("s_zm", "s_zu", "s_vm", "s_vu"):
            values = order[name]
            table.add_row(name, f"{values[0]:+.4f} (epoch {order['epoch'][0]}) -> "
                                f"{values[-1]:+.4f} (epoch {order['epoch'][-1]})")
    console.print(table)
    if report.acquisitions is not None:
        console.print(_acquisition_table([a.to_json() for a in report.acquisitions]))


def _acquisition_table(found: list[dict[str, Any]]) -> Table:
    """Per probe frequency: onset, crossing and end of its acquisition, the outlier of
    (-I + W)/tau at the end, 2 pi f and the relative error."""
    table = Table(title="acquisitions (probe error / (a^2/2): onset >= 0.9, crossing < 0.5, "
                        "end: settled)")
    for column in ("f (Hz)", "onset", "crossing", "end", "outlier at end", "Im", "2 pi f",
                   "error"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in found:
        outlier = row["outlier"]
        error = row["relative_error"]
        table.add_row(f"{row['frequency_hz']:g}",
                      *("-" if row[k] is None else str(row[k])
                        for k in ("onset", "crossing", "end")),
                      "-" if outlier is None else _complex(outlier),
                      "-" if outlier is None else f"{outlier[1]:.3f}",
                      f"{row['target_rad_per_s']:.3f}",
                      "-" if error is None else f"{error:+.1%}")
    return table


def _complex(value: complex | Sequence[float]) -> str:
    """``value`` (a complex number or its [re, im] pair) as +a+bj."""
    if not isinstance(value, complex | float | int):
        value = complex(value[0], value[1])
    return f"{value.real:+.4f}{value.imag:+.4f}j"


def _print_summary(run: Run, summary: dict[str, Any]) -> None:
    console = Console()
    test = run.metrics["test_loss"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    finite = np.isfinite(test)
    peak = int(np.nanargmax(np.where(finite, test, np.nan))) if finite.any() else None
    rows = [
        ("run", str(run.path)),
        ("preset", f"{run.config.preset} ({run.config.training.mode}, seed {run.config.seed})"),
        ("status", run.status + (f" at epoch {run.diverged_epoch}" if run.diverged_epoch
                                 is not None else "")),
        ("epochs", f"0..{run.last_epoch}"),
        ("train loss", f"{_fmt(run.metrics['train_loss'][0])} (epoch 0) -> "
                       f"{_fmt(run.metrics['train_loss'][-1])}"),
        ("test loss", f"{_fmt(test[0])} (epoch 0) -> {_fmt(test[-1])}; peak "
                      f"{_fmt(test[peak]) if peak is not None else '-'} at epoch {peak}"),
        ("spectral radius", f"{_fmt(run.metrics['spectral_radius'][0], '.4f')} -> "
                            f"{_fmt(run.metrics['spectral_radius'][-1], '.4f')}"),
        ("stabilisation", f"epoch {summary['stabilization_epoch']}"
         if summary["stabilization_epoch"] is not None else "never (rho(P) >= 1 at the end)"),
        ("stages", f"stage 1 ends at epoch {summary['stages']['stage1_end']}, stage 2 at "
                   f"{summary['stages']['stage2_end']} (see closedloop analyze)"),
    ]
    if "gains" in run.metrics:
        gains = run.metrics["gains"][-1]
        rows.append(("final gains", np.array2string(gains.squeeze(0) if gains.shape[0] == 1
                                                    else gains, precision=4)))
    if run.teacher is not None:
        rows.append(("teacher", run.teacher.source))
    if run.config.init_from:
        rows.append(("initial weights", run.config.init_from))
    eig = ", ".join(f"{v.real:+.4f}{v.imag:+.4f}j" for v in
                    (complex(*p) for p in summary["final_eigenvalues"]))
    rows.append(("final eig(P)", eig))
    rows.append(("snapshots", f"{len(run.snapshot_epochs)} epochs"))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _fmt(value: float, spec: str = ".4g") -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to one line and exit code 2."""
    from closedloop.runtime import configure_cli

    configure_cli()
    try:
        # without standalone mode click returns a raised Exit's code instead of exiting
        code = cli.main(args=argv, prog_name="closedloop", standalone_mode=False)
    except click.exceptions.UsageError as exc:
        hint = f" (see 'closedloop {exc.ctx.info_name} --help')" if exc.ctx and \
            exc.ctx.info_name != "closedloop" else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except ClosedLoopError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:
        # the machine refused (disk full, read-only folder, no permission): files written so
        # far are complete (every write is write-then-rename), an unfinished run resumable
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where} (files written before are intact; an "
                   "unfinished run continues with --resume)", err=True)
        return 1
    except MemoryError:
        click.echo("error: out of memory (use smaller sizes, or fewer runs at once)", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted (an unfinished run continues with --resume)", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
