"""Memory: a rough estimate of what a run needs, checked before any work starts.

Example
-------
>>> from closedloop.config import load_preset
>>> check_memory([load_preset("di-tanh-closed")])         # fits: returns quietly
"""

from __future__ import annotations

import os

from closedloop.config import RunConfig
from closedloop.core.plants import plant_from_config
from closedloop.errors import ConfigError


def estimated_memory(config: RunConfig) -> int:
    """Bytes one run of ``config`` needs at its peak, roughly (within a factor of ~2).

    Parameters with their gradients, optimiser moments and the per-epoch copies a recorded
    chunk of epochs holds; the rollout's per-step buffers for the forward and the backward pass
    (training and test rollouts); the float64 eigenvalue problems of P and W.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> estimated_memory(load_preset("di-tanh-closed")) < 50e6
    True
    """
    element = 8 if config.training.dtype == "float64" else 4
    n_x = plant_from_config(config.plant).n_states      # also refuses a bad plant early
    size = getattr(config.agent, "size", 1)    # the hidden units, for kinds that have them
    width = size + 2 * n_x + 8
    chunk = config.recording.segment_epochs
    parameters = (8 + 2 * chunk) * (size * size + 2 * width * size) * element
    eigenvalues = 6 * (size + n_x) ** 2 * 8
    rollout = 6 * config.task.steps * config.task.batch_size * width * element
    test = 4 * config.test_steps * config.evaluation.test_size * width * element
    return int(parameters + eigenvalues + rollout + test)


def check_memory(configs: list[RunConfig]) -> None:
    """Refuse, before any work, runs that together need more memory than this machine has.

    Raises
    ------
    ConfigError
        Naming the settings that size the run.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> check_memory([load_preset("di-tanh-closed")])         # fits: returns quietly
    """
    needed = sum(estimated_memory(c) for c in configs)
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if needed > 0.8 * available:
        config = max(configs, key=estimated_memory)
        count = f"{len(configs)} runs of " if len(configs) > 1 else ""
        size = getattr(config.agent, "size", None)
        agent = f"agent.size={size}, " if size is not None else ""
        raise ConfigError(
            f"{count}{agent}task.batch_size="
            f"{config.task.batch_size}, task.steps={config.task.steps} need about "
            f"{needed / 2**30:.1f} GiB of memory, more than this machine's "
            f"{available / 2**30:.1f} GiB allows; use smaller values")
