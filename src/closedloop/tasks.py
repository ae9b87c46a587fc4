"""Episodes: initial states, tracking references and white-noise inputs (SPEC 1.4, 2, 6).

A :class:`Batch` holds everything random about one training epoch (or the held-out test set):
initial states ``x0`` (batch, n_x), an optional ``reference`` (batch, T, n_axes) built from
``phases``, and, for white-noise open-loop training, ``inputs`` (batch, T, n_in).

Example
-------
>>> import torch
>>> from closedloop.config import TaskConfig
>>> task = TaskConfig(kind="tracking", steps=300)
>>> batch = sample_batch(task, n_states=4, generator=torch.Generator().manual_seed(0))
>>> tuple(batch.reference.shape), abs(float(batch.reference[0, 0, 0]))
((100, 300, 2), 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from closedloop.config import TaskConfig


@dataclass
class Batch:
    """The random inputs of one episode batch."""

    x0: torch.Tensor
    reference: torch.Tensor | None = None
    phases: torch.Tensor | None = None
    inputs: torch.Tensor | None = None
    noise: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of episodes in the batch."""
        return self.x0.shape[0]

    def to(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Batch:
        """The batch cast to ``dtype`` on ``device``."""
        def cast(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(dtype=dtype, device=device)
        return Batch(cast(self.x0), cast(self.reference), cast(self.phases), cast(self.inputs),
                     cast(self.noise))


def time_grid(steps: int, dt: float) -> np.ndarray:
    """t_i = i * dt for i = 0..steps-1, the paper's linspace(0, steps*dt, steps, endpoint=False)."""
    return np.arange(steps, dtype=np.float64) * dt


def reference_signal(phases: torch.Tensor, frequencies: list[list[float]], amplitude: float,
                     ramp_time: float, steps: int, dt: float) -> torch.Tensor:
    """r(t) = ramp(t) * sum_k amplitude * cos(2 pi f_k t + phi_k) per axis (SPEC 6).

    Parameters
    ----------
    phases
        (batch, n_axes, n_freqs) phases phi_k.
    frequencies
        Per axis, the frequencies f_k in Hz.

    Returns
    -------
    torch.Tensor
        (batch, steps, n_axes), in the dtype of ``phases``.

    Example
    -------
    >>> r = reference_signal(torch.zeros(1, 1, 1), [[0.5]], 1.0, 0.0, 3, 1.0)
    >>> [round(v, 6) for v in r[0, :, 0].tolist()]
    [1.0, -1.0, 1.0]
    """
    freqs = np.array(frequencies, dtype=np.float64)
    if freqs.shape != tuple(phases.shape[1:]):
        raise ValueError(f"phases of shape {tuple(phases.shape)} do not match frequencies "
                         f"of shape {freqs.shape}")
    grid = time_grid(steps, dt)
    ramp = np.clip(grid / ramp_time, 0.0, 1.0) if ramp_time > 0 else np.ones_like(grid)
    # cos(w t + phi) = cos(w t) cos(phi) - sin(w t) sin(phi): one product per axis instead of
    # a cosine per (episode, step, axis, frequency)
    angle = 2 * math.pi * freqs[:, :, None] * grid                 # (axes, freqs, T)
    as_tensor = lambda a: torch.as_tensor(a, dtype=phases.dtype, device=phases.device)  # noqa: E731
    cos_t = as_tensor(amplitude * np.cos(angle) * ramp)
    sin_t = as_tensor(amplitude * np.sin(angle) * ramp)
    signal = (torch.einsum("baf,aft->bta", torch.cos(phases), cos_t)
              - torch.einsum("baf,aft->bta", torch.sin(phases), sin_t))
    return signal


def draw_phases(task: TaskConfig, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Phases U(-pi, pi), (batch, n_axes, n_freqs), drawn in float64."""
    shape = (batch_size, len(task.frequencies), len(task.frequencies[0]))
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi


def sample_batch(task: TaskConfig, n_states: int, generator: torch.Generator, *,
                 batch_size: int | None = None, steps: int | None = None, dt: float = 0.1,
                 initial_state_range: float | None = None) -> Batch:
    """Draw one batch of episodes (float64; cast with :meth:`Batch.to`).

    Regulation: x0 ~ U(-a, a)^n_x. Tracking: x0 = 0 and a reference from fresh phases.
    """
    batch_size = batch_size or task.batch_size
    steps = steps or task.steps
    if task.kind == "tracking":
        phases = draw_phases(task, batch_size, generator)
        batch = Batch(x0=torch.zeros(batch_size, n_states, dtype=torch.float64),
                      reference=reference_signal(phases, task.frequencies, task.amplitude,
                                                 task.ramp_time, steps, dt),
                      phases=phases)
    else:
        bound = task.initial_state_range if initial_state_range is None else initial_state_range
        x0 = (torch.rand(batch_size, n_states, generator=generator, dtype=torch.float64) * 2
              - 1) * bound
        batch = Batch(x0=x0)
    return batch


def white_noise_batch(batch_size: int, steps: int, input_size: int, std: float,
                      generator: torch.Generator) -> Batch:
    """White-noise inputs y_t ~ N(0, std^2), (batch, steps, input_size), for open-loop
    imitation (SPEC 2); there is no plant state, so ``x0`` is empty."""
    inputs = torch.randn(batch_size, steps, input_size, generator=generator,
                         dtype=torch.float64) * std
    return Batch(x0=torch.zeros(batch_size, 0, dtype=torch.float64), inputs=inputs)
