"""Claim C6: tracking, a staircase of frequencies acquired from low to high in closed loop and
none in open loop (science 6, 7.6).

Example
-------
>>> TrackingStaircase().figure, sorted(TrackingStaircase().roles)
('fig6', ['closed', 'opened'])
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from closedloop.analysis.claims.base import CLOSED, OPENED, Claim, Judgement
from closedloop.analysis.tracking import MATCH
from closedloop.runs.store import Run

FREQUENCY_TOLERANCE = MATCH  # |Im lambda - 2 pi f| <= 15 % of 2 pi f
DEGRADATION = 0.1           # an earlier frequency's error rises >= 10 % (and recovers)


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


class TrackingStaircase(Claim):
    """C6: in closed loop the tracking loss falls as a staircase, in open loop it does not.

    The acquisitions, their outliers and the degradations are read by
    :mod:`closedloop.analysis.tracking`; :meth:`judge_acquisitions` turns them into the
    judgement.
    """

    id = "C6"
    statement = ("In closed loop the tracking loss falls as a staircase: frequencies are "
                 "acquired one at a time from low to high, each adding an outlier eigenvalue "
                 "pair of the RNN's continuous-time Jacobian at 2 pi f, and learning a new "
                 "frequency transiently degrades an earlier one; the open-loop student shows "
                 "no staircase.")
    roles: ClassVar = {CLOSED: "a closed-loop tracking run",
                       OPENED: "its open-loop twin (the student imitating it)"}
    figure = "fig6"

    def applies(self, closed: Run, opened: Run) -> bool:
        """A tracking pair: both runs record their probe errors."""
        return "probe_errors" in closed.metrics and "probe_errors" in opened.metrics

    def judge(self, closed: Run, opened: Run, probes: Any = None,
              open_probes: Any = None) -> Judgement:
        """C6 for a closed-loop tracking run and its open-loop twin; ``probes`` and
        ``open_probes`` are their :func:`closedloop.analysis.tracking.probe_errors` when
        already computed."""
        from closedloop.analysis.tracking import (
            acquisitions,
            degradations,
            find_acquisitions,
            probe_errors,
        )

        probes = probe_errors(closed) if probes is None else probes
        open_probes = probe_errors(opened) if open_probes is None else open_probes
        found = acquisitions(probes, closed)
        return self.judge_acquisitions(found, degradations(probes, found),
                                       find_acquisitions(open_probes), closed.last_epoch)

    def judge_acquisitions(self, found: Sequence[Any], degraded: Sequence[Mapping[str, Any]],
                           open_found: Sequence[Any], total: int) -> Judgement:
        """C6 from what was read off the runs: the closed loop's acquisitions (with their
        outliers), its degradations (:func:`closedloop.analysis.tracking.degradations`) and
        the open-loop student's acquisitions, for a run of ``total`` epochs.

        Example
        -------
        >>> from closedloop.analysis.tracking import Acquisition
        >>> found = [Acquisition(0.1, 10, 20, 30, outlier=-0.4 + 0.62j),
        ...          Acquisition(0.2, 40, 50, 60, outlier=-0.3 + 1.25j)]
        >>> degraded = [{"frequency": 0.1, "during": 0.2, "rise": 1.5, "recovery": 0.5}]
        >>> judgement = TrackingStaircase().judge_acquisitions(found, degraded, [], 100)
        >>> judgement.supported, judgement.failed
        (True, [])
        """
        every = bool(found) and all(a.crossing is not None and a.end is not None
                                    for a in found)
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
               bool(abs(error) <= FREQUENCY_TOLERANCE)
               for a, error in zip(found, errors, strict=True)},
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
        return self.judgement(
            "every probe frequency is acquired (its phase-averaged probe error falls below "
            "0.5 x a^2/2 and settles); the drops come one at a time (each ends, i.e. falls by "
            "less than 10 % over the next 1 % of training, before the next frequency's error "
            "crosses) and in increasing order of frequency; at the end of each acquisition "
            "the outermost outlier of (-I + W)/tau (outside 1.5 x the epoch-0 bulk radius) has "
            f"|Im - 2 pi f| <= {FREQUENCY_TOLERANCE:.0%} of 2 pi f; during some acquisition "
            f"an earlier frequency's error rises >= {DEGRADATION:.0%} above its value at that "
            "acquisition's onset and ends the run below that peak by the same factor; and the "
            "open-loop student's acquisitions are not such a staircase (one at a time, from "
            "low to high).",
            {"frequencies_hz": [a.frequency for a in found],
             "acquisitions_closed": [a.to_json() for a in found],
             "acquisitions_open": [a.to_json() for a in open_found],
             "acquisition_onsets_closed": [a.onset for a in found],
             "acquisition_crossings_closed": crossings,
             "acquisition_ends_closed": ends,
             "acquisition_ends_open": [a.end for a in open_found],
             "total_epochs": total, "normalized_acquisition_closed": normalized,
             "outlier_imag_at_end_rad_per_s": [None if a.outlier is None
                                               else abs(a.outlier.imag) for a in found],
             "targets_rad_per_s": [a.target for a in found],
             "outlier_relative_error": errors.tolist(),
             "degradations": [dict(d) for d in degraded],
             "ordered_low_to_high": ordered, "staircase_open": open_staircase},
            checks, {**numbers, "largest degradation": None if worst is None else worst["rise"]})
