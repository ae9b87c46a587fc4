"""Exception classes of closedloop.

Every error a user can cause (a bad config, a wrong argument, a file that is not a run file)
is one of these. The command line turns them into one line on stderr and exit code 2.
"""

from __future__ import annotations


class ClosedLoopError(Exception):
    """Base class of every error closedloop raises on purpose."""


class ConfigError(ClosedLoopError, ValueError):
    """An invalid configuration, preset name or ``--set`` override."""


class RunFileError(ClosedLoopError, OSError):
    """A path that is not a readable, complete closedloop run file."""


class IncompleteRunError(RunFileError):
    """A run whose training has not finished; it can be continued with ``--resume``."""


class ShapeError(ClosedLoopError, ValueError):
    """Arrays whose shapes do not fit the plant or agent they are used with."""
