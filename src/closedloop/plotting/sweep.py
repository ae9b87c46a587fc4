"""Summary plots of a sweep, drawn from the rows of :mod:`closedloop.scale.sweep_summary`.

Three panels: the stabilisation epoch against the episode length T, the peak ratio of the test
loss (largest after epoch 0 over epoch 0) against the control cost beta, and the support
fraction of each claim with its count. Closed-loop runs blue, open-loop students red.

Example
-------
>>> rows = [{"role": "run", "episode_length": 50, "stabilization_epoch": 103,
...          "control_cost": 0.5, "peak_ratio": 0.55, "status": "complete"}]
>>> draw_sweep_summary(rows, {"C1": {"supported": 0, "judged": 0, "fraction": None}}).axes[0]
<Axes: ...>
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from closedloop.plotting.figures import CLOSED, OPEN, _figure

ROLES = (("closed loop", ("run", "teacher"), CLOSED, "o"),
         ("open loop (student)", ("student",), OPEN, "s"))


def _scatter_with_medians(ax: Any, rows: Sequence[dict[str, Any]], x_key: str, y_key: str,
                          jitter: float) -> bool:
    """Every run as a dot (jittered in x), the median per x as a line, ticks at the swept
    values (a log axis when they span more than a decade); False if no data."""
    drawn = False
    rng = np.random.default_rng(0)
    every_x: set[float] = set()
    for label, roles, color, marker in ROLES:
        points = [(float(r[x_key]), float(r[y_key])) for r in rows
                  if r.get("role") in roles and r.get(x_key) is not None
                  and r.get(y_key) is not None]
        if not points:
            continue
        x, y = np.array(points).T
        spread = 1 + jitter * rng.uniform(-1, 1, x.size)
        ax.scatter(x * spread, y, s=12, color=color, marker=marker, alpha=0.45, lw=0,
                   label=f"{label} ({x.size} runs)")
        levels = np.unique(x)
        every_x.update(levels.tolist())
        ax.plot(levels, [np.median(y[x == v]) for v in levels], color=color, lw=1.5,
                marker="_", ms=14)
        drawn = True
    positive = sorted(v for v in every_x if v > 0)
    if len(positive) == len(every_x) >= 2 and positive[-1] / positive[0] > 10:
        ax.set_xscale("log")
    if every_x:
        ticks = sorted(every_x)
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()
        if len(ticks) == 1:
            ax.set_xlim(ticks[0] - 1 if ticks[0] == 0 else ticks[0] * 0.8,
                        ticks[0] + 1 if ticks[0] == 0 else ticks[0] * 1.2)
    return drawn


def _runs_panel(ax: Any, rows: Sequence[dict[str, Any]], x: tuple[str, str],
                y: tuple[str, str], title: str, empty: str, log_y: bool) -> None:
    """One column of the table against another ((key, axis label) each), or ``empty``."""
    if _scatter_with_medians(ax, rows, x[0], y[0], 0.04):
        if log_y:
            ax.set_yscale("log")
            ax.axhline(1.0, color="#888888", lw=0.8, ls=":")
        ax.legend(fontsize=7, frameon=False)
    else:
        _empty(ax, empty)
    ax.set_xlabel(x[1])
    ax.set_ylabel(y[1])
    ax.set_title(title, fontsize=9)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9,
            color="#666666")


def draw_sweep_summary(rows: Sequence[dict[str, Any]],
                       support: dict[str, dict[str, Any]]) -> Figure:
    """The three summary panels of a sweep.

    Example
    -------
    >>> figure = draw_sweep_summary([], {})
    >>> len(figure.axes)
    3
    """
    fig, (stab, peak, claims) = _figure(1, 3, 4.4, 3.5)
    _runs_panel(stab, rows, ("episode_length", "episode length T (steps)"),
                ("stabilization_epoch", "stabilisation epoch"),
                "Stabilisation epoch vs T (line: median)", "no run stabilised", log_y=False)
    _runs_panel(peak, rows, ("control_cost", "control cost beta"),
                ("peak_ratio", "peak test loss / epoch-0 test loss"),
                "Test-loss peak vs beta (line: median)", "no finished runs", log_y=True)

    judged = [(claim, s) for claim, s in support.items() if s["judged"]]
    if judged:
        names = [claim for claim, _ in judged]
        fractions = [s["fraction"] for _, s in judged]
        bars = claims.bar(range(len(names)), fractions, color="#5a8f5a")
        for bar, (_, s) in zip(bars, judged, strict=True):
            claims.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02,
                        f"{s['supported']}/{s['judged']}", ha="center", fontsize=8)
        claims.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
        claims.set_ylim(0, 1.12)
    else:
        _empty(claims, "no claim could be judged")
    claims.set_ylabel("fraction of runs supporting it")
    claims.set_title("Claims of the reproduce report, per run", fontsize=9)
    fig.suptitle("Sweep summary", fontsize=11)
    return fig
