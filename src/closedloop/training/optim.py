"""Optimisers (optax) and gradient clipping as the paper's implementation computes them.

Clipping scales the gradient by min(1, max_norm / (norm + 1e-6)) with the global 2-norm over
every trained parameter (PyTorch's ``clip_grad_norm_``, which the authors used; optax's own
``clip_by_global_norm`` divides by the norm without the 1e-6 and differs in the last digits).
SGD subtracts lr x gradient; Adam is optax's ``scale_by_adam`` (b1 = 0.9, b2 = 0.999,
eps = 1e-8, PyTorch's defaults) followed by -lr. The learning rate and the clipping threshold
are arrays, so networks trained together may differ in them.

Example
-------
>>> import jax.numpy as jnp
>>> optimizer = Optimizer("sgd", clipped=True)
>>> params = {"w": jnp.array([1.0, 1.0])}
>>> grads = {"w": jnp.array([3.0, 4.0])}                  # norm 5, clipped to norm 1
>>> new, _ = optimizer.update(params, optimizer.init(params), grads, norm=jnp.float32(5.0),
...                           lr=jnp.float32(0.1), clip_norm=jnp.float32(1.0))
>>> [round(float(v), 6) for v in new["w"]]
[0.94, 0.92]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def global_norm(tree: PyTree) -> jax.Array:
    """sqrt of the sum of squares of every entry of ``tree`` (0 for an empty tree)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), dtype=jnp.float32)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


def clip_scale(norm: jax.Array, clip_norm: jax.Array) -> jax.Array:
    """min(1, clip_norm / (norm + 1e-6)): the factor PyTorch's clipping applies."""
    return jnp.minimum(1.0, clip_norm / (norm + 1e-6)).astype(norm.dtype)


@dataclass(frozen=True)
class Optimizer:
    """SGD or Adam with optional global-norm clipping; a pure ``init``/``update`` pair."""

    kind: Literal["sgd", "adam"]
    clipped: bool

    def _base(self) -> optax.GradientTransformation:
        return optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8) if self.kind == "adam" \
            else optax.identity()

    def init(self, params: PyTree) -> PyTree:
        """The optimiser state for ``params`` (Adam: moments and step count)."""
        return self._base().init(params)

    def update(self, params: PyTree, state: PyTree, grads: PyTree, *, norm: jax.Array,
               lr: jax.Array, clip_norm: jax.Array) -> tuple[PyTree, PyTree]:
        """New (params, state) after one step on ``grads`` (whose global norm is ``norm``)."""
        if self.clipped:
            scale = clip_scale(norm, clip_norm)
            grads = jax.tree.map(lambda g: g * scale, grads)
        direction, state = self._base().update(grads, state, params)
        params = jax.tree.map(lambda p, d: p - (lr * d).astype(p.dtype), params, direction)
        return params, state
