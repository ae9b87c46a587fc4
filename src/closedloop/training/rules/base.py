"""The learning-rule contract: one small base class with hooks, and the registry behind
``training.mode``.

A learning rule decides how one update is computed from one batch: what the batch holds
beyond the task's initial states, references and plant noise, which rollout it runs, the
training loss it records, and the gradient (or gradient estimate) the optimiser receives.
Everything else is the trainer's and comes for free: the epoch loop, batches that depend only
on the seed and the epoch, the optimiser and clipping, stopping a diverged member, the test
evaluation and its records, ensembles on a member axis, resumes, sweeps and ``reproduce``.

A rule is a frozen dataclass subclassing :class:`LearningRule`; it is built once per trainer
from the run's config (``rule(config)``), so the settings it reads (``training.*``) are fixed
for a compiled program. Register it under a name and a config selects it with
``training.mode: name``::

    from closedloop.training.rules import LearningRule, register_rule

    @dataclass(frozen=True)
    class MyRule(LearningRule):
        def loss(self, program, trainable, constants, batch):
            ...                      # a scalar; its gradient is the update's

    register_rule("my_rule", MyRule)

or, from an installed package, with an entry point in the group ``closedloop.rules``.
:mod:`closedloop.training.rules.node_perturbation` is a complete example written this way.

Example
-------
>>> from closedloop.config import load_preset
>>> rule = rule_for(load_preset("di-tanh-open"))
>>> type(rule).__name__, rule.needs_teacher
('WhiteNoiseImitation', True)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import jax

from closedloop.config import RunConfig
from closedloop.core.registry import SubclassRegistry
from closedloop.core.rollout import ClosedLoopStep, Given, Trajectory, run_loop
from closedloop.core.tasks import Batch, sample_batch

if TYPE_CHECKING:
    from closedloop.core.agents import Agent, Params
    from closedloop.training.trainer import Program

PyTree = Any


@dataclass(frozen=True)
class LearningRule(ABC):
    """How a batch becomes a loss and a gradient. Subclass it as a frozen dataclass.

    Arguments the hooks receive: ``program`` (:class:`~closedloop.training.trainer.Program`:
    ``config``, ``plant``, ``agent``, ``teacher``, ``cost``, ``dtype``), ``trainable`` (the trained
    parameters), ``constants`` (per member: ``frozen`` parameters, ``teacher`` parameters,
    ``control_cost``, ...) and ``batch`` (:class:`~closedloop.core.tasks.Batch`).

    A subclass writes
    -----------------
    loss(program, trainable, constants, batch)
        The training loss of ``batch`` (a scalar), recorded every epoch as ``train_loss``.
        Unless :meth:`estimate` is overridden, its gradient with respect to ``trainable`` is
        the update's (``jax.value_and_grad``).

    and, where the default does not fit, overrides
    ----------------------------------------------
    description
        How the rule trains, in a few words for messages ("closed loop").
    needs_teacher
        True for a rule that imitates a teacher (``constants["teacher"]`` then holds the
        teacher's parameters and ``program.teacher`` its agent).
    differentiates_plant
        False for a rule that never differentiates the plant (a black box): such a rule can
        train a plant JAX cannot differentiate.
    extras(program, key)
        Random arrays the rule needs per batch (``batch.extras``), drawn from ``key``.
    draw_batch(program, key)
        The whole batch, when it is not the task's (e.g. white-noise inputs, no plant).
    estimate(program, trainable, constants, batch)
        (loss, gradient pytree over ``trainable``), when the gradient is estimated rather
        than differentiated.
    check(config, agent, teacher)
        Refuse settings the rule cannot train, with a :class:`~closedloop.errors.ConfigError`.
    splits_batch
        True for a rule whose loss adds up over its batch's episodes, so that a run can split
        the batch over several devices (``training.devices``): each device computes the
        loss and gradient of its part, with the terms that average over the batch scaled by
        ``program.batch_share`` (pass it to ``Cost.episode_loss``), and the parts are
        summed. A rule that compares episodes with each other (a batch-mean baseline, ranks)
        leaves it False: a single run of it trains on one device (runs trained together are
        still shared out between devices, each whole).

    Attributes
    ----------
    config
        The run's config (members of one trainer differ only in what does not shape the
        compiled program).
    """

    config: RunConfig
    description: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    differentiates_plant: ClassVar[bool] = True
    splits_batch: ClassVar[bool] = False

    @abstractmethod
    def loss(self, program: Program, trainable: Params, constants: PyTree, batch: Batch
             ) -> jax.Array:
        """The training loss of ``batch``."""

    def estimate(self, program: Program, trainable: Params, constants: PyTree, batch: Batch
                 ) -> tuple[jax.Array, Params]:
        """(training loss, its gradient over ``trainable``): ``jax.value_and_grad`` of
        :meth:`loss`."""
        return jax.value_and_grad(lambda t: self.loss(program, t, constants, batch))(trainable)

    def extras(self, program: Program, key: jax.Array) -> dict[str, Any] | None:
        """Random arrays this rule adds to every batch (none by default)."""
        return None

    def draw_batch(self, program: Program, key: jax.Array) -> Batch:
        """A batch of the task: initial states, references, the plant's noise and
        :meth:`extras` (drawn from the second half of ``key``, after the plant's noise)."""
        task = program.config.task
        batch_key, noise_key = jax.random.split(key)
        batch = sample_batch(task, program.plant.n_core_states, batch_key, dt=program.plant.dt,
                             dtype=program.dtype)
        return replace(batch, x0=program.plant.initial_states(batch.x0),
                       noise=program.plant.draw_noise(noise_key, task.batch_size, task.steps,
                                                      program.dtype),
                       extras=self.extras(program, noise_key))

    def check(self, config: RunConfig, agent: Agent, teacher: Agent | None) -> None:
        """Refuse what this rule cannot train (nothing by default)."""
        return None

    # -- what a subclass gets -------------------------------------------------------------

    @staticmethod
    def parameters(trainable: Params, constants: PyTree) -> Params:
        """Every parameter of the agent: the trained ones and the frozen ones."""
        return {**constants["frozen"], **trainable}

    def episode(self, step: ClosedLoopStep, batch: Batch, *,
                exploration: jax.Array | None = None, nodes: jax.Array | None = None,
                record_hidden: bool = False, record_inputs: bool = False) -> Trajectory:
        """The rollout by ``step`` (a builder's of :mod:`closedloop.core.rollout`:
        ``closed_loop``, ``teacher_driven``, ``black_box``) of ``batch`` (initial states,
        references, plant noise, and the ``exploration`` and ``nodes`` noise of a black-box
        step) with the run's time convention; the hidden states are recorded when asked and
        when the loss charges them (``loss.hidden_cost``)."""
        return run_loop(step, steps=self.config.task.steps, x0=batch.x0,
                        given=Given(batch.reference, batch.noise, exploration, nodes),
                        zero_first_control=self.config.training.zero_first_control,
                        record_hidden=record_hidden or self.config.loss.hidden_cost > 0,
                        record_inputs=record_inputs)


RULES = SubclassRegistry("rule", "closedloop.rules", LearningRule, key="training.mode",
                         label="learning rule")
"""Learning rules by the name ``training.mode`` gives (built-ins are added by
:mod:`closedloop.training.rules`)."""


def register_rule(name: str, cls: type[LearningRule]) -> None:
    """Make ``training.mode: name`` train with ``cls`` (a frozen dataclass subclassing
    :class:`LearningRule`).

    Example
    -------
    >>> from closedloop.training.rules.closed import ClosedLoop
    >>> register_rule("my-closed-loop", ClosedLoop)
    >>> RULES.get("my-closed-loop") is ClosedLoop
    True
    """
    RULES.register(name, cls)


def rule_for(config: RunConfig) -> LearningRule:
    """The learning rule ``training.mode`` names, built from the run's config.

    Raises
    ------
    ConfigError
        For a name no rule is registered under (the message lists the known ones).
    """
    return RULES.get(config.training.mode)(config)
