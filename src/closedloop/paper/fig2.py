"""Figure 2: the pair in gain space (science 5, 7.2) and claim C1b
(:mod:`closedloop.analysis.claims.c1b`).

The gain paths are the runs' recorded effective gains, fitted every epoch on the states
``evaluation.gain_fit_states`` names (``gain_fit`` in the drawing data says which): by default
a 128-state low-discrepancy set, within 0.5 % of the gain over all initial states; the
paper's estimate on the 10 test states (``gain_fit_states: test_set``) is about 20 % off at
the end of training, for every seed, and moves the whole path (docs/science.md, gain
space)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.gains import (
    classify_static_gains,
    equivalent_costs,
    finite_horizon_lqr,
    gain_fit_description,
    loss_landscape,
    lqr_gain,
)
from closedloop.analysis.summary import run_stages
from closedloop.core.plants import plant_from_config
from closedloop.paper.base import FigureAnalysis, Job, Settings
from closedloop.paper.pair import pair_jobs, pair_names, pair_roles
from closedloop.runs.store import Run

TITLE = "Gain space: stability regions, loss landscape and the two gain trajectories"
GRID = (-1.2, 0.6, 200)            # science 5's landscape grid (k1 and k2)
VELOCITY_GRID = (-1.4, 0.6, 220)   # k2 reaches a little lower, to show the LQR gain
CURVES: dict[str, tuple[str, str]] = {}
"""No spread over seeds is shaded in gain space."""


def jobs(settings: Settings, seed: int) -> list[Job]:
    """The closed/open pair (shared with figure 1)."""
    return pair_jobs(settings, seed)


def roles(runs: Mapping[str, Run], settings: Settings, seed: int) -> dict[str, Run]:
    """The closed/open pair of one seed (shared with figure 1)."""
    return pair_roles(runs, *pair_names(seed))


def analyze(runs: Mapping[str, Run], settings: Settings, seed: int) -> FigureAnalysis:
    """Gain trajectories (and what they were fitted on), the landscape and regions on a
    grid, LQR gains, and claim C1b."""
    closed_name, open_name = pair_names(seed)
    closed, opened = runs[closed_name], runs[open_name]
    gains_closed = closed.metrics["gains"][:, 0]
    gains_open = opened.metrics["gains"][:, 0]
    claim = CLAIMS.get("C1b").judge(closed, opened)
    peak = claim.measured["open_peak_epoch"]

    plant = plant_from_config(closed.config.plant)
    k_position, k_velocity = np.linspace(*GRID), np.linspace(*VELOCITY_GRID)
    k1, k2 = np.meshgrid(k_position, k_velocity)
    costs = equivalent_costs(closed.config.loss, plant, closed.config.task.batch_size,
                             closed.config.task.steps)
    stages = run_stages(closed)
    horizon = stages.stage2_end or closed.last_epoch
    box = gains_closed[: horizon + 1]
    x0, x1 = float(np.nanmin(box[:, 0])), float(np.nanmax(box[:, 0]))
    y0, y1 = float(np.nanmin(box[:, 1])), float(np.nanmax(box[:, 1]))
    pad_x, pad_y = 0.2 * (x1 - x0) + 0.02, 0.2 * (y1 - y0) + 0.02
    zoom = (x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y)
    z1, z2 = np.meshgrid(np.linspace(zoom[0], zoom[1], 300), np.linspace(zoom[2], zoom[3], 300))
    data = {
        "k1": k_position, "k2": k_velocity, "landscape": loss_landscape(plant, k1, k2),
        "regions": classify_static_gains(k1, k2),
        "zoom_k1": z1[0], "zoom_k2": z2[:, 0], "zoom_landscape": loss_landscape(plant, z1, z2),
        "zoom_regions": classify_static_gains(z1, z2),
        "gains_closed": gains_closed, "gains_open": gains_open,
        "lqr": -lqr_gain(plant.A, plant.B, costs.Q, costs.R)[0],
        "lqr_finite": -finite_horizon_lqr(plant.A, plant.B, costs.Q, costs.R,
                                          closed.config.task.steps)[0, 0],
        "epochs": closed.epochs, "closed_test": closed.metrics["test_loss"],
        "open_test": opened.metrics["test_loss"], "stages": stages.to_json(),
        "open_peak_epoch": peak, "zoom": zoom,
        "gain_fit": gain_fit_description(closed.config.evaluation, plant.n_core_states),
    }
    return FigureAnalysis([claim], data)
