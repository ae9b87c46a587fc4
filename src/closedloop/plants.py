"""Linear time-invariant plants (SPEC 1.1).

    x_{t+1} = A x_t + B u_t + w_t,    y_t = C x_t,    w_t ~ N(0, sigma_w^2 dt I)

Matrices are stored in the column-vector convention of the maths (``A`` is n_x x n_x, ``B``
n_x x n_u, ``C`` n_y x n_x), as float64 NumPy arrays. Tensors in the rollout are batch-first
rows, so a step is ``x @ A.T + u @ B.T``; :meth:`LinearPlant.step` does exactly that.

Example
-------
>>> import torch
>>> plant = double_integrator()
>>> plant.A.tolist(), plant.B.tolist(), plant.C.tolist()
([[1.0, 1.0], [0.0, 1.0]], [[0.0], [1.0]], [[1.0, 0.0]])
>>> plant.step(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5]])).tolist()
[[3.0, 2.5]]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from closedloop.config import PlantConfig
from closedloop.errors import ConfigError, ShapeError


def plant_matrices(A: Any, B: Any, C: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C) as float64 matrices, checked: A n x n, B n x m, C p x n, none empty, all
    finite (what :class:`LinearPlant` and ``plant.kind: linear`` configs accept).

    Raises
    ------
    ShapeError
        Naming the matrix that does not fit.

    Example
    -------
    >>> [m.shape for m in plant_matrices([[1, 1], [0, 1]], [[0], [1]], [[1, 0]])]
    [(2, 2), (2, 1), (1, 2)]
    """
    matrices = []
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        try:
            matrices.append(np.atleast_2d(np.asarray(matrix, dtype=np.float64)))
        except (ValueError, TypeError):
            raise ShapeError(f"{name} is not a rectangular matrix of numbers") from None
    A, B, C = matrices
    n = A.shape[0]
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ShapeError(f"{name} must be a non-empty matrix, got shape {matrix.shape}")
    if A.shape != (n, n):
        raise ShapeError(f"A must be square, got shape {A.shape}")
    if B.shape[0] != n:
        raise ShapeError(f"B must have {n} rows to match A, got shape {B.shape}")
    if C.shape[1] != n:
        raise ShapeError(f"C must have {n} columns to match A, got shape {C.shape}")
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        if not np.all(np.isfinite(matrix)):
            raise ShapeError(f"{name} has non-finite entries")
    return A, B, C


@dataclass(frozen=True)
class LinearPlant:
    """A discrete-time LTI plant with optional process noise and state clamping.

    Parameters
    ----------
    A, B, C
        System matrices (column-vector maths): n_x x n_x, n_x x n_u, n_y x n_x.
    dt
        Time step; scales the process-noise variance.
    process_noise_std
        sigma_w; the noise w_t ~ N(0, sigma_w^2 dt I) is added after every step.
    clamp
        If set, the state is clipped to [-clamp, clamp] after every step.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    dt: float = 1.0
    process_noise_std: float = 0.0
    clamp: float | None = None
    _cache: dict[Any, tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False,
                                                        compare=False)

    def __post_init__(self) -> None:
        A, B, C = plant_matrices(self.A, self.B, self.C)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "B", B)
        object.__setattr__(self, "C", C)

    @property
    def n_states(self) -> int:
        """Dimension of x."""
        return self.A.shape[0]

    @property
    def n_inputs(self) -> int:
        """Dimension of u."""
        return self.B.shape[1]

    @property
    def n_outputs(self) -> int:
        """Dimension of y = C x."""
        return self.C.shape[0]

    def row_matrices(self, dtype: torch.dtype, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A^T, B^T, C^T) as tensors, for batch-first rows: x_next = x @ A^T + u @ B^T."""
        key = (dtype, str(device))
        if key not in self._cache:
            self._cache[key] = tuple(torch.as_tensor(m.T.copy(), dtype=dtype, device=device)
                                     for m in (self.A, self.B, self.C))
        return self._cache[key]  # type: ignore[return-value]

    def observe(self, x: torch.Tensor) -> torch.Tensor:
        """y = C x for a batch of states ``x`` (..., n_x)."""
        _, _, c_t = self.row_matrices(x.dtype, x.device)
        return x @ c_t

    def step(self, x: torch.Tensor, u: torch.Tensor, noise: torch.Tensor | None = None
             ) -> torch.Tensor:
        """One step x_{t+1} = A x + B u (+ noise), clamped if the plant clamps.

        ``noise`` is the already-scaled w_t (see :meth:`draw_noise`).
        """
        a_t, b_t, _ = self.row_matrices(x.dtype, x.device)
        x_next = x @ a_t + u @ b_t
        if noise is not None:
            x_next = x_next + noise
        if self.clamp is not None:
            x_next = x_next.clamp(-self.clamp, self.clamp)
        return x_next

    def draw_noise(self, batch: int, steps: int, generator: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """Process noise for a whole episode, (batch, steps, n_x), or None without noise."""
        if self.process_noise_std == 0.0:
            return None
        std = self.process_noise_std * float(np.sqrt(self.dt))
        noise = torch.randn(batch, steps, self.n_states, generator=generator, dtype=dtype)
        return noise * std


def integrator(order: int = 2, n_inputs: int = 1, n_observed: int = 1, dt: float = 1.0,
               **options: Any) -> LinearPlant:
    """The k-th order integrator: A = I + dt * superdiagonal, B = dt on the last m coordinates,
    C selects the first c coordinates.

    Example
    -------
    >>> integrator(3, n_inputs=2, n_observed=1, dt=0.5).B.tolist()
    [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5]]
    """
    if not 1 <= n_inputs <= order or not 1 <= n_observed <= order:
        raise ConfigError("an integrator needs 1 <= n_inputs, n_observed <= order")
    A = np.eye(order) + dt * np.eye(order, k=1)
    B = np.zeros((order, n_inputs))
    for i in range(1, n_inputs + 1):
        B[order - i, n_inputs - i] = dt
    C = np.eye(order)[:n_observed]
    return LinearPlant(A, B, C, dt=dt, **options)


def double_integrator(dt: float = 1.0, **options: Any) -> LinearPlant:
    """The paper's plant: position and velocity, force input, position observed."""
    return integrator(2, 1, 1, dt, **options)


def point_mass_2d(dt: float = 0.1, **options: Any) -> LinearPlant:
    """Two independent double integrators: state (x, v_x, y, v_y), input (a_x, a_y),
    positions (x, y) observed.

    Example
    -------
    >>> point_mass_2d().C.tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """
    block = integrator(2, 1, 1, dt)
    A = np.kron(np.eye(2), block.A)
    B = np.kron(np.eye(2), block.B)
    C = np.kron(np.eye(2), block.C)
    return LinearPlant(A, B, C, dt=dt, **options)


def from_control(system: Any, **options: Any) -> LinearPlant:
    """A plant from a discrete-time ``control.StateSpace`` (the optional ``control`` extra).

    The feedthrough D must be zero: the agent's output reaches its input only through the plant.
    """
    dt = getattr(system, "dt", None)
    if dt is None or dt is True or dt == 0:
        raise ConfigError("from_control needs a discrete-time system with a numeric dt "
                          "(use control.c2d to discretise)")
    D = np.asarray(system.D, dtype=np.float64)
    if np.any(D != 0):
        raise ConfigError("from_control needs D = 0 (no direct feedthrough)")
    return LinearPlant(np.asarray(system.A), np.asarray(system.B), np.asarray(system.C),
                       dt=float(dt), **options)


def plant_from_config(config: PlantConfig) -> LinearPlant:
    """Build the plant a :class:`~closedloop.config.PlantConfig` describes."""
    options = {"process_noise_std": config.process_noise_std, "clamp": config.clamp}
    if config.kind == "integrator":
        return integrator(config.order, config.n_inputs, config.n_observed, config.dt, **options)
    if config.kind == "point_mass_2d":
        return point_mass_2d(config.dt, **options)
    try:
        return LinearPlant(np.array(config.A), np.array(config.B), np.array(config.C),
                           dt=config.dt, **options)
    except (ShapeError, ValueError) as exc:
        raise ConfigError(f"invalid value for 'plant.A/B/C': {exc}") from None
