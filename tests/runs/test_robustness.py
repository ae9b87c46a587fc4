"""Faults and bad input: nothing is lost, nothing runs from a file, every mistake is one line.

The counts quoted in docs/robustness.md are the sizes of these tests (``KILL_POINTS``,
``BAD_OVERRIDES``, ``BAD_CONFIGS``, ``BIT_FLIPS``, ``TRUNCATIONS``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from closedloop.analysis.summary import analyze_run, summarize_run
from closedloop.cli import main
from closedloop.config import build_config, config_from_json, load_preset
from closedloop.errors import ConfigError, IncompleteRunError, RunFileError
from closedloop.runs.store import load_run, partial_dir
from closedloop.training import train
from tests.conftest import SMALL
from tests.test_cli import _bad_files, assert_one_line_error, run_cli
from tests.training.test_training import assert_same_run

SMALL_ARGS = [arg for setting in SMALL for arg in ("--set", setting)]
FAULT_RUNNER = Path(__file__).with_name("fault_runner.py")
KILL_POINTS = 20
BAD_OVERRIDES = 600
BAD_CONFIGS = 250
BIT_FLIPS = 300
TRUNCATIONS = 12


# -- 1. SIGKILL at chosen points; --resume equals the uninterrupted run bit for bit ----------

def _kill_points() -> list[tuple[str, int]]:
    """20 distinct points covering every kind of fault, the occurrences drawn at random (fixed
    seed). With 40 epochs and 4-epoch segments a run makes 11 compiled chunks (epochs 0-3, ...,
    40), 11 segments, 11 checkpoints and 1 final file."""
    rng = np.random.default_rng(20261128)
    plan = {"step": (8, 11), "segment": (5, 11), "checkpoint": (5, 11), "consolidation": (1, 1),
            "after-consolidation": (1, 1)}
    points = [(kind, int(index)) for kind, (count, limit) in plan.items()
              for index in sorted(rng.choice(np.arange(1, limit + 1), count, replace=False))]
    assert len(set(points)) == KILL_POINTS
    return points


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("whole")
    args = ["train", "di-tanh-closed", "--epochs", "40", "--seed", "7", "--quiet", *SMALL_ARGS]
    assert main([*args, "--out", str(folder / "whole.h5")]) == 0
    return folder / "whole.h5", args


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "index"), _kill_points())
def test_train_killed_then_resumed_equals_uninterrupted(tmp_path, uninterrupted, kind, index):
    whole, args = uninterrupted
    cut = tmp_path / "cut.h5"
    killed = subprocess.run([sys.executable, str(FAULT_RUNNER), kind, str(index), "--", *args,
                             "--out", str(cut)], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if kind != "after-consolidation":
        assert not cut.exists()
        with pytest.raises(IncompleteRunError, match="incomplete"):
            load_run(cut)                            # never reads as complete
    assert main([*args, "--out", str(cut), "--resume"]) == 0
    assert not partial_dir(cut).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5"]   # no leftovers
    assert_same_run(whole, cut)


# -- 2. malformed configs and overrides: exit 2, one line naming the key, no work -------------

INT_FIELDS = {"agent.size": (1, 100_000), "task.steps": (1, 1_000_000),
              "task.batch_size": (1, 1_000_000), "plant.order": (1, 64),
              "evaluation.test_size": (1, 100_000), "recording.segment_epochs": (1, 100_000),
              "agent.rank": (1, 100_000), "plant.n_inputs": (1, 64)}
FLOAT_FIELDS = {"training.lr": (0.0, 1e3), "agent.dt": (0.0, 1e3), "agent.tau": (0.0, 1e6),
                "plant.dt": (0.0, 1e3), "loss.control_cost": (-1e-300, 1e12),
                "task.initial_state_range": (-1e-300, 1e6),
                "training.input_noise_std": (-1e-300, 1e6),
                "plant.process_noise_std": (-1e-300, 1e6), "task.amplitude": (-1e-300, 1e6),
                "agent.init.W.gain": (None, None)}
CHOICE_FIELDS = ["agent.kind", "agent.activation", "training.mode", "training.optimizer",
                 "loss.kind", "task.kind", "plant.kind", "training.dtype", "training.device"]
KNOWN_SECTIONS = ["agent", "plant", "task", "loss", "training", "evaluation", "recording"]
NOT_A_NUMBER = st.sampled_from(["nan", ".nan", "NaN", "inf", ".inf", "-.inf", "1e999"])
JUNK = st.one_of(st.text(alphabet="abcxyz_-!@# ", min_size=1, max_size=12)
                 .filter(lambda t: t.strip() and t.strip() not in ("null", "~", "y", "n")),
                 st.sampled_from(["[1, 2]", "{a: 1}", "[[1], [2, 3]]", "true", "false",
                                  "0x1g", "1,2"]))
IDENTIFIER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)


@st.composite
def bad_overrides(draw) -> tuple[str, str]:
    """(override string, the key its error must name)."""
    case = draw(st.sampled_from(["int-range", "int-type", "float-range", "float-nan",
                                 "float-type", "choice", "unknown-key", "unknown-section",
                                 "leaf-as-section", "huge", "shape"]))
    if case == "int-range":
        key = draw(st.sampled_from(sorted(INT_FIELDS)))
        low, high = INT_FIELDS[key]
        value = draw(st.one_of(st.integers(max_value=low - 1),
                               st.integers(min_value=high + 1)))
        return f"{key}={value}", key
    if case == "int-type":
        key = draw(st.sampled_from(sorted(INT_FIELDS)))
        value = draw(st.one_of(JUNK, NOT_A_NUMBER, st.floats(0.01, 1e5).filter(
            lambda v: v != int(v)).map(repr)))
        return f"{key}={value}", key
    if case == "float-range":
        key = draw(st.sampled_from([k for k, (lo, _) in FLOAT_FIELDS.items() if lo is not None]))
        low, high = FLOAT_FIELDS[key]
        value = draw(st.one_of(st.floats(max_value=low, allow_nan=False,
                                         allow_infinity=False).filter(lambda v: v <= low),
                               st.floats(min_value=high, exclude_min=True, allow_nan=False,
                                         allow_infinity=False)))
        return f"{key}={value!r}", key
    if case == "float-nan":
        key = draw(st.sampled_from(sorted(FLOAT_FIELDS)))
        return f"{key}={draw(NOT_A_NUMBER)}", key
    if case == "float-type":
        key = draw(st.sampled_from(sorted(FLOAT_FIELDS)))
        return f"{key}={draw(JUNK)}", key
    if case == "choice":
        key = draw(st.sampled_from(CHOICE_FIELDS))
        value = draw(st.one_of(IDENTIFIER.filter(lambda t: t not in (
            "rnn", "lowrank", "static_gain", "overlaps", "tanh", "relu", "linear", "closed",
            "sgd", "adam", "paper_di", "mean_state", "per_sample", "tracking", "regulation",
            "integrator", "point_mass_2d", "float32", "float64", "cpu", "cuda", "gpu", "auto",
            "y", "n", "vanilla", "gru", "mlp", "pendulum", "point_mass", "two_link_arm",
            "reaching", "es", "reinforce", "black_box")),
            st.integers().map(str)))
        return f"{key}={value}", key
    if case == "unknown-key":
        section = draw(st.sampled_from(KNOWN_SECTIONS))
        name = draw(IDENTIFIER.filter(lambda t: t not in _fields(section)))
        return f"{section}.{name}={draw(st.integers())}", f"{section}.{name}"
    if case == "unknown-section":
        name = draw(IDENTIFIER.filter(lambda t: t not in (*KNOWN_SECTIONS, "seed", "preset",
                                                          "description", "teacher",
                                                          "init_from")))
        return f"{name}.x=1", name
    if case == "leaf-as-section":
        key = draw(st.sampled_from([*INT_FIELDS, *FLOAT_FIELDS][:8]))
        return f"{key}.sub=1", key
    if case == "huge":
        key = draw(st.sampled_from(["agent.size", "task.batch_size", "task.steps"]))
        extra = {"agent.size": "50000", "task.batch_size": "1000000", "task.steps": "1000000"}
        return f"{key}={extra[key]}", key
    key = draw(st.sampled_from(["plant.A", "task.frequencies", "agent.overlaps",
                                "agent.gain"]))
    value = draw(st.sampled_from(["[[1, 2], [3]]", "[]", "[[]]", "[1, 2]", "[[nan]]"]))
    return f"{key}={value}", key


def _fields(section: str) -> set[str]:
    from closedloop.config import RunConfig

    return set(RunConfig.model_fields[section].annotation.model_fields)


def _names_the_key(line: str, key: str) -> bool:
    """The error names the key or the part of it that is wrong (a dotted prefix)."""
    parts = key.split(".")
    prefixes = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return any(f"'{p}" in line or f" {p}=" in line or f"{p}=" in line.split(" ")[1]
               for p in prefixes)


def test_malformed_overrides_are_rejected_before_any_work(tmp_path, capsys):
    """At least 500 distinct malformed ``--set`` strings: each exits 2 with one line naming
    the key, and nothing is written."""
    out = tmp_path / "never.h5"
    tried: set[str] = set()

    @settings(max_examples=BAD_OVERRIDES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(case=bad_overrides())
    def check(case: tuple[str, str]) -> None:
        override, key = case
        tried.add(override)
        code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--set", override, "--out",
                               out, "--epochs", "1")
        assert_one_line_error(code, err)
        assert _names_the_key(err, key), (override, err)
        assert not out.exists() and not partial_dir(out).exists()

    check()
    print(f"{len(tried)} distinct malformed overrides rejected")
    assert len(tried) >= 500


def _valid_dict() -> dict:
    return json.loads(load_preset("di-tanh-closed").to_json())


MALFORMED_VALUES = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                             st.lists(st.integers(), max_size=3), st.dictionaries(
                                 IDENTIFIER, st.integers(), max_size=2),
                             st.just(float("nan")), st.just(float("inf")), st.just(-1),
                             st.just(10**30))


def test_malformed_config_documents_are_rejected_with_the_key():
    """At least 200 stored or hand-written configs with one field replaced by a value of the
    wrong type or range (or an unknown field added): each is refused with a ConfigError naming
    it, as a mapping and as JSON text."""
    tried: set[str] = set()

    @settings(max_examples=BAD_CONFIGS, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        _check_malformed_document(data, tried)

    check()
    print(f"{len(tried)} distinct malformed config documents rejected")
    assert len(tried) >= 200


def _check_malformed_document(data: st.DataObject, tried: set[str]) -> None:
    config = _valid_dict()
    section = data.draw(st.sampled_from([*KNOWN_SECTIONS, "seed"]))
    if section == "seed":
        value = data.draw(st.one_of(st.just(-5), st.just(2**64), st.text(max_size=3),
                                    st.just(1.5), st.none()))
        config["seed"], key = value, "seed"
    elif data.draw(st.booleans()):
        name = data.draw(IDENTIFIER.filter(lambda t: t not in _fields(section)))
        config[section][name], key = 1, f"{section}.{name}"
    else:
        name = data.draw(st.sampled_from(sorted(k for k, v in config[section].items()
                                                if isinstance(v, int | float | str)
                                                and not isinstance(v, bool))))
        original = config[section][name]
        value = data.draw(MALFORMED_VALUES.filter(lambda v: not _acceptable(section, name, v,
                                                                             original)))
        config[section][name], key = value, f"{section}.{name}"
    with pytest.raises(ConfigError) as caught:
        build_config(config)
    assert _names_the_key(str(caught.value), key), (key, str(caught.value))
    text = json.dumps(config, allow_nan=True, sort_keys=True)
    tried.add(text)
    with pytest.raises(ConfigError):
        config_from_json(text)


def _acceptable(section: str, name: str, value: object, original: object) -> bool:
    """Whether ``value`` might be valid for the field (skip those: this test wants invalid)."""
    try:
        data = _valid_dict()
        data[section][name] = value
        build_config(data)
        return True
    except ConfigError:
        return False


def test_config_documents_that_are_not_json_objects():
    for text in ("", "[1, 2]", "{", "null", "\"text\"", "{\"seed\": NaN}"):
        with pytest.raises(ConfigError):
            config_from_json(text)


# -- 3. bad files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("files")
    closed, opened = folder / "closed.h5", folder / "open.h5"
    assert main(["train", "di-tanh-closed", "--out", str(closed), "--epochs", "6", "--quiet",
                 *SMALL_ARGS]) == 0
    assert main(["train", "di-tanh-open", "--teacher", str(closed), "--out", str(opened),
                 "--epochs", "4", "--quiet", *SMALL_ARGS]) == 0
    return closed, opened


def _content(path: Path) -> dict:
    """Everything a user can read from a run through the public API."""
    run = load_run(path)
    out = {"config": run.config.to_json(), "status": run.status,
           "diverged": run.diverged_epoch, "eig_P": run.coupled_eigenvalues,
           "eig_W": run.recurrent_eigenvalues, "teacher": None}
    out.update({f"metric/{k}": v for k, v in run.metrics.items()})
    for epoch, params in run.iter_parameters():
        out.update({f"snapshot/{epoch}/{k}": v for k, v in params.items()})
    if run.teacher is not None:
        out["teacher"] = (run.teacher.source, run.teacher.agent_config)
        out.update({f"teacher/{k}": v for k, v in run.teacher.parameters.items()})
    return out


def _same_content(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key, left in a.items():
        right = b[key]
        if isinstance(left, np.ndarray):
            if left.shape != right.shape or not np.array_equal(left, right, equal_nan=True):
                return False
        elif left != right:
            return False
    return True


def test_bit_flipped_run_files_never_read_as_other_numbers(tmp_path, finished_pair):
    """Each of 300 single-bit flips (at random places of an open-loop run file) either gives a
    clear RunFileError or leaves everything the API reads unchanged; none is silently wrong."""
    source = finished_pair[1]
    reference = _content(source)
    data = source.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"error": 0, "unchanged": 0}
    target = tmp_path / "flipped.h5"
    for _ in range(BIT_FLIPS):
        bit = int(rng.integers(len(data) * 8))
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(flipped))
        try:
            content = _content(target)
        except RunFileError as exc:
            assert str(target) in str(exc)
            outcomes["error"] += 1
            continue
        assert _same_content(content, reference), f"bit {bit} changed the data silently"
        outcomes["unchanged"] += 1
    assert outcomes["error"] > BIT_FLIPS // 2


def test_truncated_run_files_give_a_clear_error(tmp_path, finished_pair, capsys):
    data = finished_pair[0].read_bytes()
    for length in np.linspace(0, len(data) - 1, TRUNCATIONS).astype(int):
        target = tmp_path / f"cut{length}.h5"
        target.write_bytes(data[:length])
        with pytest.raises(RunFileError):
            load_run(target)
        for command in (["inspect", target], ["analyze", target]):
            code, _, err = run_cli(capsys, *command)
            assert_one_line_error(code, err, target.name)


def test_bad_files_through_every_command_that_reads_runs(tmp_path, finished_pair, capsys):
    """Text, empty, directory, foreign HDF5, truncated, a pickle renamed .h5 (whose loading
    would create a marker file), a missing file: every command that reads a run refuses each
    with one line, and nothing is executed."""
    files = _bad_files(tmp_path, finished_pair[0])
    for kind, path in files.items():
        commands = [["inspect", path], ["analyze", path],
                    ["train", "di-tanh-open", "--teacher", path, "--out", tmp_path / "s.h5",
                     *SMALL_ARGS],
                    ["train", "di-tanh-closed", "--init-from", f"{path}@0", "--out",
                     tmp_path / "s.h5", *SMALL_ARGS]]
        for command in commands:
            code, _, err = run_cli(capsys, *command)
            assert_one_line_error(code, err)
            assert path.name in err or kind == "missing", (kind, err)
            assert not (tmp_path / "s.h5").exists()
        assert not (tmp_path / "pwned").exists(), kind


class _Stop(Exception):
    pass


def _interrupted_run(path: Path):
    """Train a small run at ``path`` and stop it at epoch 9 of 12 (its config is returned)."""
    config = load_preset("di-tanh-closed", SMALL, epochs=12)

    def stop(record):
        if record.epoch == 9:
            raise _Stop

    with pytest.raises(_Stop):
        train(config, path, progress=stop)
    return config


def test_an_interrupted_run_reads_as_incomplete_and_resumable(tmp_path, capsys):
    _interrupted_run(tmp_path / "run.h5")
    for path in (tmp_path / "run.h5", partial_dir(tmp_path / "run.h5")):
        with pytest.raises(IncompleteRunError, match=r"incomplete run \(resumable"):
            load_run(path)
        code, _, err = run_cli(capsys, "inspect", path)
        assert_one_line_error(code, err, "incomplete", "resumable")


# -- 4. numerical faults -------------------------------------------------------------------


def test_a_plant_unstable_at_every_gain_is_recorded_as_diverged(tmp_path, capsys):
    """x' = 1e3 x + 0 u: no controller can help; the state overflows in the first epoch."""
    linear = ["plant.kind=linear", "plant.A=[[1000.0]]", "plant.B=[[0.0]]", "plant.C=[[1.0]]",
              "plant.order=1"]
    out = tmp_path / "unstable.h5"
    code, stdout, _ = run_cli(capsys, "train", "di-tanh-closed", "--out", out, "--epochs", "5",
                              *SMALL_ARGS, *[a for s in linear for a in ("--set", s)])
    assert code == 0 and "diverged" in stdout
    run = load_run(out)
    assert run.status == "diverged" and run.diverged_epoch == 0
    report = analyze_run(run)
    assert report.status == "diverged"
    summary = summarize_run(run)
    json.dumps(summary, allow_nan=False)                       # NaN/inf become null
    code, out_json, _ = run_cli(capsys, "inspect", out, "--json")
    assert code == 0 and json.loads(out_json)["status"] == "diverged"


def test_a_diverging_pair_in_a_sweep_is_reported(tmp_path):
    from closedloop.scale.sweep import SweepSpec, run_sweep
    from closedloop.scale.sweep_summary import summarize_sweep, write_summary

    spec = SweepSpec("di-tanh-open", {"training.lr": ["0.01", "900"]}, seeds=[0], epochs=6,
                     overrides=[*SMALL, "training.clip_norm=null"])
    result = run_sweep(spec, tmp_path / "sweep", workers=1, group_size=1)
    assert not result.failed
    summary = summarize_sweep(tmp_path / "sweep", workers=1)
    statuses = {row["name"]: row["status"] for row in summary.rows}
    assert sorted(statuses.values()) == ["complete", "complete", "diverged", "diverged"]
    write_summary(summary, tmp_path / "sweep")
    assert (tmp_path / "sweep" / "summary.png").stat().st_size > 0


# -- 5. disk full and read-only output -----------------------------------------------------


# starts the command after it under a file-size limit, without forking this (multithreaded)
# process with a pre-exec hook; Python itself ignores SIGXFSZ, so a refused write raises EFBIG
LIMITED = ("import os, resource, sys; limit = int(sys.argv[1]); "
           "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
           "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


@pytest.mark.parametrize("limit", [4_000, 60_000])
def test_disk_full_gives_a_clear_error_and_keeps_everything(tmp_path, limit):
    """The kernel refuses writes past a file-size limit as it does on a full disk: while
    writing a segment (4 kB) or the final file (60 kB). One error line; the finished run in
    the same folder is untouched; the unfinished one resumes to the uninterrupted result."""
    args = [sys.executable, "-m", "closedloop.cli", "train", "di-tanh-closed", "--epochs", "30",
            "--quiet", *SMALL_ARGS]
    keep = tmp_path / "keep.h5"
    subprocess.run([*args, "--out", str(keep)], check=True)
    before = keep.read_bytes()
    cut = tmp_path / "cut.h5"
    full = subprocess.run([sys.executable, "-c", LIMITED, str(limit), *args[1:], "--out",
                           str(cut)], capture_output=True, text=True)
    assert full.returncode == 1
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: File too large"), full.stderr
    assert keep.read_bytes() == before
    assert not cut.exists() and partial_dir(cut).is_dir()
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".locks"]   # no temporaries
    subprocess.run([*args, "--out", str(cut), "--resume"], check=True)
    assert_same_run(keep, cut)


@contextmanager
def _read_only(folder: Path):
    """Make ``folder`` refuse new entries: without write permission, or (root ignores
    permissions) with the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_read_only_output_folder_gives_a_clear_error(tmp_path):
    """Training into a folder that refuses new files fails with one line naming it; the
    finished run already there is untouched and nothing else appears."""
    folder = tmp_path / "results"
    folder.mkdir()
    keep = folder / "keep.h5"
    train(load_preset("di-tanh-closed", SMALL, epochs=3), keep)
    before = keep.read_bytes()
    with _read_only(folder):
        result = subprocess.run(
            [sys.executable, "-m", "closedloop.cli", "train", "di-tanh-closed", "--epochs", "2",
             "--quiet", "--out", str(folder / "new.h5"), *SMALL_ARGS],
            capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert str(folder) in lines[0]
        assert keep.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["keep.h5"]


class _Payload:
    """Unpickling this creates the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_never_loaded_from_a_checkpoint(tmp_path):
    """A checkpoint replaced by a pickle with a payload, or by an npz holding a pickled object
    array: resuming refuses both (NumPy files are read with allow_pickle=False) and the payload
    never runs. A payload in a legacy ``checkpoint.pt`` is refused unread."""
    config = _interrupted_run(tmp_path / "run.h5")
    marker = tmp_path / "pwned"
    folder = partial_dir(tmp_path / "run.h5")
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    with open(tmp_path / "object.npz", "wb") as handle:
        np.savez(handle, next_epoch=np.asarray(8), key=payload)
    for content in (pickle.dumps(_Payload(marker)), (tmp_path / "object.npz").read_bytes()):
        (folder / "checkpoint.npz").write_bytes(content)
        with pytest.raises(RunFileError, match=r"checkpoint\.npz: unreadable"):
            train(config, tmp_path / "run.h5", resume=True)
        assert not marker.exists()
    (folder / "checkpoint.npz").unlink()
    (folder / "checkpoint.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(IncompleteRunError, match="PyTorch"):
        train(config, tmp_path / "run.h5", resume=True)
    assert not marker.exists()


def test_the_reproduce_report_handles_a_diverged_run(tmp_path, monkeypatch):
    """Figure 1 with a closed-loop run that diverges (learning rate 1000, no clipping): the
    report is still written, and claim C1 is judged not supported rather than crashing."""
    import closedloop.paper.pair as pair
    from closedloop.paper import reproduce

    original = pair.load_preset

    def diverging(name, overrides=None, seed=None, epochs=None):
        extra = ["training.lr=1000", "training.clip_norm=null"] if name == "di-tanh-closed" \
            else []
        return original(name, [*(overrides or []), *SMALL, *extra], seed, 20)

    monkeypatch.setattr(pair, "load_preset", diverging)
    result = reproduce(tmp_path / "out", only=["fig1"], quick=True, workers=1)
    assert load_run(tmp_path / "out" / "runs" / "di-tanh-closed-s0.h5").status == "diverged"
    claims = {c["id"]: c for c in result.results["claims"]}
    assert claims["C1"]["verdict"] == "not supported"
    page = result.page.read_text()
    assert "C1" in page and "not supported" in page
    assert (tmp_path / "out" / "fig1.png").stat().st_size > 0    # drawn with the short run


def test_text_attributes_are_fixed_length(finished_pair):
    """Text attributes are stored as fixed-length strings in the object header: a damaged
    global-heap record (where variable-length strings live) made the HDF5 library loop forever
    on reading one, and fixed-length bytes are covered by the attribute digest instead."""
    import h5py

    with h5py.File(finished_pair[1], "r") as handle:
        nodes = [handle, handle["teacher"]]
        texts = [(node, name) for node in nodes for name in node.attrs
                 if h5py.check_string_dtype(node.attrs.get_id(name).dtype) is not None]
        assert len(texts) >= 8
        for node, name in texts:
            assert h5py.check_string_dtype(node.attrs.get_id(name).dtype).length is not None, name
