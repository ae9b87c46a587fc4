"""The GRU, vanilla and MLP agents and registered agent kinds, checked against independent
truths: the cells' equations written here in NumPy (column vectors, the maths' layout),
``torch.nn.GRUCell``, finite differences and a hand-written closed loop."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import Field

import closedloop
from closedloop.analysis.coupling import coupled_jacobian
from closedloop.config import agent_config, build_config, config_from_json, load_preset
from closedloop.core.agents import (
    GRUAgent,
    MLPAgent,
    NetworkConfig,
    RNNAgent,
    build_agent,
    register_agent,
)
from closedloop.core.plants import double_integrator
from closedloop.core.rollout import rollout
from closedloop.errors import ConfigError, ShapeError
from closedloop.training.trainer import Trainer

GATES = ("r", "z", "n")


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def random_gru(rng: np.random.Generator, n_in: int, size: int, n_out: int, bias: bool
               ) -> dict[str, np.ndarray]:
    """Maths-layout GRU weights (PyTorch's names): W_i* (N x n_in), W_h* (N x N),
    W_out (n_out x N), biases b_i*, b_h* (N)."""
    maths = {f"W_i{g}": rng.normal(size=(size, n_in)) for g in GATES}
    maths.update({f"W_h{g}": rng.normal(size=(size, size)) / np.sqrt(size) for g in GATES})
    maths["W_out"] = rng.normal(size=(n_out, size))
    if bias:
        maths.update({f"b_{s}{g}": rng.normal(size=size) for s in "ih" for g in GATES})
    return maths


def gru_rows(maths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The documented mapping to the agent's row layout (y for PyTorch's i, transposes)."""
    rows = {}
    for name, value in maths.items():
        name = name.replace("_i", "_y")
        rows[name] = value.T if value.ndim == 2 else value
    return rows


def gru_numpy(maths: dict[str, np.ndarray], h: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One GRU step for one column vector h (N,) reading y (n_in,), PyTorch's equations."""
    def bias(name: str) -> np.ndarray | float:
        return maths.get(name, 0.0)

    r = sigmoid(maths["W_ir"] @ y + bias("b_ir") + maths["W_hr"] @ h + bias("b_hr"))
    z = sigmoid(maths["W_iz"] @ y + bias("b_iz") + maths["W_hz"] @ h + bias("b_hz"))
    n = np.tanh(maths["W_in"] @ y + bias("b_in") + r * (maths["W_hn"] @ h + bias("b_hn")))
    return (1.0 - z) * n + z * h


@pytest.mark.parametrize("bias", [False, True])
def test_gru_step_is_the_gru_equations(bias):
    rng = np.random.default_rng(1)
    n_in, size, n_out, batch = 3, 5, 2, 4
    maths = random_gru(rng, n_in, size, n_out, bias)
    agent = GRUAgent(n_inputs=n_in, n_outputs=n_out, size=size, bias=bias)
    params = agent.to_params(gru_rows(maths), jnp.float64)
    h, y = rng.normal(size=(batch, size)), rng.normal(size=(batch, n_in))
    h_next, u = agent.step(agent.prepare(params), jnp.asarray(h), jnp.asarray(y))
    expected = np.stack([gru_numpy(maths, h[b], y[b]) for b in range(batch)])
    np.testing.assert_allclose(np.asarray(h_next), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(u), expected @ maths["W_out"].T, rtol=1e-12,
                               atol=1e-12)
    names = set(params)
    assert ({"b_yr", "b_hn"} <= names) == bias and "b_out" not in names


@pytest.mark.parametrize("bias", [False, True])
def test_gru_step_equals_torch_grucell(bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    n_in, size, batch = 2, 6, 3
    maths = random_gru(rng, n_in, size, 1, bias)
    cell = torch.nn.GRUCell(n_in, size, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(np.concatenate([maths[f"W_i{g}"]
                                                              for g in GATES])))
        cell.weight_hh.copy_(torch.from_numpy(np.concatenate([maths[f"W_h{g}"]
                                                              for g in GATES])))
        if bias:
            cell.bias_ih.copy_(torch.from_numpy(np.concatenate([maths[f"b_i{g}"]
                                                                for g in GATES])))
            cell.bias_hh.copy_(torch.from_numpy(np.concatenate([maths[f"b_h{g}"]
                                                                for g in GATES])))
    h, y = rng.normal(size=(batch, size)), rng.normal(size=(batch, n_in))
    with torch.no_grad():
        expected = cell(torch.from_numpy(y), torch.from_numpy(h)).numpy()
    agent = GRUAgent(n_inputs=n_in, n_outputs=1, size=size, bias=bias)
    params = agent.to_params(gru_rows(maths), jnp.float64)
    h_next, _ = agent.step(agent.prepare(params), jnp.asarray(h), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(h_next), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
def test_gru_recurrent_matrix_is_the_finite_difference_jacobian(bias):
    rng = np.random.default_rng(3)
    n_in, size = 2, 4
    members = [random_gru(rng, n_in, size, 1, bias) for _ in range(3)]
    agent = GRUAgent(n_inputs=n_in, n_outputs=1, size=size, bias=bias)
    stacked = {k: np.stack([gru_rows(m)[k] for m in members]) for k in gru_rows(members[0])}
    J = agent.recurrent_matrix(stacked)
    assert J.shape == (3, size, size) and J.dtype == np.float64
    eps, y0 = 1e-6, np.zeros(n_in)
    for maths, jacobian in zip(members, J, strict=True):
        expected = np.empty((size, size))
        for j in range(size):
            step = np.zeros(size)
            step[j] = eps
            expected[:, j] = (gru_numpy(maths, step, y0) - gru_numpy(maths, -step, y0)) / (2 * eps)
        np.testing.assert_allclose(jacobian, expected, atol=1e-8)
    single = {k: v[0] for k, v in stacked.items()}
    np.testing.assert_allclose(agent.recurrent_matrix(single), J[0], atol=1e-14)
    with pytest.raises(ShapeError, match="no closed-form linearisation"):
        agent.linearisation(single)


def test_gru_default_init_is_pytorchs():
    agent = GRUAgent(n_inputs=2, n_outputs=1, size=16, bias=True)
    params = agent.init_params(jax.random.key(0), jnp.float64)
    bound = 1 / np.sqrt(16)
    for name, value in params.items():
        value = np.asarray(value)
        if name != "W_out":
            assert np.abs(value).max() <= bound and np.abs(value).max() > 0.5 * bound, name
    assert abs(np.asarray(params["W_out"]).std() - bound) < 0.5 * bound


def test_vanilla_is_the_elman_rnn():
    rng = np.random.default_rng(4)
    n_in, size, n_out = 2, 5, 1
    config = agent_config(kind="vanilla", size=size, bias=True, output_bias=True)
    agent = build_agent(config, n_in, n_out)
    assert isinstance(agent, RNNAgent) and agent.alpha == 1.0
    W, W_in = rng.normal(size=(size, size)), rng.normal(size=(size, n_in))
    W_out, b, b_out = rng.normal(size=(n_out, size)), rng.normal(size=size), rng.normal(size=1)
    params = agent.to_params({"W": W.T, "W_in": W_in.T, "W_out": W_out.T, "b": b,
                              "b_out": b_out}, jnp.float64)
    h, y = rng.normal(size=size), rng.normal(size=n_in)
    h_next, u = agent.step(agent.prepare(params), jnp.asarray(h[None]), jnp.asarray(y[None]))
    expected = np.tanh(W @ h + W_in @ y + b)
    np.testing.assert_allclose(np.asarray(h_next[0]), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(u[0]), W_out @ expected + b_out, rtol=1e-12)
    assert set(build_agent(agent_config(kind="vanilla", size=3), 1, 1).parameter_shapes()) == {
        "W_in", "W", "W_out"}
    with pytest.raises(ConfigError, match=r"unknown key 'agent\.dt'"):   # discrete time
        load_preset("di-tanh-closed", ["agent.kind=vanilla", "agent.dt=0.5"])


def mlp_numpy(maths: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray) -> np.ndarray:
    """u = W_L tanh(... tanh(W_0 y + b_0) ...) + b_L for one column vector y."""
    a = y
    for W, b in maths[:-1]:
        a = np.tanh(W @ a + b)
    W, b = maths[-1]
    return W @ a + b


def mlp_jacobian_numpy(maths: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray
                       ) -> np.ndarray:
    """dMLP/dy by the chain rule."""
    a, jacobian = y, np.eye(y.size)
    for W, b in maths[:-1]:
        pre = W @ a + b
        a = np.tanh(pre)
        jacobian = (1 - a**2)[:, None] * (W @ jacobian)
    return maths[-1][0] @ jacobian


def random_mlp(rng: np.random.Generator) -> tuple[MLPAgent, dict, list]:
    agent = build_agent(agent_config(kind="mlp", hidden_sizes=[5, 3], bias=True,
                                     output_bias=True), 1, 1)
    widths = (1, 5, 3, 1)
    maths = [(rng.normal(size=(o, i)) / np.sqrt(i), 0.3 * rng.normal(size=o))
             for i, o in itertools.pairwise(widths)]
    rows = {"W0": maths[0][0].T, "b0": maths[0][1], "W1": maths[1][0].T, "b1": maths[1][1],
            "W_out": maths[2][0].T, "b_out": maths[2][1]}
    return agent, agent.to_params(rows, jnp.float64), maths


def test_mlp_closed_loop_is_the_hand_written_loop():
    rng = np.random.default_rng(5)
    agent, params, maths = random_mlp(rng)
    assert isinstance(agent, MLPAgent) and agent.size == 1      # the command it holds
    plant = double_integrator()
    A, B, C = plant.A, plant.B, plant.C
    x0, steps = rng.uniform(-1, 1, size=(3, 2)), 6
    traj = rollout(plant, agent, params, x0=jnp.asarray(x0), steps=steps,
                   zero_first_control=False)
    for b in range(3):
        x, states, controls = x0[b], [x0[b]], []
        for _ in range(steps):
            u = mlp_numpy(maths, C @ x)
            x = A @ x + B @ u
            states.append(x)
            controls.append(u)
        np.testing.assert_allclose(np.asarray(traj.states[b]), np.array(states), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(np.asarray(traj.controls[b]), np.array(controls),
                                   rtol=1e-10, atol=1e-12)


def test_mlp_coupled_jacobian_has_the_x_loops_eigenvalues():
    rng = np.random.default_rng(6)
    agent, params, maths = random_mlp(rng)
    plant = double_integrator()
    A, B, C = plant.A, plant.B, plant.C
    J = np.asarray(coupled_jacobian(plant, agent, params, jnp.zeros(2), jnp.zeros(1)))
    assert J.shape == (3, 3)
    loop = A + B @ mlp_jacobian_numpy(maths, np.zeros(1)) @ C
    expected = np.concatenate([np.linalg.eigvals(loop), [0.0]])
    found = np.linalg.eigvals(J)
    for value in expected:
        distances = np.abs(found - value)
        assert distances.min() < 1e-9, (found, expected)
        found = np.delete(found, distances.argmin())
    np.testing.assert_array_equal(agent.recurrent_matrix({"W_out": np.zeros((4, 3, 1))}),
                                  np.zeros((4, 1, 1)))


def test_mlp_default_init_scales_by_fan_in():
    agent = MLPAgent(n_inputs=400, n_outputs=1, hidden_sizes=(900,), bias=True)
    params = {k: np.asarray(v) for k, v in agent.init_params(jax.random.key(1),
                                                             jnp.float64).items()}
    assert abs(params["W0"].std() * np.sqrt(400) - 1) < 0.02
    assert abs(params["W_out"].std() * np.sqrt(900) - 1) < 0.2
    assert not params["b0"].any()
    with pytest.raises(ShapeError, match="size must be n_outputs"):
        MLPAgent(n_inputs=1, n_outputs=2, size=3)


def test_each_kind_validates_its_own_fields():
    for agent, words in (({"kind": "gru", "hidden_sizes": [8]}, "'agent.hidden_sizes'"),
                         ({"kind": "rnn", "params": {"x": 1}}, "'agent.params'"),
                         ({"kind": "gru", "size": 3, "dt": 0.5}, "'agent.dt'"),
                         ({"kind": "mlp", "size": 3}, "'agent.size'")):
        with pytest.raises(ConfigError, match=f"unknown key {words} \\(allowed: kind, "):
            build_config({"agent": agent})
    with pytest.raises(ValueError, match="at most 8"):
        agent_config(kind="mlp", hidden_sizes=[4] * 9)
    with pytest.raises(ValueError, match=r"agent\.init\.W2: unknown parameter.*W0, W1, b0"):
        agent_config(kind="mlp", hidden_sizes=[4, 4], init={"W2": {"gain": 2.0}})
    with pytest.raises(ValueError, match=r"agent\.trainable\.W: unknown parameter.*W_yr"):
        agent_config(kind="gru", trainable={"W": False})
    with pytest.raises(ConfigError, match=r"agent\.rank must be <= agent\.size"):
        build_config({"agent": {"kind": "lowrank", "size": 4, "rank": 9}})
    agent = build_agent(agent_config(kind="gru", size=3, trainable={"W_hn": False}), 1, 1)
    assert not agent.is_trainable("W_hn") and agent.is_trainable("W_out")
    # a config of any kind reads back from JSON, alone and inside a run's config
    for kind in ("rnn", "lowrank", "overlaps", "gru", "mlp", "vanilla", "static_gain"):
        config = agent_config(kind=kind)
        assert agent_config(json.loads(config.model_dump_json())) == config
        run = build_config({"agent": {"kind": kind}})
        assert config_from_json(run.to_json()) == run and run.agent == config


def test_switching_the_kind_by_override_keeps_the_fields_it_shares():
    """``--set agent.kind=...`` on a preset of another kind: the preset's fields the new kind
    lacks go, fields set on the command line stay (and are refused if it lacks them)."""
    preset = load_preset("di-tanh-closed")
    mlp = load_preset("di-tanh-closed", ["agent.kind=mlp", "agent.init={}",
                                         "agent.trainable={}"]).agent
    assert (type(mlp).__name__, mlp.activation, mlp.hidden_sizes) == ("MLPConfig", "tanh",
                                                                       [64, 64])
    gru = load_preset("di-tanh-closed", ["agent.size=12", "agent.kind=gru", "agent.init={}",
                                         "agent.trainable={}"]).agent
    assert gru.size == 12 and not hasattr(gru, "dt")
    vanilla = load_preset("di-tanh-closed", ["agent.kind=vanilla"]).agent
    assert vanilla.init == preset.agent.init           # the names fit: kept
    with pytest.raises(ConfigError, match=r"unknown key 'agent\.size'"):
        load_preset("di-tanh-closed", ["agent.kind=mlp", "agent.size=4", "agent.init={}",
                                       "agent.trainable={}"])


SMALL = ["agent.size=8", "agent.init={}", "agent.trainable={}", "task.batch_size=16",
         "task.steps=20", "recording.segment_epochs=4"]


@pytest.mark.parametrize("kind, extra", [("gru", ["agent.bias=true"]), ("vanilla", []),
                                         ("mlp", ["agent.hidden_sizes=[8, 8]"])])
def test_every_new_kind_trains(kind, extra):
    small = [s for s in SMALL if kind != "mlp" or s != "agent.size=8"]   # an MLP has no size
    config = load_preset("di-tanh-closed", [f"agent.kind={kind}", *small, *extra], epochs=4)
    trainer = Trainer(config)
    losses = []
    for epoch in range(1, 4):
        loss, norm = trainer.train_step(trainer.draw_batch(epoch=epoch))
        assert np.isfinite(loss).all() and np.isfinite(norm).all() and norm[0] > 0
        losses.append(loss[0])
    record = trainer.evaluate()[0]     # what every epoch records: spectra included
    assert np.isfinite(record["test_loss"]) and np.isfinite(record["spectral_radius"])
    assert record["recurrent_eigenvalues"].shape == (trainer.agent.size,)


def test_a_gru_run_completes(tmp_path):
    config = load_preset("di-tanh-closed", ["agent.kind=gru", *SMALL], epochs=4)
    result = closedloop.train(config, tmp_path / "x.h5")
    assert result.status == "complete"
    assert closedloop.load_run(tmp_path / "x.h5").config.agent.kind == "gru"


@dataclass(frozen=True)
class ScaledRNN(RNNAgent):
    """A registered kind: an RNN whose readout is scaled."""

    readout_scale: float = 1.0

    def output(self, prepared, hidden):
        return self.readout_scale * super().output(prepared, hidden)


def test_registered_and_unknown_agent_kinds():
    register_agent("test-agent", ScaledRNN)
    config = agent_config(kind="test-agent", size=4, params={"readout_scale": 2.0, "tau": 2.0},
                          trainable={"W": False})
    agent = build_agent(config, 1, 1)
    assert isinstance(agent, ScaledRNN)
    assert (agent.size, agent.readout_scale, agent.alpha) == (4, 2.0, 0.5)
    assert not agent.is_trainable("W")
    params = agent.to_params({"W_in": [[1.0] * 4], "W": np.zeros((4, 4)),
                              "W_out": np.ones((4, 1))}, jnp.float64)
    assert float(agent.output(agent.prepare(params), jnp.ones((1, 4)))[0, 0]) == 8.0
    with pytest.raises(ConfigError, match=r"cannot be built from agent\.params"):
        build_agent(agent_config(kind="test-agent", size=4, params={"nope": 1}), 1, 1)
    with pytest.raises(ConfigError, match=r"'agent\.kind'.*'no-such-agent'.*gru"):
        build_agent(agent_config(kind="no-such-agent"), 1, 1)
    with pytest.raises(ConfigError, match=r"agent\.kind"):
        load_preset("di-tanh-closed", ["agent.kind=_bad"])


class LeakyConfig(NetworkConfig):
    """A user kind's own config: the network fields and a leak."""

    kind: str = "test-leaky"
    leak: float = Field(0.5, gt=0, le=1)


@dataclass(frozen=True)
class LeakyRNN(RNNAgent):
    """A user kind in one class: an RNN whose alpha is its ``leak``."""

    leak: float = 0.5
    config_class: ClassVar[type] = LeakyConfig

    @property
    def alpha(self) -> float:
        return self.leak


def test_a_user_kind_brings_its_own_config(tmp_path):
    register_agent("test-leaky", LeakyRNN)
    config = load_preset("di-tanh-closed", ["agent.kind=test-leaky", "agent.leak=0.25",
                                            *SMALL], epochs=2)
    assert type(config.agent) is LeakyConfig and config.agent.size == 8
    agent = build_agent(config.agent, 1, 1)
    assert isinstance(agent, LeakyRNN) and agent.alpha == 0.25
    # h' = h + leak (tanh(W h + W_in y) - h), by hand
    params = agent.init_params(jax.random.key(3), jnp.float64)
    h, y = np.full((1, 8), 0.3), np.ones((1, 1))
    expected = h + 0.25 * (np.tanh(h @ np.asarray(params["W"]) + y @ np.asarray(params["W_in"]))
                           - h)
    np.testing.assert_allclose(agent.step(params, jnp.asarray(h), jnp.asarray(y))[0], expected,
                               rtol=1e-12)
    with pytest.raises(ConfigError, match=r"'agent\.leak': 2\.0"):
        load_preset("di-tanh-closed", ["agent.kind=test-leaky", "agent.leak=2.0"])
    with pytest.raises(ConfigError, match=r"unknown key 'agent\.dt'"):
        load_preset("di-tanh-closed", ["agent.kind=test-leaky", "agent.dt=0.5"])
    result = closedloop.train(config, tmp_path / "leaky.h5")
    assert result.status == "complete"
    assert closedloop.load_run(tmp_path / "leaky.h5").config.agent == config.agent
