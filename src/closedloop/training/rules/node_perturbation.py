"""Node perturbation (Fiete and Seung, 2006), written the way a user adds a learning rule:
one file, one class, one registration.

Every update runs each episode twice from the same initial state and plant noise: once as the
agent computes it (the clean episode) and once with Gaussian perturbations of its units: after
each update of the hidden state, h_t -> h_t + sigma nu_t, and on the outputs,
u_t -> W_out h_t + sigma zeta_t (nu, zeta standard normal, sigma = ``training.exploration_std``).
No gradient flows through the plant or through time. Each unit's perturbation is correlated
with the change of the episode's cost, Delta J = J(perturbed) - J(clean), and with the
derivative of that unit's own input with respect to its own incoming weights, the
presynaptic activity held fixed (a local eligibility):

    g = mean over episodes of  Delta J / sigma * sum_t ( nu_t . d f(h_{t-1}, y_t) / d theta
                                                     + zeta_t . d out(h_t) / d theta )

with f the agent's state update and out its readout. The perturbed units are a Gaussian
policy over the hidden states and outputs, so g is the score-function (REINFORCE) estimate
of the gradient of the expected perturbed cost E[J], and the clean episode's cost is a
baseline that does not depend on the perturbation: the estimate is unbiased. The recorded
training loss is the clean episodes' cost.

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> rule = rule_for(load_preset("di-tanh-nodepert"))
>>> type(rule).__name__, rule.differentiates_plant
('NodePerturbation', False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from closedloop.config import RunConfig
from closedloop.core.rollout import Given, Trajectory, black_box, closed_loop, run_loop
from closedloop.core.tasks import Batch
from closedloop.errors import ConfigError
from closedloop.training.rules.base import LearningRule

if TYPE_CHECKING:
    from closedloop.core.agents import Agent, Params
    from closedloop.core.plants import Plant
    from closedloop.training.trainer import Program


def node_perturbation_gradient(plant: Plant, agent: Agent, params: Params, trainable: list[str],
                               costs: Callable[[Trajectory], jax.Array], *, steps: int,
                               x0: jax.Array, nodes: jax.Array, outputs: jax.Array,
                               std: float, reference: jax.Array | None = None,
                               noise: jax.Array | None = None, zero_first_control: bool = True
                               ) -> tuple[jax.Array, Params]:
    """(clean cost, node-perturbation estimate of its gradient over ``trainable``).

    ``costs`` maps a trajectory (with the executed commands as its ``controls``) to per-step
    costs (batch, T); ``nodes`` (batch, T, N) and ``outputs`` (batch, T, n_u) are the
    standard normal perturbations, scaled by ``std``.
    """
    fixed = lax.stop_gradient(params)
    common = dict(steps=steps, x0=x0, zero_first_control=zero_first_control)
    clean = run_loop(closed_loop(plant, agent, fixed), given=Given(reference, noise), **common)
    perturbed = run_loop(black_box(plant, agent, fixed, std),
                         given=Given(reference, noise, outputs, nodes), record_hidden=True,
                         record_inputs=True, **common)
    clean_costs = costs(clean).sum(axis=-1)
    change = costs(Trajectory(perturbed.states, perturbed.executed)).sum(axis=-1) - clean_costs
    first = 1 if zero_first_control else 0
    hidden = perturbed.hidden
    before = jnp.concatenate([agent.initial_hidden(hidden.shape[0], hidden.dtype)[:, None],
                              hidden[:, :-1]], axis=1)
    mask = (jnp.arange(steps) >= first).astype(hidden.dtype)[None, :, None]

    def eligibility(theta: Params) -> jax.Array:
        prepared = agent.prepare({**fixed, **theta})
        flat = (-1, hidden.shape[-1])
        state, _ = agent.step(prepared, before.reshape(flat),
                              perturbed.inputs.reshape(-1, perturbed.inputs.shape[-1]))
        readout = agent.output(prepared, hidden.reshape(flat))
        local = ((mask * nodes[:, :steps]) * state.reshape(hidden.shape)).sum(axis=(1, 2)) \
            + ((mask * outputs[:, :steps]) * readout.reshape(*hidden.shape[:2], -1)
               ).sum(axis=(1, 2))
        return (lax.stop_gradient(change) * local).mean() / std

    grads = jax.grad(eligibility)({name: fixed[name] for name in trainable})
    return clean_costs.mean(), grads


@dataclass(frozen=True)
class NodePerturbation(LearningRule):
    """``training.mode: node_perturbation``: perturbations of standard deviation
    ``training.exploration_std`` on every hidden unit and output, the clean episode as the
    baseline (module docstring). Agents whose output is a readout of their hidden state
    (rnn, lowrank, vanilla, gru, mlp)."""

    description: ClassVar[str] = "by node perturbation"
    differentiates_plant: ClassVar[bool] = False

    def extras(self, program: Program, key: jax.Array) -> dict[str, Any]:
        """Standard normal perturbations of the hidden units (batch, T, N) and of the outputs
        (batch, T, n_u), drawn in float64."""
        task = self.config.task

        def normal(index: int, size: int) -> jax.Array:
            return jax.random.normal(jax.random.fold_in(key, index),
                                     (task.batch_size, task.steps, size),
                                     dtype=jnp.float64).astype(program.dtype)

        return {"nodes": normal(3, program.agent.size),
                "outputs": normal(4, program.plant.n_inputs)}

    def costs(self, program: Program, constants: Any, batch: Batch
              ) -> Callable[[Trajectory], jax.Array]:
        """Per-step costs of the run's cost."""
        return lambda traj: program.cost.step_costs(traj, program.plant, batch.reference,
                                                    control_cost=constants["control_cost"])

    def loss(self, program: Program, trainable: Params, constants: Any, batch: Batch
             ) -> jax.Array:
        """The clean episodes' cost."""
        traj = self.episode(closed_loop(program.plant, program.agent,
                                        self.parameters(trainable, constants)), batch)
        return self.costs(program, constants, batch)(traj).sum(axis=-1).mean()

    def estimate(self, program: Program, trainable: Params, constants: Any, batch: Batch
                 ) -> tuple[jax.Array, Params]:
        """The clean cost and the node-perturbation estimate of its gradient."""
        return node_perturbation_gradient(
            program.plant, program.agent, self.parameters(trainable, constants),
            list(trainable), self.costs(program, constants, batch),
            steps=self.config.task.steps, x0=batch.x0, nodes=batch.extras["nodes"],
            outputs=batch.extras["outputs"], std=self.config.training.exploration_std,
            reference=batch.reference, noise=batch.noise,
            zero_first_control=self.config.training.zero_first_control)

    def check(self, config: RunConfig, agent: Agent, teacher: Agent | None) -> None:
        """The perturbed units are the agent's hidden units and outputs: a static gain has
        none, the exploration scale is not learned, and no cost on the hidden activity is
        charged."""
        if agent.reads_state:
            raise ConfigError("node perturbation perturbs an agent's hidden units; a "
                              "static gain has none (train it with training.mode=black_box)")
        if config.agent.learned_std:
            raise ConfigError("node perturbation uses training.exploration_std as it is; "
                              "agent.learned_std is for training.mode=black_box")
        if config.loss.hidden_cost:
            raise ConfigError("loss.hidden_cost is not charged by node perturbation (not "
                              "built: its estimate is made from the per-step costs of the "
                              "plant and commands): set loss.hidden_cost=0")
