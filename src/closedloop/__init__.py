"""closedloop: train RNN controllers in closed loop with a plant, compare with open-loop
training of the same network, and read the learning dynamics from the coupled spectrum.

Example
-------
>>> import closedloop
>>> config = closedloop.load_preset("di-tanh-closed", overrides=["training.epochs=2"])
>>> run = closedloop.train(config, "runs/example.h5")              # doctest: +SKIP
>>> closedloop.load_run("runs/example.h5").metrics["test_loss"]    # doctest: +SKIP
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from closedloop.config import RunConfig, load_preset, preset_names
from closedloop.store import Run, load_run

if TYPE_CHECKING:
    from closedloop.training import Trainer, train

__all__ = ["Run", "RunConfig", "Trainer", "__version__", "load_preset", "load_run",
           "preset_names", "train"]


def __getattr__(name: str) -> Any:
    # training needs PyTorch; importing it lazily keeps `closedloop inspect` and
    # `closedloop presets` quick
    if name in ("Trainer", "train"):
        from closedloop import training

        return getattr(training, name)
    raise AttributeError(f"module 'closedloop' has no attribute {name!r}")
