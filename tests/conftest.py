"""Shared fixtures: small configs that train in seconds (every test that trains uses these
shapes where it can: each new shape is a compilation)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from closedloop.analysis.claims import CLOSED, OPENED, Claim
from closedloop.config import RunConfig, load_preset
from closedloop.runs import Run

SMALL = ["agent.size=8", "task.batch_size=16", "task.steps=20", "recording.segment_epochs=4"]
SMALL_UNSIZED = [s for s in SMALL if not s.startswith("agent.size")]
"""SMALL for agent kinds without a size (``mlp``, ``static_gain``, ``overlaps``)."""
TINY_FLOAT64 = ["agent.size=6", "task.batch_size=3", "task.steps=8", "training.dtype=float64"]
"""Smaller still, in float64: for losses and gradients checked against NumPy loops and finite
differences (shared by tests/core, so each preset compiles once)."""


TOLERANCE = 1e-5
"""Relative agreement of a run trained with others and the same run trained alone, on every
epoch's train and test loss (float32 runs)."""


def max_relative_difference(a: Run, b: Run) -> float:
    """The largest relative difference of two runs' per-epoch train and test losses (the
    epochs where either is not finite must agree)."""
    worst = 0.0
    for name in ("train_loss", "test_loss"):
        x, y = a.metrics[name], b.metrics[name]
        finite = np.isfinite(y)
        assert np.array_equal(finite, np.isfinite(x)), name
        worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]) / np.abs(y[finite]))))
    return worst


def small_config(preset: str = "di-tanh-closed", epochs: int = 10, seed: int = 0,
                 extra: tuple[str, ...] = ()) -> RunConfig:
    """``preset`` shrunk to N = 8, batch 16, T = 20."""
    return load_preset(preset, [*SMALL, *extra], seed=seed, epochs=epochs)


@pytest.fixture
def tiny_config() -> RunConfig:
    return small_config()


@pytest.fixture(scope="module")
def one_blas_thread():
    """Small BLAS/LAPACK calls (NumPy's OpenBLAS) with two threads can stall for a scheduler
    quantum each on a loaded 2-core machine (~0.25 s for one 102 x 102 eig); one thread keeps
    a module fast and changes no result beyond round-off."""
    with threadpool_limits(limits=1):
        yield


def read_events(folder: Path) -> tuple[dict[str, dict[int, float]], dict[str, list[int]]]:
    """Every scalar (tag -> step -> value) and the steps of every image in the event files
    of ``folder``: TFRecords (length, its CRC, the serialized Event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, dict[int, float]] = {}
    images: dict[str, list[int]] = {}
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data = path.read_bytes()
        position = 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position:position + 8])
            event = Event.FromString(data[position + 12:position + 12 + length])
            position += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("image"):
                    assert value.image.encoded_image_string.startswith(b"\x89PNG")
                    images.setdefault(value.tag, []).append(event.step)
                elif value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars, images


class StudentLearns(Claim):
    """A claim as a user writes one, about a closed/open pair and shown in figure 1: its case
    names the runs a consumer laid out in its roles, so that a test sees them."""

    id = "student-learns"
    statement = "The open-loop student ends below its epoch-0 test loss."
    roles: ClassVar = {CLOSED: "the teacher", OPENED: "its student"}
    figure = "fig1"

    def judge(self, closed: Run, opened: Run):
        test = opened.metrics["test_loss"]
        return self.judgement("final test loss < epoch-0 test loss", {},
                              {"falls": bool(test[-1] < test[0])},
                              case=f"{closed.path.stem} taught {opened.path.stem}")
