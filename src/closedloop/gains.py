"""Gain space (SPEC 5): effective gains of a policy, and LQR gains.

Example
-------
>>> import numpy as np
>>> states = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
>>> controls = states @ np.array([[-0.3], [-0.8]])
>>> effective_gains(states, controls, drop_first=0).round(6).tolist()
[[-0.3, -0.8]]
"""

from __future__ import annotations

import numpy as np
from scipy import linalg


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
    """
    steps = controls.shape[1]
    x = np.asarray(states, dtype=np.float64)[:, drop_first:steps].reshape(-1, states.shape[-1])
    u = np.asarray(controls, dtype=np.float64)[:, drop_first:].reshape(-1, controls.shape[-1])
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u))):
        return np.full((controls.shape[-1], states.shape[-1]), np.nan)
    solution, *_ = np.linalg.lstsq(x, u, rcond=None)
    return solution.T


def lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Infinite-horizon discrete LQR gain K for u = -K x (SciPy's Riccati solver).

    Example
    -------
    >>> from closedloop.plants import double_integrator
    >>> p = double_integrator()
    >>> lqr_gain(p.A, p.B, np.eye(2), np.eye(1)).round(4).tolist()
    [[0.4221, 1.2439]]
    """
    riccati = linalg.solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ riccati @ B, B.T @ riccati @ A)
