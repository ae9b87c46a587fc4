"""The fast path of the rollout for RNN agents: a fused time loop with a hand-written adjoint.

:func:`closedloop.rollout.rollout` sends every RNN agent (full, low-rank, reduced) here; the
straightforward loop (:func:`closedloop.rollout.reference_rollout`) remains for static gains and
as the reference the tests compare with. Both compute SPEC 1.3 exactly; they differ only in how
floating-point operations are grouped (agreement to ~1e-7 in float32, ~1e-15 in float64).

Why: a rollout is hundreds of tiny steps, and with autograd every step records a dozen graph
nodes whose bookkeeping costs more than the arithmetic. Here the forward loop runs without
autograd and with the plant folded into the network's matrices (per step: two matrix products
into the pre-activation, the activation, the state update), and one ``torch.autograd.Function``
supplies the backward pass as an explicit adjoint recursion. The weight gradients are
accumulated after the loop in one matrix product each.

Maths (row layout, alpha = dt/tau, per step t >= first):

    a_t = h_{t-1} W + [C x_t, r_t] W_in + b,   h_t = h_{t-1} + alpha (phi(a_t) - h_{t-1})
    u_t = h_t W_out + b_out,                   x_{t+1} = clamp(x_t A^T + u_t B^T + w_t)

and the adjoint, with lambda_x, lambda_h the gradients of the loss with respect to x_{t+1}
and h_t (plus the loss's direct gradients gX_t, gU_t):

    d       = lambda_x * [x_{t+1} not clamped]
    lam_u   = gU_t + d B
    lam_h  += lam_u W_out^T
    lam_a   = alpha lam_h * phi'(a_t)
    lam_x   = gX_t + d A + lam_a (C^T W_in_y)^T
    lam_h   = (1 - alpha) lam_h + lam_a W^T          (the gradient for h_{t-1})

    dW = sum_t h_{t-1}^T lam_a,  dW_in = sum_t [y_t, r_t]^T lam_a,  dW_out = sum_t h_t^T lam_u.

Without a plant (white-noise inputs, or observations of a teacher-driven plant) the inputs are
given and only the h-recursion remains.

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


def rnn_rollout(agent: RNNAgent, prepared: Params, *, steps: int,
                plant: LinearPlant | None = None, x0: torch.Tensor | None = None,
                reference: torch.Tensor | None = None, inputs: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, zero_first_control: bool = True,
                record_hidden: bool = False
                ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """Roll an RNN agent out, in closed loop with ``plant`` from ``x0`` or driven by ``inputs``.

    Parameters are the row-layout dense weights from ``agent.prepare(params)``; gradients flow
    back to them (and through ``prepare`` to the agent's own parameters).

    Returns
    -------
    (states, controls, hidden)
        states (batch, T+1, n_x) or None without a plant; controls (batch, T, n_u); hidden
        (batch, T, N) after each step if ``record_hidden`` else None.
    """
    closed = inputs is None
    setup = _Setup(steps=steps, first=1 if zero_first_control else 0, alpha=agent.alpha,
                   activation=agent.activation,
                   clamp=plant.clamp if (closed and plant is not None) else None,
                   plant=plant if closed else None,
                   n_observed=plant.n_outputs if (closed and plant is not None) else 0,
                   record_hidden=record_hidden)
    b = prepared.get("b")
    b_out = prepared.get("b_out")
    data = x0 if closed else inputs
    if agent.activation == "linear":
        states, controls, hidden = _linear_rnn_rollout(agent, prepared, setup, data, reference,
                                                       noise)
        return (states if closed else None), controls, (hidden if record_hidden else None)
    outputs = _FusedRNN.apply(prepared["W_in"], prepared["W"], prepared["W_out"], b, b_out,
                              data, reference, noise, setup)
    states, controls, hidden = outputs
    return (states if closed else None), controls, (hidden if record_hidden else None)


def _linear_rnn_rollout(agent: RNNAgent, prepared: Params, setup: _Setup, data: torch.Tensor,
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
    w_in, w, w_out = prepared["W_in"], prepared["W"], prepared["W_out"]
    b, b_out = prepared.get("b"), prepared.get("b_out")
    plant, steps, alpha = setup.plant, setup.steps, setup.alpha
    size = w.shape[0]
    dtype, device = w.dtype, w.device
    batch = data.shape[0]
    eye = torch.eye(size, dtype=dtype, device=device)
    w_eff = w if alpha == 1.0 else (1 - alpha) * eye + alpha * w
    hidden_bias = None if b is None else alpha * b
    if plant is None:
        matrix, exo_matrix, bias = w_eff, alpha * w_in, hidden_bias
        exogenous = data[:, :steps]
        start = torch.zeros(batch, size, dtype=dtype, device=device)
        first = (eye, torch.zeros_like(exo_matrix))
    else:
        n_y, n_x = setup.n_observed, plant.n_states
        a_t, b_t, c_t = plant.row_matrices(dtype, device)
        gain = alpha * (c_t @ w_in[:n_y])
        to_state = w_out @ b_t
        matrix = torch.cat([torch.cat([w_eff, w_eff @ to_state], 1),
                            torch.cat([gain, a_t + gain @ to_state], 1)], 0)
        parts, first_parts, inputs = [], [], []
        if reference is not None:
            feed = alpha * w_in[n_y:]
            parts.append(torch.cat([feed, feed @ to_state], 1))
            first_parts.append(torch.zeros_like(parts[-1]))
            inputs.append(reference[:, :steps])
        if noise is not None:
            noise_rows = torch.cat([torch.zeros(n_x, size, dtype=dtype, device=device),
                                    torch.eye(n_x, dtype=dtype, device=device)], 1)
            parts.append(noise_rows)
            first_parts.append(noise_rows)
            inputs.append(noise[:, :steps])
        exo_matrix = torch.cat(parts, 0) if parts else None
        exogenous = torch.cat(inputs, 2) if inputs else None
        bias = None
        if hidden_bias is not None or b_out is not None:
            zero_h = torch.zeros(size, dtype=dtype, device=device)
            h_part = zero_h if hidden_bias is None else hidden_bias
            x_part = torch.zeros(n_x, dtype=dtype, device=device)
            if hidden_bias is not None:
                x_part = x_part + hidden_bias @ to_state
            if b_out is not None:
                x_part = x_part + b_out @ b_t
            bias = torch.cat([h_part, x_part])
        start = torch.cat([torch.zeros(batch, size, dtype=dtype, device=device), data], dim=1)
        first = (torch.block_diag(eye, a_t),
                 torch.cat(first_parts, 0) if first_parts else None)
    states, controls, hidden = _AffineRecurrence.apply(
        matrix, exo_matrix, bias, exogenous, start, w_out, b_out, first[0].detach(),
        None if first[1] is None else first[1].detach(), setup, size)
    return states.transpose(0, 1), controls.transpose(0, 1), hidden.transpose(0, 1)


class _AffineRecurrence(torch.autograd.Function):
    """s_{t+1} = clamp(s_t M + e_t E + c) for s = [h, x] (x from ``offset`` on, clamped); the
    constants (M_0, E_0, c = 0) replace (M, E, c) on the first ``setup.first`` steps.

    Outputs x_0..x_T (T + 1, batch, n_x), the controls u_t = h_t W_out + b_out (zero on the
    first steps) (T, batch, n_u), and h_1..h_T when ``setup.record_hidden`` (no gradient).
    The clamp's gradient mask is read from the clamped values (|x| < bound passes the
    gradient), which differs from autograd's only for a value landing exactly on the bound.
    """

    @staticmethod
    def forward(ctx: Any, matrix: torch.Tensor, exo_matrix: torch.Tensor | None,
                bias: torch.Tensor | None, exogenous: torch.Tensor | None,
                start: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor | None,
                first_matrix: torch.Tensor, first_exo_matrix: torch.Tensor | None,
                setup: _Setup, offset: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps, first, bound = setup.steps, setup.first, setup.clamp
        trajectory = torch.empty(steps + 1, *start.shape, dtype=start.dtype,
                                 device=start.device)
        trajectory[0] = start
        rows = trajectory.unbind(0)
        inputs = exogenous.transpose(0, 1).unbind(0) if exogenous is not None else None
        for t in range(steps):
            if t < first:
                torch.mm(rows[t], first_matrix, out=rows[t + 1])
                if inputs is not None and first_exo_matrix is not None:
                    rows[t + 1].addmm_(inputs[t], first_exo_matrix)
            else:
                if bias is not None:
                    torch.addmm(bias, rows[t], matrix, out=rows[t + 1])
                else:
                    torch.mm(rows[t], matrix, out=rows[t + 1])
                if inputs is not None:
                    rows[t + 1].addmm_(inputs[t], exo_matrix)
            if bound is not None:
                rows[t + 1][:, offset:].clamp_(-bound, bound)
        hidden = trajectory[1:, :, :offset]
        controls = torch.matmul(hidden, w_out)
        if b_out is not None:
            controls += b_out
        controls[:first] = 0
        ctx.setup, ctx.offset = setup, offset
        ctx.has = (exo_matrix is not None, bias is not None, b_out is not None)
        ctx.save_for_backward(matrix, exogenous, first_matrix, trajectory, w_out)
        ctx.set_materialize_grads(False)
        states = trajectory[:, :, offset:].contiguous()
        recorded = hidden.clone() if setup.record_hidden else hidden.new_empty(0, 0, 0)
        ctx.mark_non_differentiable(recorded)
        return states, controls, recorded

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor | None,
                 grad_controls: torch.Tensor | None, _: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        matrix, exogenous, first_matrix, trajectory, w_out = ctx.saved_tensors
        setup, offset = ctx.setup, ctx.offset
        steps, first, bound = setup.steps, setup.first, setup.clamp
        # the loss's direct gradients: on x_t (states) and on h_t through u_t = h_t W_out
        state_grads = grad_states.unbind(0) if grad_states is not None else None
        hidden_grads = None
        if grad_controls is not None:
            grad_controls = grad_controls.clone()
            grad_controls[:first] = 0
            hidden_grads = torch.matmul(grad_controls, w_out.T).unbind(0)   # for h_1..h_T
        kept = None
        if bound is not None:
            kept = trajectory[1:, :, offset:].abs() < bound
            clamped_steps = (~kept).flatten(1).any(dim=1).tolist()
        adjoint = torch.empty_like(trajectory[1:])   # gradient at each step's (masked) output
        adjoint_rows = adjoint.unbind(0)
        matrix_t, first_t = matrix.T, first_matrix.T
        for t in range(steps - 1, -1, -1):
            row = adjoint_rows[t]                    # d loss / d s_{t+1}, then masked
            if t == steps - 1:
                row.zero_()
            else:
                torch.mm(adjoint_rows[t + 1], first_t if t + 1 < first else matrix_t, out=row)
            if state_grads is not None:
                row[:, offset:] += state_grads[t + 1]
            if hidden_grads is not None:
                row[:, :offset] += hidden_grads[t]
            if kept is not None and clamped_steps[t]:
                row[:, offset:].mul_(kept[t])
        lam = adjoint_rows[0] @ (first_t if first > 0 else matrix_t)
        if state_grads is not None:
            lam[:, offset:] += state_grads[0]
        used = adjoint[first:]
        needs = ctx.needs_input_grad
        grad_matrix = _outer(trajectory[first:steps], used) if needs[0] else None
        has_exo, has_bias, has_b_out = ctx.has
        grad_exo = (_outer(exogenous[:, first:steps].transpose(0, 1), used)
                    if has_exo and needs[1] else None)
        grad_bias = used.sum(dim=(0, 1)) if has_bias and needs[2] else None
        grad_w_out = grad_b_out = None
        if grad_controls is not None:
            grad_w_out = _outer(trajectory[1 + first:, :, :offset], grad_controls[first:])
            grad_b_out = grad_controls.sum(dim=(0, 1)) if has_b_out else None
        return (grad_matrix, grad_exo, grad_bias, None, lam, grad_w_out, grad_b_out, None, None,
                None, None)


class _FusedRNN(torch.autograd.Function):
    """A nonlinear RNN: forward loop without autograd, backward by the adjoint recursion.

    Buffers are (time, batch, features) and each step reads and writes views of them, so the
    loop allocates little: per step two products into the pre-activation, the activation,
    the hidden update (alpha < 1) and, with a plant, two products into the next state.
    """

    @staticmethod
    def forward(ctx: Any, w_in: torch.Tensor, w: torch.Tensor, w_out: torch.Tensor,
                b: torch.Tensor | None, b_out: torch.Tensor | None, data: torch.Tensor,
                reference: torch.Tensor | None, noise: torch.Tensor | None, setup: _Setup
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        steps, first, alpha = setup.steps, setup.first, setup.alpha
        plant = setup.plant
        dtype, device = w.dtype, w.device
        batch, size = data.shape[0], w.shape[0]
        n_y = setup.n_observed

        # inputs that do not depend on the loop, for all steps at once: (T, batch, N)
        if plant is None:
            drive = torch.matmul(data[:, :steps].transpose(0, 1), w_in)
        elif reference is not None:
            drive = torch.matmul(reference[:, :steps].transpose(0, 1), w_in[n_y:])
        else:
            drive = None
        if b is not None:
            drive = b.expand(steps, batch, size).contiguous() if drive is None else drive + b
        drives = drive.unbind(0) if drive is not None else None

        hidden = torch.zeros(steps + 1, batch, size, dtype=dtype, device=device)
        h_rows = hidden.unbind(0)
        pre = torch.empty(batch, size, dtype=dtype, device=device)
        # phi(a_t): the hidden state itself when alpha = 1
        activity = hidden[1:] if alpha == 1.0 else torch.zeros(steps, batch, size, dtype=dtype,
                                                                device=device)
        act_rows = activity.unbind(0)
        if plant is not None:
            a_t, b_t, c_t = plant.row_matrices(dtype, device)
            obs_in = c_t @ w_in[:n_y]                      # x -> pre-activation (n_x, N)
            to_state = w_out @ b_t                         # h -> next state (N, n_x)
            state_bias = None if b_out is None else b_out @ b_t
            states = torch.empty(steps + 1, batch, plant.n_states, dtype=dtype, device=device)
            states[0] = data
            x_rows = states.unbind(0)
            noises = None if noise is None else noise[:, :steps].transpose(0, 1).unbind(0)
        for t in range(steps):
            if t >= first:
                if drives is not None:
                    torch.addmm(drives[t], h_rows[t], w, out=pre)
                else:
                    torch.mm(h_rows[t], w, out=pre)
                if plant is not None:
                    pre.addmm_(x_rows[t], obs_in)
                if setup.activation == "tanh":
                    torch.tanh(pre, out=act_rows[t])
                else:
                    torch.clamp_min(pre, 0.0, out=act_rows[t])
                if alpha != 1.0:
                    torch.add(h_rows[t], act_rows[t] - h_rows[t], alpha=alpha,
                              out=h_rows[t + 1])
            elif t > 0:
                h_rows[t + 1].copy_(h_rows[t])
            if plant is not None:
                z = x_rows[t + 1]
                torch.mm(x_rows[t], a_t, out=z)
                if t >= first:
                    z.addmm_(h_rows[t + 1], to_state)
                    if state_bias is not None:
                        z += state_bias
                if noises is not None:
                    z += noises[t]
                if setup.clamp is not None:
                    z.clamp_(-setup.clamp, setup.clamp)
        controls = torch.matmul(hidden[1:], w_out)
        if b_out is not None:
            controls += b_out
        controls[:first] = 0
        ctx.setup = setup
        ctx.has_bias = (b is not None, b_out is not None)
        saved = [w_in, w, w_out, hidden, data, activity,
                 reference if reference is not None else torch.empty(0)]
        if plant is not None:
            saved.append(states)
        ctx.save_for_backward(*saved)
        ctx.set_materialize_grads(False)
        out_states = states if plant is not None else hidden.new_empty(0, batch, 0)
        recorded = hidden[1:].clone() if setup.record_hidden else hidden.new_empty(0, 0, 0)
        ctx.mark_non_differentiable(recorded)
        return out_states.transpose(0, 1), controls.transpose(0, 1), recorded.transpose(0, 1)

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor | None, grad_controls: torch.Tensor | None,
                 _: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        setup: _Setup = ctx.setup
        plant = setup.plant
        saved = ctx.saved_tensors
        w_in, w, w_out, hidden, data, activity, reference = saved[:7]
        steps, first, alpha = setup.steps, setup.first, setup.alpha
        batch, size = hidden.shape[1], hidden.shape[2]
        n_y = setup.n_observed
        dtype, device = w.dtype, w.device
        n_u = w_out.shape[1]
        g_controls = (torch.zeros(steps, batch, n_u, dtype=dtype, device=device)
                      if grad_controls is None else grad_controls.transpose(0, 1).clone())
        g_controls[:first] = 0
        lam_a_all = torch.zeros(steps, batch, size, dtype=dtype, device=device)
        lam_a_rows = lam_a_all.unbind(0)
        act_rows = activity.unbind(0)
        lam_h = torch.zeros(batch, size, dtype=dtype, device=device)
        w_t = w.T
        if plant is None:
            lam_u_all = g_controls
            from_controls = torch.matmul(lam_u_all, w_out.T).unbind(0)   # (T, batch, N)
            for t in range(steps - 1, first - 1, -1):
                lam_h += from_controls[t]
                _activation_adjoint(setup.activation, lam_h, act_rows[t], alpha,
                                    out=lam_a_rows[t])
                lam_h = torch.mm(lam_a_rows[t], w_t) if alpha == 1.0 else torch.addmm(
                    lam_h, lam_a_rows[t], w_t, beta=1.0 - alpha)
            grad_w_in = _outer(data[:, :steps].transpose(0, 1), lam_a_all)
        else:
            states = saved[7]
            a_t, b_t, c_t = plant.row_matrices(dtype, device)
            obs_in_t = (c_t @ w_in[:n_y]).T
            a_mat, b_mat, w_out_t = a_t.T, b_t.T, w_out.T
            g_states = (torch.zeros(steps + 1, batch, plant.n_states, dtype=dtype,
                                    device=device)
                        if grad_states is None else grad_states.transpose(0, 1))
            g_rows, gu_rows = g_states.unbind(0), g_controls.unbind(0)
            bound = setup.clamp
            kept = (states[1:].abs() < bound) if bound is not None else None
            lam_u_all = torch.zeros(steps, batch, n_u, dtype=dtype, device=device)
            lam_u_rows = lam_u_all.unbind(0)
            lam_x = g_rows[steps].clone()
            for t in range(steps - 1, -1, -1):
                d = lam_x * kept[t] if kept is not None else lam_x
                lam_x = torch.addmm(g_rows[t], d, a_mat)
                if t < first:
                    continue
                torch.addmm(gu_rows[t], d, b_mat, out=lam_u_rows[t])
                lam_h.addmm_(lam_u_rows[t], w_out_t)
                _activation_adjoint(setup.activation, lam_h, act_rows[t], alpha,
                                    out=lam_a_rows[t])
                lam_x.addmm_(lam_a_rows[t], obs_in_t)
                lam_h = torch.mm(lam_a_rows[t], w_t) if alpha == 1.0 else torch.addmm(
                    lam_h, lam_a_rows[t], w_t, beta=1.0 - alpha)
            observed = torch.matmul(states[:steps], c_t)          # (T, batch, n_y)
            grad_w_in = _outer(observed, lam_a_all)
            if reference is not None and reference.numel():
                grad_w_in = torch.cat(
                    [grad_w_in, _outer(reference[:, :steps].transpose(0, 1), lam_a_all)], 0)
        grad_w = _outer(hidden[:steps], lam_a_all)
        grad_w_out = _outer(hidden[1:], lam_u_all)
        has_b, has_b_out = ctx.has_bias
        grad_b = lam_a_all.sum(dim=(0, 1)) if has_b else None
        grad_b_out = lam_u_all.sum(dim=(0, 1)) if has_b_out else None
        return grad_w_in, grad_w, grad_w_out, grad_b, grad_b_out, None, None, None, None


def _activation_adjoint(name: str, lam_h: torch.Tensor, activity: torch.Tensor, alpha: float,
                        out: torch.Tensor) -> torch.Tensor:
    """alpha * lam_h * phi'(a_t) into ``out``, from the stored activation phi(a_t)."""
    if name == "tanh":
        torch.mul(activity, activity, out=out)
        torch.mul(lam_h, 1 - out, out=out)
    else:
        torch.mul(lam_h, activity > 0, out=out)
    if alpha != 1.0:
        out.mul_(alpha)
    return out


def _outer(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """sum over (time, batch) of left^T right: one matrix product."""
    return left.reshape(-1, left.shape[-1]).T @ right.reshape(-1, right.shape[-1])
