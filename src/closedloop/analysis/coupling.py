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
so it also covers operating points away from the origin. What runs record every epoch
(:func:`origin_spectra`) is the Jacobian at the origin; the tests check it equals the formula.

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
from threadpoolctl import ThreadpoolController

from closedloop.core.agents import Agent, Linearisation, Params
from closedloop.core.plants import LinearPlant, Plant
from closedloop.core.rollout import one_step_map
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


@functools.partial(jax.jit, static_argnums=(0, 1))
def _origin_matrices(plant: Plant, agent: Agent, params: Params) -> jax.Array:
    def one(member: Params) -> jax.Array:
        n_ref = reference_size(plant, agent)
        reference = jnp.zeros(n_ref, dtype=jnp.float64) if n_ref else None
        return coupled_jacobian(plant, agent, member, jnp.zeros(plant.n_states, jnp.float64),
                                jnp.zeros(agent.size, jnp.float64), reference)

    return jax.vmap(one)(params)


def origin_matrices(plant: Plant, agent: Agent, params: Mapping[str, Any]) -> np.ndarray:
    """P (float64) at the origin for a stack of parameter sets (leading axis S): the coupled
    Jacobian of the loop at s = 0, (S, n_x + N, n_x + N).

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.plants import double_integrator
    >>> origin_matrices(double_integrator(), StaticGain(2, 1), {"K": np.zeros((3, 1, 2))}).shape
    (3, 2, 2)
    """
    stacked = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    return np.asarray(_origin_matrices(plant, agent, stacked))


def origin_spectra(plant: Plant, agent: Agent, params: Mapping[str, Any], *,
                   threads: int | None = 1) -> dict[str, np.ndarray]:
    """eig(P) at the origin (descending modulus), its spectral radius, and eig(W) (the maths'
    recurrent matrix) for a stack of parameter sets (leading axis S). A set with non-finite
    entries gets NaN. What every training epoch records.

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
    coupled = sorted_eigenvalues(origin_matrices(plant, agent, safe), threads=threads)
    recurrent = sorted_eigenvalues(agent.recurrent_matrix(safe), threads=threads)
    coupled[~finite] = np.nan
    recurrent[~finite] = np.nan
    radius = np.abs(coupled[:, 0]) if coupled.shape[1] else np.full(count, np.nan)
    return {"coupled_eigenvalues": coupled, "recurrent_eigenvalues": recurrent,
            "spectral_radius": radius}
