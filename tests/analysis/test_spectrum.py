"""Reading learning from the coupled spectrum (science 3, 4) on constructed spectra.

The spectra are built here with known trajectories, so the expected tracking, events and
stage boundaries are known by construction (and worked out by hand in the comments).
"""

import numpy as np
import pytest

from closedloop.analysis.spectrum import (
    crossings,
    detect_stages,
    spectral_events,
    stabilization_epoch,
    track_eigenvalues,
)


def sort_by_modulus(rows):
    """Each row sorted by descending modulus, ties by descending imaginary part (as run files
    store them), written independently of the package."""
    rows = np.asarray(rows, dtype=complex)
    out = np.empty_like(rows)
    for e, row in enumerate(rows):
        order = sorted(range(row.size), key=lambda j: (-abs(row[j]), -row[j].imag))
        out[e] = row[order]
    return out


def permute_rows(rows, seed, keep_first=True):
    rng = np.random.default_rng(seed)
    out = rows.copy()
    for e in range(1 if keep_first else 0, rows.shape[0]):
        out[e] = rows[e, rng.permutation(rows.shape[1])]
    return out


def same_columns_up_to_order(tracked, truth):
    """Column permutation that maps truth's trajectories to tracked's columns (from epoch 0)."""
    return [int(np.argmin(np.abs(truth[0] - value))) for value in tracked[0]]


# ---------------------------------------------------------------------------------------------
# tracking


def two_real_passing():
    epochs = np.arange(12)
    falling = 0.95 - 0.04 * epochs          # 0.95 -> 0.51
    rising = 0.50 + 0.04 * epochs           # 0.50 -> 0.94: passes the other near epoch 5.6
    still = np.full(12, 0.2)
    return np.stack([falling, rising, still], axis=1).astype(complex)


def two_complex_pairs_crossing():
    epochs = np.arange(15)
    r1 = 1.10 - 0.03 * epochs               # shrinking pair at angle 0.3
    r2 = 0.80 + 0.02 * epochs               # growing pair at angle 1.2; |.| cross near e = 6
    p1 = r1 * np.exp(0.3j)
    p2 = r2 * np.exp(1.2j)
    return np.stack([p1, p1.conj(), p2, p2.conj(), np.full(15, -0.1 + 0j)], axis=1)


@pytest.mark.parametrize("make", [two_real_passing, two_complex_pairs_crossing])
def test_tracking_keeps_identities_when_moduli_cross(make):
    truth = make()
    moduli = np.abs(truth)
    assert np.any(np.diff(np.argsort(-moduli, axis=1), axis=0) != 0)  # the ranking changes
    stored = sort_by_modulus(truth)
    assert not np.allclose(stored, truth)  # sorting by modulus mixes the trajectories
    tracked = track_eigenvalues(stored)
    order = same_columns_up_to_order(tracked, truth)
    np.testing.assert_array_equal(stored[0], tracked[0])  # columns ordered as epoch 0's row
    np.testing.assert_allclose(tracked, truth[:, order], rtol=0, atol=1e-15)


@pytest.mark.parametrize("make", [two_real_passing, two_complex_pairs_crossing])
@pytest.mark.parametrize("seed", range(4))
def test_tracking_ignores_the_order_within_rows(make, seed):
    truth = make()
    reference = track_eigenvalues(sort_by_modulus(truth))
    # later rows shuffled: the same result
    np.testing.assert_array_equal(track_eigenvalues(permute_rows(truth, seed)), truth)
    np.testing.assert_array_equal(track_eigenvalues(permute_rows(reference, seed)), reference)
    # epoch 0 shuffled too: the same trajectories, in epoch 0's new column order
    shuffled = permute_rows(truth, seed, keep_first=False)
    tracked = track_eigenvalues(shuffled)
    order = same_columns_up_to_order(tracked, truth)
    np.testing.assert_array_equal(tracked[0], shuffled[0])
    np.testing.assert_array_equal(tracked, truth[:, order])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rows_end_tracking(bad):
    truth = two_complex_pairs_crossing()
    stored = sort_by_modulus(truth)
    stored[9, 2] = bad
    tracked = track_eigenvalues(stored)
    order = same_columns_up_to_order(tracked, truth)
    np.testing.assert_array_equal(tracked[:9], truth[:9, order])
    assert np.all(np.isnan(tracked[9:]))  # the diverged epoch and everything after it
    stored[0, 0] = np.nan
    assert np.all(np.isnan(track_eigenvalues(stored)))
    assert track_eigenvalues(np.zeros((0, 3), dtype=complex)).shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# events


def test_pair_spiralling_out_and_back_in_crosses_twice_once_per_pair():
    # radius 0.90, 0.96, 1.02, 1.06, 1.10, 1.06, 1.02, 0.96, 0.90 at angle 0.4 rad, and a real
    # eigenvalue 0.5 that stays inside: |lambda| >= 1 from row 2 to 6, < 1 again at row 7
    radius = np.array([0.90, 0.96, 1.02, 1.06, 1.10, 1.06, 1.02, 0.96, 0.90])
    pair = radius * np.exp(0.4j)
    truth = np.stack([pair, pair.conj(), np.full(radius.size, 0.5 + 0j)], axis=1)
    tracked = track_eigenvalues(sort_by_modulus(truth))
    np.testing.assert_allclose(tracked, truth, atol=1e-15)
    epochs = 10 * np.arange(radius.size)  # epoch numbers of the rows
    events = spectral_events(tracked, epochs)
    assert [(e.kind, e.direction, e.epoch) for e in events] == [
        ("crossing", "out", 20), ("crossing", "in", 70)]
    for event, row in zip(events, (2, 7), strict=True):
        assert event.trajectory == 0  # the upper member's column
        assert event.eigenvalue == pytest.approx(pair[row]) and event.eigenvalue.imag > 0
    assert [e.epoch for e in crossings(tracked, epochs)] == [20, 70]
    assert events[0].to_json() == {"epoch": 20, "kind": "crossing",
                                   "eigenvalue": [pair[2].real, pair[2].imag],
                                   "direction": "out"}
    # which column holds the upper member does not matter
    swapped = tracked[:, [1, 0, 2]]
    assert [(e.kind, e.direction, e.epoch, e.trajectory) for e in spectral_events(swapped)] == [
        ("crossing", "out", 2, 1), ("crossing", "in", 7, 1)]


def merging_pair(epochs=12, merge=5):
    """A real pair 1.2 +- 0.02 (merge - e) closing in on 1.2, the complex pair
    1.2 +- 0.03 i (e - merge + 1) from epoch ``merge`` on (all outside the unit circle, so no
    crossings); plus a real 0.3."""
    e = np.arange(epochs)
    gap = 0.02 * (merge - e)
    upper = np.where(e < merge, 1.2 + gap, 1.2 + 0.03j * (e - merge + 1))
    lower = np.where(e < merge, 1.2 - gap, 1.2 - 0.03j * (e - merge + 1))
    return np.stack([upper, lower, np.full(epochs, 0.3 + 0j)], axis=1)


def test_real_pair_merging_into_a_complex_pair():
    truth = merging_pair()
    events = spectral_events(truth)
    assert [(e.kind, e.epoch, e.trajectory) for e in events] == [("merge", 5, 0)]
    assert events[0].eigenvalue == pytest.approx(1.2 + 0.03j)
    assert events[0].to_json() == {"epoch": 5, "kind": "merge", "eigenvalue": [1.2, 0.03]}
    # through the tracker, from rows sorted by modulus, with epoch numbers
    tracked = track_eigenvalues(sort_by_modulus(truth))
    events = spectral_events(tracked, epochs=100 + np.arange(12))
    assert [(e.kind, e.epoch, e.eigenvalue.imag > 0) for e in events] == [("merge", 105, True)]


def test_complex_pair_splitting_into_a_real_pair():
    truth = merging_pair()[::-1]  # the same path backwards: complex until row 6, real at 7
    events = spectral_events(track_eigenvalues(sort_by_modulus(truth)))
    assert [(e.kind, e.epoch) for e in events] == [("split", 7)]
    assert events[0].eigenvalue.imag == 0


def test_imag_tolerance_of_events():
    truth = merging_pair()
    # Im = 0.03 (e - 4) from epoch 5 (.09 at 7, .12 at 8): with |Im| <= 0.1 counted as real
    # the merge is at epoch 8
    events = spectral_events(truth, imag_tolerance=0.1)
    assert [(e.kind, e.epoch) for e in events] == [("merge", 8)]


# ---------------------------------------------------------------------------------------------
# stabilisation


@pytest.mark.parametrize("radius, expected", [
    ([1.2, 0.9, 1.01, 0.99, 0.5], 3),
    ([0.5, 0.6, 0.7], 0),                      # always stable
    ([1.5, 1.2, 1.1], None),                   # never stable
    ([0.5, 0.9, 1.0], None),                   # rho = 1 is not stable
    ([0.5, 1.0, 0.99], 2),
    ([0.9, np.nan, 0.9, 0.8], 2),              # a NaN (diverged) epoch counts as unstable
    ([0.9, 0.8, np.nan], None),
    ([np.inf, 0.3], 1),
    ([], None),
])
def test_stabilization_epoch(radius, expected):
    assert stabilization_epoch(np.array(radius, dtype=float)) == expected


def test_stabilization_epoch_reports_epoch_numbers():
    radius = np.array([1.3, 1.1, 0.95, 1.02, 0.97, 0.9])
    assert stabilization_epoch(radius) == 4
    assert stabilization_epoch(radius, epochs=np.array([0, 5, 10, 20, 40, 80])) == 40


# ---------------------------------------------------------------------------------------------
# stages


# relative growth of the imaginary part per epoch, from epoch k to k + 1, for k = 5, 6, ...
GROWTH = [1.0, 0.5, 0.25, 0.1, 0.04, 0.02, 0.012, 0.006]


def staged_spectrum(epochs=60, merge=5, stabilise=40, imag0=0.05):
    """(i) of the brief: a real pair 1 +- 0.04 (merge - e) until ``merge``; then a complex pair
    whose imaginary part starts at ``imag0`` and grows by the GROWTH factors, then stays flat;
    real part 1 (|lambda| > 1) until ``stabilise``, 0.9 from then on (|lambda| < 1); plus a
    real eigenvalue 0.3. Rows sorted by descending modulus."""
    imag = np.zeros(epochs)
    imag[merge] = imag0
    for k in range(merge, epochs - 1):
        rate = GROWTH[k - merge] if k - merge < len(GROWTH) else 0.0
        imag[k + 1] = imag[k] * (1 + rate)
    real = np.where(np.arange(epochs) < stabilise, 1.0, 0.9)
    e = np.arange(epochs)
    upper = np.where(e < merge, 1 + 0.04 * (merge - e), real + 1j * imag)
    lower = np.where(e < merge, 1 - 0.04 * (merge - e), real - 1j * imag)
    rows = np.stack([upper, lower, np.full(epochs, 0.3 + 0j)], axis=1)
    return sort_by_modulus(rows), imag


def test_staged_spectrum_is_what_it_claims():
    rows, imag = staged_spectrum()
    radius = np.abs(rows[:, 0])
    assert np.all(radius[:40] > 1) and np.all(radius[40:] < 1)
    assert np.all(rows[:5, 0].imag == 0) and np.all(rows[5:, 0].imag > 0)
    np.testing.assert_allclose(np.diff(imag[5:14]) / imag[5:13], GROWTH, rtol=1e-12)
    assert np.all(np.diff(imag[13:]) == 0)


def test_detect_stages_on_a_three_stage_spectrum():
    rows, _ = staged_spectrum()
    # Documented rule (window 5, threshold 0.01): stage 1 ends at the first epoch e >= 5 + 5
    # whose mean growth g over the transitions e-5 -> e-4, ..., e-1 -> e is below 1 %, with
    # g_5..g_12 = 1, .5, .25, .1, .04, .02, .012, .006 and g_k = 0 from k = 13:
    #   e = 10: g_5..g_9   = 1.89 / 5 = .378
    #   e = 11: g_6..g_10  = .91 / 5  = .182
    #   e = 12: g_7..g_11  = .422 / 5 = .0844
    #   e = 13: g_8..g_12  = .178 / 5 = .0356
    #   e = 14: g_9..g_13  = .078 / 5 = .0156
    #   e = 15: g_10..g_14 = .038 / 5 = .0076 < .01  ->  stage1_end = 15
    stages = detect_stages(rows)
    assert stages.to_json() == {"stage1_end": 15, "stage2_end": 40}
    # epoch numbers of the rows are reported, not row indices
    epochs = 3 * np.arange(rows.shape[0])
    assert detect_stages(rows, epochs=epochs).to_json() == {"stage1_end": 45,
                                                             "stage2_end": 120}
    # an explicit spectral radius overrides |rows[:, 0]|
    radius = np.abs(rows[:, 0])
    radius[45] = 1.2  # unstable again at 45: stabilisation moves to 46
    assert detect_stages(rows, radius).to_json() == {"stage1_end": 15, "stage2_end": 46}


@pytest.mark.parametrize("window, threshold, expected", [
    # window 5, the means above: .0156 < .02 first at e = 14; .0844 < .1 first at e = 12
    (5, 0.02, 14),
    (5, 0.1, 12),
    # window 3 (e >= 8): e = 12: (.04 + .02 + .012) / 3 = .024; e = 13: .038 / 3 = .0127;
    # e = 14: (.012 + .006 + 0) / 3 = .006 < .01
    (3, 0.01, 14),
    # window 1 (e >= 6): the single transition e-1 -> e: g_11 = .012 is not below .01, g_12 is
    (1, 0.01, 13),
    # window 8 (e >= 13): e = 15: g_7..g_14 = .428 / 8 = .0535; e = 16: g_8..g_15 = .178 / 8
    # = .02225; e = 17: g_9..g_16 = .078 / 8 = .00975 < .01
    (8, 0.01, 17),
])
def test_detect_stages_parameters(window, threshold, expected):
    rows, _ = staged_spectrum()
    stages = detect_stages(rows, window=window, growth_threshold=threshold)
    assert stages.to_json() == {"stage1_end": expected, "stage2_end": 40}


def test_imag_tolerance_decides_what_counts_as_complex():
    rows, imag = staged_spectrum()
    # Im = .05, .1, .15 at epochs 5, 6, 7: with |Im| <= .12 counted as real the pair is
    # complex from 7, so e >= 7 + 5 = 12, and the window-5 means above still give e = 15;
    # with a tolerance above the plateau (~.223) the dominant eigenvalue is never complex
    assert imag[5:8] == pytest.approx([0.05, 0.1, 0.15])
    assert imag.max() == pytest.approx(0.2228, abs=1e-3)
    assert detect_stages(rows, imag_tolerance=0.12).stage1_end == 15
    # window 5 from e >= 12 with threshold .1: e = 12 (.0844) is allowed, so the later
    # complex start matters only when it excludes an epoch: tolerance .16 -> complex from 8,
    # e >= 13, and e = 13 (.0356 < .1) is the first
    assert detect_stages(rows, growth_threshold=0.1).stage1_end == 12
    assert detect_stages(rows, growth_threshold=0.1, imag_tolerance=0.16).stage1_end == 13
    assert detect_stages(rows, imag_tolerance=0.3).to_json() == {"stage1_end": None,
                                                                 "stage2_end": 40}


@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_complex_from_the_start_with_flat_imaginary_part(window):
    epochs = 30
    pair = np.where(np.arange(epochs) < 20, 1.02, 0.95) + 0.1j
    rows = sort_by_modulus(np.stack([pair, pair.conj(), np.full(epochs, 0.1 + 0j)], axis=1))
    assert detect_stages(rows, window=window).to_json() == {"stage1_end": window,
                                                             "stage2_end": 20}


def test_never_stabilising_spectrum():
    rows, _ = staged_spectrum(stabilise=10 ** 6)
    assert np.all(np.abs(rows[:, 0]) > 1)
    # stage 2 never ends; stage 1 is still read up to the last epoch
    assert detect_stages(rows).to_json() == {"stage1_end": 15, "stage2_end": None}
    # a run stopped before the position feedback settles has no stage-1 end either
    assert detect_stages(rows[:15]).to_json() == {"stage1_end": None, "stage2_end": None}


def test_stabilising_before_the_growth_settles_has_no_stage1_end():
    rows, _ = staged_spectrum(stabilise=13)
    # stage 1 would end at 15, but the spectrum stabilises at 13 first
    assert detect_stages(rows).to_json() == {"stage1_end": None, "stage2_end": 13}


def test_real_dominant_eigenvalue_at_stabilisation_has_no_stage1_end():
    rows, _ = staged_spectrum()
    rows = rows.copy()
    # from epoch 38 the pair has split into real eigenvalues: 1.05 (38, 39), then 0.9 and 0.5
    rows[38:, 0] = np.where(np.arange(38, 60) < 40, 1.05, 0.9)
    rows[38:, 1] = 0.5
    assert stabilization_epoch(np.abs(rows[:, 0])) == 40
    assert detect_stages(rows).to_json() == {"stage1_end": None, "stage2_end": 40}


def test_member_crossing_alone_while_a_pair_merges_is_reported():
    """A real pair inside/outside the circle merges into a complex pair outside it: the member
    that was inside crosses out alone, so one "out" crossing is reported; the reverse split
    reports the "in" crossing."""
    e = np.arange(10)
    upper = np.where(e < 5, 1 + 0.02 * (5 - e) + 0j, 1 + 0.03j * (e - 4))
    lower = np.where(e < 5, 1 - 0.02 * (5 - e) + 0j, 1 - 0.03j * (e - 4))
    forward = spectral_events(np.stack([upper, lower], 1))
    assert [(ev.epoch, ev.kind, ev.direction) for ev in forward] == [
        (5, "merge", None), (5, "crossing", "out")]
    backward = spectral_events(np.stack([upper, lower], 1)[::-1])
    assert sorted((ev.epoch, ev.kind, ev.direction or "") for ev in backward) == [
        (5, "crossing", "in"), (5, "split", "")]
