"""`benchmarks.training`'s settings text: the optimiser line is read from the `TrainConfig` a run used (report Q,
item 1: it had claimed "grad clip 1.0 ... (the trainer's defaults)" while `TrainConfig().grad_clip` is 0)."""

from __future__ import annotations

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
