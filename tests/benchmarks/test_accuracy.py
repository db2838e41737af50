"""`benchmarks.accuracy`'s settings text: it states the optimiser the trainings actually ran with (report Q, item 1:
it had claimed "clip 1.0" while `TrainConfig().grad_clip` is 0)."""

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

from benchmarks import accuracy  # noqa: E402
from benchmarks.common import optimizer_settings  # noqa: E402
from learned_manifold_training.trainer import TrainConfig  # noqa: E402


def test_optimizer_settings_read_the_config():
    assert TrainConfig().grad_clip == 0.0
    text = optimizer_settings(TrainConfig())
    assert "no gradient clipping (grad_clip=0)" in text and "clip 1.0" not in text
    assert "EMA 0.999" in text and "lr 0.002" in text
    assert "gradient clipping at norm 1.5" in optimizer_settings(TrainConfig(grad_clip=1.5, ema=0.99))
    assert "EMA 0.99," in optimizer_settings(TrainConfig(ema=0.99))


def test_accuracy_settings_describe_the_recipes_configs():
    cfg = accuracy.settings_for(torch.device("cpu"), True, None, None)
    cfg["precision"], cfg["seed"] = "fp32", 0
    for recipe in accuracy.RECIPES:
        config = accuracy._recipe_config(recipe, cfg)
        assert config.grad_clip == 0.0  # what the benchmark trains with: no clipping
        assert "no gradient clipping" in optimizer_settings(config)


@pytest.mark.filterwarnings("ignore::UserWarning")  # a 30-step training's health notes, as the other smoke tests
def test_a_run_stopped_part_way_keeps_the_rows_it_finished(tmp_path, monkeypatch):
    # the report was written only at the end: the GPU suite's cap on the step left nothing (tester F, item 5)
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("stopped by the suite's cap")

    monkeypatch.setattr(accuracy, "tune_knn", stopped)
    with pytest.raises(KeyboardInterrupt):
        accuracy.main(["--quick", "--threads", "1", "--recipes", "centred", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "accuracy.json").read_text())
    assert [(r["N"], r["method"]) for r in record["results"]["rows"]] == [(400, "centred")]
    assert record["settings"]["rows"].startswith("1 of 3 so far")
    assert len(record["tables"][0]["rows"]) == 1 and (tmp_path / "accuracy.md").exists()
