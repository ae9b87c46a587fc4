"""The fast path of the rollout for RNN agents: fused time loops with hand-written adjoints,
for one network or an ensemble of networks at once.

:func:`closedloop.rollout.rollout` sends every RNN agent (full, low-rank, reduced) here; the
straightforward loop (:func:`closedloop.rollout.reference_rollout`) remains for static gains and
as the reference the tests compare with. Both compute SPEC 1.3 exactly; they differ only in how
floating-point operations are grouped (agreement to ~1e-7 in float32, ~1e-15 in float64).

Why: a rollout is hundreds of tiny steps, and with autograd every step records a dozen graph
nodes whose bookkeeping costs more than the arithmetic. Here the forward loop runs without
autograd, with the plant folded into the network's matrices, writing into preallocated
buffers; a ``torch.autograd.Function`` supplies the backward pass as an explicit adjoint
recursion, and the weight gradients are accumulated after the loop in one matrix product each.

Ensembles: every tensor may carry a leading *group* axis G (one entry per network: weights
(G, ...), initial states (G, batch, ...)); each step is then one batched matrix product
(``torch.bmm``) for all networks. A single network is the case G = 1, computed with plain
``torch.mm`` on the squeezed views.

Maths of the nonlinear loop (row layout, alpha = dt/tau, per step t >= first):

    a_t = h_{t-1} W + [C x_t, r_t] W_in + b,   h_t = h_{t-1} + alpha (phi(a_t) - h_{t-1})
    u_t = h_t W_out + b_out,                   x_{t+1} = clamp(x_t A^T + u_t B^T + w_t)

and its adjoint, with lambda_x, lambda_h the gradients with respect to x_{t+1} and h_t (plus
the loss's direct gradients gX_t, gU_t):

    d       = lambda_x * [x_{t+1} not clamped]
    lam_u   = gU_t + d B
    lam_h  += lam_u W_out^T
    lam_a   = alpha lam_h * phi'(a_t)
    lam_x   = gX_t + d A + lam_a (C^T W_in_y)^T
    lam_h   = (1 - alpha) lam_h + lam_a W^T          (the gradient for h_{t-1})

    dW = sum_t h_{t-1}^T lam_a,  dW_in = sum_t [y_t, r_t]^T lam_a,  dW_out = sum_t h_t^T lam_u.

A linear network is one affine recurrence of the joint state (see :func:`_linear_rollout`).

Example
-------
>>> import torch
>>> from closedloop.config import AgentConfig
>>> from closedloop.agents import build_agent
>>> from closedloop.plants import double_integrator
>>> agent = build_agent(AgentConfig(size=8), 1, 1)
>>> params = agent.init_params(torch.Generator().manual_seed(0))
>>> states, controls, _ = rnn_rollout(agent, agent.prepare(params), steps=5,
...                                   plant=double_integrator(), x0=torch.ones(3, 2))
>>> tuple(states.shape), tuple(controls.shape)
((3, 6, 2), (3, 5, 1))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from closedloop.agents import Params, RNNAgent
from closedloop.plants import LinearPlant


@dataclass(frozen=True)
class _Setup:
    """Everything about a fused rollout that is not a differentiable tensor."""

    steps: int
    first: int                      # 1 with the paper's t = 0 convention, else 0
    alpha: float
    activation: str
    clamp: float | None
    plant: LinearPlant | None
    n_observed: int
    record_hidden: bool


# --------------------------------------------------------------------------------------------
# batched products: (G, m, k) @ (G, k, n); plain torch.mm on the squeezed views when G = 1


def _expand(matrix: torch.Tensor, groups: int) -> torch.Tensor:
    return matrix if matrix.dim() == 3 else matrix.expand(groups, *matrix.shape)


def _mm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """out = a @ b (2-D operands: one network; 3-D: a group)."""
    if out.dim() == 2:
        torch.mm(a, b, out=out)
    else:
        torch.bmm(a, _expand(b, out.shape[0]), out=out)
    return out


def _addmm_into(out: torch.Tensor, c: torch.Tensor, a: torch.Tensor, b: torch.Tensor
                ) -> torch.Tensor:
    """out = c + a @ b (c broadcast over the batch rows)."""
    if out.dim() == 2:
        torch.addmm(c, a, b, out=out)
    else:
        torch.baddbmm(c, a, _expand(b, out.shape[0]), out=out)
    return out


def _addmm_(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, beta: float = 1.0
            ) -> torch.Tensor:
    """x = beta x + a @ b, in place."""
    if x.dim() == 2:
        x.addmm_(a, b, beta=beta)
    else:
        x.baddbmm_(a, _expand(b, x.shape[0]), beta=beta)
    return x


class _Views:
    """Per-step views: with one network, (T, 1, B, .) buffers are stepped as (B, .) matrices
    and (1, ., .) weights as 2-D ones, so each step is a plain ``torch.mm``."""

    def __init__(self, groups: int) -> None:
        self.single = groups == 1

    def rows(self, buffer: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(T, G, B, .) -> per-step rows."""
        return (buffer[:, 0] if self.single else buffer).unbind(0)

    def group_rows(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """(G, T, B, .) -> per-step rows (strided views for a group)."""
        if self.single:
            return list(buffer[0].unbind(0))
        return [buffer[:, t] for t in range(buffer.shape[1])]

    def one(self, tensor: torch.Tensor) -> torch.Tensor:
        """(G, B, .) or (G, ., .) -> the step operand."""
        return tensor[0] if self.single and tensor.dim() == 3 else tensor


def _outer(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """sum over (time, batch) of left^T right for group-major (G, T, B, .) tensors: (G, ., .)."""
    groups = left.shape[0]
    flat_left = left.reshape(groups, -1, left.shape[-1])
    flat_right = right.reshape(groups, -1, right.shape[-1])
    if groups == 1:
        return (flat_left[0].T @ flat_right[0])[None]
    return torch.bmm(flat_left.transpose(1, 2), flat_right)


def _time_major(tensor: torch.Tensor | None, steps: int) -> torch.Tensor | None:
    """(G, B, T', k) -> (T, G, B, k), contiguous."""
    if tensor is None:
        return None
    return tensor[:, :, :steps].permute(2, 0, 1, 3).contiguous()


# --------------------------------------------------------------------------------------------


def rnn_rollout(agent: RNNAgent, prepared: Params, *, steps: int,
                plant: LinearPlant | None = None, x0: torch.Tensor | None = None,
                reference: torch.Tensor | None = None, inputs: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, zero_first_control: bool = True,
                record_hidden: bool = False
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Roll an RNN agent out, in closed loop with ``plant`` from ``x0`` or driven by ``inputs``.

    Parameters are the row-layout dense weights from ``agent.prepare(params)``; gradients flow
    back to them (and through ``prepare`` to the agent's own parameters). For an ensemble,
    every weight has a leading axis G and so do ``x0`` (G, batch, n_x), ``reference``,
    ``inputs`` and ``noise`` (G, batch, T, .); the outputs then do too.

    Returns
    -------
    (states, controls, hidden)
        states (batch, T+1, n_x) or None without a plant; controls (batch, T, n_u); hidden
        (batch, T, N) after each step if ``record_hidden`` else None.
    """
    closed = inputs is None
    single = prepared["W"].dim() == 2
    lift = (lambda t: None if t is None else t.unsqueeze(0)) if single else (lambda t: t)
    weights = {k: lift(v) for k, v in prepared.items()}
    setup = _Setup(steps=steps, first=1 if zero_first_control else 0, alpha=agent.alpha,
                   activation=agent.activation, clamp=plant.clamp if closed else None,
                   plant=plant if closed else None,
                   n_observed=plant.n_outputs if closed else 0, record_hidden=record_hidden)
    data = lift(x0 if closed else inputs)
    reference, noise = lift(reference), lift(noise)
    if agent.activation == "linear":
        states, controls, hidden = _linear_rollout(weights, setup, data, reference, noise)
    else:
        states, controls, hidden = _FusedRNN.apply(
            weights["W_in"], weights["W"], weights["W_out"], weights.get("b"),
            weights.get("b_out"), data, reference, noise, setup)
    drop = (lambda t: t[0]) if single else (lambda t: t)
    return (drop(states) if closed else None), drop(controls), (
        drop(hidden) if record_hidden else None)


def _linear_rollout(weights: Params, setup: _Setup, data: torch.Tensor,
                    reference: torch.Tensor | None, noise: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear RNN (with or without a linear plant) is one affine recurrence of the joint
    state s = [h, x]:  s_{t+1} = clamp_x(s_t M + e_t E + c), with exogenous inputs
    e_t = [r_t, w_t] (reference, process noise). With alpha = dt/tau,
    W_eff = (1 - alpha) I + alpha W, K = alpha C^T W_in_y, G = W_out B^T,
    F = alpha W_in_r:

        M = [[W_eff, W_eff G], [K, A^T + K G]],   E = [[F, F G], [0, I]],
        c = [alpha b, alpha b G + b_out B^T]

    (substituting h_t into x_{t+1} = x_t A^T + h_t G + ...). Without a plant, s = h,
    M = W_eff, e_t = the inputs, E = alpha W_in, c = alpha b. M, E and c are built with ordinary
    torch operations, so autograd carries their gradients back to W, W_in, W_out; the loop is
    :class:`_AffineRecurrence`. On the first ``setup.first`` steps (u_0 = 0, no update) the
    constants M_0 = diag(I, A^T), E_0 = [[0, 0], [0, I]], c_0 = 0 are used.
    """
    w_in, w, w_out = weights["W_in"], weights["W"], weights["W_out"]
    b, b_out = weights.get("b"), weights.get("b_out")
    plant, steps, alpha = setup.plant, setup.steps, setup.alpha
    groups, size = w.shape[0], w.shape[-1]
    dtype, device = w.dtype, w.device
    batch = data.shape[1]
    eye = torch.eye(size, dtype=dtype, device=device)
    w_eff = w if alpha == 1.0 else (1 - alpha) * eye + alpha * w
    hidden_bias = None if b is None else alpha * b
    if plant is None:
        matrix, exo_matrix, bias = w_eff, alpha * w_in, hidden_bias
        exogenous = data
        start = torch.zeros(groups, batch, size, dtype=dtype, device=device)
        first = (eye, torch.zeros_like(exo_matrix[0]))
        n_x = 0
    else:
        n_y, n_x = setup.n_observed, plant.n_states
        a_t, b_t, c_t = plant.row_matrices(dtype, device)
        gain = alpha * (c_t @ w_in[:, :n_y])
        to_state = w_out @ b_t
        matrix = torch.cat([torch.cat([w_eff, w_eff @ to_state], -1),
                            torch.cat([gain, a_t + gain @ to_state], -1)], -2)
        parts, first_parts, inputs = [], [], []
        if reference is not None:
            feed = alpha * w_in[:, n_y:]
            parts.append(torch.cat([feed, feed @ to_state], -1))
            first_parts.append(torch.zeros_like(parts[-1][0]))
            inputs.append(reference)
        if noise is not None:
            noise_rows = torch.cat([torch.zeros(n_x, size, dtype=dtype, device=device),
                                    torch.eye(n_x, dtype=dtype, device=device)], 1)
            parts.append(noise_rows.expand(groups, -1, -1))
            first_parts.append(noise_rows)
            inputs.append(noise)
        exo_matrix = torch.cat(parts, -2) if parts else None
        exogenous = torch.cat([i[:, :, :steps] for i in inputs], -1) if inputs else None
        bias = None
        if hidden_bias is not None or b_out is not None:
            h_part = (torch.zeros(groups, size, dtype=dtype, device=device)
                      if hidden_bias is None else hidden_bias)
            x_part = torch.zeros(groups, n_x, dtype=dtype, device=device)
            if hidden_bias is not None:
                x_part = x_part + (hidden_bias[:, None] @ to_state)[:, 0]
            if b_out is not None:
                x_part = x_part + b_out @ b_t
            bias = torch.cat([h_part, x_part], -1)
        start = torch.cat([torch.zeros(groups, batch, size, dtype=dtype, device=device), data],
                          dim=-1)
        first = (torch.block_diag(eye, a_t),
                 torch.cat(first_parts, 0) if first_parts else None)
    # the readout acts on the whole joint state: [W_out; 0]
    readout = torch.cat([w_out, torch.zeros(groups, n_x, w_out.shape[-1], dtype=dtype,
                                            device=device)], -2)
    return _AffineRecurrence.apply(matrix, exo_matrix, bias, exogenous, start, readout, b_out,
                                   first[0].detach(),
                                   None if first[1] is None else first[1].detach(), setup,
                                   size)


class _AffineRecurrence(torch.autograd.Function):
    """s_{t+1} = clamp(s_t M + e_t E + c) for s = [h, x] (x from ``offset`` on, clamped); the
    constants (M_0, E_0, c = 0) replace (M, E, c) on the first ``setup.first`` steps.

    Outputs x_0..x_T (G, B, T + 1, n_x), the controls u_t = s_t [W_out; 0] + b_out (zero on
    the first steps) (G, B, T, n_u), and h_1..h_T when ``setup.record_hidden`` (no
    gradient). The clamp's gradient mask is read from the clamped values (|x| < bound passes
    the gradient), which differs from autograd's only for a value landing exactly on the
    bound.
    """

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, exo_matrix: torch.Tensor | None,
                bias: torch.Tensor | None, exogenous: torch.Tensor | None,
                start: torch.Tensor, readout: torch.Tensor, b_out: torch.Tensor | None,
                first_matrix: torch.Tensor, first_exo_matrix: torch.Tensor | None,
                setup: _Setup, offset: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps, first, bound = setup.steps, setup.first, setup.clamp
        trajectory = torch.empty(steps + 1, *start.shape, dtype=start.dtype,
                                 device=start.device)
        trajectory[0] = start
        view = _Views(start.shape[0])
        rows = view.rows(trajectory)
        exo = _time_major(exogenous, steps)
        inputs = view.rows(exo) if exo is not None else None
        row_bias = view.one(bias[:, None]) if bias is not None else None
        matrix_step = view.one(matrix)
        exo_step = view.one(exo_matrix) if exo_matrix is not None else None

        def run(clamped: bool) -> None:
            for t in range(steps):
                if t < first:
                    _mm_into(rows[t + 1], rows[t], first_matrix)
                    if inputs is not None and first_exo_matrix is not None:
                        _addmm_(rows[t + 1], inputs[t], first_exo_matrix)
                else:
                    if row_bias is not None:
                        _addmm_into(rows[t + 1], row_bias, rows[t], matrix_step)
                    else:
                        _mm_into(rows[t + 1], rows[t], matrix_step)
                    if inputs is not None:
                        _addmm_(rows[t + 1], inputs[t], exo_step)
                if clamped:
                    rows[t + 1][..., offset:].clamp_(-bound, bound)

        # optimistic: without clamping, unless a state leaves the box (then exactly redo it)
        run(clamped=False)
        if bound is not None and bool((trajectory[..., offset:].abs() > bound).any()):
            run(clamped=True)
        controls = torch.matmul(trajectory[1:], readout)       # (T, G, B, n_u)
        if b_out is not None:
            controls += b_out[:, None]
        controls[:first] = 0
        ctx.setup, ctx.offset = setup, offset
        ctx.has = (exo_matrix is not None, bias is not None, b_out is not None)
        ctx.save_for_backward(matrix, exo, first_matrix, trajectory, readout)
        ctx.set_materialize_grads(False)
        states = trajectory[..., offset:].permute(1, 2, 0, 3).contiguous()
        recorded = (trajectory[1:, ..., :offset].permute(1, 2, 0, 3).contiguous()
                    if setup.record_hidden else start.new_empty(0, 0, 0, 0))
        ctx.mark_non_differentiable(recorded)
        return states, controls.permute(1, 2, 0, 3), recorded

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor | None,
                 grad_controls: torch.Tensor | None, _: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        matrix, exo, first_matrix, trajectory, readout = ctx.saved_tensors
        setup, offset = ctx.setup, ctx.offset
        steps, first, bound = setup.steps, setup.first, setup.clamp
        # the loss's direct gradients: on x_t (states) and on s_t through u_t = s_t [W_out; 0]
        view = _Views(trajectory.shape[1])
        state_grads = (view.rows(grad_states.permute(2, 0, 1, 3))
                       if grad_states is not None else None)
        joint_grads = None
        if grad_controls is not None:
            grad_controls = grad_controls.permute(2, 0, 1, 3).clone()   # (T, G, B, n_u)
            grad_controls[:first] = 0
            joint_grads = view.rows(torch.matmul(grad_controls, readout.transpose(-1, -2)))
        kept = None
        if bound is not None:
            kept = trajectory[1:, ..., offset:].abs() < bound
            clamped_steps = (~kept).flatten(1).any(dim=1).tolist()
        adjoint = torch.empty_like(trajectory[1:])   # gradient at each step's (masked) output
        adjoint_rows = view.rows(adjoint)
        kept_rows = view.rows(kept) if kept is not None else None
        matrix_t = view.one(matrix.transpose(-1, -2).contiguous())
        first_t = first_matrix.transpose(-1, -2).contiguous()
        for t in range(steps - 1, -1, -1):
            row = adjoint_rows[t]                    # d loss / d s_{t+1}, then masked
            if t == steps - 1:
                row.zero_()
            else:
                _mm_into(row, adjoint_rows[t + 1], first_t if t + 1 < first else matrix_t)
            if state_grads is not None:
                row[..., offset:] += state_grads[t + 1]
            if joint_grads is not None:
                row += joint_grads[t]
            if kept_rows is not None and clamped_steps[t]:
                row[..., offset:].mul_(kept_rows[t])
        lam = torch.empty_like(trajectory[0])
        _mm_into(view.one(lam), adjoint_rows[0], first_t if first > 0 else matrix_t)
        if state_grads is not None:
            view.one(lam)[..., offset:] += state_grads[0]
        used = adjoint[first:]
        needs = ctx.needs_input_grad
        used_by_group = used.transpose(0, 1)
        grad_matrix = (_outer(trajectory[first:steps].transpose(0, 1), used_by_group)
                       if needs[0] else None)
        has_exo, has_bias, has_b_out = ctx.has
        grad_exo = (_outer(exo[first:steps].transpose(0, 1), used_by_group)
                    if has_exo and needs[1] else None)
        grad_bias = used.sum(dim=(0, 2)) if has_bias and needs[2] else None
        grad_readout = grad_b_out = None
        if grad_controls is not None:
            grad_readout = _outer(trajectory[1 + first:].transpose(0, 1),
                                  grad_controls[first:].transpose(0, 1))
            grad_b_out = grad_controls.sum(dim=(0, 2)) if has_b_out else None
        return (grad_matrix, grad_exo, grad_bias, None, lam, grad_readout, grad_b_out, None,
                None, None, None)


class _FusedRNN(torch.autograd.Function):
    """A nonlinear RNN: forward loop without autograd, backward by the adjoint recursion.

    Buffers are (time, G, batch, features) and each step reads and writes views of them: per
    step two products into the pre-activation, the activation, the hidden update
    (alpha < 1) and, with a plant, two products into the next state.
    """

    @staticmethod
    def forward(ctx: Any, w_in: torch.Tensor, w: torch.Tensor, w_out: torch.Tensor,
                b: torch.Tensor | None, b_out: torch.Tensor | None, data: torch.Tensor,
                reference: torch.Tensor | None, noise: torch.Tensor | None, setup: _Setup
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps, first, alpha = setup.steps, setup.first, setup.alpha
        plant = setup.plant
        dtype, device = w.dtype, w.device
        groups, batch, size = data.shape[0], data.shape[1], w.shape[-1]
        n_y = setup.n_observed

        # inputs that do not depend on the loop, for all steps at once: (T, G, batch, N)
        if plant is None:
            drive = torch.matmul(_time_major(data, steps), w_in)
        elif reference is not None:
            drive = torch.matmul(_time_major(reference, steps), w_in[:, n_y:])
        else:
            drive = None
        if b is not None:
            drive = (b[:, None].expand(steps, groups, batch, size).contiguous()
                     if drive is None else drive + b[:, None])
        view = _Views(groups)
        drives = view.rows(drive) if drive is not None else None
        w_step = view.one(w)

        # hidden states and activations are group-major (G, T, B, N): stepped through row
        # views, and read whole by the weight gradients without a copy
        hidden = torch.empty(groups, steps + 1, batch, size, dtype=dtype, device=device)
        hidden[:, 0] = 0
        h_rows = view.group_rows(hidden)
        pre = view.one(torch.empty(groups, batch, size, dtype=dtype, device=device))
        # phi(a_t): the hidden state itself when alpha = 1
        activity = hidden[:, 1:] if alpha == 1.0 else torch.empty(
            groups, steps, batch, size, dtype=dtype, device=device)
        act_rows = view.group_rows(activity)
        if plant is not None:
            a_t, b_t, c_t = plant.row_matrices(dtype, device)
            obs_in = view.one(c_t @ w_in[:, :n_y])         # x -> pre-activation (G, n_x, N)
            to_state = view.one(w_out @ b_t)               # h -> next state (G, N, n_x)
            state_bias = None if b_out is None else view.one((b_out @ b_t)[:, None])
            states = torch.empty(steps + 1, groups, batch, plant.n_states, dtype=dtype,
                                 device=device)
            states[0] = data
            x_rows = view.rows(states)
            noises = view.rows(_time_major(noise, steps)) if noise is not None else None
        for t in range(steps):
            if t >= first:
                if drives is not None:
                    _addmm_into(pre, drives[t], h_rows[t], w_step)
                else:
                    _mm_into(pre, h_rows[t], w_step)
                if plant is not None:
                    _addmm_(pre, x_rows[t], obs_in)
                if setup.activation == "tanh":
                    torch.tanh(pre, out=act_rows[t])
                else:
                    torch.clamp_min(pre, 0.0, out=act_rows[t])
                if alpha != 1.0:
                    torch.add(h_rows[t], act_rows[t] - h_rows[t], alpha=alpha,
                              out=h_rows[t + 1])
            else:
                h_rows[t + 1].copy_(h_rows[t])
            if plant is not None:
                z = x_rows[t + 1]
                _mm_into(z, x_rows[t], a_t)
                if t >= first:
                    _addmm_(z, h_rows[t + 1], to_state)
                    if state_bias is not None:
                        z += state_bias
                if noises is not None:
                    z += noises[t]
                if setup.clamp is not None:
                    z.clamp_(-setup.clamp, setup.clamp)
        controls = torch.bmm(hidden[:, 1:].reshape(groups, -1, size), w_out).reshape(
            groups, steps, batch, -1)                                   # (G, T, B, n_u)
        if b_out is not None:
            controls += b_out[:, None, None]
        controls[:, :first] = 0
        ctx.setup = setup
        ctx.has_bias = (b is not None, b_out is not None)
        saved = [w_in, w, w_out, hidden, data, activity,
                 reference if reference is not None else torch.empty(0)]
        if plant is not None:
            saved.append(states)
        ctx.save_for_backward(*saved)
        ctx.set_materialize_grads(False)
        out_states = (states.permute(1, 2, 0, 3) if plant is not None
                      else hidden.new_empty(groups, batch, 0, 0))
        recorded = (hidden[:, 1:].transpose(1, 2).contiguous() if setup.record_hidden
                    else hidden.new_empty(0, 0, 0, 0))
        ctx.mark_non_differentiable(recorded)
        return out_states, controls.transpose(1, 2), recorded

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor | None, grad_controls: torch.Tensor | None,
                 _: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        setup: _Setup = ctx.setup
        plant = setup.plant
        saved = ctx.saved_tensors
        w_in, w, w_out, hidden, data, activity, reference = saved[:7]
        steps, first, alpha = setup.steps, setup.first, setup.alpha
        groups, batch, size = hidden.shape[0], hidden.shape[2], hidden.shape[3]
        n_y = setup.n_observed
        dtype, device = w.dtype, w.device
        n_u = w_out.shape[-1]
        g_controls = (torch.zeros(groups, steps, batch, n_u, dtype=dtype, device=device)
                      if grad_controls is None else grad_controls.transpose(1, 2).clone())
        g_controls[:, :first] = 0                                      # (G, T, B, n_u)
        view = _Views(groups)
        lam_a_all = torch.empty(groups, steps, batch, size, dtype=dtype, device=device)
        lam_a_all[:, :first] = 0
        lam_a_rows = view.group_rows(lam_a_all)
        act_rows = view.group_rows(activity)
        lam_h = view.one(torch.zeros(groups, batch, size, dtype=dtype, device=device))
        w_t = view.one(w.transpose(-1, -2).contiguous())
        w_out_t = view.one(w_out.transpose(-1, -2).contiguous())
        if plant is None:
            lam_u_all = g_controls
            from_controls = view.group_rows(torch.bmm(
                lam_u_all.reshape(groups, -1, n_u), w_out.transpose(-1, -2)).reshape(
                    groups, steps, batch, size))
            for t in range(steps - 1, first - 1, -1):
                lam_h += from_controls[t]
                _activation_adjoint(setup.activation, lam_h, act_rows[t], alpha,
                                    out=lam_a_rows[t])
                lam_h = _propagate(lam_h, lam_a_rows[t], w_t, alpha)
            grad_w_in = _outer(data[:, :, :steps].transpose(1, 2), lam_a_all)
        else:
            states = saved[7]
            a_t, b_t, c_t = plant.row_matrices(dtype, device)
            obs_in_t = view.one((c_t @ w_in[:, :n_y]).transpose(-1, -2).contiguous())
            a_mat, b_mat = a_t.T, b_t.T
            g_states = (torch.zeros(steps + 1, groups, batch, plant.n_states, dtype=dtype,
                                    device=device)
                        if grad_states is None else grad_states.permute(2, 0, 1, 3))
            g_rows, gu_rows = view.rows(g_states), view.group_rows(g_controls)
            bound = setup.clamp
            kept = view.rows(states[1:].abs() < bound) if bound is not None else None
            lam_u_all = torch.empty(groups, steps, batch, n_u, dtype=dtype, device=device)
            lam_u_all[:, :first] = 0
            lam_u_rows = view.group_rows(lam_u_all)
            lam_x = g_rows[steps].clone()
            for t in range(steps - 1, -1, -1):
                d = lam_x * kept[t] if kept is not None else lam_x
                lam_x = _addmm_(g_rows[t].clone(), d, a_mat)
                if t < first:
                    continue
                _addmm_(lam_u_rows[t].copy_(gu_rows[t]), d, b_mat)
                _addmm_(lam_h, lam_u_rows[t], w_out_t)
                _activation_adjoint(setup.activation, lam_h, act_rows[t], alpha,
                                    out=lam_a_rows[t])
                _addmm_(lam_x, lam_a_rows[t], obs_in_t)
                lam_h = _propagate(lam_h, lam_a_rows[t], w_t, alpha)
            observed = torch.matmul(states[:steps], c_t).transpose(0, 1)   # (G, T, B, n_y)
            grad_w_in = _outer(observed, lam_a_all)
            if reference is not None and reference.numel():
                grad_w_in = torch.cat(
                    [grad_w_in, _outer(reference[:, :, :steps].transpose(1, 2), lam_a_all)],
                    -2)
        grad_w = _outer(hidden[:, :steps], lam_a_all)
        grad_w_out = _outer(hidden[:, 1:], lam_u_all)
        has_b, has_b_out = ctx.has_bias
        grad_b = lam_a_all.sum(dim=(1, 2)) if has_b else None
        grad_b_out = lam_u_all.sum(dim=(1, 2)) if has_b_out else None
        return grad_w_in, grad_w, grad_w_out, grad_b, grad_b_out, None, None, None, None


def _propagate(lam_h: torch.Tensor, lam_a: torch.Tensor, w_t: torch.Tensor, alpha: float
               ) -> torch.Tensor:
    """The gradient for h_{t-1}: (1 - alpha) lam_h + lam_a W^T."""
    if alpha == 1.0:
        return _mm_into(torch.empty_like(lam_h), lam_a, w_t)
    return _addmm_(lam_h, lam_a, w_t, beta=1.0 - alpha)


def _activation_adjoint(name: str, lam_h: torch.Tensor, activity: torch.Tensor, alpha: float,
                        out: torch.Tensor) -> torch.Tensor:
    """alpha * lam_h * phi'(a_t) into ``out``, from the stored activation phi(a_t)."""
    if name == "tanh":
        torch.mul(activity, activity, out=out)
        out.neg_().add_(1.0).mul_(lam_h)
    else:
        torch.mul(lam_h, activity > 0, out=out)
    if alpha != 1.0:
        out.mul_(alpha)
    return out
