"""The tidy table of a sweep: one row per run, with every registered claim
(:mod:`closedloop.analysis.claims`) about one run or about a closed/open pair judged per run,
by the objects ``reproduce`` judges with, wherever it applies: of the paper's, C1 and C1b on
regulation pairs, C6 on tracking pairs, C2 on rank-1 low-rank closed-loop runs.

``closedloop sweep-summary DIR`` writes ``DIR/summary.csv``, ``DIR/summary.parquet``,
``DIR/support.json`` and ``DIR/summary.png``.

Columns: ``name``, ``preset``, ``role`` (run/teacher/student), ``teacher``, ``seed``, one
column per grid key (named by the key), ``status`` (complete, diverged, incomplete, missing),
``diverged_epoch``, ``epochs``, ``episode_length``, ``control_cost``, ``stabilization_epoch``,
``stage1_end``, ``stage2_end``, ``initial_test_loss``, ``final_train_loss``,
``final_test_loss``, ``peak_test_loss`` (the largest test loss after epoch 0),
``peak_epoch``, ``peak_ratio`` (peak over epoch 0), ``gain_0`` ... (the final effective gain
matrix, flattened row-major; regulation tasks only), and per claim judged on the run
``<id>_supported`` (``c1_supported``), ``<id>_failed`` (the parts of its criterion that do
not hold) and, for a claim judged by case, ``<id>_case`` (C2: real pair at the start or
complex from the start). A claim about one run (role ``run``) is judged on every finished run
trained without a teacher; a claim about a pair (roles ``closed``, ``opened``) on every
finished student with its finished teacher.

Example
-------
>>> summary = summarize_sweep("sweeps/pair")                            # doctest: +SKIP
>>> summary.support["C1"]                                               # doctest: +SKIP
{'supported': 47, 'judged': 50, 'fraction': 0.94}
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from closedloop.analysis.claims import (
    CLOSED,
    OPENED,
    RUN,
    Claim,
    Judgement,
    finite,
    registered_claims,
)
from closedloop.errors import IncompleteRunError, RunFileError
from closedloop.runs.store import Run, load_run
from closedloop.scale.sweep import RUNS_FOLDER, SweepPoint, SweepSpec, load_spec
from closedloop.training.rules import rule_for

GAIN_COLUMNS = 8
"""Gain columns in the table (``gain_0`` ...); larger gain matrices are cut (the run file has
them all)."""


def _config_value(config_data: dict[str, Any], key: str) -> Any:
    node: Any = config_data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float, str, bool)) or node is None else json.dumps(node)


LAYOUTS = (frozenset({RUN}), frozenset({CLOSED, OPENED}))
"""The roles in which a sweep lays out its runs for claims: one run, a closed/open pair."""


def sweep_claims() -> list[Claim]:
    """The registered claims a sweep judges: those about one run or a closed/open pair.

    Example
    -------
    >>> [claim.id for claim in sweep_claims()][:4]
    ['C1', 'C1b', 'C2', 'C6']
    """
    return [claim for claim in registered_claims() if set(claim.roles) in LAYOUTS]


def claim_columns(judgement: Judgement) -> dict[str, Any]:
    """The columns of one judged claim in a row: ``<id>_supported``, ``<id>_case`` for a claim
    judged by case, and ``<id>_failed``.

    Example
    -------
    >>> claim_columns(Judgement("C0", "s", "c", {}, {"a": True, "b": False}))
    {'c0_supported': False, 'c0_failed': 'b'}
    """
    prefix = judgement.id.lower()
    columns: dict[str, Any] = {f"{prefix}_supported": judgement.supported}
    if judgement.case is not None:
        columns[f"{prefix}_case"] = judgement.case
    columns[f"{prefix}_failed"] = "; ".join(judgement.failed) or None
    return columns


def point_row(spec_json: str, point_name: str, folder: str,
              claims: Sequence[Claim] | None = None) -> dict[str, Any]:
    """The table row of one point (reads its run file, and its teacher's for claims about a
    closed/open pair), with ``claims`` (default :func:`sweep_claims`) judged where they apply.

    Example
    -------
    >>> spec = load_spec("sweeps/pair")                                  # doctest: +SKIP
    >>> row = point_row(spec.to_json(), "di-tanh-open-seed0", "sweeps/pair")  # doctest: +SKIP
    >>> row["c1_supported"]                                              # doctest: +SKIP
    True
    """
    spec = SweepSpec.from_json(spec_json)
    point = next(p for p in spec.points() if p.name == point_name)
    config = spec.config(point)
    data = config.model_dump(mode="json")
    row: dict[str, Any] = {"name": point.name, "preset": point.preset, "role": point.role,
                           "teacher": point.teacher, "seed": point.seed}
    row.update({key: _config_value(data, key) for key in spec.grid})
    row.update(episode_length=config.task.steps, control_cost=config.loss.control_cost)
    runs = Path(folder) / RUNS_FOLDER
    try:
        run = load_run(runs / point.file_name)
    except IncompleteRunError:
        return {**row, "status": "incomplete"}
    except RunFileError:
        return {**row, "status": "missing"}
    row.update(_run_columns(run))
    claims = sweep_claims() if claims is None else claims
    for layout in _layouts(run, point, runs) if run.status == "complete" else ():
        for claim in claims:
            if claim.judges(layout):
                row.update(claim_columns(claim.judge_runs(layout)))
    return row


def _layouts(run: Run, point: SweepPoint, runs: Path) -> list[dict[str, Run]]:
    """A finished point's runs by role: the run alone when it trained without a teacher, and
    its finished teacher with it as a closed/open pair."""
    layouts = [] if rule_for(run.config).needs_teacher else [{RUN: run}]
    if point.teacher is not None:
        try:
            teacher = load_run(runs / f"{point.teacher}.h5")
        except RunFileError:
            return layouts
        if teacher.status == "complete":
            layouts.append({CLOSED: teacher, OPENED: run})
    return layouts


def _run_columns(run: Run) -> dict[str, Any]:
    from closedloop.analysis.summary import run_stages

    stages = run_stages(run).to_json()
    test = run.metrics["test_loss"]
    columns: dict[str, Any] = {
        "status": run.status, "diverged_epoch": run.diverged_epoch, "epochs": run.last_epoch,
        "stabilization_epoch": run.stabilization_epoch,
        "stage1_end": stages["stage1_end"], "stage2_end": stages["stage2_end"],
        "initial_test_loss": finite(test[0]),
        "final_train_loss": finite(run.metrics["train_loss"][-1]),
        "final_test_loss": finite(test[-1])}
    if len(test) > 1 and np.isfinite(test[1:]).any():
        peak = 1 + int(np.nanargmax(np.where(np.isfinite(test[1:]), test[1:], np.nan)))
        columns.update(peak_test_loss=finite(test[peak]), peak_epoch=peak,
                       peak_ratio=finite(test[peak] / test[0]))
    if "gains" in run.metrics:
        gains = run.metrics["gains"][-1].ravel()[:GAIN_COLUMNS]
        columns.update({f"gain_{i}": finite(g) for i, g in enumerate(gains)})
    return columns


@dataclass
class SweepSummary:
    """Rows of the table (dicts with the module's columns), and per claim the number of runs
    judged, supported and the fraction (None where nothing was judged)."""

    rows: list[dict[str, Any]]
    support: dict[str, dict[str, Any]]
    columns: list[str]


def support_fractions(rows: Sequence[dict[str, Any]], claims: Sequence[Claim] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Per claim of ``claims`` (default :func:`sweep_claims`: ``C1``, ``C1b``, ``C2``, ``C6``
    and those a user registered), and per case for a claim judged by case (``C2 (<case>)``),
    how many runs support it.

    Example
    -------
    >>> support_fractions([{"c1_supported": True}, {"c1_supported": False}])["C1"]
    {'supported': 1, 'judged': 2, 'fraction': 0.5}
    """
    groups: dict[str, list[bool]] = {}
    for claim in (sweep_claims() if claims is None else claims):
        groups[claim.id] = []
        prefix = claim.id.lower()
        for row in rows:
            if row.get(f"{prefix}_supported") is not None:
                vote = bool(row[f"{prefix}_supported"])
                groups[claim.id].append(vote)
                if row.get(f"{prefix}_case") is not None:
                    groups.setdefault(f"{claim.id} ({row[f'{prefix}_case']})", []).append(vote)
    return {claim: {"supported": sum(v), "judged": len(v),
                    "fraction": sum(v) / len(v) if v else None}
            for claim, v in groups.items()}


def summarize_sweep(folder: str | os.PathLike[str], *, workers: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SweepSummary:
    """Read every run of the sweep in ``folder`` into one table, in ``workers`` processes.

    ``progress`` is called with (rows done, rows) as rows come in.

    Example
    -------
    >>> len(summarize_sweep("sweeps/pair").rows)                         # doctest: +SKIP
    100
    """
    folder = Path(folder)
    spec = load_spec(folder)
    points: list[SweepPoint] = spec.points()
    spec_json = spec.to_json()
    claims = sweep_claims()         # the workers judge the claims registered here too
    count = workers or min(len(points), os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    if count <= 1:
        for point in points:
            rows.append(point_row(spec_json, point.name, str(folder), claims))
            if progress:
                progress(len(rows), len(points))
    else:
        import multiprocessing

        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = [pool.submit(point_row, spec_json, p.name, str(folder), claims)
                       for p in points]
            for future in pending:
                rows.append(future.result())
                if progress:
                    progress(len(rows), len(points))
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    for row in rows:
        for key in columns:
            row.setdefault(key, None)
    return SweepSummary(rows, support_fractions(rows, claims), columns)


def write_summary(summary: SweepSummary, folder: str | os.PathLike[str]) -> list[Path]:
    """Write the table (CSV, Parquet), the support fractions (JSON) and the plots (PNG) into
    ``folder``, each by write-then-rename. Returns the paths.

    Example
    -------
    >>> write_summary(summarize_sweep("sweeps/pair"), "sweeps/pair")     # doctest: +SKIP
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from closedloop.plotting.sweep import draw_sweep_summary
    from closedloop.runs.store import atomic_write

    folder = Path(folder)
    outputs = {name: folder / name for name in
               ("summary.csv", "summary.parquet", "support.json", "summary.png")}

    def write_csv(target: Path) -> None:
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=summary.columns)
            writer.writeheader()
            writer.writerows(summary.rows)

    table = pa.Table.from_pylist(summary.rows)
    atomic_write(outputs["summary.csv"], write_csv)
    atomic_write(outputs["summary.parquet"], lambda target: pq.write_table(table, target))
    atomic_write(outputs["support.json"],
                 lambda target: target.write_text(json.dumps(summary.support, indent=1)))
    figure = draw_sweep_summary(summary.rows, summary.support)
    atomic_write(outputs["summary.png"], lambda target: figure.savefig(target, dpi=110,
                                                                        format="png"))
    return list(outputs.values())
