"""Agents: the continuous-time rate RNN, the low-rank RNN and the static-gain policy (SPEC 1.2).

Conventions (the one place the mapping between SPEC.md and the code is written)
------------------------------------------------------------------------------
SPEC.md writes column vectors: h_t = h_{t-1} + (dt/tau)(-h_{t-1} + phi(W h_{t-1} + W_in y_t)),
u_t = W_out h_t. The code is batch-first with row vectors, as the paper's authors wrote it:

    h_t = h_{t-1} + (dt/tau) * (-h_{t-1} + phi(h_{t-1} @ W + y_t @ W_in [+ b]))
    u_t = h_t @ W_out [+ b_out]

so the stored ``W_in`` (n_in x N), ``W`` (N x N) and ``W_out`` (N x n_out) are the transposes
of the maths' W_in, W, W_out. With dt = tau the update is exactly h_t = phi(...).

The low-rank RNN stores the maths' own vectors: ``m`` (N x n_in, the input vectors),
``z`` (n_out x N, the readout), ``u`` and ``v`` (N x r), so W_maths = u v^T (+ g W_rand) and
its row-layout weights are W_in = m^T, W = v u^T (+ g W_rand^T), W_out = z^T.

The static-gain policy stores K (n_u x n_x) of u = K x and reads the full plant state.

Every agent is a pure function of a parameter dict (``torch.func``-friendly): ``prepare``
turns parameters into row-layout dense weights once per rollout, ``step`` advances one time
step. :class:`AgentModule` wraps an agent and its parameters as an ``nn.Module``.

Example
-------
>>> import torch
>>> from closedloop.config import AgentConfig
>>> agent = build_agent(AgentConfig(size=8), n_inputs=1, n_outputs=1)
>>> params = agent.init_params(torch.Generator().manual_seed(0))
>>> sorted(params), tuple(params["W"].shape)
(['W', 'W_in', 'W_out'], (8, 8))
>>> h, u = agent.step(agent.prepare(params), agent.initial_hidden(4, torch.float32),
...                   torch.ones(4, 1))
>>> tuple(h.shape), tuple(u.shape)
((4, 8), (4, 1))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from closedloop.config import AgentConfig, InitSpec
from closedloop.errors import ConfigError, ShapeError

Params = dict[str, torch.Tensor]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "linear": lambda x: x,
}


def activation_slope(name: str, pre_activation: np.ndarray) -> np.ndarray:
    """phi'(pre_activation) elementwise; relu uses the right derivative (1) at 0."""
    if name == "tanh":
        return 1.0 - np.tanh(pre_activation) ** 2
    if name == "relu":
        return (pre_activation >= 0).astype(np.float64)
    return np.ones_like(pre_activation)


def draw(spec: InitSpec, shape: tuple[int, ...], size: int, generator: torch.Generator
         ) -> torch.Tensor:
    """Draw one parameter (float64) as ``spec`` says, for a network of ``size`` units."""
    scale = spec.gain * spec.resolve_scale(size)
    if spec.distribution == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    if spec.distribution == "normal":
        return torch.randn(shape, generator=generator, dtype=torch.float64) * scale
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * scale


def as_tensor(value: object, dtype: torch.dtype, device: torch.device | str = "cpu"
              ) -> torch.Tensor:
    """A detached copy of an array-like or tensor, in ``dtype`` on ``device``."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
    return tensor.to(dtype=dtype, device=device).clone()


@dataclass(frozen=True)
class Linearisation:
    """An agent's linear part at the origin in the maths' layout (float64).

    The agent's one-step map is h' = (1 - alpha) h + alpha * phi(W h + W_in y + b),
    u = W_out h + b_out. The static gain has N = 0 and ``feedthrough`` = K.
    """

    W_in: np.ndarray
    W: np.ndarray
    W_out: np.ndarray
    alpha: float
    activation: str = "linear"
    bias: np.ndarray | None = None
    output_bias: np.ndarray | None = None
    feedthrough: np.ndarray | None = None


@dataclass
class RNNAgent:
    """Continuous-time rate RNN, Euler-discretised (SPEC 1.2), in the row layout above.

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
        :class:`~closedloop.config.InitSpec` per parameter name.
    trainable
        Per parameter name; parameters not listed are trained.
    """

    n_inputs: int
    n_outputs: int
    size: int
    activation: str = "tanh"
    dt: float = 1.0
    tau: float = 1.0
    bias: bool = False
    output_bias: bool = False
    init: Mapping[str, InitSpec] = field(default_factory=dict)
    trainable: Mapping[str, bool] = field(default_factory=dict)
    reads_state = False

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

    def is_trainable(self, name: str) -> bool:
        """Whether parameter ``name`` is updated by training."""
        return bool(self.trainable.get(name, True))

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Params:
        """Draw all parameters (in float64, then cast, so float32 and float64 runs start
        from the same numbers); trainable ones require grad."""
        params = {}
        for name, shape in self.parameter_shapes().items():
            spec = self.init.get(name) or self.default_init(name)
            params[name] = draw(spec, shape, self.size, generator)
        params = self.adjust_init(params, generator)
        return self.to_tensors(params, dtype, device)

    def adjust_init(self, params: Params, generator: torch.Generator) -> Params:
        """Hook for agents whose initialisation is not entry-wise independent."""
        return params

    def to_tensors(self, arrays: Mapping[str, object], dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> Params:
        """Validate shapes and make leaf tensors (trainable ones require grad)."""
        shapes = self.parameter_shapes()
        missing = sorted(set(shapes) - set(arrays))
        extra = sorted(set(arrays) - set(shapes))
        if missing or extra:
            raise ShapeError(f"parameters do not fit this agent: missing {missing}, "
                             f"unexpected {extra}")
        params = {}
        for name, shape in shapes.items():
            tensor = as_tensor(arrays[name], dtype, device)
            if tuple(tensor.shape) != shape:
                raise ShapeError(f"parameter {name} has shape {tuple(tensor.shape)}, "
                                 f"expected {shape}")
            params[name] = tensor.requires_grad_(self.is_trainable(name))
        return params

    def prepare(self, params: Params) -> Params:
        """Row-layout dense weights for the rollout (done once per rollout)."""
        return params

    def initial_hidden(self, batch: int, dtype: torch.dtype, device: torch.device | str = "cpu"
                       ) -> torch.Tensor:
        """h = 0 for a batch."""
        return torch.zeros(batch, self.size, dtype=dtype, device=device)

    def step(self, prepared: Params, hidden: torch.Tensor, observation: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Read ``observation`` (batch, n_inputs), update the hidden state, return (h, u)."""
        pre = hidden @ prepared["W"] + observation @ prepared["W_in"]
        if "b" in prepared:
            pre = pre + prepared["b"]
        rate = ACTIVATIONS[self.activation](pre)
        alpha = self.alpha
        hidden = rate if alpha == 1.0 else hidden + alpha * (-hidden + rate)
        return hidden, self.output(prepared, hidden)

    def output(self, prepared: Params, hidden: torch.Tensor) -> torch.Tensor:
        """u = h @ W_out (+ b_out)."""
        u = hidden @ prepared["W_out"]
        if "b_out" in prepared:
            u = u + prepared["b_out"]
        return u

    def linearisation(self, params: Mapping[str, np.ndarray]) -> Linearisation:
        """The linear part at the origin (maths layout, float64), for the coupled matrix."""
        dense = self.prepare_numpy(params)
        def maths(matrix: np.ndarray) -> np.ndarray:   # row layout -> maths; batch axes kept
            return np.swapaxes(matrix, -1, -2)

        return Linearisation(W_in=maths(dense["W_in"]), W=maths(dense["W"]),
                             W_out=maths(dense["W_out"]),
                             alpha=self.alpha, activation=self.activation,
                             bias=dense.get("b"), output_bias=dense.get("b_out"))

    def prepare_numpy(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`prepare` on NumPy arrays (float64)."""
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in
                   params.items()}
        return {k: v.numpy() for k, v in self.prepare(tensors).items()}


@dataclass
class LowRankRNN(RNNAgent):
    """RNN with W = u v^T + g W_rand (rank r), input vectors m and readout z (SPEC 1.2).

    ``prescribed_overlap`` sets sigma_zm = z.m = s at initialisation: z = (s / |m|^2) m plus a
    random component orthogonal to m whose norm is 0.1 times that of the parallel part.
    """

    rank: int = 1
    random_gain: float = 0.0
    prescribed_overlap: float | None = None

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
        return name != "W_rand" and bool(self.trainable.get(name, True))

    def adjust_init(self, params: Params, generator: torch.Generator) -> Params:
        if self.prescribed_overlap is None:
            return params
        if self.n_inputs != 1 or self.n_outputs != 1:
            raise ConfigError("agent.prescribed_overlap needs one input and one output")
        m = params["m"][:, 0]
        parallel = (self.prescribed_overlap / float(m @ m)) * m
        noise = torch.randn(self.size, generator=generator, dtype=torch.float64)
        noise = noise - (noise @ m) / (m @ m) * m
        orthogonal = noise / noise.norm() * 0.1 * parallel.norm()
        params["z"] = (parallel + orthogonal)[None, :]
        return params

    def prepare(self, params: Params) -> Params:
        recurrent = params["v"] @ params["u"].mT
        if "W_rand" in params:
            recurrent = recurrent + self.random_gain * params["W_rand"].mT
        return {"W_in": params["m"].mT, "W": recurrent, "W_out": params["z"].mT}


OVERLAP_NAMES = ("s_zm", "s_zu", "s_vm", "s_vu")


def order_parameters(params: Mapping[str, Any]) -> dict[str, float]:
    """The four overlaps of a rank-1 low-rank network (SPEC 3.1), from its m, z, u, v.

    sigma_zm = z.m, sigma_zu = z.u, sigma_vm = v.m, sigma_vu = v.u.

    Example
    -------
    >>> import numpy as np
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


@dataclass
class OverlapModel(RNNAgent):
    """The reduced rank-1 model of SPEC 3.1, trained directly on its four order parameters.

    With W = u v^T, input m and readout z, h stays in span{m, u}: h = k_m m + k_u u. The
    coordinates (k_m, k_u) form a 2-unit linear RNN with row-layout weights

        W_in = [[1, 0]],   W = [[0, s_vm], [0, s_vu]],   W_out = [[s_zm], [s_zu]]

    so it runs through the same rollout, and its coupled matrix is exactly P_eff. It is exact
    for a linear, dt = tau, rank-1, g = 0 network read through one input and one output.
    Initial parameters may be given as overlaps or as a low-rank network's m, z, u, v.
    """

    initial_overlaps: list[float] | None = None

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return dict.fromkeys(OVERLAP_NAMES, ())

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Params:
        if self.initial_overlaps is None:
            raise ConfigError("an overlaps agent needs agent.overlaps=[s_zm, s_zu, s_vm, s_vu] "
                              "or --init-from a rank-1 low-rank run")
        return self.to_tensors(dict(zip(OVERLAP_NAMES, self.initial_overlaps, strict=True)),
                               dtype, device)

    def to_tensors(self, arrays: Mapping[str, object], dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> Params:
        if {"m", "z", "u", "v"} <= set(arrays):
            if "W_rand" in arrays:
                raise ShapeError("the reduced model is exact only without a random part (g = 0)")
            arrays = order_parameters(arrays)
        return super().to_tensors(arrays, dtype, device)

    def prepare(self, params: Params) -> Params:
        s_zm, s_zu, s_vm, s_vu = (params[k] for k in OVERLAP_NAMES)
        zero, one = torch.zeros_like(s_zm), torch.ones_like(s_zm)
        # leading axes of the overlaps (an ensemble) are kept
        return {"W_in": torch.stack([one, zero], -1)[..., None, :],
                "W": torch.stack([torch.stack([zero, s_vm], -1),
                                  torch.stack([zero, s_vu], -1)], -2),
                "W_out": torch.stack([s_zm, s_zu], -1)[..., :, None]}


@dataclass
class StaticGain:
    """The static-gain policy u = K x on the full plant state (no memory).

    Example
    -------
    >>> import torch
    >>> policy = StaticGain(n_states=2, n_outputs=1)
    >>> params = policy.to_tensors({"K": [[-0.5, -1.0]]})
    >>> policy.step(policy.prepare(params), policy.initial_hidden(1, torch.float32),
    ...             torch.tensor([[1.0, 2.0]]))[1].tolist()
    [[-2.5]]
    """

    n_states: int
    n_outputs: int
    initial_gain: list[list[float]] | None = None
    trainable: Mapping[str, bool] = field(default_factory=dict)
    reads_state = True
    size = 0
    alpha = 1.0
    activation = "linear"

    @property
    def n_inputs(self) -> int:
        """The static gain reads the whole state."""
        return self.n_states

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"K": (self.n_outputs, self.n_states)}

    def is_trainable(self, name: str) -> bool:
        return bool(self.trainable.get(name, True))

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Params:
        gain = (np.zeros((self.n_outputs, self.n_states)) if self.initial_gain is None
                else np.asarray(self.initial_gain, dtype=np.float64))
        return self.to_tensors({"K": gain}, dtype, device)

    def to_tensors(self, arrays: Mapping[str, object], dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> Params:
        if set(arrays) != {"K"}:
            raise ShapeError(f"a static gain has one parameter K, got {sorted(arrays)}")
        gain = as_tensor(arrays["K"], dtype, device)
        if tuple(gain.shape) != (self.n_outputs, self.n_states):
            raise ShapeError(f"K has shape {tuple(gain.shape)}, expected "
                             f"{(self.n_outputs, self.n_states)}")
        return {"K": gain.clone().requires_grad_(self.is_trainable("K"))}

    def prepare(self, params: Params) -> Params:
        return {"K_rows": params["K"].mT}

    def initial_hidden(self, batch: int, dtype: torch.dtype, device: torch.device | str = "cpu"
                       ) -> torch.Tensor:
        return torch.zeros(batch, 0, dtype=dtype, device=device)

    def step(self, prepared: Params, hidden: torch.Tensor, observation: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden, observation @ prepared["K_rows"]

    def output(self, prepared: Params, hidden: torch.Tensor) -> torch.Tensor:
        raise ShapeError("a static gain has no hidden state to read out")

    def linearisation(self, params: Mapping[str, np.ndarray]) -> Linearisation:
        empty = np.zeros((0, 0))
        return Linearisation(W_in=np.zeros((0, self.n_states)), W=empty,
                             W_out=np.zeros((self.n_outputs, 0)), alpha=1.0,
                             feedthrough=np.asarray(params["K"], dtype=np.float64))


Agent = RNNAgent | StaticGain


def build_agent(config: AgentConfig, n_inputs: int, n_outputs: int, n_states: int | None = None
                ) -> Agent:
    """The agent a config describes, for ``n_inputs`` observations and ``n_outputs`` controls.

    A static gain reads the full state, so it needs ``n_states``.
    """
    if config.kind == "static_gain":
        if n_states is None:
            raise ConfigError("a static-gain agent needs the plant's state dimension")
        return StaticGain(n_states, n_outputs, config.gain, dict(config.trainable))
    common = dict(n_inputs=n_inputs, n_outputs=n_outputs, size=config.size,
                  activation=config.activation, dt=config.dt, tau=config.tau,
                  bias=config.bias, output_bias=config.output_bias, init=dict(config.init),
                  trainable=dict(config.trainable))
    if config.kind == "overlaps":
        if (n_inputs, n_outputs) != (1, 1) or config.activation != "linear" or \
                config.dt != config.tau:
            raise ConfigError("the overlaps agent is the reduced model of a linear rank-1 "
                              "network with dt = tau, one input and one output")
        common.update(size=2, init={}, trainable=dict(config.trainable))
        return OverlapModel(**common, initial_overlaps=config.overlaps)
    if config.kind == "lowrank":
        return LowRankRNN(**common, rank=config.rank, random_gain=config.random_gain,
                          prescribed_overlap=config.prescribed_overlap)
    return RNNAgent(**common)


def trainable_names(agent: Agent, params: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the parameters that training updates, in a fixed order."""
    return [name for name in params if agent.is_trainable(name)]


class AgentModule(nn.Module):
    """An agent and its parameters as an ``nn.Module`` (for users who prefer modules).

    Example
    -------
    >>> import torch
    >>> from closedloop.config import AgentConfig
    >>> agent = build_agent(AgentConfig(size=4), 1, 1)
    >>> module = AgentModule(agent, agent.init_params(torch.Generator().manual_seed(0)))
    >>> h, u = module(module.agent.initial_hidden(2, torch.float32), torch.zeros(2, 1))
    >>> tuple(u.shape)
    (2, 1)
    """

    def __init__(self, agent: Agent, params: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.agent = agent
        self.weights = nn.ParameterDict({
            name: nn.Parameter(value.detach().clone(), requires_grad=agent.is_trainable(name))
            for name, value in params.items()})

    def forward(self, hidden: torch.Tensor, observation: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: (h, u)."""
        return self.agent.step(self.agent.prepare(dict(self.weights)), hidden, observation)
