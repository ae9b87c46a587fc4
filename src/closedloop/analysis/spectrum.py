"""Reading learning from the coupled spectrum across epochs (science 3, 4).

Example
-------
>>> import numpy as np
>>> stabilization_epoch(np.array([1.2, 0.9, 1.01, 0.99, 0.5]))
3
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from closedloop.runs.store import stabilization_epoch

__all__ = ["SpectralEvent", "Stages", "crossings", "detect_stages", "spectral_events",
           "stabilization_epoch", "track_eigenvalues"]

# --------------------------------------------------------------------------------------------
# eigenvalue trajectories


def track_eigenvalues(eigenvalues: np.ndarray) -> np.ndarray:
    """Reorder each epoch's eigenvalues so that column j follows one eigenvalue across epochs.

    Consecutive epochs are matched by solving an assignment problem (SciPy's
    ``linear_sum_assignment``) on the distances between this epoch's eigenvalues and the
    previous positions extrapolated linearly, not by sorting: identities survive when two
    moduli cross. Rows with non-finite values (a diverged epoch) end the tracking; they and
    everything after them stay NaN.

    Parameters
    ----------
    eigenvalues
        (E, n) complex, any order within a row.

    Returns
    -------
    numpy.ndarray
        (E, n) complex, column j = trajectory j (ordered as epoch 0's row).

    Example
    -------
    >>> a, b = [0.9, 0.8, 0.7, 0.6], [0.55, 0.65, 0.75, 0.85]   # the moduli cross
    >>> by_modulus = np.sort(np.array([a, b], dtype=complex).T, axis=1)[:, ::-1]
    >>> track_eigenvalues(by_modulus).real.T.round(2).tolist()
    [[0.9, 0.8, 0.7, 0.6], [0.55, 0.65, 0.75, 0.85]]
    """
    from scipy.optimize import linear_sum_assignment

    values = np.asarray(eigenvalues, dtype=np.complex128)
    tracked = np.full_like(values, np.nan + 0j)
    if values.shape[0] == 0:
        return tracked
    if not np.all(np.isfinite(values[0])):
        return tracked
    tracked[0] = values[0]
    for e in range(1, values.shape[0]):
        current = values[e]
        if not np.all(np.isfinite(current)):
            break
        previous = tracked[e - 1]
        predicted = previous if e < 2 else 2 * previous - tracked[e - 2]
        cost = np.abs(predicted[:, None] - current[None, :])
        cost += 1e-3 * np.abs(previous[:, None] - current[None, :])
        rows, cols = linear_sum_assignment(cost)
        tracked[e, rows] = current[cols]
    return tracked


@dataclass
class SpectralEvent:
    """An event of a tracked eigenvalue at ``epoch``.

    ``kind`` is ``"crossing"`` (``direction`` ``"in"``: into the unit disc; ``"out"``), or
    ``"merge"`` (a real pair became a complex pair) / ``"split"`` (the reverse). For a complex
    pair only the member with positive imaginary part is reported. ``previous`` is the
    trajectory's value one epoch before.
    """

    epoch: int
    kind: str
    eigenvalue: complex
    direction: str | None = None
    trajectory: int = -1
    previous: complex | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict: epoch, kind, eigenvalue [re, im], direction."""
        out: dict[str, object] = {"epoch": self.epoch, "kind": self.kind,
                                  "eigenvalue": [float(self.eigenvalue.real),
                                                 float(self.eigenvalue.imag)]}
        if self.direction is not None:
            out["direction"] = self.direction
        return out


def spectral_events(tracked: np.ndarray, epochs: np.ndarray | None = None, *,
                    imag_tolerance: float = 1e-9) -> list[SpectralEvent]:
    """Unit-circle crossings and real/complex transitions along tracked trajectories.

    Parameters
    ----------
    tracked
        (E, n) from :func:`track_eigenvalues`.
    epochs
        Epoch numbers of the rows (default 0..E-1).
    imag_tolerance
        |Im| at or below this counts as real.
    """
    epochs = np.arange(tracked.shape[0]) if epochs is None else np.asarray(epochs)
    events: list[SpectralEvent] = []
    modulus = np.abs(tracked)
    is_complex = np.abs(tracked.imag) > imag_tolerance
    for e in range(1, tracked.shape[0]):
        if not np.all(np.isfinite(tracked[e])):
            break
        found: list[SpectralEvent] = []
        for j in range(tracked.shape[1]):
            value, previous = complex(tracked[e, j]), complex(tracked[e - 1, j])
            before, after = modulus[e - 1, j] >= 1.0, modulus[e, j] >= 1.0
            if before != after:
                found.append(SpectralEvent(int(epochs[e]), "crossing", value,
                                           "out" if after else "in", j, previous))
            if is_complex[e, j] and not is_complex[e - 1, j]:
                found.append(SpectralEvent(int(epochs[e]), "merge", value, None, j, previous))
            elif is_complex[e - 1, j] and not is_complex[e, j]:
                found.append(SpectralEvent(int(epochs[e]), "split", value, None, j, previous))
        events.extend(_one_per_pair(found, imag_tolerance))
    return events


def _one_per_pair(found: list[SpectralEvent], imag_tolerance: float) -> list[SpectralEvent]:
    """Drop the lower member's event when its conjugate partner has the same event (the upper
    member reports for the pair); a member that crosses alone (e.g. while a real pair merges)
    is kept. For a split, the members were conjugates one epoch before."""

    def conjugates(a: complex | None, b: complex | None) -> bool:
        return a is not None and b is not None and abs(a - b.conjugate()) <= 1e-9 * max(
            1.0, abs(a))

    kept = []
    for event in found:
        lower = (event.previous if event.kind == "split" else event.eigenvalue)
        if lower is not None and lower.imag < -imag_tolerance and any(
                other is not event and other.kind == event.kind
                and other.direction == event.direction
                and (conjugates(other.previous, event.previous) if event.kind == "split"
                     else conjugates(other.eigenvalue, event.eigenvalue))
                for other in found):
            continue
        kept.append(event)
    return kept


def crossings(tracked: np.ndarray, epochs: np.ndarray | None = None) -> list[SpectralEvent]:
    """Only the unit-circle crossings of :func:`spectral_events`."""
    return [e for e in spectral_events(tracked, epochs) if e.kind == "crossing"]


# --------------------------------------------------------------------------------------------
# stages


@dataclass
class Stages:
    """Stage boundaries read from the spectrum (science 4, stage boundaries).

    ``stage1_end``: the epoch from which, until stabilisation, the dominant eigenvalue of P is
    complex and its imaginary part has stopped growing fast; ``stage2_end``: the stabilisation
    epoch. None where a boundary is not reached.
    """

    stage1_end: int | None
    stage2_end: int | None

    def to_json(self) -> dict[str, int | None]:
        """{"stage1_end": ..., "stage2_end": ...}."""
        return {"stage1_end": self.stage1_end, "stage2_end": self.stage2_end}


def detect_stages(eigenvalues: np.ndarray, spectral_radius: np.ndarray | None = None,
                  epochs: np.ndarray | None = None, *, window: int = 5,
                  growth_threshold: float = 0.01, imag_tolerance: float = 1e-6) -> Stages:
    """Stage boundaries from per-epoch eigenvalues of P (rows sorted by descending modulus).

    Stage 2 ends at the stabilisation epoch. Stage 1 ends at the first epoch e such that the
    dominant eigenvalue is complex (|Im| > ``imag_tolerance``) at every epoch from
    e - window up to stabilisation (or the end), and the relative growth of its imaginary
    part per epoch, averaged over the ``window`` steps ending at e (from e - window to e), is
    below ``growth_threshold``.

    Parameters
    ----------
    eigenvalues
        (E, n) complex, each row sorted by descending modulus (as run files store them).
    spectral_radius
        (E,), default |eigenvalues[:, 0]|.
    epochs
        Epoch numbers of the rows (default 0..E-1).
    window, growth_threshold, imag_tolerance
        The detector's parameters (defaults: 5 epochs, 1 % per epoch, 1e-6).

    Example
    -------
    >>> imag = np.r_[np.zeros(5), 0.05 * np.arange(1, 6), np.full(20, 0.25)]
    >>> radius = np.r_[np.full(20, 1.01), np.full(10, 0.9)]
    >>> detect_stages((radius * np.exp(1j * imag))[:, None]).to_json()
    {'stage1_end': 14, 'stage2_end': 20}
    """
    values = np.asarray(eigenvalues, dtype=np.complex128)
    epochs = np.arange(values.shape[0]) if epochs is None else np.asarray(epochs)
    radius = np.abs(values[:, 0]) if spectral_radius is None else np.asarray(spectral_radius)
    stable_from = stabilization_epoch(radius)
    horizon = values.shape[0] - 1 if stable_from is None else stable_from
    imag = np.abs(values[:, 0].imag)
    complex_mask = np.isfinite(imag) & (imag > imag_tolerance)
    stage1 = None
    if horizon > 0 and complex_mask[horizon]:
        real_before = np.flatnonzero(~complex_mask[: horizon + 1])
        first_complex = 0 if real_before.size == 0 else int(real_before[-1]) + 1
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.diff(imag) / imag[:-1]  # growth[k] is from epoch k to k + 1
        for e in range(first_complex + window, horizon + 1):
            if np.mean(growth[e - window:e]) < growth_threshold:
                stage1 = int(epochs[e])
                break
    return Stages(stage1, None if stable_from is None else int(epochs[stable_from]))
