"""The command line: the closed/open pair end to end, inspect --json, devices, bench's entry
point, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

import closedloop.cli as cli_module
from closedloop.cli import main
from closedloop.config import preset_names
from closedloop.runs.store import load_run
from tests.conftest import SMALL

SMALL_ARGS = [arg for setting in SMALL for arg in ("--set", setting)]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    closed, opened = folder / "closed.h5", folder / "open.h5"
    assert main(["train", "di-tanh-closed", "--out", str(closed), "--seed", "0", "--epochs", "12",
                 "--quiet", *SMALL_ARGS]) == 0
    assert main(["train", "di-tanh-open", "--init-from", f"{closed}@0", "--teacher", str(closed),
                 "--out", str(opened), "--seed", "0", "--epochs", "8", "--quiet",
                 *SMALL_ARGS]) == 0
    return closed, opened


def test_inspect_json_has_the_promised_fields(pair, capsys):
    closed, opened = pair
    code, out, _ = run_cli(capsys, "inspect", opened, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["preset"] == "di-tanh-open" and data["seed"] == 0
    assert data["epochs"] == 8 and isinstance(data["epochs"], int)
    for key in ("train_loss", "test_loss", "spectral_radius", "gains"):
        assert len(data[key]) == 9, key
    assert all(len(g) == 2 for g in data["gains"])
    assert data["stabilization_epoch"] is None or isinstance(data["stabilization_epoch"], int)
    assert len(data["final_eigenvalues"]) == 6
    assert all(len(pair) == 2 for pair in data["final_eigenvalues"])
    run = load_run(opened)
    assert data["test_loss"] == pytest.approx(run.metrics["test_loss"].tolist())
    moduli = [abs(complex(*v)) for v in data["final_eigenvalues"]]
    assert moduli == sorted(moduli, reverse=True)
    assert moduli[0] == pytest.approx(data["spectral_radius"][-1])
    assert data["teacher"] == f"{closed}@12"


def test_inspect_readable(pair, capsys):
    code, out, _ = run_cli(capsys, "inspect", pair[0])
    assert code == 0
    for word in ("di-tanh-closed", "test loss", "spectral radius", "final gains"):
        assert word in out


def test_presets_lists_the_paper_presets(capsys):
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    lines = out.strip().splitlines()
    names = [line.split()[0] for line in lines]
    assert names == preset_names()
    for name in ("di-tanh-closed", "di-tanh-open", "di-lowrank-closed", "tracking-closed",
                 "tracking-open"):
        assert name in names


def test_train_resume_through_cli(tmp_path, capsys):
    out = tmp_path / "run.h5"
    args = ["train", "di-tanh-closed", "--out", out, "--epochs", "3", "--quiet", *SMALL_ARGS]
    code, _, err = run_cli(capsys, *args, "--resume")
    assert_one_line_error(code, err, "nothing to resume")
    assert run_cli(capsys, *args)[0] == 0
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "--overwrite")
    code, _, err = run_cli(capsys, *args, "--resume")
    assert_one_line_error(code, err, "already complete")


@pytest.mark.parametrize(("args", "words"), [
    (["train", "no-such-preset"], ["unknown preset 'no-such-preset'", "di-tanh-closed"]),
    (["train", "di-tanh-closed", "--set", "training.lrr=0.1"], ["training.lrr", "lr"]),
    (["train", "di-tanh-closed", "--set", "training.lr=abc"], ["training.lr", "abc"]),
    (["train", "di-tanh-closed", "--set", "training.epochs=1.5"], ["training.epochs"]),
    (["train", "di-tanh-closed", "--set", "agent.size=-3"], ["agent.size"]),
    (["train", "di-tanh-closed", "--set", "training.lr=nan"], ["training.lr"]),
    (["train", "di-tanh-closed", "--set", "noequals"], ["noequals", "key=value"]),
    (["train", "di-tanh-closed", "--set", "agent.activation=softplus"], ["agent.activation"]),
    (["train", "di-tanh-open"], ["--teacher"]),
    (["train", "tracking-open"], ["--teacher"]),
    (["train", "di-tanh-closed", "--teacher", "gain:1,2"], ["closed loop"]),
    (["train", "di-tanh-open-plant", "--teacher", "gain:1,x"], ["gain"]),
    (["train", "di-tanh-open-plant", "--teacher", "gain:1,2,3"], ["1 x 2"]),
    (["train", "di-tanh-closed", "--epochs", "-1"], ["--epochs"]),
    (["train", "di-tanh-closed", "--device", "cuda:x"], ["training.device"]),
    (["train", "di-tanh-closed", "--device", "tpu"], ["training.device"]),
    (["train", "di-tanh-closed", "--device", "gpu:"], ["training.device"]),
    (["frobnicate"], ["frobnicate"]),
    (["reproduce", "--device", "tpu"], ["--device 'tpu'"]),
    (["reproduce", "--slurm-option", "queue=debug"], ["--slurm-option needs --slurm"]),
    (["sweep", "di-tanh-closed", "--slurm", "2", "--slurm-option", "nokey"], ["key=value"]),
    (["sweep", "di-tanh-closed", "--slurm", "2", "--slurm-option", "cores=0"], ["cores=0"]),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, args, words):
    out = {"train": tmp_path / "x.h5", "reproduce": tmp_path / "r", "sweep": tmp_path / "s"}
    code, _, err = run_cli(capsys, *args, "--out", out[args[0]]) if args[0] in out \
        else run_cli(capsys, *args)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "s" / "runs").exists()


def test_missing_teacher_run_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "di-tanh-open", "--teacher", tmp_path / "none.h5",
                           "--out", tmp_path / "x.h5")
    assert_one_line_error(code, err, "none.h5")


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    files = {}
    files["text"] = folder / "notes.h5"
    files["text"].write_text("hello\n")
    files["empty"] = folder / "empty.h5"
    files["empty"].write_bytes(b"")
    files["directory"] = folder / "adir.h5"
    files["directory"].mkdir()
    files["foreign"] = folder / "foreign.h5"
    with h5py.File(files["foreign"], "w") as handle:
        handle["data"] = np.arange(3)
    files["truncated"] = folder / "truncated.h5"
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["pickle"] = folder / "pickle.h5"
    payload = _Payload()
    payload.marker = str(folder / "pwned")
    files["pickle"].write_bytes(pickle.dumps(payload))
    files["missing"] = folder / "missing.h5"
    return files


def test_files_that_are_not_run_files(pair, capsys, tmp_path):
    for kind, path in _bad_files(tmp_path, pair[0]).items():
        code, _, err = run_cli(capsys, "inspect", path)
        assert_one_line_error(code, err, path.name)
        assert not (tmp_path / "pwned").exists(), kind


def test_init_from_a_bad_file_is_refused(pair, capsys, tmp_path):
    bad = _bad_files(tmp_path, pair[0])["foreign"]
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--init-from", f"{bad}@0",
                           "--out", tmp_path / "x.h5")
    assert_one_line_error(code, err, "not a closedloop run file")
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--init-from",
                           f"{pair[0]}@999", "--out", tmp_path / "x.h5", *SMALL_ARGS)
    assert_one_line_error(code, err, "no parameter snapshot at epoch 999")


def test_init_from_a_run_with_another_size_is_refused(pair, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--init-from", f"{pair[0]}@0",
                           "--out", tmp_path / "x.h5")
    assert_one_line_error(code, err, "shape")


def _has_gpu() -> bool:
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def test_device_cpu_and_auto_train_and_are_recorded(capsys, tmp_path):
    for device in ("cpu", "auto"):
        out = tmp_path / f"{device}.h5"
        code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--device", device, "--out",
                               out, "--epochs", "2", "--quiet", *SMALL_ARGS)
        assert code == 0, err
        run = load_run(out)
        assert run.config.training.device == device and run.status == "complete"
        np.testing.assert_array_equal(run.epochs, np.arange(3))


@pytest.mark.skipif(_has_gpu(), reason="a GPU is present: --device gpu would train")
def test_device_gpu_without_a_gpu_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--device", "gpu", "--out",
                           tmp_path / "x.h5", "--epochs", "2", *SMALL_ARGS)
    assert_one_line_error(code, err, "training.device 'gpu'", "no gpu")
    assert not (tmp_path / "x.h5").exists()


def test_bench_help_names_the_benchmark_script(capsys):
    code, out, _ = run_cli(capsys, "bench", "--help")
    assert code == 0
    assert "benchmarks/run.py" in out and "closedloop bench --quick" in out


def test_bench_without_a_source_checkout_is_one_line(capsys, tmp_path, monkeypatch):
    """An installation without benchmarks/run.py next to src/ says so instead of failing."""
    fake = tmp_path / "site" / "src" / "closedloop" / "cli.py"
    monkeypatch.setattr(cli_module, "__file__", str(fake))
    code, _, err = run_cli(capsys, "bench", "--quick")
    assert_one_line_error(code, err, "benchmarks/run.py", "source checkout")


def test_bench_runs_the_checkout_script_with_its_options_and_exit_code(capsys, tmp_path,
                                                                        monkeypatch):
    """bench imports benchmarks/run.py of the checkout, calls its main() with the options
    passed on, and exits with what main returns."""
    checkout = tmp_path / "checkout"
    script = checkout / "benchmarks" / "run.py"
    script.parent.mkdir(parents=True)
    script.write_text("def main(argv):\n    print('ran', argv)\n"
                      "    return 3 if '--fail' in argv else 0\n")
    monkeypatch.setattr(cli_module, "__file__", str(checkout / "src" / "closedloop" / "cli.py"))
    code, out, _ = run_cli(capsys, "bench", "--quick", "--only", "one-network")
    assert code == 0 and "ran ['--quick', '--only', 'one-network']" in out
    code, out, _ = run_cli(capsys, "bench", "--fail")
    assert code == 3 and "ran ['--fail']" in out
