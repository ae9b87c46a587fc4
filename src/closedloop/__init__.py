"""closedloop: train RNN controllers in closed loop with a plant, compare with open-loop
training of the same network, and read the learning dynamics from the coupled spectrum.

The package is layered; each layer imports only the ones above it in this list:
``config`` (the run schema and presets), ``core`` (plants, agents, tasks, the rollout and the
costs, in JAX), ``runs`` (run files), ``analysis`` (coupled matrix and Jacobian, spectra,
stages, theory, gains, claims), ``training`` (the one trainer and the epoch loop), ``scale``
(jobs, studies, sweeps on Dask), ``paper`` (the figures, the report, ``reproduce``), and the
command line ``cli``.

Example
-------
>>> import closedloop
>>> config = closedloop.load_preset("di-tanh-closed", overrides=["training.epochs=2"])
>>> run = closedloop.train(config, "runs/example.h5")              # doctest: +SKIP
>>> closedloop.load_run("runs/example.h5").metrics["test_loss"]    # doctest: +SKIP
"""

from typing import TYPE_CHECKING, Any

from closedloop._version import __version__
from closedloop.config import RunConfig, load_preset, preset_names
from closedloop.runs import Run, load_run

if TYPE_CHECKING:
    from closedloop.analysis.claims import register_claim
    from closedloop.core.agents import register_agent
    from closedloop.core.costs import register_cost
    from closedloop.core.mechanics import NonlinearPlant
    from closedloop.core.registry import register_plant
    from closedloop.training import Trainer, train, train_ensemble
    from closedloop.training.rules import register_rule

__all__ = ["NonlinearPlant", "Run", "RunConfig", "Trainer", "__version__", "load_preset",
           "load_run", "preset_names", "register_agent", "register_claim", "register_cost",
           "register_plant", "register_rule", "train", "train_ensemble"]

_LAZY = {"Trainer": "closedloop.training", "train": "closedloop.training",
         "train_ensemble": "closedloop.training",
         "NonlinearPlant": "closedloop.core.mechanics",
         "register_plant": "closedloop.core.registry",
         "register_agent": "closedloop.core.agents",
         "register_cost": "closedloop.core.costs",
         "register_rule": "closedloop.training.rules",
         "register_claim": "closedloop.analysis.claims"}


def __getattr__(name: str) -> Any:
    # training and the core need JAX; importing them lazily keeps `closedloop inspect` and
    # `closedloop presets` quick
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'closedloop' has no attribute {name!r}")
