"""Every claim judge (C1-C5) at the boundaries of its written criterion.

Each test writes small runs by hand (metrics, eig(P), effective gains, parameters: no
training) through the run-file writer, sets one quantity of the criterion just inside its
threshold and just outside it, and asserts that exactly the named part of ``claim.checks``
that reads it flips (the fixtures hold every other part). The thresholds are the criterion's
own numbers as science.md section 7 states them (a 10x peak, 1.1x, 10 %, 25 %, 10x drops,
1.1 decades, [-0.1, 0), 3 alphas, [0.8, 1.25], 0.5 decades), typed here, and the values on
either side are computed from the arrays built here: a peak exactly 10x its earlier low
against 9.9x, a relative distance exactly 10 % against 10.1 %. Where the boundary is an open
one (a strict inequality), the value on it is the one just outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from closedloop.analysis.claims import CLAIMS, Judgement
from closedloop.analysis.claims.c2 import COMPLEX_PAIR_CASE, REAL_PAIR_CASE
from closedloop.analysis.claims.c3 import stage1_curves
from closedloop.analysis.spectrum import SpectralEvent, Stages
from closedloop.analysis.summary import RunAnalysis, analyze_run
from closedloop.analysis.theory import SurrogatePath
from closedloop.config import load_preset
from closedloop.runs.store import CheckpointState, EpochRecord, Run, RunWriter, load_run

C1, C1B, C2, C3, C4, C5 = (CLAIMS.get(c) for c in ("C1", "C1b", "C2", "C3", "C4", "C5"))

# --------------------------------------------------------------------------------------------
# helpers


def write_run(path: Path, *, test_loss: np.ndarray, spectrum: np.ndarray,
              train_loss: np.ndarray | None = None, gains: np.ndarray | None = None,
              snapshot: Mapping[str, np.ndarray] | None = None,
              preset: str = "di-lowrank-closed") -> Run:
    """Write a finished run file with the given per-epoch records and read it back.

    Parameters
    ----------
    path
        Where the run file goes.
    test_loss, train_loss
        (E,) per-epoch losses (train: NaN at epoch 0, nothing trained there, and the test
        loss elsewhere by default).
    spectrum
        (E, n) eig(P) per epoch, any order in a row: stored by descending modulus, and the
        spectral radius recorded is the largest modulus (as training records them).
    gains
        (E, 2) effective gains (k1, k2), stored as the (E, 1, 2) ``gains`` metric.
    snapshot
        Parameters stored at epoch 0 (a rank-1 network's m, z, u, v).
    """
    spectrum = np.asarray(spectrum, dtype=np.complex128)
    order = np.argsort(-np.abs(spectrum), axis=1, kind="stable")
    spectrum = np.take_along_axis(spectrum, order, axis=1)
    epochs = len(test_loss)
    if train_loss is None:
        train_loss = np.r_[np.nan, np.asarray(test_loss, dtype=np.float64)[1:]]
    writer = RunWriter(path, load_preset(preset, epochs=epochs - 1))
    writer.start(dict(snapshot or {}), None)
    for epoch in range(epochs):
        writer.append(EpochRecord(
            epoch=epoch, train_loss=float(train_loss[epoch]),
            test_loss=float(test_loss[epoch]), grad_norm=1.0,
            spectral_radius=float(np.abs(spectrum[epoch, 0])),
            coupled_eigenvalues=spectrum[epoch], recurrent_eigenvalues=np.zeros(2, complex),
            gains=None if gains is None else np.asarray(gains[epoch], float).reshape(1, 2),
            snapshot=dict(snapshot) if snapshot is not None and epoch == 0 else None))
    writer.save(CheckpointState(epochs, {}))
    writer.finish("complete", None)
    return load_run(path)


def part(claim: Judgement, words: str) -> str:
    """The one named part of ``claim``'s criterion whose name contains ``words``."""
    names = [name for name in claim.checks if words in name]
    assert len(names) == 1, (words, list(claim.checks))
    return names[0]


def assert_only_part_flips(inside: Judgement, outside: Judgement, words: str) -> None:
    """``inside`` meets every part of its criterion; ``outside`` misses exactly the part
    named by ``words``, and has the same parts."""
    assert list(inside.checks) == list(outside.checks)
    assert inside.supported, inside.failed
    assert outside.failed == [part(outside, words)], outside.measured


def pair(real: float, imag: float) -> list[complex]:
    """A complex-conjugate pair with the given real and imaginary parts."""
    return [complex(real, imag), complex(real, -imag)]


# --------------------------------------------------------------------------------------------
# C1, C1b: a closed-loop run and its open-loop student


CLOSED_FINAL_GAINS = (-0.75, -1.0)   # |k| = 1.25 exactly, so 10 % of it is 0.125 exactly
OPEN_PEAK_GAINS = (-0.5, -0.49)      # just past k2 = k1: complex pair of modulus > 1


def c1_runs(folder: Path, *, open_test: list[float] | None = None,
            closed_test: list[float] | None = None,
            open_final_gains: tuple[float, float] = (-0.75, -1.125),
            open_peak_gains: tuple[float, float] = OPEN_PEAK_GAINS,
            open_radius: list[float] | None = None) -> tuple[Run, Run]:
    """A pair that meets every part of C1 and C1b, each at the edge of its threshold.

    The student's test loss rises from 1.0 (epoch 1) to a peak of 10.0 (epoch 2): exactly
    10x, above its epoch-0 value 2.0; the closed loss rises once to exactly 1.1x its epoch-0
    value 1.0; the final gains differ by 0.125 / 1.25 = 10 %, the final test losses by
    (0.625 - 0.5) / 0.5 = 25 %. The closed loop's rho(P) (its pair, r (0.6 +- 0.8i), has
    modulus r exactly at r = 1) equals 1 at epoch 2 and is below 1 from epoch 3; the
    student's from epoch 4.
    """
    closed_test = closed_test or [1.0, 1.1, 0.8, 0.6, 0.55, 0.5]
    open_test = open_test or [2.0, 1.0, 10.0, 4.0, 1.0, 0.625]
    closed_radius = [1.05, 1.02, 1.0, 0.9, 0.8, 0.7]
    open_radius = open_radius or [1.3, 1.2, 1.5, 1.0, 0.9, 0.8]
    closed_gains = np.linspace([0.0, 0.0], CLOSED_FINAL_GAINS, 6)
    open_gains = np.linspace([0.0, 0.0], open_final_gains, 6)
    open_gains[2] = open_peak_gains
    closed = write_run(folder / "closed.h5", test_loss=np.array(closed_test),
                       spectrum=[[*pair(0.6 * r, 0.8 * r), 0.1] for r in closed_radius],
                       gains=closed_gains, preset="di-tanh-closed")
    opened = write_run(folder / "open.h5", test_loss=np.array(open_test),
                       spectrum=[[*pair(0.6 * r, 0.8 * r), 0.1] for r in open_radius],
                       gains=open_gains, preset="di-tanh-open")
    return closed, opened


def test_c1_pair_at_the_edges_of_its_criterion_is_supported(tmp_path):
    closed, opened = c1_runs(tmp_path)
    claim = C1.judge(closed, opened)
    assert claim.supported, claim.failed
    assert claim.measured["open_peak_epoch"] == 2
    assert claim.measured["open_peak_over_lowest_before"] == 10.0
    assert claim.measured["final_gain_distance"] == 0.1
    assert claim.measured["final_test_loss_relative_difference"] == 0.25
    assert C1B.judge(closed, opened).supported


def test_c1_peak_ten_times_its_earlier_low(tmp_path):
    inside = C1.judge(*c1_runs(tmp_path / "in"))                  # 10.0 / 1.0 = 10x
    outside = C1.judge(*c1_runs(tmp_path / "out", open_test=[2.0, 1.0, 9.9, 4.0, 1.0, 0.625]))
    assert outside.measured["open_peak_over_lowest_before"] == pytest.approx(9.9)
    assert_only_part_flips(inside, outside, "far above its earlier values")


def test_c1_peak_ten_times_the_low_before_it_not_after_it(tmp_path):
    """The low the peak is compared with is the lowest test loss *before* the peak: a lower
    value after the peak (0.5, 20x below it) changes nothing."""
    later_low = C1.judge(*c1_runs(tmp_path / "a", open_test=[2.0, 1.0, 9.9, 0.5, 1.0, 0.625]))
    assert later_low.failed == [part(later_low, "far above its earlier values")]


def test_c1_peak_above_the_epoch_0_value(tmp_path):
    """Just inside: the student starts at 9.9, just below its later peak 10.0. On the
    boundary (starts at 10.0, level with the later peak) the highest test loss is epoch 0's
    own, so the peak is epoch 0 and it is not 10x anything before it either: this part can
    only fail together with the peak-factor part (see the report on C1)."""
    inside = C1.judge(*c1_runs(tmp_path / "in", open_test=[9.9, 1.0, 10.0, 4.0, 1.0, 0.625]))
    outside = C1.judge(*c1_runs(tmp_path / "out",
                                open_test=[10.0, 1.0, 10.0, 4.0, 1.0, 0.625]))
    assert inside.supported, inside.failed
    assert outside.measured["open_peak_epoch"] == 0
    assert outside.failed == [part(outside, "far above its earlier values"),
                              part(outside, "above its epoch-0 value")]


def test_c1_closed_loss_never_above_1_1_times_its_start(tmp_path):
    inside = C1.judge(*c1_runs(tmp_path / "in"))                  # 1.1 x 1.0
    outside = C1.judge(*c1_runs(tmp_path / "out",
                                closed_test=[1.0, 1.111, 0.8, 0.6, 0.55, 0.5]))  # 1.111x
    assert_only_part_flips(inside, outside, "no closed-loop rise")


def test_c1_final_gains_within_ten_percent(tmp_path):
    inside = C1.judge(*c1_runs(tmp_path / "in"))                  # |(0, -0.125)| / 1.25
    outside = C1.judge(*c1_runs(tmp_path / "out", open_final_gains=(-0.75, -1.12625)))
    assert outside.measured["final_gain_distance"] == pytest.approx(0.101)
    assert_only_part_flips(inside, outside, "same final gains")


def test_c1_final_test_losses_within_25_percent(tmp_path):
    inside = C1.judge(*c1_runs(tmp_path / "in"))                  # 0.625 against 0.5
    below = C1.judge(*c1_runs(tmp_path / "below",
                              open_test=[2.0, 1.0, 10.0, 4.0, 1.0, 0.375]))  # 0.375: -25 %
    outside = C1.judge(*c1_runs(tmp_path / "out",
                                open_test=[2.0, 1.0, 10.0, 4.0, 1.0, 0.62625]))  # +25.25 %
    assert below.supported, below.failed
    assert_only_part_flips(inside, outside, "same final test loss")


def _static_gain_loop(k1: float, k2: float) -> np.ndarray:
    """eig of the static-gain closed loop P_red = [[1, 1], [k1, 1 + k2]] (science 5)."""
    return np.linalg.eigvals(np.array([[1.0, 1.0], [k1, 1.0 + k2]]))


@pytest.mark.parametrize(("inside", "outside"), [
    ((-0.5, -0.49), (-0.5, -0.51)),        # across k2 = k1: the pair enters the unit circle
    ((-0.0101, 0.2), (-0.0099, 0.2)),      # across k2^2 + 4 k1 = 0: the pair turns real
], ids=["stability-boundary", "real-complex-boundary"])
def test_c1b_student_gains_at_the_peak_unstable_oscillatory(tmp_path, inside, outside):
    # independent truth: the static-gain loop's eigenvalues on either side
    values = _static_gain_loop(*inside)
    assert np.all(values.imag != 0) and np.all(np.abs(values) > 1)
    values = _static_gain_loop(*outside)
    assert np.all(values.imag == 0) or np.all(np.abs(values) < 1)
    claim_in = C1B.judge(*c1_runs(tmp_path / "in", open_peak_gains=inside))
    claim_out = C1B.judge(*c1_runs(tmp_path / "out", open_peak_gains=outside))
    assert claim_in.measured["region_of_open_gains_at_peak"] == "unstable-oscillatory"
    assert_only_part_flips(claim_in, claim_out, "unstable-oscillatory")


def test_c1b_student_stabilises_later(tmp_path):
    """The closed loop is stable (rho(P) < 1) from epoch 3 on. The student's rho(P) is
    exactly 1 at epoch 3, which is not stable, so it stabilises at epoch 4: later (inside);
    at 0.999 it stabilises at epoch 3: at the same epoch, not later (outside)."""
    inside = C1B.judge(*c1_runs(tmp_path / "in"))
    outside = C1B.judge(*c1_runs(tmp_path / "out", open_radius=[1.3, 1.2, 1.5, 0.999, 0.9,
                                                                 0.8]))
    assert (inside.measured["stabilization_epoch_closed"],
            inside.measured["stabilization_epoch_open"]) == (3, 4)
    assert outside.measured["stabilization_epoch_open"] == 3
    assert_only_part_flips(inside, outside, "stabilises later")


# --------------------------------------------------------------------------------------------
# C2: the three stages of a rank-1 network, by case

EPOCHS = 30
STABLE_FROM = 20                     # rho(P) < 1 from here to the end
OVERLAPS = {REAL_PAIR_CASE: 0.04, COMPLEX_PAIR_CASE: -0.01}
"""Initial sigma_zm of each case's network (s_zu = s_vm = 0, s_vu = 0.1)."""
S_VU = 0.1


def rank1_parameters(s_zm: float, s_vu: float = S_VU) -> dict[str, np.ndarray]:
    """m, z, u, v of a 2-unit rank-1 network with sigma_zm = s_zm, sigma_vu = s_vu and
    sigma_zu = sigma_vm = 0 (m and u the unit vectors)."""
    return {"m": np.array([[1.0], [0.0]]), "z": np.array([[s_zm, 0.0]]),
            "u": np.array([[0.0], [1.0]]), "v": np.array([[0.0], [s_vu]])}


def rank1_spectrum(s_zm: float, s_vu: float = S_VU) -> np.ndarray:
    """Roots of det(l I - P_eff) / l with s_vm s_zu = 0 (science 3.1): s_vu and
    1 +- sqrt(s_zm)."""
    return np.roots([1.0, -(s_vu + 2), 2 * s_vu - s_zm + 1, s_vu * s_zm - s_vu])


def stage_losses(start: float = 990.0, plateau: float = 99.0, stable: float = 10.0,
                 final: float = 1.0) -> np.ndarray:
    """Test loss ``start`` at epoch 0, ``plateau`` until stabilisation, ``stable`` from it and
    ``final`` at the last epoch. The defaults sit on the edges of C2's criterion: stage 1
    falls 990 / 99 = 10x, stage 2 99 / 10 = 9.9x, stage 3 10 / 1 = 10x."""
    return np.r_[start, np.full(STABLE_FROM - 1, plateau),
                 np.full(EPOCHS - STABLE_FROM - 1, stable), final]


def c2_run(path: Path, case: str, test_loss: np.ndarray | None = None,
           first_row: np.ndarray | None = None, s_zm: float | None = None) -> Run:
    """A rank-1 run of ``case``: eig(P) at epoch 0 from its overlaps (a real pair 1.2, 0.8,
    or the complex pair 1 +- 0.1i); the real pair approaches 1 and merges at epoch 3; the
    complex pair is 1.02 +- 0.1i until stabilisation at epoch 20, then 0.9 +- 0.1i."""
    s_zm = OVERLAPS[case] if s_zm is None else s_zm
    rows = [rank1_spectrum(OVERLAPS[case]) if first_row is None else first_row]
    if case == REAL_PAIR_CASE:
        rows += [[1.15, 0.85, S_VU], [1.1, 0.9, S_VU]]
    rows += [[*pair(1.02, 0.1), S_VU]] * (STABLE_FROM - len(rows))
    rows += [[*pair(0.9, 0.1), S_VU]] * (EPOCHS - STABLE_FROM)
    return write_run(path, test_loss=stage_losses() if test_loss is None else test_loss,
                     spectrum=np.array(rows), snapshot=rank1_parameters(s_zm))


def with_stages(run: Run, stage1_end: int | None = None, stage2_end: int = STABLE_FROM,
                merges: list[int] | None = None) -> RunAnalysis:
    """The run's own analysis with the stage boundaries or merge epochs set by hand."""
    report = analyze_run(run)
    if stage1_end is not None:
        report = replace(report, stages=Stages(stage1_end, stage2_end))
    if merges is not None:
        report = replace(report, merges=[SpectralEvent(epoch, "merge", 1.0 + 0.0j)
                                          for epoch in merges])
    return report


CASES = [REAL_PAIR_CASE, COMPLEX_PAIR_CASE]


def test_c2_fixtures_read_as_science_4_describes(tmp_path):
    """The hand-made spectra give the stages their definition gives (science 4, stage
    boundaries: stage 1 ends at the first epoch e from which the dominant pair is complex and
    its imaginary part grew < 1 % per epoch over e - 5 .. e; stage 2 at stabilisation)."""
    real = c2_run(tmp_path / "real.h5", REAL_PAIR_CASE)
    complex_ = c2_run(tmp_path / "complex.h5", COMPLEX_PAIR_CASE)
    assert analyze_run(real).stages == Stages(3 + 5, STABLE_FROM)
    assert [m.epoch for m in analyze_run(real).merges] == [3]
    assert analyze_run(complex_).stages == Stages(0 + 5, STABLE_FROM)
    assert analyze_run(complex_).merges == []
    real_claim, complex_claim = C2.judge(real), C2.judge(complex_)
    assert (real_claim.case, complex_claim.case) == (REAL_PAIR_CASE, COMPLEX_PAIR_CASE)
    assert real_claim.supported and complex_claim.supported
    np.testing.assert_allclose(real_claim.measured["dominant_eigenvalue_epoch_0"], [1.2, 0])
    np.testing.assert_allclose(complex_claim.measured["dominant_eigenvalue_epoch_0"],
                               [1.0, 0.1])


@pytest.mark.parametrize(("s_zm", "case"), [(0.0, COMPLEX_PAIR_CASE),
                                            (1e-4, REAL_PAIR_CASE)])
def test_c2_case_is_sigma_zm_positive_or_not(tmp_path, s_zm, case):
    """sigma_zm <= 0 is the complex-pair case, as the criterion says; any positive value is
    the real-pair case."""
    claim = C2.judge(c2_run(tmp_path / "run.h5", COMPLEX_PAIR_CASE, s_zm=s_zm))
    assert claim.case == case


def test_c2_a_network_that_starts_complex_needs_no_stage_1_drop(tmp_path):
    """The same losses without a stage-1 fall (99 at epoch 0, 1x): a network that starts
    with the complex pair starts where stage 1 ends and is supported; one that starts with a
    real pair fails on exactly that part."""
    flat_start = stage_losses(start=99.0)
    complex_ = C2.judge(c2_run(tmp_path / "complex.h5", COMPLEX_PAIR_CASE, flat_start))
    real = C2.judge(c2_run(tmp_path / "real.h5", REAL_PAIR_CASE, flat_start))
    assert complex_.supported, complex_.failed
    assert not any("stage 1 drops" in name for name in complex_.checks)
    assert complex_.measured["stage1_drop"] == 1.0       # still measured and reported
    assert real.failed == [part(real, "stage 1 drops")]


def test_c2_real_pair_stage_1_drops_the_loss_ten_times(tmp_path):
    inside = C2.judge(c2_run(tmp_path / "in.h5", REAL_PAIR_CASE))     # 990 / 99 = 10x
    outside = C2.judge(c2_run(tmp_path / "out.h5", REAL_PAIR_CASE,
                              stage_losses(start=9.9 * 99)))          # 9.9x
    assert inside.measured["stage1_drop"] == 10.0
    assert_only_part_flips(inside, outside, "stage 1 drops")


def test_c2_real_pair_merges_by_the_end_of_stage_1(tmp_path):
    """The merge at the last epoch of stage 1 is by its end; one epoch later is not."""
    run = c2_run(tmp_path / "run.h5", REAL_PAIR_CASE)
    stage1_end = analyze_run(run).stages.stage1_end
    inside = C2.judge(run, with_stages(run, merges=[stage1_end]))
    outside = C2.judge(run, with_stages(run, merges=[stage1_end + 1]))
    none = C2.judge(run, with_stages(run, merges=[]))
    assert_only_part_flips(inside, outside, "merges into a complex pair")
    assert none.failed == outside.failed


def test_c2_complex_pair_is_complex_at_epoch_0(tmp_path):
    """Read from eig(P), not from sigma_zm: a network with sigma_zm < 0 whose recorded
    dominant eigenvalue at epoch 0 is real (1.05, merging at epoch 1) fails that part only."""
    inside = C2.judge(c2_run(tmp_path / "in.h5", COMPLEX_PAIR_CASE))
    outside = C2.judge(c2_run(tmp_path / "out.h5", COMPLEX_PAIR_CASE,
                              first_row=np.array([1.05, 0.95, S_VU])))
    assert outside.case == COMPLEX_PAIR_CASE
    assert_only_part_flips(inside, outside, "complex from epoch 0")


@pytest.mark.parametrize("case", CASES)
def test_c2_stage_1_ends_before_stabilisation(tmp_path, case):
    """Stage 1 ending one epoch before stabilisation is before it; ending at it is not (the
    loss drops, read at those epochs, hold either way)."""
    run = c2_run(tmp_path / "run.h5", case)
    inside = C2.judge(run, with_stages(run, stage1_end=STABLE_FROM - 1))
    outside = C2.judge(run, with_stages(run, stage1_end=STABLE_FROM))
    assert_only_part_flips(inside, outside, "ends before stabilisation")


@pytest.mark.parametrize("case", CASES)
def test_c2_stage_2_is_a_plateau(tmp_path, case):
    inside = C2.judge(c2_run(tmp_path / "in.h5", case))               # 99 / 10 = 9.9x
    outside = C2.judge(c2_run(tmp_path / "out.h5", case,
                              stage_losses(start=1000.0, plateau=100.0)))   # 100 / 10 = 10x
    assert outside.measured["stage2_drop"] == 10.0
    assert_only_part_flips(inside, outside, "plateau")


@pytest.mark.parametrize("case", CASES)
def test_c2_stage_3_drops_the_loss_ten_times(tmp_path, case):
    inside = C2.judge(c2_run(tmp_path / "in.h5", case))               # 10 / 1 = 10x
    outside = C2.judge(c2_run(tmp_path / "out.h5", case, stage_losses(final=10 / 9.9)))
    assert inside.measured["stage3_drop"] == 10.0
    assert_only_part_flips(inside, outside, "stage 3 drops")


# --------------------------------------------------------------------------------------------
# C3: the stage-1 theory and the descent of sigma_zm

C3_EPOCHS = 10
C3_STABLE_FROM = 6


def c3_runs(folder: Path) -> dict[float, Run]:
    """Two prescribed-overlap runs: one stabilises at epoch 6, one never does."""
    radius = {-0.2: [1.1] * C3_STABLE_FROM + [0.9] * (C3_EPOCHS - C3_STABLE_FROM),
              0.2: [1.1] * C3_EPOCHS}
    return {start: write_run(folder / f"{start:+}.h5", test_loss=np.ones(C3_EPOCHS),
                             spectrum=[[*pair(r, 0.1), 0.0] for r in radii])
            for start, radii in radius.items()}


def c3_histories(stabilising: float = -0.05, stage3: float = -0.3,
                 last: float = -0.05) -> dict[float, dict[str, np.ndarray]]:
    """sigma_zm of the runs of :func:`c3_runs`: the stabilising one is at ``stabilising`` at
    epoch 6 and moves on to ``stage3`` (stage 3's refinement); the other ends at ``last``."""
    epochs = np.arange(C3_EPOCHS)
    first = np.linspace(-0.2, stabilising, C3_STABLE_FROM + 1)
    first = np.r_[first, np.full(C3_EPOCHS - C3_STABLE_FROM - 1, stage3)]
    second = np.r_[np.linspace(0.2, 0.0, C3_EPOCHS - 1), last]
    return {-0.2: {"epoch": epochs, "s_zm": first}, 0.2: {"epoch": epochs, "s_zm": second}}


def theory_curves(gap: float = 1.1, excluded_gap: float = 5.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sigma_zm, simulated and formula losses: the formula is 1 everywhere; the simulation
    is ``gap`` decades off at |sigma_zm| = 0.05 (above at +0.05, below at -0.05) and
    ``excluded_gap`` decades off at |sigma_zm| = 0.049, outside the compared regime."""
    grid = np.array([-0.2, -0.05, -0.049, 0.0, 0.049, 0.05, 0.2])
    simulated = np.array([1.0, 10.0 ** -gap, 10.0 ** excluded_gap, 1.0,
                          10.0 ** -excluded_gap, 10.0 ** gap, 1.0])
    return grid, simulated, np.ones_like(grid)


def test_c3_theory_within_1_1_decades_where_sigma_zm_is_at_least_0_05(tmp_path):
    runs = c3_runs(tmp_path)
    inside = C3.judge(runs, c3_histories(), theory_curves(gap=1.1))
    outside = C3.judge(runs, c3_histories(), theory_curves(gap=1.111))
    assert inside.measured["max_log10_gap"] == 1.1
    assert_only_part_flips(inside, outside, "theory matches simulation")


def test_c3_theory_gap_inside_0_05_is_not_compared(tmp_path):
    """Five decades at |sigma_zm| = 0.049 (where the formula's dropped prefactor dominates)
    are outside the regime; the same five decades at 0.05 are in it."""
    runs = c3_runs(tmp_path)
    assert C3.judge(runs, c3_histories(), theory_curves(excluded_gap=5.0)).supported
    at_edge = C3.judge(runs, c3_histories(), theory_curves(gap=5.0, excluded_gap=0.0))
    assert at_edge.failed == [part(at_edge, "theory matches simulation")]


def test_c3_theory_grid_holds_both_edges_of_the_regime():
    """The default comparison reaches sigma_zm = +0.05 as it reaches -0.05."""
    grid, simulated, formula = stage1_curves()
    assert grid.min() == -0.2 and grid.max() == 0.2
    assert np.count_nonzero(np.isin(grid, [-0.05, 0.05])) == 2
    assert simulated.shape == formula.shape == grid.shape


@pytest.mark.parametrize(("inside", "outside"), [(-0.1, -0.101), (-0.001, 0.0)],
                         ids=["lower-edge", "upper-edge"])
@pytest.mark.parametrize("where", ["at-stabilisation", "at-last-epoch"])
def test_c3_sigma_zm_before_stage_3_in_minus_0_1_to_0(tmp_path, inside, outside, where):
    """[-0.1, 0): -0.1 is in, -0.101 is not; just below 0 is in, 0 is not. A run that
    stabilises is read at its stabilisation epoch, one that does not at its last epoch."""
    runs = c3_runs(tmp_path)
    curves = theory_curves()
    key = "stabilising" if where == "at-stabilisation" else "last"
    claim_in = C3.judge(runs, c3_histories(**{key: inside}), curves)
    claim_out = C3.judge(runs, c3_histories(**{key: outside}), curves)
    assert sorted(claim_in.measured["judged_at_epoch"]) == [C3_STABLE_FROM, C3_EPOCHS - 1]
    assert inside in claim_in.measured["sigma_zm_before_stage3"]
    assert_only_part_flips(claim_in, claim_out, "small negative sigma_zm")


def test_c3_reads_sigma_zm_before_stage_3_moves_it(tmp_path):
    """Stage 3 moving sigma_zm out of [-0.1, 0) after stabilisation does not count; being
    out of it at stabilisation does, whatever comes after."""
    runs, curves = c3_runs(tmp_path), theory_curves()
    assert C3.judge(runs, c3_histories(stabilising=-0.05, stage3=-0.5), curves).supported
    late = C3.judge(runs, c3_histories(stabilising=-0.5, stage3=-0.05), curves)
    assert late.failed == [part(late, "small negative sigma_zm")]


# --------------------------------------------------------------------------------------------
# C4: the crossing eigenvalue against alpha (theory) and T (experiment)

LENGTHS = (10, 20, 50, 100, 200)
C4_STABLE_FROM = 4


def surrogate_path(alpha: float, crossing_imag: float | None) -> SurrogatePath:
    """A descent whose pair moves from 1.01 + i b to 0.99 + i b (meets the unit circle at
    imaginary part b exactly), or stays outside it (``crossing_imag`` None)."""
    if crossing_imag is None:
        return SurrogatePath(alpha, np.zeros((2, 4)), np.array([1.05 + 0.4j, 1.04 + 0.41j]),
                             2, None)
    return SurrogatePath(alpha, np.zeros((2, 4)),
                         np.array([1.01 + 1j * crossing_imag, 0.99 + 1j * crossing_imag]), 2, 1)


def surrogate_paths(crossing: Mapping[float, float | None]) -> list[SurrogatePath]:
    return [surrogate_path(alpha, imag) for alpha, imag in crossing.items()]


CROSSINGS = {0.29: None, 0.30: 0.30, 0.31: 0.29, 0.32: 0.28, 0.33: None}
"""alpha -> imaginary part where its descent crosses the circle: three alphas, decreasing."""


def retrained_run(path: Path, imag: float, last: list[complex] | None = None,
                  real_last_crossing: bool = False, real_pair: bool = False) -> Run:
    """A retraining that stabilises at epoch 4 with its pair at imaginary part ``imag``.

    ``real_last_crossing``: the real lambda_3 is the last to cross (it dominates at the
    stabilisation epoch, the pair is inside); ``real_pair``: the pair is real from the
    stabilisation epoch on; ``last``: the last epoch's eigenvalues.
    """
    before = [*pair(1.02, imag), 1.01 if real_last_crossing else 0.1]
    after = [0.95, 0.9, 0.1] if real_pair else [*pair(0.9, imag),
                                                0.99 if real_last_crossing else 0.1]
    rows = [before] * C4_STABLE_FROM + [after] * (8 - C4_STABLE_FROM)
    if last is not None:
        rows[-1] = last
    return write_run(path, test_loss=np.ones(len(rows)), spectrum=rows)


def retrained_runs(folder: Path, imag: Mapping[int, float] | None = None,
                   **variant: dict[str, Any]) -> dict[int, Run]:
    """Retraining with each T: the imaginary part at stabilisation falls 0.30, 0.25, ...;
    with T = 10 the real lambda_3 crosses last (science 4). ``variant`` maps ``T<length>``
    to keyword arguments of :func:`retrained_run` for that length."""
    imag = imag or dict(zip(LENGTHS, (0.30, 0.25, 0.20, 0.15, 0.10), strict=True))
    runs = {}
    for length in LENGTHS:
        options = {"real_last_crossing": length == 10, **variant.get(f"T{length}", {})}
        runs[length] = retrained_run(folder / f"T{length}.h5", imag[length], **options)
    return runs


def test_c4_fixture_reads_the_pair_at_stabilisation(tmp_path):
    runs = retrained_runs(tmp_path)
    claim = C4.judge(runs[10], runs, surrogate_paths(CROSSINGS))
    assert claim.supported, claim.failed
    assert claim.measured["stabilization_epoch_by_T"] == [C4_STABLE_FROM] * len(LENGTHS)
    assert claim.measured["imag_at_stabilization_by_T"] == pytest.approx(
        [0.30, 0.25, 0.20, 0.15, 0.10])
    assert claim.measured["crossing_imag_by_alpha"] == pytest.approx([0.30, 0.29, 0.28])


def test_c4_at_least_three_alphas_cross(tmp_path):
    runs = retrained_runs(tmp_path)
    two = {**CROSSINGS, 0.32: None}
    inside = C4.judge(runs[10], runs, surrogate_paths(CROSSINGS))
    outside = C4.judge(runs[10], runs, surrogate_paths(two))
    assert outside.measured["crossing_alphas"] == [0.30, 0.31]
    assert_only_part_flips(inside, outside, "alphas cross")


def test_c4_crossing_imaginary_part_strictly_decreases_with_alpha(tmp_path):
    """0.30, 0.29, 0.28 decreases; 0.30, 0.29, 0.29 does not strictly. The paths are read in
    the order of alpha, whatever order they come in."""
    runs = retrained_runs(tmp_path)
    level = {**CROSSINGS, 0.32: 0.29}
    inside = C4.judge(runs[10], runs, surrogate_paths(CROSSINGS)[::-1])
    outside = C4.judge(runs[10], runs, surrogate_paths(level))
    assert_only_part_flips(inside, outside, "decreases with alpha")


@pytest.mark.parametrize("variant", ["rho-returns-to-1", "pair-turns-real"])
def test_c4_every_length_stabilises_with_a_complex_pair(tmp_path, variant):
    """Outside: T = 200's rho(P) is back at exactly 1 at its last epoch (its lambda_3 at 1.0
    against 0.999 inside: rho < 1 is stable, rho = 1 is not), so it never stabilises; or it
    stabilises with a real pair. The order in T is then read over the other lengths, which
    still decrease: only this part fails."""
    paths = surrogate_paths(CROSSINGS)
    just_stable = [0.999, *pair(0.9, 0.10)]
    inside_runs = retrained_runs(tmp_path / "in", T200={"last": just_stable})
    if variant == "rho-returns-to-1":
        outside_runs = retrained_runs(tmp_path / "out", T200={"last": [1.0, *pair(0.9, 0.1)]})
    else:
        outside_runs = retrained_runs(tmp_path / "out", T200={"real_pair": True})
    inside = C4.judge(inside_runs[10], inside_runs, paths)
    outside = C4.judge(outside_runs[10], outside_runs, paths)
    assert inside.measured["stabilization_epoch_by_T"][-1] == C4_STABLE_FROM
    assert outside.measured["imag_at_stabilization_by_T"][-1] is None
    assert_only_part_flips(inside, outside, "every T stabilises")


def test_c4_imaginary_part_at_stabilisation_strictly_decreases_with_t(tmp_path):
    paths = surrogate_paths(CROSSINGS)
    level = dict(zip(LENGTHS, (0.30, 0.25, 0.20, 0.20, 0.10), strict=True))
    inside_runs = retrained_runs(tmp_path / "in")
    outside_runs = retrained_runs(tmp_path / "out", level)
    inside = C4.judge(inside_runs[10], inside_runs, paths)
    outside = C4.judge(outside_runs[10], outside_runs, paths)
    assert_only_part_flips(inside, outside, "decreases with T")


# --------------------------------------------------------------------------------------------
# C5: the reduced model against the full one, per control cost

BETAS = (0.0, 2.0)
FULL_TRAIN = np.array([np.nan, 8.0, 4.0, 1.0, 0.5, 0.25])


def c5_pairs(folder: Path, final: Mapping[float, float] | None = None,
             epoch3: Mapping[float, float] | None = None) -> dict[float, tuple[Run, Run]]:
    """Full and reduced runs per beta: the full model ends at test loss 1.0; the reduced one
    ends at ``final[beta]`` (default 1.25 and 0.8: both ends of [1/1.25, 1.25]) and its
    training loss equals the full one's except at epoch 3, where it is ``epoch3[beta]``
    (default 10^0.5 against 1.0: half a decade). Epoch 0 trains nothing (NaN)."""
    final = final or {0.0: 1.25, 2.0: 0.8}
    epoch3 = epoch3 or {0.0: 10 ** 0.5, 2.0: 1.0}
    pairs = {}
    for beta in BETAS:
        reduced_train = FULL_TRAIN.copy()
        reduced_train[3] = epoch3[beta]
        spectrum = [[*pair(0.9, 0.1), 0.0]] * len(FULL_TRAIN)
        full = write_run(folder / f"full{beta}.h5", test_loss=np.r_[np.full(5, 2.0), 1.0],
                         train_loss=FULL_TRAIN, spectrum=spectrum)
        reduced = write_run(folder / f"reduced{beta}.h5",
                            test_loss=np.r_[np.full(5, 2.0), final[beta]],
                            train_loss=reduced_train, spectrum=spectrum,
                            preset="di-reduced-closed")
        pairs[beta] = (full, reduced)
    return pairs


def test_c5_pairs_at_the_edges_of_the_criterion_are_supported(tmp_path):
    claim = C5.judge(c5_pairs(tmp_path))
    assert claim.supported, claim.failed
    assert claim.measured["final_test_loss_ratio"] == [1.25, 0.8]
    assert claim.measured["max_log10_training_loss_gap"] == [0.5, 0.0]


@pytest.mark.parametrize("final", [{0.0: 1.2625, 2.0: 0.8}, {0.0: 1.25, 2.0: 0.8 / 1.01}],
                         ids=["above-1.25", "below-1/1.25"])
def test_c5_final_test_losses_within_a_factor_1_25(tmp_path, final):
    """1.25 x 1.01 is out above, 0.8 / 1.01 below; one beta out is enough."""
    inside = C5.judge(c5_pairs(tmp_path / "in"))
    outside = C5.judge(c5_pairs(tmp_path / "out", final=final))
    assert_only_part_flips(inside, outside, "final test losses agree")


def test_c5_training_losses_within_half_a_decade_at_every_epoch(tmp_path):
    inside = C5.judge(c5_pairs(tmp_path / "in"))                     # 10^0.5 against 1
    outside = C5.judge(c5_pairs(tmp_path / "out", epoch3={0.0: 1.0, 2.0: 10 ** -0.505}))
    assert outside.measured["max_log10_training_loss_gap"][1] == pytest.approx(0.505)
    assert_only_part_flips(inside, outside, "training-loss curves agree")
