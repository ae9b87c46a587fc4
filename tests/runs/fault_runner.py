"""Run ``closedloop ARGS`` and SIGKILL the process at one chosen point (fault injection).

Usage: ``python tests/runs/fault_runner.py KIND INDEX -- ARGS...``. KIND is where the process
dies, INDEX which occurrence (1-based):

* ``step``: while the INDEX-th compiled chunk of epochs is running: the chunk has been
  dispatched (``Trainer.run_chunk``) and the process dies before its results are recorded
  (parameters are never updated in place: a chunk returns new ones);
* ``segment``: while writing the INDEX-th block of epoch records (parameter snapshots
  included): half of the temporary file is on disk, not yet renamed;
* ``checkpoint``: the same while writing the INDEX-th checkpoint (``checkpoint.npz``);
* ``consolidation``: the same while writing the final HDF5 file;
* ``after-consolidation``: right after the final file is renamed into place, before the
  partial folder is removed.

The test suite checks that ``--resume`` then finishes the run and that it equals an
uninterrupted run bit for bit.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import closedloop.runs.store as store
import closedloop.training.trainer as trainer_module
from closedloop.cli import main

KINDS = ("step", "segment", "checkpoint", "consolidation", "after-consolidation")


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(kind: str, index: int) -> None:
    seen = [0]

    def hit() -> bool:
        seen[0] += 1
        return seen[0] == index

    if kind == "step":
        original_chunk = trainer_module.Trainer.run_chunk

        def run_chunk(self: trainer_module.Trainer, first: int) -> Any:
            dispatched = original_chunk(self, first)   # running (JAX dispatches async)
            if hit():
                die()
            return dispatched

        trainer_module.Trainer.run_chunk = run_chunk  # type: ignore[method-assign]
        return

    original_write = store.atomic_write

    def matches(target: Path) -> bool:
        name = target.name
        return {"segment": name.startswith("segment-"),
                "checkpoint": name == store.CHECKPOINT,
                "consolidation": name.endswith(".h5"),
                "after-consolidation": name.endswith(".h5")}[kind]

    def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
        target = Path(target)
        if matches(target) and hit():
            if kind == "after-consolidation":
                original_write(target, write)
                die()
            handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                                 dir=target.parent)
            os.close(handle)
            write(Path(temporary))
            os.truncate(temporary, os.path.getsize(temporary) // 2)
            die()
        original_write(target, write)

    store.atomic_write = atomic_write


if __name__ == "__main__":
    kind, index, separator, *args = sys.argv[1:]
    assert kind in KINDS and separator == "--", sys.argv
    install(kind, int(index))
    sys.exit(main(args))
