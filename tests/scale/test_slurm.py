"""The SLURM path for real: a one-node SLURM cluster on localhost (scripts/slurm-localhost.sh,
which installs Debian's slurm-wlm and munge when missing), a sweep through dask-jobqueue's
SLURMCluster (``closedloop sweep ... --slurm 2``), one worker's batch job cancelled with
``scancel`` while its task has checkpointed progress, and every run file checked: there once,
complete, and equal to its point trained alone.

Run it alone with ``pytest -m slurm tests/scale/test_slurm.py`` (as root, on Debian).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closedloop.runs.store import partial_dir
from closedloop.scale.sweep import RUNS_FOLDER, SweepSpec
from tests.conftest import SMALL
from tests.scale.test_sweep import SET_SMALL, _check_sweep_folder, _locked_runs, _wait_for

pytestmark = pytest.mark.slurm
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm-localhost.sh"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A started one-node cluster; yields the environment its commands need."""
    pytest.importorskip("dask_jobqueue", reason="pip install 'closedloop[slurm]'")
    if os.geteuid() != 0:
        pytest.skip("starting SLURM daemons needs root")
    if shutil.which("slurmctld", path="/usr/sbin:/usr/bin") is None and \
            shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and apt-get is not there to install it")
    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True,
                             text=True, timeout=600)
    assert started.returncode == 0, started.stdout + started.stderr
    export = started.stdout.strip().splitlines()[-1]
    assert export.startswith("export SLURM_CONF=")
    env = {**os.environ, "SLURM_CONF": export.partition("=")[2]}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True,
                       timeout=120)


def _job_of(pid: int) -> str | None:
    """The SLURM job id process ``pid`` runs in (from its environment)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"SLURM_JOB_ID="):
            return item.partition(b"=")[2].decode()
    return None


def _busy_jobs(runs: Path) -> dict[str, list[str]]:
    """SLURM job id -> the runs its worker holds locks on, for jobs whose runs all have a
    checkpoint (a task with progress to resume)."""
    busy: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        job = _job_of(int(entry.name))
        if job is None:
            continue
        try:
            names = _locked_runs(int(entry.name))
        except OSError:
            continue
        if names and all((partial_dir(runs / n) / "checkpoint.npz").exists() for n in names):
            busy.setdefault(job, []).extend(names)
    return busy


def _queue(env: dict[str, str]) -> list[str]:
    listed = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                            env=env, check=True)
    return listed.stdout.split()


def test_a_sweep_on_slurm_survives_a_cancelled_worker_job(tmp_path, slurm):
    folder = tmp_path / "sweep"
    epochs = 300           # a task of two runs trains for seconds: time to cancel its job
    spec = SweepSpec("di-tanh-open", seeds=range(4), epochs=epochs, overrides=SMALL)
    logs = tmp_path / "logs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "closedloop.cli", "sweep", "di-tanh-open", "--seeds", "0-3",
         "--epochs", str(epochs), "--group-size", "2", *SET_SMALL, "--out", str(folder),
         "--slurm", "2", "--slurm-option", "memory=3GB",
         "--slurm-option", "walltime=00:30:00", "--slurm-option", f"log_directory={logs}",
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=slurm)
    runs = folder / RUNS_FOLDER
    cancelled: list[tuple[str, list[str]]] = []
    try:
        def cancel_a_busy_job() -> bool:
            for job, names in _busy_jobs(runs).items():
                subprocess.run(["scancel", job], env=slurm, check=True)
                cancelled.append((job, names))
                return True
            return False

        _wait_for(cancel_a_busy_job, 300, "a worker job whose task has checkpointed progress")
        job = cancelled[0][0]
        _wait_for(lambda: job not in _queue(slurm), 60, "the cancelled job to leave the queue")
        out, err = sweep.communicate(timeout=600)
    finally:
        sweep.kill()
        for leftover in _queue(slurm):
            subprocess.run(["scancel", leftover], env=slurm)
    assert sweep.returncode == 0, err[-3000:]
    assert "8 of 8 runs finished (8 now, 0 already there)" in out
    assert len(cancelled[0][1]) == 2                                 # --group-size 2
    assert "CANCELLED" in (logs / f"dask-worker-{job}.err").read_text()
    _check_sweep_folder(spec, folder, tmp_path / "alone")
