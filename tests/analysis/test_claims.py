"""The claim judges: C2's two cases read against the closed-form spectrum of the rank-1 model
(science 3.1), and the named parts of a criterion."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from closedloop.analysis.claims import CLAIMS, Judgement, register_claim, registered_claims
from closedloop.analysis.claims.c2 import COMPLEX_PAIR_CASE, REAL_PAIR_CASE, initial_overlap
from closedloop.analysis.claims.c4 import pair_imaginary_part
from closedloop.core.agents import order_parameters
from closedloop.errors import ConfigError
from closedloop.runs.store import load_run
from closedloop.training import train
from tests.conftest import StudentLearns, small_config


def _cubic_roots(overlaps: dict[str, float]) -> np.ndarray:
    """Roots of det(l I - P_eff) / l (science 3.1), largest modulus first."""
    zm, zu, vm, vu = (overlaps[k] for k in ("s_zm", "s_zu", "s_vm", "s_vu"))
    roots = np.roots([1.0, -(vu + 2), 2 * vu - zm + 1, vu * zm - vu - vm * zu])
    return roots[np.argsort(-np.abs(roots))]


@pytest.fixture(scope="module")
def prescribed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c2")
    runs = {}
    for value in (0.1, -0.1):
        config = small_config("di-lowrank-closed", epochs=3,
                              extra=(f"agent.prescribed_overlap={value}",))
        train(config, folder / f"{value:+}.h5")
        runs[value] = load_run(folder / f"{value:+}.h5")
    return runs


@pytest.mark.parametrize(("value", "case"), [(0.1, REAL_PAIR_CASE), (-0.1, COMPLEX_PAIR_CASE)])
def test_c2_judges_each_seed_by_its_initial_overlap(prescribed, value, case):
    run = prescribed[value]
    claim = CLAIMS.get("C2").judge(run)
    overlaps = order_parameters(run.parameters(0))
    assert initial_overlap(run) == pytest.approx(value, abs=1e-6)
    assert claim.case == case
    dominant = _cubic_roots(overlaps)[0]
    measured = complex(*claim.measured["dominant_eigenvalue_epoch_0"])
    assert abs(measured - dominant) < 1e-4 * abs(dominant)
    # with sigma_zm > 0 the pair starts real (1 + sqrt(sigma_zm)), with sigma_zm < 0 complex
    assert (abs(dominant.imag) > 1e-3) == (value < 0)
    onset = next(iter(claim.checks))
    assert ("merges" in onset) == (value > 0)
    if value < 0:
        assert claim.checks[onset]          # complex from epoch 0, read from eig(P)
    assert claim.supported == (not claim.failed)


def test_c2_refuses_a_network_it_is_not_about():
    tanh = SimpleNamespace(config=small_config("di-tanh-closed", epochs=1), path=Path("t.h5"))
    with pytest.raises(ConfigError, match="C2 is judged on rank-1 low-rank runs"):
        CLAIMS.get("C2").judge(tanh)


def test_a_claim_is_supported_when_every_part_holds():
    both = Judgement("C0", "s", "c", {}, {"a": True, "b": True})
    one = Judgement("C0", "s", "c", {}, {"a": True, "b": False})
    empty = Judgement("C0", "s", "c", {}, {})
    assert both.supported and not one.supported and not empty.supported
    assert one.failed == ["b"] and both.failed == []


def test_c4_reads_the_complex_pair_even_when_a_real_eigenvalue_dominates():
    """Science 4 reads the pair's imaginary part at stabilisation; a real lambda_3 that
    crosses last (and so dominates there) must not turn it into 0."""
    values = np.array([[0.9959, 0.7464 + 0.612j, 0.7464 - 0.612j, 0.0],
                       [0.9, 0.5, 0.1, 0.0]])
    run = SimpleNamespace(coupled_eigenvalues=values)
    assert pair_imaginary_part(run, 0) == pytest.approx(0.612)
    assert pair_imaginary_part(run, 1) is None



def test_claims_are_registered_by_id_and_a_wrong_one_is_refused(monkeypatch):
    monkeypatch.setattr(CLAIMS, "registered", {})
    with pytest.raises(ConfigError, match="must be an instance of a subclass"):
        register_claim(StudentLearns)                      # the class, not a claim
    with pytest.raises(ConfigError, match="'C1' cannot be registered: it is a built-in"):
        register_claim(type("Again", (StudentLearns,), {"id": "C1"})())
    with pytest.raises(ConfigError, match=r"'C9'.*allowed: C1, C1b"):
        CLAIMS.get("C9")
    register_claim(StudentLearns())
    assert CLAIMS.get("student-learns").statement == StudentLearns.statement
    assert "student-learns" in [claim.id for claim in registered_claims()]
