"""The paper's claims as functions of runs, one seed at a time.

Each ``judge_*`` function takes the finished runs one seed of an experiment made and returns a
:class:`Claim`: the measured numbers, the named parts of the written criterion with their
outcome (``checks``; the claim is supported when every part holds, and ``failed`` names those
that do not), and a few headline numbers (``numbers``) that the reproduction report tabulates
and plots over seeds. ``closedloop reproduce``, ``closedloop sweep-summary`` and users' own
scripts call these same functions.

========  ===================================================  ==========================
claim     runs of one seed                                     function
========  ===================================================  ==========================
C1        closed-loop run, its open-loop twin                  :func:`judge_c1`
C1b       the same pair, in gain space                         :func:`judge_c1b`
C2        a low-rank closed-loop run                           :func:`judge_c2`
C3        runs from prescribed initial sigma_zm                :func:`judge_c3`
C4        a low-rank run, its retraining with other T          :func:`judge_c4`
C5        full and reduced model per control cost              :func:`judge_c5`
C6        a tracking run and its open-loop twin                :func:`judge_c6`
========  ===================================================  ==========================

Example
-------
>>> from closedloop.runs import load_run
>>> claim = judge_c1(load_run("runs/closed.h5"), load_run("runs/open.h5"))  # doctest: +SKIP
>>> claim.supported, claim.failed                                         # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from closedloop.analysis.summary import analyze_run, has_order_parameters
from closedloop.analysis.tracking import MATCH
from closedloop.core.agents import order_parameters
from closedloop.errors import ConfigError
from closedloop.runs.store import Run

PEAK_FACTOR = 10.0          # C1: open peak >= this x the student's lowest earlier test loss
CLOSED_RISE = 1.1           # C1: closed loss never above this x its epoch-0 value
GAIN_TOLERANCE = 0.1        # C1: relative distance of the final effective gains
LOSS_TOLERANCE = 0.25       # C1: relative difference of the final test losses
STAGE1_DROP = 10.0          # C2: test loss falls at least this much in stage 1
PLATEAU = 10.0              # C2: ... less than this much in stage 2
STAGE3_DROP = 10.0          # C2: ... and at least this much after stabilisation
THEORY_DECADES = 1.1        # C3: |log10 L_sim - log10 L_theory| allowed where |s_zm| >= 0.05
FINAL_OVERLAP = (-0.1, 0.0)  # C3: sigma_zm before stage 3 lies in [low, high)
MIN_CROSSINGS = 3           # C4: alphas (0.01 grid) whose descent crosses the unit circle
START_EPOCH = 10            # C4: descents and retraining start from this epoch (science 4)
DESCENT_STEPS = 1000        # C4: at most this many SGD steps per surrogate descent
FINAL_RATIO = 1.25          # C5: reduced/full final test loss within [1/1.25, 1.25]
CURVE_DECADES = 0.5         # C5: and per-epoch training losses within half a decade
FREQUENCY_TOLERANCE = MATCH  # C6: |Im lambda - 2 pi f| <= 15 % of 2 pi f
DEGRADATION = 0.1           # C6: an earlier frequency's error rises >= 10 % (and recovers)

REAL_PAIR_CASE = "real pair at start (sigma_zm > 0)"
COMPLEX_PAIR_CASE = "complex pair from the start (sigma_zm <= 0)"


@dataclass
class Claim:
    """A claim of the paper for one seed, judged by an explicit criterion.

    Attributes
    ----------
    id, statement, criterion
        The claim's name, what the paper says, and the criterion that judges it here.
    measured
        Every number the criterion reads.
    checks
        The criterion's parts by name, and whether each holds.
    numbers
        Headline numbers of this seed (the report's per-seed table and distribution plot).
    case
        For claims judged differently in different cases (C2), the case this seed is in.

    Example
    -------
    >>> claim = Claim("C0", "a statement", "x > 1", {"x": 2.0}, {"x > 1": True})
    >>> claim.supported, claim.failed
    (True, [])
    """

    id: str
    statement: str
    criterion: str
    measured: dict[str, Any]
    checks: dict[str, bool]
    numbers: dict[str, float | int | None] = field(default_factory=dict)
    case: str | None = None

    @property
    def supported(self) -> bool:
        """Every part of the criterion holds (and there is at least one)."""
        return bool(self.checks) and all(self.checks.values())

    @property
    def failed(self) -> list[str]:
        """The parts of the criterion that do not hold: why a seed does not support it."""
        return [name for name, holds in self.checks.items() if not holds]


def _ratio(numerator: float, denominator: float) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):   # a diverged run: NaN, not supported
        return float(np.float64(numerator) / np.float64(denominator))


# -- C1, C1b: the double-integrator pair ----------------------------------------------------


def judge_c1(closed: Run, opened: Run) -> Claim:
    """Claim C1 for a closed-loop run and its open-loop twin (science 2, 7.1)."""
    test_open = opened.metrics["test_loss"]
    test_closed = closed.metrics["test_loss"]
    peak = int(np.nanargmax(test_open))
    lowest_before = float(np.nanmin(test_open[: peak + 1]))
    closed_max = float(np.nanmax(test_closed[1:])) if len(test_closed) > 1 else float("nan")
    gains_closed = closed.metrics["gains"][-1, 0]
    gains_open = opened.metrics["gains"][-1, 0]
    gain_distance = _ratio(np.linalg.norm(gains_open - gains_closed),
                           np.linalg.norm(gains_closed))
    loss_difference = _ratio(abs(test_open[-1] - test_closed[-1]), test_closed[-1])
    peak_ratio = _ratio(test_open[peak], lowest_before)
    measured = {
        "open_peak_test_loss": float(test_open[peak]), "open_peak_epoch": peak,
        "open_initial_test_loss": float(test_open[0]),
        "open_lowest_before_peak": lowest_before,
        "open_peak_over_lowest_before": peak_ratio,
        "closed_initial_test_loss": float(test_closed[0]),
        "closed_max_test_loss_after_epoch_0": closed_max,
        "final_gains_closed": gains_closed.tolist(), "final_gains_open": gains_open.tolist(),
        "final_gain_distance": gain_distance,
        "final_test_loss_closed": float(test_closed[-1]),
        "final_test_loss_open": float(test_open[-1]),
        "final_test_loss_relative_difference": loss_difference,
    }
    checks = {
        "open-loop peak far above its earlier values": bool(peak_ratio >= PEAK_FACTOR),
        "open-loop peak above its epoch-0 value": bool(test_open[peak] > test_open[0]),
        "no closed-loop rise": bool(closed_max <= CLOSED_RISE * test_closed[0]),
        "same final gains": bool(gain_distance <= GAIN_TOLERANCE),
        "same final test loss": bool(loss_difference <= LOSS_TOLERANCE),
    }
    return Claim(
        "C1",
        "The open-loop student's closed-loop test loss has a transient peak far above its "
        "earlier values while the closed-loop network has none, and both end at the same "
        "controller.",
        f"open peak >= {PEAK_FACTOR:g} x the student's lowest test loss before it and above "
        f"its epoch-0 value; closed-loop test loss after epoch 0 never above {CLOSED_RISE:g} x "
        f"its epoch-0 value; final effective gains within {GAIN_TOLERANCE:.0%} (relative "
        f"norm) and final test losses within {LOSS_TOLERANCE:.0%}.",
        measured, checks,
        {"open peak / lowest before": peak_ratio, "open peak epoch": peak,
         "final gain distance": gain_distance})


def judge_c1b(closed: Run, opened: Run) -> Claim:
    """Claim C1b for the same pair, in gain space (science 5, 7.2)."""
    from closedloop.analysis.gains import REGION_NAMES, UNSTABLE_OSCILLATORY, classify_static_gains

    gains_open = opened.metrics["gains"][:, 0]
    peak = int(np.nanargmax(opened.metrics["test_loss"]))
    region = int(classify_static_gains(*gains_open[peak]))
    stab_closed, stab_open = closed.stabilization_epoch, opened.stabilization_epoch
    measured = {
        "open_peak_epoch": peak, "open_gains_at_peak": gains_open[peak].tolist(),
        "region_of_open_gains_at_peak": REGION_NAMES[region],
        "stabilization_epoch_closed": stab_closed, "stabilization_epoch_open": stab_open,
    }
    checks = {
        "open-loop gains at the peak unstable-oscillatory": region == UNSTABLE_OSCILLATORY,
        "open loop stabilises later": bool(stab_open is not None and stab_closed is not None
                                           and stab_open > stab_closed),
    }
    return Claim(
        "C1b",
        "In gain space the open-loop student cuts through the unstable-oscillatory region "
        "(its test-loss peak) and reaches the stable region later than the closed-loop "
        "network, which moves along the stability boundary.",
        "the open-loop effective gains at the student's test-loss peak are classified "
        "unstable-oscillatory (Jury), and the student's coupled matrix P stabilises at a "
        "later epoch than the closed-loop network's.",
        measured, checks,
        {"stabilisation epoch, closed": stab_closed, "stabilisation epoch, open": stab_open})


# -- C2, C3: stage 1 of the low-rank network ------------------------------------------------


def initial_overlap(run: Run) -> float:
    """sigma_zm = z.m of a rank-1 run's epoch-0 weights (science 4)."""
    return float(order_parameters(run.parameters(0))["s_zm"])


def judges_c2(run: Run) -> bool:
    """Whether C2 is about ``run``: a rank-1 low-rank network (not the reduced overlap model,
    not a full-rank network)."""
    return run.config.agent.kind == "lowrank" and has_order_parameters(run)


def judge_c2(run: Run, report: dict[str, Any] | None = None) -> Claim:
    """Claim C2 (three stages in the spectrum) for one low-rank closed-loop run.

    The seed is judged by the case it is in (science 4). A network whose initial sigma_zm is
    positive starts with a real pair of eig(P): its stage 1 must merge that pair into the
    complex pair by the end of stage 1 and drop the test loss at least
    :data:`STAGE1_DROP` times. A network whose sigma_zm is not positive starts where stage 1
    ends, with the complex pair from epoch 0 (its stage 1 may be a few epochs long, with no
    fast fall to make): that the pair is complex at epoch 0 is checked instead, and no
    stage-1 drop is required. In both cases stage 1 must end before stabilisation, stage 2
    must be a plateau and stage 3 must drop the loss.

    Raises
    ------
    ConfigError
        When the run is not a rank-1 low-rank network (the claim is about that model).
    """
    if not judges_c2(run):
        raise ConfigError(f"{run.path.name}: C2 is judged on rank-1 low-rank runs, not on "
                          f"'{run.config.agent.kind}' agents")
    report = report or analyze_run(run)
    stages = report["stages"]
    test = run.metrics["test_loss"]
    s1, s2 = stages["stage1_end"], stages["stage2_end"]
    merges = [m["epoch"] for m in report["merges"]]
    overlap = initial_overlap(run)
    dominant = complex(run.coupled_eigenvalues[0, 0])
    real_start = overlap > 0
    measured: dict[str, Any] = {
        "initial_sigma_zm": overlap, "dominant_eigenvalue_epoch_0": [dominant.real,
                                                                     dominant.imag],
        "stage1_end": s1, "stage2_end": s2, "merge_epochs": merges,
        "test_loss_initial": float(test[0]), "test_loss_final": float(test[-1])}
    bounded = s1 is not None and s2 is not None and s1 < s2
    drops = (math.nan, math.nan, math.nan)
    if s1 is not None and s2 is not None and s1 <= s2:
        # read also where stage 1 ends at stabilisation: each part fails on its own
        drops = (_ratio(test[0], test[s1]), _ratio(test[s1], test[s2]),
                 _ratio(test[s2], test[-1]))
        measured.update(test_loss_stage1_end=float(test[s1]),
                        test_loss_stage2_end=float(test[s2]), stage1_drop=drops[0],
                        stage2_drop=drops[1], stage3_drop=drops[2])
    if real_start:
        stage1 = {"the real pair merges into a complex pair by the end of stage 1":
                  bool(merges and s1 is not None and merges[0] <= s1),
                  "stage 1 ends before stabilisation": bounded,
                  f"stage 1 drops the loss >= {STAGE1_DROP:g}x": bool(drops[0] >= STAGE1_DROP)}
    else:
        stage1 = {"the dominant pair is complex from epoch 0": dominant.imag != 0,
                  "stage 1 ends before stabilisation": bounded}
    checks = {
        **stage1,
        f"stage 2 is a plateau (< {PLATEAU:g}x)": bool(drops[1] < PLATEAU),
        f"stage 3 drops the loss >= {STAGE3_DROP:g}x": bool(drops[2] >= STAGE3_DROP),
    }
    return Claim(
        "C2",
        "Three stages are visible in the spectrum of the low-rank network: a complex pair "
        "appears, a plateau follows, and stabilisation is followed by a drop of orders of "
        "magnitude.",
        "judged by the seed's case: with a positive initial sigma_zm the pair of eig(P) starts "
        "real, and stage 1 must merge it into a complex pair by its end (read from the "
        f"spectrum) while the test loss falls >= {STAGE1_DROP:g}x; with sigma_zm <= 0 the "
        "network starts where stage 1 ends (science 4: complex pair from the start, stage 1 "
        "perhaps only a few epochs long, no fast fall to make), so the dominant pair of eig(P) "
        "must be complex at epoch 0 and no stage-1 drop is required. In both, stage 1 ends "
        f"before stabilisation, the test loss falls < {PLATEAU:g}x in stage 2 (the plateau) "
        f"and >= {STAGE3_DROP:g}x from stabilisation to the end.",
        measured, checks,
        {"initial sigma_zm": overlap, "stage 1 end": s1, "stabilisation epoch": s2,
         "stage-1 drop": drops[0], "stage-3 drop": drops[2]},
        REAL_PAIR_CASE if real_start else COMPLEX_PAIR_CASE)


def stage1_curves() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stage-1 loss against sigma_zm that C3 compares: (sigma_zm, simulated, formula).

    sigma_zm runs over [-0.2, 0.2] in steps of 0.001 (exact decimals, so that +0.05 lies in
    the compared regime |sigma_zm| >= 0.05 as -0.05 does); simulated is
    :func:`~closedloop.analysis.theory.position_feedback_loss`, formula is
    :func:`~closedloop.analysis.theory.stage1_loss`.

    Example
    -------
    >>> grid, simulated, formula = stage1_curves()
    >>> grid.shape, float(formula[200])
    ((401,), 50.5)
    """
    from closedloop.analysis.theory import position_feedback_loss, stage1_loss

    grid = np.arange(-200, 201) / 1000
    return grid, position_feedback_loss(grid), stage1_loss(grid)


def judge_c3(overlap_runs: Mapping[float, Run],
             histories: Mapping[float, dict[str, np.ndarray]] | None = None,
             curves: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Claim:
    """Claim C3 for the runs of one seed started from prescribed sigma_zm (``start -> run``);
    ``histories`` are their :func:`~closedloop.analysis.summary.order_parameter_history`
    and ``curves`` the :func:`stage1_curves`, when already computed.

    The theory part (the stage-1 formula against simulated position feedback) does not
    depend on the seed; the descent part reads each run before stage 3 begins: at its
    stabilisation epoch if it stabilises within its epochs (stage 3's refinement moves
    sigma_zm again), else at its last epoch.
    """
    from closedloop.analysis.summary import order_parameter_history

    grid, simulated, formula = stage1_curves() if curves is None else curves
    regime = np.abs(grid) >= 0.05
    gap = float(np.max(np.abs(np.log10(simulated[regime]) - np.log10(formula[regime]))))
    settled, judged_at, finals = [], [], []
    for start, run in overlap_runs.items():
        history = order_parameter_history(run) if histories is None else histories[start]
        epoch = run.last_epoch if run.stabilization_epoch is None else run.stabilization_epoch
        settled.append(float(history["s_zm"][np.flatnonzero(history["epoch"] == epoch)[0]]))
        judged_at.append(epoch)
        finals.append(float(history["s_zm"][-1]))
    low, high = FINAL_OVERLAP
    checks = {"the theory matches simulation": gap <= THEORY_DECADES,
              "every start ends stage 1 at a small negative sigma_zm":
              bool(settled) and all(low <= s < high for s in settled)}
    return Claim(
        "C3",
        "The stage-1 theory L(sigma_zm) matches simulated rollouts, and gradient descent "
        "drives sigma_zm to small negative values from every start in [-0.2, 0.2].",
        f"|log10 L_simulated - log10 L_theory| <= {THEORY_DECADES} where |sigma_zm| >= 0.05 "
        "(the formula keeps the dominant mode's rate and drops its prefactor, while L spans "
        f"~30 decades), and every run from a prescribed sigma_zm has sigma_zm in [{low}, "
        f"{high}) before stage 3 (at its stabilisation epoch if it stabilises within its "
        "epochs, else at its last epoch).",
        {"initial_sigma_zm": [float(v) for v in overlap_runs], "max_log10_gap": gap,
         "sigma_zm_before_stage3": settled, "judged_at_epoch": judged_at,
         "final_sigma_zm": finals},
        checks,
        {"lowest sigma_zm before stage 3": min(settled, default=None),
         "highest sigma_zm before stage 3": max(settled, default=None)})


# -- C4: stage 2's trade-off ----------------------------------------------------------------


def pair_imaginary_part(run: Run, epoch: int, tolerance: float = 1e-9) -> float | None:
    """|Im| of the dominant complex pair of eig(P) at ``epoch``: the complex eigenvalue of
    largest modulus (None if every eigenvalue is real). Where the real eigenvalue lambda_3
    is the last to cross into the unit circle, the pair is not the dominant eigenvalue, and
    science 4 reads the pair."""
    values = run.coupled_eigenvalues[epoch]
    values = values[np.isfinite(values) & (np.abs(values.imag) > tolerance)]
    if not values.size:
        return None
    return float(abs(values[np.argmax(np.abs(values))].imag))


def surrogate_paths(run: Run) -> list[Any]:
    """Descents on L_eff(alpha) from the overlaps of epoch :data:`START_EPOCH` of ``run``.

    Science 4's ~200 steps reach the unit circle from a pair just outside it; from further out
    more are needed, so each descent runs until its pair crosses, collides on the real axis,
    or :data:`DESCENT_STEPS` pass: the crossing, not the number of steps, is what C4 reads.
    """
    from closedloop.analysis.theory import crossing_window

    return crossing_window(order_parameters(run.parameters(START_EPOCH)),
                           steps=DESCENT_STEPS)


def judge_c4(run: Run, retrained: Mapping[int, Run], paths: Sequence[Any] | None = None
             ) -> Claim:
    """Claim C4 for a low-rank run and its retraining from epoch 10 (``T -> run``).

    ``paths`` are :func:`surrogate_paths` of ``run`` when already computed.
    """
    paths = surrogate_paths(run) if paths is None else paths
    crossing = sorted(((p.alpha, p.crossing_point) for p in paths
                       if p.crossing_step is not None), key=lambda pair: pair[0])
    alpha_imag = [float(abs(value.imag)) for _, value in crossing]
    lengths = sorted(retrained)
    stable = [retrained[t].stabilization_epoch for t in lengths]
    t_imag = [None if epoch is None else pair_imaginary_part(retrained[t], epoch)
              for t, epoch in zip(lengths, stable, strict=True)]
    # the order in T is read over the lengths that stabilise with a pair (at least two): a
    # length that does not fails "every T stabilises" only, not the order as well
    read = [v for v in t_imag if v is not None]
    checks = {
        f"at least {MIN_CROSSINGS} alphas cross": len(crossing) >= MIN_CROSSINGS,
        "crossing Im lambda decreases with alpha": bool(
            len(crossing) >= 2 and np.all(np.diff(alpha_imag) < 0)),
        "every T stabilises (with a complex pair)": bool(t_imag) and len(read) == len(t_imag),
        "Im lambda at stabilisation decreases with T": bool(
            len(read) >= 2 and np.all(np.diff(read) < 0)),
    }
    return Claim(
        "C4",
        "The crossing eigenvalue moves monotonically with the trade-off weight alpha (theory) "
        "and with the episode length T (experiment): the more weight on long-term stability, "
        "the smaller its imaginary part when it crosses the unit circle.",
        f"gradient descent on L_eff(alpha) from the epoch-{START_EPOCH} overlaps crosses the "
        f"unit circle for at least {MIN_CROSSINGS} alphas on a 0.01 grid, with the crossing "
        "eigenvalue's imaginary part (where the path meets the circle, between the last step "
        "outside and the first inside) strictly decreasing in alpha; and retraining from epoch "
        f"{START_EPOCH} with T = {', '.join(map(str, lengths))} stabilises every run, with the "
        "imaginary part of the dominant complex pair of eig(P) at the stabilisation epoch "
        "strictly decreasing in T.",
        {"crossing_alphas": [a for a, _ in crossing], "crossing_imag_by_alpha": alpha_imag,
         "lengths": lengths, "imag_at_stabilization_by_T": t_imag,
         "stabilization_epoch_by_T": stable},
        checks,
        {"crossing alphas": len(crossing),
         "lowest crossing alpha": crossing[0][0] if crossing else None,
         "highest crossing alpha": crossing[-1][0] if crossing else None})


# -- C5: stage 3 and the reduced model ------------------------------------------------------


def judge_c5(pairs: Mapping[float, tuple[Run, Run]]) -> Claim:
    """Claim C5 for the full and reduced models of one seed (``beta -> (full, reduced)``)."""
    betas = list(pairs)
    ratios, gaps = [], []
    for full, reduced in pairs.values():
        ratios.append(_ratio(reduced.metrics["test_loss"][-1], full.metrics["test_loss"][-1]))
        with np.errstate(invalid="ignore", divide="ignore"):
            gaps.append(float(np.max(np.abs(np.log10(reduced.metrics["train_loss"][1:])
                                            - np.log10(full.metrics["train_loss"][1:])))))
    checks = {"final test losses agree": bool(ratios) and all(
                  1 / FINAL_RATIO <= r <= FINAL_RATIO for r in ratios),
              "training-loss curves agree": bool(gaps) and all(g <= CURVE_DECADES
                                                               for g in gaps)}
    worst = max((abs(math.log(r)) for r in ratios if r > 0), default=math.nan)
    return Claim(
        "C5",
        "Trained directly on its four overlaps from the stabilisation epoch, the reduced model "
        "reproduces the full model's loss curve and final eigenvalues, for every control cost "
        "beta.",
        f"for every beta in {betas}: reduced/full final test loss within "
        f"[{1 / FINAL_RATIO:.2f}, {FINAL_RATIO}] and the training losses (same batches) within "
        f"{CURVE_DECADES} decades at every epoch.",
        {"betas": betas, "final_test_loss_ratio": ratios, "max_log10_training_loss_gap": gaps},
        checks,
        {"worst final-loss ratio": math.exp(worst) if np.isfinite(worst) else None,
         "worst curve gap (decades)": max(gaps, default=None)})


# -- C6: tracking ---------------------------------------------------------------------------


def one_at_a_time(found: Sequence[Any]) -> bool:
    """Whether acquisitions come one at a time (a staircase): every frequency is acquired and
    settles, and, in the order of their crossings, each acquisition's drop has ended before the
    next frequency's error crosses.

    Example
    -------
    >>> from closedloop.analysis.tracking import Acquisition
    >>> steps = [Acquisition(0.1, 0, 10, 20), Acquisition(0.2, 15, 30, 40)]
    >>> one_at_a_time(steps), one_at_a_time([steps[0], Acquisition(0.2, 5, 18, 40)])
    (True, False)
    """
    if not found or any(a.crossing is None or a.end is None for a in found):
        return False
    ordered = sorted(found, key=lambda a: a.crossing)
    return all(before.end < after.crossing for before, after in itertools.pairwise(ordered))


def low_to_high(found: Sequence[Any]) -> bool:
    """Whether every frequency is acquired, in increasing order of frequency (of crossings).

    Example
    -------
    >>> from closedloop.analysis.tracking import Acquisition
    >>> low_to_high([Acquisition(0.1, 0, 10, 20), Acquisition(0.2, 0, 5, 20)])
    False
    """
    crossings = [a.crossing for a in sorted(found, key=lambda a: a.frequency)]
    return bool(found) and None not in crossings and all(
        a < b for a, b in itertools.pairwise(crossings))


def judge_c6(closed: Run, opened: Run, probes: Any = None, open_probes: Any = None) -> Claim:
    """Claim C6 for a closed-loop tracking run and its open-loop twin (science 6, 7.6).

    ``probes`` and ``open_probes`` are their :func:`closedloop.analysis.tracking.probe_errors`
    when already computed. The acquisitions, their outliers and the degradations are read by
    :mod:`closedloop.analysis.tracking`; :func:`judge_acquisitions` turns them into the claim.
    """
    from closedloop.analysis.tracking import (
        acquisitions,
        degradations,
        find_acquisitions,
        probe_errors,
    )

    probes = probe_errors(closed) if probes is None else probes
    open_probes = probe_errors(opened) if open_probes is None else open_probes
    found = acquisitions(probes, closed)
    return judge_acquisitions(found, degradations(probes, found),
                              find_acquisitions(open_probes), closed.last_epoch)


def judge_acquisitions(found: Sequence[Any], degraded: Sequence[Mapping[str, Any]],
                       open_found: Sequence[Any], total: int) -> Claim:
    """Claim C6 from what was read off the runs: the closed loop's acquisitions (with their
    outliers), its degradations (:func:`closedloop.analysis.tracking.degradations`) and the
    open-loop student's acquisitions, for a run of ``total`` epochs.

    Example
    -------
    >>> from closedloop.analysis.tracking import Acquisition
    >>> found = [Acquisition(0.1, 10, 20, 30, outlier=-0.4 + 0.62j),
    ...          Acquisition(0.2, 40, 50, 60, outlier=-0.3 + 1.25j)]
    >>> degraded = [{"frequency": 0.1, "during": 0.2, "rise": 1.5, "recovery": 0.5}]
    >>> claim = judge_acquisitions(found, degraded, [], 100)
    >>> claim.supported, claim.failed
    (True, [])
    """
    every = bool(found) and all(a.crossing is not None and a.end is not None for a in found)
    crossings = [a.crossing for a in found]
    ordered = every and low_to_high(found)
    errors = np.array([a.relative_error for a in found])
    transient = [d for d in degraded
                 if d["rise"] >= 1 + DEGRADATION and d["recovery"] <= 1 / (1 + DEGRADATION)]
    open_staircase = one_at_a_time(open_found) and low_to_high(open_found)
    checks = {
        "every frequency acquired": every,
        "one at a time (each drop ends before the next frequency crosses)":
            one_at_a_time(found),
        "acquired from low to high": ordered,
        **{f"an outlier at 2 pi f at the end of the {a.frequency:g} Hz acquisition":
           bool(abs(error) <= FREQUENCY_TOLERANCE) for a, error in zip(found, errors,
                                                                         strict=True)},
        "a new frequency transiently degrades an earlier one": bool(transient),
        "no open-loop staircase": not open_staircase,
    }
    ends = [a.end for a in found]
    normalized = [None if e is None else e / total for e in ends]
    numbers: dict[str, float | int | None] = {
        f"acquisition at {a.frequency:g} Hz (fraction of training)": n
        for a, n in zip(found, normalized, strict=True)}
    numbers["worst outlier frequency error"] = (float(np.nanmax(np.abs(errors)))
                                                if np.isfinite(errors).any() else None)
    worst = max(degraded, key=lambda d: d["rise"], default=None)
    return Claim(
        "C6",
        "In closed loop the tracking loss falls as a staircase: frequencies are acquired one "
        "at a time from low to high, each adding an outlier eigenvalue pair of the RNN's "
        "continuous-time Jacobian at 2 pi f, and learning a new frequency transiently degrades "
        "an earlier one; the open-loop student shows no staircase.",
        "every probe frequency is acquired (its phase-averaged probe error falls below "
        "0.5 x a^2/2 and settles); the drops come one at a time (each ends, i.e. falls by less "
        "than 10 % over the next 1 % of training, before the next frequency's error crosses) "
        "and in increasing order of frequency; at the end of each acquisition the outermost "
        "outlier of (-I + W)/tau (outside 1.5 x the epoch-0 bulk radius) has "
        f"|Im - 2 pi f| <= {FREQUENCY_TOLERANCE:.0%} of 2 pi f; during some acquisition an "
        f"earlier frequency's error rises >= {DEGRADATION:.0%} above its value at that "
        "acquisition's onset and ends the run below that peak by the same factor; and the "
        "open-loop student's acquisitions are not such a staircase (one at a time, from low to "
        "high).",
        {"frequencies_hz": [a.frequency for a in found],
         "acquisitions_closed": [a.to_json() for a in found],
         "acquisitions_open": [a.to_json() for a in open_found],
         "acquisition_onsets_closed": [a.onset for a in found],
         "acquisition_crossings_closed": crossings,
         "acquisition_ends_closed": ends,
         "acquisition_ends_open": [a.end for a in open_found],
         "total_epochs": total, "normalized_acquisition_closed": normalized,
         "outlier_imag_at_end_rad_per_s": [None if a.outlier is None else abs(a.outlier.imag)
                                           for a in found],
         "targets_rad_per_s": [a.target for a in found],
         "outlier_relative_error": errors.tolist(),
         "degradations": [dict(d) for d in degraded],
         "ordered_low_to_high": ordered, "staircase_open": open_staircase},
        checks, {**numbers, "largest degradation": None if worst is None else worst["rise"]})


def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN/inf become None, NumPy scalars become Python ones.

    Example
    -------
    >>> finite({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)]})
    {'a': None, 'b': [1.5, 2]}
    """
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
