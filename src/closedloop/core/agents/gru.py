"""``agent.kind: gru``: the gated recurrent unit, PyTorch's cell (``torch.nn.GRUCell``).

Example
-------
>>> from closedloop.config import agent_config
>>> GRUAgent.from_config(agent_config(kind="gru", size=3, bias=True), 1, 1).bias
True
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from closedloop.config import AgentConfig, InitSpec
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import ACTIVATIONS, DenseParameters, NetworkConfig, Params

GRU_GATES = ("r", "z", "n")
"""The GRU's gates in PyTorch's order (reset, update, new)."""


class GRUConfig(NetworkConfig):
    """``agent.kind: gru``: ``size`` units, ``activation`` of the candidate state (tanh in the
    standard cell; the gates are sigmoids), the six gate biases with ``bias`` (without: the
    bias-free cell, PyTorch's ``bias=False``) and ``output_bias``; discrete time.
    Parameters: ``W_yr`` ... ``W_hn``, ``W_out`` (and ``b_yr`` ... ``b_hn``, ``b_out``)."""

    kind: str = Field("gru", pattern=AGENT_KIND_PATTERN)

    def parameter_names(self) -> tuple[str, ...]:
        """The gate weights and biases and the readout."""
        return (*(f"W_{s}{g}" for s in "yh" for g in GRU_GATES), "W_out",
                *(f"b_{s}{g}" for s in "yh" for g in GRU_GATES), "b_out")


@functools.partial(jax.jit, static_argnums=0)
def _hidden_jacobians(agent: GRUAgent, params: Params) -> jax.Array:
    """dh'/dh at h = 0, y = 0 (maths layout) for parameters with one leading axis."""

    def one(member: Params) -> jax.Array:
        prepared = agent.prepare(member)
        zero_input = jnp.zeros((1, agent.n_inputs), dtype=jnp.float64)

        def update(h: jax.Array) -> jax.Array:
            return agent.step(prepared, h[None], zero_input)[0][0]

        return jax.jacfwd(update)(jnp.zeros(agent.size, dtype=jnp.float64))

    return jax.vmap(one)(params)


@dataclass(frozen=True)
class GRUAgent(DenseParameters):
    """Gated recurrent unit, PyTorch's cell (``torch.nn.GRUCell``), in the row layout:

        r  = sigmoid(y @ W_yr + b_yr + h @ W_hr + b_hr)
        z  = sigmoid(y @ W_yz + b_yz + h @ W_hz + b_hz)
        n  = phi(y @ W_yn + b_yn + r * (h @ W_hn + b_hn))
        h' = (1 - z) * n + z * h,        u = h' @ W_out (+ b_out)

    with phi = tanh in the standard cell. Without ``bias`` (the config's default) every gate
    bias is absent: the bias-free cell (PyTorch's ``bias=False``).

    Parameters
    ----------
    n_inputs, n_outputs, size
        Input, output and hidden dimensions.
    activation
        phi of the candidate state n: ``"tanh"`` (the standard cell), ``"relu"`` or
        ``"linear"``; the gates are always sigmoids.
    bias, output_bias
        Whether the six gate biases ``b_yr``, ``b_yz``, ``b_yn``, ``b_hr``, ``b_hz``,
        ``b_hn`` exist, and whether ``b_out`` does.
    init
        :class:`~closedloop.config.InitSpec` per parameter name. Default: U(-1/sqrt(N),
        1/sqrt(N)) for every gate weight and bias (PyTorch's), N(0, 1/N) entries for ``W_out``
        and zeros for ``b_out`` (the RNN's defaults).
    frozen
        Names of the parameters training leaves unchanged.

    Example
    -------
    >>> agent = GRUAgent(n_inputs=1, n_outputs=1, size=3)
    >>> params = agent.init_params(jax.random.key(0), jnp.float64)
    >>> sorted(params)
    ['W_hn', 'W_hr', 'W_hz', 'W_out', 'W_yn', 'W_yr', 'W_yz']
    >>> h, u = agent.step(agent.prepare(params), agent.initial_hidden(2), jnp.ones((2, 1)))
    >>> tuple(h.shape), tuple(u.shape)
    ((2, 3), (2, 1))
    >>> J = agent.recurrent_matrix(params)      # bias-free: I/2 + W_hn^T / 4 at the origin
    >>> bool(np.allclose(J, np.eye(3) / 2 + np.asarray(params["W_hn"]).T / 4))
    True
    """

    n_inputs: int
    n_outputs: int
    size: int
    activation: str = "tanh"
    bias: bool = False
    output_bias: bool = False
    init: Mapping[str, InitSpec] = field(default_factory=dict, compare=False)
    frozen: frozenset[str] = frozenset()
    config_class: ClassVar[type[AgentConfig]] = GRUConfig

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every parameter, in drawing order."""
        shapes = {f"W_y{g}": (self.n_inputs, self.size) for g in GRU_GATES}
        shapes.update({f"W_h{g}": (self.size, self.size) for g in GRU_GATES})
        shapes["W_out"] = (self.size, self.n_outputs)
        if self.bias:
            shapes.update({f"b_{s}{g}": (self.size,) for s in "yh" for g in GRU_GATES})
        if self.output_bias:
            shapes["b_out"] = (self.n_outputs,)
        return shapes

    def default_init(self, name: str) -> InitSpec:
        """PyTorch's U(-1/sqrt(N), 1/sqrt(N)) for the gates, the RNN's default for the
        readout."""
        if name == "b_out":
            return InitSpec(distribution="zeros")
        if name == "W_out":
            return InitSpec(distribution="normal", scale="1/sqrt(N)")
        return InitSpec(distribution="uniform", scale="1/sqrt(N)")

    def prepare(self, params: Params) -> Params:
        """The three gates' weights side by side (r, z, n): ``W_y`` (n_in x 3N), ``W_h``
        (N x 3N) and, with biases, ``b_y``, ``b_h`` (3N); leading axes kept."""
        prepared = {"W_y": jnp.concatenate([params[f"W_y{g}"] for g in GRU_GATES], -1),
                    "W_h": jnp.concatenate([params[f"W_h{g}"] for g in GRU_GATES], -1),
                    "W_out": params["W_out"]}
        if self.bias:
            for side in "yh":
                prepared[f"b_{side}"] = jnp.concatenate(
                    [params[f"b_{side}{g}"] for g in GRU_GATES], -1)
        if "b_out" in params:
            prepared["b_out"] = params["b_out"]
        return prepared

    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """Read ``observation`` (batch, n_inputs), update the hidden state, return (h, u)."""
        from_input = observation @ prepared["W_y"]
        from_hidden = hidden @ prepared["W_h"]
        if "b_y" in prepared:
            from_input = from_input + prepared["b_y"]
            from_hidden = from_hidden + prepared["b_h"]
        size = self.size
        reset = jax.nn.sigmoid(from_input[..., :size] + from_hidden[..., :size])
        update = jax.nn.sigmoid(from_input[..., size:2 * size] + from_hidden[..., size:2 * size])
        candidate = ACTIVATIONS[self.activation](from_input[..., 2 * size:]
                                                 + reset * from_hidden[..., 2 * size:])
        hidden = (1.0 - update) * candidate + update * hidden
        return hidden, self.output(prepared, hidden)

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """The Jacobian dh'/dh of the hidden update at h = 0, y = 0 in the maths' layout
        (J[i, j] = dh'_i / dh_j; N x N, float64; leading axes of ``params`` are kept), by
        ``jax.jacfwd`` of :meth:`step` (vmapped over the leading axes, compiled). Without
        biases it is I/2 + phi'(0) W_hn^T / 4."""
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        lead = arrays["W_hn"].shape[:-2]
        flat = {k: jnp.asarray(v.reshape(-1, *v.shape[len(lead):])) for k, v in arrays.items()}
        return np.asarray(_hidden_jacobians(self, flat)).reshape(*lead, self.size, self.size)
