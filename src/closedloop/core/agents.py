"""Agents: the continuous-time rate RNN (and the discrete vanilla RNN, its dt = tau case), the
low-rank RNN, the reduced overlap model, the GRU, the feedforward MLP policy and the
static-gain policy (docs/science.md, section 1.2).

Conventions (the one place the mapping between the maths and the code is written)
-----------------------------------------------------------------------------------
The science writes column vectors: h_t = h_{t-1} + (dt/tau)(-h_{t-1} + phi(W h_{t-1} +
W_in y_t)), u_t = W_out h_t. The code is batch-first with row vectors, as the paper's authors
wrote it:

    h_t = h_{t-1} + (dt/tau) * (-h_{t-1} + phi(h_{t-1} @ W + y_t @ W_in [+ b]))
    u_t = h_t @ W_out [+ b_out]

so the stored ``W_in`` (n_in x N), ``W`` (N x N) and ``W_out`` (N x n_out) are the transposes
of the maths' W_in, W, W_out. With dt = tau the update is exactly h_t = phi(...).

The low-rank RNN stores the maths' own vectors: ``m`` (N x n_in, the input vectors),
``z`` (n_out x N, the readout), ``u`` and ``v`` (N x r), so W_maths = u v^T (+ g W_rand) and
its row-layout weights are W_in = m^T, W = v u^T (+ g W_rand^T), W_out = z^T.

The static-gain policy stores K (n_u x n_x) of u = K x and reads the full plant state.

The GRU (:class:`GRUAgent`, PyTorch's cell, its input y written where PyTorch writes i) is
row layout too: ``W_yr``, ``W_yz``, ``W_yn`` (n_in x N), ``W_hr``, ``W_hz``, ``W_hn``
(N x N), ``W_out`` (N x n_out); PyTorch's ``weight_ih`` is [W_yr; W_yz; W_yn]^T stacked
(3N x n_in) and ``weight_hh`` is [W_hr; W_hz; W_hn]^T.

The MLP (:class:`MLPAgent`) has no memory: u_t = MLP(y_t), with ``W0`` (n_in x H_0), ``W1``
(H_0 x H_1), ..., ``W_out`` (H_{L-1} x n_out). Its hidden state is the command it holds
(zero-order hold, size n_out): ``step`` returns (u, u) and ``output`` returns the hidden
state, so the rollout and the coupled state (x, u_held) need nothing special.

An agent is an immutable description (sizes, activation, which parameters are frozen) that
compares by value; its parameters are a separate dict of arrays. ``prepare`` turns parameters
into row-layout dense weights once per rollout, ``step`` advances one time step; both are pure
JAX functions, so ``jax.grad``, ``jax.vmap`` and ``jax.jacfwd`` apply.

Example
-------
>>> import jax, jax.numpy as jnp
>>> from closedloop.config import AgentConfig
>>> agent = build_agent(AgentConfig(size=8), n_inputs=1, n_outputs=1)
>>> params = agent.init_params(jax.random.key(0))
>>> sorted(params), tuple(params["W"].shape)
(['W', 'W_in', 'W_out'], (8, 8))
>>> h, u = agent.step(agent.prepare(params), agent.initial_hidden(4), jnp.ones((4, 1)))
>>> tuple(h.shape), tuple(u.shape)
((4, 8), (4, 1))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.config import AgentConfig, InitSpec
from closedloop.core.registry import AGENTS, BUILTIN_AGENT_KINDS
from closedloop.errors import ConfigError, ShapeError

Params = dict[str, jax.Array]


@jax.custom_jvp
def relu(x: jax.Array) -> jax.Array:
    """max(x, 0) with the right derivative (1) at 0, the convention of
    :func:`closedloop.analysis.coupling.activation_slope` (``jax.nn.relu`` takes 0 there, which
    would make the coupled Jacobian at the origin of a bias-free relu network lose W and W_in).

    Example
    -------
    >>> float(jax.grad(relu)(0.0)), float(relu(-2.0))
    (1.0, 0.0)
    """
    return jax.nn.relu(x)


relu.defjvps(lambda tangent, _, x: jnp.where(x >= 0, tangent, jnp.zeros_like(tangent)))

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": relu,
    "linear": lambda x: x,
}


def draw(spec: InitSpec, shape: tuple[int, ...], size: int, key: jax.Array) -> jax.Array:
    """Draw one parameter (float64) as ``spec`` says, for a network of ``size`` units.

    Example
    -------
    >>> draw(InitSpec(distribution="uniform", scale=0.5), (3,), 10, jax.random.key(1)).dtype
    dtype('float64')
    """
    scale = spec.gain * spec.resolve_scale(size)
    if spec.distribution == "zeros":
        return jnp.zeros(shape, dtype=jnp.float64)
    if spec.distribution == "normal":
        return jax.random.normal(key, shape, dtype=jnp.float64) * scale
    return jax.random.uniform(key, shape, dtype=jnp.float64, minval=-1.0, maxval=1.0) * scale


def as_array(value: object, dtype: Any) -> jax.Array:
    """An array-like as a JAX array of ``dtype`` (through float64, so float32 and float64
    copies of the same numbers agree to rounding); traced arrays stay traced."""
    if isinstance(value, jax.Array):
        return jnp.asarray(value, dtype=jnp.float64).astype(dtype)
    return jnp.asarray(np.asarray(value, dtype=np.float64), dtype=dtype)


def no_linearisation(what: str) -> ShapeError:
    """The error of agents without a closed-form linearisation (the closed-form P); the
    coupled Jacobian, :func:`closedloop.analysis.coupling.coupled_jacobian`, covers them.

    Example
    -------
    >>> str(no_linearisation("an MLP agent")).split(";")[0]
    'an MLP agent has no closed-form linearisation'
    """
    return ShapeError(f"{what} has no closed-form linearisation; use the coupled Jacobian "
                      "(closedloop.analysis.coupling.coupled_jacobian)")


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


class DenseParameters:
    """What agents whose parameters are a dict of dense arrays share: drawing
    (:meth:`init_params`), checking (:meth:`to_params`), freezing and h = 0.

    A subclass defines ``size``, ``init``, ``frozen``, ``parameter_shapes`` and
    ``default_init``; ``init_size`` is the N of the ``"1/N"`` and ``"1/sqrt(N)"`` scales.
    """

    def init_size(self, name: str) -> int:
        """N of the initialisation scales for parameter ``name`` (the hidden size)."""
        return self.size

    def is_trainable(self, name: str) -> bool:
        """Whether parameter ``name`` is updated by training."""
        return name not in self.frozen

    def init_params(self, key: jax.Array, dtype: Any = jnp.float32) -> Params:
        """Draw all parameters from ``key`` (in float64, then cast, so float32 and float64
        runs start from the same numbers)."""
        shapes = self.parameter_shapes()
        draw_key, adjust_key = jax.random.split(key)
        keys = jax.random.split(draw_key, len(shapes))
        params = {name: draw(self.init.get(name) or self.default_init(name), shape,
                             self.init_size(name), k)
                  for (name, shape), k in zip(shapes.items(), keys, strict=True)}
        return self.to_params(self.adjust_init(params, adjust_key), dtype)

    def adjust_init(self, params: Params, key: jax.Array) -> Params:
        """Hook for agents whose initialisation is not entry-wise independent."""
        return params

    def to_params(self, arrays: Mapping[str, object], dtype: Any = jnp.float32) -> Params:
        """Check names and shapes of ``arrays`` and return them as parameters in ``dtype``.

        Raises
        ------
        ShapeError
            Naming the missing, unexpected or misshapen parameter.
        """
        shapes = self.parameter_shapes()
        missing = sorted(set(shapes) - set(arrays))
        extra = sorted(set(arrays) - set(shapes))
        if missing or extra:
            raise ShapeError(f"parameters do not fit this agent: missing {missing}, "
                             f"unexpected {extra}")
        params = {}
        for name, shape in shapes.items():
            array = as_array(arrays[name], dtype)
            if tuple(array.shape) != shape:
                raise ShapeError(f"parameter {name} has shape {tuple(array.shape)}, "
                                 f"expected {shape}")
            params[name] = array
        return params

    def initial_hidden(self, batch: int, dtype: Any = jnp.float32) -> jax.Array:
        """h = 0 for a batch."""
        return jnp.zeros((batch, self.size), dtype=dtype)


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
    reads_state: ClassVar[bool] = False

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

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """u = h @ W_out (+ b_out)."""
        u = hidden @ prepared["W_out"]
        if "b_out" in prepared:
            u = u + prepared["b_out"]
        return u

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


@dataclass(frozen=True)
class LowRankRNN(RNNAgent):
    """RNN with W = u v^T + g W_rand (rank r), input vectors m and readout z (science 1.2).

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


GRU_GATES = ("r", "z", "n")
"""The GRU's gates in PyTorch's order (reset, update, new)."""


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
    reads_state: ClassVar[bool] = False
    alpha: ClassVar[float] = 1.0

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

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """u = h @ W_out (+ b_out)."""
        u = hidden @ prepared["W_out"]
        if "b_out" in prepared:
            u = u + prepared["b_out"]
        return u

    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """The Jacobian dh'/dh of the hidden update at h = 0, y = 0 in the maths' layout
        (J[i, j] = dh'_i / dh_j; N x N, float64; leading axes of ``params`` are kept), by
        ``jax.jacfwd`` of :meth:`step` (vmapped over the leading axes, compiled). Without
        biases it is I/2 + phi'(0) W_hn^T / 4."""
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        lead = arrays["W_hn"].shape[:-2]
        flat = {k: jnp.asarray(v.reshape(-1, *v.shape[len(lead):])) for k, v in arrays.items()}
        return np.asarray(_hidden_jacobians(self, flat)).reshape(*lead, self.size, self.size)

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """Not defined: the GRU's gates multiply the state (see :func:`no_linearisation`)."""
        raise no_linearisation("a GRU agent")


MLP_MAX_LAYERS = 8
"""Most hidden layers an MLP agent has (its parameter names are W0..W7, b0..b7)."""


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
    reads_state: ClassVar[bool] = False
    alpha: ClassVar[float] = 1.0

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

    def prepare(self, params: Params) -> Params:
        """The weights as they are (row layout)."""
        return params

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

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """Not defined for a multi-layer policy (see :func:`no_linearisation`)."""
        raise no_linearisation("an MLP agent")


@dataclass(frozen=True)
class StaticGain:
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
    alpha: ClassVar[float] = 1.0
    activation: ClassVar[str] = "linear"

    @property
    def n_inputs(self) -> int:
        """The static gain reads the whole state."""
        return self.n_states

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The one parameter K (n_u x n_x)."""
        return {"K": (self.n_outputs, self.n_states)}

    def is_trainable(self, name: str) -> bool:
        """Whether K is trained."""
        return name not in self.frozen

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


Agent = RNNAgent | GRUAgent | MLPAgent | StaticGain


@dataclass(frozen=True)
class GaussianPolicy:
    """An agent with a learned exploration scale for black-box training: the agent ``inner``
    plus the parameter ``log_std`` (one per output, initially 0), so that the Gaussian policy's
    standard deviation is ``training.exploration_std * exp(log_std)``. Everything else is the
    inner agent's: its rollout, its coupled Jacobian and spectrum ignore ``log_std``.

    Example
    -------
    >>> policy = GaussianPolicy(StaticGain(2, 1))
    >>> sorted(policy.parameter_shapes()), policy.reads_state
    (['K', 'log_std'], True)
    >>> policy.init_params(jax.random.key(0))["log_std"].tolist()
    [0.0]
    """

    inner: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

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


def build_agent(config: AgentConfig, n_inputs: int, n_outputs: int, n_states: int | None = None
                ) -> Agent:
    """The agent a config describes (see :func:`_build_agent`); with ``learned_std``, inside
    a :class:`GaussianPolicy`.

    Example
    -------
    >>> sorted(build_agent(AgentConfig(kind="static_gain", learned_std=True), 2, 1, 2
    ...                    ).parameter_shapes())
    ['K', 'log_std']
    """
    agent = _build_agent(config, n_inputs, n_outputs, n_states)
    return GaussianPolicy(agent) if config.learned_std else agent


def _build_agent(config: AgentConfig, n_inputs: int, n_outputs: int, n_states: int | None = None
                 ) -> Agent:
    """The agent a config describes, for ``n_inputs`` observations and ``n_outputs`` controls.

    A static gain reads the full state, so it needs ``n_states``. ``vanilla`` is an
    :class:`RNNAgent` with dt = tau = 1; ``gru``, ``mlp`` and ``vanilla`` are discrete-time,
    so a config with dt != tau is refused for them. An ``mlp``'s size is ``n_outputs``
    (``config.size`` is not used). Any other kind is looked up in
    :data:`closedloop.core.registry.AGENTS` and built as ``cls(n_inputs=n_inputs,
    n_outputs=n_outputs, size=config.size, **config.params)`` (plus ``init`` and ``frozen``
    when the config sets ``init`` or ``trainable``).

    Raises
    ------
    ConfigError
        For an unknown kind (naming ``agent.kind`` and the kinds allowed), or settings that do
        not fit the kind.

    Example
    -------
    >>> build_agent(AgentConfig(kind="lowrank", size=5, activation="linear"), 1, 1).rank
    1
    >>> build_agent(AgentConfig(kind="vanilla", size=5), 1, 1).alpha
    1.0
    >>> build_agent(AgentConfig(kind="mlp", hidden_sizes=[8]), 1, 2).size
    2
    """
    frozen = frozenset(name for name, flag in config.trainable.items() if not flag)
    if config.kind not in BUILTIN_AGENT_KINDS:
        return _registered_agent(config, n_inputs, n_outputs, frozen)
    if config.kind == "static_gain":
        if n_states is None:
            raise ConfigError("a static-gain agent needs the plant's state dimension")
        gain = None if config.gain is None else tuple(tuple(row) for row in config.gain)
        return StaticGain(n_states, n_outputs, gain, frozen)
    if config.kind in ("vanilla", "gru", "mlp") and config.dt != config.tau:
        raise ConfigError(f"agent.kind '{config.kind}' is a discrete-time agent (alpha = 1): "
                          f"agent.dt ({config.dt}) must equal agent.tau ({config.tau})")
    if config.kind == "gru":
        return GRUAgent(n_inputs=n_inputs, n_outputs=n_outputs, size=config.size,
                        activation=config.activation, bias=config.bias,
                        output_bias=config.output_bias, init=dict(config.init), frozen=frozen)
    if config.kind == "mlp":
        return MLPAgent(n_inputs=n_inputs, n_outputs=n_outputs,
                        hidden_sizes=tuple(config.hidden_sizes), activation=config.activation,
                        bias=config.bias, output_bias=config.output_bias,
                        init=dict(config.init), frozen=frozen)
    common = dict(n_inputs=n_inputs, n_outputs=n_outputs, size=config.size,
                  activation=config.activation, dt=config.dt, tau=config.tau,
                  bias=config.bias, output_bias=config.output_bias, init=dict(config.init),
                  frozen=frozen)
    if config.kind == "vanilla":
        common.update(dt=1.0, tau=1.0)
        return RNNAgent(**common)
    if config.kind == "overlaps":
        if (n_inputs, n_outputs) != (1, 1) or config.activation != "linear" or \
                config.dt != config.tau:
            raise ConfigError("the overlaps agent is the reduced model of a linear rank-1 "
                              "network with dt = tau, one input and one output")
        common.update(size=2, init={})
        overlaps = None if config.overlaps is None else tuple(config.overlaps)
        return OverlapModel(**common, initial_overlaps=overlaps)
    if config.kind == "lowrank":
        return LowRankRNN(**common, rank=config.rank, random_gain=config.random_gain,
                          prescribed_overlap=config.prescribed_overlap)
    return RNNAgent(**common)


def _registered_agent(config: AgentConfig, n_inputs: int, n_outputs: int,
                      frozen: frozenset[str]) -> Agent:
    """A registered (or entry-point) agent kind, built from ``agent.params``."""
    cls = AGENTS.get(config.kind)
    # lists as tuples: an agent is a static (hashed) argument of compiled code
    arguments: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in config.params.items()}
    if config.init:
        arguments["init"] = dict(config.init)
    if frozen:
        arguments["frozen"] = frozen
    try:
        return cls(n_inputs=n_inputs, n_outputs=n_outputs, size=config.size, **arguments)
    except TypeError as exc:
        raise ConfigError(f"agent kind '{config.kind}': {getattr(cls, '__name__', cls)} "
                          f"cannot be built from agent.params {sorted(config.params)} "
                          f"({exc})") from None


def trainable_names(agent: Agent, params: Iterable[str]) -> list[str]:
    """Names of the parameters that training updates, in a fixed order.

    Example
    -------
    >>> trainable_names(StaticGain(2, 1, frozen=frozenset({"K"})), {"K": None})
    []
    """
    return [name for name in params if agent.is_trainable(name)]
