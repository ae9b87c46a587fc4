"""Closed loop (science 1.5): the agent drives the plant and the control objective is
differentiated through the whole loop, plant included (backpropagation through time).

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> type(rule_for(load_preset("di-tanh-closed"))).__name__
'ClosedLoop'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax

from closedloop.core.rollout import closed_loop
from closedloop.core.tasks import Batch
from closedloop.training.rules.base import LearningRule

if TYPE_CHECKING:
    from closedloop.core.agents import Params
    from closedloop.training.trainer import Program


@dataclass(frozen=True)
class ClosedLoop(LearningRule):
    """``training.mode: closed``: the loss is the control objective of the closed-loop
    episodes; its gradient flows through the plant."""

    description: ClassVar[str] = "closed loop"
    splits_batch: ClassVar[bool] = True

    def loss(self, program: Program, trainable: Params, constants: Any, batch: Batch
             ) -> jax.Array:
        """The episode loss of the cost ``loss.kind`` names on the batch's closed-loop
        episodes."""
        traj = self.episode(closed_loop(program.plant, program.agent,
                                        self.parameters(trainable, constants)), batch)
        return program.cost.episode_loss(traj, program.plant, batch.reference,
                                         control_cost=constants["control_cost"],
                                         batch_share=program.batch_share)
