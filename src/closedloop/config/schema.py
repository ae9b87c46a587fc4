"""The run configuration: typed, validated, one :class:`RunConfig` per run.

Every field has a documented default; invalid values are rejected with a message that names
the key, the value and what is allowed (see :mod:`closedloop.config.overrides` for presets and
``--set`` overrides). This layer reads nothing else of the package.

Example
-------
>>> config = RunConfig(agent={"kind": "rnn", "size": 8})
>>> config.agent.size, config.training.optimizer, config.plant.kind
(8, 'sgd', 'integrator')
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    field_validator,
    model_validator,
)

from closedloop.errors import ShapeError


def plant_matrices(A: Any, B: Any, C: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C) as float64 matrices, checked: A n x n, B n x m, C p x n, none empty, all
    finite (what linear plants and ``plant.kind: linear`` configs accept).

    Raises
    ------
    ShapeError
        Naming the matrix that does not fit.

    Example
    -------
    >>> [m.shape for m in plant_matrices([[1, 1], [0, 1]], [[0], [1]], [[1, 0]])]
    [(2, 2), (2, 1), (1, 2)]
    """
    matrices = []
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        try:
            matrices.append(np.atleast_2d(np.asarray(matrix, dtype=np.float64)))
        except (ValueError, TypeError):
            raise ShapeError(f"{name} is not a rectangular matrix of numbers") from None
    A, B, C = matrices
    n = A.shape[0]
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        if matrix.ndim != 2 or 0 in matrix.shape:
            raise ShapeError(f"{name} must be a non-empty matrix, got shape {matrix.shape}")
    if A.shape != (n, n):
        raise ShapeError(f"A must be square, got shape {A.shape}")
    if B.shape[0] != n:
        raise ShapeError(f"B must have {n} rows to match A, got shape {B.shape}")
    if C.shape[1] != n:
        raise ShapeError(f"C must have {n} columns to match A, got shape {C.shape}")
    for name, matrix in (("A", A), ("B", B), ("C", C)):
        if not np.all(np.isfinite(matrix)):
            raise ShapeError(f"{name} has non-finite entries")
    return A, B, C


DEVICE_PATTERN = r"^(cpu|gpu(:\d+)?|cuda(:\d+)?|auto)$"
"""What ``training.device`` accepts."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                              validate_assignment=True)


class InitSpec(_Strict):
    """How one parameter matrix is drawn.

    ``normal``: each entry ~ N(0, (gain * scale)^2); ``uniform``: U(-gain * scale, gain * scale);
    ``zeros``: all zero; ``constant``: every entry gain * scale (a readout bias that starts
    the muscles near rest: ``{distribution: constant, scale: -5}``, as MotorNet's policy
    does). ``scale`` is a number or one of ``"1/N"``, ``"1/sqrt(N)"`` with N the network size.
    """

    distribution: Literal["normal", "uniform", "zeros", "constant"] = "normal"
    scale: float | Literal["1/N", "1/sqrt(N)"] = "1/sqrt(N)"
    gain: float = 1.0

    def resolve_scale(self, size: int) -> float:
        """The numeric scale for a network of ``size`` units."""
        if self.scale == "1/N":
            return 1.0 / size
        if self.scale == "1/sqrt(N)":
            return 1.0 / math.sqrt(size)
        return float(self.scale)


PlantParameter = float | int | bool | str | list[float] | list[list[float]]
"""What ``plant.params`` values may be (numbers, flags, names, vectors, matrices)."""

LINEAR_KINDS = ("integrator", "point_mass_2d", "linear")
"""Plant kinds given by matrices; every other kind is a nonlinear plant with ``params``."""


class SensorConfig(_Strict):
    """One sensor of the plant (a group of its outputs, or one output): its feedback delay
    in steps and the standard deviation of the Gaussian noise added to what it senses
    (before the delay). Unset values are the plant's ``delay`` and
    ``observation_noise_std``.

    Example
    -------
    >>> SensorConfig(delay=5).model_dump()
    {'delay': 5, 'noise_std': None}
    """

    delay: int | None = Field(None, ge=0, le=10_000)
    noise_std: float | None = Field(None, ge=0, le=1e6)


class PlantConfig(_Strict):
    """The plant (science 1.1, 9) and the sensors the agent reads it through.

    Linear kinds: ``integrator`` (``order``, ``n_inputs``, ``n_observed``), ``point_mass_2d``
    (two double integrators, positions observed), ``linear`` (the user's ``A``, ``B``, ``C``,
    nested lists, column-vector maths). Nonlinear kinds: ``pendulum``, ``two_link_arm``,
    ``point_mass`` (with drag and a curl field), ``muscle_arm`` (six Hill muscles), or a kind
    registered with ``closedloop.register_plant``; their constants go in ``params``
    (docs/plants.md lists them). ``dt``: None means the kind's default (1.0 for the linear kinds).

    Sensor options (any kind): ``observed`` (indices of the plant's outputs the agent reads),
    ``delay`` (feedback delay in steps), ``observation_noise_std`` and ``motor_noise_std``
    (additive Gaussian noise on the observation and on the command). ``sensors`` gives
    sensors a delay and a noise of their own, as ``{name: {delay: k, noise_std: s}}`` (both
    optional; unset, ``delay`` and ``observation_noise_std``): a name is a group of outputs
    the plant defines (its ``sensor_groups``: the ``muscle_arm``'s ``proprioception``, its
    12 fibre lengths and velocities, and ``vision``, the hand's 2 coordinates) or one of its
    outputs (its ``output_names``; ``y0``, ``y1``, ... for the linear kinds); an output's own
    entry overrides its group's, and every output named must be observed. An unknown name
    is refused with the names allowed. Noise is added when sensed, before the delay, as in
    MotorNet: ``sensors: {proprioception: {delay: 2, noise_std: 0.001}, vision: {delay: 7,
    noise_std: 0.001}}`` on the muscle arm.
    """

    kind: str = Field("integrator", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    order: int = Field(2, ge=1, le=64)
    n_inputs: int = Field(1, ge=1, le=64)
    n_observed: int = Field(1, ge=1, le=64)
    dt: float | None = Field(None, gt=0, le=1e3)
    A: list[list[float]] | None = None
    B: list[list[float]] | None = None
    C: list[list[float]] | None = None
    params: dict[str, PlantParameter] = Field(default_factory=dict)
    process_noise_std: float = Field(0.0, ge=0, le=1e6)
    clamp: float | None = Field(None, gt=0)
    observed: list[int] | None = Field(None, min_length=1)
    delay: int = Field(0, ge=0, le=10_000)
    observation_noise_std: float = Field(0.0, ge=0, le=1e6)
    motor_noise_std: float = Field(0.0, ge=0, le=1e6)
    sensors: dict[str, SensorConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_kind(self) -> PlantConfig:
        if self.kind == "linear":
            if self.A is None or self.B is None or self.C is None:
                raise ValueError("plant.kind 'linear' needs plant.A, plant.B and plant.C")
            try:
                plant_matrices(self.A, self.B, self.C)
            except ShapeError as exc:
                raise ValueError(f"plant.{exc}") from None
        elif self.A is not None or self.B is not None or self.C is not None:
            raise ValueError("plant.A, plant.B and plant.C are for plant.kind 'linear'")
        elif self.kind == "integrator":
            if self.n_inputs > self.order or self.n_observed > self.order:
                raise ValueError("plant.n_inputs and plant.n_observed must be <= plant.order")
        if self.params and self.kind in LINEAR_KINDS:
            raise ValueError(f"plant.params are for nonlinear kinds; plant.kind "
                             f"'{self.kind}' is set by its own fields")
        return self


AGENT_KIND_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"
"""What ``agent.kind`` (and ``plant.kind``) may be: a name."""


class AgentConfig(_Strict):
    """The controller (science 1.2): what every agent kind's config has.

    ``kind`` names the agent; each kind's own fields (``size``, ``activation``, ``rank``,
    ``hidden_sizes``, ...) live in its config class, a subclass of this one defined next to
    the agent it builds (:mod:`closedloop.core.agents`; the sections below list each
    kind's), so each kind validates its own fields and a kind a user registers brings its
    own. :func:`agent_config` picks the class from ``kind``; a run's ``agent`` section is
    validated the same way. ``--set agent.kind=...`` on a preset of another kind keeps the
    preset's fields the new kind has and drops the others.

    ``learned_std`` adds the parameter ``log_std`` (one per output, initially 0) for
    black-box training: the Gaussian policy's standard deviation is
    ``training.exploration_std * exp(log_std)``, learned with the rest. ``init`` and
    ``trainable`` are keyed by parameter name (the kind's :meth:`parameter_names`).

    A subclass adds fields and, where it names its parameters, overrides
    :meth:`parameter_names`; :meth:`arguments` says how its fields become the agent's
    keyword arguments; a kind whose parameters determine the four order parameters of a
    rank-1 network (science 3.1) overrides :meth:`order_parameters`.

    Example
    -------
    >>> config = agent_config({"kind": "gru", "size": 8, "trainable": {"W_hn": False}})
    >>> type(config).__name__, config.size, config.frozen()
    ('GRUConfig', 8, frozenset({'W_hn'}))
    """

    kind: str = Field("rnn", pattern=AGENT_KIND_PATTERN)
    learned_std: bool = False
    init: dict[str, InitSpec] = Field(default_factory=dict)
    trainable: dict[str, bool] = Field(default_factory=dict)

    def parameter_names(self) -> tuple[str, ...] | None:
        """The names ``init`` and ``trainable`` may use (None: not checked here)."""
        return None

    def arguments(self) -> dict[str, Any]:
        """The kind's own fields as keyword arguments of its agent class (lists as tuples:
        an agent is a hashed, static argument of compiled code)."""
        return {name: _hashable(getattr(self, name)) for name in type(self).model_fields
                if name not in AgentConfig.model_fields}

    def frozen(self) -> frozenset[str]:
        """Names of the parameters ``trainable`` freezes."""
        return frozenset(name for name, flag in self.trainable.items() if not flag)

    def order_parameters(self, params: Mapping[str, Any]) -> dict[str, float] | None:
        """The order parameters s_zm, s_zu, s_vm, s_vu of ``params`` (science 3.1), or None
        for a kind that has none (this default)."""
        return None

    def has_order_parameters(self) -> bool:
        """Whether :meth:`order_parameters` is defined for this config."""
        return type(self).order_parameters is not AgentConfig.order_parameters

    @model_validator(mode="after")
    def _check_names(self) -> AgentConfig:
        allowed = self.parameter_names()
        if allowed is not None and self.learned_std:
            allowed = (*allowed, "log_std")
        for section in ("init", "trainable"):
            for name in getattr(self, section):
                if allowed is not None and name not in allowed:
                    raise ValueError(
                        f"agent.{section}.{name}: unknown parameter for agent.kind "
                        f"'{self.kind}' (allowed: {', '.join(allowed)}; "
                        f"agent.{section}={{}} clears a preset's)"
                    )
        return self


class RegisteredAgentConfig(AgentConfig):
    """The config of a registered agent kind that brings no config class of its own: its
    class is built as ``cls(n_inputs=..., n_outputs=..., size=size, **params)``.

    Example
    -------
    >>> RegisteredAgentConfig(kind="mine", size=4, params={"gain": 2.0}).arguments()
    {'size': 4, 'gain': 2.0}
    """

    size: int = Field(100, ge=1, le=100_000)
    params: dict[str, float | int | bool | str | list[float] | list[int]] = Field(
        default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """``size`` and the ``params``."""
        return {"size": self.size, **{k: _hashable(v) for k, v in self.params.items()}}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def agent_config_class(kind: str) -> type[AgentConfig]:
    """The config class of agent kind ``kind``.

    Kinds live with their agents: the agent registry (:data:`closedloop.core.agents.AGENTS`:
    the built-ins, kinds registered with ``closedloop.register_agent`` and entry points of
    ``closedloop.agents``) is asked, as for a plug-in, and a class without a config class of
    its own (``config_class``, defined by the class itself, not inherited) gets
    :class:`RegisteredAgentConfig`.

    Raises
    ------
    ConfigError
        For a kind no registry knows, listing the kinds allowed.

    Example
    -------
    >>> agent_config_class("lowrank").__name__
    'LowRankConfig'
    """
    from importlib import import_module

    cls = import_module("closedloop.core.agents").AGENTS.get(kind)
    return vars(cls).get("config_class", RegisteredAgentConfig)


def agent_config(data: Mapping[str, Any] | AgentConfig | None = None, /, **fields: Any
                 ) -> AgentConfig:
    """An agent's config of any kind, validated by its kind's class (``kind`` defaults to
    ``rnn``); keyword arguments are fields.

    Raises
    ------
    ConfigError
        For an unknown kind; pydantic's ``ValidationError`` for fields the kind refuses.

    Example
    -------
    >>> agent_config(kind="lowrank", size=5, activation="linear").rank
    1
    """
    if isinstance(data, AgentConfig):
        data = data.model_dump()
    merged = {**(data or {}), **fields}
    kind = merged.get("kind", "rnn")
    if not isinstance(kind, str):
        return AgentConfig.model_validate(merged)      # the base refuses the kind
    return agent_config_class(kind).model_validate(merged)


_FLAT_AGENT_FIELDS = frozenset({
    "kind", "size", "activation", "dt", "tau", "bias", "output_bias", "rank", "random_gain",
    "prescribed_overlap", "gain", "overlaps", "hidden_sizes", "learned_std", "params", "init",
    "trainable"})
"""The agent section's fields when one class held every kind's: what run files written then
carry (a name outside it is not dropped, so that a misspelt field is still refused)."""


def stored_agent_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """An agent section as run files written before agent kinds had config classes of their
    own stored it (every kind's fields, those of other kinds at values the builder ignored)
    reduced to its kind's fields; a section of the current format passes unchanged.

    Example
    -------
    >>> stored_agent_fields({"kind": "mlp", "size": 100, "dt": 1.0, "hidden_sizes": [8]})
    {'kind': 'mlp', 'hidden_sizes': [8]}
    """
    kind = data.get("kind", "rnn")
    if not isinstance(kind, str):
        return dict(data)
    fields = agent_config_class(kind).model_fields
    return {key: value for key, value in data.items()
            if key in fields or key not in _FLAT_AGENT_FIELDS}


class TaskConfig(_Strict):
    """What the closed loop must do: regulate to the plant's target (0 for linear plants),
    track a reference (science 1.4, 6), or reach (science 9): from the plant's operating point
    (plus offsets within ``initial_state_range``) to one of ``n_targets`` targets on a circle
    of ``target_radius`` around it, and with ``centre_target`` also the operating point itself
    (a trial to hold still there, which trains the loop at the point its spectrum is read at);
    the agent reads the target after its observation; the test set visits each target in
    turn. With ``go_cue`` = [earliest, latest] (seconds) a trial has a delay period: the
    target is shown from the start, a go cue (a third reference input, 0 then 1) comes at a
    uniformly drawn time, and the hand is charged for leaving the start before it and for
    missing the target after it; a ``catch_fraction`` of the trials has no go cue (hold still
    throughout). The test set's cue comes at the middle of the range, without catch
    trials."""

    kind: Literal["regulation", "tracking", "reaching"] = "regulation"
    steps: int = Field(50, ge=1, le=1_000_000)
    batch_size: int = Field(100, ge=1, le=1_000_000)
    initial_state_range: float = Field(1.0, ge=0, le=1e6)
    frequencies: list[list[float]] = Field(default_factory=lambda: [[0.1, 0.3], [0.2, 0.4]])
    amplitude: float = Field(2.31, ge=0, le=1e6)
    ramp_time: float = Field(1.0, ge=0, le=1e6)
    n_targets: int = Field(8, ge=1, le=10_000)
    target_radius: float = Field(1.0, gt=0, le=1e6)
    centre_target: bool = True
    go_cue: list[float] | None = None
    catch_fraction: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _check_go_cue(self) -> TaskConfig:
        cue = self.go_cue
        if cue is not None and (len(cue) != 2 or not all(math.isfinite(t) for t in cue)
                                or not 0 <= cue[0] <= cue[1]):
            raise ValueError("task.go_cue must be [earliest, latest] go-cue times in seconds, "
                             "0 <= earliest <= latest")
        if (cue is not None or self.catch_fraction) and self.kind != "reaching":
            raise ValueError("task.go_cue and task.catch_fraction are for task.kind reaching")
        return self

    @model_validator(mode="after")
    def _check_frequencies(self) -> TaskConfig:
        rows = self.frequencies
        if not rows or len({len(r) for r in rows}) != 1 or not rows[0]:
            raise ValueError("task.frequencies must be a non-empty rectangular list of lists "
                             "(one row per tracked dimension)")
        if not all(math.isfinite(f) and 0 < f <= 1e6 for row in rows for f in row):
            raise ValueError("task.frequencies must be positive finite numbers")
        return self


class LossConfig(_Strict):
    """The closed-loop objective (science 1.4): ``kind`` names a cost
    (:mod:`closedloop.core.costs`; users register their own with ``closedloop.register_cost``).

    ``paper_di``: sum_t [mean_{batch,dims} x_t^2 + control_cost * sum_batch u_t^2] (the
    authors' double-integrator loss); ``mean_state``: mean_{t,dims,batch} x_t^2 +
    control_cost * mean_batch sum_t u_t^2 (the low-rank loss); ``per_sample``:
    mean_batch sum_t [state_weight |x_t|^2 + control_cost |u_t|^2] (a clean LQR-style
    parametrisation); these three need ``task.kind: regulation``. ``tracking``: science 6
    (``task.kind: tracking``, no control cost); ``reaching`` (``task.kind: reaching``):
    mean_{batch,t} |p_t - target|^2 + control_cost * mean_{batch,t} |u_t|^2 with p the
    plant's effector position.

    Any kind adds, when set, ``effort_cost`` * mean_{batch,t} sum_muscles e_t, the plant's
    muscle effort e = (a_i F_max,i / sum_j F_max,j)^2 after each command (a plant with
    muscles: ``muscle_arm``), and ``hidden_cost`` * mean_{batch,t,units} h_t^2, the agent's
    hidden activity; neither is part of the test loss (REINFORCE and node perturbation
    refuse ``hidden_cost``: their estimates have no path for it).
    """

    kind: str = Field("paper_di", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    control_cost: float = Field(0.0, ge=0, le=1e12)
    state_weight: float = Field(1.0, ge=0, le=1e12)
    effort_cost: float = Field(0.0, ge=0, le=1e12)
    hidden_cost: float = Field(0.0, ge=0, le=1e12)


class TrainingConfig(_Strict):
    """Optimiser and protocol (science 1.5, 2).

    ``mode`` names the learning rule (:mod:`closedloop.training.rules`; users register their
    own with ``closedloop.register_rule``): ``closed`` (backpropagation through the plant),
    ``open_white_noise`` (student imitates a teacher on white-noise inputs),
    ``open_teacher_plant`` (the teacher drives the plant; the student imitates it on the same
    observations), ``node_perturbation`` (Gaussian perturbations of every hidden unit and
    output of standard deviation ``exploration_std``, the change of the episode's cost
    correlated with them; no gradient flows through the plant or through time),
    ``black_box`` (the plant is a black box: no gradient flows through it; ``estimator``
    ``reinforce`` (also ``mode: reinforce``), a Gaussian policy of
    standard deviation ``exploration_std`` around the agent's output, the cost to go as the
    return and as the ``baseline`` the batch mean per step (``batch_mean``), none, or
    ``value``: a value readout of the agent's inputs and hidden state (with their squares and
    a cubic in time) learned by ridge regression on each batch, cross-fitted between two
    halves of the batch so that it stays unbiased (needs ``task.batch_size`` >= 2); or
    ``es`` (also ``mode: es``), antithetic evolution strategies: ``population`` pairs of
    parameter perturbations of standard deviation ``es_std`` per update, costs replaced by
    their centred ranks with ``rank_shaping``; both feed the configured optimiser and
    clipping). ``device``: ``cpu``, ``gpu`` (``gpu:N`` for the N-th; ``cuda`` is the same)
    or ``auto`` (JAX's default device: a GPU when there is one). ``devices``: how many
    devices of that platform the training uses. Runs trained together (``--seeds``) whose
    number it divides are spread by members (each device trains its share of them, each as
    on one device); otherwise one run's batch is split over them (data parallelism: each
    computes the loss and gradient of its part, the parts are summed, and every device takes
    the same optimiser step), and it must divide ``task.batch_size``. On a CPU the command
    line exposes one device per core. A learning rule that compares a batch's episodes with
    each other (``black_box``, ``es``, ``node_perturbation``) does not split its batch: a
    single run of it trains on one device.
    """

    mode: str = Field("closed", pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")
    estimator: Literal["reinforce", "es"] = "reinforce"
    exploration_std: float = Field(0.1, gt=0, le=1e6)
    baseline: Literal["batch_mean", "value", "none"] = "batch_mean"
    population: int = Field(32, ge=1, le=100_000)
    es_std: float = Field(0.02, gt=0, le=1e6)
    rank_shaping: bool = True
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1e-2, gt=0, le=1e3)
    clip_norm: float | None = Field(1.0, gt=0)
    epochs: int = Field(1000, ge=0, le=10_000_000)
    initial_epoch_no_update: bool = True
    zero_first_control: bool = True
    input_noise_std: float = Field(1.0, ge=0, le=1e6)
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field("cpu", pattern=DEVICE_PATTERN)
    devices: int = Field(1, ge=1, le=4096)


GAIN_FIT_ON_TEST_SET = "test_set"
"""The value of ``evaluation.gain_fit_states`` that fits the effective gains on the test set
(the paper's estimate, and what every run file written before the field existed means)."""

STORED_BEFORE_GAIN_FIT = {"gain_fit_states": GAIN_FIT_ON_TEST_SET}
"""What a stored ``evaluation`` section without ``gain_fit_states`` (a run file written before
the field existed) means: its gains were fitted on the test set. Readers of stored configs
fill it in (:func:`stored_evaluation`); presets and config files get the new default."""


class EvaluationConfig(_Strict):
    """The held-out closed-loop test set (science 1.4: 10 states from U(-1, 1)^n_x, or 10
    reference draws for tracking; drawn from ``test_seed``, the same for every run seed) on
    which the test loss is computed every epoch, and the initial states on which the effective
    gains (science 5, regulation tasks) are fitted every epoch. Neither rollout has process
    noise; both run ``test_steps`` steps, and the gain fit drops the first (u_0 = 0).

    ``gain_fit_states``: how many initial states the least-squares gains are fitted on (their
    closed-loop rollouts), drawn once in [-a, a]^n_x, a = ``gain_fit_state_range`` (None: the
    test set's ``initial_state_range``), from ``gain_fit_seed`` (the same for every run seed):
    ``gain_fit_sampling`` ``sobol`` takes a scrambled Sobol' set (low discrepancy: its
    estimate converges much faster than that of independent draws; powers of 2 balance it
    best), ``uniform`` independent uniform draws as for the test set. ``test_set`` fits
    them on the test set's rollouts instead: the paper's 10-state estimate, and what every run
    file written before this field existed recorded (such files read as ``test_set``).

    Why the default (128 Sobol' states): a tanh network is not a linear controller, so its
    effective gains depend on the states they are fitted on. For trained di-tanh-closed
    networks (seeds 0-9, last epoch) the default set's gains are within 0.25 % of those on a
    90,000-state grid of [-1, 1]^2, while the 10 test states are 19-20 % off in every seed
    (seed 0: k = (-0.447, -1.189) on the test set, (-0.360, -0.993) on the default set,
    (-0.360, -0.996) on the grid); 128 independent uniform states scatter by about 3 % (rms),
    1024 by 1 %. The default costs about 1.4 ms per epoch at N = 100 on a 2-core CPU (+26 %
    of the compiled epoch, +11 % of a whole run). docs/science.md (gain space) has the
    measurements.

    ``test_targets`` (reaching tasks): how many directions on the target circle the test set
    visits, each in turn (None: the task's ``n_targets``); e.g. 24 directions for a task
    trained on 8.

    ``probe_phases`` (tracking tasks): every epoch, each probe frequency is tracked alone
    from this many evenly spaced phases and its error recorded (the metric
    ``probe_errors``, science 6); 3 or more give exactly the average over a random phase for
    a linear loop.
    """

    test_size: int = Field(10, ge=1, le=100_000)
    initial_state_range: float = Field(1.0, ge=0, le=1e6)
    test_steps: int | None = Field(None, ge=2, le=1_000_000)
    test_seed: int = Field(20250513, ge=0, lt=2**63)
    gain_fit_states: int | Literal["test_set"] = 128
    gain_fit_sampling: Literal["sobol", "uniform"] = "sobol"
    gain_fit_state_range: float | None = Field(None, ge=0, le=1e6)
    gain_fit_seed: int = Field(20250514, ge=0, lt=2**63)
    probe_phases: int = Field(4, ge=1, le=64)
    test_targets: int | None = Field(None, ge=1, le=10_000)

    @field_validator("gain_fit_states", mode="before")
    @classmethod
    def _check_gain_fit_states(cls, value: Any) -> Any:
        counted = isinstance(value, int) and not isinstance(value, bool)
        if value == GAIN_FIT_ON_TEST_SET or (counted and 1 <= value <= 100_000):
            return value
        raise ValueError("must be a number of initial states between 1 and 100000, or "
                         f"'{GAIN_FIT_ON_TEST_SET}' (fit on the test set)")

    @property
    def gains_on_test_set(self) -> bool:
        """Whether the effective gains are fitted on the test set.

        Example
        -------
        >>> EvaluationConfig().gains_on_test_set, EvaluationConfig(
        ...     gain_fit_states="test_set").gains_on_test_set
        (False, True)
        """
        return self.gain_fit_states == GAIN_FIT_ON_TEST_SET

    @property
    def gain_fit_range(self) -> float:
        """a of the U(-a, a)^n_x the gain-fit states are drawn from."""
        if self.gain_fit_state_range is None:
            return self.initial_state_range
        return self.gain_fit_state_range


def stored_evaluation(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config mapping with what its ``evaluation`` section meant when it was written:
    without ``gain_fit_states`` (written before the field existed) its gains were fitted on
    the test set (:data:`STORED_BEFORE_GAIN_FIT`). Other mappings come back unchanged (a
    copy where something is filled in).

    Example
    -------
    >>> stored_evaluation({"evaluation": {"test_size": 10}})["evaluation"]
    {'test_size': 10, 'gain_fit_states': 'test_set'}
    >>> stored_evaluation({"evaluation": {"gain_fit_states": 500}})["evaluation"]
    {'gain_fit_states': 500}
    """
    section = data.get("evaluation", {})
    if not isinstance(section, dict) or "gain_fit_states" in section:
        return data
    return {**data, "evaluation": {**section, **STORED_BEFORE_GAIN_FIT}}


class RecordingConfig(_Strict):
    """What is written per epoch. ``snapshot_every``: ``auto`` records parameters every epoch
    for N <= 256 and every 10th epoch otherwise (the last epoch always)."""

    snapshot_every: int | Literal["auto"] = "auto"
    segment_epochs: int = Field(20, ge=1, le=100_000)

    def snapshot_interval(self, size: int) -> int:
        """Epochs between parameter snapshots for a network of ``size`` units."""
        if self.snapshot_every == "auto":
            return 1 if size <= 256 else 10
        return max(1, self.snapshot_every)


class PerturbationConfig(_Strict):
    """A change of the plant in the middle of training (the motor-adaptation experiment):
    from update ``epoch`` on, the fields in ``plant`` replace the plant's (``params`` are
    merged key by key), e.g. ``{epoch: 1000, plant: {params: {curl: 4.0}}}`` switches a curl
    field on. The plant's state, inputs, observation and operating point must stay the same;
    from that epoch on the loss, the test loss and the spectrum are those of the new plant."""

    epoch: int = Field(ge=1, le=10_000_000)
    plant: dict[str, Any]


class RunConfig(_Strict):
    """Everything that defines a run. ``teacher`` and ``init_from`` record where a teacher and
    initial weights came from (``RUN@EPOCH`` or ``gain:...``); the arrays themselves are
    stored in the run file. ``perturbation`` changes the plant from an epoch on."""

    preset: str = "custom"
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63)
    plant: PlantConfig = Field(default_factory=PlantConfig)
    agent: SerializeAsAny[AgentConfig] = Field(default_factory=lambda: agent_config())
    task: TaskConfig = Field(default_factory=TaskConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    teacher: str | None = None
    init_from: str | None = None
    perturbation: PerturbationConfig | None = None

    @field_validator("agent", mode="before")
    @classmethod
    def _agent_of_its_kind(cls, value: Any) -> Any:
        if isinstance(value, AgentConfig) and type(value) is not AgentConfig:
            return value
        if isinstance(value, (Mapping, AgentConfig)):
            return agent_config(value)
        return value

    def plant_at(self, epoch: int) -> PlantConfig:
        """The plant training uses at update ``epoch`` (the perturbed one from its epoch on).

        Example
        -------
        >>> config = RunConfig(plant=PlantConfig(kind="point_mass"),
        ...                    perturbation={"epoch": 5, "plant": {"params": {"curl": 4.0}}})
        >>> config.plant_at(4).params, config.plant_at(5).params
        ({}, {'curl': 4.0})
        """
        if self.perturbation is None or epoch < self.perturbation.epoch:
            return self.plant
        data = self.plant.model_dump(mode="json")
        change = dict(self.perturbation.plant)
        data["params"] = {**data["params"], **change.pop("params", {})}
        return PlantConfig.model_validate({**data, **change})

    @model_validator(mode="after")
    def _check_combination(self) -> RunConfig:
        if self.perturbation is not None:
            try:
                self.plant_at(self.perturbation.epoch)
            except ValueError as exc:
                first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise ValueError(f"perturbation.plant{'.' + where if where else ''}: "
                                 f"{first['msg']}") from None
        return self

    def to_json(self) -> str:
        """The config as one JSON string (what run files store)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @property
    def test_steps(self) -> int:
        """Steps of the held-out evaluation rollout (defaults to the task's episode length)."""
        return self.evaluation.test_steps or self.task.steps
