"""The fused fast path equals the straightforward loop: values and gradients, every variant.

`rollout` sends RNN agents through `closedloop.fused` (a hand-written adjoint);
`reference_rollout` is the plain SPEC 1.3 loop differentiated by autograd. In float64 they
must agree to round-off for every combination of activation, dt/tau, biases, plant (with
C B != 0, clamping, references, process noise), time convention and open-loop variant.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from closedloop.agents import LowRankRNN, OverlapModel, RNNAgent, StaticGain
from closedloop.plants import LinearPlant, double_integrator, point_mass_2d
from closedloop.rollout import reference_rollout, rollout

DTYPE = torch.float64


def cb_plant() -> LinearPlant:
    rng = np.random.default_rng(3)
    A = np.eye(3) + 0.1 * rng.normal(size=(3, 3))
    B = rng.normal(size=(3, 2))
    C = rng.normal(size=(2, 3))
    assert np.abs(C @ B).max() > 0.1
    return LinearPlant(A, B, C, dt=0.5)


def make_agent(kind, plant, activation, alpha, biases, n_ref=0):
    common = dict(n_inputs=plant.n_outputs + n_ref, n_outputs=plant.n_inputs, size=9,
                  activation=activation, dt=alpha, tau=1.0, bias=biases, output_bias=biases)
    if kind == "lowrank":
        return LowRankRNN(**common, rank=2, random_gain=0.3)
    return RNNAgent(**common)


def scaled_params(agent, seed, scale=3.0):
    params = agent.init_params(torch.Generator().manual_seed(seed), DTYPE)
    with torch.no_grad():
        for value in params.values():
            value.mul_(scale)
            if value.ndim == 1:
                value.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return params


def weighted_sum(traj, seed):
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=DTYPE)
    for tensor in (traj.states, traj.controls):
        if tensor is not None:
            total = total + (tensor * torch.randn(tensor.shape, generator=generator,
                                                  dtype=DTYPE)).sum()
    return total


def compare(run, params, check_hidden=True):
    """run(rollout_function) -> Trajectory; compare values and gradients of both paths."""
    results = []
    for function in (rollout, reference_rollout):
        for value in params.values():
            value.grad = None
        traj = run(function)
        weighted_sum(traj, 11).backward()
        grads = {k: (v.grad.clone() if v.grad is not None else None) for k, v in params.items()}
        results.append((traj, grads))
    (fast, fast_grads), (slow, slow_grads) = results
    for name in ("states", "controls", "teacher_controls") + (("hidden",) if check_hidden
                                                               else ()):
        a, b = getattr(fast, name), getattr(slow, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-11,
                                       atol=1e-11, err_msg=name)
    for name in params:
        a, b = fast_grads[name], slow_grads[name]
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-10,
                                       err_msg=f"grad {name}")


CLOSED_CASES = list(itertools.product(["rnn", "lowrank"], ["tanh", "relu", "linear"],
                                      [1.0, 0.1], [False, True], ["di", "cb"], [True, False]))


@pytest.mark.parametrize(("kind", "activation", "alpha", "biases", "plant_name", "zero_first"),
                         CLOSED_CASES)
def test_closed_loop_matches_reference(kind, activation, alpha, biases, plant_name, zero_first):
    plant = double_integrator() if plant_name == "di" else cb_plant()
    agent = make_agent(kind, plant, activation, alpha, biases)
    params = scaled_params(agent, 5)
    x0 = torch.randn(6, plant.n_states, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    compare(lambda f: f(plant, agent, params, steps=12, x0=x0,
                        zero_first_control=zero_first, record_hidden=True), params)


@pytest.mark.parametrize("activation", ["tanh", "linear"])
@pytest.mark.parametrize("noise", [False, True])
def test_tracking_with_clamp_reference_and_noise(activation, noise):
    plant = point_mass_2d(0.1, clamp=1.5, process_noise_std=0.3 if noise else 0.0)
    agent = make_agent("rnn", plant, activation, 0.1, False, n_ref=2)
    params = scaled_params(agent, 7, scale=20.0)
    generator = torch.Generator().manual_seed(2)
    reference = torch.randn(5, 40, 2, generator=generator, dtype=DTYPE) * 3
    w = plant.draw_noise(5, 40, generator, DTYPE)
    x0 = torch.zeros(5, 4, dtype=DTYPE)
    traj = reference_rollout(plant, agent, params, steps=40, x0=x0, reference=reference,
                             noise=w)
    assert (traj.states.abs() == 1.5).any(), "the clamp must be active in this test"
    compare(lambda f: f(plant, agent, params, steps=40, x0=x0, reference=reference, noise=w,
                        record_hidden=True), params)


@pytest.mark.parametrize("activation", ["tanh", "linear"])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_white_noise_imitation_matches_reference(activation, alpha):
    plant = double_integrator()
    student = make_agent("rnn", plant, activation, alpha, True)
    teacher = make_agent("rnn", plant, "tanh", 1.0, False)
    params = scaled_params(student, 3)
    teacher_params = {k: v.detach() for k, v in scaled_params(teacher, 4).items()}
    inputs = torch.randn(7, 15, 1, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    compare(lambda f: f(None, student, params, steps=15, inputs=inputs, teacher=teacher,
                        teacher_params=teacher_params, record_hidden=True), params)


@pytest.mark.parametrize("teacher_kind", ["rnn", "gain"])
@pytest.mark.parametrize("zero_first", [True, False])
def test_teacher_driven_plant_matches_reference(teacher_kind, zero_first):
    plant = double_integrator()
    student = make_agent("rnn", plant, "tanh", 1.0, False)
    params = scaled_params(student, 8)
    if teacher_kind == "gain":
        teacher = StaticGain(2, 1)
        teacher_params = teacher.to_tensors({"K": [[-0.4, -1.2]]}, DTYPE)
    else:
        teacher = make_agent("rnn", plant, "tanh", 1.0, False)
        teacher_params = {k: v.detach() for k, v in scaled_params(teacher, 9).items()}
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    compare(lambda f: f(plant, student, params, steps=14, x0=x0, teacher=teacher,
                        teacher_params=teacher_params, teacher_drives=True,
                        zero_first_control=zero_first), params, check_hidden=False)


def test_overlap_model_matches_reference():
    agent = OverlapModel(n_inputs=1, n_outputs=1, size=2, activation="linear")
    params = agent.to_tensors({"s_zm": -0.03, "s_zu": 0.4, "s_vm": 0.1, "s_vu": 0.2}, DTYPE)
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    compare(lambda f: f(double_integrator(), agent, params, steps=30, x0=x0), params)


def test_no_grad_evaluation_matches():
    plant = double_integrator()
    agent = make_agent("rnn", plant, "tanh", 1.0, False)
    params = scaled_params(agent, 2)
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    with torch.no_grad():
        fast = rollout(plant, agent, params, steps=20, x0=x0)
        slow = reference_rollout(plant, agent, params, steps=20, x0=x0)
    np.testing.assert_allclose(fast.states.numpy(), slow.states.numpy(), rtol=1e-12)
