"""Costs as registered objects: every quantity derived from a cost's terms (the episode loss,
the per-step returns of the black-box estimators, the LQR weights) against hand-written NumPy
formulas of the definitions (science 1.4, 6, 9) and SciPy's Riccati solver; a user's cost
selected by ``loss.kind``."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from closedloop.config import LossConfig, load_preset
from closedloop.core.costs import (
    COSTS,
    Cost,
    Term,
    cost_for,
    register_cost,
    squared_state_error,
)
from closedloop.core.mechanics import PointMass
from closedloop.core.plants import double_integrator, point_mass_2d
from closedloop.core.rollout import Trajectory
from closedloop.errors import ConfigError

BETA, WEIGHT = 0.3, 2.0


def by_hand(kind: str, x: np.ndarray, u: np.ndarray, p: np.ndarray, r: np.ndarray, dt: float
            ) -> tuple[float, np.ndarray]:
    """(episode loss, per-sample per-step costs (B, T)) of the definitions, by loops. ``x``:
    the visited states x_0..x_{T-1}, ``p``: the effector positions p(x_1)..p(x_T), ``r``: the
    reference r_0..r_{T-1}."""
    batch, steps = u.shape[:2]
    per_step = np.zeros((batch, steps))
    for b in range(batch):
        for t in range(steps):
            state, effort = np.sum(x[b, t] ** 2), np.sum(u[b, t] ** 2)
            distance = np.sum((p[b, t] - r[b, t]) ** 2)
            per_step[b, t] = {
                "paper_di": state / x.shape[-1] + BETA * batch * effort,
                "mean_state": state / (x.shape[-1] * steps) + BETA * effort,
                "per_sample": WEIGHT * state + BETA * effort,
                "tracking": dt * distance / steps,
                "reaching": (distance + BETA * effort) / steps}[kind]
    loss = {
        "paper_di": sum(np.mean(x[:, t] ** 2) + BETA * np.sum(u[:, t] ** 2)
                        for t in range(steps)),
        "mean_state": np.mean(x ** 2) + BETA * np.mean(np.sum(u ** 2, axis=(1, 2))),
        "per_sample": np.mean([WEIGHT * np.sum(x[b] ** 2) + BETA * np.sum(u[b] ** 2)
                               for b in range(batch)]),
        "tracking": sum(dt * sum(np.mean((p[:, t, a] - r[:, t, a]) ** 2)
                                 for a in range(p.shape[-1])) for t in range(steps)) / steps,
        "reaching": np.mean(np.sum((p - r) ** 2, -1)) + BETA * np.mean(np.sum(u ** 2, -1))}[kind]
    return float(loss), per_step


@pytest.mark.parametrize("kind", ["paper_di", "mean_state", "per_sample", "tracking",
                                  "reaching"])
def test_episode_loss_and_step_costs_are_the_definitions(kind):
    rng = np.random.default_rng(0)
    plant = {"tracking": point_mass_2d(), "reaching": PointMass()}.get(kind, double_integrator())
    n_x, n_u = plant.n_states, plant.n_inputs
    states, controls = rng.normal(size=(4, 6, n_x)), rng.normal(size=(4, 5, n_u))
    reference = rng.normal(size=(4, 5, 2))
    effector = np.asarray(plant.effector(jnp.asarray(states[:, 1:])))
    loss, per_step = by_hand(kind, states[:, :-1], controls, effector, reference, plant.dt)
    cost = cost_for(LossConfig(kind=kind, control_cost=0.0 if kind == "tracking" else BETA,
                               state_weight=WEIGHT))
    traj = Trajectory(jnp.asarray(states), jnp.asarray(controls))
    ref = jnp.asarray(reference)
    np.testing.assert_allclose(cost.step_costs(traj, plant, ref), per_step, rtol=1e-12)
    assert float(cost.episode_loss(traj, plant, ref)) == pytest.approx(loss, rel=1e-12)
    assert per_step.sum(-1).mean() == pytest.approx(loss, rel=1e-12)


def test_the_test_losses_are_the_figures_quantities():
    """Regulation: mean over t < T, batch and dims of x_t^2 whatever the training loss;
    tracking: its loss; reaching: the distance alone."""
    rng = np.random.default_rng(1)
    states, controls = rng.normal(size=(3, 6, 2)), rng.normal(size=(3, 5, 1))
    traj = Trajectory(jnp.asarray(states), jnp.asarray(controls))
    for kind in ("paper_di", "mean_state", "per_sample"):
        value = cost_for(LossConfig(kind=kind, control_cost=BETA)).evaluation(
            traj, double_integrator())
        assert float(value) == pytest.approx(np.mean(states[:, :-1] ** 2), rel=1e-12)
    states, controls = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 5, 2))
    traj, target = Trajectory(jnp.asarray(states), jnp.asarray(controls)), np.ones((3, 5, 2))
    reaching = cost_for(LossConfig(kind="reaching", control_cost=BETA))
    effector = np.asarray(PointMass().effector(jnp.asarray(states[:, 1:])))
    distance = np.mean(np.sum((effector - target) ** 2, -1))
    assert float(reaching.evaluation(traj, PointMass(), jnp.asarray(target))) == pytest.approx(
        distance, rel=1e-12)


@pytest.mark.parametrize("kind, batch, steps", [("paper_di", 100, 50), ("mean_state", 16, 25),
                                                ("per_sample", 8, 10)])
def test_lqr_weights_give_the_riccati_gain_of_the_hand_derived_weights(kind, batch, steps):
    """Per sample: paper_di is (1 / (n_x B)) sum [x'x + beta n_x B u'u], mean_state
    (1 / (n_x T B)) sum [x'x + beta n_x T u'u], per_sample (1 / B) sum [w x'x + beta u'u]:
    the weights the cost derives from its terms give SciPy's Riccati gain of these."""
    plant = double_integrator()
    costs = cost_for(LossConfig(kind=kind, control_cost=BETA, state_weight=WEIGHT)
                     ).quadratic_weights(plant, batch, steps)
    Q, R = {"paper_di": (np.eye(2), BETA * 2 * batch * np.eye(1)),
            "mean_state": (np.eye(2), BETA * 2 * steps * np.eye(1)),
            "per_sample": (WEIGHT * np.eye(2), BETA * np.eye(1))}[kind]

    def gain(Q, R):
        P = linalg.solve_discrete_are(plant.A, plant.B, Q, R)
        return np.linalg.solve(R + plant.B.T @ P @ plant.B, plant.B.T @ P @ plant.A)

    np.testing.assert_allclose(gain(costs.Q, costs.R), gain(Q, R), rtol=1e-9)


def test_costs_that_are_not_quadratic_have_no_lqr_weights():
    with pytest.raises(ConfigError, match="not quadratic"):
        cost_for(LossConfig(kind="tracking")).quadratic_weights(point_mass_2d(), 4, 5)


@dataclass(frozen=True)
class SummedState(Cost):
    """A user's cost: the squared state error summed over everything (no control cost)."""

    task = "regulation"

    def terms(self, plant, control_cost):
        return (Term(squared_state_error, (("sum", "btd"),)),)


SMALL = ["agent.size=6", "task.batch_size=4", "task.steps=8", "recording.segment_epochs=2",
         "evaluation.gain_fit_states=4"]


def test_a_registered_cost_trains_by_its_name(tmp_path):
    """register_cost makes loss.kind name a user's class: the trainer's loss is what its terms
    say (the states of the closed loop summed by hand), and a run trains with it."""
    from closedloop.core.rollout import rollout
    from closedloop.runs.store import load_run
    from closedloop.training import Trainer, train

    register_cost("summed-state", SummedState)
    config = load_preset("di-tanh-closed", [*SMALL, "loss.kind=summed-state"], epochs=1)
    trainer = Trainer(config)
    batch = trainer.draw_batch(1)
    params = {k: v[0] for k, v in trainer.params.items()}
    traj = rollout(trainer.plant, trainer.agent, params, steps=8, x0=batch.x0[0])
    expected = np.sum(np.asarray(traj.states, dtype=np.float64)[:, :-1] ** 2)
    assert float(trainer.loss(batch)[0]) == pytest.approx(expected, rel=1e-5)
    train(config, tmp_path / "summed.h5")
    run = load_run(tmp_path / "summed.h5")
    assert run.config.loss.kind == "summed-state" and run.status == "complete"
    assert np.isfinite(run.metrics["train_loss"][1:]).all()


def test_unknown_costs_and_wrong_tasks_are_refused_with_the_key():
    from closedloop.training import Trainer

    with pytest.raises(ConfigError, match=r"loss\.kind"):
        Trainer(load_preset("di-tanh-closed", [*SMALL, "loss.kind=no-such-cost"]))
    with pytest.raises(ConfigError, match=r"needs task\.kind 'tracking'"):
        Trainer(load_preset("di-tanh-closed", [*SMALL, "loss.kind=tracking"]))
    with pytest.raises(ConfigError, match=r"needs task\.kind 'regulation'"):
        Trainer(load_preset("tracking-closed", [*SMALL, "loss.kind=paper_di"]))
    with pytest.raises(ConfigError, match="control_cost must be 0"):
        Trainer(load_preset("tracking-closed", [*SMALL, "loss.control_cost=0.1"]))
    assert sorted(COSTS.builtin) == ["mean_state", "paper_di", "per_sample", "reaching",
                                     "tracking"]


@pytest.mark.parametrize("kind", ["reaching", "per_sample"])
def test_effort_and_hidden_activity_are_charged_as_defined(kind):
    """loss.effort_cost * mean_{b,t} sum_i (a_i F_max,i / sum_j F_max,j)^2 of the activations
    after each command, plus loss.hidden_cost * mean_{b,t,units} h_t^2, by loops, on top of
    the cost's own terms; the test loss charges neither."""
    from closedloop.core.muscle_arm import MuscleArm

    rng = np.random.default_rng(2)
    arm = MuscleArm()
    states, controls = rng.uniform(size=(3, 6, 16)), rng.normal(size=(3, 5, 6))
    hidden, reference = rng.normal(size=(3, 5, 7)), rng.normal(size=(3, 5, 2))
    share = np.array(arm.max_force) / np.sum(arm.max_force)
    effort = np.mean([[np.sum((states[b, t + 1, 4:10] * share) ** 2) for t in range(5)]
                      for b in range(3)])
    activity = np.mean(hidden ** 2)
    plain = cost_for(LossConfig(kind=kind, control_cost=BETA))
    charged = cost_for(LossConfig(kind=kind, control_cost=BETA, effort_cost=0.7,
                                  hidden_cost=0.2))
    traj = Trajectory(jnp.asarray(states), jnp.asarray(controls), hidden=jnp.asarray(hidden))
    ref = jnp.asarray(reference)
    base = float(plain.episode_loss(traj, arm, ref))
    assert float(charged.episode_loss(traj, arm, ref)) == pytest.approx(
        base + 0.7 * effort + 0.2 * activity, rel=1e-12)
    assert float(charged.step_costs(traj, arm, ref).sum(-1).mean()) == pytest.approx(
        base + 0.7 * effort + 0.2 * activity, rel=1e-12)
    assert float(charged.evaluation(traj, arm, ref)) == float(plain.evaluation(traj, arm, ref))
    # behind delayed sensors the effort is the arm's own (the buffer is not muscle)
    from closedloop.core.sensors import SensedPlant

    sensed = SensedPlant(arm, delay=2)
    buffered = jnp.concatenate([traj.states, jnp.ones((3, 6, sensed.n_states - 16))], -1)
    assert float(charged.episode_loss(Trajectory(buffered, traj.controls, hidden=traj.hidden),
                                       sensed, ref)) == \
        pytest.approx(base + 0.7 * effort + 0.2 * activity, rel=1e-12)


def test_the_trainer_charges_the_hidden_activity_of_its_own_episodes():
    """A muscle-arm run with both costs: the trainer's loss is the loss without them plus the
    effort and the hidden activity of the closed-loop episode, computed here from a rollout
    that records the hidden states."""
    from closedloop.core.rollout import Given, closed_loop, run_loop
    from closedloop.training import Trainer

    small = ["agent.size=6", "task.batch_size=4", "task.steps=8", "evaluation.test_size=4",
             "evaluation.test_targets=4"]
    plain = Trainer(load_preset("reach-muscle-arm", [*small, "loss.effort_cost=0",
                                                     "loss.hidden_cost=0"], epochs=1))
    charged = Trainer(load_preset("reach-muscle-arm", [*small, "loss.effort_cost=0.5",
                                                       "loss.hidden_cost=0.25"], epochs=1))
    batch = charged.draw_batch(1)
    params = {k: v[0] for k, v in charged.params.items()}
    traj = run_loop(closed_loop(charged.plant, charged.agent, params), steps=8,
                    x0=batch.x0[0], given=Given(batch.reference[0], None),
                    zero_first_control=True, record_hidden=True)
    states, hidden = np.asarray(traj.states, float), np.asarray(traj.hidden, float)
    share = np.array(charged.plant.max_force) / np.sum(charged.plant.max_force)
    extra = 0.5 * np.mean(np.sum((states[:, 1:, 4:10] * share) ** 2, -1)) \
        + 0.25 * np.mean(hidden ** 2)
    assert np.abs(hidden).max() > 0
    assert float(charged.loss(batch)[0]) == pytest.approx(float(plain.loss(batch)[0]) + extra,
                                                          rel=1e-5)


def test_effort_needs_muscles_and_regularised_costs_have_no_lqr_weights():
    from closedloop.training import Trainer

    with pytest.raises(ConfigError, match="has no muscles"):
        Trainer(load_preset("reach-pointmass", ["loss.effort_cost=0.1"]))
    with pytest.raises(ConfigError, match="not quadratic"):
        cost_for(LossConfig(kind="per_sample", hidden_cost=0.1)).quadratic_weights(
            double_integrator(), 4, 5)
    with pytest.raises(ConfigError, match="hidden_cost is not charged by REINFORCE"):
        Trainer(load_preset("reach-muscle-arm-blackbox", ["loss.hidden_cost=0.001"]))
    with pytest.raises(ConfigError, match="hidden_cost is not charged by node perturbation"):
        Trainer(load_preset("di-tanh-nodepert", ["loss.hidden_cost=0.001"]))
