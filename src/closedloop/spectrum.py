"""Reading learning from the coupled spectrum across epochs (SPEC 3, 4).

Example
-------
>>> import numpy as np
>>> stabilization_epoch(np.array([1.2, 0.9, 1.01, 0.99, 0.5]))
3
"""

from __future__ import annotations

import numpy as np


def stabilization_epoch(spectral_radius: np.ndarray, epochs: np.ndarray | None = None
                        ) -> int | None:
    """The first epoch from which rho(P) < 1 at every later epoch; None if the last is not.

    Non-finite radii (a diverged run) count as unstable.
    """
    radius = np.asarray(spectral_radius, dtype=np.float64)
    if radius.size == 0:
        return None
    stable = np.isfinite(radius) & (radius < 1.0)
    if not stable[-1]:
        return None
    unstable = np.flatnonzero(~stable)
    index = 0 if unstable.size == 0 else int(unstable[-1]) + 1
    return int(epochs[index]) if epochs is not None else index
