"""``agent.kind: overlaps``: the reduced rank-1 model of science 3.1, trained directly on its
four order parameters.

Example
-------
>>> import jax, jax.numpy as jnp
>>> from closedloop.config import agent_config
>>> model = OverlapModel.from_config(agent_config(kind="overlaps", overlaps=[-0.1, 0.5, 0.2,
...                                                                        0.3]), 1, 1)
>>> params = model.init_params(jax.random.key(0), jnp.float64)
>>> model.recurrent_matrix(params).tolist()          # the maths' W of the 2-unit RNN
[[0.0, 0.0], [0.2, 0.3]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from closedloop.config import AgentConfig
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import Params
from closedloop.core.agents.rnn import RNNAgent
from closedloop.errors import ConfigError, ShapeError

OVERLAP_NAMES = ("s_zm", "s_zu", "s_vm", "s_vu")


def order_parameters(params: Mapping[str, Any]) -> dict[str, float]:
    """The four overlaps of a rank-1 low-rank network (science 3.1), from its m, z, u, v.

    sigma_zm = z.m, sigma_zu = z.u, sigma_vm = v.m, sigma_vu = v.u.

    Example
    -------
    >>> p = {"m": np.array([[1.0], [0.0]]), "z": np.array([[2.0, 3.0]]),
    ...      "u": np.array([[0.0], [1.0]]), "v": np.array([[0.5], [0.25]])}
    >>> order_parameters(p)
    {'s_zm': 2.0, 's_zu': 3.0, 's_vm': 0.5, 's_vu': 0.25}
    """
    m, z, u, v = (np.asarray(params[k], dtype=np.float64) for k in ("m", "z", "u", "v"))
    if m.shape[1] != 1 or z.shape[0] != 1 or u.shape[1] != 1:
        raise ShapeError("order parameters are defined for one input, one output and rank 1")
    m, z, u, v = m[:, 0], z[0], u[:, 0], v[:, 0]
    return {"s_zm": float(z @ m), "s_zu": float(z @ u), "s_vm": float(v @ m),
            "s_vu": float(v @ u)}


class OverlapsConfig(AgentConfig):
    """``agent.kind: overlaps``: the initial ``overlaps`` [s_zm, s_zu, s_vm, s_vu] (or
    ``--init-from`` a rank-1 low-rank run). The model is that of a linear network with
    dt = tau read through one input and one output. Parameters: ``s_zm``, ``s_zu``,
    ``s_vm``, ``s_vu``."""

    kind: str = Field("overlaps", pattern=AGENT_KIND_PATTERN)
    overlaps: list[float] | None = Field(None, min_length=4, max_length=4)

    def parameter_names(self) -> tuple[str, ...]:
        """The four overlaps."""
        return OVERLAP_NAMES

    def order_parameters(self, params: Mapping[str, Any]) -> dict[str, float] | None:
        """The parameters themselves."""
        return {name: float(np.asarray(params[name])) for name in OVERLAP_NAMES}


@dataclass(frozen=True)
class OverlapModel(RNNAgent):
    """The reduced rank-1 model of science 3.1, trained directly on its four order parameters.

    With W = u v^T, input m and readout z, h stays in span{m, u}: h = k_m m + k_u u. The
    coordinates (k_m, k_u) form a 2-unit linear RNN with row-layout weights

        W_in = [[1, 0]],   W = [[0, s_vm], [0, s_vu]],   W_out = [[s_zm], [s_zu]]

    so it runs through the same rollout, and its coupled matrix is exactly P_eff. It is exact
    for a linear, dt = tau, rank-1, g = 0 network read through one input and one output.
    Initial parameters may be given as overlaps or as a low-rank network's m, z, u, v.
    """

    initial_overlaps: tuple[float, ...] | None = None
    config_class: ClassVar[type[AgentConfig]] = OverlapsConfig

    @classmethod
    def from_config(cls, config: AgentConfig, n_inputs: int, n_outputs: int,
                    n_states: int | None = None) -> OverlapModel:
        """The 2-unit linear RNN of the overlaps, for one input and one output."""
        assert isinstance(config, OverlapsConfig)
        if (n_inputs, n_outputs) != (1, 1):
            raise ConfigError("the overlaps agent is the reduced model of a linear rank-1 "
                              "network with dt = tau, one input and one output")
        overlaps = None if config.overlaps is None else tuple(config.overlaps)
        return cls(n_inputs=1, n_outputs=1, size=2, activation="linear",
                   frozen=config.frozen(), initial_overlaps=overlaps)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict.fromkeys(OVERLAP_NAMES, ())

    def init_params(self, key: jax.Array, dtype: Any = jnp.float32) -> Params:
        if self.initial_overlaps is None:
            raise ConfigError("an overlaps agent needs agent.overlaps=[s_zm, s_zu, s_vm, s_vu] "
                              "or --init-from a rank-1 low-rank run")
        return self.to_params(dict(zip(OVERLAP_NAMES, self.initial_overlaps, strict=True)),
                              dtype)

    def to_params(self, arrays: Mapping[str, object], dtype: Any = jnp.float32) -> Params:
        if {"m", "z", "u", "v"} <= set(arrays):
            if "W_rand" in arrays:
                raise ShapeError("the reduced model is exact only without a random part (g = 0)")
            arrays = order_parameters(arrays)
        return super().to_params(arrays, dtype)

    def prepare(self, params: Params) -> Params:
        s_zm, s_zu, s_vm, s_vu = (params[k] for k in OVERLAP_NAMES)
        zero, one = jnp.zeros_like(s_zm), jnp.ones_like(s_zm)
        # leading axes of the overlaps (many snapshots) are kept
        return {"W_in": jnp.stack([one, zero], -1)[..., None, :],
                "W": jnp.stack([jnp.stack([zero, s_vm], -1), jnp.stack([zero, s_vu], -1)], -2),
                "W_out": jnp.stack([s_zm, s_zu], -1)[..., :, None]}
