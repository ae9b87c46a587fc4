"""Gain space (science 5): effective gains, static-gain stability regions, the loss landscape,
and LQR gains.

The RNN sees the position only (partial observation), while a static gain u = K x and the LQR
controller use the full state (position and velocity). The learned network's effective gains
are the least-squares K that best explains its controls from the full state; they approach the
LQR gain but need not reach it: the network must estimate velocity from its memory.

A tanh network is not a linear controller, so its effective gains depend on the states they
are fitted on. Training fits them every epoch on ``evaluation.gain_fit_states`` closed-loop
rollouts (128 states of a scrambled Sobol' set by default, :func:`sobol_states`): the
compiled epoch accumulates the normal equations X^T X and X^T U in float64
(:func:`gain_normal_equations`), and the host solves them
(:func:`gains_from_normal_equations`); with ``gain_fit_states: test_set`` they are fitted on
the 10 test rollouts as the paper does (:func:`effective_gains`).

Example
-------
>>> import numpy as np
>>> states = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
>>> controls = states @ np.array([[-0.3], [-0.8]])
>>> effective_gains(states, controls, drop_first=0).round(6).tolist()
[[-0.3, -0.8]]
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from scipy import linalg
from scipy.stats import qmc

from closedloop.config import EvaluationConfig, LossConfig
from closedloop.core.costs import QuadraticCosts, cost_for
from closedloop.core.plants import LinearPlant

STABLE, UNSTABLE_OSCILLATORY, UNSTABLE_REAL = 0, 1, 2
REGION_NAMES = ("stable", "unstable-oscillatory", "unstable-real")
"""Codes returned by the classifiers, and their names."""


def effective_gains(states: np.ndarray, controls: np.ndarray, drop_first: int = 1) -> np.ndarray:
    """Least-squares K (n_u x n_x), no intercept, of u_t ~= K x_t over a closed-loop rollout.

    Parameters
    ----------
    states
        (batch, >= T, n_x) states x_t at which u_t was computed.
    controls
        (batch, T, n_u) controls u_t.
    drop_first
        Steps dropped at the start (the paper drops t = 0, where u_0 = 0 by convention).

    Example
    -------
    >>> states = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]])
    >>> controls = np.array([[[0.0], [-0.8], [-1.1]]])     # u_0 = 0, then u = -0.3 x1 - 0.8 x2
    >>> effective_gains(states, controls).round(6).tolist()
    [[-0.3, -0.8]]
    """
    steps = controls.shape[1]
    x = np.asarray(states, dtype=np.float64)[:, drop_first:steps].reshape(-1, states.shape[-1])
    u = np.asarray(controls, dtype=np.float64)[:, drop_first:].reshape(-1, controls.shape[-1])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u))):
        return np.full((controls.shape[-1], states.shape[-1]), np.nan)
    solution, *_ = np.linalg.lstsq(x, u, rcond=None)
    return solution.T


def sobol_states(count: int, n_states: int, state_range: float, seed: int) -> np.ndarray:
    """``count`` initial states in [-state_range, state_range]^n_states: the first points of
    a scrambled Sobol' sequence (SciPy's, scrambled from ``seed``), float64. A low-discrepancy
    set: averages over it converge much faster than over independent uniform draws, so the
    effective gains fitted on it settle with far fewer states (docs/science.md, gain space);
    powers of 2 balance it best.

    Example
    -------
    >>> states = sobol_states(256, 2, 1.0, seed=0)
    >>> states.shape, bool(np.abs(states).max() <= 1.0)
    ((256, 2), True)
    >>> np.histogram(states[:, 0], bins=4, range=(-1, 1))[0].tolist()   # 64 in every quarter
    [64, 64, 64, 64]
    """
    sampler = qmc.Sobol(n_states, scramble=True, seed=np.random.default_rng(seed))
    with warnings.catch_warnings():    # a count that is not a power of 2 is allowed
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol")
        unit = sampler.random(count)
    return (2.0 * unit - 1.0) * state_range


def gain_fit_description(evaluation: EvaluationConfig, n_states: int) -> str:
    """What a run's effective gains were fitted on, in words (for figures and reports).

    Example
    -------
    >>> from closedloop.config import EvaluationConfig
    >>> gain_fit_description(EvaluationConfig(), 2)
    "128 initial states in [-1, 1]^2 (scrambled Sobol' set)"
    >>> gain_fit_description(EvaluationConfig(gain_fit_states="test_set"), 2)
    'the 10 test states'
    """
    if evaluation.gains_on_test_set:
        return f"the {evaluation.test_size} test states"
    how = "scrambled Sobol' set" if evaluation.gain_fit_sampling == "sobol" else "uniform draws"
    return (f"{evaluation.gain_fit_states} initial states in [-{evaluation.gain_fit_range:g}, "
            f"{evaluation.gain_fit_range:g}]^{n_states} ({how})")


def gain_normal_equations(states: jax.Array, controls: jax.Array, drop_first: int = 1
                          ) -> tuple[jax.Array, jax.Array]:
    """The normal equations of :func:`effective_gains`' least squares, summed over a rollout:
    X^T X (n_x x n_x) and X^T U (n_x x n_u), with X the states x_t and U the controls u_t
    (rows over batch and t = ``drop_first`` .. T-1). JAX, so a compiled epoch can reduce a
    large rollout to these two small matrices; they are summed in float64 (per step over the
    batch, then over the steps), since the normal equations square the condition number of
    X; :func:`gains_from_normal_equations` solves them.

    Parameters
    ----------
    states
        (batch, >= T, n_x) states x_t at which u_t was computed.
    controls
        (batch, T, n_u) controls u_t.
    drop_first
        Steps dropped at the start (the paper drops t = 0, where u_0 = 0 by convention).

    Returns
    -------
    tuple of jax.Array
        (X^T X, X^T U), float64.

    Example
    -------
    >>> states = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    >>> controls = states @ jnp.array([[-0.3], [-0.8]])
    >>> gram, cross = gain_normal_equations(states, controls, drop_first=0)
    >>> gram.tolist(), gains_from_normal_equations(gram, cross).round(6).tolist()
    ([[2.0, 1.0], [1.0, 2.0]], [[-0.3, -0.8]])
    """
    steps = controls.shape[1]
    x = jnp.asarray(states[:, drop_first:steps], dtype=jnp.float64)
    u = jnp.asarray(controls[:, drop_first:], dtype=jnp.float64)
    highest = lax.Precision.HIGHEST      # no reduced-precision products on accelerators
    gram = jnp.einsum("bti,btj->tij", x, x, precision=highest).sum(axis=0)
    cross = jnp.einsum("bti,btj->tij", x, u, precision=highest).sum(axis=0)
    return gram, cross


def gains_from_normal_equations(gram: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """The least-squares K (n_u x n_x) from the normal equations X^T X K^T = X^T U, solved
    in float64 (the minimum-norm solution when X^T X is singular, as ``numpy.linalg.lstsq``
    on X and U gives); NaN when they are not finite (a diverging rollout).

    Parameters
    ----------
    gram, cross
        X^T X (n_x x n_x) and X^T U (n_x x n_u), from :func:`gain_normal_equations`.

    Example
    -------
    >>> gram = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> gains_from_normal_equations(gram, gram @ np.array([[-0.3], [-0.8]])).round(6).tolist()
    [[-0.3, -0.8]]
    """
    gram = np.asarray(gram, dtype=np.float64)
    cross = np.asarray(cross, dtype=np.float64)
    if not (np.all(np.isfinite(gram)) and np.all(np.isfinite(cross))):
        return np.full((cross.shape[-1], gram.shape[-1]), np.nan)
    solution, *_ = np.linalg.lstsq(gram, cross, rcond=None)
    return solution.T


def jury_stable(coefficients: np.ndarray) -> np.ndarray:
    """Jury's test: whether all roots of a real polynomial lie strictly inside the unit circle.

    Parameters
    ----------
    coefficients
        (..., n + 1) real coefficients, highest power first (leading one non-zero).

    Example
    -------
    >>> jury_stable(np.array([[1.0, -1.0, 0.5], [1.0, -2.5, 1.0]])).tolist()   # 0.5+-0.5j; 2, 0.5
    [True, False]
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    flat = coefficients.reshape(-1, coefficients.shape[-1])
    result = np.array([_jury_row(row) for row in flat], dtype=bool)
    return result.reshape(coefficients.shape[:-1])


def _jury_row(row: np.ndarray) -> bool:
    poly = row / row[0]
    degree = len(poly) - 1
    if degree == 0:
        return True
    # necessary conditions: P(1) > 0, (-1)^n P(-1) > 0
    if np.polyval(poly, 1.0) <= 0 or (-1) ** degree * np.polyval(poly, -1.0) <= 0:
        return False
    current = poly[::-1].copy()  # a_0 ... a_n (ascending powers)
    while len(current) > 2:
        a0, an = current[0], current[-1]
        if abs(a0) >= abs(an):
            return False
        # reduced row: b_k = a_n a_{k+1}... (Schur-Cohn step on ascending coefficients)
        reversed_ = current[::-1]
        reduced = an * current - a0 * reversed_
        current = reduced[1:]
    return bool(abs(current[0]) < abs(current[-1]))


def classify_static_gains(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
    """Classify u = k1 x + k2 v on the double integrator analytically (science 5).

    The closed loop P_red = [[1, 1], [k1, 1 + k2]] has the characteristic polynomial
    l^2 - (2 + k2) l + (1 + k2 - k1). Jury's conditions give stability iff k1 < 0, k2 < k1,
    k2 > k1 - 2 and 2 k2 > k1 - 4 (near the origin the boundaries are k1 = 0 and k2 = k1);
    the eigenvalues are complex iff k2^2 + 4 k1 < 0.

    Returns
    -------
    numpy.ndarray
        Codes ``STABLE`` (0), ``UNSTABLE_OSCILLATORY`` (1), ``UNSTABLE_REAL`` (2).

    Example
    -------
    >>> classify_static_gains(np.array([-0.4, -0.1, 0.2]), np.array([-1.2, 0.0, 0.0])).tolist()
    [0, 1, 2]
    """
    k1, k2 = np.broadcast_arrays(np.asarray(k1, dtype=np.float64),
                                 np.asarray(k2, dtype=np.float64))
    stable = (k1 < 0) & (k2 < k1) & (k2 > k1 - 2) & (2 * k2 > k1 - 4)
    oscillatory = k2 ** 2 + 4 * k1 < 0
    return np.where(stable, STABLE, np.where(oscillatory, UNSTABLE_OSCILLATORY, UNSTABLE_REAL))


def classify_gains_numerically(plant: LinearPlant, gains: np.ndarray) -> np.ndarray:
    """Classify static gains u = K x for any plant from the eigenvalues of A + B K.

    ``gains`` is (..., n_u, n_x). Stable: spectral radius < 1; otherwise oscillatory when an
    eigenvalue on or outside the unit circle is complex, real when they all are real.
    """
    closed = plant.A + plant.B @ np.asarray(gains, dtype=np.float64)
    values = np.linalg.eigvals(closed)
    outside = np.abs(values) >= 1.0
    oscillatory = np.any(outside & (np.abs(values.imag) > 1e-12), axis=-1)
    stable = ~np.any(outside, axis=-1)
    return np.where(stable, STABLE, np.where(oscillatory, UNSTABLE_OSCILLATORY, UNSTABLE_REAL))


def loss_landscape(plant: LinearPlant, k1: np.ndarray, k2: np.ndarray, *, steps: int = 50,
                   x0: tuple[float, ...] = (1.0, 1.0)) -> np.ndarray:
    """log of the summed state loss sum_{t=0}^{steps-1} |x_t|^2 from ``x0`` under u = K x,
    on a grid of gains K = (k1, k2) (science 5), simulated in one vectorised loop.

    Example
    -------
    >>> from closedloop.core.plants import double_integrator
    >>> grid = loss_landscape(double_integrator(), np.array([-0.4]), np.array([-1.0]))
    >>> grid.shape
    (1,)
    """
    k1, k2 = np.broadcast_arrays(np.asarray(k1, dtype=np.float64),
                                 np.asarray(k2, dtype=np.float64))
    gains = np.stack([k1, k2], axis=-1)[..., None, :]
    closed = plant.A + plant.B @ gains
    x = np.broadcast_to(np.asarray(x0, dtype=np.float64), (*k1.shape, plant.n_states)).copy()
    total = np.zeros(k1.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            total += (x ** 2).sum(-1)
            x = (closed @ x[..., None])[..., 0]
        return np.log(total)


def lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Infinite-horizon discrete LQR gain K for u = -K x (SciPy's Riccati solver).

    Example
    -------
    >>> from closedloop.core.plants import double_integrator
    >>> p = double_integrator()
    >>> lqr_gain(p.A, p.B, np.eye(2), np.eye(1)).round(4).tolist()
    [[0.4221, 1.2439]]
    """
    riccati = linalg.solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ riccati @ B, B.T @ riccati @ A)


def finite_horizon_lqr(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray,
                       steps: int, terminal: np.ndarray | None = None) -> np.ndarray:
    """Time-varying gains K_0..K_{T-1} (u_t = -K_t x_t) of the finite-horizon LQR problem
    sum_{t<T} x'Qx + u'Ru + x_T' Q_T x_T, by the backward Riccati recursion.

    Returns
    -------
    numpy.ndarray
        (steps, n_u, n_x); K_0 approaches the infinite-horizon gain as ``steps`` grows.

    Example
    -------
    >>> from closedloop.core.plants import double_integrator
    >>> p = double_integrator()
    >>> finite_horizon_lqr(p.A, p.B, np.eye(2), np.eye(1), 200)[0].round(4).tolist()
    [[0.4221, 1.2439]]
    """
    riccati = np.zeros_like(Q) if terminal is None else np.asarray(terminal, dtype=np.float64)
    gains = np.zeros((steps, B.shape[1], A.shape[0]))
    for t in range(steps - 1, -1, -1):
        gain = np.linalg.solve(R + B.T @ riccati @ B, B.T @ riccati @ A)
        gains[t] = gain
        riccati = Q + A.T @ riccati @ (A - B @ gain)
        riccati = 0.5 * (riccati + riccati.T)
    return gains


def equivalent_costs(loss: LossConfig, plant: LinearPlant, batch_size: int, steps: int
                     ) -> QuadraticCosts:
    """Q and R (up to a common factor, which leaves the LQR gain unchanged) that the training
    loss puts on one sample's x_t and u_t: the weights of the cost ``loss.kind`` names
    (:meth:`~closedloop.core.costs.Cost.quadratic_weights`, derived from its terms).

    ``paper_di``: mean over batch and state dimensions of x^2 plus control_cost times the sum
    over the batch of u^2 gives R / Q = control_cost * n_x * batch (the paper: 0.005 * 2 *
    100 = 1); ``mean_state``: R / Q = control_cost * n_x * steps; ``per_sample``:
    Q = state_weight I, R = control_cost I. A zero control cost is replaced by 1e-9 (LQR needs
    R > 0).

    Raises
    ------
    ConfigError
        For a cost that is not quadratic in the state and the command (tracking, reaching).

    Example
    -------
    >>> from closedloop.config import LossConfig
    >>> from closedloop.core.plants import double_integrator
    >>> costs = equivalent_costs(LossConfig(control_cost=0.005), double_integrator(), 100, 50)
    >>> float(costs.R[0, 0] / costs.Q[0, 0])
    1.0
    """
    return cost_for(loss).quadratic_weights(plant, batch_size, steps)
