"""closedloop's benchmarks against the baseline a user would write instead (``closedloop bench``).

    python benchmarks/run.py [--quick] [--only NAMES] [--json] [--baseline-threads N]

The baseline is the paper's algorithm in eager PyTorch, written without waste
(``benchmarks/baseline.py``; tested against the authors' golden numbers, so it runs the same
algorithm). Every measurement runs in a fresh subprocess; baseline and closedloop alternate
round by round and the medians are reported:

* ``one-network``: the whole ``closedloop train di-tanh-closed`` process (1000 epochs, N = 100,
  batch 100, T = 50; eig(P) and eig(W) every epoch, parameter snapshots, the run file), with
  a cold compilation cache (an empty folder) and a warm one, against the baseline's training
  alone (1000 epochs) and its training plus its analysis (test loss, gains, eig(P), eig(W) of
  every snapshot). Target: >= 3x (aim 4x) against the training alone. Also the compile time
  of the training program and where closedloop's time goes (``ours.py profile``).
* ``tracking``: a ``tracking-closed`` epoch (T = 300, Adam, linear CT-RNN dt = 0.1) with
  recording, compile excluded (``train`` of 100 epochs, run twice in one process: the second
  run per epoch), against the baseline's steady tracking epoch (after its first update), alone
  and with its analysis per snapshot. Target: <= 45 ms. Also its compile time.
* ``devices``: one run's batch split over every core (``training.devices``, the largest count
  up to the cores that divides the batch) against the same run on one device, for
  ``tracking-closed`` (T = 300) and ``di-tanh-closed`` (T = 50), and an ensemble of as many
  ``tracking-closed`` seeds as devices spread by members: the epoch with recording (as
  ``tracking``) and the compiled training alone. The baseline column is one device.
* ``ensemble``: ``train_ensemble`` of M members (CPU: 1, 8, 32), per network and epoch, against
  the baseline's epoch and the single run (``gpu.sh`` measures 1, 32, 256, 1024 on a GPU).
* ``motornet``: the race on the muscle arm: MotorNet's own arm trained on ``reach-muscle-arm``'s
  task with the same network, batch and optimiser (``benchmarks/motornet_race.py``, a MotorNet
  user's training loop), against closedloop's compiled training step, and both whole loops
  for a fixed number of updates. Target: >= 3x per step. Needs ``motornet`` (a test extra).
* ``memory``: resident-memory growth while recording 1000 epochs of an N = 1000 network: the
  records in Python lists (the baseline) against ``RunWriter`` streaming them to a run file.
  Target: < 200 MB.

``--quick`` (about a minute) uses smaller sizes: a smoke test whose verdicts are indicative only.
Timings on a loaded machine are noisy; the load average is reported with the results.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS = ("one-network", "tracking", "devices", "ensemble", "motornet", "memory")
DEVICE_CASES = (("tracking-closed", False), ("di-tanh-closed", False),   # T = 300 and T = 50
                ("tracking-closed", True))    # devices: (preset, one seed per device)
NEEDS_TORCH = {"one-network", "tracking", "ensemble", "motornet"}
RACE_TARGET = 3.0                        # motornet: speed-up per training step
TRAIN_TARGET, TRAIN_AIM = 3.0, 4.0       # one-network: speed-up over the baseline's training
TRACKING_TARGET_S = 0.045                # tracking: seconds per epoch with recording
MEMORY_LIMIT_MB = 200.0                  # memory: growth while recording


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark runs (full or ``--quick``)."""

    rounds: int
    di_epochs: int
    tracking_epochs: int
    tracking_baseline_epochs: int
    ensemble_members: tuple[int, ...]
    ensemble_epochs: int
    ensemble_rounds: int
    memory_epochs: int
    memory_size: int
    race_updates: int


FULL = Sizes(rounds=3, di_epochs=1000, tracking_epochs=100, tracking_baseline_epochs=10,
             ensemble_members=(1, 8, 32), ensemble_epochs=40, ensemble_rounds=2,
             memory_epochs=1000, memory_size=1000, race_updates=100)
QUICK = Sizes(rounds=1, di_epochs=200, tracking_epochs=40, tracking_baseline_epochs=3,
              ensemble_members=(1, 8), ensemble_epochs=20, ensemble_rounds=1,
              memory_epochs=200, memory_size=300, race_updates=10)


@dataclass
class Row:
    """One line of the table: the baseline's and closedloop's value (``unit``), the target."""

    benchmark: str
    what: str
    unit: str
    baseline: float | None
    ours: float | None
    target: str | None = None
    met: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """baseline / closedloop (a speed-up; for memory, how many times less)."""
        if self.baseline is None or self.ours is None or self.ours <= 0:
            return None
        return self.baseline / self.ours


class BenchmarkError(RuntimeError):
    """A measuring subprocess failed."""


# -- subprocesses -------------------------------------------------------------------------------


def _run(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``python ARGS`` from the repository root; (stdout, wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise BenchmarkError(f"{' '.join(args)} failed ({done.returncode}):\n{tail}")
    return done.stdout, wall


def _run_json(args: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    stdout, wall = _run(args, env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


class Runner:
    """Runs the benchmarks; keeps the temporary folders and the baseline's epoch."""

    def __init__(self, sizes: Sizes, baseline_threads: int, folder: Path,
                 progress: Callable[[str], None]) -> None:
        self.sizes, self.threads, self.folder, self.progress = \
            sizes, baseline_threads, folder, progress
        self.baseline_epoch_s: float | None = None
        self._count = 0

    def fresh(self, name: str) -> Path:
        """A new empty folder (a cold compilation cache, an output folder)."""
        self._count += 1
        path = self.folder / f"{self._count:03d}-{name}"
        path.mkdir()
        return path

    def baseline(self, preset: str, epochs: int) -> dict[str, Any]:
        args = [str(HERE / "baseline.py"), preset, "--epochs", str(epochs), "--analysis"]
        if self.threads:
            args += ["--threads", str(self.threads)]
        return _run_json(args)

    def ours(self, *args: str) -> dict[str, Any]:
        return _run_json([str(HERE / "ours.py"), "--cache", str(self.fresh("cache")), *args])

    def train_process(self, epochs: int, cache: Path) -> float:
        """Wall time of the whole ``closedloop train di-tanh-closed`` process."""
        out = self.fresh("run") / "run.h5"
        _, wall = _run(["-m", "closedloop.cli", "train", "di-tanh-closed", "--out", str(out),
                        "--epochs", str(epochs), "--quiet"],
                       env={"CLOSEDLOOP_JAX_CACHE": str(cache)})
        if not out.is_file():
            raise BenchmarkError(f"closedloop train wrote no run file at {out}")
        return wall

    # -- the benchmarks ---------------------------------------------------------------------

    def one_network(self) -> list[Row]:
        epochs = self.sizes.di_epochs
        baseline, cold, warm = [], [], []
        for index in range(self.sizes.rounds):
            self.progress(f"one-network: round {index + 1}/{self.sizes.rounds}")
            baseline.append(self.baseline("di-tanh-closed", epochs))
            cache = self.fresh("cache")
            cold.append(self.train_process(epochs, cache))
            warm.append(self.train_process(epochs, cache))
        self.progress("one-network: profile")
        profile = self.ours("profile", "di-tanh-closed")
        train_s = statistics.median(r["train_s"] for r in baseline)
        analysis_s = statistics.median(r["analysis_s"] for r in baseline)
        total_s = statistics.median(r["train_s"] + r["analysis_s"] for r in baseline)
        self.baseline_epoch_s = train_s / epochs
        size = f"di-tanh-closed, {epochs} epochs"
        target = f">= {TRAIN_TARGET:g}x (aim {TRAIN_AIM:g}x)"
        warm_s, cold_s = statistics.median(warm), statistics.median(cold)
        notes = {"baseline_train_s": train_s, "baseline_analysis_s": analysis_s,
                 "baseline_process_s": statistics.median(r["process_s"] for r in baseline),
                 "baseline_final_test_loss": baseline[-1].get("final_test_loss"),
                 "baseline_final_gains": baseline[-1].get("final_gains"),
                 "cold_s": cold, "warm_s": warm}
        return [
            Row("one-network", f"{size}: whole `closedloop train`, warm cache, vs baseline "
                "training alone", "s", train_s, warm_s, target,
                train_s / warm_s >= TRAIN_TARGET, notes),
            Row("one-network", f"{size}: whole `closedloop train`, cold cache (compiles), vs "
                "baseline training alone", "s", train_s, cold_s, target,
                train_s / cold_s >= TRAIN_TARGET),
            Row("one-network", f"{size}: whole `closedloop train`, warm cache, vs baseline "
                "training + analysis", "s", total_s, warm_s),
            Row("one-network", "compile: cold - warm `closedloop train` process", "s", None,
                max(cold_s - warm_s, 0.0)),
            Row("one-network", "compile: di-tanh-closed training program (in-process)", "s",
                None, profile["compile_s"]),
            Row("one-network", "closedloop's compiled epoch alone (no host recording) vs "
                "baseline training epoch", "ms", 1e3 * self.baseline_epoch_s,
                1e3 * profile["compiled_epoch_s"]),
            Row("one-network", "closedloop's host eig(P) + eig(W) of one epoch (second thread)",
                "ms", None, 1e3 * profile["spectra_epoch_s"]),
        ]

    def tracking(self) -> list[Row]:
        sizes = self.sizes
        baseline, ours = [], []
        for index in range(sizes.rounds):
            self.progress(f"tracking: round {index + 1}/{sizes.rounds}")
            baseline.append(self.baseline("tracking-closed", sizes.tracking_baseline_epochs))
            ours.append(self.ours("tracking", "--epochs", str(sizes.tracking_epochs)))
        epochs = sizes.tracking_baseline_epochs
        train = statistics.median(r["steady_epoch_s"] for r in baseline)
        total = statistics.median(r["steady_epoch_s"] + r["analysis_s"] / (epochs + 1)
                                  for r in baseline)
        epoch = statistics.median(r["epoch_s"] for r in ours)
        return [
            Row("tracking", "tracking-closed epoch (T = 300) with recording, compile excluded, "
                "vs baseline training epoch", "ms", 1e3 * train, 1e3 * epoch,
                f"<= {1e3 * TRACKING_TARGET_S:g} ms", epoch <= TRACKING_TARGET_S,
                {"baseline_epochs": epochs, "closedloop_epochs": sizes.tracking_epochs,
                 "closedloop_epoch_s": [r["epoch_s"] for r in ours]}),
            Row("tracking", "the same vs baseline training + analysis per epoch", "ms",
                1e3 * total, 1e3 * epoch),
            Row("tracking", "compile: tracking-closed (first run - second run in-process)", "s",
                None, statistics.median(r["compile_s"] for r in ours)),
        ]

    def devices(self) -> list[Row]:
        from closedloop.config import load_preset
        from closedloop.runtime import available_cores

        rows = []
        for preset, spread in DEVICE_CASES:
            batch = load_preset(preset).task.batch_size
            count = available_cores() if spread else max(
                d for d in range(1, available_cores() + 1) if batch % d == 0)
            if count == 1:
                self.progress(f"devices: {preset}, one core, nothing to split over")
                continue
            members = count if spread else 1
            how = f"{members} seeds spread by members" if spread else "batch split"
            results = []
            for index in range(self.sizes.rounds):
                self.progress(f"devices: {preset} ({how}), round {index + 1}/"
                              f"{self.sizes.rounds}")
                results.append(self.ours("devices", preset, "--counts", f"1,{count}",
                                         "--members", str(members),
                                         "--epochs", str(self.sizes.tracking_epochs)))
            for key, what in (("epoch_s", "epoch with recording"),
                              ("compiled_epoch_s", "compiled epoch alone")):
                one, split = (statistics.median(r["rows"][i][key] for r in results)
                              for i in (0, 1))
                rows.append(Row("devices", f"{preset}: {what} on {count} devices ({how}) "
                                "vs 1 device", "ms", 1e3 * one, 1e3 * split, None, None,
                                {"devices": count, "members": members,
                                 "scaling": one / split}))
        return rows

    def motornet(self) -> list[Row]:
        if importlib.util.find_spec("motornet") is None:
            self.progress("motornet: not installed (pip install motornet, a test extra)")
            return []
        updates = self.sizes.race_updates
        theirs, ours = [], []
        for index in range(self.sizes.rounds):
            self.progress(f"motornet: round {index + 1}/{self.sizes.rounds}")
            threads = ["--threads", str(self.threads)] if self.threads else []
            theirs.append(_run_json([str(HERE / "motornet_race.py"), "motornet", "--updates",
                                     str(updates), *threads]))
            ours.append(_run_json([str(HERE / "motornet_race.py"), "ours", "--updates",
                                   str(updates), "--cache", str(self.fresh("cache"))]))
        step = [statistics.median(r["update_s"] for r in side) for side in (theirs, ours)]
        loop = [statistics.median(r["loop_s"] for r in side) for side in (theirs, ours)]
        return [
            Row("motornet", "reach-muscle-arm: one training step (batch 64, T = 100), "
                "MotorNet's loop vs the compiled step", "ms", 1e3 * step[0], 1e3 * step[1],
                f">= {RACE_TARGET:g}x", step[0] / step[1] >= RACE_TARGET),
            Row("motornet", f"{updates} updates: MotorNet's loop vs closedloop train "
                "(compile and recording included)", "s", loop[0], loop[1]),
        ]

    def ensemble(self) -> list[Row]:
        sizes = self.sizes
        if self.baseline_epoch_s is None:
            self.progress("ensemble: baseline epoch")
            epochs = min(sizes.di_epochs, 200)
            self.baseline_epoch_s = self.baseline("di-tanh-closed", epochs)["train_s"] / epochs
        members = ",".join(str(m) for m in sizes.ensemble_members)
        results = []
        for index in range(sizes.ensemble_rounds):
            self.progress(f"ensemble: round {index + 1}/{sizes.ensemble_rounds}")
            results.append(self.ours("ensemble", "--members", members, "--epochs",
                                     str(sizes.ensemble_epochs), "--json"))
        per = {m: statistics.median(r["rows"][i]["epoch_per_network_s"] for r in results)
               for i, m in enumerate(sizes.ensemble_members)}
        rows = []
        for i, count in enumerate(sizes.ensemble_members):
            compiled = [r["rows"][i]["compiled_epoch_per_network_s"] for r in results]
            rows.append(Row(
                "ensemble", f"ensemble of {count} (di-tanh-closed, CPU), per network and epoch "
                "with recording, vs baseline training epoch", "ms",
                1e3 * self.baseline_epoch_s, 1e3 * per[count], None, None,
                {"members": count, "speedup_vs_one_run": per[sizes.ensemble_members[0]]
                 / per[count] if sizes.ensemble_members[0] == 1 else None,
                 "compiled_epoch_per_network_ms": None if None in compiled
                 else 1e3 * statistics.median(compiled),
                 "compile_s": statistics.median(r["rows"][i]["compile_s"] for r in results)}))
        return rows

    def memory(self) -> list[Row]:
        sizes = self.sizes
        growth = {}
        for kind in ("lists", "writer"):
            self.progress(f"memory: {kind}")
            growth[kind] = self.ours("memory", "--kind", kind, "--epochs",
                                     str(sizes.memory_epochs), "--size",
                                     str(sizes.memory_size))["growth_mb"]
        return [Row("memory", f"resident-memory growth recording {sizes.memory_epochs} epochs "
                    f"of N = {sizes.memory_size}: lists (baseline) vs RunWriter", "MB",
                    growth["lists"], max(growth["writer"], 1e-3),
                    f"< {MEMORY_LIMIT_MB:g} MB", growth["writer"] < MEMORY_LIMIT_MB)]


# -- reporting ----------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(baseline_threads: int) -> dict[str, Any]:
    """Cores, CPU, load and the versions that matter."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model or platform.processor() or None,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            **{name: _version(name) for name in ("jax", "jaxlib", "torch", "numpy")},
            "baseline_torch_threads": baseline_threads or "torch default"}


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB":
        return f"+{value:.1f} MB"
    return f"{value:.2f} s" if unit == "s" else f"{value:.2f} ms"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    if row.unit == "MB":
        return f"{ratio:.1f}x less" if ratio >= 1 else f"{1 / ratio:.1f}x more"
    return f"{ratio:.2f}x"


def table(rows: Sequence[Row], info: dict[str, Any], quick: bool) -> str:
    """The results as a text table, with the machine."""
    header = ("benchmark", "baseline", "closedloop", "ratio", "target", "")
    cells = [header] + [(r.what, _value(r.baseline, r.unit), _value(r.ours, r.unit), _ratio(r),
                         r.target or "", "" if r.met is None else
                         ("met" if r.met else "NOT met")) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i])
                       for i in range(len(header))).rstrip() for c in cells]
    lines.insert(1, "-" * len(lines[0]))
    for row in rows:
        if row.benchmark != "ensemble":
            continue
        notes, parts = row.notes, []
        if notes.get("speedup_vs_one_run") is not None:
            parts.append(f"{notes['speedup_vs_one_run']:.2f}x the single run's speed")
        if notes.get("compiled_epoch_per_network_ms") is not None:
            parts.append(f"compiled training alone {notes['compiled_epoch_per_network_ms']:.2f}"
                         " ms per network")
        parts.append(f"compile {notes['compile_s']:.1f} s")
        lines.append(f"  ensemble of {notes['members']}: {', '.join(parts)}")
    def loads(key: str) -> str:
        load = info.get(key)
        return ", ".join(f"{x:.2f}" for x in load) if load else "?"

    lines += ["", f"machine: {info['cores']} cores ({info['cpu']}), load average "
              f"{loads('load_average_start')} at the start, {loads('load_average')} at the end "
              "(other processes make timings noisy); python "
              f"{info['python']}, jax {info['jax']} (jaxlib {info['jaxlib']}), torch "
              f"{info['torch']}, numpy {info['numpy']}; baseline torch threads "
              f"{info['baseline_torch_threads']}"]
    if quick:
        lines.append("--quick: smaller sizes than the targets are defined for; verdicts are "
                     "indicative only")
    return "\n".join(lines)


def run_benchmarks(names: Sequence[str], quick: bool = False, baseline_threads: int = 1,
                   progress: Callable[[str], None] | None = None) -> list[Row]:
    """Run the named benchmarks (in the order of :data:`BENCHMARKS`) and return their rows."""
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="closedloop-bench-") as folder:
        runner = Runner(sizes, baseline_threads, Path(folder), progress or (lambda _: None))
        rows: list[Row] = []
        for name in BENCHMARKS:
            if name in names:
                rows += getattr(runner, name.replace("-", "_"))()
    return rows


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s) {', '.join(unknown) or '-'}; "
                                         f"choose from {', '.join(BENCHMARKS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closedloop bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, about a minute (a smoke test)")
    parser.add_argument("--only", type=_names, default=list(BENCHMARKS),
                        help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--baseline-threads", type=int, default=1,
                        help="torch and BLAS threads of the baseline (default 1, measured "
                        "faster than torch's default for these small products on 2 cores; "
                        "0 = the libraries' defaults)")
    args = parser.parse_args(argv)
    if NEEDS_TORCH & set(args.only) and importlib.util.find_spec("torch") is None:
        print("error: the baseline needs PyTorch, the benchmark extra: "
              "pip install -e '.[bench]' (or run --only memory)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    try:
        rows = run_benchmarks(args.only, args.quick, args.baseline_threads,
                              lambda message: print(f"[bench] {message}", file=sys.stderr,
                                                    flush=True))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = machine(args.baseline_threads)
    info["wall_s"] = time.perf_counter() - started
    info["load_average_start"] = load_start
    if args.json:
        print(json.dumps({"quick": args.quick, "machine": info,
                          "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}))
    else:
        print(table(rows, info, args.quick))
        print(f"({info['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
