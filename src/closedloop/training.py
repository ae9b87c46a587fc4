"""Training: the epoch loop, its recorders, checkpoints and resume (SPEC 1.5, 2).

:class:`Trainer` holds one run's plant, agent, parameters, optimiser and random streams; it
takes a training step on a batch and evaluates the current parameters. :func:`train` drives
it epoch by epoch, records every epoch to a run file (see :mod:`closedloop.store`), and can
resume a killed run so that the result equals an uninterrupted one bit for bit on CPU.

Epochs (records) are numbered 0..E for E = ``training.epochs`` updates. Record 0 holds the
initial parameters; with ``initial_epoch_no_update`` (the paper's nonlinear presets) its
training loss is that of a batch drawn and evaluated without an update. Record e >= 1 holds
the loss of update e's batch (before the update) and everything else after the update.

Random streams: ``seed`` is split (NumPy SeedSequence) into an initialisation stream and a
data stream (batches, white noise, process noise). The held-out test set comes from
``evaluation.test_seed``, the same for every seed.

Example
-------
>>> from closedloop.config import load_preset
>>> trainer = Trainer(load_preset("di-tanh-closed", overrides=["agent.size=8"]))
>>> loss, grad_norm = trainer.train_step(trainer.draw_batch())
>>> loss > 0 and grad_norm > 0
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from closedloop.agents import Agent, Params, build_agent, trainable_names
from closedloop.config import AgentConfig, RunConfig
from closedloop.coupling import coupled_matrix, sorted_eigenvalues
from closedloop.errors import ClosedLoopError, ConfigError, IncompleteRunError, ShapeError
from closedloop.gains import effective_gains
from closedloop.losses import control_objective, evaluation_cost, imitation_cost
from closedloop.plants import plant_from_config
from closedloop.rollout import Trajectory, rollout
from closedloop.store import CheckpointState, EpochRecord, RunWriter, Teacher, partial_dir
from closedloop.tasks import Batch, sample_batch, white_noise_batch

DTYPES = {"float32": torch.float32, "float64": torch.float64}
THREADPOOLS = ThreadpoolController()
"""Per-epoch eigenvalue problems are small: multithreaded BLAS only adds contention with
PyTorch's own threads (measured 2-3x slower per epoch on 2 cores), so they run on one thread."""


class OutputExistsError(ClosedLoopError):
    """The output path already holds a run (or an unfinished one)."""


def split_seed(seed: int) -> tuple[int, int]:
    """(initialisation seed, data seed) derived from a run seed."""
    children = np.random.SeedSequence(seed).spawn(2)
    return tuple(int(c.generate_state(1, dtype=np.uint64)[0]) for c in children)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``training.device``; a clear error when CUDA is missing."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device '{name}' asked for, but no CUDA device is available")
    return torch.device(name)


class Trainer:
    """One run's model, optimiser and random streams.

    Parameters
    ----------
    config
        The resolved run config.
    initial
        Initial parameters (e.g. from ``--init-from``); drawn from the seed when None.
    teacher
        The teacher of an open-loop run.
    """

    def __init__(self, config: RunConfig, initial: Mapping[str, Any] | None = None,
                 teacher: Teacher | None = None) -> None:
        self.config = config
        self.dtype = DTYPES[config.training.dtype]
        self.device = resolve_device(config.training.device)
        self.plant = plant_from_config(config.plant)
        task = config.task
        self.reference_size = len(task.frequencies) if task.kind == "tracking" else 0
        if self.reference_size and self.reference_size != self.plant.n_outputs:
            raise ConfigError(f"task.frequencies has {self.reference_size} axes but the plant "
                              f"observes {self.plant.n_outputs} outputs")
        self.agent: Agent = build_agent(config.agent, self.plant.n_outputs + self.reference_size,
                                        self.plant.n_inputs, self.plant.n_states)
        init_seed, data_seed = split_seed(config.seed)
        if initial is None:
            self.params = self.agent.init_params(torch.Generator().manual_seed(init_seed),
                                                 self.dtype, self.device)
        else:
            try:
                self.params = self.agent.to_tensors(initial, self.dtype, self.device)
            except ShapeError as exc:
                source = f" from {config.init_from}" if config.init_from else ""
                raise ShapeError(f"initial parameters{source} do not fit this agent: {exc}"
                                 ) from None
        self.trainable = [self.params[n] for n in trainable_names(self.agent, self.params)]
        if not self.trainable and config.training.epochs > 0:
            raise ConfigError("agent.trainable: every parameter is frozen; nothing to train")
        self.generator = torch.Generator().manual_seed(data_seed)
        optimizer = torch.optim.SGD if config.training.optimizer == "sgd" else torch.optim.Adam
        self.optimizer = optimizer(self.trainable, lr=config.training.lr)
        self.teacher_source = teacher
        self.teacher_agent, self.teacher_params = self._build_teacher(teacher)
        self.test_batch = sample_batch(
            task, self.plant.n_states, torch.Generator().manual_seed(config.evaluation.test_seed),
            batch_size=config.evaluation.test_size, steps=config.test_steps, dt=self.plant.dt,
            initial_state_range=config.evaluation.initial_state_range,
        ).to(self.dtype, self.device)
        self.snapshot_interval = config.recording.snapshot_interval(self.agent.size)

    # -- construction helpers -------------------------------------------------------------

    def _build_teacher(self, teacher: Teacher | None) -> tuple[Agent | None, Params | None]:
        mode = self.config.training.mode
        if mode == "closed":
            return None, None
        if teacher is None:
            raise ConfigError(f"training.mode '{mode}' needs a teacher (--teacher RUN[@EPOCH], "
                              "gain:K or lqr)")
        agent_config = AgentConfig.model_validate_json(teacher.agent_config)
        agent = build_agent(agent_config, self.agent.n_inputs, self.plant.n_inputs,
                            self.plant.n_states)
        if mode == "open_white_noise" and agent.reads_state:
            raise ConfigError("a static-gain teacher reads the plant state; white-noise "
                              "imitation needs an RNN teacher (use a teacher-driven-plant "
                              "preset such as di-tanh-open-plant)")
        params = agent.to_tensors(teacher.parameters, self.dtype, self.device)
        return agent, {k: v.detach().requires_grad_(False) for k, v in params.items()}

    # -- batches and losses ---------------------------------------------------------------

    def draw_batch(self) -> Batch:
        """Draw the next training batch from the data stream."""
        config = self.config
        white_noise = config.training.mode == "open_white_noise"
        if white_noise:
            batch = white_noise_batch(config.task.batch_size, config.task.steps,
                                      self.agent.n_inputs, config.training.input_noise_std,
                                      self.generator)
        else:
            batch = sample_batch(config.task, self.plant.n_states, self.generator,
                                 dt=self.plant.dt)
            batch.noise = self.plant.draw_noise(batch.size, config.task.steps, self.generator,
                                                torch.float64)
        return batch.to(self.dtype, self.device)

    def trajectory(self, batch: Batch) -> Trajectory:
        """The rollout that training on ``batch`` uses (by ``training.mode``)."""
        config = self.config
        mode = config.training.mode
        if mode == "open_white_noise":
            return rollout(None, self.agent, self.params, steps=config.task.steps,
                           inputs=batch.inputs, teacher=self.teacher_agent,
                           teacher_params=self.teacher_params)
        return rollout(self.plant, self.agent, self.params, steps=config.task.steps,
                       x0=batch.x0, reference=batch.reference, noise=batch.noise,
                       teacher=self.teacher_agent, teacher_params=self.teacher_params,
                       teacher_drives=mode == "open_teacher_plant",
                       zero_first_control=config.training.zero_first_control)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training loss on ``batch``: the control objective in closed loop, the imitation
        cost in open loop."""
        traj = self.trajectory(batch)
        if self.config.training.mode == "closed":
            return control_objective(traj, self.config.loss, self.plant, batch.reference)
        return imitation_cost(traj)

    def train_step(self, batch: Batch) -> tuple[float, float]:
        """One update on ``batch``: returns (loss before the update, gradient 2-norm before
        clipping). A non-finite loss or gradient leaves the parameters unchanged."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.trainable]
        norm = torch.nn.utils.get_total_norm(grads)
        loss_value, norm_value = float(loss.detach()), float(norm)
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            self.optimizer.zero_grad(set_to_none=True)
            return loss_value, norm_value
        clip = self.config.training.clip_norm
        if clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.trainable, clip, norm)
        self.optimizer.step()
        return loss_value, norm_value

    # -- evaluation -----------------------------------------------------------------------

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        """The current parameters as NumPy arrays (in the training dtype)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.params.items()}

    def evaluate(self, with_spectrum: bool = True) -> dict[str, Any]:
        """Test loss and effective gains (regulation) of the current parameters, and with
        ``with_spectrum`` their eig(P), rho(P) and eig(W) (see :meth:`spectrum`)."""
        test = self.test_batch
        with torch.no_grad():
            traj = rollout(self.plant, self.agent, self.params, steps=self.config.test_steps,
                           x0=test.x0, reference=test.reference,
                           zero_first_control=self.config.training.zero_first_control)
            test_loss = float(evaluation_cost(traj, self.plant, test.reference))
        gains = None
        if self.config.task.kind == "regulation":
            gains = effective_gains(traj.states.cpu().double().numpy(),
                                    traj.controls.cpu().double().numpy())
        result: dict[str, Any] = {"test_loss": test_loss, "gains": gains}
        if with_spectrum:
            result.update(self.spectrum(self.parameters_numpy()))
        return result

    def spectrum(self, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """eig(P) (descending modulus), rho(P) and eig(W) for parameters ``arrays`` (NumPy;
        safe to run in another thread while training goes on)."""
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        coupled = np.full(self.plant.n_states + self.agent.size, np.nan + 0j)
        recurrent = np.full(self.agent.size, np.nan + 0j)
        if all(np.all(np.isfinite(v)) for v in arrays.values()):
            lin = self.agent.linearisation(arrays)
            with THREADPOOLS.limit(limits=1, user_api="blas"):
                coupled = sorted_eigenvalues(coupled_matrix(self.plant, lin))
                recurrent = sorted_eigenvalues(lin.W) if self.agent.size else recurrent
        radius = float(np.abs(coupled[0])) if coupled.size else float("nan")
        return {"coupled_eigenvalues": coupled, "recurrent_eigenvalues": recurrent,
                "spectral_radius": radius}

    def parameters_finite(self) -> bool:
        """Whether every parameter is finite."""
        return all(bool(torch.isfinite(p).all()) for p in self.params.values())

    def run_epoch(self, epoch: int, spectra: Executor | None = None
                  ) -> tuple[EpochRecord, bool]:
        """Train (unless epoch 0) and evaluate; returns the record and whether it diverged.

        With an ``spectra`` executor, the record's eigenvalues are computed there (in parallel
        with the next epoch's training) and must be filled in by :func:`complete_record`."""
        training = self.config.training
        train_loss = grad_norm = float("nan")
        diverged = False
        if epoch > 0:
            train_loss, grad_norm = self.train_step(self.draw_batch())
            diverged = not (math.isfinite(train_loss) and math.isfinite(grad_norm))
        elif training.initial_epoch_no_update:
            with torch.no_grad():
                train_loss = float(self.loss(self.draw_batch()))
            diverged = not math.isfinite(train_loss)
        diverged = diverged or not self.parameters_finite()
        evaluation = self.evaluate(with_spectrum=spectra is None)
        arrays = self.parameters_numpy()
        if spectra is not None:
            evaluation.update(spectral_radius=float("nan"), coupled_eigenvalues=None,
                              recurrent_eigenvalues=None,
                              pending_spectrum=spectra.submit(self.spectrum, arrays))
        last = epoch == training.epochs
        snapshot = (epoch % self.snapshot_interval == 0 or last or diverged)
        record = EpochRecord(epoch=epoch, train_loss=train_loss, grad_norm=grad_norm,
                             snapshot=arrays if snapshot else None, **evaluation)
        return record, diverged

    # -- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Parameters, optimiser and data-stream state (tensors and plain values only)."""
        return {"params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value.to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    path: Path
    status: str
    diverged_epoch: int | None
    last_record: EpochRecord | None


ProgressCallback = Callable[[EpochRecord], None]


def estimated_memory(config: RunConfig) -> int:
    """Bytes one run of ``config`` needs at its peak, roughly (within a factor of ~2).

    Parameters with their gradients, optimiser moments and copies for recording; the rollout's
    per-step buffers for the forward pass and the adjoint (training and test rollouts); the
    float64 eigenvalue problems of P and W.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> estimated_memory(load_preset("di-tanh-closed")) < 50e6
    True
    """
    element = 8 if config.training.dtype == "float64" else 4
    plant = config.plant
    n_x = plant.order if plant.kind == "integrator" else (
        4 if plant.kind == "point_mass_2d" else len(plant.A or [[0.0]]))
    size = config.agent.size
    width = size + 2 * n_x + 8
    parameters = 8 * (size * size + 2 * width * size) * element
    eigenvalues = 6 * (size + n_x) ** 2 * 8
    rollout = 6 * config.task.steps * config.task.batch_size * width * element
    test = 4 * config.test_steps * config.evaluation.test_size * width * element
    return int(parameters + eigenvalues + rollout + test)


def check_memory(configs: list[RunConfig]) -> None:
    """Refuse, before any work, runs that together need more memory than this machine has.

    Raises
    ------
    ConfigError
        Naming the settings that size the run.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> check_memory([load_preset("di-tanh-closed")])         # fits: returns quietly
    """
    needed = sum(estimated_memory(c) for c in configs)
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return
    if needed > 0.8 * available:
        config = max(configs, key=estimated_memory)
        count = f"{len(configs)} runs of " if len(configs) > 1 else ""
        raise ConfigError(
            f"{count}agent.size={config.agent.size}, task.batch_size="
            f"{config.task.batch_size}, task.steps={config.task.steps} need about "
            f"{needed / 2**30:.1f} GiB of memory, more than this machine's "
            f"{available / 2**30:.1f} GiB allows; use smaller values")


def train(config: RunConfig, out: str | os.PathLike[str], *,
          initial: Mapping[str, Any] | None = None, teacher: Teacher | None = None,
          resume: bool = False, overwrite: bool = False,
          progress: ProgressCallback | None = None) -> TrainResult:
    """Train a run and write it to ``out`` (an ``.h5`` run file).

    Parameters
    ----------
    config
        The resolved config. On ``resume`` it must equal the stored one.
    out
        Path of the run file.
    initial, teacher
        Initial parameters and the teacher of an open-loop run (stored in the run file).
    resume
        Continue the unfinished run at ``out`` from its last checkpoint.
    overwrite
        Replace an existing run (finished or not) at ``out``.
    progress
        Called with every epoch's record.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> config = load_preset("di-tanh-closed", overrides=["training.epochs=3"])
    >>> train(config, "runs/tiny.h5").status                          # doctest: +SKIP
    'complete'
    """
    out = Path(out)
    check_memory([config])
    writer = RunWriter(out, config)
    folder = partial_dir(out)
    if resume:
        if out.exists() and not folder.exists():
            raise OutputExistsError(f"{out}: the run is already complete; nothing to resume")
        if not folder.is_dir():
            raise IncompleteRunError(f"{out}: nothing to resume (no unfinished run there)")
        stored = writer.stored_config()
        if stored != config:
            raise ConfigError(f"{out}: --resume needs the same settings as the unfinished run; "
                              f"differs in {', '.join(config_difference(stored, config))}")
        initial, teacher = writer.stored_inputs()
        trainer = Trainer(stored, initial, teacher)
        checkpoint = writer.resume()
        start = 0
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint.trainer_state)
            start = checkpoint.next_epoch
            diverged_at = checkpoint.trainer_state.get("diverged_epoch", -1)
            if diverged_at >= 0:
                writer.finish("diverged", diverged_at)
                return TrainResult(out, "diverged", diverged_at, None)
    else:
        if (out.exists() or folder.exists()) and not overwrite:
            what = "an unfinished run" if folder.exists() else "a run"
            hint = "--resume to continue it or " if folder.exists() else ""
            raise OutputExistsError(f"{out}: {what} is already there (pass {hint}--overwrite "
                                    "to replace it)")
        trainer = Trainer(config, initial, teacher)
        writer.start(trainer.parameters_numpy(), teacher)
        start = 0

    epochs = config.training.epochs
    segment = config.recording.segment_epochs
    record: EpochRecord | None = None
    diverged_epoch: int | None = None
    waiting: EpochRecord | None = None

    def record_done(item: EpochRecord) -> None:
        complete_record(item)
        writer.append(item)
        if progress is not None:
            progress(item)

    # each epoch's eigenvalues are computed on a second thread while the next epoch trains;
    # a small network's products are too small to share between cores, so training keeps one
    # (measured 20 % faster per epoch on 2 cores than PyTorch's default of all cores)
    with ThreadPoolExecutor(max_workers=1) as spectra, _training_threads(trainer.agent.size):
        for epoch in range(start, epochs + 1):
            record, diverged = trainer.run_epoch(epoch, spectra)
            if waiting is not None:
                record_done(waiting)
            waiting = record
            if diverged:
                diverged_epoch = epoch
            if diverged or (epoch + 1) % segment == 0 or epoch == epochs:
                record_done(waiting)
                waiting = None
                state = trainer.state_dict()
                state["diverged_epoch"] = -1 if diverged_epoch is None else diverged_epoch
                writer.save(CheckpointState(epoch + 1, state))
            if diverged:
                break
    status = "diverged" if diverged_epoch is not None else "complete"
    writer.finish(status, diverged_epoch)
    return TrainResult(out, status, diverged_epoch, record)


SMALL_NETWORK = 512
"""Networks up to this size train on one PyTorch thread (see :func:`train`)."""


@contextmanager
def _training_threads(size: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    if size <= SMALL_NETWORK and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def complete_record(record: EpochRecord) -> EpochRecord:
    """Fill in a record whose spectrum was computed on another thread (no-op otherwise)."""
    if record.pending_spectrum is not None:
        spectrum = record.pending_spectrum.result()
        record.coupled_eigenvalues = spectrum["coupled_eigenvalues"]
        record.recurrent_eigenvalues = spectrum["recurrent_eigenvalues"]
        record.spectral_radius = spectrum["spectral_radius"]
        record.pending_spectrum = None
    return record


def config_difference(a: RunConfig, b: RunConfig) -> list[str]:
    flat_a, flat_b = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    return sorted(k for k in set(flat_a) | set(flat_b) if flat_a.get(k) != flat_b.get(k))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out
