"""Ensembles: each member equals the same run trained alone (up to reduction order), and the
command line and the jobs layer train one run file per member."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from closedloop.cli import main
from closedloop.config import RunConfig, load_preset
from closedloop.core.tasks import Batch
from closedloop.errors import ConfigError
from closedloop.runs.store import Run, load_run
from closedloop.scale.jobs import InlineExecutor, Job, JobInputs, execute
from closedloop.training import Trainer, train, train_ensemble
from tests.conftest import SMALL, TOLERANCE, max_relative_difference

TRACKING = ["task.steps=30"]




def _assert_same_parameters(a: Run, b: Run) -> None:
    left, right = a.parameters("last"), b.parameters("last")
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_allclose(left[name], right[name], rtol=1e-4, atol=1e-6, err_msg=name)


def _configs(preset: str, extra: list[str], epochs: int) -> list[RunConfig]:
    """Three members of one shape; member 1 also differs in learning rate and (where the loss
    has one) control cost."""
    configs = [load_preset(preset, [*SMALL, *extra], seed=s, epochs=epochs) for s in range(3)]
    cost = [] if preset.startswith("tracking") else ["loss.control_cost=0.02"]
    configs[1] = load_preset(preset, [*SMALL, *extra, "training.lr=0.002", *cost], seed=1,
                             epochs=epochs)
    return configs


PRESETS = [("di-tanh-closed", []), ("di-lowrank-closed", []), ("tracking-closed", TRACKING)]


@pytest.mark.parametrize(("preset", "extra"), PRESETS, ids=[p for p, _ in PRESETS])
def test_members_equal_single_runs(tmp_path: Path, preset: str, extra: list[str]) -> None:
    configs = _configs(preset, extra, epochs=100)
    train_ensemble(configs, [tmp_path / f"e{s}.h5" for s in range(3)])
    for s, config in enumerate(configs):
        train(config, tmp_path / f"s{s}.h5")
        member, alone = load_run(tmp_path / f"e{s}.h5"), load_run(tmp_path / f"s{s}.h5")
        assert member.config == alone.config
        assert max_relative_difference(member, alone) < TOLERANCE
        _assert_same_parameters(member, alone)


@pytest.mark.parametrize(("preset", "extra"), PRESETS, ids=[p for p, _ in PRESETS])
def test_member_gradients_equal_single_gradients(preset: str, extra: list[str]) -> None:
    """The gradients of a 3-member trainer on its stacked batch equal, member by member, the
    gradients of that member's single trainer on the same batch."""
    configs = _configs(preset, extra, epochs=5)
    ensemble = Trainer(configs)
    batch = ensemble.draw_batch(epoch=3)
    gradients = ensemble.gradients(batch)
    assert all(g.shape[0] == 3 for g in gradients.values())
    for index, config in enumerate(configs):
        member_batch = Batch.stack([jax.tree.map(lambda part, i=index: part[i], batch)])
        single = Trainer(config)
        for ours, theirs in zip(jax.tree.leaves(single.draw_batch(epoch=3)),
                                jax.tree.leaves(member_batch), strict=True):
            np.testing.assert_array_equal(ours, theirs)     # batches: (seed, epoch) only
        alone = single.gradients(member_batch)
        assert alone.keys() == gradients.keys()
        for name, value in alone.items():
            assert np.all(np.isfinite(value)) and np.any(value != 0), name
            np.testing.assert_allclose(gradients[name][index], value[0], rtol=1e-5,
                                       atol=1e-7 * np.abs(value).max(), err_msg=name)
    # the members see different batches and hyperparameters: their gradients differ
    assert not np.allclose(gradients["W_out" if "W_out" in gradients else "z"][0],
                           gradients["W_out" if "W_out" in gradients else "z"][1])


def test_runs_of_different_episode_lengths_are_refused(tmp_path: Path) -> None:
    """One compiled program has one episode length: runs with different ``task.steps`` are
    not trained together (the jobs layer groups them by shape instead)."""
    configs = [load_preset("di-tanh-closed", [*SMALL, f"task.steps={steps}"], seed=0,
                           epochs=20) for steps in (20, 35)]
    with pytest.raises(ConfigError, match=r"must share shapes; they differ in task\.steps$"):
        Trainer(configs)
    with pytest.raises(ConfigError, match=r"task\.steps"):
        train_ensemble(configs, [tmp_path / "a.h5", tmp_path / "b.h5"])
    assert not list(tmp_path.iterdir())


def test_members_must_share_shapes() -> None:
    with pytest.raises(ConfigError, match=r"agent\.size"):
        Trainer([load_preset("di-tanh-closed", ["agent.size=8"]),
                 load_preset("di-tanh-closed", ["agent.size=9"], seed=1)])


def test_cli_seeds_and_open_loop_ensemble(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
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


def test_diverging_member_is_recorded_and_others_go_on(tmp_path: Path) -> None:
    configs = [load_preset("di-tanh-closed", SMALL, seed=0, epochs=30),
               load_preset("di-tanh-closed", [*SMALL, "training.clip_norm=1e30",
                                              "training.lr=1000"], seed=1, epochs=30)]
    results = train_ensemble(configs, [tmp_path / "ok.h5", tmp_path / "bad.h5"])
    assert results[0].status == "complete" and results[1].status == "diverged"
    assert load_run(tmp_path / "ok.h5").last_epoch == 30
    assert load_run(tmp_path / "bad.h5").diverged_epoch == results[1].diverged_epoch


class _RecordingExecutor(InlineExecutor):
    """The inline executor, remembering the run files of every task it was given."""

    def __init__(self) -> None:
        self.tasks: list[list[str]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.tasks.append([Path(p).name for p in args[1]])
        return super().submit(fn, *args, **kwargs)


def test_jobs_of_one_shape_are_trained_together(tmp_path: Path) -> None:
    def job(seed: int) -> Job:
        config = load_preset("di-tanh-closed", SMALL, seed=seed, epochs=15)
        return Job(f"closed-s{seed}", lambda _runs, c=config: JobInputs(c))

    executor = _RecordingExecutor()
    result = execute([job(0), job(1)], tmp_path / "runs", executor)
    assert not result.failed and set(result.runs) == {"closed-s0", "closed-s1"}
    assert executor.tasks == [["closed-s0.h5", "closed-s1.h5"]]     # one task, one trainer
    for seed in (0, 1):
        alone = tmp_path / f"alone{seed}.h5"
        train(load_preset("di-tanh-closed", SMALL, seed=seed, epochs=15), alone)
        assert max_relative_difference(result.runs[f"closed-s{seed}"], load_run(alone)) \
            < TOLERANCE
        _assert_same_parameters(result.runs[f"closed-s{seed}"], load_run(alone))
