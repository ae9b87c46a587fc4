"""``agent.kind: rnn``: the paper's continuous-time rate RNN (science 1.2).

Example
-------
>>> import jax, jax.numpy as jnp
>>> agent = RNNAgent(n_inputs=1, n_outputs=1, size=4, dt=0.5)
>>> h, u = agent.step(agent.init_params(jax.random.key(0)), agent.initial_hidden(2),
...                   jnp.ones((2, 1)))
>>> tuple(h.shape), tuple(u.shape), agent.alpha
((2, 4), (2, 1), 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator

from closedloop.config import InitSpec
from closedloop.config.schema import AGENT_KIND_PATTERN, AgentConfig
from closedloop.core.agents.base import (
    ACTIVATIONS,
    DenseParameters,
    Linearisation,
    NetworkConfig,
    Params,
)


class RNNConfig(NetworkConfig):
    """``agent.kind: rnn``: the continuous-time rate RNN, Euler-discretised (science 1.2):
    ``size`` units, ``activation`` (tanh, relu or linear), Euler step ``dt`` and time constant
    ``tau`` (alpha = dt / tau), and the biases b (``bias``) and b_out (``output_bias``), off in
    every paper experiment. Parameters: ``W_in``, ``W``, ``W_out`` (and ``b``, ``b_out``).

    Example
    -------
    >>> RNNConfig(size=8, dt=0.1, tau=0.5).arguments()["dt"]
    0.1
    """

    kind: str = Field("rnn", pattern=AGENT_KIND_PATTERN)
    dt: float = Field(1.0, gt=0, le=1e3)
    tau: float = Field(1.0, gt=0, le=1e6)

    def parameter_names(self) -> tuple[str, ...]:
        """``W_in``, ``W``, ``W_out``, ``b``, ``b_out``."""
        return ("W_in", "W", "W_out", "b", "b_out")

    @model_validator(mode="after")
    def _check_step(self) -> RNNConfig:
        if self.dt > self.tau:
            raise ValueError("agent.dt must be <= agent.tau (dt/tau > 1 overshoots)")
        return self


@dataclass(frozen=True)
class RNNAgent(DenseParameters):
    """Continuous-time rate RNN, Euler-discretised (science 1.2), in the row layout above.

    Parameters
    ----------
    n_inputs, n_outputs, size
        Input, output and hidden dimensions.
    activation
        ``"tanh"``, ``"relu"`` or ``"linear"``.
    dt, tau
        Euler step and time constant; alpha = dt / tau.
    bias, output_bias
        Whether b and b_out exist (off in every paper experiment).
    init
        :class:`~closedloop.config.InitSpec` per parameter name (drawing only; it does not
        change the computation, so it takes no part in comparisons).
    frozen
        Names of the parameters training leaves unchanged.
    """

    n_inputs: int
    n_outputs: int
    size: int
    activation: str = "tanh"
    dt: float = 1.0
    tau: float = 1.0
    bias: bool = False
    output_bias: bool = False
    init: Mapping[str, InitSpec] = field(default_factory=dict, compare=False)
    frozen: frozenset[str] = frozenset()
    config_class: ClassVar[type[AgentConfig]] = RNNConfig

    @property
    def alpha(self) -> float:
        """dt / tau."""
        return self.dt / self.tau

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every parameter, in drawing order."""
        shapes = {"W_in": (self.n_inputs, self.size), "W": (self.size, self.size),
                  "W_out": (self.size, self.n_outputs)}
        if self.bias:
            shapes["b"] = (self.size,)
        if self.output_bias:
            shapes["b_out"] = (self.n_outputs,)
        return shapes

    def default_init(self, name: str) -> InitSpec:
        """Initialisation used when the config names none for ``name``."""
        if name in ("b", "b_out"):
            return InitSpec(distribution="zeros")
        return InitSpec(distribution="normal", scale="1/sqrt(N)")

    def prepare(self, params: Params) -> Params:
        """Row-layout dense weights for the rollout (computed once per rollout)."""
        return params

    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """Read ``observation`` (batch, n_inputs), update the hidden state, return (h, u)."""
        pre = hidden @ prepared["W"] + observation @ prepared["W_in"]
        if "b" in prepared:
            pre = pre + prepared["b"]
        rate = ACTIVATIONS[self.activation](pre)
        alpha = self.alpha
        hidden = rate if alpha == 1.0 else hidden + alpha * (rate - hidden)
        return hidden, self.output(prepared, hidden)

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """The maths' W (N x N, float64; leading axes of ``params`` are kept)."""
        dense = self.prepare({k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()})
        return np.swapaxes(np.asarray(dense["W"]), -1, -2)

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """The linear part at the origin (maths layout, float64; leading axes of ``params``
        are kept), for the closed-form coupled matrix."""
        dense = {k: np.asarray(v) for k, v in self.prepare(
            {k: jnp.asarray(v, dtype=jnp.float64) for k, v in params.items()}).items()}

        def maths(matrix: np.ndarray) -> np.ndarray:   # row layout -> maths; batch axes kept
            return np.swapaxes(matrix, -1, -2)

        return Linearisation(W_in=maths(dense["W_in"]), W=maths(dense["W"]),
                             W_out=maths(dense["W_out"]), alpha=self.alpha,
                             activation=self.activation, bias=dense.get("b"),
                             output_bias=dense.get("b_out"))


