"""Tracking analysis (science 6): probes against closed forms and quadrature, acquisitions
against the closed form of an exponential drop, outliers read from constructed spectra, and
claim C6 at the boundary of each part of its criterion, including the authors' own figure."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closedloop.analysis.claims import CLAIMS
from closedloop.analysis.claims.c6 import low_to_high, one_at_a_time
from closedloop.analysis.tracking import (
    Acquisition,
    Probes,
    bulk_radius,
    degradations,
    find_acquisitions,
    read_outliers,
)
from closedloop.config import TaskConfig, load_preset
from closedloop.core.agents import build_agent
from closedloop.core.plants import plant_from_config
from closedloop.core.rollout import rollout
from closedloop.core.tasks import probe_set, time_grid

TASK = TaskConfig(kind="tracking", steps=120, frequencies=[[0.1, 0.3], [0.2, 0.4]],
                  amplitude=2.31, ramp_time=1.0)
DT = 0.1


# -- probes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("phases", [3, 4, 7])
def test_a_network_that_holds_still_scores_the_mean_squared_ramp(phases):
    """Positions 0: each probe's error is a^2 mean_t ramp(t)^2 cos^2(w t + phi) averaged over
    K >= 3 evenly spaced phases, i.e. exactly a^2/2 mean_t ramp(t)^2, whatever the frequency."""
    probes = probe_set(TASK, DT, phases)
    errors = np.asarray(probes.errors(jnp.zeros(probes.references.shape, dtype=jnp.float64)))
    ramp = np.clip(time_grid(TASK.steps, DT) / TASK.ramp_time, 0, 1)
    np.testing.assert_allclose(errors, TASK.amplitude ** 2 / 2 * np.mean(ramp ** 2),
                               rtol=1e-12)
    assert probes.level == TASK.amplitude ** 2 / 2


def _linear_loop_errors(phases: int) -> np.ndarray:
    """Probe errors of a random linear RNN on the point mass (a linear loop), float64."""
    config = load_preset("tracking-closed", ["agent.size=8", f"task.steps={TASK.steps}"])
    plant = plant_from_config(config.plant)
    agent = build_agent(config.agent, plant.n_outputs + 2, plant.n_inputs, plant.n_states)
    params = agent.init_params(jax.random.key(3), jnp.float64)
    probes = probe_set(config.task, config.plant.dt, phases)
    references = jnp.asarray(probes.references)
    traj = rollout(plant, agent, params, steps=TASK.steps, reference=references,
                   x0=jnp.zeros((references.shape[0], plant.n_states), dtype=jnp.float64))
    positions = plant.effector(traj.states[:, 1:])
    assert float(jnp.abs(positions).max()) < config.plant.clamp      # the clamp never acts
    return np.asarray(probes.errors(positions))


def test_three_phases_give_the_exact_average_over_a_random_phase():
    """For a linear loop the error of phase phi is c0 + c1 cos 2phi + c2 sin 2phi: three or
    four evenly spaced phases equal a 64-point quadrature of the uniform average, while one
    phase (the old probe) does not."""
    average = _linear_loop_errors(64)
    np.testing.assert_allclose(_linear_loop_errors(3), average, rtol=1e-10)
    np.testing.assert_allclose(_linear_loop_errors(4), average, rtol=1e-10)
    assert np.max(np.abs(_linear_loop_errors(1) / average - 1)) > 1e-3
    still = probe_set(TASK, DT, 4).errors(jnp.zeros((16, TASK.steps, 2), dtype=jnp.float64))
    assert np.max(np.abs(average / np.asarray(still) - 1)) > 1e-3   # the network moves


# -- acquisitions ---------------------------------------------------------------------------


def _drop(epochs: np.ndarray, start: int, floor: float, scale: float) -> np.ndarray:
    """e(t) = 1 before ``start``, then floor + (1 - floor) exp(-(t - start) / scale)."""
    return np.where(epochs < start, 1.0,
                    floor + (1 - floor) * np.exp(-(epochs - start) / scale))


@pytest.mark.parametrize(("start", "floor", "scale", "window"),
                         [(100, 0.1, 10.0, 30), (40, 0.2, 25.0, 50), (300, 0.05, 4.0, 7)])
def test_acquisition_of_an_exponential_drop_matches_its_closed_form(start, floor, scale,
                                                                    window):
    """Onset: last epoch with e >= 0.9; crossing: first with e < 0.5; end: first epoch where
    e(t) - e(t + w) < 0.1 e(t), i.e. (1 - f) exp(-(t - t0)/s) < 0.1 f / (0.9 - exp(-w/s))."""
    epochs = np.arange(1001)
    error = _drop(epochs, start, floor, scale)
    probes = Probes(epochs, np.array([0.2]), np.array([1]), 2.0 * error[:, None], 2.0)
    [found] = find_acquisitions(probes, window=window)
    onset = start + math.floor(scale * math.log((1 - floor) / (0.9 - floor)))
    crossing = start + math.floor(scale * math.log((1 - floor) / (0.5 - floor))) + 1
    end = start + math.floor(scale * math.log(
        (1 - floor) * (0.9 - math.exp(-window / scale)) / (0.1 * floor))) + 1
    assert (found.onset, found.crossing, found.end) == (onset, crossing, end)


def test_acquisition_reads_sparse_epochs_and_reports_what_it_cannot_know():
    epochs = np.arange(0, 1001, 10)                 # snapshots every 10 epochs
    error = _drop(epochs, 500, 0.1, 20.0)
    never = np.full(epochs.shape, 0.95)              # never acquired
    late = _drop(epochs, 990, 0.1, 2.0)             # acquired, but the run ends before it settles
    probes = Probes(epochs, np.array([0.1, 0.2, 0.3]), np.array([0, 1, 0]),
                    np.stack([error, never, late], axis=1), 1.0)
    found = find_acquisitions(probes, window=100)
    assert found[0].crossing % 10 == 0 and found[0].end % 10 == 0
    assert (found[1].onset, found[1].crossing, found[1].end) == (None, None, None)
    assert found[2].crossing == 1000 and found[2].end is None


def test_the_default_window_is_one_percent_of_training():
    epochs = np.arange(10_001)
    error = _drop(epochs, 1000, 0.1, 30.0)
    probes = Probes(epochs, np.array([0.1]), np.array([0]), error[:, None], 1.0)
    assert find_acquisitions(probes)[0].end == find_acquisitions(probes, window=100)[0].end


# -- outliers -------------------------------------------------------------------------------


def _bulk(count: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A random bulk of conjugate pairs within ``radius`` of -1."""
    values = -1 + radius * np.sqrt(rng.uniform(0, 1, count)) * np.exp(
        1j * rng.uniform(0, math.pi, count))
    return np.concatenate([values, values.conj()])


def test_the_outlier_is_the_outermost_at_the_end_followed_back_as_one_trajectory():
    """A new pair moves out of the bulk to 1.2 x 2 pi f, while an unrelated, more damped
    outlier sits exactly at 2 pi f: the nearest imaginary part would report a match, the
    acquisition's outermost outlier reports +20 % and its path from the onset."""
    rng = np.random.default_rng(0)
    bulk = _bulk(20, 0.2, rng)
    target = 2 * math.pi * 0.3
    epochs = np.arange(0, 101)
    path = -1 + 0.1j + (epochs / 100) ** 2 * (0.7 + (1.2 * target - 0.1) * 1j)   # new pair
    unrelated = np.full(epochs.size, -1 + target * 1j)
    spectra = np.stack([np.concatenate([bulk, [p, p.conjugate(), o, o.conjugate()]])
                        for p, o in zip(path, unrelated, strict=True)])
    spectra = np.array([rng.permutation(row) for row in spectra])     # no order to rely on
    [found] = read_outliers(spectra, epochs, [Acquisition(0.3, 0, 50, 100)],
                            radius=bulk_radius(bulk))
    assert found.outlier == pytest.approx(path[-1])
    assert found.relative_error == pytest.approx(0.2)
    np.testing.assert_allclose(found.path, path)
    np.testing.assert_array_equal(found.path_epochs, epochs)
    [later] = read_outliers(spectra, epochs, [Acquisition(0.3, 40, 60, 100)],
                            radius=bulk_radius(bulk))
    np.testing.assert_allclose(later.path, path[40:])        # from the onset given


def test_no_outlier_is_read_inside_the_bulk():
    rng = np.random.default_rng(1)
    bulk = _bulk(30, 0.2, rng)
    radius = bulk_radius(bulk)
    inside = -1 + 1.4 * radius * 1j                   # within 1.5 x the epoch-0 radius
    spectra = np.stack([bulk, np.concatenate([bulk[2:], [inside, np.conj(inside)]])])
    [found] = read_outliers(spectra, np.arange(2), [Acquisition(0.1, 0, 1, 1)])
    assert found.outlier is None and math.isnan(found.relative_error)


def test_degradation_compares_the_peak_during_a_later_drop_with_its_onset():
    epochs = np.arange(10)
    first = np.array([1.0, 0.3, 0.2, 0.2, 0.25, 0.3, 0.22, 0.2, 0.15, 0.1])
    second = np.array([1.0, 1.0, 1.0, 0.95, 0.6, 0.3, 0.2, 0.2, 0.2, 0.2])
    probes = Probes(epochs, np.array([0.1, 0.2]), np.array([0, 1]),
                    np.stack([first, second], axis=1), 1.0)
    found = [Acquisition(0.1, 0, 1, 2), Acquisition(0.2, 3, 5, 6)]
    [change] = degradations(probes, found)
    assert change["frequency"] == 0.1 and change["during"] == 0.2
    assert change["rise"] == pytest.approx(0.3 / 0.2)
    assert change["recovery"] == pytest.approx(0.1 / 0.3)


# -- C6 at its boundaries -------------------------------------------------------------------


FREQUENCIES = (0.1, 0.2, 0.3, 0.4)


def _staircase(relative_errors=(0.0, 0.0, 0.0, 0.0), ends=(30, 60, 90, 120),
               crossings=(20, 50, 80, 110)) -> list[Acquisition]:
    out = []
    for frequency, error, end, crossing in zip(FREQUENCIES, relative_errors, ends, crossings,
                                               strict=True):
        target = 2 * math.pi * frequency
        out.append(Acquisition(frequency, crossing - 5, crossing, end,
                               outlier=complex(-0.4, target * (1 + error))))
    return out


C6 = CLAIMS.get("C6")
DEGRADED = [{"frequency": 0.1, "during": 0.3, "rise": 1.1, "recovery": 1 / 1.1}]
TOGETHER = [Acquisition(f, 0, 10 + i, 40) for i, f in enumerate(FREQUENCIES)]


def _failed(found=None, degraded=DEGRADED, open_found=TOGETHER) -> list[str]:
    claim = C6.judge_acquisitions(_staircase() if found is None else found, degraded,
                                  open_found, 1000)
    return claim.failed


def test_c6_supported_at_every_edge():
    edge = 0.1499                     # just inside 15 % (science 6)
    found = _staircase(relative_errors=(edge, -edge, 0.0, 0.0), ends=(49, 79, 109, 139),
                       crossings=(20, 50, 80, 110))
    assert _failed(found) == []


def test_c6_outlier_just_outside_the_tolerance_fails_only_that_part():
    for error in (0.151, -0.151):
        found = _staircase(relative_errors=(0.0, error, 0.0, 0.0))
        assert _failed(found) == ["an outlier at 2 pi f at the end of the 0.2 Hz acquisition"]


def test_c6_a_drop_ending_when_the_next_crosses_is_not_one_at_a_time():
    found = _staircase(ends=(50, 60, 90, 120), crossings=(20, 50, 80, 110))
    assert _failed(found) == ["one at a time (each drop ends before the next frequency "
                              "crosses)"]


def test_c6_order_of_acquisition():
    found = _staircase(ends=(30, 120, 90, 60), crossings=(20, 110, 80, 50))
    assert _failed(found) == ["acquired from low to high"]


def test_c6_an_unacquired_frequency_fails_acquisition_order_and_its_outlier():
    found = _staircase()
    found[3] = Acquisition(0.4)
    assert set(_failed(found)) == {
        "every frequency acquired", "one at a time (each drop ends before the next frequency "
        "crosses)", "acquired from low to high",
        "an outlier at 2 pi f at the end of the 0.4 Hz acquisition"}


@pytest.mark.parametrize(("rise", "recovery", "holds"),
                         [(1.1, 1 / 1.1, True), (1.099, 0.5, False), (1.5, 1 / 1.099, False)])
def test_c6_degradation_rises_ten_percent_and_recovers(rise, recovery, holds):
    degraded = [{"frequency": 0.1, "during": 0.2, "rise": rise, "recovery": recovery}]
    failed = _failed(degraded=degraded)
    assert failed == ([] if holds else ["a new frequency transiently degrades an earlier one"])


def test_c6_an_open_loop_staircase_fails_the_contrast():
    """A staircase is one at a time and from low to high: the student's steps out of order
    (the paper's open loop acquires all frequencies together) are not one."""
    assert _failed(open_found=_staircase()) == ["no open-loop staircase"]
    shuffled = _staircase(ends=(30, 120, 90, 60), crossings=(20, 110, 80, 50))
    assert one_at_a_time(shuffled) and not low_to_high(shuffled)
    assert _failed(open_found=shuffled) == []
    assert not one_at_a_time(TOGETHER) and low_to_high(TOGETHER)


def test_c6_on_the_authors_figure():
    """The authors' hand-picked epochs (end of each step, 10,000 epochs) and the outermost
    outliers of (-I + W)/tau there (0.584, 1.250, 1.821, 2.542 rad/s) pass the frequency,
    order and one-at-a-time parts; their relative errors are -7 %, -0.5 %, -3.4 %, +1.2 %."""
    ends = (230, 1200, 2600, 4500)
    imag = (0.584, 1.250, 1.821, 2.542)
    found = [Acquisition(f, None, end - 100, end, outlier=complex(-0.4, im))
             for f, end, im in zip(FREQUENCIES, ends, imag, strict=True)]
    claim = C6.judge_acquisitions(found, DEGRADED, TOGETHER, 10_000)
    assert claim.supported
    errors = claim.measured["outlier_relative_error"]
    np.testing.assert_allclose(errors, [-0.0705, -0.0053, -0.0339, 0.0114], atol=5e-4)
    assert claim.measured["normalized_acquisition_closed"] == [0.023, 0.12, 0.26, 0.45]


# -- recorded probes ------------------------------------------------------------------------


def test_recorded_probes_equal_the_probes_of_the_snapshots(tmp_path):
    """The trainer records every epoch's probe errors (float32, in the compiled epoch); the
    analysis recomputes them from the parameter snapshots in float64: the two agree, and a
    run's acquisitions are read from either."""
    from closedloop.analysis.tracking import acquisitions, probe_errors
    from closedloop.runs import load_run
    from closedloop.training import train

    config = load_preset("tracking-closed", ["agent.size=8", "task.batch_size=16",
                                             "task.steps=60", "recording.segment_epochs=4",
                                             "recording.snapshot_every=1"], epochs=12)
    train(config, tmp_path / "tracking.h5")
    run = load_run(tmp_path / "tracking.h5")
    recorded = probe_errors(run)
    recomputed = probe_errors(run, epochs=run.snapshot_epochs)
    assert recorded.errors.shape == (13, 4) == run.metrics["probe_errors"].shape
    np.testing.assert_array_equal(recorded.epochs, recomputed.epochs)
    np.testing.assert_allclose(recorded.errors, recomputed.errors, rtol=1e-5)
    assert len(acquisitions(recorded, run)) == 4


def test_a_run_resumed_across_the_upgrade_keeps_no_partial_probe_column(tmp_path):
    """Segments written before probes were recorded, then segments with them (a run resumed
    under a newer version): the finished file holds no probe column with empty early rows;
    its probes are computed from the snapshots instead."""
    from closedloop.runs.store import CheckpointState, EpochRecord, RunWriter, load_run

    config = load_preset("tracking-closed", ["recording.segment_epochs=2"], epochs=3)
    writer = RunWriter(tmp_path / "resumed.h5", config)
    writer.start({}, None)
    for epoch in range(4):
        writer.append(EpochRecord(
            epoch=epoch, train_loss=1.0, test_loss=1.0, grad_norm=1.0, spectral_radius=0.5,
            coupled_eigenvalues=np.zeros(3, complex), recurrent_eigenvalues=np.zeros(2, complex),
            probe_errors=None if epoch < 2 else np.full(4, 0.5)))
        if epoch % 2 == 1:
            writer.save(CheckpointState(epoch + 1, {}))
    writer.finish("complete", None)
    assert "probe_errors" not in load_run(tmp_path / "resumed.h5").metrics
