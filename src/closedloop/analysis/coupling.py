"""The coupled agent-environment matrix P, the coupled Jacobian, and their spectra (science 3).

For a linear RNN, or a nonlinear one linearised at the origin s = 0, the joint state
s = (x, h) evolves as s_{t+1} = P s_t with (maths layout, alpha = dt/tau, D = diag(phi'(p_0)),
p_0 = b + W_in C B b_out the pre-activation at the origin, 0 without biases)

    P = [[ A,                     B W_out                                         ],
         [ alpha D W_in C A,      (1 - alpha) I + alpha D (W + W_in C B W_out)    ]]

Derivation: h_{t+1} = (1 - alpha) h_t + alpha phi(W h_t + W_in y_{t+1}) with
y_{t+1} = C x_{t+1} = C (A x_t + B W_out h_t); linearise phi. Only the observation columns of
W_in enter (a tracking reference is an external input, not part of the loop). For a static
gain u = K x, P = A + B K.

Two independent computations: :func:`coupled_matrix` writes the formula above (NumPy,
float64, leading batch axes allowed); :func:`coupled_jacobian` differentiates the rollout's own
one-step map (:func:`closedloop.core.rollout.one_step_map`) with ``jax.jacfwd`` at any state,
so it also covers nonlinear plants and operating points away from the origin. What runs record
every epoch (:func:`operating_point_spectra`) is the Jacobian at the operating point: the
plant's target state with the agent at its fixed point there (:func:`operating_point`; the
origin for the paper's presets, where the tests check it equals the formula).

Example
-------
>>> from closedloop.core.agents import Linearisation
>>> from closedloop.core.plants import double_integrator
>>> lin = Linearisation(W_in=np.zeros((0, 2)), W=np.zeros((0, 0)), W_out=np.zeros((1, 0)),
...                     alpha=1.0, feedthrough=np.array([[-0.5, -1.0]]))
>>> coupled_matrix(double_integrator(), lin).tolist()
[[1.0, 1.0], [-0.5, 0.0]]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from threadpoolctl import ThreadpoolController

from closedloop.core.agents import Agent, Linearisation, Params
from closedloop.core.plants import LinearPlant, Plant
from closedloop.core.rollout import agent_observation, one_step_map
from closedloop.runtime import available_cores


def activation_slope(name: str, pre_activation: np.ndarray) -> np.ndarray:
    """phi'(pre_activation) elementwise; relu uses the right derivative (1) at 0.

    Example
    -------
    >>> activation_slope("tanh", np.array([0.0])).tolist()
    [1.0]
    """
    if name == "tanh":
        return 1.0 - np.tanh(pre_activation) ** 2
    if name == "relu":
        return (pre_activation >= 0).astype(np.float64)
    return np.ones_like(pre_activation)


def coupled_matrix(plant: LinearPlant, lin: Linearisation) -> np.ndarray:
    """P for a plant and an agent's linearisation; leading axes of ``lin`` are batch axes.

    Returns
    -------
    numpy.ndarray
        (..., n_x + N, n_x + N), float64.
    """
    A, B, C = plant.A, plant.B, plant.C
    if lin.feedthrough is not None:
        return A + B @ lin.feedthrough
    n_y = plant.n_outputs
    w_in = np.asarray(lin.W_in)[..., :n_y]
    w = np.asarray(lin.W)
    w_out = np.asarray(lin.W_out)
    alpha = lin.alpha
    size = w.shape[-1]
    slope = _slope_at_origin(plant, lin, w_in)[..., :, None]
    batch_shape = np.broadcast_shapes(w_in.shape[:-2], w.shape[:-2], w_out.shape[:-2])
    top_left = np.broadcast_to(A, (*batch_shape, *A.shape))
    top_right = B @ w_out
    bottom_left = alpha * slope * (w_in @ (C @ A))
    bottom_right = ((1.0 - alpha) * np.eye(size)
                    + alpha * slope * (w + w_in @ (C @ B) @ w_out))
    top = np.concatenate([top_left, np.broadcast_to(top_right, (*batch_shape,
                                                                *top_right.shape[-2:]))], -1)
    bottom = np.concatenate([np.broadcast_to(bottom_left, (*batch_shape,
                                                           *bottom_left.shape[-2:])),
                             np.broadcast_to(bottom_right, (*batch_shape,
                                                            *bottom_right.shape[-2:]))], -1)
    return np.concatenate([top, bottom], -2)


def _slope_at_origin(plant: LinearPlant, lin: Linearisation, w_in_observed: np.ndarray
                     ) -> np.ndarray:
    """phi' at the pre-activation b + W_in C B b_out that the one-step map sees at s = 0."""
    size = np.asarray(lin.W).shape[-1]
    pre = np.zeros(size) if lin.bias is None else np.asarray(lin.bias, dtype=np.float64)
    if lin.output_bias is not None:
        drive = plant.C @ plant.B @ np.asarray(lin.output_bias, dtype=np.float64)[..., None]
        pre = pre + (w_in_observed @ drive)[..., 0]
    return activation_slope(lin.activation, pre)


_EIG_POOL: ThreadPoolExecutor | None = None
_THREADPOOLS = ThreadpoolController()
"""Eigenvalue problems here are small: a multithreaded BLAS inside LAPACK only spins against
the other threads (measured 2x slower per matrix while training runs), so it gets one."""


def eigenvalues(matrices: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Eigenvalues (complex128) of a square matrix or a stack of them, float64 LAPACK.

    A large stack is split across ``threads`` threads (default: the CPU cores), as LAPACK
    releases the interpreter lock.

    Example
    -------
    >>> eigenvalues(np.array([[0.0, 1.0], [-1.0, 0.0]])).tolist()
    [1j, -1j]
    """
    global _EIG_POOL
    array = np.asarray(matrices)
    array = array.astype(np.complex128 if np.iscomplexobj(array) else np.float64, copy=False)
    if array.shape[-1] == 0:
        return np.zeros(array.shape[:-1], dtype=np.complex128)
    threads = available_cores() if threads is None else threads
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        if array.ndim == 2 or array.shape[0] < 8 or threads < 2:
            return np.linalg.eigvals(array).astype(np.complex128)
        if _EIG_POOL is None:
            _EIG_POOL = ThreadPoolExecutor(max_workers=available_cores(),
                                           thread_name_prefix="eigvals")
        flat = array.reshape(-1, *array.shape[-2:])
        parts = list(_EIG_POOL.map(np.linalg.eigvals, np.array_split(flat, 2 * threads)))
    return np.concatenate(parts).astype(np.complex128).reshape(array.shape[:-1])


def sorted_eigenvalues(matrices: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Eigenvalues of (a stack of) square matrices, sorted by descending modulus (ties:
    descending imaginary part).

    Example
    -------
    >>> sorted_eigenvalues(np.diag([0.5, -2.0, 1.0])).tolist()
    [(-2+0j), (1+0j), (0.5+0j)]
    """
    values = eigenvalues(matrices, threads=threads)
    order = np.lexsort((-values.imag, -np.abs(values)), axis=-1)
    return np.take_along_axis(values, order, axis=-1)


def spectral_radius(matrices: np.ndarray) -> np.ndarray | float:
    """max |eig| of (a stack of) square matrices.

    Example
    -------
    >>> float(spectral_radius(np.diag([0.5, -2.0])))
    2.0
    """
    values = np.abs(eigenvalues(matrices))
    return values.max(axis=-1) if values.shape[-1] else np.zeros(values.shape[:-1])


def coupled_jacobian(plant: Plant, agent: Agent, params: Params, x: jax.Array,
                     hidden: jax.Array, reference: jax.Array | None = None) -> jax.Array:
    """Jacobian of :func:`~closedloop.core.rollout.one_step_map` with respect to s = (x, h),
    by ``jax.jacfwd``; leading axes of ``x``, ``hidden`` (and ``reference``) are batch axes.

    For a tanh (or linear) network at the origin it equals :func:`coupled_matrix`; at other
    operating points it is the local P of the nonlinear loop (science 3).

    Parameters
    ----------
    x, hidden
        (..., n_x) and (..., N) operating points.
    reference
        (..., n_ref) reference inputs at the next step, for tracking networks.

    Returns
    -------
    jax.Array
        (..., n_x + N, n_x + N), in the dtype of the operating point.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.plants import double_integrator
    >>> gain = StaticGain(2, 1)
    >>> params = gain.to_params({"K": [[-0.5, -1.0]]}, jnp.float64)
    >>> coupled_jacobian(double_integrator(), gain, params, jnp.zeros(2), jnp.zeros(0)).tolist()
    [[1.0, 1.0], [-0.5, 0.0]]
    """
    n_x = x.shape[-1]

    def step(state: jax.Array, ref: jax.Array | None) -> jax.Array:
        x_next, hidden_next = one_step_map(plant, agent, params, state[:n_x], state[n_x:], ref)
        return jnp.concatenate((x_next, hidden_next))

    state = jnp.concatenate((x, hidden), axis=-1)
    jacobian = jax.jacfwd(step)
    for _ in range(state.ndim - 1):
        jacobian = jax.vmap(jacobian)
    return jacobian(state, reference)


def reference_size(plant: Plant, agent: Agent) -> int:
    """How many reference inputs an agent reads after the plant's observation."""
    return 0 if agent.reads_state else agent.n_inputs - plant.n_outputs


FIXED_POINT_TOLERANCE = 1e-12
"""|F(h) - h| below which Newton's method stops (float64)."""
FIXED_POINT_ITERATIONS = 25


def agent_fixed_point(agent: Agent, params: Params, observation: jax.Array) -> jax.Array:
    """The agent's fixed point h* = F(h*, y) with its input held at ``observation``, by
    Newton's method from h = 0 (no iteration when h = 0 already is one, as for a bias-free
    network reading y = 0).

    Example
    -------
    >>> from closedloop.core.agents import RNNAgent
    >>> agent = RNNAgent(1, 1, 1, activation="linear", dt=0.5, tau=1.0)
    >>> params = agent.to_params({"W_in": [[1.0]], "W": [[0.5]], "W_out": [[1.0]]},
    ...                          jnp.float64)
    >>> float(agent_fixed_point(agent, params, jnp.array([1.0]))[0])   # h = 0.5 h + 1
    2.0
    """
    prepared = agent.prepare(params)

    def residual(h: jax.Array) -> jax.Array:
        return agent.step(prepared, h[None], observation[None])[0][0] - h

    def unfinished(carry: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        _, error, count = carry
        return (error > FIXED_POINT_TOLERANCE) & (count < FIXED_POINT_ITERATIONS)

    def newton(carry: tuple[jax.Array, jax.Array, jax.Array]
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
        h, _, count = carry
        h = h - jnp.linalg.solve(jax.jacfwd(residual)(h), residual(h))
        return h, jnp.linalg.norm(residual(h)), count + 1

    start = jnp.zeros(agent.size, dtype=observation.dtype)
    if agent.size == 0:
        return start
    h, _, _ = lax.while_loop(unfinished, newton,
                             (start, jnp.linalg.norm(residual(start)), jnp.asarray(0)))
    return h


def operating_point(plant: Plant, agent: Agent, params: Params, dtype: Any = jnp.float64
                    ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """(x*, h*, r*): the plant's target state, the agent's fixed point reading it there, and
    the reference there (0: in the task's coordinates the target sits at the operating
    point). For the paper's plants and bias-free networks this is the origin. A plant whose
    internal states settle under the agent's command there (``Plant.settle``: a muscle's
    activation) has them settled at the fixed point's command.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.mechanics import Pendulum
    >>> x, h, r = operating_point(Pendulum(), StaticGain(2, 1), {"K": jnp.zeros((1, 2))})
    >>> [round(v, 6) for v in x.tolist()], h.shape, r
    ([3.141593, 0.0], (0,), None)
    """
    x = jnp.asarray(plant.target_state, dtype=dtype)
    n_ref = reference_size(plant, agent)
    reference = jnp.zeros(n_ref, dtype=dtype) if n_ref else None
    if agent.reads_state:
        return x, jnp.zeros(agent.size, dtype=dtype), reference
    observation = agent_observation(agent, plant, x, reference)
    hidden = agent_fixed_point(agent, params, observation)
    # the observation does not read the settled states (Plant.settle)
    _, command = agent.step(agent.prepare(params), hidden[None], observation[None])
    return plant.settle(x, command[0]), hidden, reference


def plant_jacobian_failure(plant: Plant) -> str | None:
    """Why the plant's step cannot be differentiated at its operating point (for instance a
    step computed outside JAX, through ``jax.pure_callback``), or None when it can. Such a
    plant trains only as a black box, and its loop has no recorded spectrum.

    Example
    -------
    >>> from closedloop.core.plants import double_integrator
    >>> plant_jacobian_failure(double_integrator()) is None
    True
    """
    x = jnp.asarray(plant.target_state, dtype=jnp.float64)
    u = jnp.zeros(plant.n_inputs, dtype=jnp.float64)
    try:
        jax.eval_shape(jax.jacfwd(lambda x, u: plant.step(x[None], u[None])[0],
                                  argnums=(0, 1)), x, u)
    except Exception as exc:          # whatever the plant's code raises under differentiation
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@functools.partial(jax.jit, static_argnums=(0, 1))
def _operating_point_matrices(plant: Plant, agent: Agent, params: Params) -> jax.Array:
    def one(member: Params) -> jax.Array:
        return coupled_jacobian(plant, agent, member, *operating_point(plant, agent, member))

    return jax.vmap(one)(params)


def operating_point_matrices(plant: Plant, agent: Agent, params: Mapping[str, Any]
                             ) -> np.ndarray:
    """The coupled Jacobian (float64) at the operating point (:func:`operating_point`) for a
    stack of parameter sets (leading axis S), (S, n_x + N, n_x + N): P at the origin for the
    paper's linear plants.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.plants import double_integrator
    >>> operating_point_matrices(double_integrator(), StaticGain(2, 1),
    ...                          {"K": np.zeros((3, 1, 2))}).shape
    (3, 2, 2)
    """
    stacked = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    return np.asarray(_operating_point_matrices(plant, agent, stacked))


def operating_point_spectra(plant: Plant, agent: Agent, params: Mapping[str, Any], *,
                            threads: int | None = 1, coupled: bool = True
                            ) -> dict[str, np.ndarray]:
    """eig of the coupled Jacobian at the operating point (descending modulus), its spectral
    radius, and eig(W) (the maths' recurrent matrix) for a stack of parameter sets (leading
    axis S). A set with non-finite entries gets NaN. What every training epoch records.
    With ``coupled`` False (a plant that cannot be differentiated,
    :func:`plant_jacobian_failure`) the coupled eigenvalues and the radius are NaN.

    Returns
    -------
    dict
        ``coupled_eigenvalues`` (S, n_x + N), ``recurrent_eigenvalues`` (S, N),
        ``spectral_radius`` (S,).
    """
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    count = next(iter(arrays.values())).shape[0]
    finite = np.ones(count, dtype=bool)
    for value in arrays.values():
        finite &= np.isfinite(value.reshape(count, -1)).all(axis=1)
    safe = {k: np.where(finite.reshape(-1, *([1] * (v.ndim - 1))), v, 0.0)
            for k, v in arrays.items()}
    recurrent = sorted_eigenvalues(agent.recurrent_matrix(safe), threads=threads)
    if coupled:
        matrices = operating_point_matrices(plant, agent, safe)
        finite &= np.isfinite(matrices.reshape(count, -1)).all(axis=1)
        eigenvalues = sorted_eigenvalues(np.where(finite[:, None, None], matrices, 0.0),
                                         threads=threads)
        eigenvalues[~finite] = np.nan
    else:
        eigenvalues = np.full((count, plant.n_states + agent.size), np.nan, dtype=complex)
    recurrent[~finite] = np.nan
    radius = np.abs(eigenvalues[:, 0]) if eigenvalues.shape[1] else np.full(count, np.nan)
    return {"coupled_eigenvalues": eigenvalues, "recurrent_eigenvalues": recurrent,
            "spectral_radius": radius}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _trajectory_matrices(plant: Plant, agent: Agent, params: Params, states: jax.Array,
                         hidden: jax.Array, reference: jax.Array | None) -> jax.Array:
    return coupled_jacobian(plant, agent, params, states, hidden, reference)


def trajectory_jacobians(plant: Plant, agent: Agent, params: Mapping[str, Any], states: Any,
                         hidden: Any, reference: Any = None) -> np.ndarray:
    """The coupled Jacobian at every visited state of a closed-loop trajectory (float64):
    ``states`` (..., n_x) and ``hidden`` (..., N) as a rollout with ``record_hidden``
    returns them (x_t with the h_t that has read it; pass x_0..x_{T-1}), ``reference``
    (..., n_ref) the reference at the next step. The local P along the way, where a
    nonlinear loop's behaviour is read away from its operating point.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.mechanics import Pendulum
    >>> gain = StaticGain(2, 1)
    >>> J = trajectory_jacobians(Pendulum(), gain, {"K": np.zeros((1, 2))},
    ...                          np.array([[0.0, 0.0], [np.pi, 0.0]]), np.zeros((2, 0)))
    >>> bool(J[0, 1, 0] < 0 < J[1, 1, 0])       # gravity restores at 0, topples at pi
    True
    """
    as64 = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    return np.asarray(_trajectory_matrices(
        plant, agent, as64, jnp.asarray(np.asarray(states, dtype=np.float64)),
        jnp.asarray(np.asarray(hidden, dtype=np.float64)),
        None if reference is None else jnp.asarray(np.asarray(reference, dtype=np.float64))))
