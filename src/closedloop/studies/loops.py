"""Studies of loops beyond the paper, each shipped as presets and run by one command
(``closedloop study NAME``; docs/loops.md has their results):

* ``pendulum-pair``: the closed-versus-open pair of the paper on a damped pendulum held upright
  (``pendulum-upright-closed``, then ``pendulum-upright-open`` imitating it from the same
  initial weights): is there an open-loop test-loss peak (claim C1's own criterion), where do
  the spectra cross the unit circle, does the closed loop show the stages?
* ``curl-field``: centre-out reaching with a point mass, a curl force field switched on in
  the middle of training (``reach-pointmass-curl``, a ``perturbation`` of the plant): the
  classic motor-adaptation experiment, read in the hand paths (lateral deviation,
  after-effect) and in the coupled spectrum.
* ``muscle-curl-field``: the same experiment with the muscle arm (``reach-muscle-arm-curl``:
  reaching with a go cue, the field on the hand from update 2001), read also in the hand's
  final error, the stages of the coupled spectrum at the hold posture (network, activations
  and skeleton) while the null field is learned, and the trained loop's fixed points holding
  still.
* ``compare-modes``: the paper's network on the double integrator trained closed loop, open
  loop, with the plant as a black box (REINFORCE) and by node perturbation, from the same
  initial weights.

Every run is a run file in ``OUT/runs`` (a second call reuses finished files and resumes
unfinished ones); the seeds of one preset train together as one ensemble.

Example
-------
>>> result = run_study("pendulum-pair", "studies/pendulum", seeds=[0, 1])   # doctest: +SKIP
>>> result["support"]["open-loop peak (C1)"]                                # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.claims.c1 import CLOSED_RISE, PEAK_FACTOR
from closedloop.analysis.coupling import operating_point_spectra
from closedloop.analysis.replay import closed_loop
from closedloop.analysis.spectrum import detect_stages
from closedloop.analysis.summary import run_stages
from closedloop.config import RunConfig, load_preset
from closedloop.core.plants import plant_from_config
from closedloop.core.rollout import build_loop
from closedloop.core.tasks import sample_batch
from closedloop.errors import ConfigError
from closedloop.runs.store import Run, load_run, stabilization_epoch
from closedloop.scale.jobs import train_group
from closedloop.training.sources import load_initial_parameters, load_teacher

Progress = Callable[[str, int], Callable[[int, Any], None]]
"""Called with a group's label and epochs when it starts; returns its per-epoch callback."""


def _train(configs: Sequence[RunConfig], paths: Sequence[Path], initials: Sequence[Any] | None,
           teachers: Sequence[Any] | None, label: str, progress: Progress | None) -> list[Run]:
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    train_group(list(configs), list(paths), initials, teachers, label=label,
                progress=None if progress is None else progress(label,
                                                                configs[0].training.epochs))
    return [load_run(p) for p in paths]


def _quantiles(values: Sequence[float | None]) -> dict[str, Any]:
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not finite.size:
        return {"median": None, "min": None, "max": None, "count": 0}
    return {"median": float(np.median(finite)), "min": float(finite.min()),
            "max": float(finite.max()), "count": int(finite.size)}


def first_crossing(run: Run) -> int | None:
    """The first epoch whose coupled spectral radius is below 1 (None: never).

    Example
    -------
    >>> first_crossing(load_run("studies/pendulum-pair/runs/pendulum-open-seed0.h5"))
    ... # doctest: +SKIP
    379
    """
    below = np.flatnonzero(run.metrics["spectral_radius"] < 1.0)
    return int(run.epochs[below[0]]) if below.size else None


def largest_rise(values: np.ndarray) -> tuple[float, int]:
    """The largest ratio of a value to the lowest value before it, and its index: C1's "peak
    far above its earlier values" without requiring the peak to be the global maximum (on a
    plant that falls, the epoch-0 loss is the largest and hides a later rebound).

    Example
    -------
    >>> largest_rise(np.array([9.0, 1.0, 3.0, 0.5]))
    (3.0, 2)
    """
    lowest = np.minimum.accumulate(values)
    ratios = values[1:] / lowest[:-1]
    index = int(np.nanargmax(ratios))
    return float(ratios[index]), index + 1


# -- the pendulum pair -----------------------------------------------------------------------


def pendulum_pair(out: Path, seeds: Sequence[int], epochs: int | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Train and read the pendulum pair over ``seeds`` (see the module docstring).

    Example
    -------
    >>> pendulum_pair(Path("studies/pendulum-pair"), [0, 1])["support"]   # doctest: +SKIP
    """
    runs = out / "runs"
    closed_paths = [runs / f"pendulum-closed-seed{s}.h5" for s in seeds]
    closed = _train([load_preset("pendulum-upright-closed", seed=s, epochs=epochs)
                     for s in seeds], closed_paths, None, None, "pendulum closed", progress)
    plant = plant_from_config(closed[0].config.plant)
    teachers = [load_teacher(str(p), plant) for p in closed_paths]
    initials = [load_initial_parameters(f"{p}@0")[0] for p in closed_paths]
    open_configs = [load_preset("pendulum-upright-open", seed=s, epochs=epochs).model_copy(
        update={"teacher": f"{p.name}@last", "init_from": f"{p.name}@0"})
        for s, p in zip(seeds, closed_paths, strict=True)]
    opened = _train(open_configs, [runs / f"pendulum-open-seed{s}.h5" for s in seeds],
                    initials, teachers, "pendulum open", progress)
    per_seed = []
    for seed, c, o in zip(seeds, closed, opened, strict=True):
        claim = CLAIMS.get("C1").judge(c, o)
        stages = run_stages(c).to_json()
        open_rise, open_rise_epoch = largest_rise(o.metrics["test_loss"])
        closed_rise, _ = largest_rise(c.metrics["test_loss"])
        per_seed.append({
            "seed": seed, "c1_supported": claim.supported, "c1_failed": claim.failed,
            "open_peak_over_lowest_before": claim.measured["open_peak_over_lowest_before"],
            "open_peak_epoch": claim.measured["open_peak_epoch"],
            "open_peak_test_loss": claim.measured["open_peak_test_loss"],
            "open_largest_rise": open_rise, "open_largest_rise_epoch": open_rise_epoch,
            "closed_largest_rise": closed_rise,
            "final_test_loss_closed": claim.measured["final_test_loss_closed"],
            "final_test_loss_open": claim.measured["final_test_loss_open"],
            "final_gain_distance": claim.measured["final_gain_distance"],
            "closed_stabilisation_epoch": c.stabilization_epoch,
            "open_stabilisation_epoch": o.stabilization_epoch,
            "closed_first_below_one": first_crossing(c),
            "open_first_below_one": first_crossing(o),
            "closed_stage1_end": stages["stage1_end"], "closed_stage2_end": stages["stage2_end"],
            "final_spectral_radius_closed": float(c.metrics["spectral_radius"][-1]),
            "final_spectral_radius_open": float(o.metrics["spectral_radius"][-1]),
        })
    support = {
        "open-loop peak (C1)": sum(r["c1_supported"] for r in per_seed),
        "open-loop rebound >= 10x its earlier low (C1's factor)": sum(
            r["open_largest_rise"] >= PEAK_FACTOR for r in per_seed),
        "open-loop rebound >= 1.5x, closed < 1.1x": sum(
            r["open_largest_rise"] >= 1.5 and r["closed_largest_rise"] < CLOSED_RISE
            for r in per_seed),
        "closed stabilised": sum(r["closed_stabilisation_epoch"] is not None for r in per_seed),
        "open stabilised": sum(r["open_stabilisation_epoch"] is not None for r in per_seed),
        "three stages (closed)": sum(r["closed_stage2_end"] is not None for r in per_seed),
    }
    summary = {
        "study": "pendulum-pair", "seeds": list(seeds), "per_seed": per_seed,
        "support": support,
        "spread": {key: _quantiles([r[key] for r in per_seed]) for key in (
            "open_peak_over_lowest_before", "open_largest_rise", "open_largest_rise_epoch",
            "closed_largest_rise", "open_first_below_one", "closed_first_below_one",
            "closed_stage1_end", "closed_stage2_end", "closed_stabilisation_epoch",
            "open_stabilisation_epoch", "final_test_loss_closed", "final_test_loss_open",
            "final_gain_distance")},
    }
    from closedloop.plotting.loops import draw_pendulum_pair

    figure = draw_pendulum_pair(closed, opened, per_seed)
    _save(figure, out / "pendulum-pair")
    return summary


# -- the curl field ---------------------------------------------------------------------------


def _hand_paths(run: Run, epoch: int | str, plant_config: Any) -> tuple[np.ndarray, np.ndarray]:
    """Effector paths of ``run``'s network after ``epoch`` to every test target (each
    direction of ``evaluation.test_targets`` once, from the start, the go cue where the task
    has one at the middle of its range) on the plant ``plant_config`` (another field than the
    run's own: before/after the switch)."""
    config = run.config.model_copy(update={"plant": plant_config})
    plant, agent = build_loop(config)
    params = agent.to_params(run.parameters(epoch), jnp.float64)
    task = config.task
    count = config.evaluation.test_targets or task.n_targets
    batch = sample_batch(task.model_copy(update={"n_targets": count}), plant.n_core_states,
                         jax.random.key(0), batch_size=count, steps=config.test_steps,
                         dt=plant.dt, initial_state_range=0.0, every_target=True)
    traj = closed_loop(plant, agent, config.test_steps, config.training.zero_first_control,
                       params, plant.initial_states(batch.x0), batch.reference)
    return np.asarray(plant.effector(traj.states)), np.asarray(batch.reference[:, 0, :2])


def lateral_deviation(paths: np.ndarray, targets: np.ndarray) -> float:
    """The largest perpendicular distance of the paths from the straight start-target lines,
    signed (positive: to the left of the direction of motion), averaged over targets: the
    classic measure of a curl field's deflection.

    Example
    -------
    >>> paths = np.array([[[0.0, 0.0], [0.5, 0.2], [1.0, 0.0]]])
    >>> round(lateral_deviation(paths, np.array([[1.0, 0.0]])), 6)
    0.2
    """
    deviations = []
    for path, target in zip(paths, targets, strict=True):
        direction = target / np.linalg.norm(target)
        normal = np.array([-direction[1], direction[0]])
        side = path @ normal
        deviations.append(float(side[np.argmax(np.abs(side))]))
    return float(np.mean(deviations))


CURVE_POINTS = 100
"""Epochs per run at which the study measures the paths' lateral deviation."""


def _deviation_curves(run: Run, switch: int, null_plant: Any, curl_plant: Any
                      ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The lateral deviation of ``run``'s paths over training without the field (on the
    plant without it) and with it (on the plant with it, from the last epoch before the
    switch, unadapted, on; every epoch of the first 50 in the field, then spread out)."""
    snapshots = run.snapshot_epochs
    spread = snapshots[np.unique(np.linspace(0, len(snapshots) - 1, CURVE_POINTS).astype(int))]
    dense = snapshots[(snapshots >= switch - 1) & (snapshots < switch + 50)]
    curves = []
    for chosen, plant in ((spread[spread < switch], null_plant),
                          (np.union1d(dense, spread[spread >= switch]), curl_plant)):
        curves.append((chosen, np.array([lateral_deviation(*_hand_paths(run, int(e), plant))
                                         for e in chosen])))
    return curves[0], curves[1]


def curl_field(out: Path, seeds: Sequence[int], epochs: int | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
    """Train and read the curl-field study over ``seeds`` (see the module docstring).

    Example
    -------
    >>> curl_field(Path("studies/curl-field"), [0, 1])["support"]         # doctest: +SKIP
    """
    summary, reading = _curl_study(out, seeds, epochs, progress, "reach-pointmass-curl",
                                   "reach-curl", "reach, curl field from the middle on")
    summary = {"study": "curl-field", **summary}
    from closedloop.plotting.loops import draw_curl_field

    _save(draw_curl_field(*reading, title="Reaching with a point mass: a curl force field "
                          "switched on"), out / "curl-field")
    return summary


def muscle_curl_field(out: Path, seeds: Sequence[int], epochs: int | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Train and read the muscle-arm curl-field study over ``seeds``: the curl-field reading
    (lateral deviations, after-effect, spectral radius before and after the switch), and per
    seed the hand's final error over the test directions, the stages of the coupled spectrum
    at the hold posture (network, activations and skeleton) while it learns the null field,
    and the fixed points of the trained loop holding still (no go cue).

    Example
    -------
    >>> muscle_curl_field(Path("studies/muscle"), [0, 1])["support"]     # doctest: +SKIP
    """
    summary, reading = _curl_study(out, seeds, epochs, progress, "reach-muscle-arm-curl",
                                   "reach-muscle-arm-curl", "muscle arm, curl field from "
                                   "the middle on", _muscle_reading)
    per_seed = summary["per_seed"]
    summary["support"].update({
        "stabilised before the switch": sum(r["stabilisation_epoch"] is not None
                                            for r in per_seed),
        "three stages before the switch": sum(r["stage2_end"] is not None for r in per_seed),
        "a stable fixed point holding still": sum(r["stable_fixed_points"] > 0
                                                  for r in per_seed)})
    summary = {"study": "muscle-curl-field", **summary}
    from closedloop.plotting.loops import draw_curl_field

    _save(draw_curl_field(*reading, title="Reaching with the muscle arm: a curl force field "
                          "on the hand switched on"), out / "muscle-curl-field")
    return summary


def _muscle_reading(run: Run, switch: int,
                    paths: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """What the muscle-arm study reads beyond the curl field's numbers, per run: the hand's
    final error (mean and largest over the test directions) trained in the null field and
    re-learned in the field, from the curl-field reading's ``paths``; the stages before the
    switch; the fixed points holding still."""
    row: dict[str, Any] = {}
    for name in ("null field, trained", "field on, re-learned"):
        hand, targets = paths[name]
        error = 1000 * np.linalg.norm(hand[:, -1] - targets, axis=-1)
        row[f"final hand error (mm): {name}"] = float(error.mean())
        row[f"largest final hand error (mm): {name}"] = float(error.max())
    return {**row, **_null_field_stages(run, switch - 1), **_hold_fixed_points(run)}


def _null_field_stages(run: Run, before: int) -> dict[str, Any]:
    """The stages of ``run``'s coupled spectrum up to epoch ``before`` (the null field's
    learning; :func:`~closedloop.analysis.spectrum.detect_stages`) and its spectral radius
    at the start."""
    kept = run.epochs <= before
    radius = run.metrics["spectral_radius"][kept]
    stages = detect_stages(run.coupled_eigenvalues[kept], radius, run.epochs[kept]).to_json()
    return {"stabilisation_epoch": stabilization_epoch(radius, run.epochs[kept]),
            "stage1_end": stages["stage1_end"], "stage2_end": stages["stage2_end"],
            "spectral_radius_at_start": float(radius[0])}


FIXED_POINT_STARTS = 32
"""Starts of the search for the trained loop's fixed points in the muscle-arm study."""
HOLD_SPREAD, HOLD_STEPS = 0.01, 1000
"""The search's starts: states the loop visits holding still from the start posture pushed by
U(-0.01, 0.01) in every entry, each then run on for 1000 steps (10 s) before Newton's method
(:func:`~closedloop.analysis.fixed_points.find_fixed_points` with ``iterate``: the muscle
forces in newtons make the minimisation of |F(s) - s|^2 wander off)."""


def _hold_fixed_points(run: Run) -> dict[str, Any]:
    """The fixed points of ``run``'s trained loop with no go cue (holding still) that the
    loop settles at: how many, how many stable, the largest spectral radius among the stable
    ones, and the distance of the nearest one's hand from the start (m)."""
    from closedloop.analysis.fixed_points import run_fixed_points

    found = run_fixed_points(run, starts=FIXED_POINT_STARTS, spread=HOLD_SPREAD,
                             iterate=HOLD_STEPS)
    stable = [p for p in found.points if p.stable]
    plant = plant_from_config(run.config.plant)
    hands = [float(np.linalg.norm(plant.effector(jnp.asarray(p.state[:plant.n_states]))))
             for p in found.points]
    return {"fixed_points": len(found.points), "stable_fixed_points": len(stable),
            "fixed_point_radius": max((p.spectral_radius for p in stable), default=None),
            "fixed_point_hand_from_start_m": min(hands, default=None)}


def _curl_study(out: Path, seeds: Sequence[int], epochs: int | None, progress: Progress | None,
                preset: str, stem: str, label: str,
                more: Callable[[Run, int, dict[str, Any]], dict[str, Any]] | None = None
                ) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """Train ``preset`` (a reaching preset with a curl field switched on by a perturbation)
    over ``seeds`` into ``OUT/runs/STEM-seedN.h5`` and read it: the summary without its
    name, and what :func:`~closedloop.plotting.loops.draw_curl_field` draws (runs, switch
    epoch, the first seed's paths at four moments, every seed's deviation curves).
    ``epochs``: as many epochs in the field as before it. ``more(run, switch, paths)``: a
    study's own numbers per run, added to its row (``paths``: the four moments')."""
    configs = [load_preset(preset, seed=s) for s in seeds]
    if epochs is not None:
        configs = [c.model_copy(update={
            "training": c.training.model_copy(update={"epochs": 2 * epochs}),
            "perturbation": c.perturbation.model_copy(update={"epoch": epochs + 1})})
            for c in configs]
    runs = _train(configs, [out / "runs" / f"{stem}-seed{s}.h5" for s in seeds], None,
                  None, label, progress)
    switch = configs[0].perturbation.epoch
    before = switch - 1
    null_plant, curl_plant = configs[0].plant, configs[0].plant_at(switch)
    deviation = [_deviation_curves(run, switch, null_plant, curl_plant) for run in runs]
    per_seed, shown = [], {}
    for seed, run in zip(seeds, runs, strict=True):
        moments = {"null field, trained": (before, null_plant),
                   "field on, before re-learning": (before, curl_plant),
                   "field on, re-learned": ("last", curl_plant),
                   "field off again (after-effect)": ("last", null_plant)}
        paths = {name: _hand_paths(run, epoch, plant) for name, (epoch, plant)
                 in moments.items()}
        test, radius = run.metrics["test_loss"], run.metrics["spectral_radius"]
        plant, agent = build_loop(run.config.model_copy(update={"plant": curl_plant}))
        unadapted = operating_point_spectra(plant, agent, {
            k: v[None] for k, v in run.parameters(before).items()})["spectral_radius"][0]
        later = run.epochs >= switch
        recovered = np.flatnonzero(later & (test <= 1.1 * test[before]))
        per_seed.append({
            "seed": seed,
            "test_loss_null_trained": float(test[before]),
            "test_loss_first_epoch_in_field": float(test[switch]),
            "test_loss_relearned": float(test[-1]),
            "relearning_epochs_to_within_10pct": int(run.epochs[recovered[0]] - before)
            if recovered.size else None,
            "spectral_radius_null_trained": float(radius[before]),
            "spectral_radius_field_on": float(unadapted),
            "spectral_radius_relearned": float(radius[-1]),
            **{f"lateral_deviation: {name}": lateral_deviation(*p) for name, p in paths.items()},
            **(more(run, switch, paths) if more else {}),
        })
        if not shown:
            shown = paths
    keys = [k for k in per_seed[0] if k != "seed"]
    summary = {"seeds": list(seeds), "per_seed": per_seed,
               "curl": curl_plant.params.get("curl"), "switch_epoch": switch,
               "spread": {k: _quantiles([r[k] for r in per_seed]) for k in keys},
               "support": {
                   "deflected by the field": sum(
                       abs(r["lateral_deviation: field on, before re-learning"])
                       > 2 * abs(r["lateral_deviation: null field, trained"]) for r in per_seed),
                   "straighter after re-learning": sum(
                       abs(r["lateral_deviation: field on, re-learned"])
                       < abs(r["lateral_deviation: field on, before re-learning"])
                       for r in per_seed),
                   "after-effect opposite": sum(
                       np.sign(r["lateral_deviation: field off again (after-effect)"])
                       == -np.sign(r["lateral_deviation: field on, before re-learning"])
                       for r in per_seed)}}
    return summary, (runs, switch, shown, deviation)


def _gain_distance(a: Run, b: Run) -> float:
    gains_a, gains_b = a.metrics["gains"][-1, 0], b.metrics["gains"][-1, 0]
    return float(np.linalg.norm(gains_a - gains_b) / np.linalg.norm(gains_b))


def compare_modes(out: Path, seeds: Sequence[int], epochs: int | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """The paper's network on the double integrator trained four ways from the same initial
    weights: closed loop (``di-tanh-closed``), open loop imitating it (``di-tanh-open``), with
    the plant as a black box (``di-tanh-blackbox``, REINFORCE) and by node perturbation
    (``di-tanh-nodepert``).

    Example
    -------
    >>> compare_modes(Path("studies/compare-modes"), [0, 1])["support"]  # doctest: +SKIP
    """
    runs = out / "runs"
    closed_paths = [runs / f"closed-seed{s}.h5" for s in seeds]
    closed = _train([load_preset("di-tanh-closed", seed=s, epochs=epochs) for s in seeds],
                    closed_paths, None, None, "closed loop", progress)
    black = _train([load_preset("di-tanh-blackbox", seed=s, epochs=epochs) for s in seeds],
                   [runs / f"blackbox-seed{s}.h5" for s in seeds], None, None,
                   "black box (REINFORCE)", progress)
    perturbed = _train([load_preset("di-tanh-nodepert", seed=s, epochs=epochs) for s in seeds],
                       [runs / f"nodepert-seed{s}.h5" for s in seeds], None, None,
                       "node perturbation", progress)
    plant = plant_from_config(closed[0].config.plant)
    opened = _train([load_preset("di-tanh-open", seed=s, epochs=epochs).model_copy(
        update={"teacher": f"{p.name}@last", "init_from": f"{p.name}@0"})
        for s, p in zip(seeds, closed_paths, strict=True)],
        [runs / f"open-seed{s}.h5" for s in seeds],
        [load_initial_parameters(f"{p}@0")[0] for p in closed_paths],
        [load_teacher(str(p), plant) for p in closed_paths], "open loop", progress)
    per_seed, c1 = [], CLAIMS.get("C1")
    for seed, c, o, b, n in zip(seeds, closed, opened, black, perturbed, strict=True):
        row: dict[str, Any] = {"seed": seed, "c1_supported": c1.judge(c, o).supported}
        for name, run in (("closed", c), ("open", o), ("black_box", b),
                          ("node_perturbation", n)):
            stages = run_stages(run).to_json()
            row.update({f"{name}_final_test_loss": float(run.metrics["test_loss"][-1]),
                        f"{name}_stabilisation_epoch": run.stabilization_epoch,
                        f"{name}_stage1_end": stages["stage1_end"],
                        f"{name}_stage2_end": stages["stage2_end"],
                        f"{name}_largest_rise": largest_rise(run.metrics["test_loss"])[0]})
        row["black_box_over_closed_final_test_loss"] = (row["black_box_final_test_loss"]
                                                       / row["closed_final_test_loss"])
        row["black_box_gains_from_closed"] = _gain_distance(b, c)
        test = n.metrics["test_loss"]
        row["node_perturbation_over_start"] = float(test[-1] / test[0])
        row["node_perturbation_over_closed_final_test_loss"] = (
            row["node_perturbation_final_test_loss"] / row["closed_final_test_loss"])
        row["node_perturbation_gains_from_closed"] = _gain_distance(n, c)
        per_seed.append(row)
    keys = [k for k in per_seed[0] if k != "seed"]
    summary = {"study": "compare-modes", "seeds": list(seeds), "per_seed": per_seed,
               "spread": {k: _quantiles([float(r[k]) if r[k] is not None else None
                                         for r in per_seed]) for k in keys},
               "support": {
                   "open-loop peak (C1)": sum(r["c1_supported"] for r in per_seed),
                   "black box within 2x of closed (final test loss)": sum(
                       r["black_box_over_closed_final_test_loss"] <= 2 for r in per_seed),
                   "black box stabilised": sum(r["black_box_stabilisation_epoch"] is not None
                                               for r in per_seed),
                   "three stages, closed": sum(r["closed_stage2_end"] is not None
                                               for r in per_seed),
                   "three stages, black box": sum(r["black_box_stage2_end"] is not None
                                                  for r in per_seed),
                   "node perturbation below 0.2x its start (test loss)": sum(
                       r["node_perturbation_over_start"] < 0.2 for r in per_seed)}}
    from closedloop.plotting.loops import draw_compare_modes

    _save(draw_compare_modes({"closed loop": closed, "open loop": opened,
                              "black box (REINFORCE)": black,
                              "node perturbation": perturbed}), out / "compare-modes")
    return summary


STUDIES: dict[str, tuple[str, Callable[..., dict[str, Any]]]] = {
    "pendulum-pair": ("closed versus open loop on a pendulum held upright", pendulum_pair),
    "curl-field": ("reaching with a point mass, a curl field switched on mid-training",
                   curl_field),
    "muscle-curl-field": ("reaching with the muscle arm, a curl field switched on "
                          "mid-training; the spectrum at the hold posture and the fixed "
                          "points", muscle_curl_field),
    "compare-modes": ("the double integrator trained closed loop, open loop, as a black box "
                      "and by node perturbation from the same weights", compare_modes),
}


def run_study(name: str, out: str | Path, seeds: Sequence[int], *, epochs: int | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Run study ``name`` into folder ``out``: run files, ``NAME.png``/``.svg`` and
    ``NAME.json`` (the numbers per seed and their spread); returns the summary.

    Example
    -------
    >>> run_study("curl-field", "studies/curl", seeds=[0], epochs=20)["seeds"]  # doctest: +SKIP
    [0]
    """
    if name not in STUDIES:
        raise ConfigError(f"unknown study '{name}' (available: {', '.join(STUDIES)})")
    if not seeds:
        raise ConfigError("a study needs at least one seed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = STUDIES[name][1](out, list(seeds), epochs, progress)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=1, allow_nan=False,
                                                 default=_plain))
    return summary


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _save(figure: Any, stem: Path) -> None:
    import matplotlib.pyplot as plt

    for suffix in (".png", ".svg"):
        figure.savefig(stem.with_suffix(suffix), dpi=130)
    plt.close(figure)
