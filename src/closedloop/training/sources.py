"""Where initial weights and teachers come from: ``RUN@EPOCH``, ``gain:...`` and ``lqr``.

* ``RUN@EPOCH`` (``--init-from``, ``--teacher``): the parameters of run file RUN after EPOCH
  (an integer or ``last``; a teacher defaults to ``last``, initial weights to ``0``).
* ``gain:K`` (``--teacher``): a static gain u = K x; K is ``k1,k2`` for one control, rows
  separated by ``;`` for several.
* ``lqr`` or ``lqr:R`` (``--teacher``): u = -K x with K the infinite-horizon LQR gain of the
  plant for Q = I and R = R I (default R = 1).

Example
-------
>>> parse_run_reference("runs/closed.h5@12")
('runs/closed.h5', 12)
>>> parse_gain("gain:-0.5,-1")
[[-0.5, -1.0]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from closedloop.analysis.gains import lqr_gain
from closedloop.config import AgentConfig, agent_config
from closedloop.errors import ConfigError
from closedloop.runs.store import Teacher, load_run

if TYPE_CHECKING:
    from closedloop.core.plants import LinearPlant


def parse_run_reference(text: str, default_epoch: int | str = "last") -> tuple[str, int | str]:
    """Split ``RUN[@EPOCH]`` into the path and an epoch (int or ``"last"``)."""
    path, sep, epoch = text.rpartition("@")
    if not sep:
        return text, default_epoch
    if not path:
        raise ConfigError(f"'{text}' names no run file before '@'")
    if epoch == "last":
        return path, "last"
    try:
        value = int(epoch)
    except ValueError:
        raise ConfigError(f"'{text}': the epoch after '@' must be an integer or 'last'") from None
    if value < 0:
        raise ConfigError(f"'{text}': the epoch must be >= 0")
    return path, value


def parse_gain(text: str) -> list[list[float]]:
    """Parse ``gain:k1,k2[;k3,k4...]`` into the rows of K."""
    body = text.removeprefix("gain:")
    try:
        rows = [[float(v) for v in row.split(",")] for row in body.split(";") if row.strip()]
    except ValueError:
        raise ConfigError(f"'{text}': a gain is gain:k1,k2[;k3,k4...] with numbers") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise ConfigError(f"'{text}': a gain needs rows of equal length")
    if not all(np.isfinite(v) for row in rows for v in row):
        raise ConfigError(f"'{text}': gains must be finite")
    return rows


def load_initial_parameters(text: str) -> tuple[dict[str, np.ndarray], AgentConfig]:
    """Parameters (and the agent config that made them) from ``RUN@EPOCH`` (default @0)."""
    path, epoch = parse_run_reference(text, default_epoch=0)
    run = load_run(path)
    return run.parameters(epoch), run.config.agent


def load_teacher(text: str, plant: LinearPlant) -> Teacher:
    """A teacher from ``RUN[@EPOCH]``, ``gain:K`` or ``lqr[:R]`` for ``plant``."""
    if text.startswith("gain:"):
        gain = np.array(parse_gain(text))
        if gain.shape != (plant.n_inputs, plant.n_states):
            raise ConfigError(f"'{text}': K must be {plant.n_inputs} x {plant.n_states} for "
                              f"this plant, got {gain.shape[0]} x {gain.shape[1]}")
        return _static_teacher(text, gain)
    if text == "lqr" or text.startswith("lqr:"):
        weight = 1.0
        if text.startswith("lqr:"):
            try:
                weight = float(text[4:])
            except ValueError:
                raise ConfigError(f"'{text}': lqr:R needs a number R > 0") from None
            if not weight > 0:
                raise ConfigError(f"'{text}': lqr:R needs a number R > 0")
        gain = -lqr_gain(plant.A, plant.B, np.eye(plant.n_states),
                         weight * np.eye(plant.n_inputs))
        return _static_teacher(text, gain)
    path, epoch = parse_run_reference(text, default_epoch="last")
    run = load_run(path)
    parameters = run.parameters(epoch)
    source = f"{path}@{epoch if epoch != 'last' else int(run.snapshot_epochs[-1])}"
    return Teacher(source, run.config.agent.model_dump_json(), parameters)


def _static_teacher(source: str, gain: np.ndarray) -> Teacher:
    config = agent_config(kind="static_gain", gain=gain.tolist())
    return Teacher(source, config.model_dump_json(), {"K": gain})
