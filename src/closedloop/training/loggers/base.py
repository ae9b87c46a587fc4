"""The logger contract: one small base class with hooks, and the registry behind ``--log``.

A logger receives a run's records as training writes them: :meth:`Logger.start` once (with
the run's config and run file), :meth:`Logger.epoch` for every epoch in order (an
:class:`~closedloop.runs.store.EpochRecord`: losses, gradient norm, spectral radius, the
coupled and recurrent spectra, the effective gains or the tracking probes, and the
parameters on snapshot epochs), and :meth:`Logger.finish` with the run's status. Everything
else comes for free: training calls it for every member of an ensemble, on resumed runs from
the epoch it resumes at, and in the worker processes of ``sweep`` and ``reproduce``. A logger
must not change what it is given.

Write one as a subclass and register it under a name; ``--log NAME DIR`` then makes one per
run, ``cls(DIR / <run file's stem>)``::

    from closedloop.training.loggers import Logger, register_logger

    class PrintLogger(Logger):
        def epoch(self, record):
            print(record.epoch, record.test_loss)

    register_logger("print", PrintLogger)

or, from an installed package, with an entry point in the group ``closedloop.loggers``.
:mod:`closedloop.training.loggers.tensorboard` is the built-in example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from closedloop.core.registry import SubclassRegistry

if TYPE_CHECKING:
    from closedloop.config import RunConfig
    from closedloop.runs.store import EpochRecord


class Logger:
    """Receives one run's records as they are written. Subclass it and override the hooks
    you need (each does nothing by default).

    Parameters
    ----------
    folder
        Where this run's log goes (``--log NAME DIR`` gives ``DIR / <run file's stem>``).

    A subclass writes
    -----------------
    start(config, path)
        Called once before the first record (also when a run resumes).
    epoch(record)
        Called with every epoch's :class:`~closedloop.runs.store.EpochRecord`, in order.
    finish(status)
        Called once when the run ends: ``complete`` or ``diverged``.

    Example
    -------
    >>> class Count(Logger):
    ...     seen = 0
    ...     def epoch(self, record):
    ...         self.seen += 1
    >>> Count("logs/run").folder.name
    'run'
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def start(self, config: RunConfig, path: Path) -> None:
        """The run begins (or resumes)."""

    def epoch(self, record: EpochRecord) -> None:
        """One epoch's record."""

    def finish(self, status: str) -> None:
        """The run has ended with ``status``."""


LOGGERS = SubclassRegistry("logger", "closedloop.loggers", Logger, key="--log", label="logger")
"""Loggers by the name ``--log NAME DIR`` gives (built-ins are added by
:mod:`closedloop.training.loggers`)."""


def register_logger(name: str, cls: type[Logger]) -> None:
    """Make ``--log name DIR`` log with ``cls`` (a subclass of :class:`Logger`).

    Example
    -------
    >>> class Quiet(Logger):
    ...     pass
    >>> register_logger("quiet", Quiet)
    >>> LOGGERS.get("quiet") is Quiet
    True
    """
    LOGGERS.register(name, cls)


@dataclass(frozen=True)
class LogSpec:
    """What ``--log NAME DIR`` asks for: a logger kind and a folder, one subfolder per run.
    Plain strings, so that it travels to worker processes.

    Example
    -------
    >>> LogSpec("tensorboard", "logs").folder_for("runs/closed.h5")
    PosixPath('logs/closed')
    """

    name: str
    folder: str

    def folder_for(self, path: str | Path) -> Path:
        """The folder of the run written to ``path``."""
        return Path(self.folder) / Path(path).stem

    def make(self, path: str | Path) -> Logger:
        """A logger for the run written to ``path``.

        Raises
        ------
        ConfigError
            For a name no logger is registered under.
        """
        return LOGGERS.get(self.name)(self.folder_for(path))

    def check(self) -> None:
        """Refuse, before any work, a name no logger is registered under or a logger that
        cannot be made here (e.g. a missing optional package)."""
        LOGGERS.get(self.name)(Path(self.folder))


def loggers_for(specs: Sequence[LogSpec], paths: Sequence[str | Path]) -> list[list[Logger]]:
    """Per run path, one logger of every spec."""
    return [[spec.make(path) for spec in specs] for path in paths]
