"""Loggers: the TensorBoard writer read back from its event files (the TFRecord format, parsed
here), and the hooks a user's logger receives, in an ensemble and after a resume."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from closedloop.config import load_preset
from closedloop.runs.store import load_run
from closedloop.training.loggers import Logger, LogSpec, register_logger
from tests.conftest import SMALL, read_events
from tests.test_cli import SMALL_ARGS, assert_one_line_error, run_cli

pytest.importorskip("tensorboardX")


def test_tensorboard_logs_what_the_run_file_records(tmp_path, capsys):
    """``train --log tensorboard DIR``: per epoch the losses, gradient norm, spectral radius,
    gains and leading eigenvalues equal the run file's (to float32), and the spectra are
    pictured at epoch 0 and at the last epoch."""
    out = tmp_path / "closed.h5"
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--out", out, "--epochs", "6",
                           "--quiet", "--log", "tensorboard", tmp_path / "logs", *SMALL_ARGS)
    assert code == 0, err
    scalars, images = read_events(tmp_path / "logs" / "closed")
    run = load_run(out)
    for tag, metric in (("loss/test", "test_loss"), ("loss/train", "train_loss"),
                        ("spectrum/radius", "spectral_radius")):
        recorded = run.metrics[metric]
        assert sorted(scalars[tag]) == list(range(7)), tag
        np.testing.assert_allclose([scalars[tag][e] for e in range(7)], recorded, rtol=1e-6)
    assert sorted(scalars["grad_norm"]) == list(range(1, 7))      # epoch 0 has no update
    gains = run.metrics["gains"]
    np.testing.assert_allclose([scalars["gains/k_0_1"][e] for e in range(7)], gains[:, 0, 1],
                               rtol=1e-6)
    leading = run.coupled_eigenvalues[-1]
    leading = leading[leading.imag >= 0]
    top = leading[np.argmax(np.abs(leading))]
    assert scalars["eig_P/0/real"][6] == pytest.approx(top.real, rel=1e-6, abs=1e-7)
    assert scalars["eig_P/0/imag"][6] == pytest.approx(top.imag, rel=1e-6, abs=1e-7)
    assert images["spectrum"] == [0, 6]


class Recording(Logger):
    """A user's logger: what it was called with, kept per folder."""

    calls: ClassVar[dict[str, list[tuple]]] = {}

    def start(self, config, path):
        self.calls.setdefault(self.folder.name, []).append(("start", config.seed, path.name))

    def epoch(self, record):
        self.calls.setdefault(self.folder.name, []).append(("epoch", record.epoch))

    def finish(self, status):
        self.calls.setdefault(self.folder.name, []).append(("finish", status))


def test_a_registered_logger_sees_every_member_and_resumes(tmp_path):
    """Each member of an ensemble gets its own logger: start, every epoch in order, finish;
    a resumed run logs from the epoch it resumes at."""
    from closedloop.training import train_ensemble
    from closedloop.training.loggers import loggers_for

    register_logger("recording", Recording)
    Recording.calls.clear()
    spec = LogSpec("recording", str(tmp_path / "logs"))
    configs = [load_preset("di-tanh-closed", SMALL, seed=s, epochs=5) for s in (0, 1)]
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    train_ensemble(configs, outs, loggers=loggers_for([spec], outs))
    for seed, name in enumerate(("a", "b")):
        assert Recording.calls[name] == [("start", seed, f"{name}.h5"),
                                         *[("epoch", e) for e in range(6)],
                                         ("finish", "complete")]

    # resume: train 8 epochs of a 12-epoch run, then resume it (segments of 4 epochs)
    from closedloop.training import train

    Recording.calls.clear()
    longer = load_preset("di-tanh-closed", SMALL, epochs=12)
    path = tmp_path / "c.h5"
    _interrupt_after(longer, path, epochs=8)
    train(longer, path, resume=True, loggers=[spec.make(path)])
    calls = Recording.calls["c"]
    assert calls[0] == ("start", 0, "c.h5") and calls[-1] == ("finish", "complete")
    assert [c[1] for c in calls[1:-1]] == list(range(8, 13))


def _interrupt_after(config, path: Path, epochs: int) -> None:
    """Leave an unfinished run at ``path`` checkpointed after epochs 0..``epochs`` - 1 (stopped
    as epoch ``epochs`` is recorded, the segment before it saved)."""
    from closedloop.training import train

    class Stop(Exception):
        pass

    def stop(record):
        if record.epoch == epochs:
            raise Stop

    with pytest.raises(Stop):
        train(config, path, progress=stop)


def test_an_unknown_logger_is_one_line_before_any_work(tmp_path, capsys):
    out = tmp_path / "never.h5"
    code, _, err = run_cli(capsys, "train", "di-tanh-closed", "--out", out, "--epochs", "1",
                           "--log", "wandb", tmp_path / "logs", *SMALL_ARGS)
    assert_one_line_error(code, err, "'--log'", "tensorboard")
    assert not out.exists() and not (tmp_path / "logs").exists()
