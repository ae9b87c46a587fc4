"""The one rollout: closed loop, every open-loop variant, and evaluation (SPEC 1.3, 2).

Time indexing (SPEC 1.3), for a plant-driven rollout of T steps from x_0:

* at t = 0 the control is u_0 = 0 and the agents' hidden states are not updated (h = 0),
  when ``zero_first_control`` is on (the paper presets);
* for t >= 1 each agent reads its observation at x_t, updates h_t and outputs u_t;
* the plant steps x_{t+1} = A x_t + B u_t (+ w_t), clamped if the plant clamps.

The returned :class:`Trajectory` holds x_0..x_T and u_0..u_{T-1}; the losses pick what they
charge. Switches select the variant:

* closed loop: ``agent`` drives the plant;
* teacher-driven plant (open loop): ``teacher`` drives the plant, both read the same
  observations;
* white-noise inputs (open loop): ``inputs`` (batch, T, n_in) replace the observations, there is
  no plant, and every agent is stepped at every t from h = 0 (no t = 0 special case).

An RNN's observation is y_t = C x_t, followed by the reference r_t when there is one; a static
gain reads the full state x_t.

Example
-------
>>> import torch
>>> from closedloop.agents import StaticGain
>>> from closedloop.plants import double_integrator
>>> gain = StaticGain(2, 1)
>>> traj = rollout(double_integrator(), gain, gain.to_tensors({"K": [[-0.5, -1.0]]}),
...                x0=torch.tensor([[1.0, 0.0]]), steps=2, zero_first_control=False)
>>> traj.states[0].tolist(), traj.controls[0].tolist()
([[1.0, 0.0], [1.0, -0.5], [0.5, -0.5]], [[-0.5], [0.0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from closedloop.agents import Agent, Params, RNNAgent
from closedloop.errors import ShapeError
from closedloop.fused import rnn_rollout
from closedloop.plants import LinearPlant


@dataclass
class Trajectory:
    """What a rollout produced (batch-first).

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
    """

    states: torch.Tensor | None
    controls: torch.Tensor
    teacher_controls: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


def agent_observation(agent: Agent, plant: LinearPlant, x: torch.Tensor,
                      reference_t: torch.Tensor | None) -> torch.Tensor:
    """What ``agent`` reads at state x: C x (then the reference, if any), or x for a static
    gain."""
    if agent.reads_state:
        return x
    y = plant.observe(x)
    return y if reference_t is None else torch.cat((y, reference_t), dim=-1)


def rollout(plant: LinearPlant | None, agent: Agent, params: Params, *,
            steps: int, x0: torch.Tensor | None = None, reference: torch.Tensor | None = None,
            inputs: torch.Tensor | None = None, teacher: Agent | None = None,
            teacher_params: Params | None = None, teacher_drives: bool = False,
            zero_first_control: bool = True, noise: torch.Tensor | None = None,
            record_hidden: bool = False) -> Trajectory:
    """Run agent (and teacher) for ``steps`` steps; see the module docstring for the variants.

    RNN agents (full, low-rank, reduced) take the fused fast path of
    :mod:`closedloop.fused`; static gains (and a teacher that only labels a student-driven
    rollout) take :func:`reference_rollout`. Both compute the
    same thing (the tests check it); the arguments are those of :func:`reference_rollout`.
    """
    student_drives_with_teacher = (teacher is not None and not teacher_drives
                                   and inputs is None)
    if not isinstance(agent, RNNAgent) or student_drives_with_teacher:
        return reference_rollout(plant, agent, params, steps=steps, x0=x0, reference=reference,
                                 inputs=inputs, teacher=teacher, teacher_params=teacher_params,
                                 teacher_drives=teacher_drives,
                                 zero_first_control=zero_first_control, noise=noise,
                                 record_hidden=record_hidden)
    if (teacher is None) != (teacher_params is None):
        raise ShapeError("teacher and teacher_params go together")
    prepared = agent.prepare(params)
    if inputs is not None:
        teacher_controls = None
        _check_inputs(agent, inputs, steps)
        if teacher is not None:
            with torch.no_grad():
                teacher_controls = rollout(None, teacher, teacher_params, steps=steps,
                                           inputs=inputs).controls
        _, controls, hidden = rnn_rollout(agent, prepared, steps=steps, inputs=inputs,
                                          zero_first_control=False,
                                          record_hidden=record_hidden)
        return Trajectory(None, controls, teacher_controls, hidden)
    _check_start(plant, x0)
    if teacher_drives:
        if teacher is None:
            raise ShapeError("teacher_drives needs a teacher")
        with torch.no_grad():
            driven = rollout(plant, teacher, teacher_params, steps=steps, x0=x0,
                             reference=reference, zero_first_control=zero_first_control,
                             noise=noise)
        observations = agent_observation(agent, plant, driven.states[:, :steps],
                                         None if reference is None else reference[:, :steps])
        _, controls, hidden = rnn_rollout(agent, prepared, steps=steps, inputs=observations,
                                          zero_first_control=zero_first_control,
                                          record_hidden=record_hidden)
        return Trajectory(driven.states, controls, driven.controls, hidden)
    states, controls, hidden = rnn_rollout(agent, prepared, steps=steps, plant=plant, x0=x0,
                                           reference=reference, noise=noise,
                                           zero_first_control=zero_first_control,
                                           record_hidden=record_hidden)
    return Trajectory(states, controls, None, hidden)


def _check_inputs(agent: Agent, inputs: torch.Tensor, steps: int) -> None:
    if inputs.ndim != 3 or inputs.shape[1] < steps or inputs.shape[2] != agent.n_inputs:
        raise ShapeError(f"inputs must be (batch, >= {steps}, {agent.n_inputs}), "
                         f"got {tuple(inputs.shape)}")


def _check_start(plant: LinearPlant | None, x0: torch.Tensor | None) -> None:
    if plant is None or x0 is None:
        raise ShapeError("a plant-driven rollout needs a plant and x0 (or white-noise inputs)")
    if x0.ndim != 2 or x0.shape[1] != plant.n_states:
        raise ShapeError(f"x0 must be (batch, {plant.n_states}), got {tuple(x0.shape)}")


def reference_rollout(plant: LinearPlant | None, agent: Agent, params: Params, *,
            steps: int, x0: torch.Tensor | None = None, reference: torch.Tensor | None = None,
            inputs: torch.Tensor | None = None, teacher: Agent | None = None,
            teacher_params: Params | None = None, teacher_drives: bool = False,
            zero_first_control: bool = True, noise: torch.Tensor | None = None,
            record_hidden: bool = False) -> Trajectory:
    """The straightforward time loop of SPEC 1.3 for any agent (see the module docstring).

    :func:`rollout` uses it for static gains; for RNN agents it is the reference the fused
    path is tested against.

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
        A second agent stepped on the same observations.
    teacher_drives
        If True, the teacher's controls drive the plant (teacher-driven open loop).
    zero_first_control
        The paper's t = 0 convention (u_0 = 0, no hidden update).
    noise
        Process noise (batch, >= T, n_x), already scaled.
    record_hidden
        Keep the agent's hidden states.

    Returns
    -------
    Trajectory
    """
    if (teacher is None) != (teacher_params is None):
        raise ShapeError("teacher and teacher_params go together")
    if teacher_drives and teacher is None:
        raise ShapeError("teacher_drives needs a teacher")
    prepared = agent.prepare(params)
    teacher_prepared = teacher.prepare(teacher_params) if teacher is not None else None
    if inputs is not None:
        _check_inputs(agent, inputs, steps)
        plant, zero_first_control, first = None, False, inputs
    else:
        _check_start(plant, x0)
        first = x0
    batch, dtype, device = first.shape[0], first.dtype, first.device
    hidden = agent.initial_hidden(batch, dtype, device)
    teacher_hidden = teacher.initial_hidden(batch, dtype, device) if teacher else None
    n_controls = plant.n_inputs if plant is not None else 0
    zero_control = torch.zeros(batch, n_controls, dtype=dtype, device=device)

    x = x0
    states, controls, teacher_controls, hiddens = [x0], [], [], []
    for t in range(steps):
        if plant is None:
            observation = teacher_observation = inputs[:, t]
        else:
            r_t = None if reference is None else reference[:, t]
            observation = agent_observation(agent, plant, x, r_t)
            teacher_observation = (agent_observation(teacher, plant, x, r_t)
                                   if teacher is not None else None)
        if t == 0 and zero_first_control:
            u = u_teacher = zero_control
        else:
            hidden, u = agent.step(prepared, hidden, observation)
            if teacher is not None:
                teacher_hidden, u_teacher = teacher.step(teacher_prepared, teacher_hidden,
                                                         teacher_observation)
        controls.append(u)
        if teacher is not None:
            teacher_controls.append(u_teacher)
        if record_hidden:
            hiddens.append(hidden)
        if plant is not None:
            x = plant.step(x, u_teacher if teacher_drives else u,
                           None if noise is None else noise[:, t])
            states.append(x)
    return Trajectory(states=torch.stack(states, 1) if plant is not None else None,
                      controls=torch.stack(controls, 1),
                      teacher_controls=torch.stack(teacher_controls, 1) if teacher else None,
                      hidden=torch.stack(hiddens, 1) if record_hidden else None)
