"""Training loop: determinism, resume after interruption and SIGKILL, divergence, recording."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from closedloop.config import RunConfig, load_preset
from closedloop.core.plants import plant_from_config
from closedloop.errors import ConfigError
from closedloop.runs.store import EpochRecord, load_run, partial_dir
from closedloop.training import OutputExistsError, Trainer, train
from closedloop.training.sources import load_initial_parameters, load_teacher
from tests.conftest import SMALL, SMALL_UNSIZED, small_config

# the double integrator of the presets (dt = 1, position observed), written out
A = np.array([[1.0, 1.0], [0.0, 1.0]])
B = np.array([[0.0], [1.0]])
C = np.array([[1.0, 0.0]])


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Every dataset of two run files is bit-identical (NaN where NaN)."""
    left, right = _datasets(a), _datasets(b)
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


def test_same_seed_same_bits(tmp_path: Path, tiny_config: RunConfig) -> None:
    train(tiny_config, tmp_path / "a.h5")
    train(tiny_config, tmp_path / "b.h5")
    assert_same_run(tmp_path / "a.h5", tmp_path / "b.h5")


def test_different_seed_differs(tmp_path: Path) -> None:
    train(small_config(seed=0), tmp_path / "a.h5")
    train(small_config(seed=1), tmp_path / "b.h5")
    a, b = load_run(tmp_path / "a.h5"), load_run(tmp_path / "b.h5")
    assert not np.array_equal(a.parameters(0)["W"], b.parameters(0)["W"])


class _Stop(Exception):
    pass


def _stop_at(epoch: int):
    def stop(record: EpochRecord) -> None:
        if record.epoch == epoch:
            raise _Stop
    return stop


@pytest.mark.parametrize(("preset", "stop"), [
    ("di-tanh-closed", 2),          # inside the first chunk: nothing checkpointed yet
    ("di-tanh-closed", 7),
    ("di-tanh-closed", 11),         # the very last epoch, before its segment is saved
    ("tracking-closed", 7),
])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, preset: str,
                                                       stop: int) -> None:
    """With 4-epoch segments (chunks 0-3, 4-7, 8-11), a run stopped at epoch ``stop`` of 11
    and resumed equals the uninterrupted run bit for bit."""
    extra = ("task.steps=30",) if preset == "tracking-closed" else ()
    config = small_config(preset, epochs=11, extra=extra)
    assert config.recording.segment_epochs == 4
    train(config, tmp_path / "whole.h5")

    with pytest.raises(_Stop):
        train(config, tmp_path / "cut.h5", progress=_stop_at(stop))
    assert not (tmp_path / "cut.h5").exists()
    assert partial_dir(tmp_path / "cut.h5").is_dir()
    result = train(config, tmp_path / "cut.h5", resume=True)
    assert result.status == "complete"
    assert not partial_dir(tmp_path / "cut.h5").exists()
    assert_same_run(tmp_path / "whole.h5", tmp_path / "cut.h5")


def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """A real `closedloop train` process killed with SIGKILL mid-run resumes bit for bit."""
    args = ["train", "di-tanh-closed", "--epochs", "150", "--quiet", "--seed", "3"]
    for setting in SMALL:
        args += ["--set", setting]
    command = [sys.executable, "-m", "closedloop.cli", *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([*command, "--out", str(tmp_path / "whole.h5")], check=True, env=env)

    cut = tmp_path / "cut.h5"
    process = subprocess.Popen([*command, "--out", str(cut)], env=env)
    folder = partial_dir(cut)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if folder.is_dir() and len(list(folder.glob("segment-*.npz"))) >= 5:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not cut.exists(), "killed too late: the run had finished"
    with pytest.raises(Exception, match="incomplete"):
        load_run(cut)
    subprocess.run([*command, "--out", str(cut), "--resume"], check=True, env=env)
    assert_same_run(tmp_path / "whole.h5", cut)


def test_leftovers_of_a_killed_writer_are_removed_on_resume(tmp_path: Path) -> None:
    """A writer killed inside a write-then-rename leaves a temporary file (or a staging folder);
    resuming the run removes them and produces the same run as an uninterrupted one."""
    config = small_config(epochs=11)
    train(config, tmp_path / "whole.h5")
    cut = tmp_path / "cut.h5"
    with pytest.raises(_Stop):
        train(config, cut, progress=_stop_at(7))
    leftovers = [tmp_path / ".cut.h5.k3j2l1.tmp", partial_dir(cut) / ".checkpoint.npz.x1.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half-written")
    (tmp_path / ".cut.h5.staging").mkdir()
    (tmp_path / ".other.h5.k3j2l1.tmp").write_bytes(b"not ours")
    train(config, cut, resume=True)
    assert not any(p.exists() for p in leftovers) and not (tmp_path / ".cut.h5.staging").exists()
    assert (tmp_path / ".other.h5.k3j2l1.tmp").exists()
    assert_same_run(tmp_path / "whole.h5", cut)


def test_divergence_is_recorded_not_raised(tmp_path: Path) -> None:
    config = small_config(epochs=50, extra=("training.lr=1000", "training.clip_norm=null"))
    result = train(config, tmp_path / "bad.h5")
    assert result.status == "diverged"
    run = load_run(tmp_path / "bad.h5")
    assert run.status == "diverged"
    assert run.diverged_epoch == result.diverged_epoch
    assert run.last_epoch == run.diverged_epoch
    assert run.diverged_epoch in run.snapshot_epochs
    assert np.isfinite(run.metrics["train_loss"][0])


def test_snapshot_schedule_and_metrics_lengths(tmp_path: Path) -> None:
    config = small_config(epochs=10, extra=("recording.snapshot_every=3",))
    train(config, tmp_path / "run.h5")
    run = load_run(tmp_path / "run.h5")
    assert run.snapshot_epochs.tolist() == [0, 3, 6, 9, 10]
    assert run.epochs.tolist() == list(range(11))
    for name in ("train_loss", "test_loss", "grad_norm", "spectral_radius"):
        assert run.metrics[name].shape == (11,)
    assert run.metrics["gains"].shape == (11, 1, 2)
    assert run.coupled_eigenvalues.shape == (11, 2 + 8)
    assert np.all(np.diff(np.abs(run.coupled_eigenvalues), axis=1) <= 1e-12)
    assert np.isnan(run.metrics["grad_norm"][0]) and np.isfinite(run.metrics["grad_norm"][1:]).all()
    with pytest.raises(Exception, match="no parameter snapshot at epoch 4"):
        run.parameters(4)


def test_epoch_zero_records_initial_parameters_without_update(tmp_path: Path,
                                                              tiny_config: RunConfig) -> None:
    trainer = Trainer(tiny_config)
    initial = trainer.parameters_numpy(0)
    train(tiny_config, tmp_path / "run.h5")
    run = load_run(tmp_path / "run.h5")
    for name, value in initial.items():
        np.testing.assert_array_equal(run.parameters(0)[name], value)
    assert np.isfinite(run.metrics["train_loss"][0])  # the paper's epoch 0: loss, no update
    assert not np.array_equal(run.parameters(1)["W"], initial["W"])


def _numpy_closed_loop(params: dict[str, np.ndarray], x0: np.ndarray, steps: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The paper's closed loop as a plain float64 loop: u_0 = 0, then for t >= 1
    h_t = tanh(h_{t-1} W + y_t W_in), u_t = h_t W_out (row layout), x_{t+1} = A x_t + B u_t."""
    w_in, w, w_out = (np.asarray(params[k], dtype=np.float64) for k in ("W_in", "W", "W_out"))
    x = np.asarray(x0, dtype=np.float64)
    h = np.zeros((x.shape[0], w.shape[0]))
    states, controls = [x], []
    for t in range(steps):
        u = np.zeros((x.shape[0], 1))
        if t > 0:
            h = np.tanh(h @ w + (x @ C.T) @ w_in)
            u = h @ w_out
        x = x @ A.T + u @ B.T
        states.append(x)
        controls.append(u)
    return np.stack(states, axis=1), np.stack(controls, axis=1)


def test_recorded_quantities_match_independent_computations(tmp_path: Path,
                                                            tiny_config: RunConfig) -> None:
    """Test loss, gains, eig(P) and eig(W) in the file equal recomputations from the snapshot:
    a NumPy loop of the closed loop, a least-squares fit, and the coupled matrix written out.
    The test loss comes from the test states, the gains from the gain-fit states."""
    train(tiny_config, tmp_path / "run.h5")
    run = load_run(tmp_path / "run.h5")
    trainer = Trainer(tiny_config)
    x0 = np.asarray(trainer.constants["test"].x0[0], dtype=np.float64)
    assert x0.shape == (tiny_config.evaluation.test_size, 2)
    fit_x0 = trainer.gain_fit_initial_states().astype(np.float64)
    assert fit_x0.shape == (tiny_config.evaluation.gain_fit_states, 2)
    for epoch in (0, 5, 10):
        params = {k: v.astype(np.float64) for k, v in run.parameters(epoch).items()}
        states, _ = _numpy_closed_loop(params, x0, tiny_config.test_steps)
        expected_loss = float((states[:, :-1] ** 2).mean())
        assert run.metrics["test_loss"][epoch] == pytest.approx(expected_loss, rel=1e-6)
        states, controls = _numpy_closed_loop(params, fit_x0, tiny_config.test_steps)
        x = states[:, 1:-1].reshape(-1, 2)                 # t = 1..T-1 (u_0 = 0 is dropped)
        u = controls[:, 1:].reshape(-1, 1)
        gains = np.linalg.lstsq(x, u, rcond=None)[0].T
        # 1e-6 relative to the gain matrix: the file's gains come from the float32 rollout
        # (its normal equations summed and solved in float64)
        np.testing.assert_allclose(run.metrics["gains"][epoch], gains, rtol=1e-6,
                                   atol=1e-6 * np.abs(gains).max())
        w_in, w, w_out = params["W_in"].T, params["W"].T, params["W_out"].T   # maths layout
        coupled = np.block([[A, B @ w_out], [w_in @ C @ A, w + w_in @ C @ B @ w_out]])
        expected = np.linalg.eigvals(coupled)
        expected = expected[np.argsort(-np.abs(expected), kind="stable")]
        np.testing.assert_allclose(np.abs(run.coupled_eigenvalues[epoch]), np.abs(expected),
                                   atol=1e-10)
        np.testing.assert_allclose(np.sort_complex(run.coupled_eigenvalues[epoch]),
                                   np.sort_complex(expected), atol=1e-9)
        expected = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
        np.testing.assert_allclose(np.abs(run.recurrent_eigenvalues[epoch]), expected,
                                   atol=1e-10)


def test_gains_fitted_on_the_test_set_are_the_papers_estimate(tmp_path: Path,
                                                              tiny_config: RunConfig) -> None:
    """``evaluation.gain_fit_states: test_set``: the gains are the least-squares fit on the
    10 test rollouts (the paper's estimate, what runs recorded before the option existed);
    the option changes the gains and nothing else the run trains or records."""
    evaluation = tiny_config.evaluation.model_copy(update={"gain_fit_states": "test_set"})
    config = tiny_config.model_copy(update={"evaluation": evaluation})
    train(config, tmp_path / "test_set.h5")
    train(tiny_config, tmp_path / "default.h5")
    run, default = load_run(tmp_path / "test_set.h5"), load_run(tmp_path / "default.h5")
    assert run.config.evaluation.gain_fit_states == "test_set"
    assert Trainer(config).gain_fit_initial_states() is None
    x0 = np.asarray(Trainer(config).constants["test"].x0[0], dtype=np.float64)
    for epoch in (0, 5, 10):
        params = {k: v.astype(np.float64) for k, v in run.parameters(epoch).items()}
        states, controls = _numpy_closed_loop(params, x0, config.test_steps)
        x = states[:, 1:-1].reshape(-1, 2)
        u = controls[:, 1:].reshape(-1, 1)
        gains = np.linalg.lstsq(x, u, rcond=None)[0].T
        # 1e-6 relative to the gain matrix: lstsq in float64 on the float32 test rollout
        np.testing.assert_allclose(run.metrics["gains"][epoch], gains, rtol=1e-6,
                                   atol=1e-6 * np.abs(gains).max())
    assert not np.allclose(run.metrics["gains"], default.metrics["gains"])
    for name in ("train_loss", "grad_norm", "spectral_radius"):
        np.testing.assert_array_equal(run.metrics[name], default.metrics[name], err_msg=name)
    np.testing.assert_array_equal(run.coupled_eigenvalues, default.coupled_eigenvalues)
    for epoch in run.snapshot_epochs:
        for name, value in run.parameters(epoch).items():
            np.testing.assert_array_equal(value, default.parameters(epoch)[name])
    # the same test rollout; the compiled programs differ, so its float32 sums may round
    # differently in the last bits
    np.testing.assert_allclose(run.metrics["test_loss"], default.metrics["test_loss"],
                               rtol=1e-6)


@pytest.mark.parametrize("gain_fit", [["evaluation.gain_fit_states=test_set"], [],
                                      ["evaluation.gain_fit_sampling=uniform",
                                       "evaluation.gain_fit_states=37",
                                       "evaluation.gain_fit_state_range=3.0"]])
def test_effective_gains_of_a_static_gain_are_its_gain(gain_fit: list[str]) -> None:
    """A linear controller u = K x has effective gains K, whatever states they are fitted on
    (float64: to round-off)."""
    config = load_preset("di-tanh-closed", [
        *SMALL_UNSIZED, "agent.kind=static_gain", "agent.gain=[[-0.3, -0.9]]", "agent.init={}",
        "agent.trainable={}", "loss.kind=per_sample", "loss.control_cost=1.0",
        "training.dtype=float64", *gain_fit], epochs=0)
    trainer = Trainer(config)
    np.testing.assert_allclose(trainer.evaluate()[0]["gains"], [[-0.3, -0.9]], rtol=0,
                               atol=1e-12)


def test_gain_fit_states_follow_their_settings() -> None:
    """The default set: ``gain_fit_states`` Sobol' states in the test set's range (the same
    for every run seed); ``gain_fit_state_range`` widens it; ``uniform`` draws as the test set
    does (so with the test set's seed and size they are its states)."""
    default = Trainer(small_config(epochs=0)).gain_fit_initial_states()
    evaluation = small_config().evaluation
    assert default.shape == (evaluation.gain_fit_states, 2)
    assert np.abs(default).max() <= evaluation.initial_state_range
    np.testing.assert_array_equal(default,
                                  Trainer(small_config(epochs=0, seed=5)).gain_fit_initial_states())
    wide = Trainer(small_config(epochs=0, extra=("evaluation.gain_fit_state_range=4.0",)))
    np.testing.assert_allclose(wide.gain_fit_initial_states(), 4.0 * default, rtol=1e-6)
    uniform = Trainer(small_config(epochs=0, extra=(
        "evaluation.gain_fit_sampling=uniform", f"evaluation.gain_fit_seed={evaluation.test_seed}",
        f"evaluation.gain_fit_states={evaluation.test_size}")))
    np.testing.assert_array_equal(uniform.gain_fit_initial_states(),
                                  np.asarray(uniform.constants["test"].x0[0]))


def test_open_loop_student_starts_from_init_and_stores_teacher(tmp_path: Path) -> None:
    closed = tmp_path / "closed.h5"
    train(small_config(epochs=6), closed)
    initial, _ = load_initial_parameters(f"{closed}@0")
    teacher = load_teacher(str(closed), plant_from_config(small_config().plant))
    config = small_config("di-tanh-open", epochs=4)
    train(config, tmp_path / "open.h5", initial=initial, teacher=teacher)
    run, source = load_run(tmp_path / "open.h5"), load_run(closed)
    for name in ("W_in", "W", "W_out"):
        np.testing.assert_array_equal(run.parameters(0)[name], source.parameters(0)[name])
        np.testing.assert_array_equal(run.teacher.parameters[name], source.parameters(6)[name])
    assert run.teacher.source == f"{closed}@6"


def test_train_reads_the_teacher_and_initial_weights_a_config_names(tmp_path: Path) -> None:
    """``closedloop.train`` with a config that only names its teacher run does what
    ``closedloop train --teacher`` does: the teacher is the run's last epoch, the student
    starts from the run's epoch 0 (recorded as init_from); a rule without a teacher refuses
    one."""
    closed = tmp_path / "closed.h5"
    train(small_config(epochs=6), closed)
    config = small_config("di-tanh-open", epochs=2).model_copy(update={"teacher": str(closed)})
    train(config, tmp_path / "open.h5")
    run, source = load_run(tmp_path / "open.h5"), load_run(closed)
    assert (run.config.teacher, run.config.init_from) == (str(closed), f"{closed}@0")
    assert run.teacher.source == f"{closed}@6"
    for name in ("W_in", "W", "W_out"):
        np.testing.assert_array_equal(run.parameters(0)[name], source.parameters(0)[name])
        np.testing.assert_array_equal(run.teacher.parameters[name], source.parameters(6)[name])
    with pytest.raises(ConfigError, match="--teacher is for open-loop configs"):
        train(small_config(epochs=2).model_copy(update={"teacher": str(closed)}),
              tmp_path / "closed-with-teacher.h5")


def test_teacher_driven_plant_with_lqr_teacher(tmp_path: Path) -> None:
    config = small_config("di-tanh-open-plant", epochs=3)
    teacher = load_teacher("lqr", plant_from_config(small_config().plant))
    result = train(config, tmp_path / "open.h5", teacher=teacher)
    assert result.status == "complete"
    run = load_run(tmp_path / "open.h5")
    np.testing.assert_allclose(run.teacher.parameters["K"], [[-0.42208244, -1.24392885]],
                               atol=1e-6)


def test_existing_output_is_not_overwritten(tmp_path: Path, tiny_config: RunConfig) -> None:
    out = tmp_path / "run.h5"
    train(tiny_config, out)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        train(tiny_config, out)
    assert out.read_bytes() == before
    train(tiny_config, out, overwrite=True)
    assert load_run(out).status == "complete"


def test_a_perturbation_switches_the_plant_at_its_epoch(tmp_path):
    """A curl field switched on at update 3 of a run: updates 1-2 are those of the plant
    without it, updates 3-4 those of the plant with it, step by step with two trainers
    composed by hand; the spectrum from epoch 3 on is the perturbed loop's."""
    import jax

    from closedloop.analysis.coupling import operating_point_spectra
    from closedloop.config import load_preset
    from closedloop.core.plants import plant_from_config
    from closedloop.errors import ConfigError
    from closedloop.runs.store import load_run
    from closedloop.training import Trainer, train

    small = ["agent.size=8", "task.batch_size=8", "task.steps=10", "recording.segment_epochs=4",
             "training.optimizer=sgd", "training.lr=0.05"]
    perturbed = load_preset("reach-pointmass-curl", [*small, "perturbation.epoch=3"], epochs=4)
    train(perturbed, tmp_path / "p.h5")
    run = load_run(tmp_path / "p.h5")
    plain = perturbed.model_copy(update={"perturbation": None})
    curled = plain.model_copy(update={"plant": perturbed.plant_at(3)})
    before, after = Trainer(plain), Trainer(curled)
    losses = []
    for epoch in (1, 2):
        losses.append(before.train_step(before.draw_batch(epoch))[0][0])
    after.state = jax.tree.map(lambda a: a, before.state)
    for epoch in (3, 4):
        losses.append(after.train_step(after.draw_batch(epoch))[0][0])
    np.testing.assert_allclose(run.metrics["train_loss"][1:], losses, rtol=1e-6)
    final = after.parameters_numpy(0)
    for name, value in run.parameters("last").items():
        np.testing.assert_allclose(value, final[name], rtol=1e-5, atol=1e-7)
    curl_plant = plant_from_config(perturbed.plant_at(3))
    for epoch, plant in ((2, plant_from_config(plain.plant)), (3, curl_plant)):
        expected = operating_point_spectra(plant, after.agent, {
            k: v[None] for k, v in run.parameters(epoch).items()})["coupled_eigenvalues"][0]
        np.testing.assert_allclose(run.coupled_eigenvalues[epoch], expected, atol=1e-9)
    with pytest.raises(ConfigError, match="changes the plant's n_states"):
        Trainer(load_preset("reach-pointmass-curl", [*small, "perturbation.plant.delay=1"]))


def test_initial_weights_follow_their_init_spec_in_one_process():
    """Two configs that differ only in a weight's initial gain, drawn one after the other in
    one process: same seed, so the second W is the first scaled by the ratio of the gains
    (the compiled drawing must not be shared between them)."""
    from closedloop.config import load_preset
    from closedloop.training import Trainer

    small = ["agent.size=8", "task.batch_size=8", "task.steps=10"]
    first = Trainer(load_preset("di-tanh-closed", [*small, "agent.init.W.gain=0.1"]))
    second = Trainer(load_preset("di-tanh-closed", [*small, "agent.init.W.gain=0.3"]))
    w1, w2 = first.parameters_numpy(0)["W"], second.parameters_numpy(0)["W"]
    np.testing.assert_allclose(w2, 3.0 * w1, rtol=1e-6)
    np.testing.assert_array_equal(second.parameters_numpy(0)["W_in"],
                                  first.parameters_numpy(0)["W_in"])


def test_black_box_mode_trains_records_and_learns(tmp_path):
    """REINFORCE through the normal trainer: the run file says the mode, the test loss of the
    mean policy falls, the spectrum is recorded; the same seed starts from the closed-loop
    run's initial weights (the comparison of modes starts from one network)."""
    from closedloop.config import load_preset
    from closedloop.runs.store import load_run
    from closedloop.training import train

    small = ["agent.size=8", "task.batch_size=32", "task.steps=20", "recording.segment_epochs=4"]
    train(load_preset("di-tanh-blackbox", small, epochs=60), tmp_path / "bb.h5")
    train(load_preset("di-tanh-closed", small, epochs=0), tmp_path / "closed.h5")
    run = load_run(tmp_path / "bb.h5")
    assert run.config.training.mode == "black_box"
    assert run.config.training.estimator == "reinforce"
    test = run.metrics["test_loss"]
    assert np.isfinite(test).all() and test[-1] < 0.85 * test[0]
    assert np.isfinite(run.coupled_eigenvalues).all()
    closed = load_run(tmp_path / "closed.h5")
    for name, value in closed.parameters(0).items():
        np.testing.assert_array_equal(run.parameters(0)[name], value)


def test_evolution_strategies_train_through_the_trainer(tmp_path):
    """ES as the black-box estimator: the plant is only run; the test loss falls and the run
    file says how it was trained."""
    from closedloop.config import load_preset
    from closedloop.runs.store import load_run
    from closedloop.training import train

    small = ["agent.size=8", "task.batch_size=16", "task.steps=20", "recording.segment_epochs=4",
             "training.population=8", "training.lr=0.01"]
    train(load_preset("di-tanh-es", small, epochs=40), tmp_path / "es.h5")
    run = load_run(tmp_path / "es.h5")
    assert (run.config.training.mode, run.config.training.estimator) == ("black_box", "es")
    test = run.metrics["test_loss"]
    assert np.isfinite(test).all() and test[-1] < 0.5 * test[0]


def test_a_learned_exploration_scale_trains_and_is_recorded(tmp_path):
    """agent.learned_std: log_std is a parameter like the others (snapshots, run files), it
    moves in black-box training, and the loop's spectrum ignores it."""
    from closedloop.analysis.replay import run_model
    from closedloop.config import load_preset
    from closedloop.runs.store import load_run
    from closedloop.training import train

    small = ["agent.size=8", "task.batch_size=32", "task.steps=20", "recording.segment_epochs=4",
             "agent.learned_std=true", "agent.trainable.log_std=true"]
    train(load_preset("di-tanh-blackbox", small, epochs=20), tmp_path / "bb.h5")
    run = load_run(tmp_path / "bb.h5")
    first, last = run.parameters(0)["log_std"], run.parameters("last")["log_std"]
    assert first.tolist() == [0.0] and last[0] != 0.0
    plain = load_preset("di-tanh-blackbox", small[:4], epochs=0)
    train(plain, tmp_path / "plain.h5")
    np.testing.assert_array_equal(load_run(tmp_path / "plain.h5").coupled_eigenvalues[0],
                                  run.coupled_eigenvalues[0])     # same weights, same P
    _, agent = run_model(run)
    assert sorted(agent.to_params(run.parameters("last"))) == ["W", "W_in", "W_out", "log_std"]


def _cart_classes():
    """One cart (semi-implicit Euler, force input), written twice: in JAX, and in NumPy behind
    ``jax.pure_callback`` (a plant JAX cannot differentiate)."""
    from dataclasses import dataclass

    import jax
    import jax.numpy as jnp

    from closedloop.core.mechanics import NonlinearPlant

    def cart_step(x, u, dt, xp):
        velocity = x[1] + dt * u[0]
        return xp.stack([x[0] + dt * velocity, velocity])

    @dataclass(frozen=True)
    class JaxCart(NonlinearPlant):
        dt: float = 0.1
        state_names = ("position", "velocity")
        input_names = ("force",)

        def dynamics(self, x, u):
            return cart_step(x, u, self.dt, jnp)

    @dataclass(frozen=True)
    class NumpyCart(JaxCart):
        def dynamics(self, x, u):
            def host(x, u):
                return cart_step(np.asarray(x), np.asarray(u), self.dt, np).astype(x.dtype)

            return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x, u,
                                     vmap_method="sequential")

    return JaxCart, NumpyCart


def test_a_plant_jax_cannot_differentiate_trains_as_a_black_box(tmp_path):
    """The black-box estimate never differentiates the plant: on a NumPy plant (pure_callback)
    it equals the estimate on the same plant written in JAX; the run records its losses and
    NaN spectra (with a warning); closed-loop training of it and the fixed-point search are
    refused with one line."""
    import closedloop
    from closedloop.config import load_preset
    from closedloop.errors import ConfigError
    from closedloop.runs.store import load_run
    from closedloop.training import Trainer, train

    jax_cart, numpy_cart = _cart_classes()
    closedloop.register_plant("test-jax-cart", jax_cart)
    closedloop.register_plant("test-numpy-cart", numpy_cart)
    small = ["agent.size=8", "task.batch_size=16", "task.steps=10", "plant.dt=null",
             "plant.params={}", "loss.kind=per_sample", "recording.segment_epochs=4"]
    estimates = []
    for kind in ("test-jax-cart", "test-numpy-cart"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = Trainer(load_preset("di-tanh-blackbox", [*small, f"plant.kind={kind}"]))
        batch = trainer.draw_batch(epoch=1)
        estimates.append(trainer.gradients(batch))
    for name, value in estimates[0].items():
        np.testing.assert_allclose(estimates[1][name], value, rtol=1e-5, atol=1e-8)
    with pytest.warns(UserWarning, match="cannot be differentiated"):
        train(load_preset("di-tanh-blackbox", [*small, "plant.kind=test-numpy-cart"],
                          epochs=4), tmp_path / "cart.h5")
    run = load_run(tmp_path / "cart.h5")
    assert np.isfinite(run.metrics["test_loss"]).all()
    assert np.isnan(run.coupled_eigenvalues).all()
    with pytest.raises(ConfigError, match=r"cannot be differentiated.*black_box"):
        Trainer(load_preset("di-tanh-closed", [*small, "plant.kind=test-numpy-cart"]))
    from closedloop.analysis.fixed_points import find_fixed_points
    from closedloop.core.agents import StaticGain

    with pytest.raises(ConfigError, match=r"fixed-point search.*cannot be differentiated"):
        find_fixed_points(numpy_cart(), StaticGain(2, 1), {"K": np.zeros((1, 2))},
                          np.zeros((1, 2)))


def test_black_box_training_balances_the_pendulum(tmp_path):
    """REINFORCE (with the value baseline) on a nonlinear plant: the upright pendulum's test
    loss falls (a small network, Adam, exploration std 0.5 N m) and its spectrum at the
    upright operating point is recorded."""
    from closedloop.config import load_preset
    from closedloop.runs.store import load_run
    from closedloop.training import train

    small = ["agent.size=8", "task.batch_size=16", "task.steps=20", "recording.segment_epochs=4",
             "training.mode=black_box", "training.baseline=value", "training.optimizer=adam",
             "training.lr=0.01", "training.exploration_std=0.5"]
    train(load_preset("pendulum-upright-closed", small, epochs=80), tmp_path / "bb.h5")
    run = load_run(tmp_path / "bb.h5")
    test = run.metrics["test_loss"]
    assert np.isfinite(test).all() and test[-1] < 0.7 * test[0]
    assert np.isfinite(run.coupled_eigenvalues).all()
