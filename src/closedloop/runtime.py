"""Process settings the command line and its worker processes apply (a library import changes
nothing): XLA's CPU threads, JAX's persistent compilation cache, and the allocator.

* **XLA threads.** A training program is a chain of small products; XLA's intra-op thread pool
  only adds hand-offs, and the second core is better spent on the float64 eigenvalue problems
  recorded every epoch. The command line gives XLA one CPU thread (``XLA_FLAGS``), unless
  ``XLA_FLAGS`` is already set. It must happen before JAX starts its CPU backend.
* **Compilation cache.** Compiling a training program takes 1-3 s; JAX's persistent cache
  keeps compiled programs on disk, so the next process with the same shapes loads them
  instead. Folder: ``$CLOSEDLOOP_JAX_CACHE`` (``off`` disables it), default
  ``~/.cache/closedloop/jax``.
* **Allocator.** glibc keeps freed per-epoch buffers instead of returning them to the system.
* **CPU devices.** JAX shows one CPU device per available core, for ``training.devices``,
  and a spare one for the host's spectra of a run split over several.

Example
-------
>>> keep_freed_memory()   # glibc only; returns whether it applied
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
CACHE_VARIABLE = "CLOSEDLOOP_JAX_CACHE"
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
_configured = False


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Let glibc serve and keep large blocks from the heap instead of fresh mmap pages.

    A training epoch allocates and frees buffers of several MB; by default glibc maps each one
    freshly and the first touch of every page faults. Raising the mmap and trim thresholds
    makes freed buffers reusable. Returns False where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, threshold))


def cpu_quota(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int | None:
    """Whole CPUs the cgroup's CPU quota allows (rounded up), None without a quota: cgroup v2
    ``cpu.max`` or v1 ``cpu.cfs_quota_us``. A container can see every core of its host while
    its quota lets it use a few.

    Example
    -------
    >>> cpu_quota("no/such/folder") is None
    True
    """
    base = Path(root)
    candidates = [(base / "cpu.max", None),
                  (base / "cpu" / "cpu.cfs_quota_us", base / "cpu" / "cpu.cfs_period_us"),
                  (base / "cpu,cpuacct" / "cpu.cfs_quota_us",
                   base / "cpu,cpuacct" / "cpu.cfs_period_us")]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError):
            continue
    return None


def available_cores() -> int:
    """CPU cores this process may run on: its CPU affinity, within the cgroup's CPU quota.

    Example
    -------
    >>> available_cores() >= 1
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, quota))


def cache_folder() -> Path | None:
    """Where compiled programs are kept (None when ``$CLOSEDLOOP_JAX_CACHE`` is ``off``).

    Example
    -------
    >>> cache_folder() is None or cache_folder().name == "jax"
    True
    """
    value = os.environ.get(CACHE_VARIABLE, "")
    if value.lower() in ("off", "0", "none", "false"):
        return None
    return Path(value) if value else Path.home() / ".cache" / "closedloop" / "jax"


def single_thread_xla() -> bool:
    """Ask XLA for one CPU thread, if JAX has not started yet and ``XLA_FLAGS`` is unset;
    returns whether the setting applies. Worker processes inherit it."""
    if "XLA_FLAGS" in os.environ:
        return SINGLE_THREAD_XLA in os.environ["XLA_FLAGS"]
    if "jax" in sys.modules:
        return False
    os.environ["XLA_FLAGS"] = SINGLE_THREAD_XLA
    return True


def set_xla_threads(threads: int) -> None:
    """XLA CPU threads for the processes started from now on (the workers of a local Dask
    cluster); ``threads = 1`` keeps a user's own ``XLA_FLAGS``."""
    if threads == 1:
        os.environ.setdefault("XLA_FLAGS", SINGLE_THREAD_XLA)
        return
    os.environ["XLA_FLAGS"] = f"intra_op_parallelism_threads={threads}"


def expose_cpu_devices(count: int | None = None) -> bool:
    """Show JAX ``count`` CPU devices (default: one per available core, which
    ``training.devices`` splits a batch over, and one more, where a run on several devices
    computes its recorded spectra), if its backend has not started yet; returns whether it
    applied. A program on one device is unchanged by the others."""
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return False
    jax.config.update("jax_num_cpu_devices", count or available_cores() + 1)
    return True


def configure_worker() -> None:
    """The settings a process that trains needs (idempotent): the allocator, one CPU device
    per core and the compilation cache."""
    global _configured
    if _configured:
        return
    _configured = True
    keep_freed_memory()
    expose_cpu_devices()
    folder = cache_folder()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def configure_cli() -> None:
    """What the command line applies before anything else: one XLA thread, then
    :func:`configure_worker`."""
    single_thread_xla()
    configure_worker()
