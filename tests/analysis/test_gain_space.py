"""Gain space and LQR (science 5) against independent truths: NumPy eigenvalues and roots,
python-control's ``dlqr``, a directly solved finite-horizon quadratic program, the discrete
Lyapunov equation, hand-written simulations, and NumPy's least squares for the effective
gains' normal equations."""

import control
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from closedloop.analysis.gains import (
    STABLE,
    UNSTABLE_OSCILLATORY,
    UNSTABLE_REAL,
    classify_gains_numerically,
    classify_static_gains,
    effective_gains,
    equivalent_costs,
    finite_horizon_lqr,
    gain_normal_equations,
    gains_from_normal_equations,
    jury_stable,
    loss_landscape,
    lqr_gain,
    sobol_states,
)
from closedloop.config import LossConfig
from closedloop.core.agents import StaticGain
from closedloop.core.costs import cost_for
from closedloop.core.plants import LinearPlant, double_integrator
from closedloop.core.rollout import rollout

A_DI = np.array([[1.0, 1.0], [0.0, 1.0]])
B_DI = np.array([[0.0], [1.0]])


def closed_loop_eigenvalues(k1, k2):
    """eig([[1, 1], [k1, 1 + k2]]) for every gain (the double integrator under u = k1 x + k2 v)."""
    k1, k2 = np.broadcast_arrays(k1, k2)
    matrices = np.zeros((*k1.shape, 2, 2))
    matrices[..., 0, 0] = matrices[..., 0, 1] = 1.0
    matrices[..., 1, 0], matrices[..., 1, 1] = k1, 1.0 + k2
    return np.linalg.eigvals(matrices)


def off_boundary_grid(lo, hi, n):
    """k1 on linspace(lo, hi, n); k2 on the same range shifted by a third of a step.

    The plain square grid puts points exactly on the Jury boundary k2 = k1 (the diagonal),
    where the closed loop has a complex pair exactly on the unit circle (l^2 - (2 + k) l + 1);
    floating-point eigenvalues there come out at |l| = 1 - O(1e-16), so the numerical classifier
    calls them stable while the analytic strict inequality k2 < k1 calls them unstable. Both are
    right up to round-off; the shifted grid keeps every point at least ~1e-5 off every boundary
    (checked below) so the comparison is meaningful.
    """
    step = (hi - lo) / n
    k1 = np.linspace(lo, hi, n)
    k2 = lo + (np.arange(n) + 1.0 / 3.0) * step
    return np.meshgrid(k1, k2, indexing="ij")


# ---------------------------------------------------------------------------------------------
# stability regions


@pytest.mark.parametrize("lo, hi", [(-1.2, 0.6), (-5.0, 2.0)])
def test_analytic_classification_matches_eigenvalues(lo, hi):
    k1, k2 = off_boundary_grid(lo, hi, 200)
    margins = [np.abs(k1), np.abs(k2 - k1), np.abs(k2 - k1 + 2), np.abs(2 * k2 - k1 + 4),
               np.abs(k2 ** 2 + 4 * k1)]
    assert min(m.min() for m in margins) > 1e-5
    analytic = classify_static_gains(k1, k2)
    numeric = classify_gains_numerically(double_integrator(), np.stack([k1, k2], -1)[..., None, :])
    np.testing.assert_array_equal(analytic, numeric)
    # and both agree with a classifier written here from eig(P_red)
    values = closed_loop_eigenvalues(k1, k2)
    outside = np.abs(values) >= 1
    expected = np.where(~outside.any(-1), STABLE,
                        np.where((outside & (np.abs(values.imag) > 0)).any(-1),
                                 UNSTABLE_OSCILLATORY, UNSTABLE_REAL))
    np.testing.assert_array_equal(analytic, expected)
    assert set(np.unique(analytic)) == {STABLE, UNSTABLE_OSCILLATORY, UNSTABLE_REAL}
    if lo == -5.0:
        # the wide grid reaches the two other Jury boundaries: points just beyond k2 = k1 - 2
        # (det > 1 fails from below) and 2 k2 = k1 - 4 (an eigenvalue through -1)
        near_bottom = (k1 < 0) & (k2 < k1) & (k2 < k1 - 2)
        assert near_bottom.any() and np.all(analytic[near_bottom] != STABLE)
        through_minus_one = (k1 < 0) & (k2 < k1) & (k2 > k1 - 2) & (2 * k2 < k1 - 4)
        assert through_minus_one.any() and np.all(analytic[through_minus_one] != STABLE)
        # there, by hand: a real eigenvalue below -1; below k2 = k1 - 2: det = l1 l2 < -1
        assert np.all(values[through_minus_one].real.min(-1) < -1)
        assert np.all(np.abs(values[through_minus_one].imag) == 0)
        assert np.all(np.prod(values[near_bottom], axis=-1).real < -1)


def test_exact_boundary_points_sit_on_the_unit_circle():
    # why the square grid needed shifting: on k2 = k1 (inside the complex region) the pair is
    # on the unit circle to round-off, so "stable" vs "unstable" there is decided by round-off
    k = np.linspace(-1.2, -0.01, 50)
    assert np.allclose(np.abs(closed_loop_eigenvalues(k, k)), 1.0, atol=1e-12)
    assert np.all(classify_static_gains(k, k) == UNSTABLE_OSCILLATORY)


def test_classify_gains_numerically_for_another_plant():
    rng = np.random.default_rng(3)
    plant = LinearPlant(rng.normal(size=(3, 3)), rng.normal(size=(3, 2)), np.eye(3))
    gains = rng.normal(size=(40, 2, 3))
    codes = classify_gains_numerically(plant, gains)
    for gain, code in zip(gains, codes, strict=True):
        values = np.linalg.eigvals(plant.A + plant.B @ gain)
        if np.abs(values).max() < 1:
            assert code == STABLE
        elif np.any((np.abs(values) >= 1) & (np.abs(values.imag) > 1e-12)):
            assert code == UNSTABLE_OSCILLATORY
        else:
            assert code == UNSTABLE_REAL


def random_polynomial(rng, degree):
    """Coefficients from random roots (real or conjugate pairs) at moduli in [0, 1.4], times a
    random leading coefficient of either sign; also returns the roots' largest modulus."""
    roots = []
    while len(roots) < degree:
        radius = rng.uniform(0.0, 1.4)
        if degree - len(roots) >= 2 and rng.random() < 0.6:
            angle = rng.uniform(0.05, np.pi - 0.05)
            roots += [radius * np.exp(1j * angle), radius * np.exp(-1j * angle)]
        else:
            roots.append(radius * rng.choice([-1.0, 1.0]))
    leading = rng.uniform(0.2, 3.0) * rng.choice([-1.0, 1.0])
    return leading * np.real(np.poly(roots))


def test_jury_stable_matches_numpy_roots():
    rng = np.random.default_rng(0)
    polys, expected = [], []
    for degree in range(1, 8):
        kept = 0
        while kept < 60:
            coefficients = (random_polynomial(rng, degree) if kept % 3 else
                            rng.normal(size=degree + 1) * rng.uniform(0.1, 2))
            moduli = np.abs(np.roots(coefficients))
            if np.min(np.abs(moduli - 1)) < 1e-6:
                continue  # too close to the unit circle to decide by round-off
            polys.append(coefficients)
            expected.append(bool(np.all(moduli < 1)))
            kept += 1
    results = [bool(jury_stable(np.array(p))) for p in polys]
    assert results == expected
    assert 0.2 < np.mean(expected) < 0.8  # both classes well represented
    # batched call on a stack of equal-degree polynomials
    cubic = np.array([p for p in polys if len(p) == 4])
    np.testing.assert_array_equal(jury_stable(cubic),
                                  [e for p, e in zip(polys, expected, strict=True)
                                   if len(p) == 4])


# ---------------------------------------------------------------------------------------------
# LQR


def random_plant(seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 3))
    B = rng.normal(size=(3, 2))
    controllability = np.hstack([B, A @ B, A @ A @ B])
    assert np.linalg.matrix_rank(controllability) == 3
    M = rng.normal(size=(3, 3))
    Q = M @ M.T + 0.5 * np.eye(3)
    N = rng.normal(size=(2, 2))
    R = N @ N.T + 0.5 * np.eye(2)
    return A, B, Q, R


CASES = {"double_integrator": (A_DI, B_DI, np.eye(2), np.eye(1)),
         "double_integrator_R": (A_DI, B_DI, np.diag([2.0, 0.5]), 0.3 * np.eye(1)),
         "random": random_plant(1)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lqr_gain_matches_python_control(case):
    A, B, Q, R = CASES[case]
    expected, _, _ = control.dlqr(A, B, Q, R)
    gain = lqr_gain(A, B, Q, R)
    np.testing.assert_allclose(gain, expected, rtol=1e-9, atol=1e-10)
    assert np.abs(np.linalg.eigvals(A - B @ gain)).max() < 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_finite_horizon_lqr_limits(case):
    A, B, Q, R = CASES[case]
    expected, _, _ = control.dlqr(A, B, Q, R)
    gains = finite_horizon_lqr(A, B, Q, R, 300)
    assert gains.shape == (300, B.shape[1], A.shape[0])
    np.testing.assert_allclose(gains[0], expected, rtol=1e-8, atol=1e-9)
    # no terminal cost: the last control only costs, so its gain is 0
    np.testing.assert_array_equal(gains[-1], 0.0)


def sqrt_psd(M):
    w, V = np.linalg.eigh(0.5 * (M + M.T))
    return np.diag(np.sqrt(np.clip(w, 0, None))) @ V.T


def qp_first_gain(A, B, Q, R, steps, terminal=None):
    """K_0 of u_0 = -K_0 x_0 from the finite-horizon problem solved directly: stack
    X = Phi x_0 + Gamma U (x_0..x_T) and minimise |Qh X|^2 + |Rh U|^2 by least squares, for
    every basis vector x_0 at once (the optimal U is linear in x_0)."""
    n, m = B.shape
    Phi = np.vstack([np.linalg.matrix_power(A, t) for t in range(steps + 1)])
    Gamma = np.zeros(((steps + 1) * n, steps * m))
    for t in range(1, steps + 1):
        for s in range(t):
            Gamma[t * n:(t + 1) * n, s * m:(s + 1) * m] = np.linalg.matrix_power(A, t - 1 - s) @ B
    terminal = np.zeros_like(Q) if terminal is None else terminal
    Qh = linalg.block_diag(*([sqrt_psd(Q)] * steps + [sqrt_psd(terminal)]))
    Rh = linalg.block_diag(*([sqrt_psd(R)] * steps))
    lhs = np.vstack([Qh @ Gamma, Rh])
    rhs = -np.vstack([Qh @ Phi, np.zeros((steps * m, n))])
    U, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return -U[:m]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("with_terminal", [False, True])
def test_finite_horizon_lqr_equals_the_quadratic_program(case, with_terminal):
    A, B, Q, R = CASES[case]
    terminal = 3.0 * Q if with_terminal else None
    steps = 5
    gains = finite_horizon_lqr(A, B, Q, R, steps, terminal)
    np.testing.assert_allclose(gains[0], qp_first_gain(A, B, Q, R, steps, terminal),
                               rtol=1e-8, atol=1e-10)
    # dynamic programming: K_t of the T-step problem is K_0 of the (T - t)-step problem
    for t in range(1, steps):
        np.testing.assert_allclose(gains[t], qp_first_gain(A, B, Q, R, steps - t, terminal),
                                   rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# the paper's loss and its equivalent LQR costs


def paper_loss_numpy(states, controls, beta):
    """science 1.4 by hand: sum_t [mean_{batch, dims} x_t^2 + beta sum_batch u_t^2], t < T."""
    visited = states[:, :-1]
    return float(np.sum(np.mean(visited ** 2, axis=(0, 2))) + beta * np.sum(controls ** 2))


def test_equivalent_costs_of_the_paper_loss():
    plant = double_integrator()
    costs = equivalent_costs(LossConfig(kind="paper_di", control_cost=0.005), plant, 100, 50)
    assert costs.R[0, 0] / costs.Q[0, 0] == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_array_equal(costs.Q, costs.Q[0, 0] * np.eye(2))
    # the derivation: mean over (batch 100, 2 dims) of x^2 plus beta * sum_batch u^2 is
    # (1 / 200) sum_samples [x'x + 200 beta u'u], so per sample R / Q = 200 * 0.005 = 1;
    # check it on random trajectories, where loss * 200 must equal sum x'Qx + u'Ru / Q
    rng = np.random.default_rng(0)
    for scale in (0.1, 1.0, 10.0):
        states = rng.normal(size=(100, 51, 2))
        controls = scale * rng.normal(size=(100, 50, 1))
        quadratic = (np.einsum("bti,ij,btj->", states[:, :-1], costs.Q, states[:, :-1])
                     + np.einsum("bti,ij,btj->", controls, costs.R, controls)) / costs.Q[0, 0]
        assert 200 * paper_loss_numpy(states, controls, 0.005) == pytest.approx(quadratic,
                                                                                rel=1e-12)


@pytest.mark.parametrize("kind, control_cost, state_weight", [
    ("mean_state", 0.3, 1.0), ("per_sample", 0.7, 2.0)])
def test_equivalent_costs_of_other_losses(kind, control_cost, state_weight):
    # mean_state: mean_{t, dims, batch} x^2 + c mean_batch sum_t u^2
    #             = (1 / (T n_x B)) sum [x'x + c T n_x u'u]      -> R / Q = c T n_x
    # per_sample: mean_batch sum_t [w x'x + c u'u]               -> Q = w I, R = c I
    costs = equivalent_costs(LossConfig(kind=kind, control_cost=control_cost,
                                        state_weight=state_weight), double_integrator(), 16, 25)
    expected = control_cost * 2 * 25 if kind == "mean_state" else control_cost / state_weight
    assert costs.R[0, 0] / costs.Q[0, 0] == pytest.approx(expected, rel=1e-12)


def infinite_horizon_cost(K, Q, R, second_moment):
    """sum_{t >= 0} E[x'Qx + u'Ru] under u = K x from x_0 with E[x_0 x_0'] = second_moment: the
    discrete Lyapunov equation S = F'SF + Q + K'RK, F = A + BK, gives tr(S second_moment)."""
    F = A_DI + B_DI @ K
    assert np.abs(np.linalg.eigvals(F)).max() < 1
    S = linalg.solve_discrete_lyapunov(F.T, Q + K.T @ R @ K)
    return float(np.trace(S @ second_moment))


jitted_rollout = jax.jit(rollout, static_argnums=(0, 1),
                         static_argnames=("steps", "zero_first_control"))


def simulated_paper_loss(K, x0, steps=300):
    gain = StaticGain(2, 1)
    params = gain.to_params({"K": K}, jnp.float64)
    # u_t = K x_t from t = 0 (no u_0 = 0 convention): the infinite-horizon static-gain problem
    traj = jitted_rollout(double_integrator(), gain, params, steps=steps,
                          x0=jnp.asarray(x0, dtype=jnp.float64), zero_first_control=False)
    paper = cost_for(LossConfig(kind="paper_di", control_cost=0.005))
    return float(paper.episode_loss(traj, double_integrator())), traj


def test_lqr_gain_minimises_the_paper_loss_among_static_gains():
    costs = equivalent_costs(LossConfig(kind="paper_di", control_cost=0.005),
                             double_integrator(), 100, 50)
    K_lqr = -lqr_gain(A_DI, B_DI, costs.Q, costs.R)  # u = K x
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, size=(100, 2))
    moment = x0.T @ x0

    # the paper loss of a long rollout is the Lyapunov cost / (batch * n_x) (R = 1, Q = I)
    loss, traj = simulated_paper_loss(K_lqr, x0)
    states, controls = np.asarray(traj.states), np.asarray(traj.controls)
    assert loss == pytest.approx(paper_loss_numpy(states, controls, 0.005), rel=1e-12)
    exact = infinite_horizon_cost(K_lqr, np.eye(2), np.eye(1), moment) / 200
    assert loss == pytest.approx(exact, rel=1e-10)

    # locally minimal: every nearby gain costs more, in simulation and in the exact cost
    directions = [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([[1.0, 1.0]]),
                  np.array([[1.0, -1.0]])]
    for size in (1e-2, 3e-2):
        for d in directions:
            for sign in (1.0, -1.0):
                K = K_lqr + sign * size * d / np.linalg.norm(d)
                assert simulated_paper_loss(K, x0)[0] > loss
                assert infinite_horizon_cost(K, np.eye(2), np.eye(1), moment) / 200 > exact
    # and stationary: the finite-difference gradient vanishes at the LQR gain, not nearby
    h = 1e-5

    def grad(K):
        return np.array([(infinite_horizon_cost(K + h * d, np.eye(2), np.eye(1), moment)
                          - infinite_horizon_cost(K - h * d, np.eye(2), np.eye(1), moment))
                         / (2 * h) for d in directions[:2]])

    assert np.linalg.norm(grad(K_lqr)) < 1e-6 * np.linalg.norm(grad(K_lqr + 0.05))


# ---------------------------------------------------------------------------------------------
# loss landscape and effective gains


def direct_landscape_value(k1, k2, steps=50, x0=(1.0, 1.0)):
    x = np.array(x0)
    total = 0.0
    for _ in range(steps):
        total += float(x @ x)
        x = np.array([x[0] + x[1], k1 * x[0] + (1 + k2) * x[1]])
    return np.log(total)


def test_loss_landscape_matches_a_direct_loop():
    k = np.linspace(-1.2, 0.6, 41)
    k1, k2 = np.meshgrid(k, k, indexing="ij")
    grid = loss_landscape(double_integrator(), k1, k2)
    assert grid.shape == (41, 41)
    for i, j in [(0, 0), (5, 30), (20, 10), (33, 7), (40, 40), (12, 3), (25, 25)]:
        assert grid[i, j] == pytest.approx(direct_landscape_value(k1[i, j], k2[i, j]),
                                           rel=1e-12)
    value = loss_landscape(double_integrator(), np.array(-0.4), np.array(-1.0), steps=20,
                           x0=(0.5, -2.0))
    assert float(value) == pytest.approx(direct_landscape_value(-0.4, -1.0, 20, (0.5, -2.0)),
                                         rel=1e-12)
    # smallest in the stable region (stability from eig, not from the package's classifier)
    stable = np.abs(closed_loop_eigenvalues(k1, k2)).max(-1) < 1
    assert stable[np.unravel_index(np.argmin(grid), grid.shape)]
    assert grid[stable].min() < grid[~stable].min()


def numpy_static_rollout(K, x0, steps):
    """The paper's rollout under u_t = K x_t for t >= 1 and u_0 = 0 (science 1.3), by hand."""
    states = [x0]
    controls = []
    for t in range(steps):
        u = np.zeros((x0.shape[0], 1)) if t == 0 else states[-1] @ K.T
        controls.append(u)
        states.append(states[-1] @ A_DI.T + u @ B_DI.T)
    return np.stack(states, 1), np.stack(controls, 1)


def test_effective_gains_recover_a_static_gain():
    K = np.array([[-0.37, -0.91]])
    rng = np.random.default_rng(4)
    x0 = rng.uniform(-1, 1, size=(10, 2))
    states, controls = numpy_static_rollout(K, x0, 50)
    np.testing.assert_allclose(effective_gains(states, controls), K, rtol=0, atol=1e-12)
    # the first step (u_0 = 0 != K x_0) must be dropped: kept, it biases the fit
    biased = effective_gains(states, controls, drop_first=0)
    assert np.abs(biased - K).max() > 1e-3
    # the same through the package's rollout of a static-gain agent
    gain = StaticGain(2, 1)
    traj = rollout(double_integrator(), gain, gain.to_params({"K": K}, jnp.float64),
                   steps=50, x0=jnp.asarray(x0, dtype=jnp.float64))
    np.testing.assert_allclose(np.asarray(traj.states), states, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(effective_gains(np.asarray(traj.states),
                                               np.asarray(traj.controls)), K,
                               rtol=0, atol=1e-12)
    # non-finite rollouts give NaN gains
    states[0, 3, 0] = np.nan
    assert np.all(np.isnan(effective_gains(states, controls)))


# effective gains from the normal equations (what training records by default)


def normal_equation_gains(states, controls, drop_first=1):
    """The package's two halves: the normal equations (JAX) solved on the host."""
    gram, cross = gain_normal_equations(jnp.asarray(states), jnp.asarray(controls), drop_first)
    return gains_from_normal_equations(np.asarray(gram), np.asarray(cross))


@pytest.mark.parametrize(("n_x", "n_u", "drop_first"), [(2, 1, 1), (3, 2, 1), (4, 3, 0)])
def test_normal_equations_give_numpys_least_squares(n_x, n_u, drop_first):
    """Any states and controls (not a linear relation): the normal equations solved in
    float64 give what numpy.linalg.lstsq gives on the stacked rows t = drop_first .. T-1."""
    rng = np.random.default_rng(n_x)
    batch, steps = 7, 12
    states = rng.normal(size=(batch, steps + 1, n_x))           # x_0 .. x_T
    controls = np.tanh(states[:, :steps] @ rng.normal(size=(n_x, n_u))) + 0.1 * rng.normal(
        size=(batch, steps, n_u))
    x = states[:, drop_first:steps].reshape(-1, n_x)
    u = controls[:, drop_first:].reshape(-1, n_u)
    expected = np.linalg.lstsq(x, u, rcond=None)[0].T
    gains = normal_equation_gains(states, controls, drop_first)
    assert gains.shape == (n_u, n_x)
    np.testing.assert_allclose(gains, expected, rtol=1e-10, atol=1e-12)
    gram, cross = gain_normal_equations(jnp.asarray(states), jnp.asarray(controls), drop_first)
    np.testing.assert_allclose(np.asarray(gram), x.T @ x, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cross), x.T @ u, rtol=1e-12, atol=1e-12)


def test_normal_equations_recover_a_static_gain_whatever_the_states():
    """u_t = K x_t for t >= 1 (u_0 = 0): K exactly, from any initial states, few or many."""
    K = np.array([[-0.37, -0.91]])
    rng = np.random.default_rng(5)
    for x0 in (rng.uniform(-1, 1, size=(3, 2)), rng.uniform(-5, 5, size=(400, 2)),
               sobol_states(64, 2, 0.3, seed=1)):
        states, controls = numpy_static_rollout(K, x0, 30)
        np.testing.assert_allclose(normal_equation_gains(states, controls), K, rtol=0,
                                   atol=1e-12)
        # the first step (u_0 = 0 != K x_0) must be dropped: kept, it biases the fit
        assert np.abs(normal_equation_gains(states, controls, drop_first=0) - K).max() > 1e-3


def test_normal_equations_of_collinear_states_give_the_minimum_norm_solution():
    """Every state on the line x2 = 2 x1: X^T X is singular, and the solve returns the
    minimum-norm least-squares K, as lstsq on the rows does."""
    rng = np.random.default_rng(6)
    position = rng.normal(size=(5, 9, 1))
    states = np.concatenate([position, 2 * position], axis=-1)
    controls = -0.5 * position[:, :8] + 0.01 * rng.normal(size=(5, 8, 1))
    expected = np.linalg.lstsq(states[:, 1:8].reshape(-1, 2), controls[:, 1:].reshape(-1, 1),
                               rcond=None)[0].T
    np.testing.assert_allclose(normal_equation_gains(states, controls), expected, rtol=1e-8)


def test_non_finite_normal_equations_give_nan_gains():
    K = np.array([[-0.37, -0.91]])
    states, controls = numpy_static_rollout(K, np.array([[0.5, -0.2], [1.0, 1.0]]), 10)
    states[1, 4, 1] = np.inf
    assert np.all(np.isnan(normal_equation_gains(states, controls)))


@pytest.mark.parametrize(("count", "n_states"), [(128, 2), (64, 4)])
def test_sobol_states_are_a_stratified_set_in_range(count, n_states):
    """The first 2^m points of a scrambled Sobol' sequence are a (t, m, s)-net in base 2: in
    every coordinate, each of the ``count`` equal intervals of [-a, a] holds one point
    (independent uniform draws leave about a third of them empty). Seeded: the same seed
    gives the same set, another seed another set."""
    state_range = 0.3
    states = sobol_states(count, n_states, state_range, seed=11)
    assert states.shape == (count, n_states) and states.dtype == np.float64
    assert np.all(np.abs(states) <= state_range)
    for coordinate in states.T:
        counts = np.histogram(coordinate, bins=count, range=(-state_range, state_range))[0]
        assert np.all(counts == 1)
    np.testing.assert_array_equal(states, sobol_states(count, n_states, state_range, seed=11))
    assert not np.allclose(states, sobol_states(count, n_states, state_range, seed=12))
    assert sobol_states(100, n_states, 1.0, seed=3).shape == (100, n_states)  # any count
