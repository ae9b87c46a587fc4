"""Files written by the earlier PyTorch version: finished runs read, analyse and teach as any
other; an unfinished one is refused (its checkpoint cannot be continued) and left untouched.
Files written before ``evaluation.gain_fit_states`` existed keep their meaning: their gains
were fitted on the test set, so their configs read as ``test_set``, not today's default.

tests/data/legacy holds a finished closed-loop run (N = 8, batch 16, T = 20, 12 epochs, seed 0),
its open-loop student (6 epochs) and an unfinished closed-loop run (seed 1, stopped at epoch 7:
one segment and a ``checkpoint.pt``). The recorded numbers are checked against recomputations
that do not use the torch version: the test loss and effective gains by replaying a snapshot
from the test states the torch generator drew (regenerated below from its rule), eig(P) from
the coupled matrix and eig(W) from the recurrent weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from closedloop.analysis.coupling import coupled_matrix
from closedloop.analysis.replay import replay, run_model
from closedloop.config.schema import GAIN_FIT_ON_TEST_SET
from closedloop.errors import ConfigError, IncompleteRunError
from closedloop.runs.store import Run, load_run, partial_dir
from closedloop.training import Trainer, train
from tests.conftest import SMALL, SMALL_UNSIZED, small_config
from tests.test_cli import assert_one_line_error, run_cli
from tests.training.test_training import assert_same_run

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
CLOSED, OPEN = "torch-di-tanh-closed.h5", "torch-di-tanh-open.h5"
UNFINISHED = "torch-unfinished.h5"
SMALL_ARGS = [arg for setting in SMALL for arg in ("--set", setting)]


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    """A copy of the fixtures (tests never touch tests/data)."""
    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY, folder)
    return folder


def torch_rand_float64(seed: int, count: int) -> np.ndarray:
    """What ``torch.rand(count, generator=torch.Generator().manual_seed(seed),
    dtype=torch.float64)`` returns on the CPU, without torch: the generator is MT19937 seeded
    by the classic ``init_genrand(seed)`` (NumPy's legacy RandomState seeding), and each double
    takes two 32-bit words (hi, lo) as ((hi << 32 | lo) mod 2^53) / 2^53."""
    generator = np.random.MT19937()
    generator.state = {"bit_generator": "MT19937",
                       "state": np.random.RandomState(seed).get_state(legacy=False)["state"]}
    words = generator.random_raw(2 * count).astype(np.uint64)
    combined = (words[0::2] << np.uint64(32)) | words[1::2]
    return (combined & np.uint64(2**53 - 1)).astype(np.float64) / 2.0**53


def torch_test_states(run: Run) -> np.ndarray:
    """The torch version's held-out initial states: U(-a, a)^n_x from ``evaluation.test_seed``
    (``(torch.rand(size, n_x) * 2 - 1) * a``)."""
    evaluation = run.config.evaluation
    n_states = run.coupled_eigenvalues.shape[1] - run.config.agent.size
    uniform = torch_rand_float64(evaluation.test_seed, evaluation.test_size * n_states)
    return ((uniform * 2 - 1) * evaluation.initial_state_range).reshape(-1, n_states)


def test_the_legacy_seeding_is_classic_mt19937() -> None:
    """The reference check of the C++ standard: the 10000th output of mt19937 seeded with 5489
    (``init_genrand``) is 4123659995."""
    generator = np.random.MT19937()
    generator.state = {"bit_generator": "MT19937",
                       "state": np.random.RandomState(5489).get_state(legacy=False)["state"]}
    assert int(generator.random_raw(10_000)[-1]) == 4123659995


@pytest.mark.parametrize("name", [CLOSED, OPEN])
def test_finished_legacy_runs_load(legacy: Path, name: str) -> None:
    run = load_run(legacy / name)
    assert run.status == "complete" and run.diverged_epoch is None
    epochs = 12 if name == CLOSED else 6
    assert run.config.training.epochs == epochs
    np.testing.assert_array_equal(run.epochs, np.arange(epochs + 1))
    np.testing.assert_array_equal(run.snapshot_epochs, np.arange(epochs + 1))
    assert (run.config.agent.size, run.config.task.batch_size, run.config.task.steps) == \
        (8, 16, 20)
    assert run.coupled_eigenvalues.shape == (epochs + 1, 2 + 8)
    assert all(np.isfinite(run.metrics[k]).all() for k in ("test_loss", "spectral_radius"))
    if name == OPEN:
        assert run.config.training.mode == "open_white_noise"
        assert run.teacher is not None and run.teacher.source.endswith(f"{CLOSED}@12")
        teacher = load_run(legacy / CLOSED).parameters(12)
        for key, value in run.teacher.parameters.items():
            np.testing.assert_array_equal(value, teacher[key])


@pytest.mark.parametrize("name", [CLOSED, OPEN])
def test_inspect_and_analyze_read_legacy_runs(legacy: Path, name: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = legacy / name
    run = load_run(path)
    code, out, err = run_cli(capsys, "inspect", path)
    assert code == 0 and not err and "complete" in out
    code, out, err = run_cli(capsys, "analyze", path)
    assert code == 0 and not err and "stabilisation" in out
    code, out, err = run_cli(capsys, "analyze", path, "--json")
    assert code == 0 and json.loads(out)["status"] == "complete"
    code, out, _ = run_cli(capsys, "inspect", path, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["preset"], data["seed"], data["mode"]) == \
        (run.config.preset, 0, run.config.training.mode)
    assert data["epoch"] == list(range(run.last_epoch + 1))
    np.testing.assert_array_equal(data["test_loss"], run.metrics["test_loss"])
    np.testing.assert_array_equal(data["spectral_radius"], run.metrics["spectral_radius"])
    np.testing.assert_array_equal(np.array(data["gains"]), run.metrics["gains"][:, 0, :])


@pytest.mark.parametrize(("name", "epochs"), [(CLOSED, (0, 3, 7, 12)), (OPEN, (0, 2, 6))])
def test_recorded_test_loss_and_gains_replay_from_the_torch_test_states(
        legacy: Path, name: str, epochs: tuple[int, ...]) -> None:
    """The torch version recorded, per epoch, the test loss (mean over t = 0..T-1, batch and
    dimensions of x_t^2) and the least-squares gains of its float32 test rollout; the float64
    replay of the snapshot from the same test states gives them again."""
    run = load_run(legacy / name)
    x0 = torch_test_states(run)
    assert x0.shape == (10, 2) and np.all(np.abs(x0) < 1)
    for epoch in epochs:
        traj = replay(run, epoch, x0=x0, steps=run.config.test_steps)
        loss = float((traj.states[:, :-1] ** 2).mean())
        assert run.metrics["test_loss"][epoch] == pytest.approx(loss, rel=1e-6), epoch
        x = traj.states[:, 1:-1].reshape(-1, 2)            # u_0 = 0 is not fitted
        u = traj.controls[:, 1:].reshape(-1, 1)
        gains = np.linalg.lstsq(x, u, rcond=None)[0].T
        np.testing.assert_allclose(run.metrics["gains"][epoch], gains, rtol=1e-6,
                                   atol=1e-6 * np.abs(gains).max(), err_msg=str(epoch))


@pytest.mark.parametrize("name", [CLOSED, OPEN])
def test_recorded_spectra_equal_the_coupled_matrix(legacy: Path, name: str) -> None:
    run = load_run(legacy / name)
    plant, agent = run_model(run)
    for epoch, params in run.iter_parameters():
        params = {k: v.astype(np.float64) for k, v in params.items()}
        coupled = np.linalg.eigvals(coupled_matrix(plant, agent.linearisation(params)))
        recorded = run.coupled_eigenvalues[epoch]
        np.testing.assert_allclose(np.sort_complex(recorded), np.sort_complex(coupled),
                                   atol=1e-10, err_msg=str(epoch))
        assert np.all(np.diff(np.abs(recorded)) <= 1e-12)           # descending modulus
        assert run.metrics["spectral_radius"][epoch] == pytest.approx(np.abs(coupled).max(),
                                                                      abs=1e-12)
        recurrent = np.linalg.eigvals(params["W"].T)
        np.testing.assert_allclose(np.sort_complex(run.recurrent_eigenvalues[epoch]),
                                   np.sort_complex(recurrent), atol=1e-10, err_msg=str(epoch))


def test_a_student_of_a_legacy_run_trains(legacy: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = legacy / CLOSED
    student = tmp_path / "student.h5"
    code, _, err = run_cli(capsys, "train", "di-tanh-open", "--init-from", f"{source}@0",
                           "--teacher", source, "--out", student, "--epochs", "4", "--quiet",
                           *SMALL_ARGS)
    assert code == 0, err
    run, teacher = load_run(student), load_run(source)
    assert run.status == "complete" and run.last_epoch == 4
    assert run.teacher.source == f"{source}@12"
    for key, value in teacher.parameters(0).items():
        np.testing.assert_array_equal(run.parameters(0)[key], value)
        np.testing.assert_array_equal(run.teacher.parameters[key], teacher.parameters(12)[key])
    # the same weights at epoch 0 give the same spectrum in both versions
    np.testing.assert_allclose(np.sort_complex(run.coupled_eigenvalues[0]),
                               np.sort_complex(teacher.coupled_eigenvalues[0]), atol=1e-10)
    assert np.isfinite(run.metrics["train_loss"]).all()
    assert run.metrics["train_loss"][-1] < run.metrics["train_loss"][1]   # it learns


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_resuming_an_unfinished_legacy_run_is_refused_untouched(
        legacy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = legacy / UNFINISHED
    folder = partial_dir(out)
    assert (folder / "checkpoint.pt").is_file()
    before, around = _files(folder), sorted(p.name for p in legacy.iterdir())
    same = ["--seed", "1", "--epochs", "12", *SMALL_ARGS]
    for settings in (same, []):       # its own settings, or others: the same refusal
        code, _, err = run_cli(capsys, "train", "di-tanh-closed", *settings, "--out", out,
                               "--resume")
        assert_one_line_error(code, err, str(out), "PyTorch", "--overwrite")
        assert _files(folder) == before
        assert sorted(p.name for p in legacy.iterdir()) == around
    with pytest.raises(IncompleteRunError, match="PyTorch"):
        load_run(out)
    code, _, err = run_cli(capsys, "inspect", out)
    assert_one_line_error(code, err, "PyTorch", "not resumable")
    assert _files(folder) == before
    # what the message advises works: trained again from scratch
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", *same, "--out", out,
                           "--overwrite", "--quiet")
    assert code == 0, err
    assert load_run(out).status == "complete" and not folder.exists()


# -- runs from before the gain-fit settings ---------------------------------------------------

GAIN_FIT_FIELDS = ("gain_fit_states", "gain_fit_sampling", "gain_fit_state_range",
                   "gain_fit_seed")
"""The ``evaluation`` fields that configs stored before them lack."""


def test_runs_from_before_the_gain_fit_settings_read_as_fitted_on_the_test_set(
        legacy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fixtures' stored configs predate the fields; their gains were fitted on the 10 test
    states (the replay test above checks the numbers), so they read as ``test_set``, and a
    run repeated from one (``--config-from``) fits its gains the same way."""
    for name in (CLOSED, OPEN):
        stored = json.loads(_stored_config_text(legacy / name))["evaluation"]
        assert not set(GAIN_FIT_FIELDS) & set(stored)
        assert load_run(legacy / name).config.evaluation.gain_fit_states == GAIN_FIT_ON_TEST_SET
    again = tmp_path / "again.h5"
    code, _, err = run_cli(capsys, "train", "--config-from", legacy / CLOSED, "--out", again,
                           "--epochs", "2", "--quiet")
    assert code == 0, err
    run = load_run(again)
    assert run.config.evaluation.gain_fit_states == GAIN_FIT_ON_TEST_SET
    trainer = Trainer(run.config)
    assert trainer.gain_fit_initial_states() is None
    x0 = np.asarray(trainer.constants["test"].x0[0], dtype=np.float64)   # this version's
    traj = replay(run, 2, x0=x0, steps=run.config.test_steps)
    gains = np.linalg.lstsq(traj.states[:, 1:-1].reshape(-1, 2),
                            traj.controls[:, 1:].reshape(-1, 1), rcond=None)[0].T
    np.testing.assert_allclose(run.metrics["gains"][2], gains, rtol=1e-6,
                               atol=1e-6 * np.abs(gains).max())


def _stored_config_text(path: Path) -> str:
    import h5py

    from closedloop.runs.store import _attribute

    with h5py.File(path, "r") as handle:
        return _attribute(handle, "config")


def test_an_unfinished_run_from_before_the_gain_fit_settings_resumes_as_it_began(
        tmp_path: Path) -> None:
    """An unfinished run whose stored config lacks the fields recorded test-set gains: it
    resumes with ``test_set`` (bit for bit the uninterrupted run), and resuming it with
    today's default is refused naming the field (its epochs would mix two estimates)."""
    default = small_config(epochs=11)
    evaluation = default.evaluation.model_copy(update={"gain_fit_states": GAIN_FIT_ON_TEST_SET})
    config = default.model_copy(update={"evaluation": evaluation})
    train(config, tmp_path / "whole.h5")
    cut = tmp_path / "cut.h5"

    class Stop(Exception):
        pass

    def stop(record):
        if record.epoch == 6:
            raise Stop

    with pytest.raises(Stop):
        train(config, cut, progress=stop)
    stored = partial_dir(cut) / "config.json"
    data = json.loads(stored.read_text())
    for name in GAIN_FIT_FIELDS:                 # as a version before the fields wrote it
        del data["evaluation"][name]
    stored.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"evaluation\.gain_fit_states"):
        train(default, cut, resume=True)
    assert train(config, cut, resume=True).status == "complete"
    assert load_run(cut).config == config
    assert_same_run(tmp_path / "whole.h5", cut)


# -- runs from before each agent kind had a config class of its own ---------------------------

FLAT_AGENT = {"kind": "rnn", "size": 100, "activation": "tanh", "dt": 1.0, "tau": 1.0,
              "bias": False, "output_bias": False, "rank": 1, "random_gain": 0.0,
              "prescribed_overlap": None, "gain": None, "overlaps": None,
              "hidden_sizes": [64, 64], "learned_std": False, "params": {}, "init": {},
              "trainable": {}}
"""The one agent config of earlier versions, every kind's field at its default: what they
stored for a kind whatever its own fields were."""

def test_runs_stored_with_every_kinds_agent_fields_read_and_resume(tmp_path: Path) -> None:
    """An MLP run whose stored config carries every kind's agent fields (as earlier versions
    wrote it, with ``size`` 100 which an MLP never used) reads as an MLP run; unfinished, it
    resumes bit for bit as the uninterrupted run; and a teacher stored that way teaches."""
    from closedloop.config import load_preset
    from closedloop.core.agents import StaticGain
    from closedloop.runs.store import Teacher

    config = load_preset("di-tanh-closed", ["agent.kind=mlp", "agent.hidden_sizes=[6]",
                                            "agent.init={}", "agent.trainable={}",
                                            *SMALL_UNSIZED], epochs=8)
    flat = {**FLAT_AGENT, "kind": "mlp", "hidden_sizes": [6]}
    train(config, tmp_path / "whole.h5")
    cut = tmp_path / "cut.h5"

    class Stop(Exception):
        pass

    def stop(record):
        if record.epoch == 5:
            raise Stop

    with pytest.raises(Stop):
        train(config, cut, progress=stop)
    stored = partial_dir(cut) / "config.json"
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "agent": flat}))
    assert train(config, cut, resume=True).status == "complete"
    assert_same_run(tmp_path / "whole.h5", cut)

    import h5py

    from closedloop.runs.store import DIGEST, _attrs_digest

    with h5py.File(cut, "r+") as handle:      # the finished file, as that version wrote it
        handle.attrs["config"] = json.dumps({**json.loads(handle.attrs["config"]),
                                             "agent": flat})
        handle.attrs[DIGEST] = _attrs_digest(handle)
    assert load_run(cut).config == config

    gain = np.array([[-0.4, -1.2]])
    teacher = Teacher("gain:-0.4,-1.2", json.dumps({**FLAT_AGENT, "kind": "static_gain",
                                                    "gain": gain.tolist()}), {"K": gain})
    trainer = Trainer(load_preset("di-tanh-open-plant", SMALL, epochs=2), teachers=teacher)
    assert trainer.teacher_agent == StaticGain(2, 1, ((-0.4, -1.2),))
