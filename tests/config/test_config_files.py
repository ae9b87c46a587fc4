"""Config files: ``presets --show`` writes a preset as a complete file that reads back to the
same config; ``train FILE.yaml`` and ``sweep FILE.yaml`` take one; errors name the file and
the key; ``--config-from RUN.h5`` repeats a run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from closedloop.config import load_preset, preset_names, preset_yaml
from closedloop.core.plants import plant_from_config
from closedloop.errors import ConfigError
from closedloop.runs.store import load_run
from closedloop.scale.sweep import SweepSpec
from tests.conftest import SMALL
from tests.test_cli import SMALL_ARGS, assert_one_line_error, run_cli


@pytest.mark.parametrize("name", preset_names())
def test_shown_preset_reads_back_to_the_same_config(name, tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(preset_yaml(name))
    from_file = load_preset(str(path))
    assert from_file.preset == "mine"             # a file is named after itself
    assert from_file.model_copy(update={"preset": name}) == load_preset(name)
    # what the command line shows writes the plant's own constants out: the same plant
    code, out, _ = run_cli(capsys, "presets", "--show", name)
    assert code == 0
    path.write_text(out)
    shown, preset = load_preset(str(path)), load_preset(name)
    assert plant_from_config(shown.plant) == plant_from_config(preset.plant)
    assert shown.model_copy(update={"preset": name, "plant": preset.plant}) == preset


def test_file_errors_name_the_file_and_the_key(tmp_path):
    cases = {
        "dt.yaml": ("plant: {dt: -1}", ["dt.yaml", "'plant.dt'", "greater than 0"]),
        "key.yaml": ("agent: {sise: 8}", ["key.yaml", "unknown key 'agent.sise'", "size"]),
        "yaml.yaml": ("plant: [1", ["yaml.yaml", "not valid YAML", "line 1"]),
        "list.yaml": ("- 1\n- 2", ["list.yaml", "mapping"]),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError) as info:
            load_preset(str(tmp_path / name))
        for word in words:
            assert word in str(info.value), (word, str(info.value))
    with pytest.raises(ConfigError, match="no such config file"):
        load_preset(str(tmp_path / "absent.yaml"))


def test_train_a_file_and_repeat_it_from_the_run_file(tmp_path, capsys):
    shown = tmp_path / "mine.yaml"
    code, out, _ = run_cli(capsys, "presets", "--show", "di-tanh-closed")
    assert code == 0
    data = yaml.safe_load(out)
    data["agent"]["init"]["W"]["gain"] = 0.3      # a user's edit
    shown.write_text(yaml.safe_dump(data))
    first = tmp_path / "first.h5"
    assert run_cli(capsys, "train", shown, "--out", first, "--epochs", "4", "--seed", "3",
                   "--quiet", *SMALL_ARGS)[0] == 0
    run = load_run(first)
    assert run.config.preset == "mine" and run.config.agent.init["W"].gain == 0.3
    assert run.config.seed == 3
    again = tmp_path / "again.h5"
    assert run_cli(capsys, "train", "--config-from", first, "--out", again, "--quiet")[0] == 0
    repeated = load_run(again)
    assert repeated.config == run.config
    for name in ("train_loss", "test_loss", "spectral_radius"):
        assert np.array_equal(repeated.metrics[name], run.metrics[name]), name
    code, _, err = run_cli(capsys, "train", shown, "--config-from", first)
    assert_one_line_error(code, err, "exactly one")


def test_config_from_an_open_loop_run_brings_its_teacher(tmp_path, capsys):
    closed, opened = tmp_path / "closed.h5", tmp_path / "open.h5"
    assert run_cli(capsys, "train", "di-tanh-closed", "--out", closed, "--epochs", "4",
                   "--quiet", *SMALL_ARGS)[0] == 0
    assert run_cli(capsys, "train", "di-tanh-open", "--teacher", closed, "--out", opened,
                   "--epochs", "3", "--quiet", *SMALL_ARGS)[0] == 0
    closed.unlink()                               # the repeat needs only the run file
    again = tmp_path / "again.h5"
    assert run_cli(capsys, "train", "--config-from", opened, "--out", again, "--quiet")[0] == 0
    first, second = load_run(opened), load_run(again)
    assert second.teacher is not None and second.teacher.source == first.teacher.source
    assert np.array_equal(second.metrics["test_loss"], first.metrics["test_loss"])


def test_a_sweep_keeps_the_file_it_was_defined_by(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(preset_yaml("di-tanh-closed"))
    spec = SweepSpec(str(path), {"training.lr": ["0.01", "0.02"]}, [0], 2, SMALL)
    path.unlink()                                 # workers and reruns never read it again
    stored = SweepSpec.from_json(spec.to_json())
    assert stored == spec
    names = [point.name for point in stored.points()]
    assert names == ["mine_training.lr=0.01-seed0", "mine_training.lr=0.02-seed0"]
    config = stored.config(stored.points()[1])
    assert config.training.lr == 0.02 and config.preset == "mine"
    assert json.loads(spec.to_json())["files"][str(path)]["preset"] == "mine"


def test_the_field_reference_lists_every_field():
    from pathlib import Path

    from closedloop.config import schema
    from closedloop.core.agents import AGENTS

    text = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    kinds = [cls.config_class for cls in AGENTS.builtin.values()]
    models = [schema.RunConfig, schema.PlantConfig, schema.AgentConfig, *kinds, schema.InitSpec,
              schema.TaskConfig, schema.LossConfig, schema.TrainingConfig,
              schema.EvaluationConfig, schema.RecordingConfig, schema.PerturbationConfig]
    missing = [f"{m.__name__}.{f}" for m in models for f in m.model_fields
               if f"| `{f}` |" not in text and f not in ("plant", "agent", "task", "loss",
                                                         "training", "evaluation", "recording",
                                                         "perturbation")]
    assert not missing, f"docs/config.md lacks {missing} (run scripts/config-reference.py)"


def test_a_perturbation_merges_into_the_plant_and_names_bad_keys(tmp_path):
    config = load_preset("reach-pointmass-curl")
    assert config.plant_at(config.perturbation.epoch - 1).params["curl"] == 0.0
    changed = config.plant_at(config.perturbation.epoch)
    assert changed.params == {"mass": 1.0, "drag": 0.5, "curl": 4.0}    # merged key by key
    for text, words in (("perturbation.plant.dt=-1", "perturbation.plant.dt"),
                        ("perturbation.plant.dtt=1", "perturbation.plant.dtt"),
                        ("perturbation.epoch=0", "'perturbation.epoch'")):
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_preset("reach-pointmass-curl", [text])
