"""A claim over seeds: the distribution of its headline numbers, one small panel each.

``draw_claim_seeds(record)`` takes one claim record of ``results.json`` (``reproduce`` with
more than one seed): every seed is a dot, green where the seed supports the claim and red
where it does not; seeds in different cases (C2) get different markers.

Example
-------
>>> record = {"id": "C9", "support": 0.5, "per_seed": [True, False], "table": [
...     {"seed": 0, "supported": True, "case": None, "numbers": {"x": 1.0}},
...     {"seed": 1, "supported": False, "case": None, "numbers": {"x": 3.0}}]}
>>> len(draw_claim_seeds(record).axes)
1
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

SUPPORTED, NOT_SUPPORTED = "#2a8a4a", "#b8322e"
MARKERS = ("o", "s", "^", "D")


def draw_claim_seeds(record: dict[str, Any]) -> Figure:
    """One panel per headline number of ``record``: its value in every seed."""
    table = record["table"]
    keys: list[str] = []
    for row in table:
        keys += [key for key in row["numbers"] if key not in keys]
    cases = sorted({row["case"] for row in table if row["case"] is not None})
    panels = max(1, len(keys))
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 2.4), squeeze=False,
                             layout="constrained")
    rng = np.random.default_rng(0)          # the jitter only spreads dots, it carries nothing
    for ax, key in zip(axes[0], keys, strict=False):
        values = [row["numbers"][key] for row in table if row["numbers"].get(key) is not None]
        if values and min(values) > 0 and max(values) > 100 * min(values):
            ax.set_yscale("log")             # e.g. loss drops spanning decades
        for row in table:
            value = row["numbers"].get(key)
            if value is None:
                continue
            marker = MARKERS[cases.index(row["case"]) % len(MARKERS)] if row["case"] else "o"
            ax.plot(rng.uniform(-0.25, 0.25), value, marker, ms=4, alpha=0.8,
                    color=SUPPORTED if row["supported"] else NOT_SUPPORTED)
        ax.set_xlim(-0.6, 0.6)
        ax.set_xticks([])
        ax.set_title(key, fontsize=8)
        ax.tick_params(labelsize=7)
    if not keys:
        axes[0, 0].axis("off")
    handles = [Line2D([], [], ls="", marker="o", color=SUPPORTED, label="supports"),
               Line2D([], [], ls="", marker="o", color=NOT_SUPPORTED, label="does not")]
    handles += [Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="#666666",
                       label=case) for i, case in enumerate(cases)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7,
               frameon=False)
    votes = record["per_seed"]
    fig.suptitle(f"{record['id']}: {sum(votes)}/{len(votes)} seeds support it", fontsize=9)
    return fig
