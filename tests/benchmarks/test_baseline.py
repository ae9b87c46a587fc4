"""The benchmark baseline (eager PyTorch) runs the paper's algorithm: fed the golden weights
and batches of tests/data/golden, it reproduces the authors' losses, gradient norms before
clipping and updated weights to the golden tolerances (losses and norms 1e-5 relative,
weights 1e-6 absolute), for di-tanh-closed and tracking-closed. Its analysis (test loss,
gains, eig(P), eig(W), batched over snapshots) equals a plain per-snapshot NumPy loop written
here from the science."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks.baseline import DoubleIntegrator, Tracking  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _load(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text())


def _check_after(problem: DoubleIntegrator | Tracking, golden: dict) -> None:
    for name, expected in golden["after"].items():
        ours = problem.params[name].detach().double().numpy()
        np.testing.assert_allclose(ours, np.array(expected, dtype=np.float64), rtol=0,
                                   atol=1e-6, err_msg=name)


def test_double_integrator_reproduces_authors_implementation() -> None:
    golden = _load("di_tanh_closed.json")
    problem = DoubleIntegrator(golden["initial"])
    for epoch, expected_loss in enumerate(golden["loss"]):
        x0 = torch.tensor(golden["x0"][epoch], dtype=torch.float32)
        loss, norm = problem.step({"x0": x0})
        assert loss == pytest.approx(expected_loss, rel=1e-5), f"epoch {epoch} loss"
        assert norm == pytest.approx(golden["grad_norm_before_clip"][epoch], rel=1e-5), \
            f"epoch {epoch} norm"
    _check_after(problem, golden)


def test_tracking_reproduces_authors_implementation() -> None:
    golden = _load("tracking_closed.json")
    problem = Tracking(golden["initial"])
    for epoch, expected_loss in enumerate(golden["loss"]):
        draw = golden["references"][epoch]
        phases = torch.tensor(np.stack([draw["phases_x"], draw["phases_y"]], axis=1),
                              dtype=torch.float64)
        loss, _ = problem.step({"reference": problem.reference(phases)})
        assert loss == pytest.approx(expected_loss, rel=1e-5), f"epoch {epoch} loss"
    _check_after(problem, golden)
    np.testing.assert_array_equal(problem.params["W_in"].numpy(),
                                  np.array(golden["initial"]["W_in"], dtype=np.float32))


def test_reference_is_the_sum_of_ramped_sinusoids() -> None:
    """r(t) = clip(t, 0, 1) sum_k 2.31 cos(2 pi f_k t + phi_k) at t = i * 0.1 (science 6)."""
    problem = Tracking(size=4, batch_size=2, steps=30)
    phases = torch.tensor([[[0.3, -1.0], [2.0, 0.5]], [[0.0, 0.0], [-3.0, 1.0]]],
                          dtype=torch.float64)
    t = np.linspace(0, 3.0, 30, endpoint=False)
    frequencies = [[0.1, 0.3], [0.2, 0.4]]
    expected = np.zeros((30, 2, 2))
    for b in range(2):
        for axis in range(2):
            for k in range(2):
                expected[:, b, axis] += 2.31 * np.cos(2 * np.pi * frequencies[axis][k] * t
                                                      + phases[b, axis, k].item())
    expected *= np.clip(t, 0, 1)[:, None, None]
    np.testing.assert_allclose(problem.reference(phases).numpy(), expected, atol=1e-5)


def _coupled(A: np.ndarray, B: np.ndarray, C: np.ndarray, W_in: np.ndarray, W: np.ndarray,
             W_out: np.ndarray, alpha: float) -> np.ndarray:
    """Science 3, column-vector maths, from row-layout weights (observation inputs first)."""
    Wi, Wc, Wo = W_in.T[:, : C.shape[0]], W.T, W_out.T
    size = W.shape[0]
    return np.block([[A, B @ Wo],
                     [alpha * Wi @ C @ A,
                      (1 - alpha) * np.eye(size) + alpha * (Wc + Wi @ C @ B @ Wo)]])


def _check_spectrum(ours: np.ndarray, expected: np.ndarray, atol: float = 1e-7) -> None:
    """The same eigenvalues (in any order of equal moduli: conjugate pairs tie), ours sorted
    by decreasing modulus. Near the plant's double eigenvalue at 1 a rounding difference of
    the matrix moves eigenvalues by about its square root, hence 1e-7 (the matrices
    themselves are compared to 1e-12)."""
    assert ours.shape == expected.shape
    assert np.all(np.diff(np.abs(ours)) <= atol)
    distance = np.abs(ours[:, None] - expected[None, :])
    assert distance.min(axis=0).max() <= atol and distance.min(axis=1).max() <= atol


def test_double_integrator_analysis_equals_a_per_snapshot_loop() -> None:
    problem = DoubleIntegrator(size=6, batch_size=5, steps=7, lr=0.5)
    history = problem.train(3)
    report = problem.analyse(history)
    A = np.array([[1.0, 1.0], [0.0, 1.0]])
    B, C = np.array([[0.0], [1.0]]), np.array([[1.0, 0.0]])
    x0 = problem.test_x0.double().numpy()
    assert len(history.snapshots) == 4 and np.isnan(history.grad_norm[0])
    for index, snapshot in enumerate(history.snapshots):
        W_in, W, W_out = (snapshot[k].double().numpy() for k in ("W_in", "W", "W_out"))
        x, h, u = x0, np.zeros((len(x0), 6)), np.zeros((len(x0), 1))
        states, controls = [x], [u]
        for _ in range(1, 7):  # u_0 = 0, no update at t = 0
            x = x @ A.T + u @ B.T
            h = np.tanh(h @ W + x[:, :1] @ W_in)
            u = h @ W_out
            states.append(x)
            controls.append(u)
        X, U = np.array(states), np.array(controls)
        assert report.test_loss[index] == pytest.approx(np.mean(X ** 2), rel=1e-5)
        gains = np.linalg.lstsq(X[1:].reshape(-1, 2), U[1:].reshape(-1, 1), rcond=None)[0].T
        np.testing.assert_allclose(report.gains[index], gains, rtol=1e-4, atol=1e-7)
        P = _coupled(A, B, C, W_in, W, W_out, 1.0)
        np.testing.assert_allclose(problem.coupled_matrices(W_in[None], W[None], W_out[None])[0],
                                   P, rtol=0, atol=1e-12)
        eig_P = np.linalg.eigvals(P)
        _check_spectrum(report.coupled_eigenvalues[index], eig_P)
        _check_spectrum(report.recurrent_eigenvalues[index], np.linalg.eigvals(W))
        assert report.spectral_radius[index] == pytest.approx(np.abs(eig_P).max())


def test_tracking_analysis_equals_a_per_snapshot_loop() -> None:
    problem = Tracking(size=6, batch_size=3, steps=12, test_size=2, lr=0.05)
    history = problem.train(2)
    report = problem.analyse(history)
    assert report.gains is None and np.isnan(history.train_loss[0])
    dt = 0.1
    one = np.array([[1.0, dt], [0.0, 1.0]])
    A = np.kron(np.eye(2), one)
    B = np.kron(np.eye(2), np.array([[0.0], [dt]]))
    C = np.kron(np.eye(2), np.array([[1.0, 0.0]]))
    reference = problem.test_reference.double().numpy()  # (T, batch, 2)
    for index, snapshot in enumerate(history.snapshots):
        W_in, W, W_out = (snapshot[k].double().numpy() for k in ("W_in", "W", "W_out"))
        x, h, total = np.zeros((2, 4)), np.zeros((2, 6)), 0.0
        for t in range(12):
            y = np.concatenate([x @ C.T, reference[t]], axis=1)
            h = h + dt * (-h + h @ W + y @ W_in)
            x = np.clip(x @ A.T + (h @ W_out) @ B.T, -10, 10)
            total += dt * np.sum(np.mean((x @ C.T - reference[t]) ** 2, axis=0)) / 12
        assert report.test_loss[index] == pytest.approx(total, rel=1e-5)
        P = _coupled(A, B, C, W_in, W, W_out, dt)
        np.testing.assert_allclose(problem.coupled_matrices(W_in[None], W[None], W_out[None])[0],
                                   P, rtol=0, atol=1e-12)
        _check_spectrum(report.coupled_eigenvalues[index], np.linalg.eigvals(P))
    np.testing.assert_array_equal(history.snapshots[0]["W_in"], history.snapshots[-1]["W_in"])


def test_docstring_examples() -> None:
    import doctest

    from benchmarks import baseline

    failures, tried = doctest.testmod(baseline)
    assert tried >= 2 and failures == 0
