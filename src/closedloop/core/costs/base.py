"""The cost contract: one small base class, the quantities a cost charges, and the registry
behind ``loss.kind``.

A cost says once what it charges per sample and per step, as a weighted sum of
:class:`Term` s: per-element quantities of the trajectory (the squared state error, the squared
command, the squared effector error, or any function of the trajectory a user writes), each
with a weight and the order in which the episode loss reduces its batch (``b``), time (``t``)
and dimension (``d``) axes. Everything else is derived from those terms, with no second copy
of a formula:

* :meth:`Cost.episode_loss`, the training loss (reduced in exactly the declared order, so that
  float32 results are those of the paper's implementation);
* :meth:`Cost.step_costs`, the per-sample, per-step costs c_t with
  ``mean_batch sum_t c_t = episode_loss``: the returns of the black-box estimators;
* :meth:`Cost.quadratic_weights`, the LQR weights Q and R of a cost quadratic in the state
  and the command;
* :meth:`Cost.evaluation`, the test loss the figures plot.

A cost is a frozen dataclass subclassing :class:`Cost`, built from the run's
:class:`~closedloop.config.LossConfig`; register it under a name and a config selects it with
``loss.kind: name``::

    from closedloop.core.costs import Cost, Term, register_cost, squared_state_error

    @dataclass(frozen=True)
    class SummedState(Cost):
        def terms(self, plant, control_cost):
            return (Term(squared_state_error, (("sum", "btd"),)),)

    register_cost("summed_state", SummedState)

or, from an installed package, with an entry point in the group ``closedloop.costs``.
:mod:`closedloop.core.costs.paper_di` is a complete built-in written this way.

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.config import LossConfig
>>> from closedloop.core.plants import double_integrator
>>> from closedloop.core.rollout import Trajectory
>>> traj = Trajectory(states=jnp.ones((2, 3, 2)), controls=jnp.ones((2, 2, 1)))
>>> cost = cost_for(LossConfig(kind="paper_di", control_cost=0.5))
>>> float(cost.episode_loss(traj, double_integrator()))    # 2 steps * (1 + 0.5 * 2)
4.0
>>> cost.step_costs(traj, double_integrator()).tolist()    # 1 + 0.5 * batch (2) * 1
[[2.0, 2.0], [2.0, 2.0]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import jax
import numpy as np

from closedloop.config import LossConfig, RunConfig
from closedloop.core.plants import Plant, muscles_of, plant_from_config
from closedloop.core.registry import SubclassRegistry
from closedloop.core.rollout import Trajectory
from closedloop.errors import ConfigError, ShapeError

Weight = float | jax.Array
Reduction = tuple[tuple[Literal["mean", "sum"], str], ...]
"""Reductions in order: (``"mean"`` or ``"sum"``, the axes it reduces at once, as letters of
``b`` batch, ``t`` time, ``d`` dimensions)."""
Quantity = Callable[[Trajectory, Plant, "jax.Array | None"], jax.Array]
"""A per-element quantity (..., batch, T, dims) of a trajectory, its plant and reference."""

AXES = "btd"


def squared_state_error(traj: Trajectory, plant: Plant, reference: jax.Array | None
                        ) -> jax.Array:
    """(x_t - x*)^2 at t = 0..T-1 (the physical state only: a delay buffer is not charged).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.plants import double_integrator
    >>> traj = Trajectory(states=jnp.full((1, 3, 2), 2.0), controls=jnp.zeros((1, 2, 1)))
    >>> squared_state_error(traj, double_integrator(), None).shape
    (1, 2, 2)
    """
    return plant.state_error(_states(traj))[..., :-1, :] ** 2


def squared_control(traj: Trajectory, plant: Plant, reference: jax.Array | None) -> jax.Array:
    """u_t^2 at t = 0..T-1 (the trajectory's ``controls``).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> traj = Trajectory(states=None, controls=jnp.full((1, 2, 1), 3.0))
    >>> squared_control(traj, None, None).tolist()
    [[[9.0], [9.0]]]
    """
    return traj.controls ** 2


def squared_effector_error(traj: Trajectory, plant: Plant, reference: jax.Array | None
                           ) -> jax.Array:
    """(p(x_{t+1}) - r_t)^2 at t = 0..T-1, p the plant's effector position; with a go cue
    after the target's coordinates (reaching with a delay period), r_t = target x go_t: the
    start before the cue, the target from it on.

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.plants import point_mass_2d
    >>> traj = Trajectory(states=jnp.ones((1, 3, 4)), controls=jnp.zeros((1, 2, 2)))
    >>> squared_effector_error(traj, point_mass_2d(), jnp.zeros((1, 2, 2))).tolist()
    [[[1.0, 1.0], [1.0, 1.0]]]
    """
    if reference is None:
        raise ShapeError("this cost needs a reference")
    steps, axes = traj.controls.shape[-2], plant.n_effector
    wanted = reference[..., :steps, :axes]
    if reference.shape[-1] > axes:                      # the go cue
        wanted = wanted * reference[..., :steps, axes:axes + 1]
    return (plant.effector(_states(traj)[..., 1:, :]) - wanted) ** 2


def muscle_effort(traj: Trajectory, plant: Plant, reference: jax.Array | None) -> jax.Array:
    """The plant's per-muscle effort e(x_{t+1}) at t = 0..T-1 (the activations the commands
    u_t made; see the plant's ``effort``; a plant behind sensors is read through them).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> from closedloop.core.muscle_arm import MuscleArm
    >>> traj = Trajectory(states=jnp.zeros((1, 3, 16)), controls=jnp.zeros((1, 2, 6)))
    >>> muscle_effort(traj, MuscleArm(), None).shape
    (1, 2, 6)
    """
    muscled = muscles_of(plant)
    if muscled is None:
        raise ConfigError("loss.effort_cost needs a plant with muscles (plant.kind "
                          "muscle_arm)")
    return muscled.effort(_states(traj)[..., 1:, : muscled.n_states])


def squared_hidden(traj: Trajectory, plant: Plant, reference: jax.Array | None) -> jax.Array:
    """h_t^2 at t = 0..T-1, the agent's hidden activity (a rollout that records it).

    Example
    -------
    >>> import jax.numpy as jnp
    >>> traj = Trajectory(states=None, controls=jnp.zeros((1, 2, 1)),
    ...                   hidden=jnp.full((1, 2, 3), 0.5))
    >>> float(squared_hidden(traj, None, None).sum())
    1.5
    """
    if traj.hidden is None:
        raise ShapeError("loss.hidden_cost needs the agent's hidden states (a rollout with "
                         "record_hidden)")
    return traj.hidden ** 2


def _states(traj: Trajectory) -> jax.Array:
    if traj.states is None:
        raise ShapeError("this cost needs a plant-driven trajectory")
    return traj.states


def reduce(values: jax.Array, reduction: Reduction, axes: str = AXES) -> jax.Array:
    """``values``, whose last axes are ``axes``, reduced in the order ``reduction`` gives.

    Example
    -------
    >>> import jax.numpy as jnp
    >>> values = jnp.arange(8.0).reshape(2, 2, 2)
    >>> float(reduce(values, (("mean", "bd"), ("sum", "t"))))     # (3 + 4) / 1
    7.0
    """
    for op, letters in reduction:
        where = tuple(axes.index(a) - len(axes) for a in letters)
        values = values.mean(axis=where) if op == "mean" else values.sum(axis=where)
        axes = "".join(a for a in axes if a not in letters)
    return values


def batch_factor(operation: str, batch_share: float) -> float:
    """What a term reduced over the batch by ``operation`` (``"mean"`` or ``"sum"``) is
    multiplied by in the loss of a part of the batch that holds ``batch_share`` of it, so that
    the parts' losses add up to the whole batch's.

    Example
    -------
    >>> batch_factor("mean", 0.5), batch_factor("sum", 0.5)
    (0.5, 1.0)
    """
    return batch_share if operation == "mean" else 1.0


@dataclass(frozen=True)
class Term:
    """One quantity a cost charges.

    Attributes
    ----------
    quantity
        Its per-element values (..., batch, T, dims), e.g. :func:`squared_state_error`.
    reduction
        How the episode loss reduces them (see :data:`Reduction`), before the terms are
        added (and then reduced further by :attr:`Cost.then`).
    weight
        Its factor in the sum of terms (a number, or one per network).
    """

    quantity: Quantity
    reduction: Reduction
    weight: Weight = 1.0

    def operation(self, axis: str, then: Reduction) -> str:
        """How the episode loss reduces ``axis`` (``"mean"`` or ``"sum"``)."""
        return next(op for op, letters in (*self.reduction, *then) if axis in letters)


@dataclass(frozen=True)
class QuadraticCosts:
    """The per-sample LQR weights Q (n_x x n_x) and R (n_u x n_u) equivalent to a loss."""

    Q: np.ndarray
    R: np.ndarray


@dataclass(frozen=True)
class Cost(ABC):
    """A closed-loop objective. Subclass it as a frozen dataclass.

    A subclass writes
    -----------------
    terms(plant, control_cost)
        The :class:`Term` s it charges, in the order they are added (``control_cost`` is the
        config's, or one weight per network).

    and, where the default does not fit, sets or overrides
    ------------------------------------------------------
    then
        Reductions applied after the terms are added (the axes the terms leave; none by
        default).
    task
        The ``task.kind`` it charges (None: any).
    evaluation(traj, plant, reference)
        The test loss (by default the episode loss without its control cost).
    check(config)
        Refuse settings the cost cannot charge, with a :class:`~closedloop.errors.ConfigError`.

    What it gets: :meth:`episode_loss`, :meth:`step_costs`, :meth:`quadratic_weights`, and
    the :meth:`regularisers` the config asks for (muscle effort, hidden activity).

    Attributes
    ----------
    config
        The run's :class:`~closedloop.config.LossConfig`.
    """

    config: LossConfig
    then: ClassVar[Reduction] = ()
    task: ClassVar[str | None] = None

    @abstractmethod
    def terms(self, plant: Plant, control_cost: Weight) -> tuple[Term, ...]:
        """The quantities charged, their weights and reductions."""

    def check(self, config: RunConfig) -> None:
        """Refuse a task this cost does not charge, and an effort cost on a plant without
        muscles."""
        if self.task is not None and config.task.kind != self.task:
            raise ConfigError(f"loss.kind '{config.loss.kind}' needs task.kind '{self.task}'")
        if config.loss.effort_cost and muscles_of(plant_from_config(config.plant)) is None:
            raise ConfigError(f"loss.effort_cost charges muscle effort, and plant.kind "
                              f"'{config.plant.kind}' has no muscles (muscle_arm has)")

    def evaluation(self, traj: Trajectory, plant: Plant, reference: jax.Array | None = None
                   ) -> jax.Array:
        """The test loss: the episode loss with no control cost and no :meth:`regularisers`."""
        return self.episode_loss(traj, plant, reference, control_cost=0.0, regularised=False)

    # -- what a subclass gets -------------------------------------------------------------

    def regularisers(self, plant: Plant) -> tuple[Term, ...]:
        """The terms every cost adds from its config, each averaged over batch and time:
        ``effort_cost`` times the plant's muscle effort summed over muscles
        (:func:`muscle_effort`), ``hidden_cost`` times the agent's squared hidden activity
        averaged over units (:func:`squared_hidden`); none when both are 0.

        Example
        -------
        >>> from closedloop.core.costs.reaching import Reaching
        >>> from closedloop.core.muscle_arm import MuscleArm
        >>> cost = Reaching(LossConfig(kind="reaching", effort_cost=0.1, hidden_cost=0.01))
        >>> [(t.quantity.__name__, t.weight) for t in cost.regularisers(MuscleArm())]
        [('muscle_effort', 0.1), ('squared_hidden', 0.01)]
        """
        axes = "".join(letters for _, letters in self.terms(plant, 0.0)[0].reduction)
        averaged = (("mean", axes.replace("d", "")),)
        terms = []
        if self.config.effort_cost:
            terms.append(Term(muscle_effort, (("sum", "d"), *averaged), self.config.effort_cost))
        if self.config.hidden_cost:
            terms.append(Term(squared_hidden, (("mean", "d"), *averaged),
                              self.config.hidden_cost))
        return tuple(terms)

    def _terms(self, plant: Plant, control_cost: Weight | None, regularised: bool = True
               ) -> tuple[Term, ...]:
        """:meth:`terms` with the config's control cost unless ``control_cost`` replaces it,
        and the :meth:`regularisers` unless ``regularised`` is False."""
        terms = self.terms(plant, self.config.control_cost if control_cost is None
                           else control_cost)
        return terms + self.regularisers(plant) if regularised else terms

    def episode_loss(self, traj: Trajectory, plant: Plant, reference: jax.Array | None = None,
                     *, control_cost: Weight | None = None, batch_share: float = 1.0,
                     regularised: bool = True) -> jax.Array:
        """The training loss of ``traj``: the weighted terms, each reduced in its order, added,
        then reduced by :attr:`then`. Arrays may carry leading axes (..., batch, T, dims).
        ``control_cost`` replaces the config's (an ensemble passes one weight per network).

        ``batch_share``: the fraction of the whole batch ``traj`` holds, when the batch is
        split over devices. Every term is linear in its episodes, so the loss of the whole
        batch is the sum over its parts of each part's loss with the terms that average over
        the batch scaled by the part's share (a term that sums over the batch is not).
        ``regularised``: whether the :meth:`regularisers` are charged (the test loss does
        not)."""
        terms = self._terms(plant, control_cost, regularised)
        total = sum(batch_factor(term.operation("b", self.then), batch_share) * term.weight
                    * reduce(term.quantity(traj, plant, reference), term.reduction)
                    for term in terms)
        reduced = "".join(letters for _, letters in terms[0].reduction)
        return reduce(total, self.then, "".join(a for a in AXES if a not in reduced))

    def step_costs(self, traj: Trajectory, plant: Plant, reference: jax.Array | None = None,
                   *, control_cost: Weight | None = None) -> jax.Array:
        """Per-sample, per-step costs c_t (..., batch, T), with
        ``mean_batch sum_t c_t = episode_loss`` (pass a trajectory whose ``controls`` are the
        commands the plant received): each term reduced over its dimensions, times the batch
        size where the loss sums over the batch, over T where it averages over time."""
        batch, steps = traj.controls.shape[-3], traj.controls.shape[-2]
        summed, averaged = 0.0, 0.0
        for term in self._terms(plant, control_cost):
            values = reduce(term.quantity(traj, plant, reference),
                            ((term.operation("d", self.then), "d"),))
            weight = term.weight * batch if term.operation("b", self.then) == "sum" \
                else term.weight
            if term.operation("t", self.then) == "mean":
                averaged = averaged + weight * values
            else:
                summed = summed + weight * values
        return summed + averaged / steps

    def quadratic_weights(self, plant: Plant, batch_size: int, steps: int) -> QuadraticCosts:
        """Q = q I and R = r I (up to a common factor, which leaves the LQR gain unchanged)
        that the loss puts on one sample's x_t and u_t, for a cost whose terms are
        :func:`squared_state_error` and :func:`squared_control`: each weight times the batch
        size where the loss sums over the batch, over T where it averages over time, over
        the dimensions where it averages over them. A zero control weight is replaced by
        1e-9 (LQR needs R > 0).

        Raises
        ------
        ConfigError
            For a cost that is not quadratic in the state and the command.
        """
        sizes = {squared_state_error: plant.n_states, squared_control: plant.n_inputs}
        per_element = dict.fromkeys(sizes, 0.0)
        for term in self._terms(plant, None):
            if term.quantity not in sizes:
                raise ConfigError(f"loss.kind '{self.config.kind}' is not quadratic in the "
                                  "state and the command: it has no LQR weights")
            scale = float(term.weight)
            scale *= batch_size if term.operation("b", self.then) == "sum" else 1
            scale /= steps if term.operation("t", self.then) == "mean" else 1
            scale /= sizes[term.quantity] if term.operation("d", self.then) == "mean" else 1
            per_element[term.quantity] += scale
        return QuadraticCosts(per_element[squared_state_error] * np.eye(plant.n_states),
                              max(per_element[squared_control], 1e-9) * np.eye(plant.n_inputs))


COSTS = SubclassRegistry("cost", "closedloop.costs", Cost, key="loss.kind")
"""Costs by the name ``loss.kind`` gives (built-ins are added by
:mod:`closedloop.core.costs`)."""


def register_cost(name: str, cls: type[Cost]) -> None:
    """Make ``loss.kind: name`` train with ``cls`` (a frozen dataclass subclassing
    :class:`Cost`).

    Example
    -------
    >>> from closedloop.core.costs.mean_state import MeanState
    >>> register_cost("my-mean-state", MeanState)
    >>> COSTS.get("my-mean-state") is MeanState
    True
    """
    COSTS.register(name, cls)


def cost_for(loss: LossConfig) -> Cost:
    """The cost ``loss.kind`` names, built from the loss config.

    Raises
    ------
    ConfigError
        For a name no cost is registered under (the message lists the known ones).
    """
    return COSTS.get(loss.kind)(loss)
