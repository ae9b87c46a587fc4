"""The rank-1 theory (science 3.1, 4) against independent truths.

Every expected value here comes from outside ``closedloop.theory``: NumPy eigenvalues of
matrices written out by hand, the cubic's closed-form factorisation, finite differences, or a
NumPy simulation of the double integrator written in this file.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from closedloop.analysis import theory
from closedloop.analysis.coupling import coupled_matrix
from closedloop.core.agents import LowRankRNN, order_parameters
from closedloop.core.plants import double_integrator

N = 100
NAMES = ("s_zm", "s_zu", "s_vm", "s_vu")
STAGE2_START = {"s_zm": -0.0188, "s_zu": -0.0746, "s_vm": 0.00872, "s_vu": -0.0249}


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def p_eff(s_zm, s_zu, s_vm, s_vu):
    """P_eff of science 3.1, written out by hand."""
    return np.array([[1.0, 1.0, 0.0, 0.0],
                     [0.0, 1.0, s_zm, s_zu],
                     [1.0, 1.0, 0.0, 0.0],
                     [0.0, 0.0, s_vm, s_vu]])


def full_coupled_matrix(m, z, u, v):
    """The (N + 2)-dimensional P of science 3 for the linear rank-1 network on the double
    integrator, by hand: A = [[1, 1], [0, 1]], B = e_2, C = e_1^T, W_in = m, W_out = z^T,
    W = u v^T, dt = tau (so C B = 0 and the bottom-right block is W)."""
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    B = np.array([[0.0], [1.0]])
    C = np.array([[1.0, 0.0]])
    top = np.hstack([A, B @ z[None, :]])
    bottom = np.hstack([m[:, None] @ (C @ A), np.outer(u, v)])
    return np.vstack([top, bottom])


def match(expected, actual):
    """Pair every value in ``expected`` with a distinct one in ``actual`` (min total distance);
    returns the matched actual values and the unmatched rest."""
    cost = np.abs(np.asarray(expected)[:, None] - np.asarray(actual)[None, :])
    rows, cols = linear_sum_assignment(cost)
    matched = np.empty(len(expected), dtype=complex)
    matched[rows] = np.asarray(actual)[cols]
    rest = np.delete(np.asarray(actual), cols)
    return matched, rest


def dominant(values):
    """Largest-modulus eigenvalue, reported with non-negative imaginary part."""
    top = values[np.argmax(np.abs(values))]
    return complex(top.real, abs(top.imag))


def draw_network(seed, scale):
    rng = np.random.default_rng(seed)
    m = rng.uniform(-1, 1, N) / np.sqrt(N)
    z = scale * rng.uniform(-1, 1, N) / np.sqrt(N)
    u = scale * rng.normal(size=N) / np.sqrt(N)
    v = scale * rng.normal(size=N) / np.sqrt(N)
    return m, z, u, v


# ---------------------------------------------------------------------------------------------
# the cubic and the full spectrum


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale", [1.0, 3.0, 8.0, 20.0])
def test_cubic_roots_are_the_nonzero_spectrum_of_the_full_coupled_matrix(seed, scale):
    m, z, u, v = draw_network(seed, scale)
    agent = LowRankRNN(n_inputs=1, n_outputs=1, size=N, activation="linear")
    params = {"m": m[:, None], "z": z[None, :], "u": u[:, None], "v": v[:, None]}
    P_hand = full_coupled_matrix(m, z, u, v)
    P = coupled_matrix(double_integrator(), agent.linearisation(params))
    np.testing.assert_allclose(P, P_hand, rtol=0, atol=1e-15)

    overlaps = order_parameters(params)
    np.testing.assert_allclose([overlaps[k] for k in NAMES], [z @ m, z @ u, v @ m, v @ u],
                               rtol=1e-14, atol=1e-16)
    roots = theory.cubic_roots(**overlaps)
    assert roots.shape == (3,)
    assert np.abs(roots).min() > 1e-3  # the three non-zero eigenvalues are not ~0

    spectrum = np.linalg.eigvals(P_hand)
    matched, rest = match(roots, spectrum)
    np.testing.assert_allclose(matched, roots, rtol=0, atol=1e-8)
    assert rest.shape == (N - 1,)
    assert np.abs(rest).max() < 1e-8

    # the same three roots (plus one zero) are the spectrum of P_eff
    reduced = theory.reduced_matrix(**overlaps)
    np.testing.assert_array_equal(reduced, p_eff(*(overlaps[k] for k in NAMES)))
    matched, rest = match(roots, np.linalg.eigvals(reduced))
    np.testing.assert_allclose(matched, roots, rtol=0, atol=1e-10)
    assert np.abs(rest).max() < 1e-10


def test_cubic_roots_broadcast_over_a_history():
    rng = np.random.default_rng(11)
    history = rng.normal(scale=0.3, size=(7, 4))
    roots = theory.cubic_roots(*history.T)
    assert roots.shape == (7, 3)
    for row, r in zip(history, roots, strict=True):
        matched, rest = match(r, np.linalg.eigvals(p_eff(*row)))
        np.testing.assert_allclose(matched, r, rtol=0, atol=1e-10)
        assert np.abs(rest).max() < 1e-10


@pytest.mark.parametrize("s_zm", [0.09, 0.25, -0.04, -0.3])
@pytest.mark.parametrize("which_zero", ["s_vm", "s_zu"])
def test_exact_factorisation_without_memory(s_zm, which_zero):
    s_vu = 0.37
    s_zu, s_vm = (0.8, 0.0) if which_zero == "s_vm" else (0.0, -0.6)
    roots = theory.cubic_roots(s_zm, s_zu, s_vm, s_vu)
    sqrt = np.sqrt(complex(s_zm))  # imaginary for s_zm < 0
    expected = np.array([s_vu, 1 + sqrt, 1 - sqrt])
    matched, _ = match(expected, roots)
    np.testing.assert_allclose(matched, expected, rtol=0, atol=1e-12)
    if s_zm < 0:
        assert np.abs(roots.imag).max() == pytest.approx(np.sqrt(-s_zm), abs=1e-12)
    else:
        assert np.abs(roots.imag).max() < 1e-12
    # lambda_3's correction vanishes, lambda_1's expansion point is the exact root
    assert theory.lambda3_approximation(s_zm, s_zu, s_vm, s_vu) == pytest.approx(s_vu, abs=0)
    assert complex(theory.lambda1_second_order(s_zm, s_zu, s_vm, s_vu)) == pytest.approx(
        1 + sqrt, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# the perturbative approximations


def exact_roots(s_zm, s_zu, s_vm, s_vu):
    """The three non-zero eigenvalues of the hand-written P_eff (drop the exact zero)."""
    values = np.linalg.eigvals(p_eff(s_zm, s_zu, s_vm, s_vu))
    return np.delete(values, np.argmin(np.abs(values)))


def log_log_slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


EPS = np.geomspace(1e-4, 1e-2, 9)  # the memory product s_vm * s_zu


@pytest.mark.parametrize("s_zm, s_zu, s_vu", [(-0.02, 0.5, 0.3), (0.05, 0.5, 0.2),
                                               (-0.05, -0.7, -0.2)])
def test_lambda3_error_is_second_order_in_the_memory_product(s_zm, s_zu, s_vu):
    errors = []
    for eps in EPS:
        s_vm = eps / s_zu
        roots = exact_roots(s_zm, s_zu, s_vm, s_vu)
        lambda3 = roots[np.argmin(np.abs(roots - s_vu))]
        assert abs(lambda3.imag) < 1e-12
        errors.append(abs(theory.lambda3_approximation(s_zm, s_zu, s_vm, s_vu) - lambda3.real))
    errors = np.array(errors)
    assert errors.min() > 1e-13  # far above round-off, so the fitted slope means something
    assert log_log_slope(EPS, errors) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("s_zm, s_zu, s_vu", [(-0.1, 0.5, 0.3), (0.05, 0.5, 0.2),
                                               (-0.05, -0.7, -0.2)])
def test_lambda1_second_order_error_is_third_order_and_beats_first_order(s_zm, s_zu, s_vu):
    l0 = 1 + np.sqrt(complex(s_zm))
    second_errors, first_errors = [], []
    for eps in EPS:
        s_vm = eps / s_zu
        roots = exact_roots(s_zm, s_zu, s_vm, s_vu)
        lambda1 = roots[np.argmin(np.abs(roots - l0))]
        # first order by hand: f(l) = (l - s_vu)(l^2 - 2l + 1 - s_zm) - eps, f'(l0) below
        first = l0 + eps / ((l0 - s_vu) * 2 * (l0 - 1))
        second = complex(theory.lambda1_second_order(s_zm, s_zu, s_vm, s_vu))
        second_errors.append(abs(second - lambda1))
        first_errors.append(abs(first - lambda1))
    second_errors, first_errors = np.array(second_errors), np.array(first_errors)
    assert second_errors.min() > 1e-14
    assert log_log_slope(EPS, second_errors) == pytest.approx(3.0, abs=0.15)
    assert log_log_slope(EPS, first_errors) == pytest.approx(2.0, abs=0.1)
    assert np.all(second_errors < 0.1 * first_errors)


@pytest.mark.parametrize("seed", range(5))
def test_pair_modulus_with_exact_lambda3_is_the_product_of_the_other_roots(seed):
    rng = np.random.default_rng(100 + seed)
    s_zm, s_zu, s_vm, s_vu = rng.normal(scale=[0.1, 0.5, 0.1, 0.3])
    roots = exact_roots(s_zm, s_zu, s_vm, s_vu)
    real = roots[np.abs(roots.imag) < 1e-12]
    lambda3 = real[np.argmin(np.abs(real - s_vu))].real
    others = np.delete(roots, np.argmin(np.abs(roots - lambda3)))
    product = others[0] * others[1]
    assert abs(product.imag) < 1e-12
    value = theory.pair_modulus_squared(s_zm, s_zu, s_vm, s_vu, lambda3=lambda3)
    assert float(value) == pytest.approx(product.real, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# the surrogate's two terms


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("horizon", [10, 20])
def test_surrogate_terms_match_matrix_power_and_pair_modulus(seed, horizon):
    rng = np.random.default_rng(200 + seed)
    overlaps = rng.normal(scale=[0.1, 0.3, 0.1, 0.3])
    stability, myopic = theory.surrogate_terms(jnp.asarray(overlaps), horizon)
    cube = np.linalg.matrix_power(p_eff(*overlaps), 3)
    assert float(myopic) == pytest.approx(np.sum(cube[:2, :2] ** 2), rel=1e-13)
    expected = theory.pair_modulus_squared(*overlaps) ** horizon
    assert float(stability) == pytest.approx(float(expected), rel=1e-12)


def test_surrogate_stability_term_tracks_the_exact_pair_modulus():
    # L_inf uses the lambda_3 approximation, so it equals the exact |lambda_1|^(2 T_s) of the
    # hand-written P_eff up to a relative error that is second order in s_vm s_zu
    errors = []
    for eps in EPS:
        overlaps = np.array([-0.03, 0.5, eps / 0.5, 0.2])
        stability, _ = theory.surrogate_terms(jnp.asarray(overlaps), 20)
        roots = exact_roots(*overlaps)
        pair = roots[np.abs(roots.imag) > 1e-9]
        assert pair.shape == (2,)
        exact = np.abs(pair[0]) ** 40
        errors.append(abs(float(stability) / exact - 1))
    assert errors[0] < 1e-5
    assert log_log_slope(EPS, np.array(errors)) == pytest.approx(2.0, abs=0.1)


def test_surrogate_terms_batch_and_differentiate():
    rng = np.random.default_rng(5)
    overlaps = jnp.asarray(rng.normal(scale=0.1, size=(3, 4)))
    stability, myopic = theory.surrogate_terms(overlaps)
    assert stability.shape == myopic.shape == (3,)
    gradient = np.asarray(jax.grad(lambda o: theory.surrogate_terms(o)[1].sum())(overlaps))
    # finite differences of the hand-written Frobenius norm of (P_eff^3)[:2, :2]

    def frob(values):
        cube = np.linalg.matrix_power(p_eff(*values), 3)
        return np.sum(cube[:2, :2] ** 2)

    h = 1e-6
    base = np.asarray(overlaps)
    for row in range(3):
        grad = [(frob(base[row] + h * e) - frob(base[row] - h * e)) / (2 * h)
                for e in np.eye(4)]
        np.testing.assert_allclose(gradient[row], grad, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# stage 1


def simulate_position_feedback(s_zm, steps, x0=(1.0, -1.0)):
    """0.5 sum_{t=0}^{T} |x_t|^2 of x_{t+1} = A x_t + B s_zm x_t^(1), written independently."""
    closed = np.array([[1.0, 1.0], [s_zm, 1.0]])
    x = np.array(x0, dtype=np.float64)
    total = 0.0
    for _ in range(steps + 1):
        total += 0.5 * float(x @ x)
        x = closed @ x
    return total


REGIME = np.r_[-np.linspace(0.2, 0.05, 16), np.linspace(0.05, 0.2, 16)]


def test_stage1_simulation_matches_an_independent_simulation():
    simulated = theory.position_feedback_loss(REGIME, steps=100)
    independent = [simulate_position_feedback(s, 100) for s in REGIME]
    np.testing.assert_allclose(simulated, independent, rtol=1e-12)
    assert float(theory.position_feedback_loss(0.0, steps=3)) == pytest.approx(
        simulate_position_feedback(0.0, 3), rel=1e-15)


def test_stage1_formula_agrees_with_simulation_within_a_constant_in_log_space():
    formula = np.log10(theory.stage1_loss(REGIME, steps=100))
    simulated = np.log10([simulate_position_feedback(s, 100) for s in REGIME])
    # L spans ~4 to ~32 decades across the regime ...
    assert simulated.min() < 4.5 and simulated.max() > 31
    # ... and the formula is within 1.1 decades everywhere. It cannot be exact: it keeps the
    # dominant mode's exponential rate r but drops the mode's prefactor (the projection of
    # x0 = (1, -1) onto the mode, and the other mode), which is a constant offset in log space.
    np.testing.assert_array_less(np.abs(formula - simulated), 1.1)
    # the package's own simulation is the same quantity
    np.testing.assert_allclose(np.log10(theory.position_feedback_loss(REGIME, 100)), simulated,
                               rtol=1e-12)


def test_stage1_formula_has_the_right_rate():
    rate = np.where(REGIME > 0, (1 + np.sqrt(np.abs(REGIME))) ** 2, 1 + np.abs(REGIME))
    # r is |1 + sqrt(s_zm)|^2, the squared modulus of the dominant eigenvalue of A + B K
    radius = [np.abs(np.linalg.eigvals(np.array([[1.0, 1.0], [s, 1.0]]))).max()
              for s in REGIME]
    np.testing.assert_allclose(rate, np.square(radius), rtol=1e-12)
    measured = np.array([np.log(simulate_position_feedback(s, 400)
                                / simulate_position_feedback(s, 200)) / 200 for s in REGIME])
    np.testing.assert_allclose(measured, np.log(rate), rtol=0.02)
    # and the formula's growth between the two horizons is exactly that rate to leading order
    formula = np.log(theory.stage1_loss(REGIME, 400) / theory.stage1_loss(REGIME, 200)) / 200
    np.testing.assert_allclose(formula, np.log(rate), rtol=0.02)


def test_stage1_loss_is_asymmetric():
    s = np.r_[0.0501, np.linspace(0.05, 0.2, 16)[1:]]  # s in (0.05, 0.2]
    formula_neg, formula_pos = theory.stage1_loss(-s), theory.stage1_loss(s)
    sim_neg = np.array([simulate_position_feedback(-x, 100) for x in s])
    sim_pos = np.array([simulate_position_feedback(x, 100) for x in s])
    np.testing.assert_array_less(formula_neg, formula_pos)
    np.testing.assert_array_less(sim_neg, sim_pos)


def test_stage1_loss_closed_form_values():
    # geometric sums by hand: r = 1.21 for s = 0.01 (r = 1.1^2), r = 1.01 for s = -0.01
    for s, r in [(0.01, 1.21), (-0.01, 1.01)]:
        expected = 0.5 * sum(r ** k for k in range(11))
        assert float(theory.stage1_loss(s, steps=10)) == pytest.approx(expected, rel=1e-12)
    assert float(theory.stage1_loss(0.0, steps=10)) == 5.5


# ---------------------------------------------------------------------------------------------
# stage 2: gradient descent on the surrogate


@pytest.fixture(scope="module")
def sweep():
    alphas = np.round(np.arange(0.30, 0.4501, 0.01), 10)
    paths = {float(a): theory.descend_surrogate(STAGE2_START, float(a)) for a in alphas}
    for a in (0.0, 1.0):
        paths[a] = theory.descend_surrogate(STAGE2_START, a)
    return paths


def test_stage2_start_is_just_outside_the_unit_circle():
    start = np.array([STAGE2_START[k] for k in NAMES])
    top = dominant(np.linalg.eigvals(p_eff(*start)))
    assert top == pytest.approx(1.0003 + 0.139j, abs=5e-4)
    assert abs(top) > 1


def test_surrogate_alpha_zero_moves_up_and_never_stabilises(sweep):
    path = sweep[0.0]
    assert path.overlaps.shape == (201, 4) and path.eigenvalue.shape == (201,)
    assert path.crossing_step is None and path.crossing_eigenvalue is None
    assert np.all(np.abs(path.eigenvalue) >= 1.0)
    assert path.eigenvalue[-1].imag > path.eigenvalue[0].imag + 0.1
    assert np.all(np.diff(path.eigenvalue.imag) > 0)


def test_surrogate_alpha_one_moves_down(sweep):
    path = sweep[1.0]
    assert 1 < path.valid < 201  # the pair collides on the real axis
    valid = path.eigenvalue[:path.valid]
    assert np.all(np.diff(valid.imag) < 0)
    assert valid[-1].imag < 0.2 * valid[0].imag


def test_surrogate_crossing_imaginary_part_falls_with_alpha(sweep):
    crossing = {a: p.crossing_eigenvalue for a, p in sweep.items()
                if 0.3 <= a <= 0.45 and p.crossing_step is not None}
    assert len(crossing) >= 5  # a window of alphas crosses
    for a, value in crossing.items():
        path = sweep[a]
        assert path.crossing_step < path.valid
        assert abs(value) < 1 and np.all(np.abs(path.eigenvalue[:path.crossing_step]) >= 1)
    alphas = sorted(crossing)
    imag = np.array([crossing[a].imag for a in alphas])
    assert np.all(np.diff(imag) < 0), dict(zip(alphas, imag, strict=True))
    # the alphas that cross form one window of the scanned grid
    grid = sorted(a for a in sweep if 0.3 <= a <= 0.45)
    assert alphas == grid[grid.index(alphas[0]):grid.index(alphas[-1]) + 1]


def test_surrogate_crossing_point_is_on_the_unit_circle_between_the_steps(sweep):
    crossed = [p for p in sweep.values() if p.crossing_step is not None]
    assert crossed
    for path in crossed:
        point, step = path.crossing_point, path.crossing_step
        before, after = path.eigenvalue[step - 1], path.eigenvalue[step]
        assert abs(point) == pytest.approx(1.0, abs=1e-12)
        # on the segment between the last step outside and the first inside
        t = (point - before) / (after - before)
        assert abs(t.imag) < 1e-9 and 0 <= t.real <= 1


def test_surrogate_path_eigenvalue_is_the_dominant_root_of_p_eff(sweep):
    for path in sweep.values():
        expected = np.array([dominant(np.linalg.eigvals(p_eff(*row))) for row in path.overlaps])
        np.testing.assert_allclose(path.eigenvalue, expected, rtol=0, atol=1e-7)
        # the crossing step is the first |lambda| < 1 inside the valid part, by hand
        inside = np.flatnonzero(np.abs(expected[:path.valid]) < 1)
        assert path.crossing_step == (int(inside[0]) if inside.size else None)
        # valid: the pair is complex at every step before it
        assert np.all(np.abs(expected[:path.valid].imag) > 1e-9)


def test_surrogate_first_step_is_clipped_gradient_descent():
    # one SGD step (alpha = 0: L_eff = L_0) with global-norm clipping; the gradient of the
    # hand-written L_0 = sum of squares of (P_eff^3)[:2, :2] by the complex-step derivative
    # (L_0 is a polynomial, so Im L_0(x + i h e_k) / h is its exact partial derivative)
    start = np.array([STAGE2_START[k] for k in NAMES])

    def myopic(values):
        cube = np.linalg.matrix_power(p_eff(*values), 3)  # complex entries stay complex
        return np.sum(cube[:2, :2] ** 2)

    h = 1e-30
    grad = np.array([myopic(start + 1j * h * e).imag / h for e in np.eye(4)])
    norm = np.linalg.norm(grad)
    assert norm > 1.0  # the clip is active
    # global-norm clipping as PyTorch's clip_grad_norm_: scale by max_norm / (total_norm + 1e-6)
    step = 1e-3 * grad * (1.0 / (norm + 1e-6))
    path = theory.descend_surrogate(STAGE2_START, 0.0, steps=1)
    np.testing.assert_allclose(path.overlaps[1], start - step, rtol=0, atol=1e-11)
    unclipped = theory.descend_surrogate(STAGE2_START, 0.0, steps=1, clip_norm=None, lr=1e-4)
    np.testing.assert_allclose(unclipped.overlaps[1], start - 1e-4 * grad, rtol=0, atol=1e-11)
