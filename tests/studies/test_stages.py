"""Stage studies and `closedloop analyze` on small real runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from closedloop.analysis.summary import analyze_run, order_parameter_history
from closedloop.analysis.theory import cubic_roots
from closedloop.cli import main
from closedloop.config import load_preset
from closedloop.runs.store import load_run
from closedloop.studies.stages import (
    episode_length_sweep,
    prescribed_overlap_runs,
    reduced_versus_full,
)
from closedloop.training import train

LOWRANK_SMALL = ["agent.size=30", "task.batch_size=20", "recording.segment_epochs=10"]


@pytest.fixture(scope="module")
def lowrank_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("lowrank") / "lowrank.h5"
    train(load_preset("di-lowrank-closed", LOWRANK_SMALL, seed=0, epochs=40), path)
    return load_run(path)


def test_order_parameters_match_snapshots_and_spectrum(lowrank_run):
    history = order_parameter_history(lowrank_run)
    assert history["epoch"].tolist() == list(range(41))
    params = lowrank_run.parameters(17)
    m, z = params["m"][:, 0].astype(float), params["z"][0].astype(float)
    assert history["s_zm"][17] == pytest.approx(float(z @ m), rel=1e-6)
    roots = cubic_roots(*(history[k][17] for k in ("s_zm", "s_zu", "s_vm", "s_vu")))
    recorded = lowrank_run.coupled_eigenvalues[17][:3]
    np.testing.assert_allclose(np.sort_complex(roots), np.sort_complex(recorded), atol=1e-5)


def test_analyze_json(lowrank_run, capsys):
    assert main(["analyze", str(lowrank_run.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("stabilization_epoch", "stages", "crossings", "final_eigenvalues",
                "order_parameters", "boundary_losses"):
        assert key in report
    assert set(report["stages"]) == {"stage1_end", "stage2_end"}
    assert report["stages"]["stage2_end"] == report["stabilization_epoch"]
    assert len(report["order_parameters"]["s_zm"]) == 41
    for crossing in report["crossings"]:
        assert crossing["direction"] in ("in", "out")
        assert len(crossing["eigenvalue"]) == 2
    assert report == analyze_run(lowrank_run).to_json() | {"path": str(lowrank_run.path)}
    assert main(["inspect", str(lowrank_run.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == report["stages"]
    assert main(["analyze", str(lowrank_run.path)]) == 0
    assert "stage 1 ends" in capsys.readouterr().out


def test_prescribed_overlap_runs_start_there_and_are_reused(tmp_path):
    values = [-0.1, 0.1]
    runs = prescribed_overlap_runs(values, epochs=5, overrides=LOWRANK_SMALL, workdir=tmp_path)
    for value, result in zip(values, runs, strict=True):
        start = result.run.parameters(0)
        assert float(start["z"][0] @ start["m"][:, 0]) == pytest.approx(value, rel=1e-6)
        assert result.history["s_zm"][0] == pytest.approx(value, rel=1e-6)
        assert len(result.history["s_zm"]) == 6
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.h5")}
    assert len(stamps) == 2
    prescribed_overlap_runs(values, epochs=5, overrides=LOWRANK_SMALL, workdir=tmp_path)
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.h5")}


def test_episode_length_sweep_starts_from_the_epoch(lowrank_run, tmp_path):
    sweep = episode_length_sweep(lowrank_run, epoch=10, lengths=(10, 30), epochs=4,
                                 workdir=tmp_path)
    assert [s.steps for s in sweep] == [10, 30]
    for result in sweep:
        assert result.run.config.task.steps == result.steps
        for name, value in lowrank_run.parameters(10).items():
            np.testing.assert_array_equal(result.run.parameters(0)[name], value)
        np.testing.assert_allclose(result.eigenvalue[0],
                                   lowrank_run.coupled_eigenvalues[10][0].real
                                   + 1j * abs(lowrank_run.coupled_eigenvalues[10][0].imag))


def test_reduced_model_starts_exactly_where_the_full_model_is(lowrank_run, tmp_path):
    """The reduction is exact: from the same epoch and batch, the first training loss and the
    spectrum agree; afterwards only the gradient flows differ."""
    comparisons = reduced_versus_full(lowrank_run, control_costs=(0.0, 2.0), start_epoch=20,
                                      epochs=6, workdir=tmp_path)
    for comparison in comparisons:
        full, reduced = comparison.full, comparison.reduced
        assert full.config.loss.control_cost == comparison.control_cost
        assert reduced.config.agent.kind == "overlaps"
        assert reduced.metrics["train_loss"][1] == pytest.approx(full.metrics["train_loss"][1],
                                                                 rel=1e-5)
        np.testing.assert_allclose(reduced.coupled_eigenvalues[0][:3],
                                   full.coupled_eigenvalues[0][:3], atol=1e-5)
        p = {k: v.astype(float) for k, v in lowrank_run.parameters(20).items()}
        m, z, u, v = p["m"][:, 0], p["z"][0], p["u"][:, 0], p["v"][:, 0]
        expected = {"s_zm": z @ m, "s_zu": z @ u, "s_vm": v @ m, "s_vu": v @ u}
        start = reduced.parameters(0)
        for name, value in expected.items():
            assert float(start[name]) == pytest.approx(value, rel=1e-5), name
        assert np.isfinite(comparison.loss_gap())


@pytest.mark.slow
def test_paper_lowrank_run_goes_through_three_stages(tmp_path):
    """di-lowrank-closed --seed 0 at full size: a merge, a settled stage 1, stabilisation, and a
    drop of the loss by orders of magnitude."""
    path = tmp_path / "lowrank.h5"
    train(load_preset("di-lowrank-closed", seed=0), path)
    report = analyze_run(load_run(path))
    stage1, stage2 = report.stages.stage1_end, report.stages.stage2_end
    assert stage1 is not None and stage2 is not None and stage1 < stage2
    assert report.merges and report.merges[0].epoch <= stage1
    run = load_run(path)
    assert run.metrics["spectral_radius"][-1] < 1
    assert run.metrics["test_loss"][-1] < 1e-3 * run.metrics["test_loss"][0]
