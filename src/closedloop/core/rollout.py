"""The one rollout: closed loop, every open-loop variant, and evaluation (science 1.3, 2).

Time indexing (science 1.3), for a plant-driven rollout of T steps from x_0:

* at t = 0 the control is u_0 = 0 and the agents' hidden states are not updated (h = 0),
  when ``zero_first_control`` is on (the paper presets);
* for t >= 1 each agent reads its observation at x_t, updates h_t and outputs u_t;
* the plant steps x_{t+1} = A x_t + B u_t (+ w_t), clamped if the plant clamps (any plant
  of :class:`~closedloop.core.plants.Plant`: x_{t+1} = f(x_t, u_t, w_t)).

The returned :class:`Trajectory` holds x_0..x_T and u_0..u_{T-1}; the losses pick what they
charge. Switches select the variant:

* closed loop: ``agent`` drives the plant;
* teacher-driven plant (open loop): ``teacher`` drives the plant, both read the same
  observations;
* white-noise inputs (open loop): ``inputs`` (batch, T, n_in) replace the observations, there is
  no plant, and every agent is stepped at every t from h = 0 (no t = 0 special case).

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

from dataclasses import dataclass
from typing import Any

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
    axes (tracking), the target's two coordinates (reaching), none (regulation).

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
    return size


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


def _time_major(array: jax.Array | None, steps: int) -> jax.Array | None:
    return None if array is None else jnp.swapaxes(array[:, :steps], 0, 1)


def _batch_first(array: jax.Array | None) -> jax.Array | None:
    return None if array is None else jnp.swapaxes(array, 0, 1)


def rollout(plant: Plant | None, agent: Agent, params: Params, *, steps: int,
            x0: jax.Array | None = None, reference: jax.Array | None = None,
            inputs: jax.Array | None = None, teacher: Agent | None = None,
            teacher_params: Params | None = None, teacher_drives: bool = False,
            zero_first_control: bool = True, noise: jax.Array | None = None,
            record_hidden: bool = False, exploration: jax.Array | None = None,
            exploration_std: float | jax.Array = 0.0, record_inputs: bool = False,
            node_noise: jax.Array | None = None) -> Trajectory:
    """Run agent (and teacher) for ``steps`` steps; see the module docstring for the variants.

    Parameters
    ----------
    plant
        The plant; None for white-noise rollouts.
    agent, params
        The agent (student) and its parameters.
    steps
        Episode length T.
    x0
        Initial states (batch, n_x), for plant-driven rollouts.
    reference
        (batch, >= T, n_ref), appended to the RNN's observation.
    inputs
        White-noise inputs (batch, >= T, n_in): no plant, every agent stepped at every t.
    teacher, teacher_params
        A second agent stepped on the same observations (no gradient reaches it).
    teacher_drives
        If True, the teacher's controls drive the plant (teacher-driven open loop).
    zero_first_control
        The paper's t = 0 convention (u_0 = 0, no hidden update).
    noise
        The plant's per-step noise (batch, >= T, plant.noise_size), from its
        ``draw_noise``.
    record_hidden
        Keep the agent's hidden states.
    exploration, exploration_std
        Black-box rollout (the plant outside the gradient): the plant receives
        u_t + exploration_std * exploration_t (``exploration`` standard normal,
        (batch, >= T, n_u)), and no gradient flows through it or the plant's states; only
        through the agent's own computation of its outputs from what it observed (what the
        score function of a policy gradient needs).
    record_inputs
        Keep what the agent read (for a value baseline; plant-driven rollouts only).
    node_noise
        Node perturbation (black-box rollouts only): standard normal (batch, >= T, N); after
        each update the agent's hidden state becomes h_t + exploration_std * node_noise_t,
        and its output is read from that perturbed state (``agent.output``), for agents whose
        output is a readout of their hidden state.

    Returns
    -------
    Trajectory
    """
    if (teacher is None) != (teacher_params is None):
        raise ShapeError("teacher and teacher_params go together")
    if teacher_drives and teacher is None:
        raise ShapeError("teacher_drives needs a teacher")
    if node_noise is not None and exploration is None:
        raise ShapeError("node_noise perturbs a black-box rollout: give exploration too")
    prepared = agent.prepare(params)
    teacher_prepared = (None if teacher is None
                        else teacher.prepare(lax.stop_gradient(teacher_params)))

    def step_agents(hidden: jax.Array, teacher_hidden: jax.Array | None, observation: Any,
                    teacher_observation: Any) -> tuple[Any, ...]:
        hidden, u = agent.step(prepared, hidden, observation)
        u_teacher = None
        if teacher is not None:
            teacher_hidden, u_teacher = teacher.step(teacher_prepared, teacher_hidden,
                                                     teacher_observation)
        return hidden, teacher_hidden, u, u_teacher

    if inputs is not None:
        _check_inputs(agent, inputs, steps)
        batch, dtype = inputs.shape[0], inputs.dtype
        start = (agent.initial_hidden(batch, dtype),
                 None if teacher is None else teacher.initial_hidden(batch, dtype))

        def noise_step(carry: Any, y: jax.Array) -> tuple[Any, Any]:
            hidden, teacher_hidden, u, u_teacher = step_agents(*carry, y, y)
            return (hidden, teacher_hidden), (u, u_teacher, hidden if record_hidden else None)

        _, (controls, teacher_controls, hidden) = lax.scan(noise_step, start,
                                                           _time_major(inputs, steps))
        return Trajectory(None, _batch_first(controls), _batch_first(teacher_controls),
                          _batch_first(hidden))

    _check_start(plant, x0)
    batch, dtype = x0.shape[0], x0.dtype
    hidden = agent.initial_hidden(batch, dtype)
    teacher_hidden = None if teacher is None else teacher.initial_hidden(batch, dtype)
    references, noises = _time_major(reference, steps), _time_major(noise, steps)

    black_box = exploration is not None

    def plant_step(carry: Any, external: Any) -> tuple[Any, Any]:
        x, hidden, teacher_hidden = carry
        r_t, w_t, e_t, n_t = external
        observation = agent_observation(agent, plant, x, r_t, w_t)
        hidden, teacher_hidden, u, u_teacher = step_agents(
            hidden, teacher_hidden, observation,
            None if teacher is None else agent_observation(teacher, plant, x, r_t, w_t))
        if n_t is not None:
            hidden = lax.stop_gradient(hidden + exploration_std * n_t)
            u = agent.output(prepared, hidden)
        command = u_teacher if teacher_drives else u
        if black_box:
            command = lax.stop_gradient(u + exploration_std * e_t)
        x_next = plant.step(x, command, w_t)
        if black_box:
            x_next = lax.stop_gradient(x_next)
        return (x_next, hidden, teacher_hidden), (x_next, u, u_teacher,
                                                  hidden if record_hidden else None,
                                                  command if black_box else None,
                                                  observation if record_inputs else None)

    first = 1 if zero_first_control else 0
    head_states, head_controls, head_teacher, head_hidden = [x0[None]], [], [], []
    head_inputs = []
    x = x0
    if zero_first_control:
        zero = jnp.zeros((batch, plant.n_inputs), dtype=dtype)
        if record_inputs:
            head_inputs.append(agent_observation(
                agent, plant, x0, None if references is None else references[0],
                None if noises is None else noises[0])[None])
        x = plant.step(x0, zero, None if noises is None else noises[0])
        head_states.append(x[None])
        head_controls.append(zero[None])
        head_teacher.append(zero[None])
        head_hidden.append(hidden[None])
    explorations = _time_major(exploration, steps)
    nodes = _time_major(node_noise, steps)
    tail = (None if references is None else references[first:],
            None if noises is None else noises[first:],
            None if explorations is None else explorations[first:],
            None if nodes is None else nodes[first:])
    _, (states, controls, teacher_controls, hiddens, executed, observed) = lax.scan(
        plant_step, (x, hidden, teacher_hidden), tail, length=steps - first)

    def joined(head: list[jax.Array], rest: jax.Array | None) -> jax.Array | None:
        return None if rest is None else _batch_first(jnp.concatenate([*head, rest]))

    return Trajectory(states=joined(head_states, states),
                      controls=joined(head_controls, controls),
                      teacher_controls=joined(head_teacher, teacher_controls),
                      hidden=joined(head_hidden, hiddens),
                      executed=joined(head_controls, executed),
                      inputs=joined(head_inputs, observed))


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
    """The closed-loop map (x_t, h_t) -> (x_{t+1}, h_{t+1}) of the rollout for t >= 1:
    u_t = W_out h_t (+ b_out), x_{t+1} = A x_t + B u_t, then the agent reads x_{t+1} (and the
    reference, if any). A static gain has no hidden state: u_t = K x_t.

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
    prepared = agent.prepare(params)
    if agent.reads_state:
        _, u = agent.step(prepared, hidden, x)
        return plant.step(x, u), hidden
    x_next = plant.step(x, agent.output(prepared, hidden))
    hidden_next, _ = agent.step(prepared, hidden,
                                agent_observation(agent, plant, x_next, reference))
    return x_next, hidden_next
