"""Evolution strategies with the plant as a black box (science 9): antithetic perturbations
of the parameters, the closed-loop cost of each, and their difference along each direction
as the gradient estimate (:func:`closedloop.core.estimators.es_gradient`).

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training.rules import rule_for
>>> type(rule_for(load_preset("di-tanh-es"))).__name__
'EvolutionStrategies'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp

from closedloop.core.estimators import es_gradient
from closedloop.core.tasks import Batch
from closedloop.training.rules.closed import ClosedLoop

if TYPE_CHECKING:
    from closedloop.core.agents import Params
    from closedloop.training.trainer import Program


@dataclass(frozen=True)
class EvolutionStrategies(ClosedLoop):
    """``training.mode: black_box`` with ``estimator: es``: ``training.population`` pairs of
    directions of standard deviation ``training.es_std`` per update (centred ranks of the
    costs with ``training.rank_shaping``). The loss is the closed loop's, of which only values
    are taken, never the gradient."""

    description: ClassVar[str] = "with the plant as a black box (evolution strategies)"
    differentiates_plant: ClassVar[bool] = False

    def extras(self, program: Program, key: jax.Array) -> dict[str, Any]:
        """Standard normal directions ``(population, *shape)`` per parameter, drawn in
        float64."""
        shapes = program.agent.parameter_shapes()
        keys = jax.random.split(jax.random.fold_in(key, 2), len(shapes))
        population = self.config.training.population
        return {"directions": {
            name: jax.random.normal(k, (population, *shape), dtype=jnp.float64
                                    ).astype(program.dtype)
            for (name, shape), k in zip(shapes.items(), keys, strict=True)}}

    def estimate(self, program: Program, trainable: Params, constants: Any, batch: Batch
                 ) -> tuple[jax.Array, Params]:
        """The closed-loop cost of ``trainable`` on the batch and the antithetic estimate
        of its gradient (the plant is only run, never differentiated)."""
        training = self.config.training

        def cost(params: Params) -> jax.Array:
            return self.loss(program, params, constants, batch)

        directions = {name: batch.extras["directions"][name] for name in trainable}
        grads = es_gradient(cost, trainable, directions, training.es_std,
                            training.rank_shaping)
        return cost(trainable), grads
