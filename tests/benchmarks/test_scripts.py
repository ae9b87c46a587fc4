"""The benchmark scripts run: the ensemble benchmark's dry run on the CPU (what gpu.sh runs on a
GPU), and ``closedloop bench`` on its memory benchmark (no PyTorch needed for either)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.ours import ensemble_table
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)


def test_ensemble_dry_run_on_cpu() -> None:
    """``--device cpu --members 1,2`` (small shapes): one row per member count, the
    throughput the inverse of the per-network epoch time, the compiled epoch measured (the
    run is a whole chunk long)."""
    overrides = [arg for item in SMALL for arg in ("--set", item)]
    done = _python("benchmarks/ours.py", "--cache", "off", "ensemble", "--device", "cpu",
                   "--members", "1,2", "--epochs", "4", *overrides, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["device"] == "cpu" and result["jax_backend"] == "cpu"
    assert [row["members"] for row in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["epoch_per_network_s"] == pytest.approx(row["run_s"] / (4 * row["members"]))
        assert row["network_epochs_per_s"] == pytest.approx(1 / row["epoch_per_network_s"])
        assert 0 < row["compiled_epoch_per_network_s"] and row["compile_s"] >= 0
    text = ensemble_table(result)
    assert "device cpu" in text and "agent.size=8" in text
    assert len(text.splitlines()) == 2 + 2


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
