"""Training: the one trainer (a member axis for one network or many), its optimisers, the
epoch loop that records runs to files, and where initial weights and teachers come from.

Example
-------
>>> from closedloop.config import load_preset
>>> from closedloop.training import train
>>> train(load_preset("di-tanh-closed", epochs=3), "runs/tiny.h5")   # doctest: +SKIP
"""

from closedloop.training.loop import OutputExistsError, TrainResult, train, train_ensemble
from closedloop.training.trainer import Trainer, shape_signature

__all__ = ["OutputExistsError", "TrainResult", "Trainer", "shape_signature", "train",
           "train_ensemble"]
