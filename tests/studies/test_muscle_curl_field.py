"""``closedloop study muscle-curl-field`` end to end on a small network (its preset with a
few units, a short batch and episode): the run files, the figure, the summary's numbers per
seed, the hand paths to every test direction (the go cue given), and the curl field's push
on the hand, against the field's definition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from closedloop.config import load_preset
from closedloop.studies import loops
from tests.test_cli import run_cli

SMALL = ["agent.size=6", "task.batch_size=4", "task.steps=30", "evaluation.test_size=4",
         "evaluation.test_targets=4"]


def curl_of_the_preset() -> float:
    config = load_preset("reach-muscle-arm-curl")
    return config.plant_at(config.perturbation.epoch).params["curl"]


@pytest.fixture()
def small_presets(monkeypatch):
    def small(name, overrides=None, seed=None, epochs=None):
        return load_preset(name, [*SMALL, *(overrides or [])], seed=seed, epochs=epochs)

    monkeypatch.setattr(loops, "load_preset", small)


def test_the_muscle_study_runs_end_to_end(small_presets, tmp_path, capsys):
    out = tmp_path / "muscle"
    code, text, _ = run_cli(capsys, "study", "muscle-curl-field", "--seeds", "0,1",
                            "--epochs", "2", "--out", out, "--quiet")
    assert code == 0, text
    assert "a stable fixed point holding still:" in text
    summary = json.loads((out / "muscle-curl-field.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["switch_epoch"] == 3
    assert summary["curl"] == curl_of_the_preset()
    for row in summary["per_seed"]:
        for name in ("null field, trained", "field on, re-learned"):
            assert 0 <= row[f"final hand error (mm): {name}"] \
                <= row[f"largest final hand error (mm): {name}"]
        assert row["spectral_radius_at_start"] > 0
        assert 0 <= row["stable_fixed_points"] <= row["fixed_points"]
    assert all(0 <= count <= 2 for count in summary["support"].values())
    assert (out / "muscle-curl-field.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "runs").glob("*.h5")) == [
        "reach-muscle-arm-curl-seed0.h5", "reach-muscle-arm-curl-seed1.h5"]

    # the paths go to each test direction in turn, 90 degrees apart at 10 cm, the cue given
    from closedloop.runs.store import load_run

    run = load_run(out / "runs" / "reach-muscle-arm-curl-seed0.h5")
    hand, targets = loops._hand_paths(run, "last", run.config.plant)
    angles = 2 * math.pi * np.arange(4) / 4
    np.testing.assert_allclose(targets, 0.1 * np.stack([np.cos(angles), np.sin(angles)], -1),
                               atol=1e-15)
    assert hand.shape == (4, 31, 2) and np.isfinite(hand).all()


def test_the_curl_field_pushes_the_hand_across_its_velocity():
    """F = k R v with R = [[0, -1], [1, 0]]: at rest in the start posture, joint velocities
    q' give the hand velocity v = J q', and the field's joint torques are J^T F; with zero
    muscle force the skeleton's acceleration is M^-1 (J^T F - c)."""
    import jax.numpy as jnp

    from closedloop.core.muscle_arm import MuscleArm

    k = curl_of_the_preset()
    arm, plain = MuscleArm(curl=k), MuscleArm()
    q, qdot = np.array([arm.start_shoulder, arm.start_elbow]), np.array([0.4, -0.7])
    eps = 1e-6
    jacobian = np.stack([(np.asarray(arm.hand(jnp.asarray(q + eps * e)))
                          - np.asarray(arm.hand(jnp.asarray(q - eps * e)))) / (2 * eps)
                         for e in np.eye(2)], axis=1)
    force = k * np.array([[0.0, -1.0], [1.0, 0.0]]) @ (jacobian @ qdot)
    state = jnp.concatenate([jnp.asarray(q), jnp.asarray(qdot), jnp.zeros(12)])
    pushed = np.asarray(arm.acceleration(state[:4], jnp.zeros(2)))
    free = np.asarray(plain.acceleration(state[:4], jnp.zeros(2)))
    mass = np.asarray(arm.mass_matrix(jnp.asarray(q)))
    np.testing.assert_allclose(mass @ (pushed - free), jacobian.T @ force, rtol=1e-6)
