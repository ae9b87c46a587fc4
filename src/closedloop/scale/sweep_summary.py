"""The tidy table of a sweep: one row per run, with the claims of the reproduce report judged
per run by the same functions (:mod:`closedloop.analysis.claims`): C1 and C1b per closed/open
pair, C2 per rank-1 low-rank closed-loop run.

``closedloop sweep-summary DIR`` writes ``DIR/summary.csv``, ``DIR/summary.parquet``,
``DIR/support.json`` and ``DIR/summary.png``.

Columns: ``name``, ``preset``, ``role`` (run/teacher/student), ``teacher``, ``seed``, one
column per grid key (named by the key), ``status`` (complete, diverged, incomplete, missing),
``diverged_epoch``, ``epochs``, ``episode_length``, ``control_cost``, ``stabilization_epoch``,
``stage1_end``, ``stage2_end``, ``initial_test_loss``, ``final_train_loss``,
``final_test_loss``, ``peak_test_loss`` (the largest test loss after epoch 0),
``peak_epoch``, ``peak_ratio`` (peak over epoch 0), ``gain_0`` ... (the final effective gain
matrix, flattened row-major; regulation tasks only), ``c1_supported`` and ``c1b_supported``
(students of a regulation task; C1b for the double integrator's two gains), and for
rank-1 low-rank closed-loop runs ``c2_supported``, ``c2_case`` (real pair at the start or
complex from the start) and ``c2_failed`` (the parts of the criterion that do not hold).

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

from closedloop.analysis.claims import finite
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


def point_row(spec_json: str, point_name: str, folder: str) -> dict[str, Any]:
    """The table row of one point (reads its run file, and its teacher's for C1).

    Example
    -------
    >>> spec = load_spec("sweeps/pair")                                  # doctest: +SKIP
    >>> row = point_row(spec.to_json(), "di-tanh-open-seed0", "sweeps/pair")  # doctest: +SKIP
    >>> row["c1_supported"]                                              # doctest: +SKIP
    True
    """
    from closedloop.analysis.claims import judge_c1, judge_c1b, judge_c2, judges_c2
    from closedloop.analysis.summary import analyze_run, run_stages

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
    judge_stages = not rule_for(run.config).needs_teacher and run.status == "complete"
    report = analyze_run(run) if judge_stages else None
    row.update(_run_columns(run, report["stages"] if report else run_stages(run).to_json()))
    if report is not None and judges_c2(run):
        c2 = judge_c2(run, report)
        row.update(c2_supported=c2.supported, c2_case=c2.case,
                   c2_failed="; ".join(c2.failed) or None)
    if point.teacher is not None and run.status == "complete":
        try:
            teacher = load_run(runs / f"{point.teacher}.h5")
        except RunFileError:
            teacher = None
        if (teacher is not None and teacher.status == "complete" and "gains" in run.metrics
                and "gains" in teacher.metrics):       # a regulation pair (not tracking)
            row["c1_supported"] = judge_c1(teacher, run).supported
            if run.metrics["gains"].shape[-1] == 2:    # gain space of the double integrator
                row["c1b_supported"] = judge_c1b(teacher, run).supported
    return row


def _run_columns(run: Run, stages: dict[str, int | None]) -> dict[str, Any]:
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


def support_fractions(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per claim (``C1``, ``C1b``; ``C2`` per low-rank preset, and per case), how many runs
    support it.

    Example
    -------
    >>> support_fractions([{"c1_supported": True}, {"c1_supported": False}])["C1"]
    {'supported': 1, 'judged': 2, 'fraction': 0.5}
    """
    groups: dict[str, list[bool]] = {"C1": []}
    for row in rows:
        if row.get("c1_supported") is not None:
            groups["C1"].append(bool(row["c1_supported"]))
        if row.get("c1b_supported") is not None:
            groups.setdefault("C1b", []).append(bool(row["c1b_supported"]))
        if row.get("c2_supported") is not None:
            groups.setdefault(f"C2 ({row['preset']})", []).append(bool(row["c2_supported"]))
            groups.setdefault(f"C2 ({row['preset']}, {row['c2_case']})", []).append(
                bool(row["c2_supported"]))
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
    count = workers or min(len(points), os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    if count <= 1:
        for point in points:
            rows.append(point_row(spec_json, point.name, str(folder)))
            if progress:
                progress(len(rows), len(points))
    else:
        import multiprocessing

        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = [pool.submit(point_row, spec_json, p.name, str(folder)) for p in points]
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
    return SweepSummary(rows, support_fractions(rows), columns)


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
