"""Open loop on white noise (science 2): no plant; the student reads white-noise inputs and
imitates what a teacher network outputs on the same inputs.

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> rule_for(load_preset("di-tanh-open")).needs_teacher
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax

from closedloop.config import RunConfig
from closedloop.core.costs.imitation import imitation_cost
from closedloop.core.rollout import open_loop_rollout
from closedloop.core.tasks import Batch, white_noise_batch
from closedloop.errors import ConfigError
from closedloop.training.rules.base import LearningRule

if TYPE_CHECKING:
    from closedloop.core.agents import Agent, Params
    from closedloop.training.trainer import Program


@dataclass(frozen=True)
class WhiteNoiseImitation(LearningRule):
    """``training.mode: open_white_noise``: batches of white-noise inputs of standard
    deviation ``training.input_noise_std``; the loss is the imitation cost."""

    description: ClassVar[str] = "open loop, on white noise"
    splits_batch: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    differentiates_plant: ClassVar[bool] = False

    def draw_batch(self, program: Program, key: jax.Array) -> Batch:
        """White-noise inputs (batch, T, n_in) and no plant state."""
        task = self.config.task
        return white_noise_batch(task.batch_size, task.steps, program.agent.n_inputs,
                                 self.config.training.input_noise_std, key, program.dtype)

    def loss(self, program: Program, trainable: Params, constants: Any, batch: Batch
             ) -> jax.Array:
        """The imitation cost of the student against the teacher on the batch's inputs."""
        traj = open_loop_rollout(program.agent, self.parameters(trainable, constants),
                                 batch.inputs, steps=self.config.task.steps,
                                 teacher=program.teacher, teacher_params=constants["teacher"])
        return imitation_cost(traj, program.batch_share)

    def check(self, config: RunConfig, agent: Agent, teacher: Agent | None) -> None:
        """A static gain (student or teacher) reads the plant state, which white noise
        lacks."""
        if agent.reads_state:
            raise ConfigError("a static-gain agent reads the plant state; it cannot be "
                              "trained on white-noise inputs")
        if teacher is not None and teacher.reads_state:
            raise ConfigError("a static-gain teacher reads the plant state; white-noise "
                              "imitation needs an RNN teacher (use a teacher-driven-plant "
                              "preset such as di-tanh-open-plant)")
