"""One module per paper figure, and :func:`reproduce`, which runs them all.

``reproduce`` collects every figure's jobs for each seed, trains what is missing as tasks of
a Dask cluster (a local one by default; the runs of one job over seeds train together as one
ensemble, a student after its teacher, a retraining after the run it starts from), judges
every registered claim a figure shows (:mod:`closedloop.analysis.claims`) per seed by its
written criterion, on the runs the figure module lays out in the claim's roles, draws the
figures (PNG and SVG; seed 0, with the seeds' spread shaded), and writes ``results.json`` and
a self-contained ``index.html`` with every claim's support over seeds and the numbers behind
it.

Example
-------
>>> from closedloop.paper import FIGURES
>>> FIGURES
('fig1', 'fig2', 'fig3', 'fig4', 'fig5', 'fig6')
"""

from __future__ import annotations

import importlib
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from closedloop import __version__
from closedloop.analysis.claims import Claim, registered_claims
from closedloop.config.schema import DEVICE_PATTERN
from closedloop.errors import ClosedLoopError, ConfigError
from closedloop.paper.base import (
    FigureAnalysis,
    Job,
    JobInputs,
    Judgement,
    Settings,
    finite,
    run_name,
)
from closedloop.runs.store import Run
from closedloop.scale.cluster import SlurmOptions, run_jobs
from closedloop.scale.jobs import EventCallback, ExecutionResult
from closedloop.training.loggers import LogSpec

FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6")
MAIN_SPECTRA = (("di-tanh-closed", "fig1"), ("di-tanh-open", "fig1"),
                ("di-lowrank-closed", "fig3"))
SPREAD = (0.1, 0.9)
"""Quantiles over seeds shaded around seed 0's loss curves."""


def figure_module(name: str) -> ModuleType:
    """The module of figure ``name`` (``fig1`` ... ``fig6``)."""
    if name not in FIGURES:
        raise ConfigError(f"unknown figure '{name}' (available: {', '.join(FIGURES)})")
    return importlib.import_module(f"closedloop.paper.{name}")


def figure_claims(name: str) -> list[Claim]:
    """The registered claims that figure ``name`` shows (its module lays out their runs).

    Example
    -------
    >>> [claim.id for claim in figure_claims("fig3")]
    ['C2', 'C3']
    """
    return [claim for claim in registered_claims() if claim.figure == name]


@dataclass
class ReproduceResult:
    """Where the report is, and the judged claims."""

    page: Path
    results: dict[str, Any]


def _verdict(votes: list[bool]) -> str:
    if not votes:
        return "not judged"
    return ("supported" if all(votes) else "not supported" if not any(votes)
            else f"partly supported ({sum(votes)}/{len(votes)} seeds)")


def _claim_record(figure: str, claim_id: str, per_seed: list[tuple[int, Judgement | str]]
                  ) -> dict[str, Any]:
    """One claim over seeds: a :class:`Judgement` per seed, or the reason it could not be
    judged for that seed (its runs could not be made, its analysis failed), which counts as
    not supported."""
    judged = [(seed, claim) for seed, claim in per_seed if isinstance(claim, Judgement)]
    first_seed, first = judged[0] if judged else (per_seed[0][0], None)
    table, cases = [], {}
    for seed, claim in per_seed:
        if isinstance(claim, Judgement):
            table.append({"seed": seed, "supported": claim.supported, "case": claim.case,
                          "failed": claim.failed, "numbers": finite(claim.numbers)})
            if claim.case is not None:
                count = cases.setdefault(claim.case, {"supported": 0, "judged": 0})
                count["judged"] += 1
                count["supported"] += claim.supported
        else:
            table.append({"seed": seed, "supported": False, "case": None,
                          "failed": [f"not judged: {claim}"], "numbers": {}})
    votes = [row["supported"] for row in table]
    return {"id": claim_id, "figure": figure,
            "statement": first.statement if first else "",
            "criterion": first.criterion if first else "",
            "measured": finite(first.measured) if first else {}, "seed": first_seed,
            "seeds": [seed for seed, _ in per_seed], "per_seed": votes,
            "support": sum(votes) / len(votes), "verdict": _verdict(votes),
            "cases": cases, "table": table,
            "measured_per_seed": [finite(c.measured) if isinstance(c, Judgement) else None
                                  for _, c in per_seed]}


def _failure(exc: BaseException, failures: dict[str, str]) -> str:
    if isinstance(exc, KeyError):
        reason = failures.get(str(exc.args[0]), "the run is missing")
        return f"run {exc.args[0]} could not be made: {reason}"
    return f"analysis failed: {type(exc).__name__}: {exc}"


ANALYSIS_ERRORS = (KeyError, ValueError, IndexError, ArithmeticError, ClosedLoopError)
"""What a seed's analysis may raise (a missing run, a run that diverged early and leaves too
little to analyse): recorded for that seed, never fatal to the report."""


def seed_spread(curves: list[np.ndarray], quantiles: tuple[float, float] = SPREAD
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-epoch ``quantiles`` of curves over seeds (None for fewer than two seeds, or
    curves of different lengths).

    Example
    -------
    >>> low, high = seed_spread([np.array([1.0, 2.0]), np.array([3.0, 4.0])])
    >>> low.tolist(), high.tolist()
    ([1.2, 2.2], [2.8, 3.8])
    """
    if len(curves) < 2 or len({len(c) for c in curves}) != 1:
        return None
    stacked = np.stack(curves)
    with warnings.catch_warnings():      # epochs where no seed has a value (epoch 0's train loss)
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(np.where(np.isfinite(stacked), stacked, np.nan),
                                   quantiles, axis=0)
    return low, high


def _figure_over_seeds(name: str, module: ModuleType, executed: ExecutionResult,
                       settings: Settings, out: Path, images: dict[str, Path]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Judge the claims one figure shows for every seed (each on its own: one that cannot be
    judged does not keep the others from it; the first seed's from the figure's analysis where
    it judges them, as it reads its data from them), draw it (the first seed, with the seeds'
    spread), and draw each claim's distribution over seeds; images go to ``images``. Returns
    the figure's report entry and its claim records."""
    import matplotlib.pyplot as plt

    from closedloop.plotting.claims import draw_claim_seeds
    from closedloop.plotting.figures import DRAW

    runs, first = executed.runs, settings.seeds[0]
    entry: dict[str, Any] = {"figure": name, "title": module.TITLE}
    claims = figure_claims(name)
    per_seed: dict[str, list[tuple[int, Judgement | str]]] = {c.id: [] for c in claims}
    analysis: FigureAnalysis | None = None
    curves: dict[str, list[np.ndarray]] = {key: [] for key in module.CURVES}
    for seed in settings.seeds:
        try:
            shown: dict[str, Judgement] = {}
            if seed == first:
                analysis = module.analyze(runs, settings, seed)
                shown = {judgement.id: judgement for judgement in analysis.judgements}
            laid_out = module.roles(runs, settings, seed)
        except ANALYSIS_ERRORS as exc:
            reason = _failure(exc, executed.failed)
            if seed == first:
                entry["error"] = reason
            for claim in claims:
                per_seed[claim.id].append((seed, reason))
            continue
        for claim in claims:
            try:
                judged = shown[claim.id] if claim.id in shown else claim.judge_runs(laid_out)
            except ANALYSIS_ERRORS as exc:
                judged = _failure(exc, executed.failed)
            per_seed[claim.id].append((seed, judged))
        for key, (stem, metric) in module.CURVES.items():
            curves[key].append(runs[run_name(stem, seed)].metrics[metric])
    if analysis is not None:
        spread = {key: band for key, values in curves.items()
                  if (band := seed_spread(values)) is not None}
        if spread:
            analysis.data["spread"] = spread
            analysis.data["spread_label"] = (f"seeds {SPREAD[0]:.0%}-{SPREAD[1]:.0%} "
                                             f"(n = {len(settings.seeds)})")
        try:
            figure = DRAW[name](analysis.data)
            for suffix in ("png", "svg"):
                figure.savefig(out / f"{name}.{suffix}", dpi=110)
            images[name] = out / f"{name}.png"
            plt.close(figure)
        except (ValueError, IndexError, ArithmeticError) as exc:
            entry["error"] = f"figure could not be drawn: {type(exc).__name__}: {exc}"
            plt.close("all")
    records = [_claim_record(name, claim_id, seed_claims)
               for claim_id, seed_claims in per_seed.items()]
    if len(settings.seeds) > 1:
        for record in records:
            figure = draw_claim_seeds(record)
            target = out / f"seeds-{record['id']}.png"
            figure.savefig(target, dpi=100)
            plt.close(figure)
            images[f"seeds-{record['id']}"] = target
    return entry, records


def on_device(job: Job, device: str) -> Job:
    """``job`` training on ``device`` (``training.device`` of the config it builds; the run
    file records it, so runs trained on another device are not reused).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> job = Job("a", lambda runs: JobInputs(load_preset("di-tanh-closed")))
    >>> on_device(job, "gpu").build({}).config.training.device
    'gpu'
    """
    def build(runs: Mapping[str, Run]) -> JobInputs:
        inputs = job.build(runs)
        training = inputs.config.training.model_copy(update={"device": device})
        return replace(inputs, config=inputs.config.model_copy(update={"training": training}))

    return replace(job, build=build)


def reproduce(out: Path, *, only: list[str] | None = None, quick: bool = False,
              seeds: int = 1, workers: int | None = None, scheduler: str | None = None,
              slurm: SlurmOptions | None = None, device: str = "cpu",
              on_event: EventCallback | None = None, log: Sequence[LogSpec] = ()
              ) -> ReproduceResult:
    """Regenerate the selected figures into ``out`` and judge their claims over seeds.

    Parameters
    ----------
    out
        Output folder (run files go to ``out/runs``, reused on a second call).
    only
        Figure names to make (default all).
    quick
        Reduced settings for tests (minutes instead of the paper's full settings).
    seeds
        Repeat every experiment over seeds 0..seeds-1: every claim is judged per seed and
        reported as the fraction of seeds that support it, with the per-seed numbers; the
        figures show seed 0 with the seeds' spread shaded on loss curves.
    workers
        Worker processes of the local Dask cluster (default: one per core).
    scheduler
        Address of an existing Dask scheduler to train on instead (``tcp://host:8786``);
        ``out`` must be on a file system every worker sees.
    slurm
        Train on a SLURM cluster of these batch jobs instead.
    device
        Where the workers train (``cpu``, ``gpu``, ``gpu:N``, ``auto``); on a GPU give one
        worker per GPU, so that each trains the seeds of a job as one batched ensemble.
    on_event
        Receives the training events of :func:`closedloop.scale.jobs.execute` (for a
        progress display).
    log
        Loggers for every run trained (``--log NAME DIR``; one subfolder per run).

    Returns
    -------
    ReproduceResult

    Example
    -------
    >>> result = reproduce(Path("quick"), quick=True, seeds=2)          # doctest: +SKIP
    >>> [(c["id"], c["support"]) for c in result.results["claims"]][:1]  # doctest: +SKIP
    [('C1', 1.0)]
    """
    started = time.perf_counter()
    names = list(only or FIGURES)
    modules = {name: figure_module(name) for name in names}
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"--device '{device}': use cpu, gpu, gpu:N or auto")
    settings = Settings(quick=quick, seeds=tuple(range(seeds)))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [job for seed in settings.seeds for module in modules.values()
            for job in module.jobs(settings, seed)]
    if device != "cpu":
        jobs = [on_device(job, device) for job in jobs]
    executed = run_jobs(jobs, out / "runs", scheduler=scheduler, workers=workers, slurm=slurm,
                        on_event=on_event, log=log)
    runs, failures = executed.runs, executed.failed
    trained = time.perf_counter()

    claims: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []
    images: dict[str, Path] = {}
    for name, module in modules.items():
        entry, records = _figure_over_seeds(name, module, executed, settings, out, images)
        figures.append(entry)
        claims.extend(records)
    finished = time.perf_counter()
    results = {
        "version": __version__,
        "settings": {"quick": quick, "seeds": list(settings.seeds), "figures": names,
                     "workers": workers, "scheduler": scheduler, "device": device,
                     "slurm_jobs": slurm.jobs if slurm else None},
        "claims": claims, "figures": figures, "failures": failures,
        "timing": {"training_s": trained - started, "analysis_s": finished - trained,
                   "total_s": finished - started},
        "runs": sorted(run.path.name for run in runs.values()),
    }
    from closedloop.analysis.summary import run_stages
    from closedloop.paper.report import spectrum_view_data, write_report

    spectra = []
    for stem, figure_name in MAIN_SPECTRA:
        run_key = run_name(stem, settings.seeds[0])
        if figure_name in modules and run_key in runs:
            spectra.append(spectrum_view_data(stem, runs[run_key],
                                              run_stages(runs[run_key]).to_json()))
    page = write_report(out, results, images, spectra)
    return ReproduceResult(page, results)
