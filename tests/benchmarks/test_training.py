"""`benchmarks.training`'s settings text: the optimiser line is read from the `TrainConfig` a run used (report Q,
item 1: it had claimed "grad clip 1.0 ... (the trainer's defaults)" while `TrainConfig().grad_clip` is 0)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import training  # noqa: E402
from benchmarks.common import optimizer_settings, sphere_points  # noqa: E402
from learned_manifold_training.trainer import TrainConfig  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # as the other benchmark smoke tests


def test_run_reports_the_optimizer_it_trained_with():
    cfg = training.settings_for(torch.device("cpu"), True)
    cfg["warmup_steps"], cfg["measured_steps"], cfg["batch"] = 1, 2, 32
    result = training._run(sphere_points(300, torch.device("cpu")), cfg, torch.device("cpu"), "fp32", False)
    assert result["status"] == "ok", result.get("error")
    assert result["optimizer"] == optimizer_settings(TrainConfig())
    assert "no gradient clipping" in result["optimizer"] and "clip 1.0" not in result["optimizer"]


def _fake_run(calls: list):
    """A stand-in for `training_speed._run`: instant rates, and the call stopped (as by the suite's cap) when
    ``calls`` reaches a given length."""
    def run(data, cfg, device, precision, compile_, recipe=None):
        calls.append((precision, compile_, recipe))
        if len(calls) == calls_before_stop[0]:
            raise KeyboardInterrupt("stopped by the suite's cap")
        return {"status": "ok", "steady_samples_per_s": 100.0 * len(calls), "overall_samples_per_s": 90.0,
                "first_step_s": 0.1, "precision": "fp32" if precision == "auto" else precision,
                "precision_probe": None, "model_config": {"rank": 16}, "optimizer": optimizer_settings(TrainConfig())}
    calls_before_stop = [0]
    return run, calls_before_stop


def test_a_run_stopped_part_way_keeps_the_settings_and_rounds_it_finished(tmp_path, monkeypatch):
    # training.json was written only at the end: the GPU suite's cap on the step left nothing (tester F, item 5)
    calls: list = []
    run, stop_at = _fake_run(calls)
    monkeypatch.setattr(training, "_run", run)
    monkeypatch.setattr(training, "_plain_rate", lambda data, cfg, device, network: 50.0)
    argv = ["--quick", "--threads", "1", "--no-accuracy", "--out", str(tmp_path)]
    stop_at[0] = 5  # the auto setting, after the four precision/compile settings
    with pytest.raises(KeyboardInterrupt):
        training.main(argv)
    record = json.loads((tmp_path / "training.json").read_text())
    assert list(record["results"]["speed"]) == list(training.SETTINGS)
    assert record["results"]["recipe_vs_plain"] == {"status": "not run yet"}
    assert record["settings"]["progress"].startswith("partial")
    assert [row[0] for row in record["tables"][0]["rows"]] == list(training.SETTINGS)
    # stopped in the third of three recipe rounds: the two rounds done are kept, with their medians
    calls.clear()
    stop_at[0] = 5 + 2 * len(training.RECIPES) + 1
    with pytest.raises(KeyboardInterrupt):
        training.main([*argv, "--rounds", "3"])
    recipe = json.loads((tmp_path / "training.json").read_text())["results"]["recipe_vs_plain"]
    assert recipe["status"] == "partial: 2 of 3 rounds" and len(recipe["rounds"]) == 2
    assert set(recipe["ratio_median"]) == set(training.RECIPES)
    calls.clear()
    stop_at[0] = 0
    done = training.main([*argv, "--rounds", "2"])
    assert done["recipe_vs_plain"]["status"] == "ok" and len(done["recipe_vs_plain"]["rounds"]) == 2
    assert json.loads((tmp_path / "training.json").read_text())["settings"]["progress"] == "complete"
