"""Shared fixtures: small configs that train in seconds."""

from __future__ import annotations

import pytest

from closedloop.config import RunConfig, load_preset

SMALL = ["agent.size=8", "task.batch_size=16", "task.steps=20", "recording.segment_epochs=4"]


def small_config(preset: str = "di-tanh-closed", epochs: int = 10, seed: int = 0,
                 extra: tuple[str, ...] = ()) -> RunConfig:
    """``preset`` shrunk to N = 8, batch 16, T = 20."""
    return load_preset(preset, [*SMALL, *extra], seed=seed, epochs=epochs)


@pytest.fixture
def tiny_config() -> RunConfig:
    return small_config()
