"""``agent.kind: vanilla``: the discrete (Elman) RNN h' = phi(W h + W_in y + b), the rate RNN
with dt = tau (alpha = 1).

Example
-------
>>> from closedloop.config import agent_config
>>> agent = VanillaRNN.from_config(agent_config(kind="vanilla", size=3), 1, 1)
>>> agent.alpha, sorted(agent.parameter_shapes())
(1.0, ['W', 'W_in', 'W_out'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from closedloop.config import AgentConfig
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import NetworkConfig
from closedloop.core.agents.rnn import RNNAgent


class VanillaConfig(NetworkConfig):
    """``agent.kind: vanilla``: ``size`` units, ``activation``, ``bias``, ``output_bias``;
    discrete time, so no dt or tau. Parameters: ``W_in``, ``W``, ``W_out`` (``b``,
    ``b_out``)."""

    kind: str = Field("vanilla", pattern=AGENT_KIND_PATTERN)

    def parameter_names(self) -> tuple[str, ...]:
        """The rate RNN's: ``W_in``, ``W``, ``W_out``, ``b``, ``b_out``."""
        return ("W_in", "W", "W_out", "b", "b_out")


@dataclass(frozen=True)
class VanillaRNN(RNNAgent):
    """:class:`~closedloop.core.agents.rnn.RNNAgent` with dt = tau = 1."""

    config_class: ClassVar[type[AgentConfig]] = VanillaConfig
