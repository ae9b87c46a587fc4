"""The paper's figures, drawn from what the figure modules' analyses return (no science here).

Each ``draw_figN(data) -> matplotlib.figure.Figure`` takes the ``data`` dict of
``closedloop.paper.figN.analyze``. Conventions: closed loop blue, open loop red; stage 1,
2 and 3 shaded yellow, orange and green on epoch axes.

Example
-------
>>> from closedloop.plotting.figures import STAGE_COLORS
>>> len(STAGE_COLORS)
3
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

CLOSED, OPEN, THEORY = "#1f5fa8", "#c8312c", "#444444"
STAGE_COLORS = ("#fff2b3", "#ffd9a8", "#cdeccf")
REGION_COLORS = ("#d9f0d3", "#f4cccc", "#e6e6e6")   # stable, oscillatory, real


def _figure(rows: int, cols: int, width: float = 4.2, height: float = 3.3) -> tuple[Figure,
                                                                                     Any]:
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows),
                             squeeze=False, layout="constrained")
    return fig, axes.ravel()


def shade_stages(ax: Any, stages: dict[str, int | None], last_epoch: int,
                 legend: bool = True) -> None:
    """Shade stage 1, 2, 3 on an epoch axis from the detected boundaries."""
    s1, s2 = stages.get("stage1_end"), stages.get("stage2_end")
    bounds = [0, s1, s2, last_epoch]
    labels = ("stage 1", "stage 2", "stage 3")
    patches = []
    for index in range(3):
        start, end = bounds[index], bounds[index + 1]
        if start is None or end is None or end <= start:
            continue
        ax.axvspan(max(start, 0.8), end, color=STAGE_COLORS[index], zorder=0, lw=0)
        patches.append(Patch(color=STAGE_COLORS[index], label=labels[index]))
    if legend and patches:
        ax.add_artist(ax.legend(handles=patches, loc="lower left", fontsize=7, frameon=False))


def _epoch_axis(ax: Any, log: bool = True) -> None:
    ax.set_xlabel("epoch")
    if log:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)


def _unit_circle(ax: Any, zoom: tuple[float, float, float, float] | None = None) -> None:
    angle = np.linspace(0, 2 * math.pi, 721)
    ax.plot(np.cos(angle), np.sin(angle), color="#888888", lw=0.8, zorder=1)
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    if zoom is not None:
        ax.set_xlim(zoom[0], zoom[1])
        ax.set_ylim(zoom[2], zoom[3])
    else:
        ax.set_aspect("equal")


def seed_band(ax: Any, epochs: np.ndarray, data: dict[str, Any], key: str, color: str,
              start: int = 0) -> None:
    """Shade the spread over seeds of curve ``key`` (``data["spread"]``, set by ``reproduce``
    with several seeds) behind the curve of the seed shown."""
    band = data.get("spread", {}).get(key)
    if band is None:
        return
    low, high = band
    end = min(len(epochs), len(low))
    label = data.get("spread_label", "seeds")
    if label in ax.get_legend_handles_labels()[1]:
        label = "_nolegend_"                      # one legend entry per panel
    ax.fill_between(epochs[start:end], low[start:end], high[start:end], color=color,
                    alpha=0.18, lw=0, zorder=1, label=label)


def _loss_panel(ax: Any, data: dict[str, Any], title: str) -> None:
    epochs = data["epochs"]
    seed_band(ax, epochs, data, "train", CLOSED, start=1)
    seed_band(ax, epochs, data, "test", "black")
    ax.plot(epochs[1:], data["train"][1:], color=CLOSED, lw=1, label="train loss")
    ax.plot(epochs, data["test"], color="black", lw=1, label="test loss")
    ax.set_yscale("log")
    _epoch_axis(ax)
    ax.set_ylabel("loss")
    shade_stages(ax, data["stages"], int(epochs[-1]))
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)


def _rollout_panel(ax: Any, states: np.ndarray, horizon: int, title: str) -> None:
    steps = np.arange(states.shape[0])
    ax.plot(steps, states[:, 0], color=CLOSED, lw=1, label="position")
    ax.plot(steps, states[:, 1], color="#7fa7d6", lw=1, label="velocity")
    ax.axvline(horizon, color="black", lw=0.8, ls="--", label=f"training horizon T = {horizon}")
    ax.set_xlabel("time step")
    ax.set_ylabel("state")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)


def draw_fig1(data: dict[str, Any]) -> Figure:
    """Closed vs open loop: train and test losses (log axes) with the closed run's stages."""
    fig, (left, right) = _figure(1, 2, 5.0, 3.6)
    epochs = data["epochs"]
    open_epochs = data.get("open_epochs", epochs)
    for ax, key, title in ((left, "train", "training loss"),
                           (right, "test", "closed-loop test loss")):
        first = 1 if key == "train" else 0       # no training loss before the first update
        seed_band(ax, epochs, data, f"closed_{key}", CLOSED, start=first)
        seed_band(ax, open_epochs, data, f"open_{key}", OPEN, start=first)
        ax.plot(epochs[first:], data[f"closed_{key}"][first:], color=CLOSED, lw=1.2,
                label="closed loop")
        ax.plot(open_epochs[first:], data[f"open_{key}"][first:], color=OPEN, lw=1.2,
                label="open loop (imitation)")
        ax.set_yscale("log")
        _epoch_axis(ax)
        ax.set_ylabel(title)
        shade_stages(ax, data["stages"], int(epochs[-1]))
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    peak = data["open_peak_epoch"]
    right.annotate("open-loop peak", (peak, data["open_test"][peak]), xytext=(0.3, 0.6),
                   textcoords="axes fraction", fontsize=8, color=OPEN,
                   arrowprops={"arrowstyle": "->", "color": OPEN})
    left.set_title("Training loss (imitation loss for the open-loop student)", fontsize=9)
    right.set_title("Closed-loop test loss (stages of the closed-loop run shaded)", fontsize=9)
    fig.suptitle("Figure 1. Closed vs open loop, nonlinear double integrator", fontsize=11)
    return fig


def _regions(ax: Any, k1: np.ndarray, k2: np.ndarray, regions: np.ndarray,
             landscape: np.ndarray) -> None:
    ax.pcolormesh(k1, k2, regions, cmap=ListedColormap(REGION_COLORS), vmin=-0.5, vmax=2.5,
                  shading="auto", zorder=0, rasterized=True)
    contour = ax.contour(k1, k2, landscape, levels=12, colors="#555555", linewidths=0.5,
                         zorder=1)
    contour.set_rasterized(True)
    ax.clabel(contour, fontsize=6, fmt="%.0f")


def _gain_paths(ax: Any, data: dict[str, Any]) -> None:
    for key, color, label in (("gains_closed", CLOSED, "closed loop"),
                              ("gains_open", OPEN, "open loop")):
        gains = data[key]
        ax.plot(gains[:, 0], gains[:, 1], color=color, lw=1.2, label=label, zorder=3)
        ax.plot(*gains[0], "o", color=color, ms=4, zorder=4)
        ax.plot(*gains[-1], "s", color=color, ms=4, zorder=4)
    peak = data["open_peak_epoch"]
    ax.plot(*data["gains_open"][peak], "*", color=OPEN, ms=10, zorder=5,
            label="open-loop test-loss peak")
    ax.plot(*data["lqr"], "P", color="black", ms=8, zorder=5, label="LQR (infinite horizon)")
    ax.plot(*data["lqr_finite"], "X", color="#777777", ms=7, zorder=5,
            label="LQR (T = 50, first step)")
    ax.set_xlabel("k1 (position gain)")
    ax.set_ylabel("k2 (velocity gain)")


def draw_fig2(data: dict[str, Any]) -> Figure:
    """Gain space: test losses, loss landscape with stability regions and gain paths, zoom."""
    fig, (losses, landscape, zoom) = _figure(1, 3, 4.6, 4.4)
    epochs = data["epochs"]
    losses.plot(epochs, data["closed_test"], color=CLOSED, lw=1.2, label="closed loop")
    losses.plot(epochs, data["open_test"], color=OPEN, lw=1.2, label="open loop")
    losses.set_yscale("log")
    _epoch_axis(losses)
    losses.set_ylabel("closed-loop test loss")
    shade_stages(losses, data["stages"], int(epochs[-1]))
    losses.legend(fontsize=8, frameon=False, loc="upper right")
    losses.set_title("Test loss", fontsize=9)
    _regions(landscape, data["k1"], data["k2"], data["regions"], data["landscape"])
    _gain_paths(landscape, data)
    landscape.set_title("log state loss of u = k·x (50 steps from (1, 1))", fontsize=9)
    _regions(zoom, data["zoom_k1"], data["zoom_k2"], data["zoom_regions"],
             data["zoom_landscape"])
    _gain_paths(zoom, data)
    x0, x1, y0, y1 = data["zoom"]
    zoom.set_xlim(x0, x1)
    zoom.set_ylim(y0, y1)
    zoom.set_title("Zoom on stages 1-2 of the closed loop", fontsize=9)
    handles, _ = landscape.get_legend_handles_labels()
    handles += [Patch(color=c, label=n) for c, n in zip(
        REGION_COLORS, ("stable", "unstable, oscillatory", "unstable, real"), strict=True)]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("Figure 2. Gain space: stability regions (Jury), loss landscape, "
                 "effective gains, LQR", fontsize=11)
    return fig


def draw_fig3(data: dict[str, Any]) -> Figure:
    """Stage 1: loss, a long rollout, early eig(P), theory vs simulation, sigma_zm paths."""
    fig, axes = _figure(2, 3, 4.4, 3.4)
    _loss_panel(axes[0], data, "Low-rank network: loss and stages")
    probe = data["probe_epoch"]
    _rollout_panel(axes[1], data["long_rollout"], data["horizon"],
                   f"Network after epoch {probe}: unstable beyond T")
    early = data["early_eigenvalues"]
    colors = plt.cm.viridis(np.linspace(0, 1, early.shape[0]))
    for epoch, row in enumerate(early):
        axes[2].scatter(row.real, row.imag, s=10, color=colors[epoch], zorder=3)
    _unit_circle(axes[2], (0.6, 1.35, -0.35, 0.35))
    mappable = plt.cm.ScalarMappable(cmap="viridis",
                                     norm=plt.Normalize(0, early.shape[0] - 1))
    fig.colorbar(mappable, ax=axes[2], label="epoch")
    axes[2].set_title("eig(P), first epochs: a real pair merges", fontsize=9)
    grid = data["grid"]
    axes[3].plot(grid, data["simulated"], color=CLOSED, lw=1.2,
                 label="simulated (100 steps from (1, -1))")
    axes[3].plot(grid, data["theory"], color=THEORY, lw=1.2, ls="--",
                 label="theory 0.5 (1 - r^(T+1)) / (1 - r)")
    axes[3].set_yscale("log")
    axes[3].set_xlabel("σ_zm")
    axes[3].set_ylabel("loss")
    axes[3].legend(fontsize=7, frameon=False)
    axes[3].set_title("Stage-1 loss vs σ_zm", fontsize=9)
    paths = data["overlap_paths"]
    cmap = plt.cm.coolwarm(np.linspace(0, 1, len(paths)))
    for color, (value, (epochs, values)) in zip(cmap, sorted(paths.items()), strict=True):
        axes[4].plot(epochs, values, color=color, lw=1.1, label=f"{value:+.2f}")
    axes[4].axhline(0, color="black", lw=0.6)
    axes[4].set_xlabel("epoch")
    axes[4].set_ylabel("σ_zm")
    axes[4].legend(fontsize=6, frameon=False, ncol=2, title="σ_zm(0)", title_fontsize=7)
    axes[4].set_title("σ_zm from prescribed starts", fontsize=9)
    _summary_panel(axes[5], data["summary"])
    fig.suptitle("Figure 3. Stage 1: negative position feedback", fontsize=11)
    return fig


def _summary_panel(ax: Any, lines: list[str]) -> None:
    ax.axis("off")
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=8.5, family="monospace",
            transform=ax.transAxes)


LEGEND_PATHS = 8
"""Up to this many paths get a legend entry each; more get a colour bar."""


def _path_panel(ax: Any, paths: list[tuple[Any, np.ndarray]], label: str, cmap: Any,
                title: str) -> None:
    colors = cmap(np.linspace(0.1, 0.95, len(paths)))
    for color, (key, path) in zip(colors, paths, strict=True):
        ax.plot(path.real, np.abs(path.imag), color=color, lw=1.1, label=f"{label} = {key}")
        if len(path):
            ax.plot(path[0].real, abs(path[0].imag), "o", color=color, ms=3)
    _unit_circle(ax, (0.9, 1.05, 0.0, 0.5))
    if len(paths) <= LEGEND_PATHS:
        ax.legend(fontsize=6, frameon=False, ncol=2, loc="upper left")
    else:
        keys = [float(key) for key, _ in paths]
        scale = plt.cm.ScalarMappable(cmap=ListedColormap(colors),
                                      norm=plt.Normalize(min(keys), max(keys)))
        ax.figure.colorbar(scale, ax=ax, label=label)
    ax.set_title(title, fontsize=9)


def draw_fig4(data: dict[str, Any]) -> Figure:
    """Stage 2: loss, a plateau rollout, the zig-zag, alpha sweep, T sweep."""
    fig, axes = _figure(2, 3, 4.4, 3.4)
    _loss_panel(axes[0], data, "Low-rank network: loss and stages")
    _rollout_panel(axes[1], data["plateau_rollout"], data["horizon"],
                   f"Network after epoch {data['plateau_epoch']} (plateau)")
    zigzag = data["zigzag"]
    steps = np.arange(len(zigzag)) + data["zigzag_start"]
    scatter = axes[2].scatter(zigzag.real, np.abs(zigzag.imag), c=steps, s=8, cmap="viridis",
                              zorder=3)
    axes[2].plot(zigzag.real, np.abs(zigzag.imag), color="#999999", lw=0.5, zorder=2)
    span_re = (float(zigzag.real.min()) - 0.01, float(zigzag.real.max()) + 0.01)
    span_im = (float(np.abs(zigzag.imag).min()) - 0.01, float(np.abs(zigzag.imag).max()) + 0.01)
    _unit_circle(axes[2], (*span_re, *span_im))
    fig.colorbar(scatter, ax=axes[2], label="epoch")
    axes[2].set_title("Dominant eig(P): zig-zag to the unit circle", fontsize=9)
    alpha = [(f"{a:.2f}", path) for a, path in data["alpha_paths"]]
    _path_panel(axes[3], alpha, "α", plt.cm.plasma,
                "Theory: descent on L_eff(α) from epoch 10")
    crossings = data["alpha_crossings"]
    if crossings:
        points = np.array([value for _, value in crossings])
        axes[3].plot(points.real, np.abs(points.imag), "kx", ms=5, zorder=5,
                     label="crossing")
    lengths = [(steps, path[: (stable or len(path) - 1) + 1])
               for steps, path, stable in data["length_paths"]]
    _path_panel(axes[4], lengths, "T", plt.cm.viridis,
                "Experiment: retraining from epoch 10 with T")
    ax = axes[5]
    if crossings:
        ax.plot([a for a, _ in crossings], [abs(v.imag) for _, v in crossings], "o-",
                color="#8e3b8e", label="theory: Im λ at the crossing vs α")
    ax.set_xlabel("α", color="#8e3b8e")
    ax.set_ylabel("Im λ when it enters the unit circle")
    top = ax.twiny()
    measured = [(steps, value) for steps, value in data["length_crossings"] if value is not None]
    if measured:
        top.plot([s for s, _ in measured], [v for _, v in measured], "s-", color="#2a7f62",
                 label="experiment: Im λ at stabilisation vs T")
    top.set_xscale("log")
    top.set_xlabel("episode length T", color="#2a7f62")
    handles = ax.get_legend_handles_labels()[0] + top.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, frameon=False, loc="lower left")
    ax.set_title("The crossing moves down with α and with T", fontsize=9)
    fig.suptitle("Figure 4. Stage 2: building a world model", fontsize=11)
    return fig


def draw_fig5(data: dict[str, Any]) -> Figure:
    """Stage 3: loss, the final rollout, eig(P) after stabilisation, full vs reduced."""
    fig, axes = _figure(1, 4, 4.2, 3.5)
    _loss_panel(axes[0], data, "Low-rank network: loss and stages")
    _rollout_panel(axes[1], data["final_rollout"], data["horizon"],
                   "Final network from (1, -1)")
    late = data["late_eigenvalues"]
    colors = plt.cm.viridis(np.linspace(0, 1, late.shape[0]))
    for epoch in range(0, late.shape[0], max(1, late.shape[0] // 200)):
        axes[2].scatter(late[epoch].real, late[epoch].imag, s=5, color=colors[epoch])
    _unit_circle(axes[2])
    axes[2].set_title(f"eig(P) from stabilisation (epoch {data['start']}) to the end",
                      fontsize=9)
    colors = plt.cm.tab10(np.arange(len(data["comparisons"])))
    for color, item in zip(colors, data["comparisons"], strict=True):
        epochs = np.arange(len(item["full"])) + item["start"]
        axes[3].plot(epochs[1:], item["full"][1:], color=color, lw=1.2,
                     label=f"β = {item['beta']:g} full")
        axes[3].plot(epochs[1:], item["reduced"][1:], color=color, lw=1.2, ls="--",
                     label="reduced")
    axes[3].set_yscale("log")
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("training loss")
    axes[3].legend(fontsize=6, frameon=False, ncol=2)
    axes[3].set_title("Full model vs four-overlap reduced model", fontsize=9)
    fig.suptitle("Figure 5. Stage 3: policy refinement", fontsize=11)
    return fig


def draw_fig6(data: dict[str, Any]) -> Figure:
    """Tracking: example, losses, probes by stage, eigenvalues, acquisitions, human data."""
    fig, axes = _figure(2, 3, 4.6, 3.6)
    example = data["example"]
    axes[0].plot(example["reference"][:, 0], example["reference"][:, 1], color="#999999",
                 lw=1.2, label="reference")
    axes[0].plot(example["position"][:, 0], example["position"][:, 1], color=CLOSED, lw=1,
                 label="closed-loop network")
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[0].legend(fontsize=7, frameon=False)
    axes[0].set_title("Example: final network tracking a test reference", fontsize=9)
    epochs = data["epochs"]
    seed_band(axes[1], epochs, data, "closed_test", CLOSED)
    seed_band(axes[1], data["open_epochs"], data, "open_test", OPEN)
    axes[1].plot(epochs, data["closed_test"], color=CLOSED, lw=1, label="closed loop")
    axes[1].plot(data["open_epochs"], data["open_test"], color=OPEN, lw=1, label="open loop")
    probe_colors = plt.cm.plasma(np.linspace(0, 0.85, len(data["frequencies"])))
    for index, (found, color) in enumerate(zip(data["acquisitions"], probe_colors, strict=True)):
        if found["end"] is not None:
            axes[1].axvspan(found["onset"], found["end"], color=color, alpha=0.15, lw=0)
            axes[1].text(found["end"], 0.97 - 0.06 * index,
                         f" {found['frequency_hz']:g} Hz acquired", fontsize=6, va="top",
                         ha="left", transform=axes[1].get_xaxis_transform())
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("test loss")
    axes[1].legend(fontsize=7, frameon=False)
    axes[1].set_title("Test loss: a staircase in closed loop", fontsize=9)
    stage_colors = plt.cm.viridis(np.linspace(0, 0.9, len(data["stage_rollouts"])))
    time_axis = data["time"]
    axes[2].plot(time_axis, data["stage_reference"], color="#999999", lw=1.5,
                 label="reference x")
    for color, (epoch, position) in zip(stage_colors, data["stage_rollouts"], strict=True):
        axes[2].plot(time_axis, position, color=color, lw=1, label=f"epoch {epoch}")
    axes[2].set_xlabel("time (s)")
    axes[2].set_ylabel("x position")
    axes[2].legend(fontsize=6, frameon=False, ncol=3, loc="lower center")
    axes[2].set_title("Tracking at each step of the staircase", fontsize=9)
    imag = data["eigen_imag"]
    axes[3].plot(data["eigen_epochs"], imag, ".", color="#bbbbbb", ms=1, alpha=0.5)
    for color, found, (path_epochs, path_imag) in zip(probe_colors, data["acquisitions"],
                                                      data["outlier_paths"], strict=True):
        axes[3].plot(path_epochs, path_imag, color=color, lw=1.2)
        if found["outlier"] is not None:
            axes[3].plot(found["end"], found["outlier"][1], "o", color=color, ms=4)
    for frequency in data["frequencies"]:
        axes[3].axhline(2 * math.pi * frequency, color=OPEN, lw=0.8, ls="--")
        axes[3].text(data["eigen_epochs"][-1], 2 * math.pi * frequency, f" {frequency:g} Hz",
                     fontsize=6, va="center", color=OPEN)
    axes[3].set_ylim(0, 2 * math.pi * max(data["frequencies"]) * 1.4)
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("Im λ of (-I + W)/τ  (rad/s)")
    axes[3].set_title("Each acquisition's outlier (dot: end of its drop) and 2πf", fontsize=9)
    for color, frequency, errors, found in zip(probe_colors, data["frequencies"],
                                               data["probe_errors"].T, data["acquisitions"],
                                               strict=True):
        axes[4].plot(data["probe_epochs"], errors, color=color, lw=1, label=f"{frequency:g} Hz")
        if found["end"] is not None:
            at = int(np.searchsorted(data["probe_epochs"], found["end"]))
            axes[4].plot(found["end"], errors[at], "o", color=color, ms=3)
    axes[4].axhline(data["acquired_level"], color="black", lw=0.8, ls=":",
                    label="acquisition crossing")
    axes[4].set_yscale("log")
    axes[4].set_xlabel("epoch")
    axes[4].set_ylabel("probe error / (a²/2)")
    axes[4].legend(fontsize=6, frameon=False)
    axes[4].set_title("Per-frequency error (dot: end of the drop)", fontsize=9)
    axes[5].plot(data["frequencies"], data["normalized_acquisition"], "o-", color=CLOSED,
                 label="closed-loop RNN")
    axes[5].plot(data["frequencies"], data["human"], "s--", color="#2a9d5c",
                 label="human (digitised from the paper)")
    axes[5].set_xlabel("frequency (Hz)")
    axes[5].set_ylabel("end of acquisition / total epochs")
    axes[5].legend(fontsize=7, frameon=False)
    axes[5].set_title("Acquisition time rises with frequency", fontsize=9)
    fig.suptitle("Figure 6. Tracking sums of sinusoids with a 2-D point mass", fontsize=11)
    return fig


DRAW = {"fig1": draw_fig1, "fig2": draw_fig2, "fig3": draw_fig3, "fig4": draw_fig4,
        "fig5": draw_fig5, "fig6": draw_fig6}
