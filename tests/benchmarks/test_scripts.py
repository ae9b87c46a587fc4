"""The benchmark scripts run: the ensemble benchmark's dry run on the CPU (what gpu.sh runs on a
GPU), ``closedloop bench`` on its memory benchmark (no PyTorch needed for either), and gpu.sh:
valid bash, its embedded Python, its summary from a GPU run's records, and its CPU dry run of
the first step (``GPU_CHECK_ALLOW_CPU=1``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.ours import ensemble_table
from closedloop.runtime import available_cores, cpu_quota
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)


def test_ensemble_dry_run_on_cpu(tmp_path: Path) -> None:
    """``--device cpu --members 1,2`` (small shapes): one row per member count, the
    throughput the inverse of the per-network epoch time, the compiled epoch measured (the
    run is a whole chunk long)."""
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    rows = tmp_path / "rows.jsonl"
    done = _python("benchmarks/ours.py", "--cache", "off", "ensemble", "--device", "cpu",
                   "--members", "1,2", "--epochs", "4", *overrides, "--json", "--rows", str(rows))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and result["jax_backend"] == "cpu"
    assert [row["members"] for row in result["rows"]] == [1, 2]
    kept = [json.loads(line) for line in rows.read_text().splitlines()]   # one line per count
    assert [line["row"] for line in kept] == result["rows"]
    assert all(line["device"] == "cpu" and line["epochs"] == 4 for line in kept)
    for row in result["rows"]:
        assert row["epoch_per_network_s"] == pytest.approx(row["run_s"] / (4 * row["members"]))
        assert row["network_epochs_per_s"] == pytest.approx(1 / row["epoch_per_network_s"])
        assert 0 < row["compiled_epoch_per_network_s"] and row["compile_s"] >= 0
    text = ensemble_table(result)
    assert "device cpu" in text and "agent.size=8" in text
    assert len(text.splitlines()) == 2 + 2


@pytest.mark.skipif(available_cores() < 2, reason="one core: no second CPU device")
def test_devices_benchmark_spreads_an_ensemble() -> None:
    """``devices --counts 1,2 --members 2`` (small shapes): one row per device count, two
    run files written by a trainer on that many devices, the compiled epoch measured."""
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    done = _python("benchmarks/ours.py", "--cache", "off", "devices", "di-tanh-closed",
                   "--counts", "1,2", "--members", "2", "--epochs", "4", *overrides)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["members"] == 2
    assert [row["devices"] for row in result["rows"]] == [1, 2]
    assert all(row["epoch_s"] > 0 and row["compiled_epoch_s"] > 0 for row in result["rows"])


def test_bench_command_runs_the_memory_benchmark() -> None:
    """``closedloop bench --quick --only memory --json``: one row, the verdict from the
    measured growth, the ratio baseline / closedloop."""
    done = _python("-m", "closedloop.cli", "bench", "--quick", "--only", "memory", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["quick"] is True and result["machine"]["cores"] >= 1
    (row,) = result["rows"]
    assert row["benchmark"] == "memory" and row["unit"] == "MB"
    assert row["met"] == (row["ours"] < run.MEMORY_LIMIT_MB)
    assert row["ratio"] == pytest.approx(row["baseline"] / row["ours"])
    assert row["baseline"] > 0


def test_unknown_benchmark_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--only", "memory,nonsense"])
    assert exc.value.code == 2


def test_table_says_met_and_not_met() -> None:
    rows = [run.Row("x", "fast enough", "s", 9.0, 2.0, ">= 3x", True),
            run.Row("x", "too slow", "ms", 9.0, 4.5, ">= 3x", False),
            run.Row("memory", "memory", "MB", 400.0, 20.0, "< 200 MB", True)]
    info = {"cores": 2, "cpu": "cpu", "load_average": [1.0, 1.0, 1.0], "python": "3",
            "jax": "j", "jaxlib": "j", "torch": "t", "numpy": "n",
            "baseline_torch_threads": 1}
    lines = run.table(rows, info, quick=False).splitlines()
    assert lines[2].endswith("met") and "4.50x" in lines[2]
    assert lines[3].endswith("NOT met") and "2.00x" in lines[3]
    assert "20.0x less" in lines[4]


GPU_SH = ROOT / "benchmarks" / "gpu.sh"


def _gpu_sh_python() -> list[str]:
    """The Python programs gpu.sh runs (heredocs): the env probe, then the summary."""
    return re.findall(r"<<'PY'\n(.*?)\nPY\n", GPU_SH.read_text(), re.S)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_gpu_script_is_valid_bash_and_python() -> None:
    done = subprocess.run(["bash", "-n", str(GPU_SH)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    programs = _gpu_sh_python()
    assert len(programs) == 2
    for index, program in enumerate(programs):
        compile(program, f"gpu.sh heredoc {index}", "exec")


def _junit(path: Path, cases: list[tuple[str, str]]) -> None:
    body = "".join(
        f'<testcase classname="tests.training.test_golden" name="{name}" time="1.5">'
        + ("" if outcome == "passed" else f'<{outcome} message="{outcome} here"/>')
        + "</testcase>" for name, outcome in cases)
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite>{body}</testsuite>'
                    "</testsuites>")


def _summary(tmp_path: Path, golden: str, members: int, per_network_s: float,
             reproduce: tuple[str, int]) -> tuple[int, str]:
    """Run gpu.sh's summary on records as a GPU run leaves them (GPU mode); returns its exit
    status and summary.md."""
    work, out = tmp_path / "work", tmp_path / "out"
    repro = work / "reproduction"
    (out / "logs").mkdir(parents=True)
    (repro / "runs").mkdir(parents=True)
    status, seconds = reproduce
    rc = {"PASS": 0, "TIMEOUT": 124}[status]
    (work / "steps.tsv").write_text("".join(
        f"{name}\t{result}\t{time}\t{limit}\t{code}\t\n" for name, result, time, limit, code in [
            ("env", "PASS", 12, 120, 0), ("tests", "PASS" if golden == "passed" else "FAIL",
                                          40, 180, 0 if golden == "passed" else 1),
            ("golden", "PASS", 20, 120, 0), ("ensemble", "PASS", 150, 200, 0),
            ("reproduce", status, seconds, 330, rc)]))
    (work / "env.json").write_text(json.dumps({
        "nvidia_smi": ["NVIDIA H200, 143771 MiB, 575.00"], "jax": "0.11.2",
        "devices_gpu": ["cuda:0"], "f32_matmul_rel_error": 3e-7, "tf32_off": True,
        "packages": ["jax 0.11.2"]}))
    _junit(work / "tests.xml", [(f"test_reproduces_authors_implementation_on_gpu[{p}]", golden)
                                for p in ("di-tanh-closed", "tracking-closed")])
    row = {"members": members, "run_s": per_network_s * 20 * members,
           "epoch_per_network_s": per_network_s, "network_epochs_per_s": 1 / per_network_s,
           "compiled_epoch_per_network_s": per_network_s / 2, "compile_s": 4.0}
    (work / "ensemble.jsonl").write_text(json.dumps({
        "preset": "di-tanh-closed", "epochs": 20, "device": "gpu", "device_kind": "NVIDIA H200",
        "overrides": [], "jax_backend": "gpu", "row": row}) + "\n")
    (repro / "gpu-check-calls.tsv").write_text(f"t\t{seconds}\t{rc}\n")
    if status == "PASS":
        (out / "results.json").write_text(json.dumps({
            "timing": {"training_s": 200.0, "analysis_s": 60.0, "total_s": 260.0},
            "claims": [{"id": "C1", "figure": "fig1", "verdict": "supported",
                        "per_seed": [True, True]}], "figures": [], "failures": {}}))
    environment = {**os.environ, "MODE": "gpu", "DEVICE": "gpu", "MEMBERS": f"1,{members}",
                   "EPOCHS": "20", "ENSEMBLE_SET": "", "SEEDS": "2", "FIGURES": "fig1",
                   "REPRODUCE_ARGS": "", "REPRODUCE_WORKERS": "1", "BUDGET": "480",
                   "CPU_EPOCH_MS": "9.29", "OUTDIR": str(out), "WORK": str(work),
                   "REPRO": str(repro), "ROOT": str(ROOT), "TOTAL_S": "400", "STATUS": "0",
                   "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-"], input=_gpu_sh_python()[1], cwd=ROOT,
                          env=environment, capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, (out / "summary.md").read_text()


def test_gpu_summary_of_a_run_that_meets_the_targets(tmp_path: Path) -> None:
    code, text = _summary(tmp_path, "passed", 1024, 1e-4, ("PASS", 400))
    assert code == 0
    assert "NVIDIA H200, 143771 MiB" in text and "TF32 off: **yes**" in text
    assert "| 1024 | 0.1000 ms | 10000.0 |" in text and "| 1 | not measured" in text
    assert "1024 members: 0.1000 ms, 92.9x | yes |" in text
    assert "6.7 min, finished, 0/4 runs | yes |" in text
    assert "| C1 | fig1 | supported | 2/2 |" in text
    assert "| the golden tests pass on the GPU | 2/2 passed | yes |" in text


def test_gpu_summary_of_a_run_that_misses_them(tmp_path: Path) -> None:
    """Golden tests failing on the GPU fail the check; a slow ensemble and a reproduce stopped
    by its time limit are reported, with an extrapolation only where runs finished."""
    code, text = _summary(tmp_path, "failure", 1024, 1e-3, ("TIMEOUT", 330))
    assert code == 1
    assert "1024 members: 1.0000 ms, 9.3x | NO |" in text
    assert "killed by its time limit" in text and "| not known |" in text
    assert "| the golden tests pass on the GPU | 0/2 passed | NO |" in text
    assert "### tests: the log's last lines" in text


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and timeout")
def test_gpu_script_dry_run_of_its_first_step_on_the_cpu(tmp_path: Path) -> None:
    """``GPU_CHECK_ALLOW_CPU=1 STEPS=none``: the env step on the CPU, its log, the summary."""
    out = tmp_path / "out"
    environment = {**os.environ, "GPU_CHECK_ALLOW_CPU": "1", "STEPS": "none",
                   "GPU_CHECK_WORK": str(tmp_path / "work"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(GPU_SH), str(out)], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, check=False, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = (out / "summary.md").read_text()
    assert "CPU dry run" in text and "| env | PASS |" in text
    assert "matmul precision `highest`" in text
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["env.log", "summary.md"]
    assert "pip list:" in (out / "logs" / "env.log").read_text()


def test_cores_follow_the_cgroup_quota(tmp_path: Path) -> None:
    """The eigenvalue threads of a run on a GPU machine are its cores: a container's CPU quota
    (cgroup v2 cpu.max, v1 cpu.cfs_quota_us) bounds them, rounded up; no quota, no bound."""
    (tmp_path / "cpu.max").write_text("1600000 100000\n")
    assert cpu_quota(tmp_path) == 16
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path / "v1") == 4
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_quota(tmp_path / "v1") is None
    assert cpu_quota(tmp_path / "none") is None
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


def test_the_motornet_race_runs_both_sides() -> None:
    """``motornet_race.py`` (tiny sizes): MotorNet's loop and closedloop's training each
    report their time per update and their whole loop."""
    pytest.importorskip("motornet")
    for tool in ("motornet", "ours"):
        done = _python("benchmarks/motornet_race.py", tool, "--updates", "3", "--batch", "2")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["updates"] == 3 and result["update_s"] > 0 and result["loop_s"] > 0
