"""Smoke tests of the recipe-cost and UNet-speed benchmarks (issue 14): ``--quick`` runs report every setting with
finite rates. The ratios themselves are the benchmarks' claims (``benchmarks/results/cpu/``), not asserted here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import training, unet_speed  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_recipe_only_compares_every_recipe_with_the_plain_step(tmp_path):
    training.main(["--quick", "--recipe-only", "--rounds", "1", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "training_recipe.json").read_text())
    recipe = record["results"]["recipe_vs_plain"]
    assert recipe["status"] == "ok" and len(recipe["rounds"]) == 1
    rates = recipe["rounds"][0]["samples_per_s"]
    assert set(rates) == {*training.RECIPES, "plain"} and all(_positive(v) for v in rates.values())
    assert set(recipe["ratio_median"]) == set(training.RECIPES)
    assert all(_positive(v) for v in recipe["ratio_median"].values())
    report = (tmp_path / "training_recipe.md").read_text()
    assert recipe["network"]["rank"] == 16
    assert all(f"{name} / plain" in report for name in training.RECIPES)
    # a whole run is the step-weighted harmonic mean of its two phases: between them, and exact for equal phases
    # (each with its own warm-up phase: the narrow denoiser's run starts with the narrow denoiser alone)
    ratio, whole = recipe["rounds"][0]["ratio"], recipe["rounds"][0]["whole_run_ratio"]
    assert set(whole) == set(training.RECIPES) - {training.DENOISER_ALONE, training.NARROW_ALONE}
    for name, value in whole.items():
        alone = ratio[training.ALONE_PHASE.get(name, training.DENOISER_ALONE)]
        assert min(ratio[name], alone) <= value <= max(ratio[name], alone), name
    assert whole[training.NARROW] == pytest.approx(training.whole_run_ratio(
        ratio[training.NARROW], ratio[training.NARROW_ALONE], recipe["denoiser_warmup"]))
    assert training.whole_run_ratio(0.5, 1.5, 0.5) == pytest.approx(0.75)


def test_unet_speed_quick_times_both_memory_formats(tmp_path):
    results = unet_speed.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    rows = results["8x8"]
    assert set(rows) == {"eager, NCHW", "eager, channels-last"}
    for row in rows.values():
        assert row["status"] == "ok" and _positive(row["samples_per_s"]), row
    assert "| eager, channels-last |" in (tmp_path / "unet_speed.md").read_text()  # a quick run wrote nothing
