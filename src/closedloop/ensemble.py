"""Ensembles: many networks trained at once in one vectorised program, each recorded to its own
run file exactly as if it had been trained alone.

Members may differ in everything that keeps the shapes of the computation: the seed (hence the
initial weights and the batches), the learning rate, the clipping threshold, the control cost,
the initialisation scales, and the episode length (members with shorter episodes ignore the
extra steps: masking). Their parameters are stacked along a leading axis and every time step
is one batched matrix product for all of them (:mod:`closedloop.fused`); losses, gradient
norms, clipping and the SGD/Adam update are computed per member. Each member draws its batches
from its own random stream, so member i sees the batches of the single run with its config, and
its results equal that run's up to floating-point reduction order.

Example
-------
>>> from closedloop.config import load_preset
>>> configs = [load_preset("di-tanh-closed", ["agent.size=8"], seed=s, epochs=2)
...            for s in range(3)]
>>> results = train_ensemble(configs, [f"runs/e{s}.h5" for s in range(3)])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from closedloop.agents import RNNAgent
from closedloop.config import RunConfig
from closedloop.coupling import coupled_matrix, sorted_eigenvalues
from closedloop.errors import ConfigError, IncompleteRunError
from closedloop.fused import rnn_rollout
from closedloop.gains import effective_gains
from closedloop.losses import control_objective, evaluation_cost, imitation_cost
from closedloop.rollout import Trajectory, agent_observation
from closedloop.store import CheckpointState, EpochRecord, RunWriter, Teacher, partial_dir
from closedloop.tasks import Batch
from closedloop.training import (
    THREADPOOLS,
    OutputExistsError,
    Trainer,
    TrainResult,
    check_memory,
    complete_record,
    config_difference,
)

VARYING = {"seed", "teacher", "init_from", "training.lr", "training.clip_norm",
           "loss.control_cost", "task.steps", "evaluation.test_steps", "agent.init"}
"""Config fields members of one ensemble may differ in (everything else must be equal)."""


def shape_signature(config: RunConfig) -> str:
    """The config with the fields members may vary removed (equal across an ensemble)."""
    data = config.model_dump(mode="json")
    for key in VARYING:
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    data.pop("description", None)
    data["training"].pop("clip_norm", None)
    data["training"]["clipped"] = config.training.clip_norm is not None
    return json.dumps(data, sort_keys=True)


def _stack(tensors: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    if tensors[0] is None:
        return None
    return torch.stack(list(tensors))


def _pad(tensor: torch.Tensor | None, steps: int) -> torch.Tensor | None:
    """Zero-pad a (batch, T, .) tensor to ``steps`` steps."""
    if tensor is None or tensor.shape[1] >= steps:
        return tensor
    extra = tensor.new_zeros(tensor.shape[0], steps - tensor.shape[1], *tensor.shape[2:])
    return torch.cat([tensor, extra], 1)


class EnsembleTrainer:
    """Train several runs of the same shape at once.

    Parameters
    ----------
    configs
        One resolved config per member (see :data:`VARYING` for what may differ).
    initials, teachers
        Per member, initial parameters and (open loop) the teacher; None entries draw from
        the seed / mean no teacher.
    """

    def __init__(self, configs: Sequence[RunConfig],
                 initials: Sequence[Mapping[str, Any] | None] | None = None,
                 teachers: Sequence[Teacher | None] | None = None) -> None:
        if not configs:
            raise ConfigError("an ensemble needs at least one member")
        signatures = {shape_signature(c) for c in configs}
        if len(signatures) > 1:
            difference = config_difference(configs[0], next(
                c for c in configs if shape_signature(c) != shape_signature(configs[0])))
            allowed = {d for d in difference if any(d.startswith(v) for v in VARYING)}
            raise ConfigError("ensemble members must share shapes; they differ in "
                              + ", ".join(sorted(set(difference) - allowed)))
        initials = initials or [None] * len(configs)
        teachers = teachers or [None] * len(configs)
        self.members = [Trainer(c, i, t) for c, i, t in zip(configs, initials, teachers,
                                                               strict=True)]
        first = self.members[0]
        if not isinstance(first.agent, RNNAgent):
            raise ConfigError("ensembles need RNN agents (rnn, lowrank or overlaps)")
        if first.teacher_agent is not None and not isinstance(first.teacher_agent, RNNAgent):
            raise ConfigError("ensembles need RNN teachers (train static-gain teachers alone)")
        self.configs = list(configs)
        self.agent, self.plant = first.agent, first.plant
        self.dtype, self.device = first.dtype, first.device
        self.size = len(configs)
        self.params = {
            name: torch.stack([m.params[name].detach() for m in self.members]).requires_grad_(
                self.agent.is_trainable(name)) for name in first.params}
        self.trainable = [n for n in self.params if self.agent.is_trainable(n)]
        self.teacher_params = None
        if first.teacher_agent is not None:
            self.teacher_params = {name: torch.stack([m.teacher_params[name]
                                                      for m in self.members])
                                   for name in first.teacher_params}
        self.steps = max(c.task.steps for c in configs)
        self.test_steps = max(c.test_steps for c in configs)
        self.lr = self._per_member([c.training.lr for c in configs])
        self.control_cost = self._per_member([c.loss.control_cost for c in configs])
        clips = [c.training.clip_norm for c in configs]
        self.clip = None if clips[0] is None else self._per_member(clips)
        self.optimizer = first.config.training.optimizer
        self.step_count = 0
        self.moments = {n: (torch.zeros_like(self.params[n]), torch.zeros_like(self.params[n]))
                        for n in self.trainable}
        tests = [m.test_batch for m in self.members]
        self.test_x0 = torch.stack([t.x0 for t in tests])
        self.test_reference = _stack([_pad(t.reference, self.test_steps) for t in tests])

    def _per_member(self, values: Sequence[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    # -- one epoch -----------------------------------------------------------------------

    def draw_batch(self) -> Batch:
        """Every member's next batch (from its own stream), stacked; shorter episodes are
        padded with zeros that no loss reads (masking)."""
        batches = [m.draw_batch() for m in self.members]
        return Batch(x0=torch.stack([b.x0 for b in batches]),
                     reference=_stack([_pad(b.reference, self.steps) for b in batches]),
                     inputs=_stack([_pad(b.inputs, self.steps) for b in batches]),
                     noise=_stack([_pad(b.noise, self.steps) for b in batches]))

    def member_trajectories(self, batch: Batch) -> list[Trajectory]:
        """Each member's trajectory (its own episode length) from :meth:`trajectory`."""
        traj = self.trajectory(batch)
        out = []
        for index, member_config in enumerate(self.configs):
            steps = member_config.task.steps
            out.append(Trajectory(
                None if traj.states is None else traj.states[index, :, : steps + 1],
                traj.controls[index, :, :steps],
                None if traj.teacher_controls is None
                else traj.teacher_controls[index, :, :steps]))
        return out

    def trajectory(self, batch: Batch) -> Trajectory:
        """One rollout of all members (the longest episode), stacked along axis 0."""
        prepared = self.agent.prepare(self.params)
        config = self.configs[0]
        mode = config.training.mode
        teacher_controls = states = None
        zero_first = config.training.zero_first_control
        teacher = self.members[0].teacher_agent
        if mode == "open_white_noise":
            with torch.no_grad():
                _, teacher_controls, _ = rnn_rollout(
                    teacher, teacher.prepare(self.teacher_params), steps=self.steps,
                    inputs=batch.inputs, zero_first_control=False)
            _, controls, _ = rnn_rollout(self.agent, prepared, steps=self.steps,
                                         inputs=batch.inputs, zero_first_control=False)
        elif mode == "open_teacher_plant":
            with torch.no_grad():
                states, teacher_controls, _ = rnn_rollout(
                    teacher, teacher.prepare(self.teacher_params), steps=self.steps,
                    plant=self.plant, x0=batch.x0, reference=batch.reference,
                    noise=batch.noise, zero_first_control=zero_first)
            reference = None if batch.reference is None else batch.reference[:, :, :self.steps]
            observations = agent_observation(self.agent, self.plant, states[:, :, :self.steps],
                                             reference)
            _, controls, _ = rnn_rollout(self.agent, prepared, steps=self.steps,
                                         inputs=observations, zero_first_control=zero_first)
        else:
            states, controls, _ = rnn_rollout(self.agent, prepared, steps=self.steps,
                                              plant=self.plant, x0=batch.x0,
                                              reference=batch.reference, noise=batch.noise,
                                              zero_first_control=zero_first)
        return Trajectory(states, controls, teacher_controls)

    def losses(self, batch: Batch) -> torch.Tensor:
        """(E,) training losses, each exactly its member's loss (one batched computation when
        the members share the episode length, else member by member)."""
        config = self.configs[0]
        if len({c.task.steps for c in self.configs}) == 1:
            traj = self.trajectory(batch)
            if config.training.mode != "closed":
                return imitation_cost(traj)
            loss = config.loss.model_copy(update={"control_cost": self.control_cost})
            return control_objective(traj, loss, self.plant, batch.reference)
        values = []
        for index, traj in enumerate(self.member_trajectories(batch)):
            config = self.configs[index]
            if config.training.mode == "closed":
                reference = None if batch.reference is None else batch.reference[index]
                values.append(control_objective(traj, config.loss, self.plant, reference))
            else:
                values.append(imitation_cost(traj))
        return torch.stack(values)

    def train_step(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """One update of every member; returns (losses, gradient norms before clipping).
        A member whose loss or gradient is not finite is left unchanged."""
        losses = self.losses(batch)
        trainable = [self.params[n] for n in self.trainable]
        grads = torch.autograd.grad(losses.sum(), trainable, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g.detach()
                 for p, g in zip(trainable, grads, strict=True)]
        squared = sum(g.reshape(self.size, -1).pow(2).sum(1) for g in grads)
        norms = squared.sqrt()
        finite = torch.isfinite(losses.detach()) & torch.isfinite(norms)
        scale = torch.where(finite, torch.ones_like(norms), torch.zeros_like(norms))
        if self.clip is not None:
            scale = scale * torch.clamp(self.clip / (norms + 1e-6), max=1.0)
        grads = [torch.where(_expand_like(finite, g), g, torch.zeros_like(g)) for g in grads]
        with torch.no_grad():
            self.step_count += 1
            for name, grad in zip(self.trainable, grads, strict=True):
                grad = grad * _expand_like(scale, grad)
                if self.optimizer == "sgd":
                    self.params[name].sub_(_expand_like(self.lr, grad) * grad)
                else:
                    self._adam(name, grad, _expand_like(finite, grad))
        return losses.detach().cpu().double().numpy(), norms.cpu().double().numpy()

    def _adam(self, name: str, grad: torch.Tensor, update: torch.Tensor) -> None:
        """torch.optim.Adam's update (default betas and eps), with per-member learning rates;
        members in ``update`` == False keep their parameters and moments."""
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        first, second = self.moments[name]
        new_first = torch.lerp(first, grad, 1 - beta1)
        new_second = second * beta2 + (1 - beta2) * grad * grad
        first.copy_(torch.where(update, new_first, first))
        second.copy_(torch.where(update, new_second, second))
        correction1 = 1 - beta1 ** self.step_count
        correction2 = math.sqrt(1 - beta2 ** self.step_count)
        denominator = second.sqrt() / correction2 + eps
        step = _expand_like(self.lr, grad) / correction1
        change = torch.where(update, step * first / denominator, torch.zeros_like(first))
        self.params[name].sub_(change)

    def evaluate(self) -> list[dict[str, Any]]:
        """Per member: test loss and effective gains (spectra are computed separately)."""
        with torch.no_grad():
            states, controls, _ = rnn_rollout(
                self.agent, self.agent.prepare(self.params), steps=self.test_steps,
                plant=self.plant, x0=self.test_x0, reference=self.test_reference,
                zero_first_control=self.configs[0].training.zero_first_control)
        out = []
        for index, config in enumerate(self.configs):
            steps = config.test_steps
            traj = Trajectory(states[index, :, : steps + 1], controls[index, :, :steps])
            reference = None if self.test_reference is None else self.test_reference[index]
            result: dict[str, Any] = {"test_loss": float(evaluation_cost(traj, self.plant,
                                                                         reference))}
            result["gains"] = (effective_gains(traj.states.cpu().double().numpy(),
                                               traj.controls.cpu().double().numpy())
                               if config.task.kind == "regulation" else None)
            out.append(result)
        return out

    def parameters_numpy(self) -> dict[str, np.ndarray]:
        """All members' parameters, stacked, as NumPy arrays."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.params.items()}

    def spectra(self, arrays: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        """Every member's eig(P), rho(P), eig(W) from stacked parameters, in batched calls
        (a member with non-finite parameters gets NaN)."""
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
        finite = np.all([np.isfinite(v).reshape(self.size, -1).all(1)
                         for v in arrays.values()], axis=0)
        safe = {k: np.where(finite.reshape(-1, *([1] * (v.ndim - 1))), v, 0.0)
                for k, v in arrays.items()}
        lin = self.agent.linearisation(safe)
        with THREADPOOLS.limit(limits=1, user_api="blas"):
            coupled = sorted_eigenvalues(coupled_matrix(self.plant, lin))
            recurrent = sorted_eigenvalues(lin.W)
        coupled[~finite] = np.nan
        recurrent[~finite] = np.nan
        return [{"coupled_eigenvalues": coupled[i], "recurrent_eigenvalues": recurrent[i],
                 "spectral_radius": float(np.abs(coupled[i, 0]))} for i in range(self.size)]

    def run_epoch(self, epoch: int, spectra: Executor | None = None
                  ) -> list[tuple[EpochRecord, bool]]:
        """Train (unless epoch 0) and evaluate every member; one (record, diverged) each."""
        config = self.configs[0]
        losses = norms = np.full(self.size, np.nan)
        if epoch > 0:
            losses, norms = self.train_step(self.draw_batch())
        elif config.training.initial_epoch_no_update:
            with torch.no_grad():
                losses = self.losses(self.draw_batch()).cpu().double().numpy()
        finite_params = torch.stack([torch.isfinite(v).reshape(self.size, -1).all(1)
                                     for v in self.params.values()]).all(0).cpu().numpy()
        evaluations = self.evaluate()
        arrays = self.parameters_numpy()
        pending = spectra.submit(self.spectra, arrays) if spectra is not None else None
        computed = self.spectra(arrays) if spectra is None else None
        records = []
        for index, member in enumerate(self.members):
            diverged = not bool(finite_params[index])
            if epoch > 0 or config.training.initial_epoch_no_update:
                diverged = diverged or not math.isfinite(losses[index])
            if epoch > 0:
                diverged = diverged or not math.isfinite(norms[index])
            last = epoch == self.configs[index].training.epochs
            snapshot = epoch % member.snapshot_interval == 0 or last or diverged
            record = EpochRecord(
                epoch=epoch, train_loss=float(losses[index]), grad_norm=float(norms[index]),
                snapshot={k: v[index] for k, v in arrays.items()} if snapshot else None,
                spectral_radius=float("nan"), coupled_eigenvalues=None,
                recurrent_eigenvalues=None, **evaluations[index])
            if computed is not None:
                record.coupled_eigenvalues = computed[index]["coupled_eigenvalues"]
                record.recurrent_eigenvalues = computed[index]["recurrent_eigenvalues"]
                record.spectral_radius = computed[index]["spectral_radius"]
            else:
                record.pending_spectrum = _Slice(pending, index)
            records.append((record, diverged))
        return records

    # -- checkpoints ---------------------------------------------------------------------

    def member_state(self, index: int) -> dict[str, Any]:
        """Member ``index``'s checkpoint, in :meth:`Trainer.state_dict`'s format (so the run
        can also be resumed alone)."""
        member = self.members[index]
        with torch.no_grad():
            for name, value in self.params.items():
                member.params[name].copy_(value[index])
        state = member.state_dict()
        if self.optimizer == "adam" and self.step_count:
            optimizer_state = state["optimizer"]
            for position, name in enumerate(self.trainable):
                first, second = self.moments[name]
                optimizer_state["state"][position] = {
                    "step": torch.tensor(float(self.step_count)),
                    "exp_avg": first[index].clone(), "exp_avg_sq": second[index].clone()}
        return state

    def load_member_state(self, index: int, state: Mapping[str, Any]) -> None:
        """Restore member ``index`` from a checkpoint written by :meth:`member_state`."""
        member = self.members[index]
        member.load_state_dict(state)
        with torch.no_grad():
            for name, value in member.params.items():
                self.params[name][index].copy_(value)
            for position, name in enumerate(self.trainable):
                entry = state["optimizer"]["state"].get(position)
                if entry:
                    self.moments[name][0][index].copy_(entry["exp_avg"])
                    self.moments[name][1][index].copy_(entry["exp_avg_sq"])
                    self.step_count = int(entry["step"])


class _Slice:
    """A member's share of a batched spectrum future (``result()`` like a Future)."""

    def __init__(self, future: Any, index: int) -> None:
        self.future, self.index = future, index

    def result(self) -> dict[str, Any]:
        return self.future.result()[self.index]


def _expand_like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def train_ensemble(configs: Sequence[RunConfig], outs: Sequence[str | os.PathLike[str]], *,
                   initials: Sequence[Mapping[str, Any] | None] | None = None,
                   teachers: Sequence[Teacher | None] | None = None, resume: bool = False,
                   overwrite: bool = False,
                   progress: Callable[[int, EpochRecord], None] | None = None
                   ) -> list[TrainResult]:
    """Train ``configs`` as one ensemble, member i recorded to ``outs[i]`` (a normal run file).

    Parameters
    ----------
    configs, outs
        One config and one output path per member.
    initials, teachers
        Per-member initial parameters and teachers (stored in each run file).
    resume, overwrite
        As :func:`closedloop.training.train`, for every member together.
    progress
        Called with (member index, record) for every epoch of every member.
    """
    outs = [Path(o) for o in outs]
    if len(outs) != len(configs) or len(set(outs)) != len(outs):
        raise ConfigError("an ensemble needs one distinct output path per member")
    check_memory(list(configs))
    writers = [RunWriter(o, c) for o, c in zip(outs, configs, strict=True)]
    start = 0
    if resume:
        stored_initials, stored_teachers, states = [], [], []
        for out, writer, config in zip(outs, writers, configs, strict=True):
            if not partial_dir(out).is_dir():
                raise IncompleteRunError(f"{out}: nothing to resume (no unfinished run there)")
            if writer.stored_config() != config:
                raise ConfigError(f"{out}: --resume needs the same settings as the unfinished "
                                  "run")
            initial, teacher = writer.stored_inputs()
            stored_initials.append(initial)
            stored_teachers.append(teacher)
            states.append(writer.resume())
        trainer = EnsembleTrainer(configs, stored_initials, stored_teachers)
        epochs_done = {None if s is None else s.next_epoch for s in states}
        if len(epochs_done) != 1:
            raise IncompleteRunError("ensemble members were checkpointed at different epochs; "
                                     "resume them one by one")
        for index, state in enumerate(states):
            if state is not None:
                trainer.load_member_state(index, state.trainer_state)
                start = state.next_epoch
    else:
        for out in outs:
            if (out.exists() or partial_dir(out).exists()) and not overwrite:
                raise OutputExistsError(f"{out}: a run is already there (pass --overwrite to "
                                        "replace it, or --resume)")
        trainer = EnsembleTrainer(configs, initials, teachers)
        arrays = trainer.parameters_numpy()
        for index, writer in enumerate(writers):
            writer.start({k: v[index] for k, v in arrays.items()},
                         trainer.members[index].teacher_source)

    last_epoch = max(c.training.epochs for c in configs)
    segment = configs[0].recording.segment_epochs
    diverged_at: list[int | None] = [None] * len(configs)
    finished = [False] * len(configs)
    last_records: list[EpochRecord | None] = [None] * len(configs)
    waiting: list[EpochRecord | None] = [None] * len(configs)

    def record_done(index: int) -> None:
        record = waiting[index]
        if record is None:
            return
        complete_record(record)
        writers[index].append(record)
        last_records[index] = record
        waiting[index] = None
        if progress is not None:
            progress(index, record)

    with ThreadPoolExecutor(max_workers=1) as spectra:
        for epoch in range(start, last_epoch + 1):
            results = trainer.run_epoch(epoch, spectra)
            for index, (record, diverged) in enumerate(results):
                if finished[index]:
                    continue
                record_done(index)
                waiting[index] = record
                ends = diverged or epoch == configs[index].training.epochs
                if diverged:
                    diverged_at[index] = epoch
                if ends or (epoch + 1) % segment == 0:
                    record_done(index)
                    state = trainer.member_state(index)
                    state["diverged_epoch"] = -1 if diverged_at[index] is None else epoch
                    writers[index].save(CheckpointState(epoch + 1, state))
                if ends:
                    finished[index] = True
            if all(finished):
                break
    results_out = []
    for index, writer in enumerate(writers):
        status = "diverged" if diverged_at[index] is not None else "complete"
        writer.finish(status, diverged_at[index])
        results_out.append(TrainResult(outs[index], status, diverged_at[index],
                                       last_records[index]))
    return results_out
