"""Ensembles: each member equals the same run trained alone (up to reduction order), and the
command line trains one run file per seed."""

from __future__ import annotations

import numpy as np
import pytest

from closedloop.cli import main
from closedloop.config import load_preset
from closedloop.errors import ConfigError
from closedloop.runs.store import load_run
from closedloop.training import Trainer, train, train_ensemble

SMALL = ["agent.size=16", "task.batch_size=20", "recording.segment_epochs=25"]
TOLERANCE = 1e-5   # relative, on every epoch's train and test loss (float32 runs)


def _max_relative_difference(a, b) -> float:
    worst = 0.0
    for name in ("train_loss", "test_loss"):
        x, y = a.metrics[name], b.metrics[name]
        finite = np.isfinite(y)
        assert np.array_equal(finite, np.isfinite(x)), name
        worst = max(worst, float(np.max(np.abs(x[finite] - y[finite]) / np.abs(y[finite]))))
    return worst


@pytest.mark.parametrize(("preset", "extra", "epochs"), [
    ("di-tanh-closed", [], 100),
    ("di-lowrank-closed", [], 100),
    ("tracking-closed", ["task.steps=40"], 100),
])
def test_members_equal_single_runs(tmp_path, preset, extra, epochs):
    configs = [load_preset(preset, [*SMALL, *extra], seed=s, epochs=epochs) for s in range(3)]
    configs[1] = load_preset(preset, [*SMALL, *extra, "training.lr=0.002"], seed=1,
                             epochs=epochs)
    train_ensemble(configs, [tmp_path / f"e{s}.h5" for s in range(3)])
    for s, config in enumerate(configs):
        train(config, tmp_path / f"s{s}.h5")
        member, alone = load_run(tmp_path / f"e{s}.h5"), load_run(tmp_path / f"s{s}.h5")
        assert member.config == alone.config
        assert _max_relative_difference(member, alone) < TOLERANCE
        np.testing.assert_allclose(member.parameters("last")["W_out"] if "W_out" in
                                   member.parameters("last") else member.parameters("last")["z"],
                                   alone.parameters("last")["W_out"] if "W_out" in
                                   alone.parameters("last") else alone.parameters("last")["z"],
                                   rtol=1e-4, atol=1e-6)


def test_episode_lengths_are_masked(tmp_path):
    configs = [load_preset("di-tanh-closed", [*SMALL, f"task.steps={steps}"], seed=0,
                           epochs=20) for steps in (20, 35)]
    train_ensemble(configs, [tmp_path / "a.h5", tmp_path / "b.h5"])
    for index, config in enumerate(configs):
        train(config, tmp_path / f"alone{index}.h5")
        member = load_run(tmp_path / ("a.h5", "b.h5")[index])
        assert _max_relative_difference(member, load_run(tmp_path / f"alone{index}.h5")) \
            < TOLERANCE


def test_members_must_share_shapes():
    with pytest.raises(ConfigError, match=r"agent\.size"):
        Trainer([load_preset("di-tanh-closed", ["agent.size=8"]),
                         load_preset("di-tanh-closed", ["agent.size=9"], seed=1)])


def test_cli_seeds_and_open_loop_ensemble(tmp_path, capsys):
    folder = tmp_path / "runs"
    args = [f"--set={s}" for s in SMALL]
    assert main(["train", "di-tanh-closed", "--seeds", "0-2", "--out", str(folder),
                 "--epochs", "5", "--quiet", *args]) == 0
    for seed in range(3):
        assert load_run(folder / f"di-tanh-closed-seed{seed}.h5").config.seed == seed
    assert main(["train", "di-tanh-open", "--seeds", "0,2", "--out", str(folder), "--epochs",
                 "4", "--quiet", "--teacher", str(folder / "di-tanh-closed-seed{seed}.h5"),
                 *args]) == 0
    run = load_run(folder / "di-tanh-open-seed2.h5")
    assert run.teacher.source.endswith("di-tanh-closed-seed2.h5@5")
    teacher_initial = load_run(folder / "di-tanh-closed-seed2.h5").parameters(0)
    np.testing.assert_array_equal(run.parameters(0)["W"], teacher_initial["W"])
    out = capsys.readouterr().out
    assert "2 run(s)" in out


def test_diverging_member_is_recorded_and_others_go_on(tmp_path):
    configs = [load_preset("di-tanh-closed", SMALL, seed=0, epochs=30),
               load_preset("di-tanh-closed", [*SMALL, "training.clip_norm=1e30",
                                              "training.lr=1000"], seed=1, epochs=30)]
    results = train_ensemble(configs, [tmp_path / "ok.h5", tmp_path / "bad.h5"])
    assert results[0].status == "complete" and results[1].status == "diverged"
    assert load_run(tmp_path / "ok.h5").last_epoch == 30
    assert load_run(tmp_path / "bad.h5").diverged_epoch == results[1].diverged_epoch


def test_runner_trains_a_group_as_one_ensemble(tmp_path):
    from closedloop.experiments.runner import execute

    from closedloop.paper.base import Job, JobInputs

    def job(seed):
        config = load_preset("di-tanh-closed", SMALL, seed=seed, epochs=15)
        return Job(f"closed-s{seed}", lambda _runs, c=config: JobInputs(c), group="closed")

    runs, failures = execute([job(0), job(1)], tmp_path / "runs", workers=1, quiet=True)
    assert not failures and set(runs) == {"closed-s0", "closed-s1"}
    for seed in (0, 1):
        alone = tmp_path / f"alone{seed}.h5"
        train(load_preset("di-tanh-closed", SMALL, seed=seed, epochs=15), alone)
        assert _max_relative_difference(runs[f"closed-s{seed}"], load_run(alone)) < TOLERANCE
