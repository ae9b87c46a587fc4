"""Run files: one self-describing HDF5 file per run, written so that a SIGKILL cannot spoil it.

Example
-------
>>> from closedloop.runs import load_run
>>> load_run("runs/closed.h5").stabilization_epoch                  # doctest: +SKIP
"""

from closedloop.runs.store import (
    EpochRecord,
    Run,
    RunWriter,
    Teacher,
    is_finished,
    load_run,
    partial_dir,
    stabilization_epoch,
)

__all__ = ["EpochRecord", "Run", "RunWriter", "Teacher", "is_finished", "load_run",
           "partial_dir", "stabilization_epoch"]
