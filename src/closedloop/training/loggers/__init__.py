"""Loggers: a run's records, live, to wherever a researcher watches training; one module
each.

===============  ========================================================  =================
``--log NAME``   what it writes                                            module
===============  ========================================================  =================
``tensorboard``  losses, spectral radius, gains, leading eigenvalues, the  :mod:`.tensorboard`
                 spectrum as a picture (TensorBoard event files)
===============  ========================================================  =================

:class:`~closedloop.training.loggers.base.Logger` says what a logger writes and what it gets;
:func:`register_logger` (or an entry point in the group ``closedloop.loggers``) adds one.

Example
-------
>>> sorted(LOGGERS.builtin)
['tensorboard']
"""

from closedloop.training.loggers.base import (
    LOGGERS,
    Logger,
    LogSpec,
    loggers_for,
    register_logger,
)
from closedloop.training.loggers.tensorboard import TensorBoardLogger

LOGGERS.builtin.update({"tensorboard": TensorBoardLogger})

__all__ = ["LOGGERS", "LogSpec", "Logger", "TensorBoardLogger", "loggers_for",
           "register_logger"]
