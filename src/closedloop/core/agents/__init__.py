"""Agents: one module per kind, each an :class:`~closedloop.core.agents.base.Agent` with its
config class, registered by name in :data:`AGENTS` (docs/science.md, section 1.2).

===============  ==============================================================  ==============
``agent.kind``   agent                                                           module
===============  ==============================================================  ==============
``rnn``          the paper's continuous-time rate RNN                            :mod:`.rnn`
``vanilla``      the discrete (Elman) RNN, ``rnn`` with dt = tau                 :mod:`.vanilla`
``lowrank``      the linear RNN with W = u v^T (+ g W_rand)                      :mod:`.lowrank`
``overlaps``     the reduced rank-1 model on its four order parameters           :mod:`.overlaps`
``gru``          the gated recurrent unit (PyTorch's cell)                       :mod:`.gru`
``mlp``          a feedforward policy, its state the command it holds            :mod:`.mlp`
``static_gain``  u = K x on the full state                                       :mod:`.static_gain`
===============  ==============================================================  ==============

A new kind is one module with its agent class and config class, and one line in the
registration below (a user's kind: :func:`register_agent` or an entry point of the group
``closedloop.agents``). ``agent.learned_std`` wraps any agent in a
:class:`~closedloop.core.agents.gaussian.GaussianPolicy`.

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
>>> from closedloop.config import agent_config
>>> agent = build_agent(agent_config(size=8), n_inputs=1, n_outputs=1)
>>> params = agent.init_params(jax.random.key(0))
>>> sorted(params), tuple(params["W"].shape)
(['W', 'W_in', 'W_out'], (8, 8))
>>> h, u = agent.step(agent.prepare(params), agent.initial_hidden(4), jnp.ones((4, 1)))
>>> tuple(h.shape), tuple(u.shape)
((4, 8), (4, 1))
"""

from __future__ import annotations

from collections.abc import Iterable

from closedloop.config import AgentConfig
from closedloop.core.agents.base import (
    AGENTS,
    Agent,
    DenseParameters,
    Linearisation,
    NetworkConfig,
    Params,
    register_agent,
)
from closedloop.core.agents.gaussian import GaussianPolicy
from closedloop.core.agents.gru import GRUAgent
from closedloop.core.agents.lowrank import LowRankRNN
from closedloop.core.agents.mlp import MLPAgent
from closedloop.core.agents.overlaps import OVERLAP_NAMES, OverlapModel, order_parameters
from closedloop.core.agents.rnn import RNNAgent
from closedloop.core.agents.static_gain import StaticGain
from closedloop.core.agents.vanilla import VanillaRNN

AGENTS.builtin.update({
    "rnn": RNNAgent,
    "vanilla": VanillaRNN,
    "lowrank": LowRankRNN,
    "overlaps": OverlapModel,
    "gru": GRUAgent,
    "mlp": MLPAgent,
    "static_gain": StaticGain,
})


def build_agent(config: AgentConfig, n_inputs: int, n_outputs: int, n_states: int | None = None
                ) -> Agent:
    """The agent a config describes, for ``n_inputs`` observations and ``n_outputs`` controls
    (a static gain reads the full state, so it needs ``n_states``): its kind's
    :meth:`~closedloop.core.agents.base.Agent.from_config`, inside a :class:`GaussianPolicy`
    with ``learned_std``.

    Raises
    ------
    ConfigError
        For an unknown kind (naming ``agent.kind`` and the kinds allowed), or settings that do
        not fit the kind.

    Example
    -------
    >>> from closedloop.config import agent_config
    >>> build_agent(agent_config(kind="lowrank", size=5, activation="linear"), 1, 1).rank
    1
    >>> sorted(build_agent(agent_config(kind="static_gain", learned_std=True), 2, 1, 2
    ...                    ).parameter_shapes())
    ['K', 'log_std']
    """
    agent = AGENTS.get(config.kind).from_config(config, n_inputs, n_outputs, n_states)
    return GaussianPolicy(agent) if config.learned_std else agent


def trainable_names(agent: Agent, params: Iterable[str]) -> list[str]:
    """Names of the parameters that training updates, in a fixed order.

    Example
    -------
    >>> trainable_names(StaticGain(2, 1, frozen=frozenset({"K"})), {"K": None})
    []
    """
    return [name for name in params if agent.is_trainable(name)]


__all__ = ["AGENTS", "OVERLAP_NAMES", "Agent", "DenseParameters", "GRUAgent", "GaussianPolicy",
           "Linearisation", "LowRankRNN", "MLPAgent", "NetworkConfig", "OverlapModel", "Params",
           "RNNAgent", "StaticGain", "VanillaRNN", "build_agent", "order_parameters",
           "register_agent", "trainable_names"]
