"""The agent contract: :class:`Agent`, what every agent kind writes and what it gets; the
registry of kinds; the helpers kinds share (activations, drawing, dense parameters).

Example
-------
>>> from closedloop.core.agents import AGENTS
>>> issubclass(AGENTS.get("gru"), Agent)
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from closedloop.config import AgentConfig, InitSpec
from closedloop.core.registry import SubclassRegistry
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
    >>> draw(InitSpec(distribution="constant", scale=-5.0), (2,), 10, jax.random.key(1)).tolist()
    [-5.0, -5.0]
    """
    scale = spec.gain * spec.resolve_scale(size)
    if spec.distribution == "zeros":
        return jnp.zeros(shape, dtype=jnp.float64)
    if spec.distribution == "constant":
        return jnp.full(shape, scale, dtype=jnp.float64)
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


class NetworkConfig(AgentConfig):
    """The fields of a network of ``size`` units that kinds share: ``activation`` (tanh,
    relu or linear) and the biases of its units (``bias``) and of its readout
    (``output_bias``), off in every paper experiment.

    Example
    -------
    >>> NetworkConfig(kind="vanilla", size=8).arguments()
    {'size': 8, 'activation': 'tanh', 'bias': False, 'output_bias': False}
    """

    size: int = Field(100, ge=1, le=100_000)
    activation: Literal["tanh", "relu", "linear"] = "tanh"
    bias: bool = False
    output_bias: bool = False


class Agent(ABC):
    """What an agent kind is: an immutable description (sizes, activation, which parameters
    are frozen) that compares by value and is hashed into compiled code, and pure JAX
    functions of a separate dict of parameter arrays. The conventions of the layouts are in
    :mod:`closedloop.core.agents`.

    A kind writes
    -------------
    * the attributes ``n_inputs``, ``n_outputs`` and ``size`` (the hidden state's size: 0 for a
      policy without memory);
    * :meth:`parameter_shapes`, :meth:`init_params` and :meth:`to_params` (a subclass of
      :class:`DenseParameters` writes ``default_init`` instead of the last two);
    * :meth:`step` (read an observation, update the hidden state, return it and the command),
      :meth:`output` (the command a hidden state gives) and :meth:`recurrent_matrix` (the
      hidden update's Jacobian at the origin, maths layout);
    * where it needs them: :meth:`prepare` (dense weights once per rollout; default: the
      parameters as they are), :meth:`linearisation` (a closed-form linear part, for the
      closed-form coupled matrix; default: none), ``alpha`` (dt / tau; default 1),
      ``reads_state`` (True for a policy that reads the plant's full state, not its sensors);
    * ``config_class``: its config, a subclass of :class:`~closedloop.config.AgentConfig` with
      the kind's fields, and :meth:`from_config` where the fields are not its constructor's
      keywords. A class that defines no ``config_class`` of its own is configured by ``size``
      and ``params`` (:class:`~closedloop.config.RegisteredAgentConfig`).

    It gets
    -------
    Everything else: every learning rule (closed loop, imitation, black box), ensembles,
    recording and resuming, the coupled Jacobian and spectrum (``jax.jacfwd`` of
    :meth:`step`), fixed points, effective gains, sweeps and ``reproduce``, the
    ``learned_std`` head (:class:`~closedloop.core.agents.gaussian.GaussianPolicy`), and
    ``init``/``trainable`` checked against its parameter names. A kind is registered with
    :func:`register_agent` (or an entry point of the group ``closedloop.agents``).

    Example
    -------
    >>> from closedloop.core.agents import RNNAgent
    >>> agent = RNNAgent(n_inputs=1, n_outputs=1, size=3)
    >>> isinstance(agent, Agent), agent.is_trainable("W"), agent.reads_state
    (True, True, False)
    """

    n_inputs: int
    n_outputs: int
    size: int
    frozen: frozenset[str] = frozenset()
    alpha: ClassVar[float] = 1.0
    reads_state: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: AgentConfig, n_inputs: int, n_outputs: int,
                    n_states: int | None = None) -> Agent:
        """The agent a config of this kind describes: ``cls(n_inputs=..., n_outputs=...,
        **config.arguments())``, with ``init`` and ``frozen`` when the config sets them.

        Raises
        ------
        ConfigError
            When the config's fields are not keywords the class accepts.
        """
        arguments = config.arguments()
        if config.init:
            arguments["init"] = dict(config.init)
        if config.frozen():
            arguments["frozen"] = config.frozen()
        try:
            return cls(n_inputs=n_inputs, n_outputs=n_outputs, **arguments)
        except TypeError as exc:
            raise ConfigError(f"agent kind '{config.kind}': {cls.__name__} cannot be built from "
                              f"agent.params {sorted(arguments)} ({exc})") from None

    @abstractmethod
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of every parameter, in drawing order."""

    @abstractmethod
    def init_params(self, key: jax.Array, dtype: Any = jnp.float32) -> Params:
        """Draw all parameters from ``key``."""

    @abstractmethod
    def to_params(self, arrays: Mapping[str, object], dtype: Any = jnp.float32) -> Params:
        """Check names and shapes of ``arrays`` and return them as parameters in ``dtype``."""

    @abstractmethod
    def step(self, prepared: Params, hidden: jax.Array, observation: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
        """Read ``observation`` (batch, n_inputs), update the hidden state, return (h, u)."""

    @abstractmethod
    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """The command u of hidden state ``hidden``."""

    @abstractmethod
    def recurrent_matrix(self, params: Mapping[str, Any]) -> np.ndarray:
        """The hidden update's Jacobian at the origin, maths layout (N x N, float64; leading
        axes of ``params`` are kept)."""

    def prepare(self, params: Params) -> Params:
        """Dense weights for the rollout, computed once per rollout (default: ``params``)."""
        return params

    def initial_hidden(self, batch: int, dtype: Any = jnp.float32) -> jax.Array:
        """h = 0 for a batch."""
        return jnp.zeros((batch, self.size), dtype=dtype)

    def is_trainable(self, name: str) -> bool:
        """Whether parameter ``name`` is updated by training."""
        return name not in self.frozen

    def linearisation(self, params: Mapping[str, Any]) -> Linearisation:
        """The linear part at the origin (default: none, see :func:`no_linearisation`)."""
        raise no_linearisation(f"a {type(self).__name__} agent")


class DenseParameters(Agent):
    """What agents whose parameters are a dict of dense arrays share: drawing
    (:meth:`init_params`), checking (:meth:`to_params`), freezing, h = 0 and the linear
    readout u = h W_out (+ b_out) (:meth:`output`).

    A subclass defines ``size``, ``init``, ``frozen``, ``parameter_shapes`` and
    ``default_init``; ``init_size`` is the N of the ``"1/N"`` and ``"1/sqrt(N)"`` scales.
    """

    init: Mapping[str, InitSpec]

    @abstractmethod
    def default_init(self, name: str) -> InitSpec:
        """Initialisation used when the config names none for ``name``."""

    def output(self, prepared: Params, hidden: jax.Array) -> jax.Array:
        """u = h @ W_out (+ b_out)."""
        u = hidden @ prepared["W_out"]
        if "b_out" in prepared:
            u = u + prepared["b_out"]
        return u

    def init_size(self, name: str) -> int:
        """N of the initialisation scales for parameter ``name`` (the hidden size)."""
        return self.size

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


AGENTS = SubclassRegistry("agent", "closedloop.agents", Agent, key="agent.kind",
                          label="agent kind")
"""Agent kinds by name (the built-ins are added by :mod:`closedloop.core.agents`)."""


def register_agent(name: str, cls: type[Agent]) -> None:
    """Make ``agent.kind: name`` build ``cls``, a subclass of :class:`Agent` (its
    ``config_class`` holds the kind's fields; without one, ``cls`` is built as
    ``cls(n_inputs=..., n_outputs=..., size=..., **agent.params)``).

    Example
    -------
    >>> from closedloop.core.agents import GRUAgent
    >>> register_agent("my-gru", GRUAgent)
    >>> AGENTS.get("my-gru") is GRUAgent
    True
    """
    AGENTS.register(name, cls)
