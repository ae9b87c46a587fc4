"""Presets against science 1.5's table, overrides, and config errors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.config import load_preset, parse_override, preset_names
from closedloop.core.agents import build_agent
from closedloop.errors import ConfigError

# science 1.5: trained, optimiser, lr, batch, T, epochs, clip; science 1.4/2: loss and mode
SPEC_TABLE = {
    "di-tanh-closed": ({"W_in", "W", "W_out"}, "sgd", 1e-2, 100, 50, 1000, 1.0, "closed"),
    "di-tanh-open": ({"W_in", "W", "W_out"}, "sgd", 1e-2, 100, 50, 1000, 1.0,
                     "open_white_noise"),
    "di-lowrank-closed": ({"z", "u", "v"}, "sgd", 1e-2, 100, 50, 1000, 1.0, "closed"),
    "tracking-closed": ({"W", "W_out"}, "adam", 1e-3, 100, 300, 10000, None, "closed"),
    "tracking-open": ({"W_in", "W", "W_out"}, "adam", 1e-3, 100, 300, 10000, None,
                      "open_teacher_plant"),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_paper_presets_follow_spec_table(name):
    trained, optimizer, lr, batch, steps, epochs, clip, mode = SPEC_TABLE[name]
    config = load_preset(name)
    t = config.training
    assert (t.optimizer, t.lr, config.task.batch_size, config.task.steps, t.epochs,
            t.clip_norm, t.mode) == (optimizer, lr, batch, steps, epochs, clip, mode)
    agent = build_agent(config.agent, 1 if name.startswith("di") else 4,
                        1 if name.startswith("di") else 2)
    params = agent.init_params(jax.random.key(0))
    assert {k for k in params if agent.is_trainable(k)} == trained
    assert config.agent.size == 100
    assert t.initial_epoch_no_update == name.startswith("di-tanh")


def test_paper_initialisation_scales():
    """science 1.2: std 1/N (not 1/sqrt(N)) for the tanh network's input and output weights."""
    n = 100
    keys = jax.random.split(jax.random.key(0), 3)
    tanh = {k: np.asarray(v) for k, v in build_agent(
        load_preset("di-tanh-closed").agent, 1, 1).init_params(keys[0]).items()}
    assert tanh["W_in"].std(ddof=1) == pytest.approx(1 / n, rel=0.2)
    assert tanh["W_out"].std(ddof=1) == pytest.approx(1 / n, rel=0.2)
    assert tanh["W"].std(ddof=1) == pytest.approx(0.1 / math.sqrt(n), rel=0.05)
    tracking = {k: np.asarray(v) for k, v in build_agent(
        load_preset("tracking-closed").agent, 4, 2).init_params(keys[1]).items()}
    bound = 1 / math.sqrt(n)
    assert np.abs(tracking["W_in"]).max() <= bound
    assert tracking["W_in"].std(ddof=1) == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert tracking["W"].std(ddof=1) == pytest.approx(0.2 / math.sqrt(n), rel=0.05)
    lowrank = {k: np.asarray(v) for k, v in build_agent(
        load_preset("di-lowrank-closed").agent, 1, 1).init_params(keys[2]).items()}
    assert np.abs(lowrank["m"]).max() <= bound
    assert lowrank["u"].shape == (n, 1)


def test_prescribed_overlap():
    config = load_preset("di-lowrank-closed", ["agent.prescribed_overlap=-0.05"])
    params = build_agent(config.agent, 1, 1).init_params(jax.random.key(1), jnp.float64)
    m, z = np.asarray(params["m"][:, 0]), np.asarray(params["z"][0])
    assert float(z @ m) == pytest.approx(-0.05, rel=1e-12)
    parallel = (z @ m) / (m @ m) * m
    assert np.linalg.norm(z - parallel) == pytest.approx(0.1 * np.linalg.norm(parallel))


def test_every_preset_validates():
    for name in preset_names():
        assert load_preset(name).preset == name


@pytest.mark.parametrize(("text", "expected"), [
    ("training.lr=1e-3", (["training", "lr"], 0.001)),
    ("training.clip_norm=null", (["training", "clip_norm"], None)),
    ("agent.trainable.W=false", (["agent", "trainable", "W"], False)),
    ("task.frequencies=[[0.1], [0.2]]", (["task", "frequencies"], [[0.1], [0.2]])),
    ("seed=7", (["seed"], 7)),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_applies_and_names_bad_keys():
    config = load_preset("tracking-closed", ["agent.init.W.gain=0.5", "training.epochs=3"])
    assert config.agent.init["W"].gain == 0.5 and config.training.epochs == 3
    with pytest.raises(ConfigError, match=r"unknown key 'agent.init.W.gian'.*gain"):
        load_preset("tracking-closed", ["agent.init.W.gian=0.5"])
    with pytest.raises(ConfigError, match=r"agent\.init\.Q: unknown parameter"):
        load_preset("tracking-closed", ["agent.init.Q.gain=0.5"])
    with pytest.raises(ConfigError, match=r"'training.lr'.*greater than 0"):
        load_preset("di-tanh-closed", ["training.lr=0"])
    with pytest.raises(ConfigError, match=r"'plant\.order\.x': 'plant\.order' is not a section"):
        load_preset("di-tanh-closed", ["plant.order.x=1"])


def test_gain_fit_settings_parse_and_bad_ones_name_the_key():
    """``evaluation.gain_fit_states``: a count or ``test_set``; the range defaults to the test
    set's; anything else is refused naming the key and what is allowed."""
    default = load_preset("di-tanh-closed").evaluation
    assert isinstance(default.gain_fit_states, int) and not default.gains_on_test_set
    assert default.gain_fit_range == default.initial_state_range
    on_test_set = load_preset("di-tanh-closed", ["evaluation.gain_fit_states=test_set"])
    assert on_test_set.evaluation.gains_on_test_set
    widened = load_preset("di-tanh-closed", ["evaluation.gain_fit_states=512",
                                             "evaluation.gain_fit_state_range=2.5",
                                             "evaluation.gain_fit_sampling=uniform"])
    assert (widened.evaluation.gain_fit_states, widened.evaluation.gain_fit_range) == (512, 2.5)
    pendulum = load_preset("pendulum-upright-closed").evaluation   # a narrower test set
    assert pendulum.gain_fit_range == pendulum.initial_state_range != default.gain_fit_range
    for bad in ("0", "-3", "test", "true", "1.5", "10000000", "[1]", "null"):
        with pytest.raises(ConfigError, match=r"'evaluation\.gain_fit_states'.*test_set"):
            load_preset("di-tanh-closed", [f"evaluation.gain_fit_states={bad}"])
    with pytest.raises(ConfigError, match=r"'evaluation\.gain_fit_sampling'.*sobol"):
        load_preset("di-tanh-closed", ["evaluation.gain_fit_sampling=grid"])
    with pytest.raises(ConfigError, match=r"'evaluation\.gain_fit_state_range'"):
        load_preset("di-tanh-closed", ["evaluation.gain_fit_state_range=-1"])
