"""How far the effective gains move with the states they are fitted on, and what fitting them
costs per epoch: the measurements behind ``evaluation.gain_fit_states`` (docs/science.md,
gain space).

Usage::

    .venv/bin/python scripts/gain-fit-spread.py spread RUN.h5 [RUN.h5 ...] \\
        [--epochs 150,1000] [--counts 10,32,128,1024] [--repeats 30]
    .venv/bin/python scripts/gain-fit-spread.py cost [--counts test_set,128,1024] [--device gpu]

``spread``: per run and epoch, the least-squares gains (science 5) of the run's snapshot,
replayed in float64, on resampled sets of initial states: ``uniform`` (independent draws,
as the test set is drawn) and ``sobol`` (scrambled Sobol' sets, the default), one set per
seed 0 .. repeats-1; each is compared with the gains on a 300 x 300 midpoint grid of
[-a, a]^2 (90,000 states: the population value to well under 0.1 %). Prints the rms and
the largest relative distance |k - k_grid| / |k_grid|, and the run's own 10-state test-set
estimate and the default set's estimate against the same reference.

``cost``: the compiled epoch of di-tanh-closed (N = 100, batch 100, T = 50) for each
``gain_fit_states``, chunks of 50 epochs, the options interleaved, min and median over
rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from closedloop.analysis.gains import effective_gains, sobol_states
from closedloop.analysis.replay import replay
from closedloop.config import EvaluationConfig, load_preset
from closedloop.runs.store import Run, load_run
from closedloop.training import Trainer

GRID_SIDE = 300


def fitted_gains(run: Run, epoch: int, x0: np.ndarray) -> np.ndarray:
    """The effective gains (first row) of ``run`` after ``epoch``, fitted on rollouts from
    ``x0`` (float64 replay, the first step dropped)."""
    traj = replay(run, epoch, x0=x0, steps=run.config.test_steps)
    return effective_gains(traj.states, traj.controls)[0]


def draw(sampling: str, count: int, state_range: float, seed: int) -> np.ndarray:
    if sampling == "sobol":
        return sobol_states(count, 2, state_range, seed)
    return np.random.default_rng(seed).uniform(-state_range, state_range, size=(count, 2))


def spread(paths: list[Path], epochs: list[int], counts: list[int], repeats: int) -> None:
    default = EvaluationConfig()
    for path in paths:
        run = load_run(path)
        state_range = run.config.evaluation.initial_state_range
        test_config = run.config.model_copy(update={
            "evaluation": run.config.evaluation.model_copy(update={
                "gain_fit_states": "test_set"})})
        test_states = np.asarray(Trainer(test_config).constants["test"].x0[0], np.float64)
        side = (np.arange(GRID_SIDE) + 0.5) / GRID_SIDE * 2 * state_range - state_range
        grid = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
        default_states = sobol_states(default.gain_fit_states, 2, state_range,
                                      default.gain_fit_seed)
        for epoch in epochs:
            epoch = run.last_epoch if epoch < 0 else epoch
            reference = fitted_gains(run, epoch, grid)
            scale = np.linalg.norm(reference)

            def distance(gains: np.ndarray, reference=reference, scale=scale) -> float:
                return float(np.linalg.norm(gains - reference) / scale)

            test = fitted_gains(run, epoch, test_states)
            chosen = fitted_gains(run, epoch, default_states)
            print(f"{path.name} epoch {epoch}: k on the {GRID_SIDE}x{GRID_SIDE} grid "
                  f"{np.round(reference, 4).tolist()}; on the {len(test_states)} test states "
                  f"{np.round(test, 4).tolist()} ({distance(test):.1%} away); on the default "
                  f"{default.gain_fit_states} Sobol' states {np.round(chosen, 4).tolist()} "
                  f"({distance(chosen):.2%} away)")
            print("| states | uniform: rms | uniform: largest | Sobol': rms | Sobol': largest |")
            print("|---|---|---|---|---|")
            for count in counts:
                row = [f"| {count}"]
                for sampling in ("uniform", "sobol"):
                    far = [distance(fitted_gains(run, epoch, draw(sampling, count,
                                                                  state_range, seed)))
                           for seed in range(repeats)]
                    row += [f"{np.sqrt(np.mean(np.square(far))):.2%}", f"{max(far):.2%}"]
                print(" | ".join(row) + " |", flush=True)


def cost(counts: list[str], rounds: int, device: str) -> None:
    trainers = {}
    for count in counts:
        config = load_preset("di-tanh-closed", [f"evaluation.gain_fit_states={count}",
                                                "recording.segment_epochs=50",
                                                f"training.device={device}"], epochs=10**6)
        trainers[count] = Trainer(config)
        jax.block_until_ready(trainers[count].run_chunk(1))       # compile
    times: dict[str, list[float]] = {count: [] for count in counts}
    for index in range(rounds):
        for count, trainer in trainers.items():
            start = time.perf_counter()
            jax.block_until_ready(trainer.run_chunk(51 + 50 * index))
            times[count].append((time.perf_counter() - start) / 50 * 1e3)
    base = min(times[counts[0]])
    print(f"| gain_fit_states | ms per compiled epoch (min of {rounds}) | median | "
          f"vs {counts[0]} |")
    print("|---|---|---|---|")
    for count in counts:
        fastest = min(times[count])
        print(f"| {count} | {fastest:.2f} | {np.median(times[count]):.2f} | "
              f"x{fastest / base:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("spread", help="gains over resampled state sets")
    measure.add_argument("runs", nargs="+", type=Path)
    measure.add_argument("--epochs", default="150,-1", help="epochs (-1: the last)")
    measure.add_argument("--counts", default="10,32,64,128,256,1024")
    measure.add_argument("--repeats", type=int, default=30)
    timing = commands.add_parser("cost", help="compiled epoch time by gain_fit_states")
    timing.add_argument("--counts", default="test_set,64,128,256,1024")
    timing.add_argument("--rounds", type=int, default=10)
    timing.add_argument("--device", default="cpu", help="training.device (cpu, gpu, ...)")
    args = parser.parse_args()
    if args.command == "spread":
        spread(args.runs, [int(e) for e in args.epochs.split(",")],
               [int(c) for c in args.counts.split(",")], args.repeats)
    else:
        cost(args.counts.split(","), args.rounds, args.device)


if __name__ == "__main__":
    main()
