"""``agent.kind: lowrank``: the linear RNN with W = u v^T (+ g W_rand) of the paper's theory
(science 1.2, 3).

Example
-------
>>> import jax
>>> agent = LowRankRNN(n_inputs=1, n_outputs=1, size=5, activation="linear")
>>> params = agent.init_params(jax.random.key(0))
>>> {k: tuple(v.shape) for k, v in params.items()}
{'m': (5, 1), 'z': (1, 5), 'u': (5, 1), 'v': (5, 1)}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from pydantic import Field, model_validator

from closedloop.config import AgentConfig, InitSpec
from closedloop.config.schema import AGENT_KIND_PATTERN
from closedloop.core.agents.base import Params
from closedloop.core.agents.overlaps import order_parameters
from closedloop.core.agents.rnn import RNNAgent, RNNConfig
from closedloop.errors import ConfigError


class LowRankConfig(RNNConfig):
    """``agent.kind: lowrank``: the rate RNN's fields plus ``rank`` r (<= size),
    ``random_gain`` g of a random part g W_rand (never trained) and ``prescribed_overlap``
    (sigma_zm = z.m at initialisation). Parameters: ``m``, ``z``, ``u``, ``v`` (and
    ``W_rand`` when g > 0)."""

    kind: str = Field("lowrank", pattern=AGENT_KIND_PATTERN)
    rank: int = Field(1, ge=1, le=100_000)
    random_gain: float = Field(0.0, ge=0, le=1e3)
    prescribed_overlap: float | None = Field(None, ge=-1e3, le=1e3)

    def parameter_names(self) -> tuple[str, ...]:
        """``m``, ``z``, ``u``, ``v``, ``W_rand``."""
        return ("m", "z", "u", "v", "W_rand")

    def order_parameters(self, params: Mapping[str, Any]) -> dict[str, float] | None:
        """The overlaps z.m, z.u, v.m, v.u of a rank-1 network (None for rank > 1)."""
        return order_parameters(params) if self.rank == 1 else None

    def has_order_parameters(self) -> bool:
        """Rank 1 only."""
        return self.rank == 1

    @model_validator(mode="after")
    def _check_rank(self) -> LowRankConfig:
        if self.rank > self.size:
            raise ValueError("agent.rank must be <= agent.size")
        return self


@dataclass(frozen=True)
class LowRankRNN(RNNAgent):
    """RNN with W = u v^T + g W_rand (rank r), input vectors m and readout z (science 1.2).

    ``prescribed_overlap`` sets sigma_zm = z.m = s at initialisation: z = (s / |m|^2) m plus a
    random component orthogonal to m whose norm is 0.1 times that of the parallel part.
    """

    rank: int = 1
    random_gain: float = 0.0
    prescribed_overlap: float | None = None
    config_class: ClassVar[type[AgentConfig]] = LowRankConfig

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"m": (self.size, self.n_inputs), "z": (self.n_outputs, self.size),
                  "u": (self.size, self.rank), "v": (self.size, self.rank)}
        if self.random_gain > 0:
            shapes["W_rand"] = (self.size, self.size)
        return shapes

    def default_init(self, name: str) -> InitSpec:
        if name in ("m", "z"):
            return InitSpec(distribution="uniform", scale="1/sqrt(N)")
        return InitSpec(distribution="normal", scale="1/sqrt(N)")

    def is_trainable(self, name: str) -> bool:
        return name != "W_rand" and name not in self.frozen

    def adjust_init(self, params: Params, key: jax.Array) -> Params:
        if self.prescribed_overlap is None:
            return params
        if self.n_inputs != 1 or self.n_outputs != 1:
            raise ConfigError("agent.prescribed_overlap needs one input and one output")
        m = params["m"][:, 0]
        parallel = (self.prescribed_overlap / (m @ m)) * m
        noise = jax.random.normal(key, (self.size,), dtype=jnp.float64)
        noise = noise - (noise @ m) / (m @ m) * m
        orthogonal = noise / jnp.linalg.norm(noise) * 0.1 * jnp.linalg.norm(parallel)
        return {**params, "z": (parallel + orthogonal)[None, :]}

    def prepare(self, params: Params) -> Params:
        recurrent = params["v"] @ jnp.swapaxes(params["u"], -1, -2)
        if "W_rand" in params:
            recurrent = recurrent + self.random_gain * jnp.swapaxes(params["W_rand"], -1, -2)
        return {"W_in": jnp.swapaxes(params["m"], -1, -2), "W": recurrent,
                "W_out": jnp.swapaxes(params["z"], -1, -2)}
