"""Where a run's config, initial weights and teacher come from: a preset, a config file or a
run file to repeat (:class:`TrainingSource`), and the references ``RUN@EPOCH``, ``gain:...``
and ``lqr`` (:func:`training_inputs` resolves them for one config).

* ``RUN@EPOCH`` (``--init-from``, ``--teacher``): the parameters of run file RUN after EPOCH
  (an integer or ``last``; a teacher defaults to ``last``, initial weights to ``0``).
* ``gain:K`` (``--teacher``): a static gain u = K x; K is ``k1,k2`` for one control, rows
  separated by ``;`` for several.
* ``lqr`` or ``lqr:R`` (``--teacher``): u = -K x with K the infinite-horizon LQR gain of the
  plant for Q = I and R = R I (default R = 1).

Example
-------
>>> parse_run_reference("runs/closed.h5@12")
('runs/closed.h5', 12)
>>> parse_gain("gain:-0.5,-1")
[[-0.5, -1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from closedloop.analysis.gains import lqr_gain
from closedloop.config import (
    AgentConfig,
    RunConfig,
    agent_config,
    is_config_file,
    preset_dict,
    resolve_config,
)
from closedloop.errors import ConfigError
from closedloop.runs.store import Run, Teacher, load_run

if TYPE_CHECKING:
    from closedloop.core.plants import LinearPlant


@dataclass(frozen=True)
class TrainingInputs:
    """What one run starts from: its config (``teacher`` and ``init_from`` filled in), the
    initial parameters and the teacher (None: the config's own initialisation, no teacher).
    ``defaulted_init`` says that ``init_from`` was not given and is the teacher run's epoch 0.
    """

    config: RunConfig
    initial: dict[str, np.ndarray] | None = None
    teacher: Teacher | None = None
    defaulted_init: bool = False


def training_inputs(config: RunConfig, *, label: str | None = None, load: bool = True,
                    default_init: bool = True) -> TrainingInputs:
    """Check ``config.teacher`` against the config's learning rule, default ``init_from`` to
    the teacher run's epoch 0 (``default_init``; not for a static-gain or LQR teacher), and
    load both references (``load``; a resumed run reads them from its own folder instead).
    This is what :func:`closedloop.train` and ``closedloop train`` do with a config that names
    a teacher or initial weights.

    Raises
    ------
    ConfigError
        When the rule needs a teacher and none is named, or names one it does not use; when a
        reference cannot be read.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> inputs = training_inputs(load_preset("di-tanh-open").model_copy(
    ...     update={"teacher": "gain:-0.4,-1.2"}))
    >>> inputs.teacher.parameters["K"], inputs.initial
    (array([[-0.4, -1.2]]), None)
    """
    from closedloop.core.plants import plant_from_config
    from closedloop.training.rules import rule_for

    label = label or config.preset
    teacher = config.teacher
    rule = rule_for(config)
    if rule.needs_teacher and teacher is None:
        raise ConfigError(f"'{label}' trains open loop and needs --teacher RUN[@EPOCH] (or "
                          "gain:K / lqr for a teacher-driven plant)")
    if not rule.needs_teacher and teacher is not None:
        how = rule.description or f"with training.mode '{config.training.mode}'"
        raise ConfigError(f"'{label}' trains {how}; --teacher is for open-loop configs")
    defaulted = (default_init and config.init_from is None and teacher is not None
                 and not teacher.startswith(("gain:", "lqr")))
    if defaulted:
        assert teacher is not None
        config = config.model_copy(
            update={"init_from": f"{parse_run_reference(teacher)[0]}@0"})
    if not load:
        return TrainingInputs(config, defaulted_init=defaulted)
    initial = (load_initial_parameters(config.init_from)[0]
               if config.init_from is not None else None)
    source = (load_teacher(teacher, plant_from_config(config.plant))
              if teacher is not None else None)
    return TrainingInputs(config, initial, source, defaulted)


class TrainingSource:
    """Where ``closedloop train`` takes a config from: a preset, a config file, or a run file
    to repeat (its teacher and initial weights come along unless others are named).

    Example
    -------
    >>> source = TrainingSource.of("di-tanh-closed")
    >>> source.label, source.resolve(3, ["training.epochs=5"]).config.training.epochs
    ('di-tanh-closed', 5)
    """

    def __init__(self, data: dict[str, Any], label: str, file: str | None = None,
                 run: Run | None = None) -> None:
        self.data, self.label, self.file, self.run = data, label, file, run

    @classmethod
    def of(cls, preset: str | None = None, config_from: str | Path | None = None
           ) -> TrainingSource:
        """From a preset name or config file (``preset``), or a run file (``config_from``):
        exactly one of them."""
        if (preset is None) == (config_from is None):
            raise ConfigError("train takes a PRESET (or FILE.yaml), or --config-from RUN.h5: "
                              "exactly one of them")
        if config_from is not None:
            run = load_run(config_from)
            return cls(run.config.model_dump(mode="json"), run.config.preset, str(config_from),
                       run)
        assert preset is not None
        if is_config_file(preset):
            return cls(preset_dict(preset), Path(preset).stem, preset)
        return cls(preset_dict(preset), preset)

    def resolve(self, seed: int | None = None, settings: Sequence[str] = (),
                epochs: int | None = None, init_from: str | None = None,
                teacher: str | None = None, resume: bool = False) -> TrainingInputs:
        """The inputs of one seed (None: the source's own): ``{seed}`` in ``init_from`` and
        ``teacher`` is replaced by it; a repeated run without either keeps its own; on
        ``resume`` nothing is loaded (the unfinished run holds it)."""
        shown = str(self.data.get("seed", 0) if seed is None else seed)
        if teacher is not None:
            teacher = teacher.replace("{seed}", shown)
        if init_from is not None:
            init_from = init_from.replace("{seed}", shown)
        repeated = self.run is not None and teacher is None and init_from is None
        if repeated:
            teacher, init_from = self.data.get("teacher"), self.data.get("init_from")
        data = {k: v for k, v in self.data.items() if k not in ("teacher", "init_from")}
        config = resolve_config(data, list(settings), seed, epochs, source=self.file)
        config = config.model_copy(update={"teacher": teacher, "init_from": init_from})
        inputs = training_inputs(config, label=self.label, load=not (resume or repeated),
                                 default_init=not repeated)
        if repeated and not resume:          # the run file holds what the run started from
            assert self.run is not None
            initial = self.run.parameters(0) if init_from is not None else None
            return TrainingInputs(inputs.config, initial, self.run.teacher)
        return inputs


def parse_run_reference(text: str, default_epoch: int | str = "last") -> tuple[str, int | str]:
    """Split ``RUN[@EPOCH]`` into the path and an epoch (int or ``"last"``)."""
    path, sep, epoch = text.rpartition("@")
    if not sep:
        return text, default_epoch
    if not path:
        raise ConfigError(f"'{text}' names no run file before '@'")
    if epoch == "last":
        return path, "last"
    try:
        value = int(epoch)
    except ValueError:
        raise ConfigError(f"'{text}': the epoch after '@' must be an integer or 'last'") from None
    if value < 0:
        raise ConfigError(f"'{text}': the epoch must be >= 0")
    return path, value


def parse_gain(text: str) -> list[list[float]]:
    """Parse ``gain:k1,k2[;k3,k4...]`` into the rows of K."""
    body = text.removeprefix("gain:")
    try:
        rows = [[float(v) for v in row.split(",")] for row in body.split(";") if row.strip()]
    except ValueError:
        raise ConfigError(f"'{text}': a gain is gain:k1,k2[;k3,k4...] with numbers") from None
    if not rows or len({len(r) for r in rows}) != 1:
        raise ConfigError(f"'{text}': a gain needs rows of equal length")
    if not all(np.isfinite(v) for row in rows for v in row):
        raise ConfigError(f"'{text}': gains must be finite")
    return rows


def load_initial_parameters(text: str) -> tuple[dict[str, np.ndarray], AgentConfig]:
    """Parameters (and the agent config that made them) from ``RUN@EPOCH`` (default @0)."""
    path, epoch = parse_run_reference(text, default_epoch=0)
    run = load_run(path)
    return run.parameters(epoch), run.config.agent


def load_teacher(text: str, plant: LinearPlant) -> Teacher:
    """A teacher from ``RUN[@EPOCH]``, ``gain:K`` or ``lqr[:R]`` for ``plant``."""
    if text.startswith("gain:"):
        gain = np.array(parse_gain(text))
        if gain.shape != (plant.n_inputs, plant.n_states):
            raise ConfigError(f"'{text}': K must be {plant.n_inputs} x {plant.n_states} for "
                              f"this plant, got {gain.shape[0]} x {gain.shape[1]}")
        return _static_teacher(text, gain)
    if text == "lqr" or text.startswith("lqr:"):
        weight = 1.0
        if text.startswith("lqr:"):
            try:
                weight = float(text[4:])
            except ValueError:
                raise ConfigError(f"'{text}': lqr:R needs a number R > 0") from None
            if not weight > 0:
                raise ConfigError(f"'{text}': lqr:R needs a number R > 0")
        gain = -lqr_gain(plant.A, plant.B, np.eye(plant.n_states),
                         weight * np.eye(plant.n_inputs))
        return _static_teacher(text, gain)
    path, epoch = parse_run_reference(text, default_epoch="last")
    run = load_run(path)
    parameters = run.parameters(epoch)
    source = f"{path}@{epoch if epoch != 'last' else int(run.snapshot_epochs[-1])}"
    return Teacher(source, run.config.agent.model_dump_json(), parameters)


def _static_teacher(source: str, gain: np.ndarray) -> Teacher:
    config = agent_config(kind="static_gain", gain=gain.tolist())
    return Teacher(source, config.model_dump_json(), {"K": gain})
