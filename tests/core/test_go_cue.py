"""Centre-out reaching with a delay period and a go cue (science 10): the cue's timing and
catch trials as drawn, the hand charged against the start before the cue and the target after
it (a NumPy loss written out), the agent reading the cue, and clear refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from closedloop.config import LossConfig, TaskConfig, load_preset
from closedloop.core.costs import cost_for
from closedloop.core.mechanics import PointMass
from closedloop.core.plants import plant_from_config
from closedloop.core.rollout import Trajectory, reference_inputs
from closedloop.core.tasks import sample_batch

TASK = TaskConfig(kind="reaching", steps=40, batch_size=2000, n_targets=8, target_radius=0.1,
                  centre_target=False, go_cue=[0.05, 0.25], catch_fraction=0.25)
DT = 0.01


def test_the_cue_comes_in_its_window_and_catch_trials_have_none():
    batch = sample_batch(TASK, 4, jax.random.key(0), dt=DT)
    go = np.asarray(batch.reference[..., 2])
    assert set(np.unique(go)) <= {0.0, 1.0}
    assert np.all(np.diff(go, axis=1) >= 0)                    # once on, it stays on
    cued = go[:, -1] == 1
    assert abs(1 - cued.mean() - TASK.catch_fraction) < 0.03   # 2000 trials
    first = np.argmax(go[cued], axis=1)
    assert first.min() == 5 and first.max() == 25               # 0.05-0.25 s at 10 ms
    assert abs(first.mean() - 15) < 0.5                         # uniform over the window
    targets = np.asarray(batch.reference[:, 0, :2])
    np.testing.assert_allclose(np.hypot(*targets.T), 0.1, rtol=1e-12)   # shown from the start
    np.testing.assert_array_equal(batch.reference[:, :, :2], batch.reference[:, :1, :2]
                                  .repeat(40, axis=1))
    test = sample_batch(TASK, 4, jax.random.key(0), dt=DT, batch_size=8, every_target=True)
    np.testing.assert_array_equal(np.argmax(np.asarray(test.reference[..., 2]), axis=1), 15)


def test_the_hand_is_charged_against_the_start_before_the_cue_and_the_target_after():
    rng = np.random.default_rng(0)
    steps = 6
    states = rng.normal(size=(3, steps + 1, 4))
    controls = rng.normal(size=(3, steps, 2))
    target = rng.normal(size=(3, 2))
    go = np.zeros((3, steps))
    go[0, 2:] = 1
    go[1, 4:] = 1                                               # trial 2: a catch trial
    reference = np.concatenate([np.repeat(target[:, None], steps, 1), go[..., None]], -1)
    wanted = target[:, None] * go[..., None]
    hand = states[:, 1:, [0, 2]]                        # PointMass: state (x, v_x, y, v_y)
    expected = np.mean(np.sum((hand - wanted) ** 2, -1)) + 0.3 * np.mean(
        np.sum(controls ** 2, -1))
    cost = cost_for(LossConfig(kind="reaching", control_cost=0.3))
    traj = Trajectory(states=jnp.asarray(states), controls=jnp.asarray(controls))
    got = cost.episode_loss(traj, PointMass(), jnp.asarray(reference))
    assert float(got) == pytest.approx(expected, rel=1e-12)


def test_the_agent_reads_the_cue_and_settings_are_checked():
    config = load_preset("reach-arm", ["task.go_cue=[0.05, 0.25]", "task.catch_fraction=0.2"])
    plant = plant_from_config(config.plant)
    assert reference_inputs(config, plant) == 3
    assert reference_inputs(load_preset("reach-arm"), plant) == 2
    with pytest.raises(ValidationError, match="go_cue"):
        TaskConfig(kind="reaching", go_cue=[0.3, 0.1])
    with pytest.raises(ValidationError, match=r"for task\.kind reaching"):
        TaskConfig(kind="regulation", catch_fraction=0.1)


def test_the_test_set_can_visit_more_directions_than_training_draws():
    """``evaluation.test_targets``: the muscle arm's preset trains on 8 directions and tests
    on 24, 15 degrees apart, each once, its cue at the middle of the window."""
    from closedloop.training import Trainer

    trainer = Trainer(load_preset("reach-muscle-arm", ["agent.size=4"]))
    reference = np.asarray(trainer.constants["test"].reference[0])
    assert reference.shape == (24, 100, 3)
    angles = np.degrees(np.arctan2(reference[:, 0, 1], reference[:, 0, 0])) % 360
    np.testing.assert_allclose(angles, np.arange(24) * 15.0, atol=1e-4)     # float32
    np.testing.assert_array_equal(np.argmax(reference[:, :, 2], axis=1), 15)
