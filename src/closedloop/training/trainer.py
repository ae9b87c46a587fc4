"""The one trainer: one network or many (a leading member axis), compiled by JAX.

A :class:`Trainer` holds M runs of one shape (``M = 1`` for a single run): their configs, the
plant and agent they share, and per member the parameters, the optimiser state, the data key,
the hyperparameters that may differ between members (:data:`VARYING`) and the held-out test
batch. Everything it computes is a pure function of those arrays, written once per member and
mapped over the member axis: with ``jax.vmap`` on accelerators, with ``jax.lax.map`` on CPUs
(one member after another inside the same compiled program: on CPU, vmap's batched matrix
products are slower per network than single ones, measured 25 % at 8-32 members). Members
therefore equal single runs up to floating-point reduction order.

One compiled call (:meth:`Trainer.run_chunk`) runs ``recording.segment_epochs`` epochs
(a ``jax.lax.scan``): per epoch it draws the batch from ``fold_in(data key, epoch)``, takes
the learning rule's loss and gradient (:mod:`closedloop.training.rules`: ``jax.value_and_grad``
of the rollout in closed and open loop, nothing differentiated by hand; for the black-box
rules an estimate with the plant outside the gradient), clips and updates,
evaluates the test loss, and returns the records; from a ``perturbation``'s epoch on all of it
runs on the perturbed plant (one ``lax.cond``);
the spectra are computed afterwards on the host, in float64 (:mod:`closedloop.training.loop`).
With ``training.devices`` N > 1 the chunk runs on N devices at once (``shard_map``). An
ensemble whose member count N divides is spread by members: each device trains its M / N
members whole, nothing passes between the devices, and every member computes what it does on
one device. Otherwise each device takes its 1/N of every training batch, the parts' losses and
gradients are summed (:meth:`Program.estimate`), and every device takes the same step, so the
state stays equal on all of them.
Chunks start at multiples of the segment length, and batches depend only on the seed and the
epoch, so a run resumed from any checkpoint computes exactly what the uninterrupted run does.

Epochs (records) are numbered 0..E for E = ``training.epochs`` updates. Record 0 holds the
initial parameters; with ``initial_epoch_no_update`` (the paper's nonlinear presets) its
training loss is that of a batch evaluated without an update. Record e >= 1 holds the loss of
update e's batch (before the update) and everything else after the update. A non-finite loss,
gradient or parameter stops that member (status ``diverged``); the others go on.

Random streams: ``seed`` is split (NumPy ``SeedSequence``) into an initialisation key and a
data key (batches, white noise, process and sensor noise, black-box exploration noise and
evolution-strategies directions). The held-out test set comes from
``evaluation.test_seed``, the set of initial states the effective gains are fitted on from
``evaluation.gain_fit_seed`` (both drawn once, the same for every seed); each epoch reduces
the gain-fit rollouts to their normal equations, which the host solves
(:func:`recorded_gains`).

Example
-------
>>> from closedloop.config import load_preset
>>> trainer = Trainer(load_preset("di-tanh-closed", overrides=["agent.size=8"]))
>>> losses, norms = trainer.train_step(trainer.draw_batch(epoch=1))
>>> bool(losses[0] > 0 and norms[0] > 0)
True
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from closedloop.analysis.coupling import operating_point_spectra, plant_jacobian_failure
from closedloop.analysis.gains import (
    effective_gains,
    gain_normal_equations,
    gains_from_normal_equations,
    sobol_states,
)
from closedloop.config import RunConfig, agent_config, config_difference, stored_agent_fields
from closedloop.core.agents import Agent, Params, build_agent, trainable_names
from closedloop.core.costs import Cost, cost_for
from closedloop.core.plants import Plant, plant_from_config
from closedloop.core.rollout import build_loop, rollout
from closedloop.core.tasks import Batch, probe_errors, probe_set, sample_batch
from closedloop.errors import ConfigError, ShapeError
from closedloop.runs.store import Teacher
from closedloop.training.optim import Optimizer, global_norm
from closedloop.training.rules import LearningRule, rule_for

PyTree = Any
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}
SHARD_AXIS = "batch"
"""The name of the device axis a run's batch is split over (``training.devices``)."""

VARYING = ("seed", "teacher", "init_from", "description", "training.lr", "training.clip_norm",
           "loss.control_cost", "agent.init", "agent.prescribed_overlap", "agent.overlaps",
           "agent.gain")
"""Config fields members of one trainer may differ in (everything else must be equal: it
shapes the compiled program). The ``agent`` fields only shape the initial parameters."""


def shape_signature(config: RunConfig) -> str:
    """The config without the fields members may vary in (:data:`VARYING`): runs with equal
    signatures can be trained together, by one compiled program.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> a = load_preset("di-tanh-closed", ["training.lr=0.1"], seed=1)
    >>> shape_signature(a) == shape_signature(load_preset("di-tanh-closed", seed=2))
    True
    """
    data = _without(config.model_dump(mode="json"), VARYING)
    data["training"]["clipped"] = config.training.clip_norm is not None
    return json.dumps(data, sort_keys=True)


def _without(data: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``data`` with the dotted ``keys`` removed (in place)."""
    for key in keys:
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(leaf, None)
    return data


HOST_ONLY = ("preset", "training.epochs", "recording.snapshot_every")
"""Fields the compiled program does not depend on (the epoch loop and the recording read
them on the host), left out of its cache key so that runs differing only in them share code."""


def program_signature(config: RunConfig) -> str:
    """:func:`shape_signature` without :data:`HOST_ONLY`: the key compiled code is shared
    under.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> a, b = load_preset("di-tanh-closed", epochs=5), load_preset("di-tanh-closed", epochs=9)
    >>> program_signature(a) == program_signature(b) and shape_signature(a) != shape_signature(b)
    True
    """
    return json.dumps(_without(json.loads(shape_signature(config)), HOST_ONLY), sort_keys=True)


def split_seed(seed: int) -> tuple[int, int]:
    """(initialisation seed, data seed) derived from a run seed.

    Example
    -------
    >>> split_seed(0) == split_seed(0) and split_seed(0) != split_seed(1)
    True
    """
    children = np.random.SeedSequence(seed).spawn(2)
    return tuple(int(c.generate_state(1, dtype=np.uint64)[0]) for c in children)


def key_data(seed: int) -> np.ndarray:
    """The raw threefry key (two uint32 words) for a 64-bit seed; the same on every platform
    and whether or not JAX's 64-bit mode is on."""
    seed = int(seed) % 2**64
    return np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)


def key_from_seed(seed: int) -> jax.Array:
    """A ``jax.random`` key for a 64-bit seed.

    Example
    -------
    >>> jax.random.key_data(key_from_seed(2**40 + 3)).tolist()
    [256, 3]
    """
    return jax.random.wrap_key_data(jnp.asarray(key_data(seed)))


def perturbed_plant(config: RunConfig, plant: Plant) -> Plant | None:
    """The plant from the perturbation's epoch on (None without one).

    Raises
    ------
    ConfigError
        When the perturbation changes more than the dynamics (the state, inputs, observation,
        noise or operating point).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> config = load_preset("reach-pointmass-curl")
    >>> perturbed_plant(config, plant_from_config(config.plant)).curl
    4.0
    """
    if config.perturbation is None:
        return None
    after = plant_from_config(config.plant_at(config.perturbation.epoch))
    for name in ("n_states", "n_inputs", "n_outputs", "n_effector", "noise_size"):
        if getattr(after, name) != getattr(plant, name):
            raise ConfigError(f"perturbation.plant changes the plant's {name} "
                              f"({getattr(plant, name)} -> {getattr(after, name)}); a "
                              "perturbation may change the dynamics only")
    if not np.array_equal(after.target_state, plant.target_state):
        raise ConfigError("perturbation.plant moves the plant's operating point; a "
                          "perturbation may change the dynamics only")
    return after


def resolve_device(name: str) -> jax.Device:
    """The JAX device for ``training.device`` (``cpu``, ``gpu[:N]``, ``cuda[:N]``, ``auto``).

    Raises
    ------
    ConfigError
        When the device is not present.
    """
    if name == "auto":
        return jax.devices()[0]
    platform, _, index = name.partition(":")
    platform = "gpu" if platform == "cuda" else platform
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        raise ConfigError(f"training.device '{name}' asked for, but JAX finds no {platform} "
                          "(install jax with CUDA support, e.g. pip install 'jax[cuda12]')"
                          ) from None
    position = int(index or 0)
    if position >= len(devices):
        raise ConfigError(f"training.device '{name}': only {len(devices)} {platform} "
                          "device(s)")
    return devices[position]


def spreads_members(config: RunConfig, members: int) -> bool:
    """Whether ``members`` runs of ``config`` on ``training.devices`` devices are spread by
    members (each device trains its share of the members whole) rather than by splitting
    every batch: when there are several members and the device count divides their number.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> config = load_preset("di-tanh-closed", ["training.devices=2"])
    >>> spreads_members(config, 4), spreads_members(config, 3), spreads_members(config, 1)
    (True, False, False)
    """
    count = config.training.devices
    return count > 1 and members > 1 and members % count == 0


def data_parallel_devices(config: RunConfig, device: jax.Device, rule: LearningRule,
                          members: int = 1) -> list[jax.Device]:
    """The devices ``members`` runs of ``config`` train on (``training.devices``, from
    ``device`` on, of its platform): ``[device]`` alone for one, or when the batch would be
    split (:func:`spreads_members` false) by a rule that cannot split its batch (with a
    warning).

    Raises
    ------
    ConfigError
        When the batch is to be split and the count does not divide ``task.batch_size``, or
        the platform has fewer devices.
    """
    count = config.training.devices
    if count == 1:
        return [device]
    if spreads_members(config, members):
        return _first_devices(device, count)
    if not rule.splits_batch:
        warnings.warn(f"training.mode '{config.training.mode}' compares a batch's episodes "
                      f"with each other; it trains on one device, not {count}", stacklevel=3)
        return [device]
    if config.task.batch_size % count:
        raise ConfigError(f"training.devices {count} does not divide task.batch_size "
                          f"{config.task.batch_size}")
    return _first_devices(device, count)


def _first_devices(device: jax.Device, count: int) -> list[jax.Device]:
    """``count`` devices of ``device``'s platform from ``device`` on."""
    available = jax.devices(device.platform)
    chosen = available[available.index(device):][:count]
    if len(chosen) < count:
        hint = (" (the command line exposes one CPU device per core; in Python, set "
                "jax.config.update('jax_num_cpu_devices', N) before JAX starts)"
                if device.platform == "cpu" else "")
        raise ConfigError(f"training.devices {count} asked for, but JAX has {len(chosen)} "
                          f"{device.platform} device(s) from {device} on{hint}")
    return chosen


@dataclass(frozen=True)
class Program:
    """What the compiled code of a trainer depends on: the shape signature, the number of
    members, how they are mapped, where they run (``mesh``: the devices; ``shards``: over how
    many of them each batch is split; ``spread_members``: the members shared out between
    them instead), and the teacher's agent (which comes from
    the teacher's run, not from the config). Programs compare by these alone, so trainers of
    equal shape share compiled code; the fields below them are derived from the config
    (``rule``: the learning rule ``training.mode`` names, :mod:`closedloop.training.rules`;
    ``cost``: the cost ``loss.kind`` names, :mod:`closedloop.core.costs`)."""

    signature: str
    members: int
    batching: str
    device: str
    teacher: Agent | None
    shards: int = field(default=1, kw_only=True)
    spread_members: bool = field(default=False, kw_only=True)
    config: RunConfig = field(compare=False)
    rule: LearningRule = field(compare=False)
    cost: Cost = field(compare=False)
    plant: Plant = field(compare=False)
    agent: Agent = field(compare=False)
    optimizer: Optimizer = field(compare=False)
    perturbed: Plant | None = field(default=None, compare=False)
    mesh: Mesh | None = field(default=None, compare=False)

    @property
    def dtype(self) -> Any:
        """The training dtype."""
        return DTYPES[self.config.training.dtype]

    @property
    def chunk(self) -> int:
        """Epochs per compiled call (one recording segment)."""
        return self.config.recording.segment_epochs

    @property
    def batch_share(self) -> float:
        """The fraction of a training batch one device computes (1 on a single device)."""
        return 1.0 / self.shards

    def on_devices(self, function: Callable[..., Any], replicated: int = 0
                   ) -> Callable[..., Any]:
        """``function`` of member-stacked arguments (the last ``replicated`` of them whole for
        every member) run on every device of the run at once (``shard_map``), or itself on a
        single device. Members spread: each device gets its members' slices and returns
        them. Batch split: every argument and result whole on each device; inside,
        :meth:`estimate` splits the batch."""
        if self.mesh is None:
            return function
        if not self.spread_members:
            return jax.shard_map(function, mesh=self.mesh, in_specs=PartitionSpec(),
                                 out_specs=PartitionSpec(), check_vma=False)

        def spread(*args: Any) -> Any:
            specs = [PartitionSpec(SHARD_AXIS)] * (len(args) - replicated)
            return jax.shard_map(function, mesh=self.mesh,
                                 in_specs=(*specs, *[PartitionSpec()] * replicated),
                                 out_specs=PartitionSpec(SHARD_AXIS), check_vma=False)(*args)

        return spread

    def shard(self, batch: Batch) -> Batch:
        """This device's part of ``batch``: its ``1 / shards`` of the episodes, in order."""
        size = self.config.task.batch_size // self.shards
        start = lax.axis_index(SHARD_AXIS) * size
        return jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, size, axis=0), batch)

    def summed_over_shards(self, function: Callable[..., Any], trainable: Params,
                           constants: PyTree, batch: Batch) -> Any:
        """``function(self, trainable, constants, batch)``, or on several devices the sum
        over them of its value on each device's part of ``batch``."""
        if self.shards == 1:
            return function(self, trainable, constants, batch)
        return lax.psum(function(self, trainable, constants, self.shard(batch)), SHARD_AXIS)

    # -- per member: batches, losses, evaluation ---------------------------------------

    def draw_batch(self, key: jax.Array) -> Batch:
        """One training batch from ``key`` (a member's epoch key), as the learning rule
        draws it."""
        return self.rule.draw_batch(self, key)

    def loss(self, trainable: Params, constants: PyTree, batch: Batch) -> jax.Array:
        """The learning rule's training loss of ``batch`` (split over the devices: each
        computes its part's, and the parts are summed)."""
        return self.summed_over_shards(self.rule.loss, trainable, constants, batch)

    def estimate(self, trainable: Params, constants: PyTree, batch: Batch
                 ) -> tuple[jax.Array, Params]:
        """(training loss, gradient) of ``batch`` by the learning rule; on several devices
        each takes its part of the batch and the parts' losses and gradients are summed, so
        every device holds the whole batch's."""
        return self.summed_over_shards(self.rule.estimate, trainable, constants, batch)

    def gradient(self, trainable: Params, constants: PyTree, batch: Batch) -> Params:
        """The gradient of :meth:`loss` over ``trainable``."""
        if self.shards == 1:
            return jax.grad(self.loss)(trainable, constants, batch)
        return self.estimate(trainable, constants, batch)[1]

    def evaluate(self, params: Params, constants: PyTree) -> dict[str, jax.Array]:
        """Test loss and, for regulation, what the effective gains are fitted from: the test
        rollout's states and controls (``evaluation.gain_fit_states: test_set``), or the
        normal equations X^T X, X^T U of the gain-fit rollouts (``gain_fit_xtx``,
        ``gain_fit_xtu``; solved on the host)."""
        test = constants["test"]
        steps, zero_first = self.config.test_steps, self.config.training.zero_first_control
        traj = rollout(self.plant, self.agent, params, steps=steps, x0=test.x0,
                       reference=test.reference, zero_first_control=zero_first)
        kind = self.config.task.kind
        result = {"test_loss": self.cost.evaluation(traj, self.plant, test.reference)}
        if kind == "tracking":
            result["probe_errors"] = self.probe_errors(params, constants["probes"])
        if kind != "regulation":
            return result
        if self.config.evaluation.gains_on_test_set:
            result.update(test_states=self.plant.state_error(traj.states),
                          test_controls=traj.controls)
            return result
        fit = rollout(self.plant, self.agent, params, steps=steps,
                      x0=constants["gain_fit"].x0, zero_first_control=zero_first)
        gram, cross = gain_normal_equations(self.plant.state_error(fit.states), fit.controls)
        result.update(gain_fit_xtx=gram, gain_fit_xtu=cross)
        return result

    def probe_errors(self, params: Params, references: jax.Array) -> jax.Array:
        """(P,) errors of the tracking probes (:func:`closedloop.core.tasks.probe_set`) whose
        references (P * K, T, n_axes) are given, in closed loop from rest."""
        rest = self.plant.initial_states(jnp.zeros((references.shape[0],
                                                    self.plant.n_core_states),
                                                   dtype=references.dtype))
        traj = rollout(self.plant, self.agent, params, steps=references.shape[1], x0=rest,
                       reference=references,
                       zero_first_control=self.config.training.zero_first_control)
        return probe_errors(self.plant.effector(traj.states[..., 1:, :]), references,
                            self.config.evaluation.probe_phases)

    # -- per member: one update, one epoch ------------------------------------------------

    def update(self, state: PyTree, constants: PyTree, batch: Batch
               ) -> tuple[PyTree, jax.Array, jax.Array, jax.Array]:
        """One step on ``batch``: (new state, loss before it, gradient norm before clipping,
        whether both were finite). A non-finite step leaves parameters and optimiser alone."""
        loss, grads = self.estimate(state["params"], constants, batch)
        norm = global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(norm)
        params, opt = self.optimizer.update(state["params"], state["opt"], grads, norm=norm,
                                            lr=constants["lr"], clip_norm=constants["clip"])
        keep = finite & ~state["stopped"]
        new = {**state, "params": _select(keep, params, state["params"]),
               "opt": _select(keep, opt, state["opt"])}
        return new, loss, norm, finite

    def epoch(self, state: PyTree, constants: PyTree, epoch: jax.Array
              ) -> tuple[PyTree, dict[str, Any]]:
        """One epoch: the update (none at epoch 0), the test evaluation, the record; from the
        perturbation's epoch on, all three on the perturbed plant."""
        if self.perturbed is None:
            return self.unperturbed_epoch(state, constants, epoch)
        after = replace(self, plant=self.perturbed, perturbed=None)
        return lax.cond(epoch >= self.config.perturbation.epoch, after.unperturbed_epoch,
                        self.unperturbed_epoch, state, constants, epoch)

    def unperturbed_epoch(self, state: PyTree, constants: PyTree, epoch: jax.Array
                          ) -> tuple[PyTree, dict[str, Any]]:
        """:meth:`epoch` on ``self.plant``."""
        key = jax.random.fold_in(jax.random.wrap_key_data(constants["key"]), epoch)
        batch = self.draw_batch(key)
        updated, loss, norm, finite = self.update(state, constants, batch)
        training = epoch > 0
        state = {**state, "params": _select(training, updated["params"], state["params"]),
                 "opt": _select(training, updated["opt"], state["opt"])}
        params_finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v))
                                           for v in jax.tree.leaves(state["params"])]))
        loss_recorded = training | self.config.training.initial_epoch_no_update
        failed = jnp.where(training, ~finite, loss_recorded & ~jnp.isfinite(loss))
        diverging = ~state["stopped"] & (failed | ~params_finite)
        state = {**state, "stopped": state["stopped"] | diverging,
                 "diverged": jnp.where(diverging, epoch, state["diverged"])}
        nan = jnp.full((), jnp.nan, dtype=loss.dtype)
        record = {"train_loss": jnp.where(loss_recorded, loss, nan),
                  "grad_norm": jnp.where(training, norm, nan),
                  "params": state["params"],
                  **self.evaluate({**constants["frozen"], **state["params"]}, constants)}
        return state, record

    def epochs(self, state: PyTree, constants: PyTree, first: jax.Array, last: jax.Array
               ) -> tuple[PyTree, dict[str, Any]]:
        """``chunk`` epochs from ``first``; epochs after ``last`` do nothing (NaN records)."""
        template = jax.eval_shape(self.epoch, state, constants, first)[1]

        def idle(state: PyTree, epoch: jax.Array) -> tuple[PyTree, dict[str, Any]]:
            return state, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), template)

        def body(state: PyTree, epoch: jax.Array) -> tuple[PyTree, dict[str, Any]]:
            return lax.cond(epoch <= last, lambda s, e: self.epoch(s, constants, e), idle,
                            state, epoch)

        return lax.scan(body, state, first + jnp.arange(self.chunk, dtype=jnp.int32))

    def over_members(self, function: Callable[..., Any], *members: Any) -> Any:
        """``function`` applied to every member's slice of ``members`` (leading axis M)."""
        if self.batching == "vmap":
            return jax.vmap(function)(*members)
        return lax.map(lambda sliced: function(*sliced), members)


def recorded_gains(records: Mapping[str, Any], *index: int) -> np.ndarray | None:
    """The effective gains (n_u x n_x) of one record of an evaluation (host arrays, leading
    axes indexed by ``index``): solved from the gain-fit normal equations, or fitted on the
    test rollout (``evaluation.gain_fit_states: test_set``); None when the task records
    none.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> trainer = Trainer(load_preset("di-tanh-closed", ["agent.size=4"]))
    >>> host = jax.device_get(_evaluate(trainer.program, trainer.params, trainer.constants))
    >>> recorded_gains(host, 0).shape
    (1, 2)
    """
    if "gain_fit_xtx" in records:
        return gains_from_normal_equations(records["gain_fit_xtx"][index],
                                           records["gain_fit_xtu"][index])
    if "test_states" in records:
        return effective_gains(records["test_states"][index], records["test_controls"][index])
    return None


def _select(condition: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


@functools.partial(jax.jit, static_argnums=0)
def _run_chunk(program: Program, state: PyTree, constants: PyTree, first: jax.Array,
               last: jax.Array) -> tuple[PyTree, dict[str, Any]]:
    def chunk(s: PyTree, c: PyTree, f: jax.Array, la: jax.Array
              ) -> tuple[PyTree, dict[str, Any]]:
        return program.over_members(lambda sm, cm: program.epochs(sm, cm, f, la), s, c)

    return program.on_devices(chunk, replicated=2)(state, constants, first, last)


@functools.partial(jax.jit, static_argnums=0)
def _train_step(program: Program, state: PyTree, constants: PyTree, batch: Batch
                ) -> tuple[PyTree, jax.Array, jax.Array]:
    def one(s: PyTree, c: PyTree, b: Batch) -> tuple[PyTree, jax.Array, jax.Array]:
        new, loss, norm, _ = program.update(s, c, b)
        return new, loss, norm

    return program.on_devices(lambda s, c, b: program.over_members(one, s, c, b))(
        state, constants, batch)


@functools.partial(jax.jit, static_argnums=0)
def _losses(program: Program, trainable: Params, constants: PyTree, batch: Batch) -> jax.Array:
    return program.on_devices(lambda t, c, b: program.over_members(program.loss, t, c, b))(
        trainable, constants, batch)


@functools.partial(jax.jit, static_argnums=0)
def _gradients(program: Program, trainable: Params, constants: PyTree, batch: Batch) -> Params:
    return program.on_devices(lambda t, c, b: program.over_members(program.gradient, t, c, b))(
        trainable, constants, batch)


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(program: Program, params: Params, constants: PyTree) -> dict[str, jax.Array]:
    return program.over_members(program.evaluate, params, constants)


@functools.partial(jax.jit, static_argnums=0)
def _draw(program: Program, constants: PyTree, epoch: jax.Array) -> Batch:
    def one(c: PyTree) -> Batch:
        return program.draw_batch(jax.random.fold_in(jax.random.wrap_key_data(c["key"]),
                                                     epoch))

    return program.over_members(one, constants)


def _draw_params(agent: Agent, dtype: str, key: jax.Array) -> Params:
    """The agent's initial parameters from ``key``, compiled once per agent and
    initialisation (agents compare without their ``init`` specs, which do not shape the
    training program; the drawing they do shape)."""
    init = getattr(agent, "init", {})
    signature = json.dumps({k: v.model_dump(mode="json") for k, v in init.items()},
                           sort_keys=True)
    return _draw_params_compiled(agent, signature, dtype, key)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _draw_params_compiled(agent: Agent, init_signature: str, dtype: str, key: jax.Array
                          ) -> Params:
    return agent.init_params(jax.random.wrap_key_data(key), DTYPES[dtype])


@functools.partial(jax.jit, static_argnums=0)
def _test_batch(program: Program) -> Batch:
    config = program.config
    task = config.task if config.evaluation.test_targets is None else config.task.model_copy(
        update={"n_targets": config.evaluation.test_targets})
    batch = sample_batch(task, program.plant.n_core_states,
                         key_from_seed(config.evaluation.test_seed),
                         batch_size=config.evaluation.test_size, steps=config.test_steps,
                         dt=program.plant.dt,
                         initial_state_range=config.evaluation.initial_state_range,
                         dtype=program.dtype, every_target=True)
    return replace(batch, x0=program.plant.initial_states(batch.x0))


def _gain_fit_batch(program: Program) -> Batch:
    """The initial states the effective gains are fitted on (``evaluation.gain_fit_*``),
    drawn once, the same for every run seed: a scrambled Sobol' set (``sobol``), or
    independent uniform draws as for the test set (``uniform``)."""
    config = program.config
    evaluation = config.evaluation
    if evaluation.gain_fit_sampling == "uniform":
        return _uniform_gain_fit_batch(program)
    offsets = sobol_states(evaluation.gain_fit_states, program.plant.n_core_states,
                           evaluation.gain_fit_range, evaluation.gain_fit_seed)
    return Batch(x0=program.plant.initial_states(jnp.asarray(offsets).astype(program.dtype)))


@functools.partial(jax.jit, static_argnums=0)
def _uniform_gain_fit_batch(program: Program) -> Batch:
    config = program.config
    evaluation = config.evaluation
    batch = sample_batch(config.task, program.plant.n_core_states,
                         key_from_seed(evaluation.gain_fit_seed),
                         batch_size=evaluation.gain_fit_states, steps=config.test_steps,
                         dt=program.plant.dt, initial_state_range=evaluation.gain_fit_range,
                         dtype=program.dtype, every_target=True)
    return replace(batch, x0=program.plant.initial_states(batch.x0))


def _stack(trees: Sequence[PyTree]) -> PyTree:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


class Trainer:
    """M runs of one shape, trained together (``M = 1``: a single run).

    Parameters
    ----------
    configs
        One resolved config, or one per member (they may differ only in :data:`VARYING`).
    initials
        Per member, initial parameters (e.g. from ``--init-from``); None draws from the seed.
    teachers
        Per member, the teacher of an open-loop run.

    Attributes
    ----------
    configs, plant, agent, teacher_agent, members
        What is trained.
    program
        The static description compiled code is cached under.
    devices, placement
        The devices the members train on (one unless ``training.devices`` says more) and
        where the state and constants live (whole on each device when the batch is split;
        each device's members there when members are spread).
    """

    def __init__(self, configs: RunConfig | Sequence[RunConfig],
                 initials: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
                 teachers: Teacher | Sequence[Teacher | None] | None = None) -> None:
        single = isinstance(configs, RunConfig)
        self.configs: list[RunConfig] = [configs] if single else list(configs)
        if not self.configs:
            raise ConfigError("a trainer needs at least one run")
        self.members = len(self.configs)
        initials = [initials] if single else list(initials or [None] * self.members)
        teachers = [teachers] if single else list(teachers or [None] * self.members)
        if len(initials) != self.members or len(teachers) != self.members:
            raise ConfigError("give one initial-parameter set and one teacher (or None) per run")
        _check_shapes(self.configs)
        config = self.configs[0]
        self.device = resolve_device(config.training.device)
        self.plant, self.agent = build_loop(config)
        self.perturbed_plant = perturbed_plant(config, self.plant)
        self.rule = rule_for(config)
        self.cost = cost_for(config.loss)
        for member in self.configs:
            self.cost.check(member)
        self.plant_jacobian_failure = plant_jacobian_failure(self.plant)
        if self.plant_jacobian_failure is not None:
            if self.rule.differentiates_plant:
                raise ConfigError(
                    f"plant.kind '{config.plant.kind}' cannot be differentiated "
                    f"({self.plant_jacobian_failure}), and training.mode "
                    f"'{config.training.mode}' backpropagates through it; train it as a "
                    "black box (training.mode=black_box)")
            warnings.warn(f"plant.kind '{config.plant.kind}' cannot be differentiated: its "
                          "loop's spectrum is not recorded (NaN)", stacklevel=2)
        self.teacher_sources = teachers
        self.teacher_agent = self._teacher_agent(teachers)
        self.dtype = DTYPES[config.training.dtype]
        self.devices = data_parallel_devices(config, self.device, self.rule, self.members)
        mesh = None if len(self.devices) == 1 else Mesh(np.asarray(self.devices), (SHARD_AXIS,))
        spread = mesh is not None and spreads_members(config, self.members)
        self.placement: Any = self.device if mesh is None else NamedSharding(
            mesh, PartitionSpec(SHARD_AXIS) if spread else PartitionSpec())
        self.program = Program(
            signature=program_signature(config), members=self.members,
            batching="map" if self.device.platform == "cpu" else "vmap",
            device=str(self.device), shards=1 if spread else len(self.devices),
            spread_members=spread, mesh=mesh, config=config,
            rule=self.rule, cost=self.cost, plant=self.plant, agent=self.agent,
            teacher=self.teacher_agent,
            optimizer=Optimizer(config.training.optimizer, config.training.clip_norm is not None),
            perturbed=self.perturbed_plant)
        self.snapshot_interval = config.recording.snapshot_interval(self.agent.size)
        params = [self._initial_params(c, i) for c, i in zip(self.configs, initials,
                                                             strict=True)]
        names = list(self.agent.parameter_shapes())
        self.trainable_names = trainable_names(self.agent, names)
        self.frozen_names = [n for n in names if n not in self.trainable_names]
        if not self.trainable_names and config.training.epochs > 0:
            raise ConfigError("agent.trainable: every parameter is frozen; nothing to train")
        with jax.default_device(self.device):
            self.constants = jax.device_put(self._constants(params, teachers), self.placement)
            trainable = _stack([{n: p[n] for n in self.trainable_names} for p in params])
            self.state = jax.device_put({
                "params": trainable,
                "opt": jax.vmap(self.program.optimizer.init)(trainable),
                "stopped": jnp.zeros(self.members, dtype=bool),
                "diverged": jnp.full(self.members, -1, dtype=jnp.int32)}, self.placement)

    # -- construction -------------------------------------------------------------------

    def _initial_params(self, config: RunConfig, initial: Mapping[str, Any] | None) -> Params:
        if initial is None:   # the member's own agent: initial-value settings may differ
            agent = build_agent(config.agent, self.agent.n_inputs, self.agent.n_outputs,
                                self.plant.n_states)
            init_seed, _ = split_seed(config.seed)
            return _draw_params(agent, config.training.dtype, jnp.asarray(key_data(init_seed)))
        try:
            return self.agent.to_params(initial, self.dtype)
        except ShapeError as exc:
            source = f" from {config.init_from}" if config.init_from else ""
            raise ShapeError(f"initial parameters{source} do not fit this agent: {exc}"
                             ) from None

    def _teacher_agent(self, teachers: Sequence[Teacher | None]) -> Agent | None:
        """The teachers' agent (None for a rule without a teacher), after the rule has
        checked the student and the teacher."""
        config = self.configs[0]
        agent = None
        if self.rule.needs_teacher:
            if any(t is None for t in teachers):
                raise ConfigError(f"training.mode '{config.training.mode}' needs a teacher "
                                  "(--teacher RUN[@EPOCH], gain:K or lqr)")
            agents = {build_agent(agent_config(stored_agent_fields(json.loads(t.agent_config))),
                                  self.agent.n_inputs, self.plant.n_inputs,
                                  self.plant.n_states) for t in teachers}
            if len(agents) > 1:
                raise ConfigError("runs trained together need teachers of the same kind and "
                                  "size")
            agent = agents.pop()
        self.rule.check(config, self.agent, agent)
        return agent

    def _constants(self, params: Sequence[Params], teachers: Sequence[Teacher | None]
                   ) -> PyTree:
        test = _test_batch(self.program)
        gain_fit = _gain_fit_batch(self.program) if self.fits_gains_separately else None
        config = self.configs[0]
        probes = None if config.task.kind != "tracking" else jnp.asarray(probe_set(
            config.task, self.plant.dt, config.evaluation.probe_phases).references,
            dtype=self.dtype)
        per_member = []
        for c, p, t in zip(self.configs, params, teachers, strict=True):
            clip = c.training.clip_norm
            per_member.append({
                "lr": jnp.asarray(c.training.lr, self.dtype),
                "clip": jnp.asarray(np.inf if clip is None else clip, self.dtype),
                "control_cost": jnp.asarray(c.loss.control_cost, self.dtype),
                "key": jnp.asarray(key_data(split_seed(c.seed)[1])),
                "frozen": {n: p[n] for n in self.frozen_names},
                "teacher": None if t is None else self.teacher_agent.to_params(
                    t.parameters, self.dtype),
                "test": test, "gain_fit": gain_fit, "probes": probes})
        return _stack(per_member)

    @property
    def fits_gains_separately(self) -> bool:
        """Whether the effective gains are fitted on their own initial states
        (``evaluation.gain_fit_states``, regulation tasks), not on the test set."""
        config = self.configs[0]
        return config.task.kind == "regulation" and not config.evaluation.gains_on_test_set

    def gain_fit_initial_states(self) -> np.ndarray | None:
        """The (S, n_x) initial states the effective gains are fitted on, or None when they
        are fitted on the test set (or the task records no gains).

        Example
        -------
        >>> from closedloop.config import load_preset
        >>> trainer = Trainer(load_preset("di-tanh-closed", ["agent.size=4"]))
        >>> trainer.gain_fit_initial_states().shape
        (128, 2)
        """
        if not self.fits_gains_separately:
            return None
        return np.asarray(self.constants["gain_fit"].x0[0])

    # -- parameters -----------------------------------------------------------------------

    @property
    def params(self) -> Params:
        """Every parameter, stacked over members (M, ...), in the agent's order."""
        merged = {**self.constants["frozen"], **self.state["params"]}
        return {name: merged[name] for name in self.agent.parameter_shapes()}

    def parameters_numpy(self, index: int | None = None) -> dict[str, np.ndarray]:
        """The parameters as NumPy arrays (training dtype): stacked, or member ``index``'s."""
        arrays = {k: np.asarray(v) for k, v in self.params.items()}
        return arrays if index is None else {k: v[index].copy() for k, v in arrays.items()}

    # -- one step at a time (tests, golden numbers) ---------------------------------------

    def draw_batch(self, epoch: int) -> Batch:
        """Every member's batch of ``epoch`` (stacked), as training draws it."""
        return _draw(self.program, self.constants, jnp.asarray(epoch, dtype=jnp.int32))

    def _batch(self, batch: Batch) -> Batch:
        batch = batch.astype(self.dtype)
        if batch.x0.ndim != 3 or batch.x0.shape[0] != self.members:
            raise ShapeError(f"a batch for {self.members} run(s) has a leading member axis "
                             f"(use Batch.stack); got x0 of shape {tuple(batch.x0.shape)}")
        return jax.device_put(batch, self.placement)

    def loss(self, batch: Batch, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """(M,) training losses on ``batch`` (stacked), for the current or the given
        (stacked) parameters."""
        trainable = self.state["params"] if params is None else {
            n: jnp.asarray(params[n], self.dtype) for n in self.trainable_names}
        return np.asarray(_losses(self.program, trainable, self.constants, self._batch(batch)))

    def gradients(self, batch: Batch) -> dict[str, np.ndarray]:
        """Gradients (stacked) of the training loss on ``batch`` for the trained
        parameters."""
        grads = _gradients(self.program, self.state["params"], self.constants,
                           self._batch(batch))
        return {k: np.asarray(v) for k, v in grads.items()}

    def train_step(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """One update of every member on ``batch`` (stacked): (losses before it, gradient
        norms before clipping), each (M,). A non-finite step leaves that member unchanged."""
        self.state, losses, norms = _train_step(self.program, self.state, self.constants,
                                                self._batch(batch))
        return np.asarray(losses, dtype=np.float64), np.asarray(norms, dtype=np.float64)

    def evaluate(self, with_spectrum: bool = True) -> list[dict[str, Any]]:
        """Per member: test loss, effective gains (regulation; fitted as
        ``evaluation.gain_fit_states`` says) and, with ``with_spectrum``, eig(P), rho(P) and
        eig(W) of the current parameters."""
        host = jax.device_get(_evaluate(self.program, self.params, self.constants))
        out: list[dict[str, Any]] = []
        spectra = operating_point_spectra(self.plant, self.agent, self.parameters_numpy()) \
            if with_spectrum else None
        for index in range(self.members):
            result: dict[str, Any] = {"test_loss": float(host["test_loss"][index]),
                                      "gains": recorded_gains(host, index)}
            if "probe_errors" in host:
                result["probe_errors"] = np.asarray(host["probe_errors"][index],
                                                    dtype=np.float64)
            if spectra is not None:
                result.update({k: v[index] for k, v in spectra.items()})
                result["spectral_radius"] = float(result["spectral_radius"])
            out.append(result)
        return out

    # -- compiled chunks ------------------------------------------------------------------

    def run_chunk(self, first: int) -> tuple[PyTree, dict[str, Any]]:
        """Dispatch the epochs ``first .. first + chunk - 1`` (those after the last epoch do
        nothing); returns (state after them, records with leading axes (M, chunk)) as device
        arrays, without waiting (JAX dispatches asynchronously). The trainer's state becomes
        the new one."""
        last = self.configs[0].training.epochs
        self.state, records = _run_chunk(self.program, self.state, self.constants,
                                         jnp.asarray(first, dtype=jnp.int32),
                                         jnp.asarray(last, dtype=jnp.int32))
        return self.state, records

    def merged_params(self, trainable: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Recorded trainable parameters (M, K, ...) completed with the frozen ones."""
        frozen = jax.device_get(self.constants["frozen"])
        count = next(iter(trainable.values())).shape[1] if trainable else 1
        merged = {n: np.asarray(trainable[n]) for n in self.trainable_names}
        for name in self.frozen_names:
            merged[name] = np.repeat(np.asarray(frozen[name])[:, None], count, axis=1)
        return {name: merged[name] for name in self.agent.parameter_shapes()}

    # -- checkpoints ----------------------------------------------------------------------

    def member_state(self, index: int, state: PyTree | None = None) -> dict[str, np.ndarray]:
        """Member ``index``'s checkpoint as flat NumPy arrays: parameters, optimiser state,
        data key and divergence epoch (the same format for a run trained alone or with
        others)."""
        host = jax.device_get(self.state if state is None else state)
        constants = jax.device_get(self.constants)
        out = {f"params__{k}": np.asarray(v[index]) for k, v in host["params"].items()}
        out.update({f"frozen__{k}": np.asarray(v[index])
                    for k, v in constants["frozen"].items()})
        for position, leaf in enumerate(jax.tree.leaves(host["opt"])):
            out[f"opt__{position}"] = np.asarray(leaf[index])
        out["key"] = np.asarray(constants["key"][index])
        out["diverged_epoch"] = np.asarray(host["diverged"][index], dtype=np.int64)
        return out

    def load_member_states(self, states: Sequence[Mapping[str, np.ndarray]]) -> None:
        """Restore every member from checkpoints written by :meth:`member_state`.

        Raises
        ------
        ShapeError
            When a checkpoint does not fit this trainer.
        """
        if len(states) != self.members:
            raise ShapeError(f"{len(states)} checkpoints for {self.members} runs")
        template = jax.device_get(self.state)
        leaves, treedef = jax.tree.flatten(template["opt"])
        params, opts, diverged = [], [], []
        for state in states:
            try:
                params.append({n: np.asarray(state[f"params__{n}"], dtype=self.dtype)
                               for n in self.trainable_names})
                opt = [np.asarray(state[f"opt__{i}"], dtype=leaf.dtype)
                       for i, leaf in enumerate(leaves)]
            except KeyError as exc:
                raise ShapeError(f"checkpoint lacks {exc}") from None
            for name, value in params[-1].items():
                if value.shape != template["params"][name].shape[1:]:
                    raise ShapeError(f"checkpoint parameter {name} has shape {value.shape}")
            opts.append(jax.tree.unflatten(treedef, opt))
            diverged.append(int(state["diverged_epoch"]))
        with jax.default_device(self.device):
            self.state = jax.device_put({
                "params": _stack(params), "opt": _stack(opts),
                "stopped": jnp.asarray([d >= 0 for d in diverged]),
                "diverged": jnp.asarray(diverged, dtype=jnp.int32)}, self.placement)


def _check_shapes(configs: Sequence[RunConfig]) -> None:
    first = shape_signature(configs[0])
    for config in configs[1:]:
        if shape_signature(config) != first:
            difference = config_difference(configs[0], config)
            fixed = [d for d in difference if not any(d == v or d.startswith(v + ".")
                                                       for v in VARYING)]
            raise ConfigError("runs trained together must share shapes; they differ in "
                              + ", ".join(fixed))
