"""Run files: one self-describing HDF5 file per run, written so that a SIGKILL cannot spoil it.

While training, a run lives in a folder ``<run>.h5.partial/``:

* ``config.json``: the resolved config (written once);
* ``inputs.npz``: the initial parameters and, for open-loop runs, the teacher's parameters and
  config (so the run file is self-contained);
* ``segment-<first>-<last>.npz``: the records of a block of epochs;
* ``checkpoint.npz``: parameters, optimiser state, data key and the next epoch after the last
  saved segment (flat arrays, read without pickle).

Every file there is written to a temporary name and renamed into place, and a checkpoint is
written only after the segment it follows, so a killed run always resumes from a consistent
state. When training ends, the segments are consolidated into ``<run>.h5`` (again written to a
temporary name, then renamed) and the folder is removed. Nothing is pickled: every NumPy file
is read with ``allow_pickle=False``. (Unfinished runs of closedloop's earlier PyTorch versions
have a ``checkpoint.pt`` instead; they are refused with a clear message, and their finished run
files read as any other.)

HDF5 layout of a finished run (``format`` = ``closedloop-run``, ``format_version`` = 1)::

    attrs: format, format_version, status ("complete" | "diverged"), diverged_epoch (-1 if
           none), config (JSON), preset, seed, closedloop_version, created
    metrics/{epoch, train_loss, test_loss, grad_norm, spectral_radius}   (E+1,)
    metrics/probe_errors                (E+1, P)  tracking probe errors (tracking tasks; files
                                        written before them lack it)
    metrics/gains                       (E+1, n_u, n_x)  effective gains (regulation tasks),
                                        fitted on the states evaluation.gain_fit_states names
    eigenvalues/coupled                 (E+1, n_x+N)  eig(P), descending modulus
    eigenvalues/recurrent               (E+1, N)      eig(W) (maths W), descending modulus
    snapshots/epoch                     (S,)
    snapshots/<parameter>               (S, ...)      parameters after that epoch
    teacher/<parameter>, teacher attrs config, source   (open-loop runs)

Integrity: every non-empty dataset carries HDF5's Fletcher-32 checksum (checked on every
read), the file's metadata is written with checksummed headers (``libver="latest"``), and the
``attrs_sha256`` attribute holds a SHA-256 digest of every other attribute, so a damaged file
raises :class:`~closedloop.errors.RunFileError` rather than reading as different numbers. (Files
written before these checks lack the digest and are read without it.)

Record e holds the training loss of update e (its batch, evaluated before the update; epoch 0
of the paper presets is evaluated without an update; NaN when nothing was trained at epoch 0)
and everything else for the parameters *after* update e.

Example
-------
>>> run = load_run("runs/closed.h5")                              # doctest: +SKIP
>>> run.metrics["test_loss"][-1], run.stabilization_epoch         # doctest: +SKIP
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from closedloop._version import __version__
from closedloop.config import RunConfig, config_from_json
from closedloop.config.schema import stored_evaluation
from closedloop.errors import ConfigError, IncompleteRunError, RunFileError

FORMAT = "closedloop-run"
FORMAT_VERSION = 1
DIGEST = "attrs_sha256"
METRIC_NAMES = ("epoch", "train_loss", "test_loss", "grad_norm", "spectral_radius")
OPTIONAL_METRICS = ("gains", "probe_errors")
"""Per-epoch metrics of some tasks only (regulation: effective gains; tracking: probes)."""
CHECKPOINT = "checkpoint.npz"
LEGACY_CHECKPOINT = "checkpoint.pt"


def stabilization_epoch(spectral_radius: np.ndarray, epochs: np.ndarray | None = None
                        ) -> int | None:
    """The first epoch from which rho(P) < 1 at every later epoch; None if the last is not.

    Non-finite radii (a diverged run) count as unstable.

    Example
    -------
    >>> stabilization_epoch(np.array([1.2, 0.9, 1.01, 0.99, 0.5]))
    3
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


def partial_dir(path: str | os.PathLike[str]) -> Path:
    """The folder an unfinished run at ``path`` lives in."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def is_finished(path: str | os.PathLike[str]) -> bool:
    """Whether a finished run file is at ``path`` (and no unfinished run is beside it).

    Example
    -------
    >>> is_finished("no/such/run.h5")
    False
    """
    path = Path(path)
    return path.is_file() and not partial_dir(path).exists()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(target: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` and rename the result onto ``target`` (fsynced)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:   # a write through a file object: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _save_npz(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    atomic_write(target, write)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise RunFileError(f"{path}: unreadable ({exc})") from None


# --------------------------------------------------------------------------------------------
# writing


@dataclass
class EpochRecord:
    """Everything recorded for one epoch (see the module docstring for the meaning)."""

    epoch: int
    train_loss: float
    test_loss: float
    grad_norm: float
    spectral_radius: float
    coupled_eigenvalues: np.ndarray
    recurrent_eigenvalues: np.ndarray
    gains: np.ndarray | None = None
    snapshot: dict[str, np.ndarray] | None = None
    probe_errors: np.ndarray | None = None


@dataclass
class Teacher:
    """A teacher stored with an open-loop run: its agent config (JSON) and parameters."""

    source: str
    agent_config: str
    parameters: dict[str, np.ndarray]


@dataclass
class CheckpointState:
    """What a checkpoint restores: the next epoch to run and the trainer's state of the run
    (flat NumPy arrays: parameters, optimiser state, data key, divergence epoch)."""

    next_epoch: int
    trainer_state: dict[str, np.ndarray]


class RunWriter:
    """Writes a run while it trains (segments + checkpoints) and consolidates it at the end.

    Parameters
    ----------
    path
        The final ``.h5`` path.
    config
        The resolved config.
    """

    def __init__(self, path: str | os.PathLike[str], config: RunConfig) -> None:
        self.path = Path(path)
        self.folder = partial_dir(self.path)
        self.config = config
        self._buffer: list[EpochRecord] = []

    # -- lifecycle ------------------------------------------------------------------------

    def remove_temporaries(self) -> None:
        """Delete what a writer killed mid-write left behind: :func:`remove_leftovers`, and
        ``.*.tmp`` files in the partial folder. Only the run's one writer may call this."""
        remove_leftovers(self.path)
        if self.folder.is_dir():
            for leftover in self.folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)

    def start(self, initial: Mapping[str, np.ndarray], teacher: Teacher | None) -> None:
        """Create the partial folder with the config and the run's inputs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.remove_temporaries()
        if self.folder.exists():
            shutil.rmtree(self.folder)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            (staging / "config.json").write_text(self.config.to_json())
            arrays = {f"initial__{k}": np.asarray(v) for k, v in initial.items()}
            if teacher is not None:
                arrays.update({f"teacher__{k}": np.asarray(v) for k, v in
                               teacher.parameters.items()})
                (staging / "teacher.json").write_text(json.dumps(
                    {"source": teacher.source, "agent_config": teacher.agent_config}))
            _save_npz(staging / "inputs.npz", arrays)
            os.replace(staging, self.folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(self.path.parent)

    def check_resumable(self) -> None:
        """Refuse, touching nothing, an unfinished run this version cannot continue: one
        written by the earlier PyTorch version (a ``checkpoint.pt``)."""
        if (self.folder / LEGACY_CHECKPOINT).exists():
            raise IncompleteRunError(
                f"{self.path}: this unfinished run was written by closedloop's earlier PyTorch "
                "version, whose checkpoints this version cannot continue (its batches came "
                "from another random generator); train it again with --overwrite")

    def resume(self) -> CheckpointState | None:
        """Open an existing partial folder: return its checkpoint (None if none yet) and drop
        segments written after it."""
        if not self.folder.is_dir():
            raise IncompleteRunError(f"{self.path}: nothing to resume (no {self.folder.name})")
        self.check_resumable()
        self.remove_temporaries()
        checkpoint = self.folder / CHECKPOINT
        state = None
        last_saved = -1
        if checkpoint.exists():
            raw = _load_npz(checkpoint)
            if "next_epoch" not in raw:
                raise RunFileError(f"{checkpoint}: not a closedloop checkpoint")
            next_epoch = int(raw.pop("next_epoch"))
            state = CheckpointState(next_epoch, raw)
            last_saved = state.next_epoch - 1
        for segment in self.segments():
            if _segment_range(segment)[1] > last_saved:
                segment.unlink()
        return state

    def stored_inputs(self) -> tuple[dict[str, np.ndarray], Teacher | None]:
        """Initial parameters and teacher stored at :meth:`start`."""
        arrays = _load_npz(self.folder / "inputs.npz")
        initial = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("initial__")}
        teacher = None
        if (self.folder / "teacher.json").exists():
            meta = json.loads((self.folder / "teacher.json").read_text())
            teacher = Teacher(meta["source"], meta["agent_config"],
                              {k.split("__", 1)[1]: v for k, v in arrays.items()
                               if k.startswith("teacher__")})
        return initial, teacher

    def stored_config(self) -> RunConfig:
        """The config stored at :meth:`start` (as :func:`stored_config` reads it)."""
        return stored_config((self.folder / "config.json").read_text())

    def segments(self) -> list[Path]:
        """Segment files in epoch order."""
        return sorted(self.folder.glob("segment-*.npz"), key=lambda p: _segment_range(p)[0])

    # -- appending ------------------------------------------------------------------------

    def append(self, record: EpochRecord) -> None:
        """Buffer one epoch's record (flushed by :meth:`save`)."""
        self._buffer.append(record)

    def save(self, state: CheckpointState) -> None:
        """Write the buffered records as one segment, then the checkpoint that follows it."""
        if self._buffer:
            first, last = self._buffer[0].epoch, self._buffer[-1].epoch
            _save_npz(self.folder / f"segment-{first:09d}-{last:09d}.npz",
                      _pack(self._buffer))
            self._buffer = []
        _save_npz(self.folder / CHECKPOINT, {"next_epoch": np.asarray(state.next_epoch),
                                              **state.trainer_state})

    def finish(self, status: str, diverged_epoch: int | None) -> Path:
        """Consolidate the segments into the final HDF5 file and remove the partial folder."""
        if self._buffer:
            raise RuntimeError("save() the last records before finish()")
        config = self.stored_config()
        initial, teacher = self.stored_inputs()
        segments = self.segments()
        _ensure_room(self.path, sum(p.stat().st_size for p in self.folder.iterdir()))

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w", libver="latest") as handle:
                _write_h5(handle, config, segments, initial, teacher, status, diverged_epoch)
        atomic_write(self.path, write)
        # renamed first (atomic), then removed: a kill in the middle of the removal leaves a
        # leftover that remove_temporaries() deletes, never a half-deleted partial folder that
        # would make the finished run look unfinished and unresumable
        leftover = self.path.with_name(f".{self.path.name}.removing-{os.getpid()}")
        os.replace(self.folder, leftover)
        _fsync_dir(self.path.parent)
        shutil.rmtree(leftover, ignore_errors=True)
        return self.path


def remove_leftovers(path: Path) -> None:
    """Delete the half-written temporary files and staging folders (``.NAME.h5.*``) that a
    writer of run file ``path`` killed mid-write left next to it, e.g. a partial folder
    renamed for removal when the kill came. Call it holding the run's lock.

    Example
    -------
    >>> remove_leftovers(Path("runs/a.h5"))                         # doctest: +SKIP
    """
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _ensure_room(target: Path, size: int) -> None:
    """Raise a clean OSError before writing about ``size`` bytes to ``target`` if the disk (or
    the process's file-size limit) cannot take them: HDF5 does not recover from a failed write
    inside the library, so it is never started when it would fail."""
    needed = int(size * 1.2) + (1 << 20)
    free = shutil.disk_usage(target.parent).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (the run file needs about "
                      f"{needed / 1e6:.1f} MB, {free / 1e6:.1f} MB free)", str(target))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise OSError(errno.EFBIG, f"File too large for this process's file-size limit "
                      f"({limit} bytes; the run file needs about {needed} bytes)", str(target))


def _segment_range(path: Path) -> tuple[int, int]:
    _, first, last = path.stem.split("-")
    return int(first), int(last)


def _pack(records: list[EpochRecord]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "epoch": np.array([r.epoch for r in records], dtype=np.int64),
        "train_loss": np.array([r.train_loss for r in records], dtype=np.float64),
        "test_loss": np.array([r.test_loss for r in records], dtype=np.float64),
        "grad_norm": np.array([r.grad_norm for r in records], dtype=np.float64),
        "spectral_radius": np.array([r.spectral_radius for r in records], dtype=np.float64),
        "coupled_eigenvalues": np.stack([r.coupled_eigenvalues for r in records]),
        "recurrent_eigenvalues": np.stack([r.recurrent_eigenvalues for r in records]),
    }
    for name in OPTIONAL_METRICS:
        if getattr(records[0], name) is not None:
            arrays[name] = np.stack([getattr(r, name) for r in records])
    snapped = [r for r in records if r.snapshot is not None]
    arrays["snapshot_epoch"] = np.array([r.epoch for r in snapped], dtype=np.int64)
    if snapped:
        for name in snapped[0].snapshot:
            arrays[f"snapshot__{name}"] = np.stack([r.snapshot[name] for r in snapped])
    return arrays


def _write_h5(handle: h5py.File, config: RunConfig, segments: list[Path],
              initial: Mapping[str, np.ndarray], teacher: Teacher | None, status: str,
              diverged_epoch: int | None) -> None:
    _write_text(handle, "format", FORMAT)
    handle.attrs["format_version"] = FORMAT_VERSION
    _write_text(handle, "config", config.to_json())
    _write_text(handle, "preset", config.preset)
    handle.attrs["seed"] = config.seed
    _write_text(handle, "closedloop_version", __version__)
    _write_text(handle, "created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    handle.attrs["diverged_epoch"] = -1 if diverged_epoch is None else diverged_epoch
    total = sum(_segment_range(s)[1] - _segment_range(s)[0] + 1 for s in segments)
    datasets: dict[str, h5py.Dataset] = {}

    def dataset(name: str, sample: np.ndarray, rows: int) -> h5py.Dataset:
        if name not in datasets:
            shape = (rows, *sample.shape[1:])
            datasets[name] = handle.create_dataset(name, shape=shape, dtype=sample.dtype,
                                                   fletcher32=bool(np.prod(shape)))
        return datasets[name]

    if segments:
        snapshot_rows = 0
        optional = set(OPTIONAL_METRICS)
        for segment in segments:
            with np.load(segment, allow_pickle=False) as data:
                snapshot_rows += data["snapshot_epoch"].shape[0]
                optional &= set(data.files)   # a run resumed across an upgrade: every row or none
        row = snapshot_row = 0
        for segment in segments:
            data = _load_npz(segment)
            n = data["epoch"].shape[0]
            for name in METRIC_NAMES:
                dataset(f"metrics/{name}", data[name], total)[row:row + n] = data[name]
            for name in sorted(optional):
                dataset(f"metrics/{name}", data[name], total)[row:row + n] = data[name]
            for name in ("coupled", "recurrent"):
                values = data[f"{name}_eigenvalues"]
                dataset(f"eigenvalues/{name}", values, total)[row:row + n] = values
            k = data["snapshot_epoch"].shape[0]
            dataset("snapshots/epoch", data["snapshot_epoch"], snapshot_rows)[
                snapshot_row:snapshot_row + k] = data["snapshot_epoch"]
            for key, values in data.items():
                if key.startswith("snapshot__") and k:
                    dataset(f"snapshots/{key.split('__', 1)[1]}", values, snapshot_rows)[
                        snapshot_row:snapshot_row + k] = values
            row += n
            snapshot_row += k
    group = handle.create_group("initial")
    for name, values in initial.items():
        _checked_dataset(group, name, values)
    if teacher is not None:
        group = handle.create_group("teacher")
        _write_text(group, "source", teacher.source)
        _write_text(group, "agent_config", teacher.agent_config)
        for name, values in teacher.parameters.items():
            _checked_dataset(group, name, values)
    _write_text(handle, "status", status)
    # the digest goes last: a file without it (or with another) never reads as complete
    _write_text(handle, DIGEST, _attrs_digest(handle))


def _write_text(node: h5py.Group, name: str, text: str) -> None:
    """A text attribute as a fixed-length UTF-8 string, stored in the object's header.

    Variable-length strings live in the file's global heap, and a damaged heap record can make
    the HDF5 library loop forever on reading any of them; a fixed-length one is only bytes,
    which the attribute digest checks. Files written with variable-length strings read as
    before (:func:`_attribute`).
    """
    data = text.encode("utf-8")
    node.attrs.create(name, np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1))))


def _attribute(node: h5py.Group, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of ``node`` (``default`` when absent), text decoded to ``str``
    whether it was stored with fixed or variable length."""
    value = node.attrs.get(name, default)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _checked_dataset(group: h5py.Group, name: str, values: np.ndarray) -> None:
    values = np.asarray(values)
    checksum = values.ndim > 0 and values.size > 0
    group.create_dataset(name, data=values, fletcher32=checksum)


def _attrs_digest(handle: h5py.File) -> str:
    """SHA-256 of every attribute of the file and its groups (the digest itself excluded)."""
    digest = hashlib.sha256()
    items: list[tuple[str, Any]] = [(f"/{k}", _attribute(handle, k)) for k in handle.attrs
                                    if k != DIGEST]
    for name in ("teacher",):
        if name in handle:
            items += [(f"/{name}/{k}", _attribute(handle[name], k)) for k in handle[name].attrs]
    for key, value in sorted(items, key=lambda item: item[0]):
        digest.update(key.encode())
        digest.update(repr(value.tolist() if isinstance(value, np.ndarray | np.generic)
                           else value).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class Run:
    """A finished run read back from its file (metrics in memory, snapshots on demand).

    Attributes
    ----------
    path, config, status, diverged_epoch
        Where it is, what defined it, ``"complete"`` or ``"diverged"``, and the epoch of
        divergence (None if none).
    metrics
        ``epoch``, ``train_loss``, ``test_loss``, ``grad_norm``, ``spectral_radius`` and, for
        regulation tasks, ``gains`` (E+1, n_u, n_x), for tracking tasks ``probe_errors``
        (E+1, P): one entry per recorded epoch.
    coupled_eigenvalues, recurrent_eigenvalues
        (E+1, n) complex arrays, descending modulus.
    snapshot_epochs
        Epochs whose parameters are stored (read them with :meth:`parameters`).
    teacher
        The teacher of an open-loop run, or None.
    """

    path: Path
    config: RunConfig
    status: str
    diverged_epoch: int | None
    metrics: dict[str, np.ndarray]
    coupled_eigenvalues: np.ndarray
    recurrent_eigenvalues: np.ndarray
    snapshot_epochs: np.ndarray
    teacher: Teacher | None = None
    _parameter_names: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> np.ndarray:
        """Recorded epoch numbers (0..E)."""
        return self.metrics["epoch"]

    @property
    def last_epoch(self) -> int:
        """The last recorded epoch."""
        return int(self.epochs[-1]) if len(self.epochs) else -1

    @property
    def stabilization_epoch(self) -> int | None:
        """First epoch from which the coupled spectral radius stays below 1 (science 3)."""
        return stabilization_epoch(self.metrics["spectral_radius"], self.epochs)

    def parameters(self, epoch: int | str = "last") -> dict[str, np.ndarray]:
        """Parameters after ``epoch`` (an int or ``"last"``); must be a snapshot epoch."""
        if epoch == "last":
            epoch = int(self.snapshot_epochs[-1])
        matches = np.flatnonzero(self.snapshot_epochs == int(epoch))
        if matches.size == 0:
            near = self.snapshot_epochs[np.argsort(np.abs(self.snapshot_epochs - int(epoch)))[:3]]
            raise RunFileError(f"{self.path}: no parameter snapshot at epoch {epoch} "
                               f"(nearest: {', '.join(map(str, sorted(near.tolist())))})")
        index = int(matches[0])
        with _open(self.path) as handle, _damage_is_corruption(self.path):
            return {name: handle[f"snapshots/{name}"][index] for name in self._parameter_names}

    def iter_parameters(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(epoch, parameters) for every snapshot, read one at a time."""
        with _open(self.path) as handle:
            for index, epoch in enumerate(self.snapshot_epochs):
                with _damage_is_corruption(self.path):
                    snapshot = {name: handle[f"snapshots/{name}"][index]
                                for name in self._parameter_names}
                yield int(epoch), snapshot


@contextmanager
def _damage_is_corruption(path: Path) -> Iterator[None]:
    """HDF5's errors on a damaged file (a failed checksum, a broken header) as RunFileError
    (h5py raises RuntimeError where iterating a damaged header's attributes fails)."""
    try:
        yield
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        if isinstance(exc, RunFileError):
            raise
        raise RunFileError(f"{path}: corrupt run file ({exc})") from None


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise RunFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a finished run file.

    Raises
    ------
    IncompleteRunError
        If the run has not finished (its partial folder exists): resumable with ``--resume``.
    RunFileError
        If the path is missing, a directory, not HDF5, a foreign HDF5 file or corrupt.

    Example
    -------
    >>> run = load_run("runs/closed.h5")                          # doctest: +SKIP
    >>> run.metrics["gains"][-1]                                  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        if path.name.endswith(".partial"):
            raise IncompleteRunError(_incomplete(path, path))
        raise RunFileError(f"{path}: is a directory, not a run file")
    if not path.exists():
        if partial_dir(path).is_dir():
            raise IncompleteRunError(_incomplete(path, partial_dir(path)))
        raise RunFileError(f"{path}: no such run file")
    with _open(path) as handle:
        try:
            with _damage_is_corruption(path):
                return _read(path, handle)
        except ConfigError as exc:
            raise RunFileError(f"{path}: corrupt run file ({exc})") from None


def _incomplete(path: Path, folder: Path) -> str:
    if (folder / LEGACY_CHECKPOINT).exists():
        return (f"{path}: incomplete run written by closedloop's earlier PyTorch version (not "
                "resumable by this version; train it again with --overwrite)")
    return f"{path}: incomplete run (resumable with --resume)"


def stored_config(text: str) -> RunConfig:
    """A config stored in a run file or an unfinished run's folder, with the meaning it had
    when it was written: a field added since then takes the value that reproduces what the
    run recorded, not today's default (an ``evaluation`` without ``gain_fit_states``: the
    effective gains were fitted on the test set; see
    :func:`~closedloop.config.schema.stored_evaluation`).

    Raises
    ------
    ConfigError
        When the text is not a valid stored config.

    Example
    -------
    >>> from closedloop.config import RunConfig
    >>> data = json.loads(RunConfig().to_json())
    >>> del data["evaluation"]["gain_fit_states"]            # as written before the field
    >>> stored_config(json.dumps(data)).evaluation.gain_fit_states
    'test_set'
    >>> stored_config(RunConfig().to_json()) == RunConfig()
    True
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return config_from_json(text)             # raises the parser's clear message
    if isinstance(data, dict):
        text = json.dumps(stored_evaluation(data))
    return config_from_json(text)


def _read(path: Path, handle: h5py.File) -> Run:
    if _attribute(handle, "format") != FORMAT:
        raise RunFileError(f"{path}: not a closedloop run file (HDF5 without format "
                           f"'{FORMAT}')")
    version = int(handle.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise RunFileError(f"{path}: run-file format version {version} is not supported "
                           f"(this closedloop reads {FORMAT_VERSION})")
    stored_digest = _attribute(handle, DIGEST)
    if stored_digest is not None and stored_digest != _attrs_digest(handle):
        raise RunFileError(f"{path}: corrupt run file (its attributes do not match their "
                           "checksum)")
    status = _attribute(handle, "status")
    if status not in ("complete", "diverged"):
        raise IncompleteRunError(f"{path}: incomplete run file (no final status)")
    config = stored_config(_attribute(handle, "config"))
    metrics = {name: handle[f"metrics/{name}"][()] for name in METRIC_NAMES}
    for name in OPTIONAL_METRICS:
        if f"metrics/{name}" in handle:
            metrics[name] = handle[f"metrics/{name}"][()]
    rows = metrics["epoch"].shape[0]
    coupled = handle["eigenvalues/coupled"][()]
    recurrent = handle["eigenvalues/recurrent"][()]
    for name, values in {**metrics, "coupled": coupled, "recurrent": recurrent}.items():
        if values.shape[0] != rows:
            raise RunFileError(f"{path}: corrupt run file ({name} has {values.shape[0]} rows, "
                               f"expected {rows})")
    if rows and not np.array_equal(metrics["epoch"], np.arange(rows)):
        raise RunFileError(f"{path}: corrupt run file (epochs are not 0..{rows - 1})")
    snapshot_epochs = handle["snapshots/epoch"][()] if "snapshots/epoch" in handle else \
        np.zeros(0, dtype=np.int64)
    names = [k for k in handle.get("snapshots", {}) if k != "epoch"]
    teacher = None
    if "teacher" in handle:
        group = handle["teacher"]
        teacher = Teacher(str(_attribute(group, "source")),
                          str(_attribute(group, "agent_config")),
                          {k: group[k][()] for k in group})
    diverged = int(handle.attrs.get("diverged_epoch", -1))
    return Run(path=path, config=config, status=str(status),
               diverged_epoch=None if diverged < 0 else diverged, metrics=metrics,
               coupled_eigenvalues=coupled, recurrent_eigenvalues=recurrent,
               snapshot_epochs=snapshot_epochs, teacher=teacher, _parameter_names=names)
