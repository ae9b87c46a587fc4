"""The naive baseline: SPEC 1.3-1.4 written the straightforward way, as in a notebook.

Every step builds the plant matrices as tensors, draws a zero-variance process-noise tensor,
and adds to the loss; the network is an ``nn.Module``; autograd does the rest. Recording is
done the same way: a second loop for the test loss, NumPy for eig(P) and eig(W), a
least-squares fit for the gains, and a copy of the weights, every epoch, kept in Python lists.
It computes exactly what closedloop computes (tests/test_bench.py checks one epoch against
it), only slowly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class NaiveRNN(nn.Module):
    """h_t = h + (dt/tau)(-h + phi(h W + y W_in)), u = h W_out (row layout)."""

    def __init__(self, weights: dict[str, torch.Tensor], activation: str, alpha: float) -> None:
        super().__init__()
        self.W_in = nn.Parameter(weights["W_in"].clone())
        self.W = nn.Parameter(weights["W"].clone())
        self.W_out = nn.Parameter(weights["W_out"].clone())
        self.activation, self.alpha = activation, alpha

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = h @ self.W + y @ self.W_in
        rate = torch.tanh(pre) if self.activation == "tanh" else pre
        h = h + self.alpha * (-h + rate)
        return h, h @ self.W_out


def plant_matrices(dt: float, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A, B, C of the double integrator or the 2-D point mass, built as tensors."""
    A = torch.tensor([[1.0, dt], [0.0, 1.0]])
    B = torch.tensor([[0.0], [dt]])
    C = torch.tensor([[1.0, 0.0]])
    if kind == "point_mass_2d":
        A, B, C = torch.block_diag(A, A), torch.block_diag(B, B), torch.block_diag(C, C)
    return A, B, C


def naive_closed_loop_loss(net: NaiveRNN, x0: torch.Tensor, steps: int, control_cost: float,
                           reference: torch.Tensor | None = None, dt: float = 1.0,
                           clamp: float | None = None) -> torch.Tensor:
    """The paper's loss (double integrator) or the tracking loss, accumulated step by step."""
    kind = "double_integrator" if reference is None else "point_mass_2d"
    x = x0
    h = torch.zeros(x0.shape[0], net.W.shape[0])
    loss = torch.zeros(())
    for t in range(steps):
        A, B, C = plant_matrices(dt, kind)
        noise = torch.randn(x.shape) * 0.0
        y = x @ C.T
        if reference is not None:
            y = torch.cat([y, reference[:, t]], dim=1)
        if t == 0 and reference is None:
            u = torch.zeros(x.shape[0], B.shape[1])
        else:
            h, u = net(h, y)
        if reference is None:
            loss = loss + (x ** 2).mean() + control_cost * (u ** 2).sum()
        x = x @ A.T + u @ B.T + noise
        if clamp is not None:
            x = torch.clamp(x, -clamp, clamp)
        if reference is not None:
            position = x @ C.T
            error = ((position - reference[:, t]) ** 2).mean(0).sum()
            loss = loss + dt * error / steps
    return loss


def naive_record(net: NaiveRNN, test_x0: torch.Tensor, steps: int, log: dict[str, list],
                 reference: torch.Tensor | None = None, dt: float = 1.0,
                 clamp: float | None = None) -> None:
    """Test loss, gains, eig(P), eig(W) and a weight copy, appended to ``log``."""
    with torch.no_grad():
        kind = "double_integrator" if reference is None else "point_mass_2d"
        x, h = test_x0, torch.zeros(test_x0.shape[0], net.W.shape[0])
        states, controls, total = [], [], 0.0
        for t in range(steps):
            A, B, C = plant_matrices(dt, kind)
            y = x @ C.T
            if reference is not None:
                y = torch.cat([y, reference[:, t]], dim=1)
            if t == 0 and reference is None:
                u = torch.zeros(x.shape[0], B.shape[1])
            else:
                h, u = net(h, y)
            states.append(x)
            controls.append(u)
            if reference is None:
                total += float((x ** 2).mean()) / steps
            x = x @ A.T + u @ B.T
            if clamp is not None:
                x = torch.clamp(x, -clamp, clamp)
            if reference is not None:
                error = ((x @ C.T - reference[:, t]) ** 2).mean(0).sum()
                total += dt * float(error) / steps
        log["test_loss"].append(total)
        if reference is None:
            X = torch.stack(states[1:]).reshape(-1, 2).numpy().astype(np.float64)
            U = torch.stack(controls[1:]).reshape(-1, 1).numpy().astype(np.float64)
            log["gains"].append(np.linalg.lstsq(X, U, rcond=None)[0].T)
        A, B, C = (m.numpy().astype(np.float64) for m in plant_matrices(dt, kind))
        W_in = net.W_in.numpy().T.astype(np.float64)[:, : C.shape[0]]
        W, W_out = net.W.numpy().T.astype(np.float64), net.W_out.numpy().T.astype(np.float64)
        alpha, size = net.alpha, W.shape[0]
        P = np.block([[A, B @ W_out],
                      [alpha * W_in @ C @ A,
                       (1 - alpha) * np.eye(size) + alpha * (W + W_in @ C @ B @ W_out)]])
        log["eig_P"].append(np.linalg.eigvals(P))
        log["eig_W"].append(np.linalg.eigvals(W))
        log["weights"].append({k: v.detach().clone() for k, v in net.named_parameters()})


def naive_epoch(net: NaiveRNN, optimizer: torch.optim.Optimizer, x0: torch.Tensor, steps: int,
                control_cost: float, clip: float | None, log: dict[str, list],
                test_x0: torch.Tensor, reference: torch.Tensor | None = None,
                test_reference: torch.Tensor | None = None, dt: float = 1.0,
                clamp: float | None = None) -> float:
    """One training epoch with recording, the naive way."""
    optimizer.zero_grad()
    loss = naive_closed_loop_loss(net, x0, steps, control_cost, reference, dt, clamp)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    optimizer.step()
    log["train_loss"].append(float(loss.detach()))
    naive_record(net, test_x0, steps, log, test_reference, dt, clamp)
    return float(loss)
