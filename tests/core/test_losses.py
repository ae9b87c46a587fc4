"""The training losses of the paper presets against hand-written NumPy rollouts and costs
(science 1.3, 1.4, 2, 6), through the trainer (the loss training differentiates)."""

import numpy as np
import pytest

from closedloop.config import RunConfig, load_preset
from closedloop.core.agents import build_agent
from closedloop.core.plants import plant_from_config
from closedloop.runs.store import Teacher
from closedloop.training import Trainer
from tests.conftest import TINY_FLOAT64

DI_A = np.array([[1.0, 1.0], [0.0, 1.0]])
DI_B = np.array([[0.0], [1.0]])
DI_C = np.array([[1.0, 0.0]])
PM_A = np.array([[1.0, 0.1, 0.0, 0.0],
                 [0.0, 1.0, 0.0, 0.0],
                 [0.0, 0.0, 1.0, 0.1],
                 [0.0, 0.0, 0.0, 1.0]])
PM_B = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.0, 0.1]])
PM_C = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
BATCH, STEPS = 3, 8   # TINY_FLOAT64's batch and steps


def config_f64(preset: str, seed: int = 0, steps: int = STEPS) -> RunConfig:
    """``preset`` shrunk to N = 6, batch 3, T = ``steps``, in float64."""
    return load_preset(preset, [*TINY_FLOAT64, f"task.steps={steps}"], seed=seed)


def trainer_with(config: RunConfig, scales: dict[str, float], seed: int,
                 teachers: Teacher | None = None) -> Trainer:
    """A trainer whose parameters are N(0, scale^2) entries from a NumPy stream."""
    plant = plant_from_config(config.plant)
    n_ref = len(config.task.frequencies) if config.task.kind == "tracking" else 0
    agent = build_agent(config.agent, plant.n_outputs + n_ref, plant.n_inputs, plant.n_states)
    shapes = agent.parameter_shapes()
    assert set(scales) == set(shapes)
    rng = np.random.default_rng(seed)
    initial = {name: rng.normal(size=shapes[name]) * scale for name, scale in scales.items()}
    return Trainer(config, initials=initial, teachers=teachers)


def member(params):
    """The single member's parameters as float64 NumPy arrays."""
    return {k: np.asarray(v[0], dtype=np.float64) for k, v in params.items()}


def rnn_maths(params):
    p = member(params)
    return p["W_in"].T, p["W"].T, p["W_out"].T


def closed_loop_by_hand(A, B, C, x0, w_in, w, w_out, alpha, phi, steps, reference=None,
                        clamp=None):
    """science 1.2-1.3 for one episode, column vectors: states x_0..x_T, controls u_0..u_{T-1}."""
    x = np.array(x0, dtype=np.float64)
    h = np.zeros(w.shape[0])
    xs, us = [x], []
    for t in range(steps):
        if t == 0:
            u = np.zeros(B.shape[1])
        else:
            y = C @ x
            if reference is not None:
                y = np.concatenate([y, reference[t]])
            h = h + alpha * (-h + phi(w @ h + w_in @ y))
            u = w_out @ h
        x = A @ x + B @ u
        if clamp is not None:
            x = np.clip(x, -clamp, clamp)
        xs.append(x)
        us.append(u)
    return np.array(xs), np.array(us)


def float_loss(trainer, batch):
    losses = trainer.loss(batch)
    assert losses.shape == (1,)
    return float(losses[0])


def test_di_tanh_closed_paper_loss():
    config = config_f64("di-tanh-closed")
    assert config.loss.control_cost == 0.005
    trainer = trainer_with(config, {"W_in": 1.0, "W": 0.4, "W_out": 0.5}, seed=0)
    batch = trainer.draw_batch(1)
    w_in, w, w_out = rnn_maths(trainer.params)
    x0 = np.asarray(batch.x0[0])
    runs = [closed_loop_by_hand(DI_A, DI_B, DI_C, x0[b], w_in, w, w_out, 1.0, np.tanh, STEPS)
            for b in range(BATCH)]
    xs = np.stack([r[0] for r in runs])
    us = np.stack([r[1] for r in runs])
    state_term = sum(np.mean(xs[:, t] ** 2) for t in range(STEPS))
    control_term = sum(0.005 * np.sum(us[:, t] ** 2) for t in range(STEPS))
    assert control_term > 1e-4 * state_term
    expected = state_term + control_term
    assert float_loss(trainer, batch) == pytest.approx(expected, rel=1e-10)


def test_di_lowrank_closed_mean_loss():
    trainer = trainer_with(config_f64("di-lowrank-closed"),
                           {"m": 0.5, "z": 0.5, "u": 0.6, "v": 0.6}, seed=1)
    batch = trainer.draw_batch(1)
    x0 = np.asarray(batch.x0[0])
    assert np.abs(x0).max() <= 2.0 and np.abs(x0).max() > 1.0
    p = member(trainer.params)
    w = p["u"] @ p["v"].T
    w_in, w_out = p["m"], p["z"]
    xs = np.stack([closed_loop_by_hand(DI_A, DI_B, DI_C, x0[b], w_in, w, w_out, 1.0,
                                       lambda a: a, STEPS)[0] for b in range(BATCH)])
    expected = np.mean(xs[:, :STEPS] ** 2)
    assert float_loss(trainer, batch) == pytest.approx(expected, rel=1e-10)


def reference_by_hand(phases, steps):
    freqs = [[0.1, 0.3], [0.2, 0.4]]
    reference = np.zeros((phases.shape[0], steps, 2))
    for b in range(phases.shape[0]):
        for i in range(steps):
            t = i * 0.1
            ramp = min(max(t / 1.0, 0.0), 1.0)
            for axis in range(2):
                reference[b, i, axis] = ramp * sum(
                    2.31 * np.cos(2 * np.pi * freqs[axis][k] * t + phases[b, axis, k])
                    for k in range(2))
    return reference


@pytest.mark.parametrize("w_out_scale", [0.5, 300.0])
def test_tracking_closed_loss(w_out_scale):
    steps = 12
    trainer = trainer_with(config_f64("tracking-closed", steps=steps),
                           {"W_in": 0.5, "W": 0.3, "W_out": w_out_scale}, seed=2)
    batch = trainer.draw_batch(1)
    phases = np.asarray(batch.phases[0])
    assert phases.shape == (BATCH, 2, 2)
    assert np.all(np.abs(phases) <= np.pi)
    reference = reference_by_hand(phases, steps)
    np.testing.assert_allclose(np.asarray(batch.reference[0]), reference, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(batch.x0[0]), 0.0)
    w_in, w, w_out = rnn_maths(trainer.params)
    xs = np.stack([closed_loop_by_hand(PM_A, PM_B, PM_C, np.zeros(4), w_in, w, w_out, 0.1,
                                       lambda a: a, steps, reference[b], clamp=10.0)[0]
                   for b in range(BATCH)])
    if w_out_scale > 1:
        assert np.any(np.abs(xs) == 10.0)
    else:
        assert np.abs(xs).max() < 10.0
    error = 0.0
    for i in range(steps):
        error += 0.1 * (np.mean((xs[:, i + 1, 0] - reference[:, i, 0]) ** 2)
                        + np.mean((xs[:, i + 1, 2] - reference[:, i, 1]) ** 2))
    expected = error / steps
    assert float_loss(trainer, batch) == pytest.approx(expected, rel=1e-10)


def teacher_from_seed(config, seed):
    source = Trainer(config_f64("di-tanh-closed", seed=seed))
    return Teacher(source="test", agent_config=config.agent.model_dump_json(),
                   parameters=source.parameters_numpy(0))


def white_noise_outputs(w_in, w, w_out, inputs):
    h = np.zeros(w.shape[0])
    us = []
    for t in range(inputs.shape[0]):
        h = np.tanh(w @ h + w_in @ inputs[t])
        us.append(w_out @ h)
    return np.array(us)


def test_white_noise_imitation_loss():
    config = config_f64("di-tanh-open")
    teacher = teacher_from_seed(config, seed=5)
    trainer = Trainer(config, teachers=teacher)
    batch = trainer.draw_batch(1)
    inputs = np.asarray(batch.inputs[0])
    assert inputs.shape == (BATCH, STEPS, 1)
    tp = teacher.parameters
    teacher_w = (tp["W_in"].T, tp["W"].T, tp["W_out"].T)
    student_w = rnn_maths(trainer.params)
    assert not np.allclose(teacher_w[1], student_w[1])
    u_student = np.stack([white_noise_outputs(*student_w, inputs[b]) for b in range(BATCH)])
    u_teacher = np.stack([white_noise_outputs(*teacher_w, inputs[b]) for b in range(BATCH)])
    expected = sum(np.mean(np.sum((u_student[:, t] - u_teacher[:, t]) ** 2, axis=-1))
                   for t in range(STEPS))
    assert expected > 0
    assert float_loss(trainer, batch) == pytest.approx(expected, rel=1e-10)


def test_white_noise_imitation_of_itself_is_exactly_zero():
    config = config_f64("di-tanh-open")
    student = Trainer(config, teachers=teacher_from_seed(config, seed=5))
    teacher = Teacher(source="test", agent_config=config.agent.model_dump_json(),
                      parameters=student.parameters_numpy(0))
    trainer = Trainer(config, teachers=teacher)
    batch = trainer.draw_batch(1)
    assert float_loss(trainer, batch) == 0.0
    grads = trainer.gradients(batch)
    for name in ("W_in", "W", "W_out"):
        assert name in grads
        assert grads[name].shape == (1, *trainer.params[name].shape[1:])
        assert np.count_nonzero(grads[name]) == 0
