import numpy as np
import pytest
import torch

from closedloop.config import load_preset
from closedloop.runs.store import Teacher
from closedloop.training import Trainer

SMALL = ["agent.size=6", "task.batch_size=3", "task.steps=8", "training.dtype=float64"]
EPS = 1e-5
RTOL = 1e-6


def loss_value(trainer, batch):
    with torch.no_grad():
        return float(trainer.loss(batch))


def check_gradients(trainer, names, entries=5, seed=0):
    batch = trainer.draw_batch()
    loss = trainer.loss(batch)
    loss.backward()
    rng = np.random.default_rng(seed)
    for name in names:
        param = trainer.params[name]
        assert param.requires_grad
        grad = param.grad.detach().clone()
        assert torch.all(torch.isfinite(grad)) and grad.abs().max() > 0
        flat = rng.choice(param.numel(), size=min(entries, param.numel()), replace=False)
        for k in flat:
            index = np.unravel_index(k, tuple(param.shape))
            with torch.no_grad():
                original = param[index].item()
                param[index] = original + EPS
                plus = loss_value(trainer, batch)
                param[index] = original - EPS
                minus = loss_value(trainer, batch)
                param[index] = original
            numeric = (plus - minus) / (2 * EPS)
            analytic = grad[index].item()
            scale = max(abs(analytic), 1e-3 * grad.abs().max().item())
            assert abs(numeric - analytic) <= RTOL * scale, (name, index, numeric, analytic)


def test_di_tanh_closed_gradients():
    trainer = Trainer(load_preset("di-tanh-closed", overrides=SMALL))
    check_gradients(trainer, ["W_in", "W", "W_out"])


def test_di_lowrank_closed_gradients():
    trainer = Trainer(load_preset("di-lowrank-closed", overrides=SMALL))
    check_gradients(trainer, ["z", "u", "v"])
    assert not trainer.params["m"].requires_grad
    assert trainer.params["m"].grad is None


def test_tracking_closed_gradients():
    overrides = ["agent.size=6", "task.batch_size=3", "task.steps=12", "training.dtype=float64"]
    trainer = Trainer(load_preset("tracking-closed", overrides=overrides))
    check_gradients(trainer, ["W", "W_out"])
    assert trainer.params["W_in"].grad is None


@pytest.mark.parametrize("teacher_seed", [1, 2])
def test_di_tanh_open_white_noise_gradients(teacher_seed):
    config = load_preset("di-tanh-open", overrides=SMALL)
    source = Trainer(load_preset("di-tanh-closed", overrides=SMALL, seed=teacher_seed))
    teacher = Teacher(source="test", agent_config=config.agent.model_dump_json(),
                      parameters=source.parameters_numpy())
    trainer = Trainer(config, teacher=teacher)
    check_gradients(trainer, ["W_in", "W", "W_out"], seed=teacher_seed)
