"""The gradient training takes (``jax.grad`` through the rollout) against central finite
differences of the training loss, for every paper preset, in float64."""

import numpy as np
import pytest

from closedloop.config import RunConfig, agent_config, load_preset
from closedloop.runs.store import Teacher
from closedloop.training import Trainer
from tests.conftest import TINY_FLOAT64

EPS = 1e-5
RTOL = 1e-6


def config_f64(preset: str, seed: int = 0, extra: tuple[str, ...] = ()) -> RunConfig:
    return load_preset(preset, [*TINY_FLOAT64, *extra], seed=seed)


def loss_value(trainer: Trainer, batch, params: dict[str, np.ndarray]) -> float:
    losses = trainer.loss(batch, params=params)
    assert losses.shape == (1,)
    return float(losses[0])


def check_gradients(trainer: Trainer, names: list[str], entries: int = 5, seed: int = 0
                    ) -> dict[str, np.ndarray]:
    batch = trainer.draw_batch(1)
    grads = trainer.gradients(batch)
    assert sorted(grads) == sorted(names)       # exactly the trained parameters get gradients
    params = {name: np.asarray(trainer.params[name], dtype=np.float64) for name in names}
    rng = np.random.default_rng(seed)
    for name in names:
        assert trainer.agent.is_trainable(name)
        grad = grads[name]
        assert grad.shape == params[name].shape          # (members = 1, ...)
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
        flat = rng.choice(grad[0].size, size=min(entries, grad[0].size), replace=False)
        for k in flat:
            index = (0, *np.unravel_index(k, grad.shape[1:]))
            shifted = {}
            for sign in (1.0, -1.0):
                value = params[name].copy()
                value[index] += sign * EPS
                shifted[sign] = loss_value(trainer, batch, {**params, name: value})
            numeric = (shifted[1.0] - shifted[-1.0]) / (2 * EPS)
            analytic = float(grad[index])
            scale = max(abs(analytic), 1e-3 * np.abs(grad).max())
            assert abs(numeric - analytic) <= RTOL * scale, (name, index, numeric, analytic)
    return grads


def run_teacher(preset: str, config: RunConfig, seed: int) -> Teacher:
    """The initial network of a closed-loop run of ``preset`` (another seed) as teacher."""
    source = Trainer(config_f64(preset, seed=seed))
    return Teacher(source="test", agent_config=config.agent.model_dump_json(),
                   parameters=source.parameters_numpy(0))


def test_di_tanh_closed_gradients():
    trainer = Trainer(config_f64("di-tanh-closed"))
    check_gradients(trainer, ["W_in", "W", "W_out"])


def test_di_lowrank_closed_gradients():
    trainer = Trainer(config_f64("di-lowrank-closed"))
    check_gradients(trainer, ["z", "u", "v"])
    assert not trainer.agent.is_trainable("m")   # frozen: no gradient (checked above)


def test_di_reduced_closed_gradients():
    tiny = [s for s in TINY_FLOAT64 if not s.startswith("agent.size")]   # it has no size
    trainer = Trainer(load_preset("di-reduced-closed",
                                  [*tiny, "agent.overlaps=[-0.03, 0.4, 0.1, 0.2]"]))
    check_gradients(trainer, ["s_zm", "s_zu", "s_vm", "s_vu"])


def test_tracking_closed_gradients():
    trainer = Trainer(config_f64("tracking-closed", extra=("task.steps=12",)))
    check_gradients(trainer, ["W", "W_out"])
    assert not trainer.agent.is_trainable("W_in")


@pytest.mark.parametrize("teacher_seed", [1, 2])
def test_di_tanh_open_white_noise_gradients(teacher_seed):
    config = config_f64("di-tanh-open")
    trainer = Trainer(config, teachers=run_teacher("di-tanh-closed", config, teacher_seed))
    check_gradients(trainer, ["W_in", "W", "W_out"], seed=teacher_seed)


@pytest.mark.parametrize("teacher_kind", ["run", "gain"])
def test_di_tanh_open_plant_gradients(teacher_kind):
    config = config_f64("di-tanh-open-plant")
    if teacher_kind == "gain":
        gain = np.array([[-0.4, -1.2]])
        teacher = Teacher(source="test", parameters={"K": gain},
                          agent_config=agent_config(kind="static_gain",
                                                    gain=gain.tolist()).model_dump_json())
    else:
        teacher = run_teacher("di-tanh-closed", config, 3)
    trainer = Trainer(config, teachers=teacher)
    check_gradients(trainer, ["W_in", "W", "W_out"])


def test_tracking_open_gradients():
    config = config_f64("tracking-open", extra=("task.steps=12",))
    trainer = Trainer(config, teachers=run_teacher("tracking-closed", config, 4))
    check_gradients(trainer, ["W_in", "W", "W_out"])
