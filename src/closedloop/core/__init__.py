"""The pure core: plants, agents, tasks, the rollout and the costs, as JAX functions.

Parameters are pytrees (dicts of arrays); plants and agents are small immutable objects that
describe the computation (and are hashable, so compiled programs are shared between runs of
the same shape); everything random takes a ``jax.random`` key. ``jax.grad`` differentiates
the rollout, ``jax.vmap`` or ``jax.lax.map`` batch it over networks, ``jax.jacfwd`` gives the
coupled Jacobian.

Importing the core fixes two process-wide JAX settings, here and nowhere else:

* ``jax_enable_x64``: float64 exists (analysis and ``training.dtype=float64`` use it); every
  array the core creates has an explicit dtype, so float32 training stays float32;
* ``jax_default_matmul_precision = "highest"``: on GPUs float32 products are not silently
  computed in TF32 (the golden numbers of the paper's implementation need full float32).

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.plants import double_integrator
>>> double_integrator().step(jnp.array([[1.0, 2.0]]), jnp.array([[0.5]])).tolist()
[[3.0, 2.5]]
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
