"""``benchmarks/recipe.py --quick``: each candidate trains, is scored against the closed form next to tuned
centred k-NN, and trains what its overrides say (checked on the saved models)."""

from __future__ import annotations

import math

import pytest

from benchmarks.recipe import main
from learned_manifold import load_model


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # quick run
def test_each_candidate_is_scored_and_its_model_has_what_the_candidate_asks_for(tmp_path):
    results = main(["--quick", "--threads", "1", "--data", "torus", "--candidates", "default", "norm-feature",
                    "--seeds", "0", "--save-models", str(tmp_path), "--out", str(tmp_path / "report")])
    torus = results["torus"]
    assert set(torus["runs"]) == {"default", "norm-feature"}
    for rows in torus["runs"].values():
        assert [row["seed"] for row in rows] == [0]
        assert math.isfinite(rows[0]["tangent_error"]) and 0 <= rows[0]["dimension_accuracy"] <= 1
    assert torus["knn_centred"]["test"]["tangent_error"] < 0.5  # 400 torus points: k-NN is already close
    with_feature = load_model(tmp_path / "torus-norm-feature-seed0.lmm")  # forced on
    assert with_feature.factor_net.norm_in is not None and with_feature.denoiser_net.norm_in is not None
    default = load_model(tmp_path / "torus-default-seed0.lmm")  # "auto": the torus is no sphere, so off
    assert default.factor_net.norm_in is None and default.denoiser_net.norm_in is None
    md = (tmp_path / "report" / "recipe.md").read_text()  # a quick run wrote nothing
    assert "| setting: quick | True |" in md and (tmp_path / "report" / "recipe.json").exists()
