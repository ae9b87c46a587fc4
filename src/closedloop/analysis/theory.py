"""The rank-1 theory (science 3.1, 4): P_eff, its cubic, approximations, stage formulas, surrogate.

With W = u v^T (g = 0), input vector m and readout z, the coupled dynamics of the double
integrator and a linear rank-1 network close on four order parameters
(s_zm, s_zu, s_vm, s_vu) = (z.m, z.u, v.m, v.u) (:func:`closedloop.core.agents.order_parameters`):

    P_eff = [[1, 1, 0,    0   ],
             [0, 1, s_zm, s_zu],
             [1, 1, 0,    0   ],
             [0, 0, s_vm, s_vu]]

and det(l I - P_eff) = l * f(l) with the cubic

    f(l) = l^3 - (s_vu + 2) l^2 + (2 s_vu - s_zm + 1) l + (s_vu s_zm - s_vu - s_vm s_zu)
         = (l - s_vu)(l^2 - 2 l + 1 - s_zm) - s_vm s_zu.

Every function accepts scalars or NumPy arrays of overlaps (broadcast), so whole training
histories are handled in one call.

Example
-------
>>> roots = cubic_roots(s_zm=-0.04, s_zu=0.0, s_vm=0.0, s_vu=0.3).round(12)
>>> sorted(roots.tolist(), key=lambda z: (z.real, z.imag))
[(0.3+0j), (1-0.2j), (1+0.2j)]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import closedloop.core  # noqa: F401  (JAX's float64 mode, set in one place)

ArrayLike = float | np.ndarray


def reduced_matrix(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike
                   ) -> np.ndarray:
    """P_eff (..., 4, 4) for the state (x, v, k_m, k_u).

    Example
    -------
    >>> reduced_matrix(0.1, 0.2, 0.3, 0.4)[1].tolist()
    [0.0, 1.0, 0.1, 0.2]
    """
    s_zm, s_zu, s_vm, s_vu = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                                   for v in (s_zm, s_zu, s_vm, s_vu)))
    matrix = np.zeros((*s_zm.shape, 4, 4))
    matrix[..., 0, 0] = matrix[..., 0, 1] = matrix[..., 1, 1] = 1.0
    matrix[..., 2, 0] = matrix[..., 2, 1] = 1.0
    matrix[..., 1, 2], matrix[..., 1, 3] = s_zm, s_zu
    matrix[..., 3, 2], matrix[..., 3, 3] = s_vm, s_vu
    return matrix


def cubic_coefficients(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike
                       ) -> np.ndarray:
    """Coefficients (..., 4) of the monic cubic f(l), highest power first."""
    s_zm, s_zu, s_vm, s_vu = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                                   for v in (s_zm, s_zu, s_vm, s_vu)))
    return np.stack([np.ones_like(s_zm), -(s_vu + 2), 2 * s_vu - s_zm + 1,
                     s_vu * s_zm - s_vu - s_vm * s_zu], axis=-1)


def cubic_roots(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike
                ) -> np.ndarray:
    """The three roots (..., 3) of f, i.e. the non-zero spectrum of P_eff (and of the full
    (N+2)-dimensional P), from the companion matrix in one batched call."""
    coefficients = cubic_coefficients(s_zm, s_zu, s_vm, s_vu)
    companion = np.zeros((*coefficients.shape[:-1], 3, 3))
    companion[..., 0, :] = -coefficients[..., 1:]
    companion[..., 1, 0] = companion[..., 2, 1] = 1.0
    return np.linalg.eigvals(companion).astype(np.complex128)


def lambda3_approximation(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike
                          ) -> np.ndarray:
    """lambda_3 ~= s_vu + s_vm s_zu / (s_vu^2 - 2 s_vu - s_zm + 1): the real root near s_vu,
    to first order in the memory product s_vm s_zu (error O((s_vm s_zu)^2))."""
    s_zm, s_zu, s_vm, s_vu = (np.asarray(v, dtype=np.float64) for v in (s_zm, s_zu, s_vm, s_vu))
    return s_vu + s_vm * s_zu / (s_vu ** 2 - 2 * s_vu - s_zm + 1)


def pair_modulus_squared(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike,
                         lambda3: ArrayLike | None = None) -> np.ndarray:
    """|lambda_1|^2 = lambda_1 lambda_2 = (2 s_vu - s_zm + 1) - (s_vu + 2) lambda_3 + lambda_3^2
    (exact for the exact lambda_3; by default the approximation is used)."""
    if lambda3 is None:
        lambda3 = lambda3_approximation(s_zm, s_zu, s_vm, s_vu)
    s_zm, s_vu = np.asarray(s_zm, dtype=np.float64), np.asarray(s_vu, dtype=np.float64)
    return (2 * s_vu - s_zm + 1) - (s_vu + 2) * lambda3 + lambda3 ** 2


def lambda1_second_order(s_zm: ArrayLike, s_zu: ArrayLike, s_vm: ArrayLike, s_vu: ArrayLike
                         ) -> np.ndarray:
    """lambda_1 near 1 + sqrt(s_zm) (complex for s_zm < 0), corrected to second order in
    the memory product e = s_vm s_zu: with f = (l - s_vu) g(l) - e and g(l0) = 0, solve
    f'(l0) d + f''(l0) d^2 / 2 = e for the root d nearest the first-order e / f'(l0)."""
    s_zm, s_zu, s_vm, s_vu = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64)
                                                   for v in (s_zm, s_zu, s_vm, s_vu)))
    root = np.sqrt(s_zm.astype(np.complex128))
    l0 = 1 + root
    e = s_vm * s_zu
    first = (l0 - s_vu) * 2 * root                 # f'(l0) = (l0 - s_vu) g'(l0)
    second = 2 * (2 * root) + 2 * (l0 - s_vu)      # f''(l0) = 2 g'(l0) + (l0 - s_vu) g''
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(first ** 2 + 2 * second * e + 0j)
        candidates = np.stack([(-first + disc) / second, (-first - disc) / second])
        linear = e / first
    pick = np.argmin(np.abs(candidates - linear), axis=0)
    delta = np.take_along_axis(candidates, pick[None], axis=0)[0]
    return l0 + np.where(np.isfinite(delta), delta, linear)


# --------------------------------------------------------------------------------------------
# stage 1


def stage1_loss(s_zm: ArrayLike, steps: int = 100) -> np.ndarray:
    """L(s_zm) ~= 0.5 (1 - r^(T+1)) / (1 - r), r = |1 + sqrt(s_zm)|^2 (science 4, stage 1): the
    geometric sum of the dominant mode of pure position feedback over T + 1 states.

    r = (1 + sqrt(s_zm))^2 for s_zm > 0 and 1 + |s_zm| for s_zm < 0; at r = 1 the sum is
    0.5 (T + 1). The formula keeps the exponential rate and drops the mode's prefactor.

    Example
    -------
    >>> float(stage1_loss(0.0, steps=100))
    50.5
    """
    s_zm = np.asarray(s_zm, dtype=np.float64)
    rate = np.where(s_zm > 0, (1 + np.sqrt(np.abs(s_zm))) ** 2, 1 + np.abs(s_zm))
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 0.5 * (1 - rate ** (steps + 1)) / (1 - rate)
    return np.where(rate == 1, 0.5 * (steps + 1), value)


def position_feedback_loss(s_zm: ArrayLike, steps: int = 100,
                           x0: tuple[float, float] = (1.0, -1.0)) -> np.ndarray:
    """The simulated counterpart of :func:`stage1_loss`: 0.5 sum_{t=0}^{T} |x_t|^2 of the
    double integrator under pure position feedback u_t = s_zm x_t (s_zu = s_vm = s_vu = 0)."""
    s_zm = np.asarray(s_zm, dtype=np.float64)
    position = np.full(s_zm.shape, x0[0])
    velocity = np.full(s_zm.shape, x0[1])
    total = np.zeros(s_zm.shape)
    for _ in range(steps + 1):
        total += 0.5 * (position ** 2 + velocity ** 2)
        position, velocity = position + velocity, velocity + s_zm * position
    return total


# --------------------------------------------------------------------------------------------
# stage 2: the trade-off surrogate


def surrogate_terms(overlaps: jax.Array, horizon: int = 20) -> tuple[jax.Array, jax.Array]:
    """(L_inf, L_0) of science 4 for overlaps (..., 4) = (s_zm, s_zu, s_vm, s_vu), as JAX
    functions (``jax.grad`` differentiates them).

    L_inf = (|lambda_1|^2)^T_s (stability, with the lambda_3 approximation) and
    L_0 = (s_zm+1)^2 + (s_zm+3)^2 + (s_vm s_zu + 2 s_zm)^2 + (s_vm s_zu + 3 s_zm + 1)^2,
    the squared Frobenius norm of the state-to-state block of P_eff^3.
    """
    s_zm, s_zu, s_vm, s_vu = (overlaps[..., i] for i in range(4))
    memory = s_vm * s_zu
    lambda3 = s_vu + memory / (s_vu ** 2 - 2 * s_vu - s_zm + 1)
    modulus_sq = (2 * s_vu - s_zm + 1) - (s_vu + 2) * lambda3 + lambda3 ** 2
    stability = modulus_sq ** horizon
    myopic = ((s_zm + 1) ** 2 + (s_zm + 3) ** 2 + (memory + 2 * s_zm) ** 2
              + (memory + 3 * s_zm + 1) ** 2)
    return stability, myopic


@dataclass
class SurrogatePath:
    """Gradient descent on L_eff(alpha) from given overlaps.

    Attributes
    ----------
    alpha
        The trade-off weight.
    overlaps
        (steps + 1, 4) overlaps along the descent.
    eigenvalue
        (steps + 1,) the dominant root of the cubic (the complex pair's member with
        non-negative imaginary part; the largest real root when all are real).
    valid
        Number of leading steps before the pair collides on the real axis, after which the
        lambda_3 approximation (and the path) is not trusted (science 4).
    crossing_step
        First step with |eigenvalue| < 1 within the valid part, or None.
    """

    alpha: float
    overlaps: np.ndarray
    eigenvalue: np.ndarray
    valid: int
    crossing_step: int | None

    @property
    def crossing_eigenvalue(self) -> complex | None:
        """The dominant eigenvalue at the crossing step (None if it never crosses)."""
        return None if self.crossing_step is None else complex(self.eigenvalue[
            self.crossing_step])

    @property
    def crossing_point(self) -> complex | None:
        """Where the path meets the unit circle (None if it never crosses): the point of the
        straight segment from the last step outside to the first step inside that has
        modulus 1. The first step inside overshoots the circle by up to one step's movement,
        which is more than the crossings of neighbouring alphas differ by.

        Example
        -------
        >>> path = SurrogatePath(0.5, np.zeros((2, 4)), np.array([1.2 + 0.2j, 0.8 + 0.2j]),
        ...                      2, 1)
        >>> round(path.crossing_point.real, 6), path.crossing_point.imag
        (0.979796, 0.2)
        """
        step = self.crossing_step
        if step is None or step == 0:
            return self.crossing_eigenvalue
        outside, inside = complex(self.eigenvalue[step - 1]), complex(self.eigenvalue[step])
        delta = inside - outside
        # |outside + t delta| = 1: a quadratic in t with one root in [0, 1]
        a, b = abs(delta) ** 2, 2 * (outside * delta.conjugate()).real
        c = abs(outside) ** 2 - 1
        t = (-b - np.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
        return outside + float(np.clip(t, 0.0, 1.0)) * delta


def dominant_root(roots: np.ndarray) -> np.ndarray:
    """Per row of roots (..., k): the largest-modulus root, taking the member with
    non-negative imaginary part of a complex pair."""
    index = np.argmax(np.abs(roots) + 1e-12 * np.sign(roots.imag), axis=-1)
    chosen = np.take_along_axis(roots, index[..., None], axis=-1)[..., 0]
    return chosen.real + 1j * np.abs(chosen.imag)


def descend_surrogate(overlaps: Mapping[str, float] | np.ndarray, alpha: float, *,
                      steps: int = 200, lr: float = 1e-3, clip_norm: float | None = 1.0,
                      horizon: int = 20, real_tolerance: float = 1e-9) -> SurrogatePath:
    """Gradient descent (SGD, global-norm clipping) on L_eff = alpha L_inf + (1 - alpha) L_0
    from the given overlaps, recording the dominant eigenvalue of P_eff at every step.

    Example
    -------
    >>> start = {"s_zm": -0.02, "s_zu": 0.5, "s_vm": 0.02, "s_vu": 0.1}
    >>> path = descend_surrogate(start, alpha=0.0, steps=5)
    >>> path.overlaps.shape, path.eigenvalue.shape
    ((6, 4), (6,))
    """
    return alpha_sweep(overlaps, np.array([alpha]), steps=steps, lr=lr, clip_norm=clip_norm,
                       horizon=horizon, real_tolerance=real_tolerance)[0]


def alpha_sweep(overlaps: Mapping[str, float] | np.ndarray, alphas: np.ndarray | None = None,
                *, steps: int = 200, lr: float = 1e-3, clip_norm: float | None = 1.0,
                horizon: int = 20, real_tolerance: float = 1e-9) -> list[SurrogatePath]:
    """:func:`descend_surrogate` for each alpha (default 0, 0.05, ..., 1), all descents run
    together (each with its own clipping, exactly as if run alone)."""
    if alphas is None:
        alphas = np.round(np.arange(0.0, 1.0001, 0.05), 10)
    alphas = np.asarray(alphas, dtype=np.float64)
    if isinstance(overlaps, Mapping):
        overlaps = np.array([overlaps[k] for k in ("s_zm", "s_zu", "s_vm", "s_vu")])
    start = np.broadcast_to(np.asarray(overlaps, dtype=np.float64), (len(alphas), 4))
    paths = np.asarray(_descend(jnp.asarray(start), jnp.asarray(alphas), lr,
                                np.inf if clip_norm is None else clip_norm, steps=steps,
                                horizon=horizon))          # (alphas, steps + 1, 4)
    return [_path(float(a), path, real_tolerance) for a, path in zip(alphas, paths,
                                                                      strict=True)]


@functools.partial(jax.jit, static_argnames=("steps", "horizon"))
def _descend(start: jax.Array, alphas: jax.Array, lr: float, clip_norm: float, *, steps: int,
             horizon: int) -> jax.Array:
    """SGD with per-row global-norm clipping on sum_rows L_eff(alpha_row), all rows at once."""
    def loss(values: jax.Array) -> jax.Array:
        stability, myopic = surrogate_terms(values, horizon)
        return jnp.sum(alphas * stability + (1 - alphas) * myopic)

    def step(values: jax.Array, _: None) -> tuple[jax.Array, jax.Array]:
        grad = jax.grad(loss)(values)
        norm = jnp.linalg.norm(grad, axis=1, keepdims=True)
        grad = grad * jnp.minimum(1.0, clip_norm / (norm + 1e-6))
        values = values - lr * grad
        return values, values

    _, path = lax.scan(step, start, None, length=steps)
    return jnp.swapaxes(jnp.concatenate([start[None], path]), 0, 1)


def _path(alpha: float, path: np.ndarray, real_tolerance: float) -> SurrogatePath:
    eigenvalue = dominant_root(cubic_roots(*path.T))
    complex_pair = np.abs(eigenvalue.imag) > real_tolerance
    valid = len(path) if complex_pair.all() else int(np.argmin(complex_pair))
    if not complex_pair[0]:
        valid = len(path)  # the path starts real: nothing collides
    inside = np.flatnonzero(np.abs(eigenvalue[:valid]) < 1.0)
    crossing = int(inside[0]) if inside.size else None
    return SurrogatePath(alpha=alpha, overlaps=path, eigenvalue=eigenvalue, valid=valid,
                         crossing_step=crossing)


def crossing_window(overlaps: Mapping[str, float] | np.ndarray, *, coarse: float = 0.05,
                    fine: float = 0.01, **options: float) -> list[SurrogatePath]:
    """Scan alpha on a coarse grid over [0, 1], then on a fine grid around the alphas whose
    path crosses the unit circle; returns the fine paths (all alphas within one coarse step
    of a crossing one), sorted by alpha."""
    coarse_paths = alpha_sweep(overlaps, np.round(np.arange(0, 1 + 1e-9, coarse), 10),
                               **options)
    crossing = [p.alpha for p in coarse_paths if p.crossing_step is not None]
    if not crossing:
        return coarse_paths
    low, high = max(0.0, min(crossing) - coarse), min(1.0, max(crossing) + coarse)
    fine_alphas = np.round(np.arange(low, high + 1e-9, fine), 10)
    return alpha_sweep(overlaps, fine_alphas, **options)
