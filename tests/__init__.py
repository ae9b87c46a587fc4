"""The test suite. Importing it (pytest does, before any test module or conftest) gives this
process two CPU devices, before JAX starts its backend, for the data-parallel tests (processes
the tests start are not affected); everything else runs on the first, as outside the tests."""

import jax

jax.config.update("jax_num_cpu_devices", 2)
