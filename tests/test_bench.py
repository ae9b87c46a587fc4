"""The benchmark suite: its naive baseline computes what closedloop computes, and the command
runs and reports ratios."""

from __future__ import annotations

import json

import pytest
import torch

from closedloop.bench.naive import NaiveRNN, naive_closed_loop_loss
from closedloop.cli import main
from closedloop.config import load_preset
from closedloop.training import Trainer


@pytest.mark.parametrize("preset", ["di-tanh-closed", "tracking-closed"])
def test_naive_baseline_computes_the_same_loss(preset):
    trainer = Trainer(load_preset(preset))
    config = trainer.config
    batch = trainer.draw_batch()
    net = NaiveRNN({k: v.detach() for k, v in trainer.params.items()}, config.agent.activation,
                   config.agent.dt / config.agent.tau)
    naive = naive_closed_loop_loss(net, batch.x0, config.task.steps, config.loss.control_cost,
                                   batch.reference, config.plant.dt, config.plant.clamp)
    ours = trainer.loss(batch)
    assert float(naive.detach()) == pytest.approx(float(ours.detach()), rel=1e-5)
    naive.backward()
    ours.backward()
    torch.testing.assert_close(net.W.grad, trainer.params["W"].grad, rtol=1e-4, atol=1e-6)


def test_bench_command_reports_ratios(capsys):
    assert main(["bench", "--quick", "--only", "eigenvalues,memory", "--json"]) == 0
    results = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["eigenvalues of P"]["ratio"] > 1.0
    memory = results["recording memory"]
    assert memory["ours"] < 200
    assert memory["notes"]["epochs"] > 0


def test_bench_rejects_unknown_names(capsys):
    assert main(["bench", "--only", "nonsense"]) == 2
    assert "unknown benchmark nonsense" in capsys.readouterr().err
