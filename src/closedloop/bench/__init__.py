"""``closedloop bench``: speed and memory against a naive baseline, measured side by side.

Each benchmark times the naive baseline (:mod:`closedloop.bench.naive`, SPEC 1.3 written the
straightforward way) and closedloop in the same process, alternating rounds, and reports the
median time of each and their ratio:

* one ``di-tanh-closed`` network (N = 100, batch 100, T = 50), an epoch with recording;
* a 32-network ensemble of it, per network (with recording, and the training step alone),
  next to its achieved GFLOP/s and a plain matrix product's GFLOP/s on the same machine;
* the eigenvalues of P for 1000 parameter snapshots, against a per-snapshot NumPy loop;
* one ``tracking-closed`` epoch (T = 300) with recording;
* resident memory while recording 1000 epochs of an N = 1000 network with a snapshot schedule
  (measured in fresh subprocesses: the naive run keeps its records in lists, closedloop
  streams them to the run file).

Example
-------
>>> rows = run_benchmarks(quick=True, only=["eigenvalues"])          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from closedloop.bench.naive import NaiveRNN, naive_epoch
from closedloop.config import load_preset
from closedloop.coupling import coupled_matrix, sorted_eigenvalues
from closedloop.ensemble import EnsembleTrainer
from closedloop.training import Trainer

TARGETS = {"one network": 4.0, "ensemble, per network": 10.0, "eigenvalues of P": 5.0,
           "tracking epoch": 8.0}
"""Speed-up targets (ratios); memory: closedloop grows by less than 200 MB."""
MEMORY_LIMIT_MB = 200.0
EPOCH_FLOPS_DI = 0.31e9   # per di-tanh-closed epoch: 50 steps x ~6 MFLOP + the test rollout


@dataclass
class Result:
    """One benchmark: the baseline's and closedloop's times (s, per unit) and their ratio."""

    name: str
    unit: str
    baseline: float
    ours: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Speed-up (baseline / ours); for memory, baseline growth / ours."""
        return self.baseline / self.ours if self.ours else float("inf")

    @property
    def target(self) -> float | None:
        """The target ratio, if this benchmark has one."""
        return TARGETS.get(self.name)


def _alternate(rounds: int, baseline: Callable[[], float], ours: Callable[[], float]
               ) -> tuple[float, float]:
    """Median per-unit times of alternating rounds (each callable returns its per-unit time)."""
    left, right = [], []
    for _ in range(rounds):
        left.append(baseline())
        right.append(ours())
    return statistics.median(left), statistics.median(right)


def _timed(work: Callable[[], Any], units: int) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) / units


class _NaiveRunner:
    """The naive baseline for a preset: an nn.Module, torch.optim, lists for the records."""

    def __init__(self, preset: str) -> None:
        self.trainer = Trainer(load_preset(preset))
        config = self.trainer.config
        params = {k: v.detach() for k, v in self.trainer.params.items()}
        self.net = NaiveRNN(params, config.agent.activation, config.agent.dt / config.agent.tau)
        for name, value in self.net.named_parameters():
            value.requires_grad_(self.trainer.agent.is_trainable(name))
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD if config.training.optimizer == "sgd" else torch.optim.Adam
        self.optimizer = optimizer(trainable, lr=config.training.lr)
        self.log: dict[str, list] = {k: [] for k in ("train_loss", "test_loss", "gains",
                                                      "eig_P", "eig_W", "weights")}
        self.config = config

    def epochs(self, count: int) -> None:
        config, test = self.config, self.trainer.test_batch
        tracking = config.task.kind == "tracking"
        for _ in range(count):
            batch = self.trainer.draw_batch()
            naive_epoch(self.net, self.optimizer, batch.x0, config.task.steps,
                        config.loss.control_cost, config.training.clip_norm, self.log, test.x0,
                        batch.reference, test.reference, config.plant.dt,
                        config.plant.clamp if tracking else None)


def _ours(preset: str, epochs: int, members: int = 1) -> Callable[[], float]:
    """closedloop: train ``epochs`` epochs (with recording to a run file) per call."""
    from closedloop.ensemble import train_ensemble
    from closedloop.training import train

    def run() -> float:
        with tempfile.TemporaryDirectory() as folder:
            configs = [load_preset(preset, seed=s, epochs=epochs) for s in range(members)]
            started = time.perf_counter()
            if members == 1:
                train(configs[0], Path(folder) / "run.h5")
            else:
                train_ensemble(configs, [Path(folder) / f"run{s}.h5" for s in range(members)])
            return (time.perf_counter() - started) / ((epochs + 1) * members)
    return run


def bench_one_network(quick: bool) -> Result:
    """One di-tanh-closed network: an epoch with recording."""
    naive = _NaiveRunner("di-tanh-closed")
    count = 3 if quick else 10
    baseline, ours = _alternate(2 if quick else 3, lambda: _timed(lambda: naive.epochs(count),
                                                                   count),
                                _ours("di-tanh-closed", 10 if quick else 40))
    return Result("one network", "s/epoch", baseline, ours)


def bench_ensemble(quick: bool, baseline_epoch: float) -> list[Result]:
    """A 32-network ensemble: per network, with recording and the training step alone."""
    members = 8 if quick else 32
    epochs = 2 if quick else 6
    with_recording = statistics.median(_ours("di-tanh-closed", epochs, members)()
                                       for _ in range(1 if quick else 2))
    trainer = EnsembleTrainer([load_preset("di-tanh-closed", seed=s) for s in range(members)])
    batch = trainer.draw_batch()
    trainer.train_step(batch)
    steps = 2 if quick else 5
    step_time = _timed(lambda: [trainer.train_step(batch) for _ in range(steps)],
                       steps * members)
    naive = _NaiveRunner("di-tanh-closed")
    naive_batch = naive.trainer.draw_batch()

    def naive_step() -> None:
        from closedloop.bench.naive import naive_closed_loop_loss

        naive.optimizer.zero_grad()
        naive_closed_loop_loss(naive.net, naive_batch.x0, 50, 0.005).backward()
        naive.optimizer.step()

    naive_step()
    naive_step_time = _timed(lambda: [naive_step() for _ in range(steps)], steps)
    gflops = EPOCH_FLOPS_DI / with_recording / 1e9
    matmul = _matmul_gflops()
    notes = {"members": members, "achieved_gflops": round(gflops, 2),
             "matmul_gflops": round(matmul, 1),
             "train_step_gflops": round(EPOCH_FLOPS_DI / step_time / 1e9, 2)}
    return [Result("ensemble, per network", "s/epoch", baseline_epoch, with_recording, notes),
            Result("ensemble training step, per network", "s/step", naive_step_time,
                   step_time, notes)]


def _matmul_gflops() -> float:
    """A plain float32 matrix product's GFLOP/s on this machine (all torch threads)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        a @ b
    return 2 * 1024 ** 3 * rounds / (time.perf_counter() - started) / 1e9


def bench_eigenvalues(quick: bool) -> Result:
    """eig(P) of 1000 snapshots of a di-tanh-closed network: batched vs a NumPy loop."""
    trainer = Trainer(load_preset("di-tanh-closed"))
    count = 100 if quick else 1000
    rng = np.random.default_rng(0)
    base = {k: v.astype(np.float64) for k, v in trainer.parameters_numpy().items()}
    snapshots = {k: v[None] + 0.01 * rng.standard_normal((count, *v.shape))
                 for k, v in base.items()}
    plant = trainer.plant

    def naive_loop() -> float:
        started = time.perf_counter()
        for index in range(count):
            W_in = snapshots["W_in"][index].T
            W, W_out = snapshots["W"][index].T, snapshots["W_out"][index].T
            P = np.block([[plant.A, plant.B @ W_out],
                          [W_in @ plant.C @ plant.A, W + W_in @ plant.C @ plant.B @ W_out]])
            np.linalg.eigvals(P)
        return (time.perf_counter() - started) / count

    def batched() -> float:
        started = time.perf_counter()
        lin = trainer.agent.linearisation(snapshots)
        sorted_eigenvalues(coupled_matrix(plant, lin))
        return (time.perf_counter() - started) / count

    baseline, ours = _alternate(2, naive_loop, batched)
    return Result("eigenvalues of P", "s/snapshot", baseline, ours, {"snapshots": count})


def bench_tracking(quick: bool) -> Result:
    """One tracking-closed epoch (T = 300) with recording."""
    naive = _NaiveRunner("tracking-closed")
    count = 1 if quick else 3
    baseline, ours = _alternate(2, lambda: _timed(lambda: naive.epochs(count), count),
                                _ours("tracking-closed", 3 if quick else 12))
    return Result("tracking epoch", "s/epoch", baseline, ours)


_MEMORY_SCRIPT = """
import json, resource, sys, tempfile, numpy as np
from closedloop.bench import record_for_memory
print(json.dumps(record_for_memory(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
"""


def record_for_memory(kind: str, epochs: int, size: int) -> dict[str, float]:
    """Record ``epochs`` synthetic epochs of an N = ``size`` network (eigenvalues every
    epoch, weights on the default snapshot schedule) and return the resident-memory growth
    in MB: ``kind`` "naive" keeps them in lists, "ours" streams them to a run file."""
    from closedloop.config import RecordingConfig
    from closedloop.store import EpochRecord, RunWriter

    config = load_preset("di-tanh-closed", [f"agent.size={size}"], epochs=epochs)
    interval = RecordingConfig().snapshot_interval(size)
    rng = np.random.default_rng(0)
    weights = {"W_in": rng.standard_normal((1, size)).astype(np.float32),
               "W": rng.standard_normal((size, size)).astype(np.float32),
               "W_out": rng.standard_normal((size, 1)).astype(np.float32)}
    start = _rss_mb()
    kept: list[EpochRecord] = []
    with tempfile.TemporaryDirectory() as folder:
        writer = RunWriter(Path(folder) / "run.h5", config)
        if kind == "ours":
            writer.start(weights, None)
        peak = start
        for epoch in range(epochs + 1):
            record = EpochRecord(
                epoch=epoch, train_loss=1.0, test_loss=1.0, grad_norm=1.0, spectral_radius=0.9,
                coupled_eigenvalues=rng.standard_normal(size + 2) + 0j,
                recurrent_eigenvalues=rng.standard_normal(size) + 0j,
                gains=np.zeros((1, 2)),
                snapshot={k: v.copy() for k, v in weights.items()}
                if epoch % interval == 0 or epoch == epochs else None)
            if kind == "naive":
                kept.append(record)
            else:
                writer.append(record)
                if (epoch + 1) % config.recording.segment_epochs == 0 or epoch == epochs:
                    writer.save(_empty_checkpoint(epoch + 1))
            peak = max(peak, _rss_mb())
        if kind == "ours":
            writer.finish("complete", None)
            peak = max(peak, _rss_mb())
    return {"growth_mb": peak - start, "maxrss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024}


def _empty_checkpoint(next_epoch: int) -> Any:
    from closedloop.store import CheckpointState

    return CheckpointState(next_epoch, {"params": {}, "optimizer": {}, "generator": None})


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def bench_memory(quick: bool) -> Result:
    """Resident-memory growth while recording 1000 epochs of an N = 1000 network."""
    epochs, size = (200, 300) if quick else (1000, 1000)
    growth = {}
    for kind in ("naive", "ours"):
        output = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, kind, str(epochs),
                                 str(size)], check=True, capture_output=True, text=True)
        growth[kind] = json.loads(output.stdout.strip().splitlines()[-1])["growth_mb"]
    return Result("recording memory", "MB growth", growth["naive"], max(growth["ours"], 1e-3),
                  {"epochs": epochs, "size": size, "limit_mb": MEMORY_LIMIT_MB,
                   "ours_mb": round(growth["ours"], 1), "naive_mb": round(growth["naive"], 1)})


BENCHMARKS = ("one-network", "ensemble", "eigenvalues", "tracking", "memory")


def run_benchmarks(quick: bool = False, only: list[str] | None = None,
                   progress: Callable[[str], None] | None = None) -> list[Result]:
    """Run the benchmarks (all, or those named in ``only``) and return their results."""
    names = only or list(BENCHMARKS)
    results: list[Result] = []
    single: Result | None = None
    for name in names:
        if progress:
            progress(name)
        if name == "one-network":
            single = bench_one_network(quick)
            results.append(single)
        elif name == "ensemble":
            if single is None:
                single = bench_one_network(quick)
            results.extend(bench_ensemble(quick, single.baseline))
        elif name == "eigenvalues":
            results.append(bench_eigenvalues(quick))
        elif name == "tracking":
            results.append(bench_tracking(quick))
        elif name == "memory":
            results.append(bench_memory(quick))
    return results
