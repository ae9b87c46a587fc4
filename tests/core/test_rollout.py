"""The rollout against a plain NumPy loop of science 1.3 and 2 written here: values and gradients
of every variant, in float64.

The loop below is the science's time indexing, in the maths' column-vector layout (each
agent's weights are rebuilt from its stored parameters by hand, not through the package):

* plant-driven: at t = 0 (with ``zero_first_control``) u_0 = 0 and h stays 0; for t >= 1 (or
  from t = 0 without it) each agent reads y_t = C x_t followed by the reference r_t (a static
  gain reads x_t), updates h_t = h_{t-1} + alpha (-h_{t-1} + phi(W h_{t-1} + W_in y_t + b))
  and outputs u_t = W_out h_t + b_out; the plant steps x_{t+1} = A x_t + B u_t + w_t (u_t of
  the teacher when it drives), clamped;
* white noise: both agents read y_t at every t from h = 0, there is no plant.

Gradients of a random weighted sum of the whole trajectory (``jax.grad``) are checked against
central finite differences of the same sum through the NumPy loop; none may reach a teacher.
Rollouts of one group of cases run in one compiled call (each distinct agent or plant is a
static argument, so a group compiles once).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.core.agents import Agent, LowRankRNN, OverlapModel, RNNAgent, StaticGain
from closedloop.core.plants import LinearPlant, double_integrator, point_mass_2d
from closedloop.core.rollout import (
    Given,
    Trajectory,
    closed_loop,
    open_loop_rollout,
    rollout,
    run_loop,
    teacher_driven,
)

FIELDS = ("states", "controls", "teacher_controls", "hidden")
VALUE_TOL = {"rtol": 1e-11, "atol": 1e-11}
FD_STEP = 1e-6
# central differences of these far-from-linear loops (tanh networks with weights 3 / sqrt(N) on
# the random plant) carry a truncation error up to ~1e-5 of the gradient's scale (the larger of
# |entry| and 1e-3 * max |gradient|); a wrong gradient is off by O(1)
FD_RTOL = 1e-4
FD_ENTRIES = 3     # finite-difference entries per parameter

# ---------------------------------------------------------------------------------------------
# the independent truth: science 1.3 / 2 as a NumPy loop

PHI: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "linear": lambda a: a}


@dataclass
class Network:
    """A rate RNN in the maths' layout: W_in (N x n_in), W (N x N), W_out (n_out x N)."""

    W_in: np.ndarray
    W: np.ndarray
    W_out: np.ndarray
    b: np.ndarray
    b_out: np.ndarray
    alpha: float
    activation: str
    reads_state: bool = False

    def initial(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.W.shape[0]))

    def step(self, h: np.ndarray, y: np.ndarray, kinks: list[np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
        pre = h @ self.W.T + y @ self.W_in.T + self.b
        if self.activation == "relu":
            kinks.append(pre > 0)
        h = h + self.alpha * (-h + PHI[self.activation](pre))
        return h, h @ self.W_out.T + self.b_out


@dataclass
class Gain:
    """u = K x on the full state."""

    K: np.ndarray
    reads_state: bool = True

    def initial(self, batch: int) -> np.ndarray:
        return np.zeros((batch, 0))

    def step(self, h: np.ndarray, x: np.ndarray, kinks: list[np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
        return h, x @ self.K.T


def maths_policy(agent: Agent, params: dict[str, np.ndarray]) -> Network | Gain:
    """The agent's weights in the maths' layout, from its stored parameters, by hand."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    if isinstance(agent, StaticGain):
        return Gain(p["K"])
    assert set(p) == set(agent.parameter_shapes())
    if isinstance(agent, OverlapModel):
        # science 3.1: h = k_m m + k_u u; the coordinates (k_m, k_u) read k_m' = y and
        # k_u' = s_vm k_m + s_vu k_u, and u = s_zm k_m + s_zu k_u
        W_in = np.array([[1.0], [0.0]])
        W = np.array([[0.0, 0.0], [p["s_vm"], p["s_vu"]]])
        W_out = np.array([[p["s_zm"], p["s_zu"]]])
    elif isinstance(agent, LowRankRNN):
        W = p["u"] @ p["v"].T + (agent.random_gain * p["W_rand"] if "W_rand" in p else 0.0)
        W_in, W_out = p["m"], p["z"]
    else:   # stored in row layout: the transposes
        W_in, W, W_out = p["W_in"].T, p["W"].T, p["W_out"].T
    size, n_out = W.shape[0], W_out.shape[0]
    return Network(W_in, W, W_out, p.get("b", np.zeros(size)), p.get("b_out", np.zeros(n_out)),
                   agent.dt / agent.tau, agent.activation)


@dataclass(frozen=True)
class Setup:
    """The static part of one rollout (what the compiled call depends on)."""

    plant: LinearPlant | None
    agent: Agent
    steps: int
    teacher: Agent | None = None     # drives the plant (or reads the white-noise inputs)
    zero_first_control: bool = True


def numpy_rollout(setup: Setup, params: dict[str, Any], teacher_params: dict[str, Any] | None,
                  data: dict[str, np.ndarray | None], kinks: list[np.ndarray] | None = None
                  ) -> dict[str, np.ndarray | None]:
    """The trajectory by the loop of the module docstring. ``kinks`` collects which side of
    every non-smooth point (relu at 0, the clamp) each value was on."""
    kinks = [] if kinks is None else kinks
    student = maths_policy(setup.agent, params)
    teacher = None if setup.teacher is None else maths_policy(setup.teacher, teacher_params)
    controls, teacher_controls, hidden = [], [], []
    if data["inputs"] is not None:                      # white noise: no plant, no t = 0 rule
        inputs = data["inputs"]
        h = student.initial(inputs.shape[0])
        h_teacher = None if teacher is None else teacher.initial(inputs.shape[0])
        for t in range(setup.steps):
            h, u = student.step(h, inputs[:, t], kinks)
            controls.append(u)
            hidden.append(h)
            if teacher is not None:
                h_teacher, u_teacher = teacher.step(h_teacher, inputs[:, t], kinks)
                teacher_controls.append(u_teacher)
        return {"states": None, "controls": np.stack(controls, 1),
                "teacher_controls": None if teacher is None else np.stack(teacher_controls, 1),
                "hidden": np.stack(hidden, 1)}
    plant = setup.plant
    A, B, C = plant.A, plant.B, plant.C
    x = np.asarray(data["x0"], dtype=np.float64)
    batch = x.shape[0]
    h = student.initial(batch)
    h_teacher = None if teacher is None else teacher.initial(batch)
    states = [x]

    def observation(policy: Network | Gain, x: np.ndarray, t: int) -> np.ndarray:
        if policy.reads_state:
            return x
        y = x @ C.T
        return y if data["reference"] is None else np.concatenate([y, data["reference"][:, t]],
                                                                  axis=1)

    for t in range(setup.steps):
        if t == 0 and setup.zero_first_control:
            u = u_teacher = np.zeros((batch, B.shape[1]))
        else:
            h, u = student.step(h, observation(student, x, t), kinks)
            if teacher is not None:
                h_teacher, u_teacher = teacher.step(h_teacher, observation(teacher, x, t),
                                                     kinks)
        controls.append(u)
        hidden.append(h)
        if teacher is not None:
            teacher_controls.append(u_teacher)
        x = x @ A.T + (u if teacher is None else u_teacher) @ B.T
        if data["noise"] is not None:
            x = x + data["noise"][:, t]
        if plant.clamp is not None:
            kinks.append(np.abs(x) < plant.clamp)
            x = np.clip(x, -plant.clamp, plant.clamp)
        states.append(x)
    return {"states": np.stack(states, 1), "controls": np.stack(controls, 1),
            "teacher_controls": None if teacher is None else np.stack(teacher_controls, 1),
            "hidden": np.stack(hidden, 1)}


def weighted_sum(trajectory: dict[str, Any], weights: dict[str, np.ndarray]) -> Any:
    return sum((trajectory[name] * weights[name]).sum() for name in weights)


# ---------------------------------------------------------------------------------------------
# the package's rollout, one compiled call per group of cases


def package_rollout(setup: Setup, params: Any, teacher_params: Any, data: dict[str, Any]
                    ) -> Trajectory:
    """The package's rollout of one case: the variant its setup names."""
    if data["inputs"] is not None:
        return open_loop_rollout(setup.agent, params, data["inputs"], steps=setup.steps,
                                 teacher=setup.teacher, teacher_params=teacher_params,
                                 record_hidden=True)
    if setup.teacher is not None:
        step = teacher_driven(setup.plant, setup.agent, params, setup.teacher, teacher_params)
    else:
        step = closed_loop(setup.plant, setup.agent, params)
    return run_loop(step, steps=setup.steps, x0=data["x0"],
                    given=Given(data["reference"], data["noise"]),
                    zero_first_control=setup.zero_first_control, record_hidden=True)


@functools.partial(jax.jit, static_argnums=0)
def package_rollouts(setups: tuple[Setup, ...], cases: list[dict[str, Any]]) -> list[Any]:
    """Per case: (trajectory, gradient of the weighted sum for the agent's parameters, the
    same for the teacher's)."""
    results = []
    for setup, case in zip(setups, cases, strict=True):
        data, weights = case["data"], case["weights"]

        def objective(params: Any, teacher_params: Any, setup: Setup = setup,
                      data: dict[str, Any] = data, weights: dict[str, Any] = weights
                      ) -> tuple[jax.Array, Any]:
            traj = package_rollout(setup, params, teacher_params, data)
            fields = {name: getattr(traj, name) for name in FIELDS}
            return weighted_sum({k: fields[k] for k in weights}, weights), fields

        (_, traj), grads = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
            case["params"], case["teacher_params"])
        results.append((traj, *grads))
    return results


@dataclass
class Case:
    setup: Setup
    params: dict[str, np.ndarray]
    teacher_params: dict[str, np.ndarray] | None
    data: dict[str, np.ndarray | None]


def as_numpy(tree: Any) -> Any:
    return jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), tree)


def run_group(cases: list[Case]) -> list[dict[str, Any]]:
    """The NumPy truth, random weights and the package's results for every case."""
    prepared = []
    for index, case in enumerate(cases):
        truth = numpy_rollout(case.setup, case.params, case.teacher_params, case.data)
        rng = np.random.default_rng(11 + index)
        # every entry weighs O(1) in the sum, however large it grows (so the finite
        # differences are not swamped by the round-off of the largest entries)
        weights = {k: rng.normal(size=v.shape) / (1.0 + np.abs(v)) for k, v in truth.items()
                   if v is not None}
        prepared.append({"truth": truth, "weights": weights})
    jax_cases = [{"data": {k: None if v is None else jnp.asarray(v) for k, v in c.data.items()},
                  "weights": {k: jnp.asarray(v) for k, v in p["weights"].items()},
                  "params": {k: jnp.asarray(v) for k, v in c.params.items()},
                  "teacher_params": None if c.teacher_params is None else {
                      k: jnp.asarray(v) for k, v in c.teacher_params.items()}}
                 for c, p in zip(cases, prepared, strict=True)]
    outputs = package_rollouts(tuple(c.setup for c in cases), jax_cases)
    for p, (traj, grads, teacher_grads) in zip(prepared, outputs, strict=True):
        p.update(trajectory=as_numpy(traj), grads=as_numpy(grads),
                 teacher_grads=None if teacher_grads is None else as_numpy(teacher_grads))
    return prepared


def check(case: Case, result: dict[str, Any]) -> None:
    """Values, gradients (finite differences of the NumPy loop) and no teacher gradient."""
    truth, trajectory = result["truth"], result["trajectory"]
    for name in FIELDS:
        assert (truth[name] is None) == (trajectory[name] is None), name
        if truth[name] is not None:
            assert trajectory[name].shape == truth[name].shape, name
            np.testing.assert_allclose(trajectory[name], truth[name], **VALUE_TOL, err_msg=name)
    grads = result["grads"]
    assert sorted(grads) == sorted(case.params)
    rng = np.random.default_rng(5)
    base_kinks: list[np.ndarray] = []
    numpy_rollout(case.setup, case.params, case.teacher_params, case.data, base_kinks)

    def objective(params: dict[str, np.ndarray]) -> float | None:
        """The weighted sum through the NumPy loop; None if a value crossed a kink."""
        kinks: list[np.ndarray] = []
        trajectory = numpy_rollout(case.setup, params, case.teacher_params, case.data, kinks)
        if any(np.any(a != b) for a, b in zip(kinks, base_kinks, strict=True)):
            return None
        return float(weighted_sum(trajectory, result["weights"]))

    for name, value in case.params.items():
        grad = grads[name]
        assert grad.shape == np.shape(value) and np.all(np.isfinite(grad)), name
        assert np.abs(grad).max() > 0, name
        checked = 0
        for flat in rng.permutation(grad.size):
            index = np.unravel_index(flat, grad.shape)
            shifted = []
            for sign in (1.0, -1.0):
                moved = np.array(value, dtype=np.float64, copy=True)
                moved[index] += sign * FD_STEP
                shifted.append(objective({**case.params, name: moved}))
            if None in shifted:
                continue        # not differentiable within the step: take another entry
            numeric = (shifted[0] - shifted[1]) / (2 * FD_STEP)
            scale = max(abs(grad[index]), 1e-3 * np.abs(grad).max())
            assert abs(numeric - grad[index]) <= FD_RTOL * scale, (name, index, numeric,
                                                                    grad[index])
            checked += 1
            if checked == FD_ENTRIES:
                break
        assert checked == min(FD_ENTRIES, grad.size), name
    if case.teacher_params is not None:
        assert sorted(result["teacher_grads"]) == sorted(case.teacher_params)
        for name, value in result["teacher_grads"].items():
            np.testing.assert_array_equal(value, 0.0, err_msg=f"teacher {name}")


# ---------------------------------------------------------------------------------------------
# the cases (the old fused-versus-loop test's combinations)


def cb_plant() -> LinearPlant:
    rng = np.random.default_rng(3)
    A = np.eye(3) + 0.1 * rng.normal(size=(3, 3))
    B = rng.normal(size=(3, 2))
    C = rng.normal(size=(2, 3))
    assert np.abs(C @ B).max() > 0.1
    return LinearPlant(A, B, C, dt=0.5)


PLANTS = {"di": double_integrator(), "cb": cb_plant()}


def make_agent(kind: str, plant: LinearPlant, activation: str, alpha: float, biases: bool,
               n_ref: int = 0) -> RNNAgent:
    common = dict(n_inputs=plant.n_outputs + n_ref, n_outputs=plant.n_inputs, size=9,
                  activation=activation, dt=alpha, tau=1.0, bias=biases, output_bias=biases)
    if kind == "lowrank":
        return LowRankRNN(**common, rank=2, random_gain=0.3)
    return RNNAgent(**common)


def scaled_params(agent: RNNAgent, seed: int, scale: float = 3.0) -> dict[str, np.ndarray]:
    """Weights N(0, scale^2 / N) (so the loop is far from linear), biases N(0, 1)."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape) * (scale / np.sqrt(agent.size) if len(shape) > 1
                                            else 1.0)
            for name, shape in agent.parameter_shapes().items()}


def normal(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def plant_data(x0: np.ndarray, reference: np.ndarray | None = None,
               noise: np.ndarray | None = None) -> dict[str, np.ndarray | None]:
    return {"x0": x0, "reference": reference, "inputs": None, "noise": noise}


CLOSED_CASES = list(itertools.product(["rnn", "lowrank"], ["tanh", "relu", "linear"],
                                      [1.0, 0.1], [False, True], ["di", "cb"], [True, False]))
TRACKING_CASES = list(itertools.product(["tanh", "linear"], [False, True]))
WHITE_NOISE_CASES = list(itertools.product(["tanh", "linear"], [1.0, 0.3]))
TEACHER_CASES = list(itertools.product(["rnn", "gain"], [True, False]))


def closed_case(kind: str, activation: str, alpha: float, biases: bool, plant_name: str,
                zero_first: bool) -> Case:
    plant = PLANTS[plant_name]
    agent = make_agent(kind, plant, activation, alpha, biases)
    return Case(Setup(plant, agent, 12, zero_first_control=zero_first), scaled_params(agent, 5),
                None, plant_data(normal(1, (6, plant.n_states))))


def tracking_case(activation: str, noisy: bool) -> Case:
    plant = point_mass_2d(0.1, clamp=1.5, process_noise_std=0.3 if noisy else 0.0)
    agent = make_agent("rnn", plant, activation, 0.1, False, n_ref=2)
    noise = plant.draw_noise(jax.random.key(3), 5, 40, jnp.float64)
    return Case(Setup(plant, agent, 40), scaled_params(agent, 7, scale=20.0), None,
                plant_data(np.zeros((5, 4)), normal(2, (5, 40, 2)) * 3,
                           None if noise is None else np.asarray(noise)))


def white_noise_case(activation: str, alpha: float) -> Case:
    plant = double_integrator()
    student = make_agent("rnn", plant, activation, alpha, True)
    teacher = make_agent("rnn", plant, "tanh", 1.0, False)
    return Case(Setup(None, student, 15, teacher=teacher), scaled_params(student, 3),
                scaled_params(teacher, 4), {"x0": None, "reference": None, "noise": None,
                                            "inputs": normal(0, (7, 15, 1))})


def teacher_case(teacher_kind: str, zero_first: bool) -> Case:
    plant = double_integrator()
    student = make_agent("rnn", plant, "tanh", 1.0, False)
    if teacher_kind == "gain":
        teacher, teacher_params = StaticGain(2, 1), {"K": np.array([[-0.4, -1.2]])}
    else:
        teacher = make_agent("rnn", plant, "tanh", 1.0, False)
        teacher_params = scaled_params(teacher, 9)
    return Case(Setup(plant, student, 14, teacher=teacher, zero_first_control=zero_first),
                scaled_params(student, 8), teacher_params, plant_data(normal(4, (6, 2))))


def overlap_case() -> Case:
    agent = OverlapModel(n_inputs=1, n_outputs=1, size=2, activation="linear")
    params = {"s_zm": np.float64(-0.03), "s_zu": np.float64(0.4), "s_vm": np.float64(0.1),
              "s_vu": np.float64(0.2)}
    return Case(Setup(double_integrator(), agent, 30), params, None,
                plant_data(normal(6, (5, 2))))


def all_cases() -> dict[tuple[Any, ...], tuple[Any, Callable[[], Case]]]:
    """Every case by key: (its compile group, its builder). Closed-loop cases are grouped by
    plant and time convention, the open-loop and tracking cases form one group."""
    cases: dict[tuple[Any, ...], tuple[Any, Callable[[], Case]]] = {}
    for key in CLOSED_CASES:
        cases[("closed", *key)] = (key[4:], functools.partial(closed_case, *key))
    for name, keys, builder in (("tracking", TRACKING_CASES, tracking_case),
                                ("white_noise", WHITE_NOISE_CASES, white_noise_case),
                                ("teacher", TEACHER_CASES, teacher_case)):
        for key in keys:
            cases[(name, *key)] = ("open", functools.partial(builder, *key))
    cases[("overlap",)] = ("open", overlap_case)
    return cases


CASES = all_cases()


@functools.cache
def group_results(group: Any) -> dict[tuple[Any, ...], tuple[Case, dict[str, Any]]]:
    keys = [key for key, (g, _) in CASES.items() if g == group]
    cases = [CASES[key][1]() for key in keys]
    return dict(zip(keys, zip(cases, run_group(cases), strict=True), strict=True))


def checked(*key: Any) -> tuple[Case, dict[str, Any]]:
    """The case ``key`` and its results, after the common checks."""
    case, result = group_results(CASES[key][0])[key]
    check(case, result)
    return case, result


@pytest.mark.parametrize(("kind", "activation", "alpha", "biases", "plant_name", "zero_first"),
                         CLOSED_CASES)
def test_closed_loop_matches_the_numpy_loop(kind, activation, alpha, biases, plant_name,
                                            zero_first):
    _, result = checked("closed", kind, activation, alpha, biases, plant_name, zero_first)
    truth = result["truth"]
    assert np.abs(truth["states"]).max() > 1.0   # the loop moves the plant
    if zero_first:   # u_0 = 0 and h_0 = 0; x_1 = A x_0
        np.testing.assert_array_equal(result["trajectory"]["controls"][:, 0], 0.0)
        np.testing.assert_array_equal(result["trajectory"]["hidden"][:, 0], 0.0)
        np.testing.assert_allclose(truth["states"][:, 1],
                                   truth["states"][:, 0] @ PLANTS[plant_name].A.T,
                                   rtol=0, atol=1e-15)


@pytest.mark.parametrize(("activation", "noisy"), TRACKING_CASES)
def test_tracking_with_clamp_reference_and_noise(activation, noisy):
    case, result = checked("tracking", activation, noisy)
    assert (case.data["noise"] is not None) == noisy
    assert np.any(np.abs(result["truth"]["states"]) == 1.5), "the clamp must be active here"


@pytest.mark.parametrize(("activation", "alpha"), WHITE_NOISE_CASES)
def test_white_noise_imitation_matches_the_numpy_loop(activation, alpha):
    _, result = checked("white_noise", activation, alpha)
    # no t = 0 rule: the first outputs already answer the first inputs
    assert np.abs(result["trajectory"]["controls"][:, 0]).min() > 0
    assert np.abs(result["trajectory"]["teacher_controls"][:, 0]).min() > 0


@pytest.mark.parametrize(("teacher_kind", "zero_first"), TEACHER_CASES)
def test_teacher_driven_plant_matches_the_numpy_loop(teacher_kind, zero_first):
    case, result = checked("teacher", teacher_kind, zero_first)
    # the teacher drives: states and teacher controls are the teacher's own closed loop
    alone = numpy_rollout(Setup(case.setup.plant, case.setup.teacher, case.setup.steps,
                                zero_first_control=zero_first), case.teacher_params, None,
                          case.data)
    np.testing.assert_allclose(result["trajectory"]["states"], alone["states"], **VALUE_TOL)
    np.testing.assert_allclose(result["trajectory"]["teacher_controls"], alone["controls"],
                               **VALUE_TOL)


def test_overlap_model_matches_the_numpy_loop():
    checked("overlap")


def test_plain_call_matches_the_numpy_loop():
    """Called outside ``jax.jit`` and without differentiation, as evaluation does."""
    plant = double_integrator()
    agent = make_agent("rnn", plant, "tanh", 1.0, False)
    params = scaled_params(agent, 2)
    x0 = normal(6, (4, 2))
    traj = rollout(plant, agent, agent.to_params(params, jnp.float64), steps=20,
                   x0=jnp.asarray(x0))
    truth = numpy_rollout(Setup(plant, agent, 20), params, None, plant_data(x0))
    np.testing.assert_allclose(np.asarray(traj.states), truth["states"], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(traj.controls), truth["controls"], rtol=1e-12)
    assert traj.teacher_controls is None and traj.hidden is None

