"""``agent.kind: static_gain``: the policy u = K x on the full plant state (no memory).

Example
-------
>>> from closedloop.config import agent_config
>>> config = agent_config(kind="static_gain", gain=[[-0.5, -1.0]])
>>> StaticGain.from_config(config, 2, 1, n_states=2).initial_gain
((-0.5, -1.0),)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from closedloop.config import AgentConfig
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import Agent, Linearisation, Params, as_array
from closedloop.errors import ConfigError, ShapeError


class StaticGainConfig(AgentConfig):
    """``agent.kind: static_gain``: the initial ``gain`` K (n_u x n_x; zero when none is
    given). Parameter: ``K``."""

    kind: str = Field("static_gain", pattern=AGENT_KIND_PATTERN)
    gain: list[list[float]] | None = None

    def parameter_names(self) -> tuple[str, ...]:
        """``K``."""
        return ("K",)

    @model_validator(mode="after")
    def _check_gain(self) -> StaticGainConfig:
        if self.gain is not None and (not self.gain or len({len(r) for r in self.gain}) != 1):
            raise ValueError("agent.gain must be a non-empty rectangular matrix")
        return self


@dataclass(frozen=True)
class StaticGain(Agent):
    """The static-gain policy u = K x on the full plant state (no memory).

    Example
    -------
    >>> policy = StaticGain(n_states=2, n_outputs=1)
    >>> params = policy.to_params({"K": [[-0.5, -1.0]]})
    >>> policy.step(policy.prepare(params), policy.initial_hidden(1),
    ...             jnp.array([[1.0, 2.0]]))[1].tolist()
    [[-2.5]]
    """

    n_states: int
    n_outputs: int
    initial_gain: tuple[tuple[float, ...], ...] | None = None
    frozen: frozenset[str] = frozenset()
    reads_state: ClassVar[bool] = True
    size: ClassVar[int] = 0
    config_class: ClassVar[type[AgentConfig]] = StaticGainConfig

    @classmethod
    def from_config(cls, config: AgentConfig, n_inputs: int, n_outputs: int,
                    n_states: int | None = None) -> StaticGain:
        """K of the plant's full state (``n_states`` is needed; ``n_inputs`` is not used)."""
        assert isinstance(config, StaticGainConfig)
        if n_states is None:
            raise ConfigError("a static-gain agent needs the plant's state dimension")
        gain = None if config.gain is None else tuple(tuple(row) for row in config.gain)
        return cls(n_states, n_outputs, gain, config.frozen())

    @property
    def n_inputs(self) -> int:
        """The static gain reads the whole state."""
        return self.n_states

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The one parameter K (n_u x n_x)."""
        return {"K": (self.n_outputs, self.n_states)}

    def init_params(self, key: jax.Array, dtype: Any = jnp.float32) -> Params:
        """The configured initial gain (zero when none is given); ``key`` is not used."""
        gain = (np.zeros((self.n_outputs, self.n_states)) if self.initial_gain is None
                else np.asarray(self.initial_gain, dtype=np.float64))
        return self.to_params({"K": gain}, dtype)

    def to_params(self, arrays: Mapping[str, object], dtype: Any = jnp.float32) -> Params:
        """K from ``arrays``, shape-checked."""
        if set(arrays) != {"K"}:
            raise ShapeError(f"a static gain has one parameter K, got {sorted(arrays)}")
        gain = as_array(arrays["K"], dtype)
        if tuple(gain.shape) != (self.n_outputs, self.n_states):
            raise ShapeError(f"K has shape {tuple(gain.shape)}, expected "
                             f"{(self.n_outputs, self.n_states)}")
        return {"K": gain}

    def prepare(self, params: Params) -> Params:
        """K in row layout."""
        return {"K_rows": jnp.swapaxes(params["K"], -1, -2)}

    def initial_hidden(self, batch: int, dtype: Any = jnp.float32) -> jax.Array:
        """No memory: an empty hidden state."""
        return jnp.zeros((batch, 0), dtype=dtype)

    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """u = K x."""
        return hidden, observation @ prepared["K_rows"]

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """Not defined: a static gain reads the state, not a hidden state."""
        raise ShapeError("a static gain has no hidden state to read out")

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """No recurrence: an empty matrix."""
        return np.zeros((*np.shape(params["K"])[:-2], 0, 0))

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """u = K x as a feedthrough."""
        empty = np.zeros((0, 0))
        return Linearisation(W_in=np.zeros((0, self.n_states)), W=empty,
                             W_out=np.zeros((self.n_outputs, 0)), alpha=1.0,
                             feedthrough=np.asarray(params["K"], dtype=np.float64))
