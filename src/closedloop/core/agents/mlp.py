"""``agent.kind: mlp``: a feedforward policy without memory, u_t = MLP(y_t).

Example
-------
>>> from closedloop.config import agent_config
>>> MLPAgent.from_config(agent_config(kind="mlp", hidden_sizes=[8]), 1, 2).size
2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import jax
import numpy as np
from pydantic import Field, model_validator

from closedloop.config import AgentConfig, InitSpec
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import ACTIVATIONS, DenseParameters, Params
from closedloop.errors import ShapeError

MLP_MAX_LAYERS = 8
"""Most hidden layers an MLP agent has (its parameter names are W0..W7, b0..b7)."""


class MLPConfig(AgentConfig):
    """``agent.kind: mlp``: hidden layers of widths ``hidden_sizes`` (at most 8) with
    ``activation``, a linear output layer, hidden-layer biases with ``bias`` and an output
    bias with ``output_bias``. Its hidden state is the command it holds, so it has no
    ``size`` (it is the plant's input count). Parameters: ``W0``, ``b0``, ..., ``W_out``,
    ``b_out``."""

    kind: str = Field("mlp", pattern=AGENT_KIND_PATTERN)
    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 64],
                                    max_length=MLP_MAX_LAYERS)
    activation: Literal["tanh", "relu", "linear"] = "tanh"
    bias: bool = False
    output_bias: bool = False

    def parameter_names(self) -> tuple[str, ...]:
        """``W{i}``, ``b{i}`` for each hidden layer, ``W_out``, ``b_out``."""
        layers = range(len(self.hidden_sizes))
        return (*(f"W{i}" for i in layers), *(f"b{i}" for i in layers), "W_out", "b_out")

    @model_validator(mode="after")
    def _check_widths(self) -> MLPConfig:
        if not all(1 <= width <= 100_000 for width in self.hidden_sizes):
            raise ValueError("agent.hidden_sizes must be widths between 1 and 100000")
        return self


@dataclass(frozen=True)
class MLPAgent(DenseParameters):
    """Feedforward policy without memory: u_t = MLP(y_t), in the row layout

        a_0 = y,   a_{l+1} = phi(a_l @ W{l} (+ b{l})),   u = a_L @ W_out (+ b_out)

    for L = len(hidden_sizes) hidden layers. To fit the closed loop, its hidden state is the
    command it holds (a zero-order hold): ``size`` = ``n_outputs``, ``step`` returns (u, u)
    with u = MLP(y) and ``output`` returns the hidden state. With the rollout's time indexing
    the loop is then x_{t+1} = f(x_t, MLP(y_t)), and the coupled state is (x, u_held).

    Parameters
    ----------
    n_inputs, n_outputs
        Input and output dimensions.
    hidden_sizes
        Widths of the hidden layers (at most :data:`MLP_MAX_LAYERS`; none: u = y @ W_out).
    size
        The hidden-state size: ``n_outputs`` (None sets it; anything else is refused).
    activation
        phi of the hidden layers (``"tanh"``, ``"relu"``, ``"linear"``); the output layer is
        linear.
    bias, output_bias
        Whether the hidden layers have biases ``b0``, ``b1``, ..., and whether the output
        layer has ``b_out``.
    init
        :class:`~closedloop.config.InitSpec` per parameter name; N in its scales is the
        layer's fan-in. Default: N(0, 1/fan_in) entries for every weight, zero biases.
    frozen
        Names of the parameters training leaves unchanged.

    Example
    -------
    >>> import jax.numpy as jnp
    >>> agent = MLPAgent(n_inputs=2, n_outputs=1, hidden_sizes=(4,))
    >>> params = agent.init_params(jax.random.key(0), jnp.float64)
    >>> {k: tuple(v.shape) for k, v in params.items()}, agent.size
    ({'W0': (2, 4), 'W_out': (4, 1)}, 1)
    >>> y = jnp.array([[0.5, -1.0]])
    >>> held, u = agent.step(agent.prepare(params), agent.initial_hidden(1), y)
    >>> bool(jnp.allclose(u, jnp.tanh(y @ params["W0"]) @ params["W_out"]))
    True
    >>> bool(jnp.all(agent.output(agent.prepare(params), held) == u))
    True
    """

    n_inputs: int
    n_outputs: int
    hidden_sizes: tuple[int, ...] = (64, 64)
    size: int | None = None
    activation: str = "tanh"
    bias: bool = False
    output_bias: bool = False
    init: Mapping[str, InitSpec] = field(default_factory=dict, compare=False)
    frozen: frozenset[str] = frozenset()
    config_class: ClassVar[type[AgentConfig]] = MLPConfig

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(w) for w in self.hidden_sizes))
        if self.size is None:
            object.__setattr__(self, "size", self.n_outputs)
        if self.size != self.n_outputs:
            raise ShapeError(f"an MLP agent's hidden state is the command it holds: size must "
                             f"be n_outputs = {self.n_outputs}, got {self.size}")
        if len(self.hidden_sizes) > MLP_MAX_LAYERS or any(w < 1 for w in self.hidden_sizes):
            raise ShapeError(f"an MLP agent has at most {MLP_MAX_LAYERS} hidden layers of "
                             f"width >= 1, got {list(self.hidden_sizes)}")

    def widths(self) -> tuple[int, ...]:
        """n_inputs, the hidden widths, n_outputs."""
        return (self.n_inputs, *self.hidden_sizes, self.n_outputs)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every parameter, in drawing order (layer by layer)."""
        widths = self.widths()
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(len(self.hidden_sizes)):
            shapes[f"W{layer}"] = (widths[layer], widths[layer + 1])
            if self.bias:
                shapes[f"b{layer}"] = (widths[layer + 1],)
        shapes["W_out"] = (widths[-2], self.n_outputs)
        if self.output_bias:
            shapes["b_out"] = (self.n_outputs,)
        return shapes

    def init_size(self, name: str) -> int:
        """The fan-in of the layer ``name`` belongs to."""
        layer = len(self.hidden_sizes) if name in ("W_out", "b_out") else int(name[1:])
        return self.widths()[layer]

    def default_init(self, name: str) -> InitSpec:
        """N(0, 1/fan_in) entries for the weights, zero biases."""
        if name.startswith("b"):
            return InitSpec(distribution="zeros")
        return InitSpec(distribution="normal", scale="1/sqrt(N)")

    def policy(self, prepared: Params, observation: jax.Array) -> jax.Array:
        """u = MLP(y) for ``observation`` (batch, n_inputs)."""
        phi = ACTIVATIONS[self.activation]
        activity = observation
        for layer in range(len(self.hidden_sizes)):
            activity = activity @ prepared[f"W{layer}"]
            if f"b{layer}" in prepared:
                activity = activity + prepared[f"b{layer}"]
            activity = phi(activity)
        u = activity @ prepared["W_out"]
        if "b_out" in prepared:
            u = u + prepared["b_out"]
        return u

    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """u = MLP(y); the new hidden state is u (held), returned as (u, u)."""
        u = self.policy(prepared, observation)
        return u, u

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """The held command: the hidden state itself."""
        return hidden

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """No recurrence: zeros (n_outputs x n_outputs; leading axes of ``params`` kept)."""
        lead = np.shape(params["W_out"])[:-2]
        return np.zeros((*lead, self.size, self.size))
