"""Fixed points of a closed loop, found the way RNN fixed-point analysis finds them (Sussillo
and Barak, 2013): minimise q(s) = 0.5 |F(s) - s|^2 over the joint state s = (x, h) from many
starts, F the loop's one-step map; polish each minimum with Newton's method; keep those
where F(s) = s (q near 0; a minimum with q > 0 is a slow point, reported apart), merge
duplicates, and read each one's stability from the spectrum of the coupled Jacobian there.

Where q is badly scaled (the muscle arm's forces in newtons beside activations and hidden
states of order 1, on which Adam's equal steps wander off), ``iterate`` replaces the
minimisation by running the loop itself from each start: that finds the attracting fixed
points (only those), which Newton's method then polishes as before.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.agents import StaticGain
>>> from closedloop.core.mechanics import Pendulum
>>> gain = StaticGain(2, 1)
>>> points = find_fixed_points(Pendulum(), gain, {"K": jnp.zeros((1, 2))},
...                            jnp.array([[0.3, 0.0], [2.9, 0.0], [-0.2, 0.1]]))
>>> [(round(float(p.state[0]), 4), p.stable) for p in points]   # hanging; upright
[(0.0, True), (3.1416, False)]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from closedloop.analysis.coupling import plant_jacobian_failure, reference_size, sorted_eigenvalues
from closedloop.core.agents import Agent, Params
from closedloop.core.plants import Plant
from closedloop.core.rollout import one_step_map
from closedloop.errors import ConfigError
from closedloop.runs.store import Run

SEARCH_STEPS = 1500
"""Adam steps on q(s) from every start."""
NEWTON_STEPS = 8
"""Newton steps on F(s) - s after the search."""
FIXED_TOLERANCE = 1e-9
"""|F(s) - s| below which a point is fixed (relative to 1 + |s|)."""
MERGE_DISTANCE = 1e-5
"""Points closer than this (relative to 1 + |s|) are one fixed point."""
RUNAWAY_NORM = 1e6
"""A search that ends beyond this |s| ran away (a diverging loop), it found nothing."""


@dataclass
class FixedPoint:
    """One fixed point (or slow point) of the loop.

    Attributes
    ----------
    state
        s = (x, h), float64.
    residual
        |F(s) - s|.
    eigenvalues
        Of the coupled Jacobian at s, descending modulus.
    starts
        How many starts converged to it.
    """

    state: np.ndarray
    residual: float
    eigenvalues: np.ndarray
    starts: int = 1

    @property
    def spectral_radius(self) -> float:
        """max |eig|."""
        return float(np.abs(self.eigenvalues).max()) if self.eigenvalues.size else 0.0

    @property
    def stable(self) -> bool:
        """Whether the loop returns to it after a small push (spectral radius < 1)."""
        return self.spectral_radius < 1.0

    @property
    def fixed(self) -> bool:
        """Whether F(s) = s to :data:`FIXED_TOLERANCE` (else a slow point)."""
        return self.residual < FIXED_TOLERANCE * (1.0 + float(np.linalg.norm(self.state)))

    def to_json(self, state_names: tuple[str, ...] = ()) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"state": self.state.tolist(), "state_names": list(state_names),
                "residual": self.residual, "spectral_radius": self.spectral_radius,
                "stable": self.stable, "fixed": self.fixed, "starts": self.starts,
                "eigenvalues": [[float(v.real), float(v.imag)] for v in self.eigenvalues]}


def loop_map(plant: Plant, agent: Agent, params: Params) -> Callable[[jax.Array], jax.Array]:
    """F(s) for one joint state s = (x, h) (reference inputs at 0).

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.mechanics import Pendulum
    >>> step = loop_map(Pendulum(), StaticGain(2, 1), {"K": jnp.zeros((1, 2))})
    >>> [round(v, 6) for v in step(jnp.array([0.0, 1.0])).tolist()]   # damped: 1 - 0.05 * 0.1
    [0.04975, 0.995]
    """
    n_x, n_ref = plant.n_states, reference_size(plant, agent)

    def step(state: jax.Array) -> jax.Array:
        reference = jnp.zeros(n_ref, dtype=state.dtype) if n_ref else None
        x, h = one_step_map(plant, agent, params, state[:n_x], state[n_x:], reference)
        return jnp.concatenate((x, h))

    return step


@functools.partial(jax.jit, static_argnums=(0, 1, 4, 5, 6))
def _search(plant: Plant, agent: Agent, params: Params, starts: jax.Array, steps: int,
            learning_rate: float, iterate: int) -> tuple[jax.Array, jax.Array]:
    step = loop_map(plant, agent, params)

    def speed(state: jax.Array) -> jax.Array:
        return 0.5 * jnp.sum((step(state) - state) ** 2)

    optimizer = optax.adam(learning_rate)

    def descend(start: jax.Array) -> jax.Array:
        if iterate:
            state, _ = jax.lax.scan(lambda s, _: (step(s), None), start, None, length=iterate)
            return polish(state)

        def update(carry: tuple[jax.Array, Any], _: Any) -> tuple[tuple[jax.Array, Any], None]:
            state, opt_state = carry
            updates, opt_state = optimizer.update(jax.grad(speed)(state), opt_state)
            return (optax.apply_updates(state, updates), opt_state), None

        (state, _), _ = jax.lax.scan(update, (start, optimizer.init(start)), None,
                                     length=steps)
        return polish(state)

    def polish(state: jax.Array) -> jax.Array:
        def newton(state: jax.Array, _: Any) -> tuple[jax.Array, None]:
            jacobian = jax.jacfwd(step)(state) - jnp.eye(state.shape[0], dtype=state.dtype)
            moved = state - jnp.linalg.lstsq(jacobian, step(state) - state)[0]
            better = jnp.linalg.norm(step(moved) - moved) < jnp.linalg.norm(step(state) - state)
            return jnp.where(better & jnp.all(jnp.isfinite(moved)), moved, state), None

        state, _ = jax.lax.scan(newton, state, None, length=NEWTON_STEPS)
        return state

    found = jax.vmap(descend)(starts)
    return found, jax.vmap(lambda s: jnp.linalg.norm(step(s) - s))(found)


def find_fixed_points(plant: Plant, agent: Agent, params: Mapping[str, Any], starts: Any, *,
                      steps: int = SEARCH_STEPS, learning_rate: float = 1e-2,
                      include_slow: bool = False, iterate: int = 0) -> list[FixedPoint]:
    """The loop's fixed points reached from ``starts`` (K, n_x + N), float64, merged, each
    with its Jacobian spectrum, ordered by state norm; with ``include_slow``, the slow points
    (minima of q with F(s) != s) too.

    Parameters
    ----------
    starts
        Joint states s = (x, h) to start from: states the loop visits, with some spread.
    steps, learning_rate
        The Adam search on q(s).
    iterate
        When > 0, run the loop this many steps from each start instead of the Adam search
        (finds the attracting fixed points only).

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.mechanics import Pendulum
    >>> points = find_fixed_points(Pendulum(), StaticGain(2, 1), {"K": jnp.zeros((1, 2))},
    ...                            jnp.array([[3.0, 0.0]]))
    >>> round(float(points[0].state[0]), 4), points[0].stable     # upright, unstable
    (3.1416, False)

    Raises
    ------
    ConfigError
        For a plant JAX cannot differentiate (the search and the spectra need its Jacobian).
    """
    failure = plant_jacobian_failure(plant)
    if failure is not None:
        raise ConfigError(f"the fixed-point search differentiates the loop, and this plant "
                          f"cannot be differentiated ({failure})")
    as64 = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    found, residuals = _search(plant, agent, as64, jnp.asarray(np.asarray(starts, np.float64)),
                               steps, learning_rate, iterate)
    found, residuals = np.asarray(found), np.asarray(residuals)
    points: list[FixedPoint] = []
    for state, residual in sorted(zip(found, residuals, strict=True), key=lambda p: p[1]):
        if not np.all(np.isfinite(state)) or not np.isfinite(residual) \
                or np.linalg.norm(state) > RUNAWAY_NORM:
            continue
        scale = 1.0 + float(np.linalg.norm(state))
        same = [p for p in points if np.linalg.norm(p.state - state) < MERGE_DISTANCE * scale]
        if same:
            same[0].starts += 1
            continue
        points.append(FixedPoint(state, float(residual), np.zeros(0)))
    kept = [p for p in points if include_slow or p.fixed]
    jacobian = jax.jit(jax.jacfwd(loop_map(plant, agent, as64)))   # the coupled Jacobian
    for point in kept:
        point.eigenvalues = sorted_eigenvalues(np.asarray(jacobian(jnp.asarray(point.state))))
    return sorted(kept, key=lambda p: float(np.linalg.norm(p.state)))


def visited_starts(plant: Plant, agent: Agent, params: Mapping[str, Any], count: int, *,
                   spread: float, steps: int, seed: int = 0, zero_first_control: bool = True
                   ) -> np.ndarray:
    """``count`` joint states (x, h) the loop visits from starts x* + U(-spread, spread) over
    ``steps`` steps, each pushed by a little noise: where the search for fixed points begins.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.mechanics import Pendulum
    >>> visited_starts(Pendulum(), StaticGain(2, 1), {"K": jnp.zeros((1, 2))}, 8,
    ...                spread=1.0, steps=20).shape
    (8, 2)
    """
    from closedloop.core.rollout import rollout

    as64 = {k: jnp.asarray(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
    rng = np.random.default_rng(seed)
    episodes = max(1, count // 4)
    offsets = rng.uniform(-spread, spread, (episodes, plant.n_core_states))
    x0 = plant.initial_states(jnp.asarray(offsets))
    n_ref = reference_size(plant, agent)
    reference = jnp.zeros((episodes, steps, n_ref)) if n_ref else None
    traj = rollout(plant, agent, as64, steps=steps, x0=x0, reference=reference,
                   zero_first_control=zero_first_control, record_hidden=True)
    states = np.concatenate([np.asarray(traj.states[:, :-1]), np.asarray(traj.hidden)], -1)
    states = states.reshape(-1, states.shape[-1])
    states = states[np.all(np.isfinite(states), axis=1)]
    if not len(states):
        raise ValueError("the loop leaves the finite numbers from every start")
    chosen = states[rng.choice(len(states), size=count, replace=len(states) < count)]
    return chosen + rng.normal(scale=0.01 * (1.0 + np.abs(chosen)), size=chosen.shape)


@dataclass(frozen=True)
class RunFixedPoints:
    """The fixed points of a recorded run's loop at one epoch (:func:`run_fixed_points`).

    Attributes
    ----------
    epoch
        The snapshot epoch the parameters come from.
    starts
        How many starts the search began from.
    points
        The fixed and slow points, nearest the origin first.
    state_names
        The plant's state names (empty for a linear plant without names).
    n_states
        How many entries of each point's state are the plant's (the rest: the agent's).
    """

    epoch: int
    starts: int
    points: list[FixedPoint]
    state_names: tuple[str, ...]
    n_states: int

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (each point by :meth:`FixedPoint.to_json`)."""
        return {"epoch": self.epoch, "starts": self.starts,
                "points": [p.to_json(self.state_names) for p in self.points]}


def run_fixed_points(run: Run, epoch: int | str = "last", starts: int = 64, *,
                     include_slow: bool = False, spread: float | None = None,
                     iterate: int = 0) -> RunFixedPoints:
    """Fixed points of a run's closed loop (network and plant together) with the parameters
    of snapshot ``epoch`` (an epoch or ``"last"``): searched from ``starts`` states the loop
    visits from the run's evaluation initial states (:func:`visited_starts`; ``spread``
    replaces their range, by default ``evaluation.initial_state_range``, or 1 where that is
    0), as ``closedloop fixed-points`` prints them; ``iterate``: see
    :func:`find_fixed_points`.

    Raises
    ------
    ConfigError
        When the loop leaves the finite numbers from every start.

    Example
    -------
    >>> from closedloop.runs import load_run
    >>> result = run_fixed_points(load_run("runs/pendulum.h5"))         # doctest: +SKIP
    >>> [(p.stable, p.fixed) for p in result.points]                     # doctest: +SKIP
    [(True, True)]
    """
    from closedloop.analysis.replay import run_model

    at = int(run.snapshot_epochs[-1]) if epoch == "last" else int(epoch)
    params = run.parameters(at)
    plant, agent = run_model(run, at)
    config = run.config
    try:
        begin = visited_starts(plant, agent, params, starts,
                               spread=spread or config.evaluation.initial_state_range or 1.0,
                               steps=config.test_steps,
                               zero_first_control=config.training.zero_first_control)
    except ValueError as exc:
        raise ConfigError(f"{run.path}: {exc}") from None
    points = find_fixed_points(plant, agent, params, begin, include_slow=include_slow,
                               iterate=iterate)
    return RunFixedPoints(at, starts, points, tuple(getattr(plant, "state_names", ())),
                          plant.n_states)
