"""The fixed-point finder against equilibria solved by hand: a pendulum under a static gain
u = k1 q + k2 q' rests where m g l sin q = k1 q (roots found by SciPy), and each one's
stability is that of the hand-linearised step."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from closedloop.analysis.fixed_points import find_fixed_points, visited_starts
from closedloop.core.agents import StaticGain
from closedloop.core.mechanics import Pendulum
from tests.core.test_mechanics import semi_implicit_euler


def test_pendulum_under_a_gain_rests_where_torques_balance():
    plant = Pendulum(mass=1.0, length=1.0, damping=0.3, dt=0.05, max_torque=100.0)
    k1, k2 = 0.5 * 9.81, -0.5
    gain = StaticGain(2, 1)
    params = {"K": jnp.array([[k1, k2]])}
    # rest: -m g l sin q + k1 q = 0 -> q = 0 and sin q = q / 2 (q = +-1.8955)
    root = brentq(lambda q: 9.81 * math.sin(q) - k1 * q, 1.0, 3.0)
    starts = np.stack([np.linspace(-3.0, 3.0, 13), np.full(13, 0.4)], axis=1)
    points = find_fixed_points(plant, gain, params, starts)
    angles = sorted(float(p.state[0]) for p in points)
    assert angles == pytest.approx([-root, 0.0, root], abs=1e-9)
    for point in points:
        q = float(point.state[0])
        assert abs(float(point.state[1])) < 1e-9
        A_c = np.array([[0.0, 1.0], [-9.81 * math.cos(q) + k1, -0.3 + k2]])
        A, _ = semi_implicit_euler(A_c, np.array([[0.0], [1.0]]), 0.05)
        expected = np.abs(np.linalg.eigvals(A)).max()
        assert point.spectral_radius == pytest.approx(expected, rel=1e-9)
        assert point.stable == (expected < 1)
    # at q = 0 gravity (g q) outpulls the gain (g q / 2): it holds; beside it the gain wins
    by_angle = {round(float(p.state[0]), 3): p.stable for p in points}
    assert by_angle[0.0] is True and by_angle[round(root, 3)] is False
    # running the loop instead of minimising finds the attracting one only (the starts
    # between the unstable ones fall to it; those beyond are pushed away and find nothing)
    settled = find_fixed_points(plant, gain, params, starts, iterate=2000)
    assert [float(p.state[0]) for p in settled] == pytest.approx([0.0], abs=1e-12)
    assert settled[0].stable and settled[0].starts >= np.sum(np.abs(starts[:, 0]) < root)


def test_search_starts_are_visited_states():
    plant = Pendulum()
    gain = StaticGain(2, 1)
    starts = visited_starts(plant, gain, {"K": jnp.zeros((1, 2))}, 16, spread=0.5, steps=10)
    assert starts.shape == (16, 2)
    # released within 0.5 rad and 0.5 rad/s of upright, the free pendulum falls no faster
    # than its linearisation q'' = (g/l) q: by t = 0.45 s it is within
    # 0.5 cosh(w t) + (0.5 / w) sinh(w t), w = sqrt(g/l), of upright (+ the starts' 1 % jitter)
    w, t = math.sqrt(9.81), 0.45
    bound = (0.5 * math.cosh(w * t) + 0.5 / w * math.sinh(w * t)) * 1.05 + 0.05
    assert np.all(np.abs(starts[:, 0] - math.pi) < bound)
    assert np.any(np.abs(starts[:, 0] - math.pi) > 0.3)       # and it did fall
