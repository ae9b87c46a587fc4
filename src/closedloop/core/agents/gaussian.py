"""The learned exploration scale of black-box training (``agent.learned_std``): any agent plus
the parameter ``log_std``.

Example
-------
>>> from closedloop.core.agents.static_gain import StaticGain
>>> policy = GaussianPolicy(StaticGain(2, 1))
>>> policy.n_inputs, policy.size, policy.reads_state
(2, 0, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.core.agents.base import Agent, Linearisation, Params, as_array
from closedloop.errors import ShapeError


@dataclass(frozen=True)
class GaussianPolicy(Agent):
    """An agent with a learned exploration scale for black-box training: the agent ``inner``
    plus the parameter ``log_std`` (one per output, initially 0), so that the Gaussian policy's
    standard deviation is ``training.exploration_std * exp(log_std)``. Everything else is the
    inner agent's: its rollout, its coupled Jacobian and spectrum ignore ``log_std``.

    Example
    -------
    >>> from closedloop.core.agents.static_gain import StaticGain
    >>> policy = GaussianPolicy(StaticGain(2, 1))
    >>> sorted(policy.parameter_shapes()), policy.reads_state
    (['K', 'log_std'], True)
    >>> policy.init_params(jax.random.key(0))["log_std"].tolist()
    [0.0]
    """

    inner: Agent

    @property
    def n_inputs(self) -> int:  # type: ignore[override]
        """The inner agent's."""
        return self.inner.n_inputs

    @property
    def n_outputs(self) -> int:  # type: ignore[override]
        """The inner agent's."""
        return self.inner.n_outputs

    @property
    def size(self) -> int:  # type: ignore[override]
        """The inner agent's."""
        return self.inner.size

    @property
    def alpha(self) -> float:  # type: ignore[override]
        """The inner agent's."""
        return self.inner.alpha

    @property
    def reads_state(self) -> bool:  # type: ignore[override]
        """The inner agent's."""
        return self.inner.reads_state

    def is_trainable(self, name: str) -> bool:
        """As the inner agent says (``trainable`` may freeze ``log_std`` too)."""
        return self.inner.is_trainable(name)

    def initial_hidden(self, batch: int, dtype: Any = jnp.float32) -> jax.Array:
        """The inner agent's."""
        return self.inner.initial_hidden(batch, dtype)

    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """The inner agent's (the mean command)."""
        return self.inner.step(prepared, hidden, observation)

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """The inner agent's."""
        return self.inner.output(prepared, hidden)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The inner agent's parameters and ``log_std`` (n_outputs,)."""
        return {**self.inner.parameter_shapes(), "log_std": (self.inner.n_outputs,)}

    def init_params(self, key: jax.Array, dtype: Any = jnp.float32) -> Params:
        """The inner agent's parameters from ``key`` (as without the head) and log_std = 0."""
        return {**self.inner.init_params(key, dtype),
                "log_std": jnp.zeros(self.inner.n_outputs, dtype=dtype)}

    def to_params(self, arrays: Mapping[str, object], dtype: Any = jnp.float32) -> Params:
        """Shape-checked parameters, ``log_std`` included."""
        if "log_std" not in arrays:
            raise ShapeError("parameters do not fit this agent: missing ['log_std']")
        log_std = as_array(arrays["log_std"], dtype)
        if tuple(log_std.shape) != (self.inner.n_outputs,):
            raise ShapeError(f"parameter log_std has shape {tuple(log_std.shape)}, expected "
                             f"{(self.inner.n_outputs,)}")
        inner = self.inner.to_params({k: v for k, v in arrays.items() if k != "log_std"}, dtype)
        return {**inner, "log_std": log_std}

    def _inner_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != "log_std"}

    def prepare(self, params: Params) -> Params:
        """The inner agent's prepared weights."""
        return self.inner.prepare(self._inner_params(params))

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """The inner agent's recurrent matrix."""
        return self.inner.recurrent_matrix(self._inner_params(params))

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """The inner agent's linearisation."""
        return self.inner.linearisation(self._inner_params(params))
