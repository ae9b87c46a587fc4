"""Figure 1: closed versus open loop (science 2, 7.1) and claim C1
(:mod:`closedloop.analysis.claims.c1`)."""

from __future__ import annotations

from collections.abc import Mapping

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.summary import run_stages
from closedloop.paper.base import FigureAnalysis, Job, Settings
from closedloop.paper.pair import pair_jobs, pair_names, pair_roles
from closedloop.runs.store import Run

TITLE = "Closed versus open loop: the open-loop student's transient peak"
CURVES = {"closed_train": ("di-tanh-closed", "train_loss"),
          "closed_test": ("di-tanh-closed", "test_loss"),
          "open_train": ("di-tanh-open", "train_loss"),
          "open_test": ("di-tanh-open", "test_loss")}
"""Curves whose spread over seeds the figure shades: data key -> (run stem, metric)."""


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed/open pair."""
    return pair_jobs(settings, seed)


def roles(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[str, Run]:
    """The closed/open pair of one seed."""
    return pair_roles(runs, *pair_names(seed))


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Loss curves of both runs, the closed run's stages, and claim C1."""
    closed_name, open_name = pair_names(seed)
    closed, opened = runs[closed_name], runs[open_name]
    claim = CLAIMS.get("C1").judge(closed, opened)
    stages = run_stages(closed)
    data = {
        "epochs": closed.epochs, "open_epochs": opened.epochs,
        "closed_train": closed.metrics["train_loss"], "closed_test": closed.metrics["test_loss"],
        "open_train": opened.metrics["train_loss"], "open_test": opened.metrics["test_loss"],
        "stages": stages.to_json(), "open_peak_epoch": claim.measured["open_peak_epoch"],
    }
    return FigureAnalysis([claim], data)
