"""A user's own loop from the command line, as the README shows it: a preset written out as a
file, edited to a linear plant with C B != 0 and to the pendulum, trained and analysed; the
fixed points of the trained pendulum; bad plant files; the two studies end to end."""

from __future__ import annotations

import json

import numpy as np
import yaml

from closedloop.runs.store import load_run
from tests.test_cli import SMALL_ARGS, assert_one_line_error, run_cli


def edited(tmp_path, capsys, name: str, plant: dict) -> str:
    code, out, _ = run_cli(capsys, "presets", "--show", "di-tanh-closed")
    assert code == 0
    data = yaml.safe_load(out)
    data["plant"] = plant
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_user_linear_plant_with_feedthrough_of_the_command(tmp_path, capsys):
    A, B, C = [[1.0, 0.1], [-0.1, 0.98]], [[0.5], [1.0]], [[1.0, 0.0]]     # C B = 0.5
    path = edited(tmp_path, capsys, "linear", {"kind": "linear", "A": A, "B": B, "C": C})
    out = tmp_path / "linear.h5"
    assert run_cli(capsys, "train", path, "--out", out, "--epochs", "6", "--quiet",
                   *SMALL_ARGS)[0] == 0
    run = load_run(out)
    assert run.config.plant.kind == "linear" and np.isfinite(run.metrics["test_loss"]).all()
    code, text, _ = run_cli(capsys, "analyze", out, "--json")
    assert code == 0
    report = json.loads(text)
    assert report["epochs"] == 6 and len(report["final_eigenvalues"]) == 6


def test_pendulum_from_an_edited_file_trains_and_analyses(tmp_path, capsys):
    path = edited(tmp_path, capsys, "pendulum",
                  {"kind": "pendulum", "dt": 0.05, "observed": [0], "delay": 1})
    out = tmp_path / "pendulum.h5"
    assert run_cli(capsys, "train", path, "--out", out, "--epochs", "6", "--quiet",
                   *SMALL_ARGS)[0] == 0
    run = load_run(out)
    # the coupled state: angle, velocity, one delayed observation, 8 units
    assert run.coupled_eigenvalues.shape == (7, 2 + 1 + 8)
    assert run.metrics["gains"].shape[-1] == 2            # regressed on (q - pi, q')
    assert run_cli(capsys, "analyze", out)[0] == 0
    code, text, _ = run_cli(capsys, "fixed-points", out, "--starts", "16", "--json")
    assert code == 0
    points = json.loads(text)["points"]
    upright = [p for p in points if abs(p["state"][0] - np.pi) < 1e-6]
    assert upright and upright[0]["fixed"]                 # the bias-free net holds at pi


def test_bad_plant_files_get_one_line(tmp_path, capsys):
    cases = {"unknown": ({"kind": "pendulm"}, ["'plant.kind'", "pendulum"]),
             "param": ({"kind": "pendulum", "params": {"mas": 1.0}},
                       ["plant.params.mas", "mass"]),
             "observed": ({"kind": "pendulum", "observed": [5]}, ["plant.observed"])}
    for name, (plant, words) in cases.items():
        path = edited(tmp_path, capsys, name, plant)
        code, _, err = run_cli(capsys, "train", path, "--out", tmp_path / f"{name}.h5",
                               "--quiet", *SMALL_ARGS)
        assert_one_line_error(code, err, *words)
        assert not (tmp_path / f"{name}.h5").exists()


def test_studies_run_end_to_end(tmp_path, capsys):
    for name in ("pendulum-pair", "curl-field", "compare-modes"):
        code, text, _ = run_cli(capsys, "study", name, "--seeds", "0", "--epochs", "2",
                                "--out", tmp_path / name, "--quiet")
        assert code == 0, text
        summary = json.loads((tmp_path / name / f"{name}.json").read_text())
        assert summary["seeds"] == [0] and len(summary["per_seed"]) == 1
        assert (tmp_path / name / f"{name}.png").stat().st_size > 10_000


def test_noisy_delayed_pendulum_is_deterministic_and_ensembles(tmp_path):
    from closedloop.config import load_preset
    from closedloop.training import train, train_ensemble
    from tests.conftest import SMALL, TOLERANCE, max_relative_difference

    noisy = [*SMALL, "plant.delay=2", "plant.motor_noise_std=0.3",
             "plant.observation_noise_std=0.05", "plant.process_noise_std=0.1"]
    configs = [load_preset("pendulum-upright-closed", noisy, seed=s, epochs=5) for s in (0, 1)]
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    train(configs[1], first)
    train(configs[1], second)
    a, b = load_run(first), load_run(second)
    for name in ("train_loss", "test_loss", "grad_norm", "spectral_radius"):
        assert np.array_equal(a.metrics[name], b.metrics[name], equal_nan=True), name
    assert np.array_equal(a.coupled_eigenvalues, b.coupled_eigenvalues)
    together = [tmp_path / "e0.h5", tmp_path / "e1.h5"]
    train_ensemble(configs, together)
    assert max_relative_difference(load_run(together[1]), a) <= TOLERANCE
    # the noise is part of training: another noise level gives another run
    quiet = load_preset("pendulum-upright-closed", [*SMALL, "plant.delay=2"], seed=1, epochs=5)
    train(quiet, tmp_path / "q.h5")
    assert not np.array_equal(load_run(tmp_path / "q.h5").metrics["train_loss"][1:],
                              a.metrics["train_loss"][1:])
