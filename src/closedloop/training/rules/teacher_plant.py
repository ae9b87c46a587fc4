"""Open loop on the teacher's plant (science 2): the teacher drives the plant; the student
reads the same observations and imitates the teacher's outputs. No gradient reaches the
plant (the student never drives it).

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> type(rule_for(load_preset("di-tanh-open-plant"))).__name__
'TeacherDrivenImitation'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax

from closedloop.core.costs.imitation import imitation_cost
from closedloop.core.rollout import teacher_driven
from closedloop.core.tasks import Batch
from closedloop.training.rules.base import LearningRule

if TYPE_CHECKING:
    from closedloop.core.agents import Params
    from closedloop.training.trainer import Program


@dataclass(frozen=True)
class TeacherDrivenImitation(LearningRule):
    """``training.mode: open_teacher_plant``: the loss is the imitation cost on episodes the
    teacher drives."""

    description: ClassVar[str] = "open loop, on the teacher's plant"
    splits_batch: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    differentiates_plant: ClassVar[bool] = False

    def loss(self, program: Program, trainable: Params, constants: Any, batch: Batch
             ) -> jax.Array:
        """The imitation cost of the student along the teacher-driven episodes."""
        step = teacher_driven(program.plant, program.agent,
                              self.parameters(trainable, constants), program.teacher,
                              constants["teacher"])
        traj = self.episode(step, batch)
        return imitation_cost(traj, program.batch_share)
