"""The rollout: one generic scan over a step function, and small step builders for the
closed loop and every open-loop variant (science 1.3, 2).

Time indexing (science 1.3), for a plant-driven rollout of T steps from x_0:

* at t = 0 the control is u_0 = 0 and the agents' hidden states are not updated (h = 0),
  when ``zero_first_control`` is on (the paper presets);
* for t >= 1 each agent reads its observation at x_t, updates h_t and outputs u_t;
* the plant steps x_{t+1} = A x_t + B u_t (+ w_t), clamped if the plant clamps (any plant
  of :class:`~closedloop.core.plants.Plant`: x_{t+1} = f(x_t, u_t, w_t)).

The returned :class:`Trajectory` holds x_0..x_T and u_0..u_{T-1}; the costs pick what they
charge. A step maps the carry (x_t, h_{t-1}, the teacher's h_{t-1}) and what step t reads
(:class:`Given`: r_t, w_t, exploration noise) to the next carry and what it emits
(:class:`Emitted`); :func:`run_loop` scans any plant-driven step over an episode, the t = 0
convention included. The step builders:

* :func:`closed_loop`: the agent drives the plant (:func:`rollout` runs it);
* :func:`teacher_driven`: a teacher drives the plant and the student reads the same
  observations (open loop);
* :func:`black_box`: the plant receives the agent's command plus exploration noise (the
  hidden units may be perturbed too), and no gradient flows through it;
* :class:`OpenLoopStep` (:func:`open_loop_rollout`): white-noise inputs replace the
  observations, there is no plant, and every agent is stepped at every t from h = 0 (no
  t = 0 special case).

:func:`one_step_map`, the map the coupled Jacobian differentiates, is composed of the two
halves of the closed-loop step (:meth:`ClosedLoopStep.react`, :meth:`ClosedLoopStep.act`).

An RNN's observation is the plant's y_t (C x_t for a linear plant, possibly delayed or noisy),
followed by the reference r_t when there is one; a static gain reads the full state x_t. The
time loop is one ``jax.lax.scan``; the rollout is a pure function, differentiated by
``jax.grad`` (gradients never reach a teacher).

Example
-------
>>> import jax.numpy as jnp
>>> from closedloop.core.agents import StaticGain
>>> from closedloop.core.plants import double_integrator
>>> gain = StaticGain(2, 1)
>>> traj = rollout(double_integrator(), gain, gain.to_params({"K": [[-0.5, -1.0]]}),
...                x0=jnp.array([[1.0, 0.0]]), steps=2, zero_first_control=False)
>>> traj.states[0].tolist(), traj.controls[0].tolist()
([[1.0, 0.0], [1.0, -0.5], [0.5, -0.5]], [[-0.5], [0.0]])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from closedloop.config import RunConfig
from closedloop.core.agents import Agent, Params, build_agent
from closedloop.core.plants import Plant, plant_from_config
from closedloop.errors import ConfigError, ShapeError


@jax.tree_util.register_dataclass
@dataclass
class Trajectory:
    """What a rollout produced (batch-first; a pytree).

    Attributes
    ----------
    states
        x_0..x_T, (batch, T+1, n_x); None for white-noise rollouts.
    controls
        The agent's u_0..u_{T-1}, (batch, T, n_u).
    teacher_controls
        The teacher's u_t, (batch, T, n_u), when there is a teacher.
    hidden
        The agent's h_0..h_{T-1}, (batch, T, N), when asked for.
    executed
        The commands the plant received, (batch, T, n_u), in a black-box rollout (the agent's
        output plus the exploration noise; ``controls`` is then the policy's mean).
    inputs
        What the agent read at t = 0..T-1 (its observation, then the reference), (batch, T,
        n_in), when asked for (at t = 0 under the paper's convention, what it would have
        read).
    """

    states: jax.Array | None
    controls: jax.Array
    teacher_controls: jax.Array | None = None
    hidden: jax.Array | None = None
    executed: jax.Array | None = None
    inputs: jax.Array | None = None


def agent_observation(agent: Agent, plant: Plant, x: jax.Array,
                      reference_t: jax.Array | None, noise_t: jax.Array | None = None
                      ) -> jax.Array:
    """What ``agent`` reads at state x: the plant's observation (C x for a linear plant; with
    ``noise_t``, the step's noise, for plants with observation noise), then the reference if
    any; or x for a static gain."""
    if agent.reads_state:
        return x
    y = plant.observe(x, noise_t)
    return y if reference_t is None else jnp.concatenate((y, reference_t), axis=-1)


def reference_inputs(config: RunConfig, plant: Plant) -> int:
    """How many reference inputs the agent reads after the plant's observation: the tracked
    axes (tracking), the target's two coordinates (reaching; and the go cue when the task has
    one), none (regulation).

    Raises
    ------
    ConfigError
        When the plant's effector position does not match the reference.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> config = load_preset("tracking-closed")
    >>> reference_inputs(config, plant_from_config(config.plant))
    2
    """
    task = config.task
    if task.kind == "regulation":
        return 0
    size = len(task.frequencies) if task.kind == "tracking" else 2
    if size != plant.n_effector:
        what = "task.frequencies has" if task.kind == "tracking" else "reaching targets have"
        raise ConfigError(f"{what} {size} axes but the plant's effector position has "
                          f"{plant.n_effector} (plant.kind '{config.plant.kind}')")
    return size + int(task.kind == "reaching" and task.go_cue is not None)


def build_loop(config: RunConfig) -> tuple[Plant, Agent]:
    """The plant and the agent a run's config describes (the agent reads the plant's
    observation, then the reference inputs).

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> plant, agent = build_loop(load_preset("tracking-closed"))
    >>> agent.n_inputs, agent.n_outputs
    (4, 2)
    """
    plant = plant_from_config(config.plant)
    agent = build_agent(config.agent, plant.n_outputs + reference_inputs(config, plant),
                        plant.n_inputs, plant.n_states)
    return plant, agent


Carry = tuple[Any, Any, Any]
"""(x_t, the agent's h_{t-1}, the teacher's h_{t-1}); None where there is none."""


class Given(NamedTuple):
    """What a step reads besides its carry (batch-first over a whole episode, or one step's
    slice); None where absent.

    Attributes
    ----------
    reference
        r_t, appended to an RNN's observation.
    noise
        The plant's noise w_t (from its ``draw_noise``).
    exploration
        Standard normal noise on the command (black-box steps).
    nodes
        Standard normal noise on the hidden units (node perturbation).
    """

    reference: jax.Array | None = None
    noise: jax.Array | None = None
    exploration: jax.Array | None = None
    nodes: jax.Array | None = None


class Emitted(NamedTuple):
    """What one step emits: x_{t+1}, u_t, the teacher's u_t, h_t, the command the plant
    received, what the agent read; None where there is none."""

    state: jax.Array | None
    control: jax.Array
    teacher_control: jax.Array | None = None
    hidden: jax.Array | None = None
    executed: jax.Array | None = None
    inputs: jax.Array | None = None


@dataclass(frozen=True)
class ClosedLoopStep:
    """(x_t, h_{t-1}) -> (x_{t+1}, h_t): the agent reads x_t, updates h_t and outputs u_t,
    the plant steps on u_t. :meth:`react` and :meth:`act` are its two halves."""

    plant: Plant
    agent: Agent
    prepared: Params

    def react(self, x: jax.Array, hidden: jax.Array, given: Given
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The agent's half: (h_t, u_t, what it read) at state x_t from h_{t-1}."""
        observation = agent_observation(self.agent, self.plant, x, given.reference,
                                        given.noise)
        hidden, u = self.agent.step(self.prepared, hidden, observation)
        return hidden, u, observation

    def act(self, x: jax.Array, command: jax.Array, given: Given) -> jax.Array:
        """The plant's half: x_{t+1} from x_t and the command."""
        return self.plant.step(x, command, given.noise)

    def __call__(self, carry: Carry, given: Given) -> tuple[Carry, Emitted]:
        x, hidden, teacher_hidden = carry
        hidden, u, observation = self.react(x, hidden, given)
        x_next = self.act(x, u, given)
        return (x_next, hidden, teacher_hidden), Emitted(x_next, u, hidden=hidden,
                                                         inputs=observation)

    def hold(self, carry: Carry, given: Given) -> tuple[Carry, Emitted]:
        """The paper's t = 0: u_0 = 0, no hidden update (what the agent would have read is
        emitted as its input)."""
        x, hidden, teacher_hidden = carry
        zero = jnp.zeros((x.shape[0], self.plant.n_inputs), dtype=x.dtype)
        observation = agent_observation(self.agent, self.plant, x, given.reference,
                                        given.noise)
        x_next = self.act(x, zero, given)
        return (x_next, hidden, teacher_hidden), Emitted(x_next, zero, zero, hidden, zero,
                                                         observation)

    def initial(self, x0: jax.Array) -> Carry:
        """The carry at t = 0: x_0 and h = 0 (no teacher)."""
        return x0, self.agent.initial_hidden(x0.shape[0], x0.dtype), None


@dataclass(frozen=True)
class TeacherDrivenStep(ClosedLoopStep):
    """The teacher reads x_t and drives the plant; the student reads the same observations
    and its u_t is only recorded."""

    teacher: Agent | None = None
    teacher_prepared: Params | None = None

    def __call__(self, carry: Carry, given: Given) -> tuple[Carry, Emitted]:
        x, hidden, teacher_hidden = carry
        hidden, u, observation = self.react(x, hidden, given)
        teacher_hidden, u_teacher = self.teacher.step(
            self.teacher_prepared, teacher_hidden,
            agent_observation(self.teacher, self.plant, x, given.reference, given.noise))
        x_next = self.act(x, u_teacher, given)
        return (x_next, hidden, teacher_hidden), Emitted(x_next, u, u_teacher, hidden,
                                                         inputs=observation)

    def initial(self, x0: jax.Array) -> Carry:
        """x_0 and h = 0 for the student and the teacher."""
        x0, hidden, _ = super().initial(x0)
        return x0, hidden, self.teacher.initial_hidden(x0.shape[0], x0.dtype)


@dataclass(frozen=True)
class BlackBoxStep(ClosedLoopStep):
    """The plant receives u_t + std * exploration_t and no gradient flows through it or its
    states; only through the agent's own computation of u_t from what it read (what the
    score function of a policy gradient needs). With ``given.nodes`` (node perturbation),
    h_t becomes h_t + std * nodes_t and u_t is read from that perturbed state
    (``agent.output``), for agents whose output is a readout of their hidden state."""

    std: float | jax.Array = 0.0

    def __call__(self, carry: Carry, given: Given) -> tuple[Carry, Emitted]:
        x, hidden, teacher_hidden = carry
        hidden, u, observation = self.react(x, hidden, given)
        if given.nodes is not None:
            hidden = lax.stop_gradient(hidden + self.std * given.nodes)
            u = self.agent.output(self.prepared, hidden)
        command = lax.stop_gradient(u + self.std * given.exploration)
        x_next = lax.stop_gradient(self.act(x, command, given))
        return (x_next, hidden, teacher_hidden), Emitted(x_next, u, hidden=hidden,
                                                         executed=command, inputs=observation)


def closed_loop(plant: Plant, agent: Agent, params: Params) -> ClosedLoopStep:
    """The closed-loop step of ``agent`` with ``params`` on ``plant``.

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.plants import double_integrator
    >>> gain = StaticGain(2, 1)
    >>> step = closed_loop(double_integrator(), gain, gain.to_params({"K": [[-0.5, -1.0]]}))
    >>> (x, _, _), emitted = step((jnp.array([[1.0, 0.0]]), jnp.zeros((1, 0)), None), Given())
    >>> x.tolist(), emitted.control.tolist()
    ([[1.0, -0.5]], [[-0.5]])
    """
    return ClosedLoopStep(plant, agent, agent.prepare(params))


def teacher_driven(plant: Plant, agent: Agent, params: Params, teacher: Agent,
                   teacher_params: Params) -> TeacherDrivenStep:
    """The step of a teacher (no gradient reaches its parameters) driving ``plant`` while
    ``agent`` reads the same observations."""
    return TeacherDrivenStep(plant, agent, agent.prepare(params), teacher,
                             teacher.prepare(lax.stop_gradient(teacher_params)))


def black_box(plant: Plant, agent: Agent, params: Params, std: float | jax.Array
              ) -> BlackBoxStep:
    """The closed-loop step with exploration of standard deviation ``std`` and the plant
    outside the gradient (``std`` may carry a gradient: a learned exploration scale)."""
    return BlackBoxStep(plant, agent, agent.prepare(params), std)


def scan_steps(step: Callable[[Carry, Any], tuple[Carry, Emitted]], carry: Carry,
               given: Any, length: int, *, record_hidden: bool = False,
               record_inputs: bool = False) -> tuple[Carry, Emitted]:
    """``step`` scanned over ``length`` steps of ``given`` (time-major), keeping the hidden
    states and the inputs only when asked: (the last carry, the emitted arrays
    time-major)."""

    def body(carry: Carry, given_t: Any) -> tuple[Carry, Emitted]:
        carry, emitted = step(carry, given_t)
        return carry, emitted._replace(hidden=emitted.hidden if record_hidden else None,
                                       inputs=emitted.inputs if record_inputs else None)

    return lax.scan(body, carry, given, length=length)


def run_loop(step: ClosedLoopStep, *, steps: int, x0: jax.Array, given: Given | None = None,
             zero_first_control: bool = True, record_hidden: bool = False,
             record_inputs: bool = False) -> Trajectory:
    """Run a plant-driven ``step`` (any of the builders') for ``steps`` steps from ``x0``.

    Parameters
    ----------
    step
        The step, e.g. from :func:`closed_loop`, :func:`teacher_driven`, :func:`black_box`.
    steps
        Episode length T.
    x0
        Initial states (batch, n_x).
    given
        What the steps read, batch-first (batch, >= T, ...): references, plant noise,
        exploration noise (none by default).
    zero_first_control
        The paper's t = 0 convention (u_0 = 0, no hidden update).
    record_hidden, record_inputs
        Keep the agent's hidden states, and what it read (for a value baseline).

    Returns
    -------
    Trajectory
    """
    _check_start(step.plant, x0)
    given = jax.tree.map(lambda a: _time_major(a, steps), given or Given())
    carry, first = step.initial(x0), []
    if zero_first_control:
        carry, held = step.hold(carry, jax.tree.map(lambda a: a[0], given))
        given, first = jax.tree.map(lambda a: a[1:], given), [held]
    _, emitted = scan_steps(step, carry, given, steps - len(first),
                            record_hidden=record_hidden, record_inputs=record_inputs)

    def joined(name: str, start: tuple[jax.Array, ...] = ()) -> jax.Array | None:
        rest = getattr(emitted, name)
        if rest is None:
            return None
        return _batch_first(jnp.concatenate([*start, *(getattr(e, name)[None] for e in first),
                                             rest]))

    return Trajectory(states=joined("state", (x0[None],)), controls=joined("control"),
                      teacher_controls=joined("teacher_control"), hidden=joined("hidden"),
                      executed=joined("executed"), inputs=joined("inputs"))


def rollout(plant: Plant, agent: Agent, params: Params, *, steps: int, x0: jax.Array,
            reference: jax.Array | None = None, noise: jax.Array | None = None,
            zero_first_control: bool = True, record_hidden: bool = False,
            record_inputs: bool = False) -> Trajectory:
    """The closed loop of ``agent`` on ``plant`` for ``steps`` steps from ``x0``
    (:func:`run_loop` of :func:`closed_loop`).

    Parameters
    ----------
    plant
        The plant.
    agent, params
        The agent and its parameters.
    steps
        Episode length T.
    x0
        Initial states (batch, n_x).
    reference
        (batch, >= T, n_ref), appended to the RNN's observation.
    noise
        The plant's per-step noise (batch, >= T, plant.noise_size), from its
        ``draw_noise``.
    zero_first_control
        The paper's t = 0 convention (u_0 = 0, no hidden update).
    record_hidden, record_inputs
        Keep the agent's hidden states, and what it read.

    Returns
    -------
    Trajectory
    """
    return run_loop(closed_loop(plant, agent, params), steps=steps, x0=x0,
                    given=Given(reference, noise), zero_first_control=zero_first_control,
                    record_hidden=record_hidden, record_inputs=record_inputs)


@dataclass(frozen=True)
class OpenLoopStep:
    """h_{t-1} -> h_t with no plant: the agent (and the teacher) read the input y_t."""

    agent: Agent
    prepared: Params
    teacher: Agent | None = None
    teacher_prepared: Params | None = None

    def __call__(self, carry: Carry, y: jax.Array) -> tuple[Carry, Emitted]:
        _, hidden, teacher_hidden = carry
        hidden, u = self.agent.step(self.prepared, hidden, y)
        u_teacher = None
        if self.teacher is not None:
            teacher_hidden, u_teacher = self.teacher.step(self.teacher_prepared, teacher_hidden,
                                                          y)
        return (None, hidden, teacher_hidden), Emitted(None, u, u_teacher, hidden)


def open_loop_rollout(agent: Agent, params: Params, inputs: jax.Array, *, steps: int,
                      teacher: Agent | None = None, teacher_params: Params | None = None,
                      record_hidden: bool = False) -> Trajectory:
    """The agent (and a teacher, no gradient reaching it) stepped on white-noise ``inputs``
    (batch, >= T, n_in) from h = 0 at every t: no plant, no t = 0 convention.

    Example
    -------
    >>> from closedloop.core.agents import RNNAgent
    >>> agent = RNNAgent(n_inputs=1, n_outputs=1, size=3)
    >>> params = agent.init_params(jax.random.key(0))
    >>> open_loop_rollout(agent, params, jnp.ones((2, 4, 1)), steps=4).controls.shape
    (2, 4, 1)
    """
    if (teacher is None) != (teacher_params is None):
        raise ShapeError("teacher and teacher_params go together")
    _check_inputs(agent, inputs, steps)
    batch, dtype = inputs.shape[0], inputs.dtype
    step = OpenLoopStep(agent, agent.prepare(params), teacher,
                        None if teacher is None
                        else teacher.prepare(lax.stop_gradient(teacher_params)))
    carry = (None, agent.initial_hidden(batch, dtype),
             None if teacher is None else teacher.initial_hidden(batch, dtype))
    _, emitted = scan_steps(step, carry, _time_major(inputs, steps), steps,
                            record_hidden=record_hidden)
    return Trajectory(None, _batch_first(emitted.control),
                      _batch_first(emitted.teacher_control), _batch_first(emitted.hidden))


def _time_major(array: jax.Array | None, steps: int) -> jax.Array | None:
    return None if array is None else jnp.swapaxes(array[:, :steps], 0, 1)


def _batch_first(array: jax.Array | None) -> jax.Array | None:
    return None if array is None else jnp.swapaxes(array, 0, 1)


def _check_inputs(agent: Agent, inputs: jax.Array, steps: int) -> None:
    if inputs.ndim != 3 or inputs.shape[1] < steps or inputs.shape[2] != agent.n_inputs:
        raise ShapeError(f"inputs must be (batch, >= {steps}, {agent.n_inputs}), "
                         f"got {tuple(inputs.shape)}")


def _check_start(plant: Plant | None, x0: jax.Array | None) -> None:
    if plant is None or x0 is None:
        raise ShapeError("a plant-driven rollout needs a plant and x0 (or white-noise inputs)")
    if x0.ndim != 2 or x0.shape[1] != plant.n_states:
        raise ShapeError(f"x0 must be (batch, {plant.n_states}), got {tuple(x0.shape)}")


def one_step_map(plant: Plant, agent: Agent, params: Params, x: jax.Array, hidden: jax.Array,
                 reference: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The closed-loop map (x_t, h_t) -> (x_{t+1}, h_{t+1}) of the rollout for t >= 1, from
    the halves of its step: u_t = W_out h_t (+ b_out) (what the agent output when it reached
    h_t), x_{t+1} = :meth:`ClosedLoopStep.act`, then h_{t+1} = :meth:`ClosedLoopStep.react`
    at x_{t+1} (the reference, if any, appended). A static gain has no hidden state: the
    step itself, u_t = K x_t.

    ``x`` is (n_x,) or (batch, n_x), ``hidden`` (N,) or (batch, N).

    Example
    -------
    >>> from closedloop.core.agents import StaticGain
    >>> from closedloop.core.plants import double_integrator
    >>> gain = StaticGain(2, 1)
    >>> x, h = one_step_map(double_integrator(), gain, gain.to_params({"K": [[-0.5, -1.0]]}),
    ...                     jnp.array([1.0, 0.0]), jnp.zeros(0))
    >>> x.tolist()
    [1.0, -0.5]
    """
    step, given = closed_loop(plant, agent, params), Given(reference)
    if agent.reads_state:
        (x_next, hidden, _), _ = step((x, hidden, None), given)
        return x_next, hidden
    x_next = step.act(x, agent.output(step.prepared, hidden), given)
    hidden_next, _, _ = step.react(x_next, hidden, given)
    return x_next, hidden_next
