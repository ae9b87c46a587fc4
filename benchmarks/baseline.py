"""The baseline closedloop is measured against: the paper's algorithm in eager PyTorch.

This is what a careful user would write instead of using closedloop, following the paper's
notebooks: one eager loop per epoch (a Python ``for`` over the time steps, autograd through
it, ``torch.optim``), nothing rebuilt per step (the plant matrices are built once, the zero
initial state and control are allocated once), the parameters copied into a list every
epoch, and everything else computed *afterwards* from those snapshots: the test loss (one
rollout batched over all snapshots), the effective gains (least squares per snapshot) and
eig(P), eig(W) (NumPy, float64, batched). Training and analysis are timed separately.

Two problems of the paper (science 1-2, 5, 6):

* :class:`DoubleIntegrator` (preset ``di-tanh-closed``): tanh RNN, dt = tau = 1, N = 100;
  the double integrator observed in position; u_0 = 0 and no RNN update at t = 0; loss
  sum_t mean x_t^2 + 0.005 sum_batch u_t^2 over t = 0..T-1; SGD 1e-2, clip 1.0
  (``clip_grad_norm_``); epoch 0 evaluates a batch without updating.
* :class:`Tracking` (preset ``tracking-closed``): linear CT-RNN, dt/tau = 0.1; the 2-D point
  mass clamped to [-10, 10]; references of sums of sinusoids; Adam 1e-3, no clipping,
  W_in frozen.

Layout as the authors': row vectors, ``h @ W + y @ W_in``, ``u = h @ W_out`` (stored
matrices are the transposes of the column-vector maths).

The test suite checks both against the authors' golden numbers (losses, gradient norms,
updated weights), so the baseline provably runs the same algorithm as closedloop.

Command line (the benchmark runs it in a subprocess)::

    python benchmarks/baseline.py di-tanh-closed --epochs 1000 [--analysis] [--threads N]

prints one JSON object: ``train_s`` (the training loop alone), ``steady_epoch_s`` (the mean
epoch after the first update), ``analysis_s``, the final test loss and gains.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Batch = dict[str, torch.Tensor]


@dataclass
class History:
    """What training keeps: per epoch the loss, the gradient norm before clipping (NaN where
    no update was made), a copy of every parameter, and the epoch's wall time."""

    train_loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)


@dataclass
class Analysis:
    """Computed afterwards from the snapshots, per epoch: test loss, effective gains
    (regulation), eig(P) and eig(W) sorted by decreasing modulus, and rho(P)."""

    test_loss: np.ndarray
    gains: np.ndarray | None
    coupled_eigenvalues: np.ndarray
    recurrent_eigenvalues: np.ndarray
    spectral_radius: np.ndarray


def _sorted_by_modulus(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-np.abs(values), axis=-1, kind="stable")
    return np.take_along_axis(values, order, axis=-1)


class Baseline(abc.ABC):
    """What both problems share: parameters, optimiser, the training loop, the analysis.

    Parameters
    ----------
    weights
        Initial ``W_in``, ``W``, ``W_out`` (row layout); None draws them from ``seed``.
    seed
        Seeds the initialisation and the training batches (a ``torch.Generator``).
    """

    size: int
    alpha: float  # dt / tau of the RNN
    clip: float | None
    frozen: tuple[str, ...] = ()
    initial_epoch_no_update: bool = False
    A: torch.Tensor  # the plant, float64
    B: torch.Tensor
    C: torch.Tensor

    def __init__(self, weights: Mapping[str, Any] | None, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        if weights is None:
            weights = self.initial_weights()
        self.params = {name: torch.tensor(np.asarray(weights[name]), dtype=torch.float32)
                       for name in ("W_in", "W", "W_out")}
        self.trained = [p.requires_grad_(True) for name, p in self.params.items()
                        if name not in self.frozen]
        self.optimizer = self.make_optimizer(self.trained)
        # the plant in row layout, built once: x_{t+1} = x A^T + u B^T, y = x C^T (float32;
        # the analysis uses the float64 matrices)
        self.At, self.Bt, self.Ct = (m.T.to(torch.float32).contiguous()
                                     for m in (self.A, self.B, self.C))

    # -- to be provided by a problem ------------------------------------------------------

    @abc.abstractmethod
    def initial_weights(self) -> dict[str, torch.Tensor]:
        """The paper's initial W_in, W, W_out, drawn from ``self.generator``."""

    @abc.abstractmethod
    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        """The paper's optimiser for the trained ``params``."""

    @abc.abstractmethod
    def draw(self) -> Batch:
        """One training batch."""

    @abc.abstractmethod
    def loss(self, batch: Batch) -> torch.Tensor:
        """The training loss on ``batch`` (autograd through the rollout)."""

    @abc.abstractmethod
    def test_losses(self, stacked: dict[str, torch.Tensor]) -> tuple[np.ndarray, Any]:
        """Test loss of every snapshot (stacked on a leading axis) and the data for the
        gains."""

    def gains(self, data: Any) -> np.ndarray | None:
        return None

    # -- training ---------------------------------------------------------------------------

    def step(self, batch: Batch) -> tuple[float, float]:
        """One update on ``batch``: (loss before it, gradient 2-norm before clipping)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(batch)
        loss.backward()
        if self.clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.trained, self.clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.trained])
        self.optimizer.step()
        return loss.item(), norm.item()

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.params.items()}

    def train(self, epochs: int) -> History:
        """Epoch 0 (a loss without update for the paper's nonlinear problem; otherwise only
        the initial parameters), then ``epochs`` updates, a snapshot after each."""
        history = History()
        for epoch in range(epochs + 1):
            started = time.perf_counter()
            if epoch == 0:
                loss = math.nan
                if self.initial_epoch_no_update:
                    with torch.no_grad():
                        loss = self.loss(self.draw()).item()
                norm = math.nan
            else:
                loss, norm = self.step(self.draw())
            history.train_loss.append(loss)
            history.grad_norm.append(norm)
            history.snapshots.append(self.snapshot())
            history.epoch_s.append(time.perf_counter() - started)
        return history

    # -- analysis ---------------------------------------------------------------------------

    def coupled_matrices(self, W_in: np.ndarray, W: np.ndarray, W_out: np.ndarray
                         ) -> np.ndarray:
        """P of every snapshot (science 3), float64, column-vector maths: from the row-layout
        snapshots (K, n_in, N), (K, N, N), (K, N, n_u)."""
        A, B, C = (m.numpy() for m in (self.A, self.B, self.C))
        n_x, n_y, size = A.shape[0], C.shape[0], W.shape[-1]
        W_in_c = W_in.transpose(0, 2, 1)[:, :, :n_y]  # the observation inputs (N, n_y)
        W_c, W_out_c = W.transpose(0, 2, 1), W_out.transpose(0, 2, 1)
        count, a = W.shape[0], self.alpha
        P = np.empty((count, n_x + size, n_x + size))
        P[:, :n_x, :n_x] = A
        P[:, :n_x, n_x:] = B @ W_out_c
        P[:, n_x:, :n_x] = a * W_in_c @ (C @ A)
        P[:, n_x:, n_x:] = (1 - a) * np.eye(size) + a * (W_c + W_in_c @ (C @ B) @ W_out_c)
        return P

    def analyse(self, history: History) -> Analysis:
        """Test loss, gains, eig(P), eig(W) of every snapshot."""
        with torch.no_grad():
            stacked = {name: torch.stack([s[name] for s in history.snapshots])
                       for name in ("W_in", "W", "W_out")}
            test_loss, data = self.test_losses(stacked)
        arrays = {name: value.double().numpy() for name, value in stacked.items()}
        coupled = _sorted_by_modulus(np.linalg.eigvals(self.coupled_matrices(
            arrays["W_in"], arrays["W"], arrays["W_out"])))
        recurrent = _sorted_by_modulus(np.linalg.eigvals(arrays["W"]))
        return Analysis(test_loss=test_loss, gains=self.gains(data),
                        coupled_eigenvalues=coupled, recurrent_eigenvalues=recurrent,
                        spectral_radius=np.abs(coupled[:, 0]))


class DoubleIntegrator(Baseline):
    """``di-tanh-closed`` (science 1.1-1.5, 5): tanh RNN on the double integrator.

    Example
    -------
    >>> problem = DoubleIntegrator(size=8, batch_size=4, steps=5)
    >>> history = problem.train(2)
    >>> len(history.snapshots), problem.analyse(history).coupled_eigenvalues.shape
    (3, (3, 10))
    """

    alpha = 1.0
    initial_epoch_no_update = True
    A = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    B = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    C = torch.tensor([[1.0, 0.0]], dtype=torch.float64)

    def __init__(self, weights: Mapping[str, Any] | None = None, *, size: int = 100,
                 batch_size: int = 100, steps: int = 50, control_cost: float = 0.005,
                 lr: float = 1e-2, clip: float | None = 1.0, seed: int = 0,
                 test_size: int = 10, test_seed: int = 20250513) -> None:
        self.size, self.batch_size, self.steps = size, batch_size, steps
        self.control_cost, self.lr, self.clip = control_cost, lr, clip
        super().__init__(weights, seed)
        self.h0 = torch.zeros(batch_size, size)
        self.u0 = torch.zeros(batch_size, 1)
        self.x0 = torch.empty(batch_size, 2)
        test = torch.Generator().manual_seed(test_seed)
        self.test_x0 = torch.rand(test_size, 2, generator=test) * 2 - 1

    def initial_weights(self) -> dict[str, torch.Tensor]:
        n, g = self.size, self.generator
        return {"W_in": torch.randn(1, n, generator=g) / n,
                "W": 0.1 * torch.randn(n, n, generator=g) / math.sqrt(n),
                "W_out": torch.randn(n, 1, generator=g) / n}

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.lr)

    def draw(self) -> Batch:
        """x_0 ~ U(-1, 1)^2, fresh every epoch."""
        torch.rand(self.batch_size, 2, generator=self.generator, out=self.x0)
        return {"x0": self.x0.mul_(2).sub_(1)}

    def rollout(self, params: Mapping[str, torch.Tensor], x0: torch.Tensor,
                h0: torch.Tensor, u0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States x_0..x_{T-1} and controls u_0..u_{T-1} (T, ..., 2) and (T, ..., 1); leading
        axes of the parameters (snapshots) broadcast."""
        W_in, W, W_out = params["W_in"], params["W"], params["W_out"]
        x, h, u = x0, h0, u0
        states, controls = [x], [u]
        for _ in range(1, self.steps):
            x = x @ self.At + u @ self.Bt
            h = torch.tanh(h @ W + (x @ self.Ct) @ W_in)
            u = h @ W_out
            states.append(x)
            controls.append(u)
        return torch.stack(states), torch.stack(controls)

    def loss(self, batch: Batch) -> torch.Tensor:
        states, controls = self.rollout(self.params, batch["x0"], self.h0, self.u0)
        return (states.square().mean(dim=(1, 2)).sum()
                + self.control_cost * controls.square().sum())

    def test_losses(self, stacked: dict[str, torch.Tensor]
                    ) -> tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]:
        count, test = stacked["W"].shape[0], self.test_x0.shape[0]
        x0 = self.test_x0.expand(count, test, 2)
        states, controls = self.rollout(stacked, x0, torch.zeros(count, test, self.size),
                                        torch.zeros(count, test, 1))
        # the state cost, averaged over steps, batch and state dimensions
        return states.square().mean(dim=(0, 2, 3)).double().numpy(), (states, controls)

    def gains(self, data: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
        """u_t ~= K x_t by least squares on the test rollout, the first step dropped."""
        states, controls = data
        X = states[1:].transpose(0, 1).reshape(states.shape[1], -1, 2).double().numpy()
        U = controls[1:].transpose(0, 1).reshape(states.shape[1], -1, 1).double().numpy()
        return np.stack([np.linalg.lstsq(x, u, rcond=None)[0].T for x, u in zip(X, U,
                                                                                   strict=True)])


class Tracking(Baseline):
    """``tracking-closed`` (science 1.1-1.2, 6): linear CT-RNN on the clamped 2-D point mass.

    Example
    -------
    >>> problem = Tracking(size=8, batch_size=4, steps=6)
    >>> history = problem.train(1)
    >>> problem.analyse(history).coupled_eigenvalues.shape
    (2, 12)
    """

    frozen = ("W_in",)
    dt = 0.1
    alpha = 0.1  # dt / tau, tau = 1
    clamp = 10.0
    A = torch.tensor([[1.0, 0.1, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0],
                      [0.0, 0.0, 1.0, 0.1], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    B = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.0, 0.1]], dtype=torch.float64)
    C = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]], dtype=torch.float64)

    def __init__(self, weights: Mapping[str, Any] | None = None, *, size: int = 100,
                 batch_size: int = 100, steps: int = 300, lr: float = 1e-3, seed: int = 0,
                 frequencies: Sequence[Sequence[float]] = ((0.1, 0.3), (0.2, 0.4)),
                 amplitude: float = 2.31, ramp_time: float = 1.0, test_size: int = 10,
                 test_seed: int = 20250513) -> None:
        self.size, self.batch_size, self.steps, self.lr, self.clip = \
            size, batch_size, steps, lr, None
        self.amplitude = amplitude
        super().__init__(weights, seed)
        # the time grid, the ramp and 2 pi f, built once: t = linspace(0, T dt, T, no end)
        t = torch.arange(steps, dtype=torch.float64) * self.dt
        self.t = t
        self.ramp = torch.clamp(t / ramp_time, 0, 1) if ramp_time > 0 else torch.ones_like(t)
        self.omega = 2 * math.pi * torch.tensor(frequencies, dtype=torch.float64)
        self.h0 = torch.zeros(batch_size, size)
        self.x0 = torch.zeros(batch_size, 4)
        test = torch.Generator().manual_seed(test_seed)
        self.test_reference = self.reference(self.phases(test_size, test))

    def initial_weights(self) -> dict[str, torch.Tensor]:
        n, g, bound = self.size, self.generator, 1 / math.sqrt(self.size)
        return {"W_in": (torch.rand(4, n, generator=g) * 2 - 1) * bound,
                "W": 0.2 * torch.randn(n, n, generator=g) / math.sqrt(n),
                "W_out": (torch.rand(n, 2, generator=g) * 2 - 1) * bound}

    def make_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr)

    def phases(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Phases U(-pi, pi), (count, axes, frequencies)."""
        shape = (count, *self.omega.shape)
        return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi

    def reference(self, phases: torch.Tensor) -> torch.Tensor:
        """r_t per axis = ramp(t) sum_k a cos(2 pi f_k t + phi_k): (T, batch, axes)."""
        angle = self.omega[None, :, :, None] * self.t + phases[..., None]  # (b, axes, f, T)
        signal = self.ramp * self.amplitude * torch.cos(angle).sum(dim=2)   # (b, axes, T)
        return signal.permute(2, 0, 1).to(torch.float32).contiguous()

    def draw(self) -> Batch:
        return {"reference": self.reference(self.phases(self.batch_size, self.generator))}

    def errors(self, params: Mapping[str, torch.Tensor], reference: torch.Tensor,
               x0: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """Position errors x_{t+1} - r_t, (T, ..., 2)."""
        W_in, W, W_out = params["W_in"], params["W"], params["W_out"]
        x, h, errors = x0, h0, []
        for t in range(self.steps):
            r = reference[t]
            y = torch.cat((x @ self.Ct, r.expand(*x.shape[:-1], r.shape[-1])), dim=-1)
            h = h + self.alpha * (-h + h @ W + y @ W_in)
            x = torch.clamp(x @ self.At + (h @ W_out) @ self.Bt, -self.clamp, self.clamp)
            errors.append(x @ self.Ct - r)
        return torch.stack(errors)

    def loss(self, batch: Batch) -> torch.Tensor:
        """(1/T) sum_t dt [mean_batch (x_{t+1} - r_{x,t})^2 + mean_batch (y... )^2]."""
        errors = self.errors(self.params, batch["reference"], self.x0, self.h0)
        return errors.square().mean(dim=1).sum() * (self.dt / self.steps)

    def test_losses(self, stacked: dict[str, torch.Tensor]) -> tuple[np.ndarray, None]:
        count, test = stacked["W"].shape[0], self.test_reference.shape[1]
        reference = self.test_reference[:, None]  # broadcast over snapshots
        errors = self.errors(stacked, reference, torch.zeros(count, test, 4),
                             torch.zeros(count, test, self.size))
        return (errors.square().mean(dim=2).sum(dim=(0, 2)) * (self.dt / self.steps)
                ).double().numpy(), None


PROBLEMS: dict[str, type[Baseline]] = {"di-tanh-closed": DoubleIntegrator,
                                       "tracking-closed": Tracking}


def measure(preset: str, epochs: int, *, analysis: bool = True, seed: int = 0,
            threads: int | None = None) -> dict[str, Any]:
    """Train ``epochs`` epochs of ``preset`` (and analyse them); the times in seconds.
    ``threads`` limits torch's and NumPy's BLAS threads (None: their defaults)."""
    with contextlib.ExitStack() as stack:
        if threads:
            torch.set_num_threads(threads)
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # NumPy's BLAS keeps its default
                pass
            else:
                stack.enter_context(threadpool_limits(limits=threads))
        return _measure(preset, epochs, analysis, seed)


def _measure(preset: str, epochs: int, analysis: bool, seed: int) -> dict[str, Any]:
    problem = PROBLEMS[preset](seed=seed)
    started = time.perf_counter()
    history = problem.train(epochs)
    train_s = time.perf_counter() - started
    result: dict[str, Any] = {"preset": preset, "epochs": epochs, "train_s": train_s,
                              "torch_threads": torch.get_num_threads(),
                              # an update after the first (which warms torch up)
                              "steady_epoch_s": statistics.mean(history.epoch_s[2:])
                              if epochs >= 2 else None,
                              "final_train_loss": history.train_loss[-1]}
    if analysis:
        started = time.perf_counter()
        report = problem.analyse(history)
        result["analysis_s"] = time.perf_counter() - started
        result["final_test_loss"] = float(report.test_loss[-1])
        result["final_spectral_radius"] = float(report.spectral_radius[-1])
        if report.gains is not None:
            result["final_gains"] = report.gains[-1].ravel().tolist()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("preset", choices=sorted(PROBLEMS))
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--analysis", action="store_true", help="also analyse the snapshots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's and NumPy's BLAS threads (default: theirs)")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.preset, args.epochs, analysis=args.analysis, seed=args.seed,
                             threads=args.threads)))


if __name__ == "__main__":
    main()
