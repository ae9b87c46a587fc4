"""One module per paper figure, and :func:`reproduce`, which runs them all.

``reproduce`` collects every figure's jobs (for each seed), trains what is missing on local
processes, analyses the runs, draws the figures (PNG and SVG), judges each claim by its
written criterion, and writes ``results.json`` and a self-contained ``index.html``.

Example
-------
>>> from closedloop.paper import FIGURES
>>> FIGURES
('fig1', 'fig2', 'fig3', 'fig4', 'fig5', 'fig6')
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from closedloop import __version__
from closedloop.errors import ClosedLoopError, ConfigError
from closedloop.paper.base import Claim, FigureAnalysis, Settings, finite
from closedloop.scale.jobs import EventCallback, execute, local_processes

FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6")
MAIN_SPECTRA = (("di-tanh-closed", "fig1"), ("di-tanh-open", "fig1"),
                ("di-lowrank-closed", "fig3"))


def figure_module(name: str) -> ModuleType:
    """The module of figure ``name`` (``fig1`` ... ``fig6``)."""
    if name not in FIGURES:
        raise ConfigError(f"unknown figure '{name}' (available: {', '.join(FIGURES)})")
    return importlib.import_module(f"closedloop.paper.{name}")


@dataclass
class ReproduceResult:
    """Where the report is, and the judged claims."""

    page: Path
    results: dict[str, Any]


def _claim_record(figure: str, per_seed: list[tuple[int, Claim]]) -> dict[str, Any]:
    seed, first = per_seed[0]
    votes = [claim.supported for _, claim in per_seed]
    support = sum(votes) / len(votes)
    verdict = ("supported" if support == 1 else "not supported" if support == 0
               else f"partly supported ({sum(votes)}/{len(votes)} seeds)")
    return {"id": first.id, "figure": figure, "statement": first.statement,
            "criterion": first.criterion, "measured": finite(first.measured), "seed": seed,
            "per_seed": votes, "support": support, "verdict": verdict,
            "measured_per_seed": [finite(c.measured) for _, c in per_seed]}


def reproduce(out: Path, *, only: list[str] | None = None, quick: bool = False,
              seeds: int = 1, workers: int = 2, on_event: EventCallback | None = None
              ) -> ReproduceResult:
    """Regenerate the selected figures into ``out`` and judge their claims.

    Parameters
    ----------
    out
        Output folder (run files go to ``out/runs``, reused on a second call).
    only
        Figure names to make (default all).
    quick
        Reduced settings for tests (minutes instead of the paper's full settings).
    seeds
        Repeat every stochastic experiment over seeds 0..seeds-1 and report each claim's
        support as a fraction of seeds (figures show seed 0).
    workers
        Local processes that train runs in parallel (the same run of several seeds, and runs
        of one shape ready at the same time, train together).
    on_event
        Receives the training events of :func:`closedloop.scale.jobs.execute` (for a
        progress display).
    """
    import matplotlib.pyplot as plt

    from closedloop.plotting.figures import DRAW

    started = time.perf_counter()
    names = list(only or FIGURES)
    modules = {name: figure_module(name) for name in names}
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    settings = Settings(quick=quick, seeds=tuple(range(seeds)))
    out.mkdir(parents=True, exist_ok=True)
    jobs = [job for seed in settings.seeds for module in modules.values()
            for job in module.jobs(settings, seed)]
    with multiprocessing.get_context("spawn").Manager() as manager, \
            local_processes(workers) as pool:
        executed = execute(jobs, out / "runs", pool, capacity=workers, channel=manager.Queue(),
                           on_event=on_event)
    runs, failures = executed.runs, executed.failed
    trained = time.perf_counter()

    claims: list[dict[str, Any]] = []
    figures: list[dict[str, Any]] = []
    images: dict[str, Path] = {}
    analyses: dict[str, FigureAnalysis] = {}
    for name, module in modules.items():
        entry: dict[str, Any] = {"figure": name, "title": module.TITLE}
        per_seed: dict[str, list[tuple[int, Claim]]] = {}
        try:
            for seed in settings.seeds:
                analysis = module.analyze(runs, settings, seed)
                if seed == settings.seeds[0]:
                    analyses[name] = analysis
                for claim in analysis.claims:
                    per_seed.setdefault(claim.id, []).append((seed, claim))
        except KeyError as missing:
            reason = failures.get(str(missing.args[0]), "the run is missing")
            entry["error"] = f"run {missing.args[0]} could not be made: {reason}"
        except (ValueError, IndexError, ArithmeticError, ClosedLoopError) as exc:
            # e.g. a run that diverged early leaves too little to analyse
            entry["error"] = f"analysis failed: {type(exc).__name__}: {exc}"
        if name in analyses and "error" not in entry:
            try:
                figure = DRAW[name](analyses[name].data)
                for suffix in ("png", "svg"):
                    figure.savefig(out / f"{name}.{suffix}", dpi=110)
                images[name] = out / f"{name}.png"
                plt.close(figure)
            except (ValueError, IndexError, ArithmeticError) as exc:
                entry["error"] = f"figure could not be drawn: {type(exc).__name__}: {exc}"
                plt.close("all")
        claims.extend(_claim_record(name, seed_claims) for seed_claims in per_seed.values())
        figures.append(entry)
    finished = time.perf_counter()
    results = {
        "version": __version__, "settings": {"quick": quick, "seeds": list(settings.seeds),
                                             "figures": names, "workers": workers},
        "claims": claims, "figures": figures, "failures": failures,
        "timing": {"training_s": trained - started, "analysis_s": finished - trained,
                   "total_s": finished - started},
        "runs": sorted(run.path.name for run in runs.values()),
    }
    from closedloop.analysis.summary import run_stages
    from closedloop.paper.report import spectrum_view_data, write_report

    spectra = []
    for stem, figure in MAIN_SPECTRA:
        name = f"{stem}-s{settings.seeds[0]}"
        if figure in modules and name in runs:
            spectra.append(spectrum_view_data(stem, runs[name],
                                              run_stages(runs[name]).to_json()))
    page = write_report(out, results, images, spectra)
    return ReproduceResult(page, results)
