"""One run's batch split over two CPU devices (``training.devices``): the loss and gradient of
the whole batch, for costs that average and costs that sum over the batch; the same bits run
after run and after a resume; clear refusals.

The golden test (``test_golden.py``) checks the split against the authors' numbers.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from closedloop.errors import ConfigError
from closedloop.runs.store import Teacher, load_run
from closedloop.training import Trainer, train, train_ensemble
from tests.conftest import TINY_FLOAT64, small_config
from tests.core.test_rollout import Setup, numpy_rollout
from tests.training.test_training import _Stop, _stop_at, assert_same_run

SPLIT = ["task.batch_size=4"]


def _numpy_loss(trainer: Trainer, x0: np.ndarray) -> float:
    """The paper's double-integrator loss (science 1.4) through the NumPy loop of the rollout
    tests: sum_t mean_{batch, dims} x_t^2 (t = 0..T-1) + beta sum_{t, batch} u_t^2."""
    config = trainer.configs[0]
    params = {k: v.astype(np.float64) for k, v in trainer.parameters_numpy(0).items()}
    setup = Setup(trainer.plant, trainer.agent, config.task.steps)
    traj = numpy_rollout(setup, params, None, {"x0": x0, "inputs": None, "reference": None,
                                               "noise": None})
    states = traj["states"][:, :-1]
    return float((states ** 2).mean(axis=(0, 2)).sum()
                 + config.loss.control_cost * (traj["controls"] ** 2).sum())


@pytest.mark.parametrize(("preset", "extra"), [
    ("di-tanh-closed", ("loss.control_cost=0.5",)),
    ("di-tanh-closed", ("loss.kind=per_sample", "loss.control_cost=0.5")),
    ("di-tanh-open", ()),
    ("di-tanh-open-plant", ()),
])
def test_split_loss_and_gradient_are_the_whole_batchs(preset: str, extra: tuple) -> None:
    """Split over two devices, the loss and gradient equal the whole batch's on one device
    to float64 rounding: the paper's double-integrator cost (a mean over the batch for the
    state, a sum for the control), a cost that averages over the batch after summing over
    time (``per_sample``), and the imitation cost of both open-loop rules."""
    overrides = (*TINY_FLOAT64, *SPLIT, *extra)
    whole = Trainer(small_config(preset, extra=overrides), teachers=_teacher(preset))
    split = Trainer(small_config(preset, extra=(*overrides, "training.devices=2")),
                    teachers=_teacher(preset))
    assert split.program.shards == 2 and len(split.devices) == 2
    batch = whole.draw_batch(epoch=2)
    np.testing.assert_allclose(split.loss(batch), whole.loss(batch), rtol=1e-12)
    expected = whole.gradients(batch)
    for name, value in split.gradients(batch).items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-10, atol=1e-14,
                                   err_msg=name)


def _teacher(preset: str) -> Teacher | None:
    """An untrained teacher of the tiny shape for the open-loop presets."""
    if preset == "di-tanh-closed":
        return None
    config = small_config(extra=(*TINY_FLOAT64, *SPLIT))
    params = Trainer(config).parameters_numpy(0)
    return Teacher("teacher", config.agent.model_dump_json(), params)


def test_the_split_matches_a_numpy_loss_written_out() -> None:
    """The split loss against the paper's loss written out in NumPy (float64)."""
    config = small_config(extra=(*TINY_FLOAT64, *SPLIT, "loss.control_cost=0.5",
                                 "training.devices=2"))
    trainer = Trainer(config)
    batch = trainer.draw_batch(epoch=1)
    expected = _numpy_loss(trainer, np.asarray(batch.x0[0]))
    assert trainer.loss(batch)[0] == pytest.approx(expected, rel=1e-12)


def test_two_devices_give_the_same_bits_run_after_run_and_after_a_resume(tmp_path: Path
                                                                         ) -> None:
    """For a fixed device count a run is bit-identical, run after run and resumed; on one
    device it agrees to float32 rounding."""
    config = small_config(epochs=11, extra=("training.devices=2",))
    train(config, tmp_path / "a.h5")
    train(config, tmp_path / "b.h5")
    assert_same_run(tmp_path / "a.h5", tmp_path / "b.h5")
    with pytest.raises(_Stop):
        train(config, tmp_path / "cut.h5", progress=_stop_at(7))
    train(config, tmp_path / "cut.h5", resume=True)
    assert_same_run(tmp_path / "a.h5", tmp_path / "cut.h5")

    train(small_config(epochs=11), tmp_path / "one.h5")
    split, one = load_run(tmp_path / "a.h5"), load_run(tmp_path / "one.h5")
    assert split.config.training.devices == 2
    for name in ("train_loss", "test_loss"):
        np.testing.assert_allclose(split.metrics[name], one.metrics[name], rtol=1e-5)


def test_refusals_are_clear() -> None:
    """A count that does not divide the batch, or more devices than JAX has, is refused;
    a rule that compares episodes trains on one device, with a warning."""
    with pytest.raises(ConfigError, match=r"does not divide task\.batch_size"):
        Trainer(small_config(extra=("task.batch_size=15", "training.devices=2")))
    too_many = len(jax.devices("cpu")) + 2
    with pytest.raises(ConfigError, match="jax_num_cpu_devices"):
        Trainer(small_config(extra=("task.batch_size=16", f"training.devices={too_many}")))
    with pytest.warns(UserWarning, match="trains on one device"):
        trainer = Trainer(small_config(extra=("training.mode=black_box",
                                              "training.devices=2")))
    assert trainer.program.shards == 1


def test_an_ensemble_spread_by_members_computes_what_one_device_does(tmp_path: Path) -> None:
    """Two members on two devices: each device trains one member whole, so every member's
    record equals the one-device ensemble's bit for bit (nothing is summed across devices),
    resumed or not; and a black-box rule, whose batch cannot be split, spreads its members
    too."""
    configs = [small_config(epochs=11, seed=seed, extra=("training.devices=2",))
               for seed in (0, 1)]
    spread = Trainer(configs)
    assert spread.program.spread_members and spread.program.shards == 1
    assert {d for shard in spread.params["W"].addressable_shards
            for d in shard.data.devices()} == set(spread.devices)
    train_ensemble(configs, [tmp_path / "a0.h5", tmp_path / "a1.h5"])
    with pytest.raises(_Stop):
        train_ensemble(configs, [tmp_path / "c0.h5", tmp_path / "c1.h5"],
                       progress=lambda member, record: _stop_at(7)(record))
    train_ensemble(configs, [tmp_path / "c0.h5", tmp_path / "c1.h5"], resume=True)
    one = [small_config(epochs=11, seed=seed) for seed in (0, 1)]
    train_ensemble(one, [tmp_path / "o0.h5", tmp_path / "o1.h5"])
    for member in ("0", "1"):
        assert_same_run(tmp_path / f"a{member}.h5", tmp_path / f"c{member}.h5")
        spread_run, one_run = (load_run(tmp_path / f"{k}{member}.h5") for k in "ao")
        for name in ("train_loss", "test_loss"):
            np.testing.assert_array_equal(spread_run.metrics[name], one_run.metrics[name])
        np.testing.assert_array_equal(spread_run.parameters(11)["W"],
                                      one_run.parameters(11)["W"])

    black_box = Trainer([small_config(seed=seed, extra=("training.mode=black_box",
                                                        "training.devices=2"))
                         for seed in (0, 1)])
    assert black_box.program.spread_members and len(black_box.devices) == 2
