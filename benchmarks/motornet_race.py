"""The race against MotorNet (issue: the muscle arm): MotorNet's own arm (``RigidTendonArm26``
with ``RigidTendonHillMuscle``, PyTorch) trained on ``reach-muscle-arm``'s task with the same
network, batch and optimiser, written as a MotorNet user writes a training loop and without
waste, against ``closedloop``'s compiled training of the preset.

    python benchmarks/motornet_race.py motornet [--updates N] [--batch B] [--threads T]
    python benchmarks/motornet_race.py ours [--updates N] [--batch B] [--cache DIR]

Each prints one JSON line: seconds per update (the median of the steady updates after two
warm-up ones) and the whole process's time for ``--updates`` updates. The task: the start
posture (67.5, 77.5) deg at rest, 8 targets on a 10 cm circle around the hand, shown from the
start; a go cue at 0.05-0.25 s, 20 % catch trials; 100 steps of 10 ms. The network: a tanh RNN
of 100 units (h' = tanh(W h + W_in y)), a linear readout with a bias starting at -5 (as
MotorNet's own policy) through a sigmoid to the six muscles;
it reads the muscles' normalised lengths and velocities, the hand from the start, the target
and the cue. The loss: the hand's squared distance to the start before the cue and to the
target after it, plus 0.01 x the muscle effort (sum_i (a_i F_max,i / sum_j F_max,j)^2 of the
activations after each step) and 0.001 x the mean squared hidden activity; Adam 1e-3.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEPS, SIZE, TARGETS, RADIUS = 100, 100, 8, 0.1
CUE, CATCH, EFFORT, HIDDEN, LR = (0.05, 0.25), 0.2, 0.01, 0.001, 1e-3
START = (math.radians(67.5), math.radians(77.5))


def motornet_race(updates: int, batch: int, threads: int | None = None) -> dict[str, Any]:
    """MotorNet's arm trained for ``updates`` updates (``threads``: torch's CPU threads)."""
    import torch
    from motornet.effector import RigidTendonArm26
    from motornet.muscle import RigidTendonHillMuscle

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    arm = RigidTendonArm26(muscle=RigidTendonHillMuscle(), timestep=0.01)
    optimal = torch.tensor([0.134, 0.140, 0.092, 0.093, 0.137, 0.127])
    cell = torch.nn.RNNCell(6 + 6 + 2 + 3, SIZE, nonlinearity="tanh", bias=False)
    readout = torch.nn.Linear(SIZE, 6)
    torch.nn.init.constant_(readout.bias, -5.0)       # the muscles start near rest
    optimizer = torch.optim.Adam([*cell.parameters(), *readout.parameters()], lr=LR)
    start = torch.tensor([[*START, 0.0, 0.0]]).repeat(batch, 1)
    force_share = arm.muscle.max_iso_force.reshape(1, 6) / arm.muscle.max_iso_force.sum()

    def update() -> float:
        angle = 2 * math.pi * torch.randint(0, TARGETS, (batch,)) / TARGETS
        target = RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        cue = torch.empty(batch).uniform_(*CUE)
        cue = torch.where(torch.rand(batch) < CATCH, torch.inf, cue)
        go = (torch.arange(STEPS)[None, :] * 0.01 >= cue[:, None] - 1e-9).float()
        arm.reset(options={"joint_state": start})
        origin = arm.states["fingertip"].detach()
        hidden = torch.zeros(batch, SIZE)
        loss = torch.zeros(())
        for t in range(STEPS):
            muscle = arm.states["muscle"]
            observed = torch.cat([muscle[:, 1] / optimal, muscle[:, 2] / (10 * optimal),
                                  arm.states["fingertip"] - origin, target, go[:, t:t + 1]],
                                 dim=1)
            hidden = cell(observed, hidden)
            command = readout(hidden)
            arm.step(torch.sigmoid(command))
            wanted = target * go[:, t:t + 1]
            activation = arm.states["muscle"][:, 0]
            loss = loss + ((arm.states["fingertip"] - origin - wanted) ** 2).sum(1).mean() \
                + EFFORT * ((activation * force_share) ** 2).sum(1).mean() \
                + HIDDEN * (hidden ** 2).mean()
        loss = loss / STEPS
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    times = []
    began = time.perf_counter()
    for _ in range(updates):
        started = time.perf_counter()
        loss = update()
        times.append(time.perf_counter() - started)
    return {"tool": "motornet", "batch": batch, "updates": updates, "final_loss": loss,
            "update_s": statistics.median(times[2:]) if updates > 2 else times[-1],
            "loop_s": time.perf_counter() - began, "torch_threads": torch.get_num_threads()}


def ours_race(updates: int, batch: int, cache: str | None = None) -> dict[str, Any]:
    """``reach-muscle-arm`` trained by closedloop for ``updates`` updates (compiled chunks,
    recording included in the whole loop's time; ``cache``: the compilation cache)."""
    sys.path.insert(0, str(HERE))
    from ours import _compile_and_steady, _prepare

    _prepare(cache)
    from closedloop.config import load_preset
    from closedloop.training import Trainer, train

    overrides = [f"task.batch_size={batch}"]
    steady = _compile_and_steady(Trainer(load_preset("reach-muscle-arm", overrides,
                                                     epochs=60)))   # three chunks
    config = load_preset("reach-muscle-arm", overrides, epochs=updates)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        result = train(config, Path(folder) / "race.h5")
        loop = time.perf_counter() - began
    return {"tool": "closedloop", "batch": batch, "updates": updates,
            "update_s": steady["compiled_epoch_s"], "compile_s": steady["compile_s"],
            "loop_s": loop, "status": result.status}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tool", choices=("motornet", "ours"))
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch's threads (motornet)")
    parser.add_argument("--cache", default=None, help="compilation-cache folder (ours)")
    args = parser.parse_args(argv)
    if args.tool == "motornet":
        result = motornet_race(args.updates, args.batch, args.threads)
    else:
        result = ours_race(args.updates, args.batch, args.cache)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
