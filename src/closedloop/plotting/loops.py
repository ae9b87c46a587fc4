"""Figures of the studies of users' own loops (:mod:`closedloop.studies.loops`).

Example
-------
>>> from closedloop.plotting.loops import draw_pendulum_pair        # doctest: +SKIP
>>> draw_pendulum_pair(closed_runs, open_runs, per_seed).savefig("pair.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from closedloop.plotting.figures import CLOSED, OPEN, _epoch_axis, _figure, _unit_circle
from closedloop.runs.store import Run

SHOWN_EIGENVALUES = 4
"""Leading eigenvalues drawn in the complex-plane panels."""


def _curves(ax: Any, runs: Sequence[Run], metric: str, color: str, label: str,
            offset: int = 0) -> None:
    for index, run in enumerate(runs):
        ax.plot(run.epochs + offset, run.metrics[metric], color=color, lw=1.2 if index == 0
                else 0.6, alpha=1.0 if index == 0 else 0.45,
                label=label if index == 0 else "_nolegend_")


def _eigenvalue_paths(ax: Any, run: Run, title: str,
                      zoom: tuple[float, float, float, float] | None = (-0.2, 1.3, -0.6, 0.6),
                      first: int = 0) -> None:
    """The leading coupled eigenvalues of ``run`` from epoch ``first`` on, coloured by
    epoch."""
    keep = run.epochs >= first
    values = run.coupled_eigenvalues[keep, :SHOWN_EIGENVALUES]
    epochs = np.broadcast_to(run.epochs[keep, None], values.shape)
    points = ax.scatter(values.real.ravel(), values.imag.ravel(), c=epochs.ravel(), s=2,
                        cmap="viridis", zorder=2)
    _unit_circle(ax, zoom=zoom)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(points, ax=ax, label="epoch", shrink=0.8)


def draw_pendulum_pair(closed: Sequence[Run], opened: Sequence[Run],
                       per_seed: Sequence[dict[str, Any]]) -> Figure:
    """Test loss and spectral radius of every seed's closed and open run, and the leading
    coupled eigenvalues of the first seed's two runs over training."""
    fig, axes = _figure(2, 2, width=5.0, height=3.6)
    _curves(axes[0], closed, "test_loss", CLOSED, "closed loop")
    _curves(axes[0], opened, "test_loss", OPEN, "open loop (imitation)")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("closed-loop test loss")
    _epoch_axis(axes[0])
    supported = sum(r["c1_supported"] for r in per_seed)
    axes[0].set_title(f"test loss; open-loop peak (C1 criterion) in {supported}/"
                      f"{len(per_seed)} seeds", fontsize=9)
    axes[0].legend(fontsize=7, frameon=False)
    _curves(axes[1], closed, "spectral_radius", CLOSED, "closed loop")
    _curves(axes[1], opened, "spectral_radius", OPEN, "open loop")
    axes[1].axhline(1.0, color="#888888", lw=0.8)
    axes[1].set_ylabel("spectral radius at upright")
    _epoch_axis(axes[1])
    axes[1].set_title("coupled spectral radius at the upright operating point", fontsize=9)
    _eigenvalue_paths(axes[2], closed[0], f"closed loop, seed {per_seed[0]['seed']}: "
                                          "leading eig over training")
    _eigenvalue_paths(axes[3], opened[0], f"open loop, seed {per_seed[0]['seed']}")
    fig.suptitle("Pendulum held upright: closed versus open loop", fontsize=11)
    return fig


def _split_curve(ax: Any, epochs: np.ndarray, values: np.ndarray, switch: int, first: bool
                 ) -> None:
    for mask, color, label in ((epochs < switch, CLOSED, "no field"),
                               (epochs >= switch - 1, OPEN, "curl field on")):
        ax.plot(epochs[mask], values[mask], color=color, lw=1.2 if first else 0.6,
                alpha=1.0 if first else 0.45, label=label if first else "_nolegend_")


def draw_curl_field(runs: Sequence[Run], switch: int,
                    paths: dict[str, tuple[np.ndarray, np.ndarray]],
                    deviation: Sequence[tuple[tuple[np.ndarray, np.ndarray],
                                              tuple[np.ndarray, np.ndarray]]],
                    title: str = "Reaching: a curl force field switched on") -> Figure:
    """Test loss, spectral radius and the paths' lateral deviation before and after the field
    is switched on at epoch ``switch`` (every seed; ``deviation`` holds per seed the curves
    without and with the field), the first seed's leading eigenvalues
    while it re-learns, and its hand paths at four moments, under ``title``."""
    fig, axes = _figure(2, 4, width=3.9, height=3.4)
    for index, run in enumerate(runs):
        _split_curve(axes[0], run.epochs, run.metrics["test_loss"], switch, index == 0)
        _split_curve(axes[1], run.epochs, run.metrics["spectral_radius"], switch, index == 0)
        for (epochs, values), color in zip(deviation[index], (CLOSED, OPEN), strict=True):
            axes[2].plot(epochs, values, color=color, lw=1.2 if index == 0 else 0.6,
                         alpha=1.0 if index == 0 else 0.45)
    labels = ("test loss", "spectral radius at the start", "lateral deviation of the paths")
    for ax, label in zip(axes[:3], labels, strict=True):
        ax.axvline(switch, color="black", lw=0.8, ls="--")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7, frameon=False)
    axes[1].axhline(1.0, color="#888888", lw=0.8)
    axes[2].axhline(0.0, color="#888888", lw=0.8)
    axes[0].set_title("field switched on at the dashed line", fontsize=9)
    axes[1].set_title("coupled spectral radius (hold at the start)", fontsize=9)
    axes[2].set_title("deflection: learned away, then re-learned", fontsize=9)
    _eigenvalue_paths(axes[3], runs[0], "leading eig at the start while re-learning",
                      zoom=None, first=switch)
    for ax, (name, (hand, targets)) in zip(axes[4:], paths.items(), strict=True):
        for path, target in zip(hand, targets, strict=True):
            if np.linalg.norm(target) == 0:
                continue
            ax.plot(path[:, 0], path[:, 1], color="#333333", lw=1)
            ax.plot(*target, "o", color=OPEN, ms=4)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.suptitle(title, fontsize=11)
    return fig


MODE_COLORS = (CLOSED, OPEN, "#2e8b57", "#8a5ac2")


def draw_compare_modes(modes: dict[str, Sequence[Run]]) -> Figure:
    """Test loss and spectral radius of every seed in each training mode (at most four),
    the first seed's effective-gain paths side by side, and its leading eigenvalues in the
    third mode (black-box training)."""
    fig, axes = _figure(2, 2, width=5.0, height=3.6)
    for (label, runs), color in zip(modes.items(), MODE_COLORS, strict=True):
        _curves(axes[0], runs, "test_loss", color, label)
        _curves(axes[1], runs, "spectral_radius", color, label)
        gains = runs[0].metrics["gains"][:, 0]
        axes[2].plot(gains[:, 0], gains[:, 1], color=color, lw=1.2, label=label)
        axes[2].plot(*gains[-1], "o", color=color, ms=4)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("closed-loop test loss")
    axes[0].legend(fontsize=7, frameon=False)
    axes[0].set_title("test loss of the mean policy", fontsize=9)
    axes[1].axhline(1.0, color="#888888", lw=0.8)
    axes[1].set_ylabel("spectral radius of P")
    axes[1].set_title("coupled spectral radius", fontsize=9)
    for ax in axes[:2]:
        _epoch_axis(ax)
    axes[2].set_xlabel("k1 (position gain)")
    axes[2].set_ylabel("k2 (velocity gain)")
    axes[2].set_title("effective gains over training (first seed; dot: the end)", fontsize=9)
    label, black = list(modes.items())[min(2, len(modes) - 1)]
    _eigenvalue_paths(axes[3], black[0], f"{label}, first seed: leading eig over training")
    fig.suptitle("Double integrator: " + ", ".join(modes), fontsize=11)
    return fig


def draw_spectra(coupled: np.ndarray, recurrent: np.ndarray, title: str) -> Figure:
    """One epoch's spectra in the complex plane with the unit circle: the coupled matrix P's
    and the recurrent weights W's (what a live logger shows every so often).

    Example
    -------
    >>> figure = draw_spectra(np.array([0.5 + 0.5j, 0.5 - 0.5j]), np.array([0.1, -0.1]), "")
    >>> len(figure.axes)
    2
    """
    fig, axes = _figure(1, 2, width=3.2, height=3.2)
    for ax, values, name, color in ((axes[0], coupled, "eig(P)", CLOSED),
                                    (axes[1], recurrent, "eig(W)", OPEN)):
        values = np.asarray(values)
        values = values[np.isfinite(values)]
        _unit_circle(ax)
        ax.plot(values.real, values.imag, "o", ms=3, color=color)
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
