"""Sweeps on Dask (the jobs of closedloop.scale.jobs on a cluster's executor): grid expansion,
open-loop pairs, idempotence, and fault tolerance against a real scheduler with two worker
processes (one killed mid-task); every run equals the same point trained alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from closedloop.analysis.claims import CLAIMS
from closedloop.cli import main
from closedloop.config import load_preset
from closedloop.core.plants import plant_from_config
from closedloop.errors import ConfigError
from closedloop.runs.store import is_finished, load_run, partial_dir
from closedloop.scale.cluster import ClusterError
from closedloop.scale.jobs import (
    LOCKS_FOLDER,
    PROGRESS_TOPIC,
    EpochProgress,
    InlineExecutor,
    Job,
    JobEvent,
    JobInputs,
    JobsFinished,
    JobsTotal,
    _chunks,
    execute,
    train_group,
)
from closedloop.scale.sweep import (
    RUNS_FOLDER,
    SweepError,
    SweepSpec,
    parse_grid,
    prepare_folder,
    run_sweep,
    sweep_jobs,
)
from closedloop.scale.sweep_summary import summarize_sweep, support_fractions, write_summary
from closedloop.training import train
from closedloop.training.loggers import LogSpec
from closedloop.training.sources import load_teacher
from tests.conftest import (
    SMALL,
    SMALL_UNSIZED,
    TOLERANCE,
    StudentLearns,
    max_relative_difference,
    read_events,
)

DASK = Path(sys.executable).with_name("dask")
SET_SMALL = [arg for setting in SMALL for arg in ("--set", setting)]



def _check_sweep_folder(spec: SweepSpec, folder: Path, reference: Path) -> None:
    """Every point's run file exists once, is complete, and equals the point trained alone
    (students imitate the sweep's own teacher file, as the sweep's students do)."""
    runs = folder / RUNS_FOLDER
    points = spec.points()
    expected = {p.file_name for p in points}
    present = {p.name for p in runs.iterdir() if p.name != ".locks"}
    assert present == expected, f"extra or missing entries: {present ^ expected}"
    reference.mkdir(exist_ok=True)
    for point in points:
        run = load_run(runs / point.file_name)
        assert run.status == "complete"
        config = spec.config(point)
        assert run.config == config
        np.testing.assert_array_equal(run.epochs, np.arange(config.training.epochs + 1))
        initial = teacher = None
        if point.teacher is not None:
            teacher_file = runs / f"{point.teacher}.h5"
            teacher_run = load_run(teacher_file)
            initial = teacher_run.parameters(0)
            teacher = load_teacher(str(teacher_file), plant_from_config(config.plant))
            # built in the driver from the finished teacher: its epoch-0 weights (epoch 0 is
            # not an update) and its last epoch as the teacher
            for name, value in initial.items():
                np.testing.assert_array_equal(run.parameters(0)[name], value)
            for name, value in teacher_run.parameters("last").items():
                np.testing.assert_array_equal(run.teacher.parameters[name], value)
        alone = reference / point.file_name
        train(config, alone, initial=initial, teacher=teacher)
        assert max_relative_difference(run, load_run(alone)) < TOLERANCE, point.name


# -- definition -----------------------------------------------------------------------------


def test_grid_parsing():
    assert parse_grid(["training.lr=1e-3, 5e-3", "task.steps=10,50"]) == {
        "training.lr": ["1e-3", "5e-3"], "task.steps": ["10", "50"]}
    assert parse_grid(["agent.overlaps=[0.1,0.2],[0.3,0.4]"]) == {
        "agent.overlaps": ["[0.1,0.2]", "[0.3,0.4]"]}
    for bad in (["task.steps"], ["=1,2"], ["task.steps=1,,2"], ["task.steps=1,1"],
                ["task.steps=1", "task.steps=2"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_points_of_an_open_loop_sweep_pair_each_student_with_its_teacher():
    spec = SweepSpec("di-tanh-open", {"loss.control_cost": ["0", "2"], "task.steps": ["20"]},
                     seeds=[3, 1], epochs=5)
    points = spec.points()
    assert len(points) == 2 * 2 * 1 * 2
    teachers = [p for p in points if p.role == "teacher"]
    students = [p for p in points if p.role == "student"]
    assert points[:4] == teachers                       # teachers are trained first
    assert {p.preset for p in teachers} == {"di-tanh-closed"}
    for student in students:
        teacher = next(p for p in teachers if p.name == student.teacher)
        assert (teacher.seed, teacher.settings) == (student.seed, student.settings)
        config = spec.config(student)
        assert config.loss.control_cost == float(dict(student.settings)["loss.control_cost"])
        assert config.teacher == f"{teacher.name}.h5@last"
        assert config.init_from == f"{teacher.name}.h5@0"
        assert spec.config(teacher).loss.control_cost == config.loss.control_cost
        assert config.seed == student.seed and config.training.epochs == 5
    closed = SweepSpec("di-tanh-closed", {"training.lr": ["0.01", "0.02"]}, seeds=range(3))
    assert [p.role for p in closed.points()] == ["run"] * 6
    assert SweepSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(("args", "named"), [
    (["--grid", "agent.nonexistent=1,2"], "agent.nonexistent"),
    (["--grid", "training.lr=-1,0.1"], "training.lr"),
    (["--grid", "task.steps=ten"], "task.steps"),
    (["--set", "agent.size=-4"], "agent.size"),
    (["--seeds", "3-1x"], "--seeds"),
])
def test_bad_settings_are_rejected_before_any_work(tmp_path, capsys, args, named):
    folder = tmp_path / "sweep"
    assert main(["sweep", "di-tanh-open", "--out", str(folder), "--quiet", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named in err and "Traceback" not in err
    assert not folder.exists()


def test_open_preset_without_known_teacher_preset_is_refused(tmp_path, capsys):
    spec = SweepSpec("di-tanh-open", seeds=[0], teacher_preset="di-tanh-open-plant")
    with pytest.raises(ConfigError, match="does not train closed loop"):
        spec.validate()


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    spec = SweepSpec("di-tanh-closed", seeds=[0], epochs=2, overrides=SMALL)
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        run_sweep(spec, tmp_path / "sweep", scheduler="tcp://127.0.0.1:9", connect_timeout=2)
    assert not list((tmp_path / "sweep" / RUNS_FOLDER).iterdir())


def test_a_folder_holding_another_sweep_is_refused(tmp_path):
    prepare_folder(SweepSpec("di-tanh-closed", seeds=[0, 1]), tmp_path)
    before = (tmp_path / "sweep.json").read_text()
    with pytest.raises(SweepError, match="another sweep"):
        prepare_folder(SweepSpec("di-tanh-closed", seeds=[0, 1, 2]), tmp_path)
    assert (tmp_path / "sweep.json").read_text() == before


# -- the jobs a sweep runs as ---------------------------------------------------------------


def test_ready_jobs_of_one_shape_are_grouped_and_split_evenly():
    """Ready jobs are grouped by shape (never two shapes in one task), each group split into
    tasks of near-equal size over the workers (at most 32 runs a task), costliest first."""
    def jobs(preset, count, extra=(), cost=1.0):
        return [(Job(f"{preset}{extra}-{seed}", lambda _: None, cost=cost),
                 JobInputs(load_preset(preset, [*SMALL, *extra], seed=seed, epochs=5)))
                for seed in range(count)]

    small, wide = jobs("di-tanh-closed", 5), jobs("di-tanh-closed", 3, ("agent.size=9",), 2.0)
    chunks = _chunks(small + wide, capacity=2, group_size=None)
    assert [[job.name for job, _ in chunk] for chunk in chunks] == [
        [job.name for job, _ in wide[:2]], [wide[2][0].name],       # costlier jobs first
        [job.name for job, _ in small[:3]], [job.name for job, _ in small[3:]]]
    many = jobs("di-tanh-closed", 70)
    assert [len(c) for c in _chunks(many, capacity=2, group_size=None)] == [24, 24, 22]
    for capacity in (3, 4, 8):          # no task larger than needed, no more than workers
        sizes = [len(c) for c in _chunks(many, capacity=capacity, group_size=None)]
        assert sum(sizes) == 70 and len(sizes) <= capacity
        assert max(sizes) == -(-70 // capacity), (capacity, sizes)
    assert [len(c) for c in _chunks(many, capacity=1, group_size=None)] == [24, 24, 22]  # <= 32
    assert [len(c) for c in _chunks(small, capacity=2, group_size=1)] == [1] * 5
    assert [len(c) for c in _chunks(small, capacity=1, group_size=4)] == [3, 2]


class _RecordingExecutor(InlineExecutor):
    """Runs every task in this process and records what it was asked to train."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, object]] = []

    def submit(self, fn, /, *args, **kwargs):
        assert fn is train_group
        _, paths, initials, teachers = args
        self.tasks.append({"paths": [Path(p).stem for p in paths], "initials": initials,
                           "teachers": teachers, "label": kwargs["label"]})
        return super().submit(fn, *args, **kwargs)


def test_sweep_jobs_build_students_in_the_driver_and_run_only_what_is_missing(tmp_path):
    spec = SweepSpec("di-tanh-open", seeds=range(3), epochs=2, overrides=SMALL)
    teachers = [p.name for p in spec.points() if p.role == "teacher"]
    students = [p.name for p in spec.points() if p.role == "student"]
    executor, events = _RecordingExecutor(), []
    result = execute(sweep_jobs(spec), tmp_path, executor, capacity=2, on_event=events.append)
    assert not result.failed and sorted(result.runs) == sorted(teachers + students)
    # teachers first (two tasks, split 2 + 1), then their students once they exist
    assert [task["paths"] for task in executor.tasks] == [teachers[:2], teachers[2:],
                                                          students[:2], students[2:]]
    assert executor.tasks[0]["label"] == f"{teachers[0]} (+1)"
    for task in executor.tasks[2:]:
        for name, initial, teacher in zip(task["paths"], task["initials"], task["teachers"],
                                          strict=True):
            teacher_run = load_run(tmp_path / f"{name.replace('open', 'closed')}.h5")
            for key, value in teacher_run.parameters(0).items():
                np.testing.assert_array_equal(initial[key], value)
            for key, value in teacher_run.parameters("last").items():
                np.testing.assert_array_equal(teacher.parameters[key], value)
    assert events[0] == JobsTotal(6)
    assert sorted(n for e in events if isinstance(e, JobsFinished) and not e.failed
                  for n in e.names) == sorted(teachers + students)

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.h5")}
    again = _RecordingExecutor()
    second = execute(sweep_jobs(spec), tmp_path, again, capacity=2)
    assert not again.tasks and sorted(second.reused) == sorted(teachers + students)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


# -- running --------------------------------------------------------------------------------


def test_local_sweep_equals_single_runs_skips_finished_and_summarises(tmp_path, monkeypatch):
    spec = SweepSpec("di-tanh-open", {"loss.control_cost": ["0", "1"]}, seeds=[0, 1],
                     epochs=30, overrides=SMALL)
    events: list[JobEvent] = []
    log = LogSpec("tensorboard", str(tmp_path / "logs"))
    result = run_sweep(spec, tmp_path / "sweep", workers=2, log=[log], on_event=events.append)
    assert not result.failed and len(result.finished) == 8 and not result.skipped
    for point in spec.points():        # the workers logged every run
        run = load_run(tmp_path / "sweep" / RUNS_FOLDER / point.file_name)
        scalars, _ = read_events(log.folder_for(point.file_name))
        assert scalars["loss/test"][30] == pytest.approx(run.metrics["test_loss"][-1],
                                                         rel=1e-6)
    assert JobsTotal(8) in events
    assert sum(len(e.names) for e in events if isinstance(e, JobsFinished)) == 8
    assert any(isinstance(e, EpochProgress) for e in events)   # per-epoch progress reached us
    _check_sweep_folder(spec, tmp_path / "sweep", tmp_path / "alone")
    teachers = {point.name: point.teacher for point in spec.points()}

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep" / RUNS_FOLDER).glob("*.h5")}
    again = run_sweep(spec, tmp_path / "sweep", workers=1)
    assert sorted(again.skipped) == sorted(p.name for p in spec.points())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    monkeypatch.setitem(CLAIMS.registered, StudentLearns.id, StudentLearns())
    summary = summarize_sweep(tmp_path / "sweep", workers=1)
    assert len(summary.rows) == 8
    assert [row["name"] for row in summary.rows] == [p.name for p in spec.points()]
    for row in summary.rows:
        run = load_run(tmp_path / "sweep" / RUNS_FOLDER / f"{row['name']}.h5")
        test = run.metrics["test_loss"]
        assert (row["status"], row["epochs"], row["seed"]) == ("complete", 30, run.config.seed)
        assert row["episode_length"] == run.config.task.steps == 20
        assert row["loss.control_cost"] == run.config.loss.control_cost
        assert row["control_cost"] == run.config.loss.control_cost
        assert row["initial_test_loss"] == pytest.approx(float(test[0]))
        assert row["final_train_loss"] == pytest.approx(float(run.metrics["train_loss"][-1]))
        assert row["peak_test_loss"] == pytest.approx(float(test[1:].max()))
        assert row["final_test_loss"] == pytest.approx(float(test[-1]))
        assert row["peak_epoch"] == 1 + int(np.argmax(test[1:]))
        assert row["peak_ratio"] == pytest.approx(float(test[1:].max() / test[0]))
        gains = run.metrics["gains"][-1].ravel()
        assert [row[f"gain_{i}"] for i in range(gains.size)] == pytest.approx(gains.tolist())
        assert row["stabilization_epoch"] == run.stabilization_epoch
        assert (row["c1_supported"] is None) == (row["role"] != "student")
        assert (row["c1b_supported"] is None) == (row["role"] != "student")
        assert row.get("c2_supported") is None    # C2 is about the low-rank network, not tanh
        assert row.get("c6_supported") is None    # C6 is about tracking pairs
        if row["role"] == "student":              # the user's claim, on the spec's pairs
            assert row["student-learns_case"] == f"{teachers[row['name']]} taught {row['name']}"
            assert row["student-learns_supported"] == bool(test[-1] < test[0])
            assert row["student-learns_failed"] == (None if test[-1] < test[0] else "falls")
        else:
            assert row["student-learns_supported"] is None
    assert summary.support["C1"]["judged"] == 4
    students = [row for row in summary.rows if row["role"] == "student"]
    assert summary.support["student-learns"] == {
        "supported": sum(not row["student-learns_failed"] for row in students), "judged": 4,
        "fraction": sum(not row["student-learns_failed"] for row in students) / 4}
    assert all(summary.support[f"student-learns ({teachers[row['name']]} taught {row['name']})"]
               ["judged"] == 1 for row in students)
    # worker processes judge the claims registered here, too
    assert summarize_sweep(tmp_path / "sweep", workers=2).rows == summary.rows
    written = write_summary(summary, tmp_path / "sweep")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "sweep" / "summary.parquet")
    assert table.num_rows == 8 and table.column_names == summary.columns
    assert table.column("name").to_pylist() == [row["name"] for row in summary.rows]
    assert table.column("final_test_loss").to_pylist() == pytest.approx(
        [row["final_test_loss"] for row in summary.rows])
    assert {"stage1_end", "stage2_end", "diverged_epoch", "teacher"} <= set(table.column_names)
    header = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(header) == 9 and header[0].split(",") == summary.columns
    assert json.loads((tmp_path / "sweep" / "support.json").read_text()) == summary.support
    assert all(p.stat().st_size > 0 for p in written)


AGENT_KINDS = {
    "rnn": ("di-tanh-closed", SMALL),
    "lowrank": ("di-lowrank-closed", SMALL),
    "overlaps": ("di-reduced-closed", (*SMALL_UNSIZED, "agent.overlaps=[-0.02, 0.5, 0.02, 0.1]")),
    "static_gain": ("di-tanh-closed", (*SMALL_UNSIZED, "agent.kind=static_gain",
                                       "agent.gain=[[-0.3, -0.9]]", "agent.init={}",
                                       "agent.trainable={}", "loss.kind=per_sample",
                                       "loss.control_cost=1.0")),
}
"""A preset of each kind and its small settings (kinds without a size have none set)."""


@pytest.mark.parametrize("kind", sorted(AGENT_KINDS))
def test_sweeps_of_every_agent_kind_equal_single_runs(tmp_path, kind):
    """Every agent kind sweeps: two seeds trained as one task equal each seed trained alone
    (a static gain's sweep used to fail, as ensembles needed RNN agents)."""
    preset, settings = AGENT_KINDS[kind]
    spec = SweepSpec(preset, seeds=[0, 1], epochs=3, overrides=list(settings))
    result = execute(sweep_jobs(spec), tmp_path / "runs", InlineExecutor(), capacity=1)
    assert not result.failed and len(result.runs) == 2
    for point in spec.points():
        run = result.runs[point.name]
        assert run.status == "complete" and run.config.agent.kind == kind
        alone = tmp_path / f"alone-{point.name}.h5"
        train(spec.config(point), alone)
        assert max_relative_difference(run, load_run(alone)) < TOLERANCE


def test_a_run_file_with_other_settings_fails_its_point_only(tmp_path, capsys):
    """A finished file with other settings at a point is never overwritten: that point fails
    with the reason, the others finish, and the command exits 1."""
    folder = tmp_path / "sweep"
    other = folder / RUNS_FOLDER / "di-tanh-closed-seed0.h5"
    train(load_preset("di-tanh-closed", SMALL, seed=0, epochs=3), other)
    stamp = other.stat().st_mtime_ns
    code = main(["sweep", "di-tanh-closed", "--seeds", "0-1", "--epochs", "2", "--workers", "1",
                 "--out", str(folder), "--quiet", *SET_SMALL])
    out, err = capsys.readouterr()
    assert code == 1
    assert "1 of 2 runs finished" in out
    assert "di-tanh-closed-seed0" in err and "other settings" in err
    assert other.stat().st_mtime_ns == stamp and load_run(other).config.training.epochs == 3
    assert load_run(folder / RUNS_FOLDER / "di-tanh-closed-seed1.h5").status == "complete"


def test_a_reused_run_loses_what_a_killed_writer_left_next_to_it(tmp_path):
    """A kill during the removal of a finished run's renamed partial folder leaves that
    folder behind; the next execution reuses the run and removes it."""
    config = load_preset("di-tanh-closed", SMALL, seed=0, epochs=2)
    path = tmp_path / "runs" / "a.h5"
    train(config, path)
    stamp = path.stat().st_mtime_ns
    leftover = path.with_name(".a.h5.removing-999999")
    (leftover / "segment-0").mkdir(parents=True)
    result = execute([Job("a", lambda _: JobInputs(config))], tmp_path / "runs",
                     InlineExecutor())
    assert result.reused == ["a"] and path.stat().st_mtime_ns == stamp
    assert not leftover.exists()


def test_support_fractions_count_per_claim():
    rows = [{"c1_supported": True, "preset": "di-tanh-open"},
            {"c1_supported": False, "preset": "di-tanh-open"},
            {"c2_supported": True, "preset": "di-lowrank-closed", "c2_case": "real"},
            {"c2_supported": False, "preset": "di-lowrank-closed", "c2_case": "complex"},
            {"c2_supported": True, "preset": "di-lowrank-closed", "c2_case": "complex"},
            {"c1_supported": None, "c2_supported": None, "preset": "x"}]
    support = support_fractions(rows)
    assert support["C1"] == {"supported": 1, "judged": 2, "fraction": 0.5}
    assert support["C1b"] == {"supported": 0, "judged": 0, "fraction": None}
    assert support["C2"] == {"supported": 2, "judged": 3, "fraction": 2 / 3}
    assert support["C2 (real)"]["judged"] == 1
    assert support["C2 (complex)"] == {"supported": 1, "judged": 2, "fraction": 0.5}
    assert "C3" not in support         # judged on a seed's runs together, not run by run


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def dask_cluster(tmp_path):
    """A real ``dask scheduler`` and two single-threaded ``dask worker`` processes (no nanny,
    so a killed worker stays dead) on 127.0.0.1."""
    if not DASK.exists():
        pytest.skip("the dask command is not installed")
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    processes = [subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        _wait_for(scheduler_file.exists, 60, "the scheduler")
        for _ in range(2):
            processes.append(subprocess.Popen(
                [str(DASK), "worker", "--scheduler-file", str(scheduler_file), "--nthreads",
                 "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            yield address, client
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _locked_runs(pid: int) -> list[str]:
    """Names of the run files whose locks process ``pid`` holds (its open lock files): the
    runs of the task it is running."""
    names = []
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = Path(os.readlink(descriptor))
        except OSError:            # closed meanwhile
            continue
        if target.parent.name == LOCKS_FOLDER and target.suffix == ".lock":
            names.append(target.stem)
    return names


def test_sweep_on_a_cluster_survives_a_killed_worker(tmp_path, dask_cluster):
    """A worker SIGKILLed while its task has checkpointed progress: Dask retries the task on
    the other worker, which resumes those runs from their checkpoints (its progress starts
    past epoch 1); every run file ends up once, complete, equal to its point trained alone."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see which worker holds which run's lock")
    address, client = dask_cluster
    folder = tmp_path / "sweep"
    pids = client.run(os.getpid)
    epochs = 300           # a task of two runs trains for seconds: time to kill it
    args = ["di-tanh-open", "--seeds", "0-3", "--epochs", str(epochs), "--group-size", "2",
            *SET_SMALL]
    spec = SweepSpec("di-tanh-open", seeds=range(4), epochs=epochs, overrides=SMALL)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "closedloop.cli", "sweep", *args, "--out", str(folder),
         "--scheduler", address, "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = folder / RUNS_FOLDER

    def progress(names: list[str]) -> list[int]:
        """Epochs the task training ``names`` reported (its label names its first run)."""
        return [message["epoch"] for _, message in client.get_events(PROGRESS_TOPIC)
                if f"{message['label'].split(' (+')[0]}.h5" in names]

    killed: list[list[str]] = []
    try:
        def kill_a_busy_worker() -> bool:
            """Kill a worker whose task's runs are all checkpointed and whose first progress
            event (epoch 1) has reached the scheduler."""
            for pid in pids.values():
                names = _locked_runs(pid)
                if (names and all((partial_dir(runs / n) / "checkpoint.npz").exists()
                                  for n in names) and 1 in progress(names)):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(names)
                    return True
            return False

        _wait_for(kill_a_busy_worker, 120, "a task with checkpointed progress")
        out, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, err
    assert "8 of 8 runs finished (8 now, 0 already there)" in out
    assert len(killed[0]) == 2                                    # --group-size 2
    assert len(client.scheduler_info()["workers"]) == 1          # one worker really died
    # the retried task resumed: a fresh start would have reported epoch 1 again
    reported = progress(killed[0])
    assert reported.count(1) == 1 and max(reported) == epochs + 1, reported
    _check_sweep_folder(spec, folder, tmp_path / "alone")


@pytest.mark.slow
def test_a_killed_sweep_restarted_does_only_what_is_missing(tmp_path):
    folder = tmp_path / "sweep"
    command = [sys.executable, "-m", "closedloop.cli", "sweep", "di-tanh-closed", "--seeds",
               "0-5", "--epochs", "500", "--group-size", "1", "--workers", "2", "--out",
               str(folder), "--quiet", *SET_SMALL]
    spec = SweepSpec("di-tanh-closed", seeds=range(6), epochs=500, overrides=SMALL)
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    runs = folder / RUNS_FOLDER
    try:
        _wait_for(lambda: runs.exists() and any(is_finished(p) for p in runs.glob("*.h5"))
                  and any(runs.glob("*.partial/segment-*")), 180, "a finished and a started run")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # finished = file there and no partial folder (a kill between the final rename and the
    # folder's removal leaves both: that run is unfinished and gets consolidated again)
    done_before = {p: p.stat().st_mtime_ns for p in runs.glob("*.h5") if is_finished(p)}
    assert done_before and list(runs.glob("*.partial"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"({6 - len(done_before)} now, {len(done_before)} already there)" in result.stdout
    assert {p: p.stat().st_mtime_ns for p in done_before} == done_before
    _check_sweep_folder(spec, folder, tmp_path / "alone")
