"""closedloop's side of the benchmarks, each measurement in a fresh process.

A process starts as ``closedloop train`` does (one XLA CPU thread, the allocator setting, the
JAX compilation cache, here in a folder of the caller's choosing, normally an empty temporary
one so that compile times are real), measures one thing and prints one JSON object:

* ``profile PRESET``: the compile time of the training program (the first compiled chunk
  of epochs minus a steady one), the compiled epoch alone (training step and test rollout,
  no host-side recording) and the host's eig(P) + eig(W) of one epoch;
* ``tracking --epochs E``: ``closedloop.training.train`` on ``tracking-closed`` with all its
  recording, run twice in the process: the second run per epoch (the compiled program
  found), and compile = first - second;
* ``devices [PRESET] --counts 1,2 --epochs E [--set KEY=VALUE ...]``: a ``PRESET`` epoch
  with each training batch split over each count of devices (``training.devices``), timed
  as ``tracking``, and the compiled training alone;
* ``ensemble --members 1,8,32 --epochs E [--device gpu] [--set KEY=VALUE ...] [--rows FILE]``:
  ``train_ensemble`` of M members (seeds 0..M-1 of ``di-tanh-closed``, ``training.device``
  set as ``--set`` would), timed as ``tracking``, per network and epoch with recording, and
  the compiled training alone; without ``--json`` a table (``gpu.sh`` prints it on a GPU;
  ``--device cpu --members 1,2`` with small ``--set`` shapes is the dry run the tests use);
  ``--rows FILE`` appends each member count's result to FILE as one JSON line as soon as it
  is measured (what a process killed by a time limit has measured stays there);
* ``memory --kind lists|writer --epochs E --size N``: resident-memory growth while recording
  E synthetic epochs of an N-unit network (eig(P), eig(W) every epoch, parameter snapshots on
  the default schedule): kept in Python lists, as a baseline script does, or streamed to a
  run file by ``closedloop.runs.store.RunWriter``.

Example
-------
    python benchmarks/ours.py --cache "$(mktemp -d)" tracking --epochs 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _prepare(cache: str | None) -> None:
    """The command line's process settings, with the compilation cache in ``cache``."""
    if cache:
        os.environ["CLOSEDLOOP_JAX_CACHE"] = cache
    from closedloop.runtime import configure_cli

    configure_cli()


def _compile_and_steady(trainer: Any) -> dict[str, float]:
    """Time the first compiled chunk of ``trainer`` and two steady ones (its config must have
    at least 3 chunks of epochs; it is left 3 chunks on): compile = first - steady."""
    import jax

    chunk = trainer.program.chunk
    times = []
    for index in range(3):
        started = time.perf_counter()
        jax.block_until_ready(trainer.run_chunk(index * chunk))
        times.append(time.perf_counter() - started)
    steady = min(times[1:])
    return {"compile_s": max(times[0] - steady, 0.0), "compiled_epoch_s": steady / chunk,
            "chunk": chunk}


def _compiled_epoch(trainer: Any) -> float | None:
    """Seconds per epoch of the compiled training alone (no host-side recording): one chunk of
    an already compiled ``trainer``; None when its run is shorter than a chunk."""
    import jax

    chunk = trainer.program.chunk
    if trainer.configs[0].training.epochs < chunk:
        return None
    started = time.perf_counter()
    jax.block_until_ready(trainer.run_chunk(0))
    return (time.perf_counter() - started) / chunk


def _train_twice(configs: Sequence[Any]) -> tuple[float, float]:
    """Wall times of ``train_ensemble(configs)`` run twice in this process (run files in a
    temporary folder): the first compiles, the second finds the compiled program."""
    from closedloop.training import train_ensemble

    times = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as folder:
            outs = [Path(folder) / f"run{index}.h5" for index in range(len(configs))]
            started = time.perf_counter()
            train_ensemble(configs, outs)
            times.append(time.perf_counter() - started)
    return times[0], times[1]


def profile(preset: str) -> dict[str, Any]:
    """Compile time, compiled epoch and host spectra of one epoch of ``preset``."""
    import jax
    import numpy as np

    from closedloop.analysis.coupling import operating_point_spectra
    from closedloop.config import load_preset
    from closedloop.training import Trainer

    trainer = Trainer(load_preset(preset))
    result: dict[str, Any] = {"preset": preset, **_compile_and_steady(trainer)}
    _, records = trainer.run_chunk(3 * trainer.program.chunk)
    params = trainer.merged_params(jax.device_get(records["params"]))
    selected = {name: np.asarray(value[0]) for name, value in params.items()}
    operating_point_spectra(trainer.plant, trainer.agent, selected)  # compiles the matrices of P
    started = time.perf_counter()
    operating_point_spectra(trainer.plant, trainer.agent, selected)
    result["spectra_epoch_s"] = (time.perf_counter() - started) / trainer.program.chunk
    return result


def tracking(epochs: int) -> dict[str, Any]:
    """A tracking-closed epoch with recording: ``train`` run twice, the second run per epoch;
    compile = first - second."""
    from closedloop.config import load_preset

    config = load_preset("tracking-closed", epochs=epochs)
    first, second = _train_twice([config])
    return {"preset": "tracking-closed", "epochs": epochs, "first_run_s": first,
            "run_s": second, "epoch_s": second / epochs, "compile_s": max(first - second, 0.0)}


def devices(preset: str, counts: Sequence[int], epochs: int, overrides: Sequence[str] = (),
            members: int = 1) -> dict[str, Any]:
    """Per epoch of ``preset`` (with ``overrides``; ``members`` seeds trained together, spread
    by members where a count divides them, else each batch split) on each of ``counts``
    devices: ``train`` with recording (run twice, the second timed) and the compiled
    training alone, both for all members together."""
    from closedloop.config import load_preset
    from closedloop.training import Trainer

    rows = []
    for count in counts:
        configs = [load_preset(preset, [*overrides, f"training.devices={count}"], seed=seed,
                               epochs=epochs) for seed in range(members)]
        first, second = _train_twice(configs)
        compiled = _compiled_epoch(Trainer(configs))
        rows.append({"devices": count, "epoch_s": second / epochs, "compiled_epoch_s": compiled,
                     "compile_s": max(first - second, 0.0)})
    return {"preset": preset, "epochs": epochs, "members": members,
            "overrides": list(overrides), "rows": rows}


def ensemble(members: Sequence[int], epochs: int, device: str,
             preset: str = "di-tanh-closed", overrides: Sequence[str] = (),
             rows_file: str | None = None) -> dict[str, Any]:
    """Per network and epoch: ``train_ensemble`` of M members with recording (run twice: the
    second is timed, compile = first - second), and the compiled training alone; each row
    also appended to ``rows_file`` (a JSON line with the settings) once measured."""
    import jax

    from closedloop.config import load_preset
    from closedloop.training import Trainer

    rows = []
    device_kind = None
    for count in members:
        configs = [load_preset(preset, [*overrides, f"training.device={device}"], seed=seed,
                               epochs=epochs) for seed in range(count)]
        first, second = _train_twice(configs)
        trainer = Trainer(configs)
        device_kind = trainer.device.device_kind
        compiled = _compiled_epoch(trainer)
        del trainer
        per_network = second / (epochs * count)
        rows.append({"members": count, "run_s": second, "epoch_per_network_s": per_network,
                     "network_epochs_per_s": 1 / per_network,
                     "compiled_epoch_per_network_s": None if compiled is None
                     else compiled / count,
                     "compile_s": max(first - second, 0.0)})
        if rows_file:
            with open(rows_file, "a") as handle:
                handle.write(json.dumps({
                    "preset": preset, "epochs": epochs, "device": device,
                    "device_kind": device_kind, "overrides": list(overrides),
                    "jax_backend": jax.default_backend(), "row": rows[-1]}) + "\n")
            print(f"ensemble: {count} member(s) measured, {per_network * 1e3:.4f} ms per network "
                  f"and epoch with recording, compile {rows[-1]['compile_s']:.1f} s",
                  file=sys.stderr, flush=True)
    return {"preset": preset, "epochs": epochs, "device": device, "device_kind": device_kind,
            "overrides": list(overrides), "jax_backend": jax.default_backend(), "rows": rows}


def ensemble_table(result: dict[str, Any]) -> str:
    """The ensemble result as a text table."""
    settings = "".join(f", {o}" for o in result["overrides"])
    lines = [f"{result['preset']}{settings}, {result['epochs']} epochs, device "
             f"{result['device']} ({result['device_kind']})",
             f"{'members':>8} {'per network, with recording':>28} {'network-epochs/s':>17} "
             f"{'compiled training only':>23} {'compile':>8}"]
    for row in result["rows"]:
        compiled = row["compiled_epoch_per_network_s"]
        compiled_text = "-" if compiled is None else f"{compiled * 1e3:.3f} ms"
        lines.append(f"{row['members']:>8} {row['epoch_per_network_s'] * 1e3:>25.3f} ms "
                     f"{row['network_epochs_per_s']:>17.1f} {compiled_text:>23} "
                     f"{row['compile_s']:>7.1f}s")
    return "\n".join(lines)


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def memory(kind: str, epochs: int, size: int) -> dict[str, float]:
    """Resident-memory growth (MB) while recording ``epochs`` synthetic epochs of an
    N = ``size`` network: ``lists`` keeps the records, ``writer`` streams them to a run file
    (a segment and a checkpoint every ``recording.segment_epochs`` epochs)."""
    import numpy as np

    from closedloop.config import load_preset
    from closedloop.runs.store import CheckpointState, EpochRecord, RunWriter

    config = load_preset("di-tanh-closed", [f"agent.size={size}"], epochs=epochs)
    interval = config.recording.snapshot_interval(size)
    segment = config.recording.segment_epochs
    rng = np.random.default_rng(0)
    weights = {"W_in": rng.standard_normal((1, size)).astype(np.float32),
               "W": rng.standard_normal((size, size)).astype(np.float32),
               "W_out": rng.standard_normal((size, 1)).astype(np.float32)}
    start = peak = _rss_mb()
    kept: list[EpochRecord] = []
    with tempfile.TemporaryDirectory() as folder:
        writer = RunWriter(Path(folder) / "run.h5", config)
        if kind == "writer":
            writer.start(weights, None)
        for epoch in range(epochs + 1):
            record = EpochRecord(
                epoch=epoch, train_loss=1.0, test_loss=1.0, grad_norm=1.0, spectral_radius=0.9,
                coupled_eigenvalues=rng.standard_normal(size + 2) + 0j,
                recurrent_eigenvalues=rng.standard_normal(size) + 0j,
                gains=np.zeros((1, 2)),
                snapshot={k: v.copy() for k, v in weights.items()}
                if epoch % interval == 0 or epoch == epochs else None)
            if kind == "lists":
                kept.append(record)
            else:
                writer.append(record)
                if (epoch + 1) % segment == 0 or epoch == epochs:
                    writer.save(CheckpointState(epoch + 1, {
                        name: value.copy() for name, value in weights.items()}))
            peak = max(peak, _rss_mb())
        if kind == "writer":
            writer.finish("complete", None)
            peak = max(peak, _rss_mb())
    return {"kind": kind, "epochs": epochs, "size": size, "growth_mb": peak - start,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _members(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("members: a comma-separated list of positive counts")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", default=None,
                        help="compilation-cache folder (default: the user's, as the CLI)")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("profile")
    command.add_argument("preset", nargs="?", default="di-tanh-closed")
    command = commands.add_parser("tracking")
    command.add_argument("--epochs", type=int, default=200)
    command = commands.add_parser("devices")
    command.add_argument("preset", nargs="?", default="tracking-closed")
    command.add_argument("--counts", type=_members, default=[1, 2])
    command.add_argument("--epochs", type=int, default=100)
    command.add_argument("--members", type=int, default=1,
                         help="seeds trained together (spread by members over the devices)")
    command.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="a config override, as closedloop train's")
    command = commands.add_parser("ensemble")
    command.add_argument("--members", type=_members, default=[1, 8, 32])
    command.add_argument("--epochs", type=int, default=40)
    command.add_argument("--device", default="cpu", help="training.device (cpu, gpu, ...)")
    command.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="a config override, as closedloop train's")
    command.add_argument("--json", action="store_true")
    command.add_argument("--rows", default=None, metavar="FILE",
                         help="append each member count's result to FILE (a JSON line)")
    command = commands.add_parser("memory")
    command.add_argument("--kind", choices=("lists", "writer"), required=True)
    command.add_argument("--epochs", type=int, default=1000)
    command.add_argument("--size", type=int, default=1000)
    args = parser.parse_args(argv)
    _prepare(args.cache)
    if args.command == "profile":
        result = profile(args.preset)
    elif args.command == "tracking":
        result = tracking(args.epochs)
    elif args.command == "devices":
        result = devices(args.preset, args.counts, args.epochs, args.overrides, args.members)
    elif args.command == "ensemble":
        result = ensemble(args.members, args.epochs, args.device, overrides=args.overrides,
                          rows_file=args.rows)
        if not args.json:
            print(ensemble_table(result))
            return
    else:
        result = memory(args.kind, args.epochs, args.size)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
