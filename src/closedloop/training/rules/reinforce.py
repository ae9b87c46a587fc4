"""REINFORCE with the plant as a black box (science 9): a Gaussian policy around the agent's
output explores, no gradient flows through the plant, and the score-function estimate of the
cost's gradient (:func:`closedloop.core.estimators.reinforce_surrogate`) is the update.

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> rule = rule_for(load_preset("di-tanh-blackbox"))
>>> type(rule).__name__, rule.differentiates_plant
('Reinforce', False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from closedloop.config import RunConfig
from closedloop.core.estimators import reinforce_surrogate
from closedloop.core.rollout import Trajectory, black_box
from closedloop.core.tasks import Batch
from closedloop.errors import ConfigError
from closedloop.training.rules.base import LearningRule

if TYPE_CHECKING:
    from closedloop.core.agents import Agent, Params
    from closedloop.training.trainer import Program


@dataclass(frozen=True)
class Reinforce(LearningRule):
    """``training.mode: black_box`` with ``estimator: reinforce``: exploration of standard
    deviation ``training.exploration_std`` (times exp(log_std) when the agent learns it),
    the cost to go as the return, ``training.baseline`` as its baseline. The recorded
    training loss is the cost of the explored episodes."""

    description: ClassVar[str] = "with the plant as a black box (REINFORCE)"
    differentiates_plant: ClassVar[bool] = False

    def extras(self, program: Program, key: jax.Array) -> dict[str, Any]:
        """Standard normal exploration noise (batch, T, n_u), drawn in float64."""
        task = self.config.task
        noise = jax.random.normal(jax.random.fold_in(key, 1),
                                  (task.batch_size, task.steps, program.plant.n_inputs),
                                  dtype=jnp.float64)
        return {"exploration": noise.astype(program.dtype)}

    def exploration_std(self, params: Params) -> jax.Array | float:
        """The policy's standard deviation: ``training.exploration_std``, times
        exp(log_std) when the agent learns it (``agent.learned_std``)."""
        std = self.config.training.exploration_std
        return std * jnp.exp(params["log_std"]) if "log_std" in params else std

    def loss(self, program: Program, trainable: Params, constants: Any, batch: Batch
             ) -> jax.Array:
        """The explored episodes' cost J as the value; as the gradient, the score-function
        estimate of grad J (the surrogate's gradient)."""
        params = self.parameters(trainable, constants)
        training = self.config.training
        std = self.exploration_std(params)
        value_baseline = training.baseline == "value"
        traj = self.episode(black_box(program.plant, program.agent, params, std), batch,
                            exploration=batch.extras["exploration"],
                            record_inputs=value_baseline, record_hidden=value_baseline)
        costs = program.cost.step_costs(Trajectory(traj.states, traj.executed), program.plant,
                                        batch.reference, control_cost=constants["control_cost"])
        cost = costs.sum(axis=-1).mean(axis=-1)
        surrogate = reinforce_surrogate(traj, costs, std=std,
                                        first=1 if training.zero_first_control else 0,
                                        baseline=training.baseline)
        return surrogate - lax.stop_gradient(surrogate) + lax.stop_gradient(cost)

    def check(self, config: RunConfig, agent: Agent, teacher: Agent | None) -> None:
        """A value baseline is cross-fitted between two halves of the batch; a cost on the
        network's own hidden activity has no place in the score-function estimate (it
        depends on the weights directly, not only through the explored commands)."""
        if config.training.baseline == "value" and config.task.batch_size < 2:
            raise ConfigError("training.baseline 'value' is fitted on one half of the batch "
                              "and used on the other: it needs task.batch_size >= 2")
        if config.loss.hidden_cost:
            raise ConfigError("loss.hidden_cost is not charged by REINFORCE (its estimate "
                              "covers costs that depend on the weights through the explored "
                              "commands only): set loss.hidden_cost=0")
