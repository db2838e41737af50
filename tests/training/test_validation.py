"""`distrust`: the failed checks of a training result, one sentence each, and nothing for checks that passed."""

import pytest

from learned_manifold_training.validation import distrust

SELF_FAILED = {"trusted": False, "tangent_disagreement": 0.4, "normal_growth": 0.0, "outside_eigenvalue": 0.9}
NEAR_FAILED = {"trusted": False, "informative": True, "sigma": 8.666, "model_dimension": 16,
               "neighbour_dimension": 1, "tangent_disagreement": 1.5}


def test_passing_or_absent_checks_give_no_reason():
    assert distrust({}) == []
    assert distrust({"self_consistency": {**SELF_FAILED, "trusted": True},
                     "neighbour_check": {**NEAR_FAILED, "trusted": True}}) == []


def test_each_failed_check_gives_one_sentence_with_its_numbers():
    reasons = distrust({"self_consistency": SELF_FAILED, "neighbour_check": NEAR_FAILED})
    assert len(reasons) == 2
    assert "does not agree with itself" in reasons[0] and "outside eigenvalue 0.9" in reasons[0]
    assert "neighbours at sigma=8.666" in reasons[1] and "dimension 16 against 1" in reasons[1]
    assert distrust({"neighbour_check": NEAR_FAILED}) == reasons[1:]


def test_a_vae_that_decodes_the_mean_is_flagged():
    """A VAE whose reconstructions are no better than the data mean (the built-in circle and sphere in R², R³
    collapsed so, silently) gets a reason; a reconstructing one does not."""
    from learned_manifold_training.validation import COLLAPSED_RECONSTRUCTION

    assert distrust({"relative_reconstruction_error": 0.007, "std_growth": 12.0}) == []
    (reason,) = distrust({"relative_reconstruction_error": 0.996})
    assert "barely better than the data mean (error 0.996" in reason and COLLAPSED_RECONSTRUCTION == 0.9


def test_train_vae_prints_the_collapse(tmp_path, capsys):
    from learned_manifold_training.cli import main

    argv = ["train-vae", "circle", "--out", str(tmp_path / "v.lmv"), "--latent-dim", "1", "--steps", "40",
            "--std-steps", "20", "--num-points", "300", "--hidden", "16", "--depth", "1", "--no-progress",
            "--device", "cpu"]
    assert main(argv) == 0  # 40 steps: reconstructions are the data mean
    assert "warning: the VAE reconstructs held-out points barely better than the data mean" in capsys.readouterr().err


def test_a_narrow_training_range_gets_its_own_grid_not_a_bandwidth_it_never_trained_at():
    """With σ ∈ [0.3, 0.45]·s no grid value s·2^(i−6) lies inside the range; the default was then s/16, outside."""
    import torch

    from learned_manifold.models import MetricModel, ModelConfig
    from learned_manifold_training.validation import select_sigma, sigma_grid

    model = MetricModel(ModelConfig(data_shape=(2,), rank=2, sigma_min=0.3, sigma_max=0.45,
                                    arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    grid = sigma_grid(model)
    assert grid == pytest.approx([0.3, (0.3 * 0.45) ** 0.5, 0.45])
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    sigma, rule, table = select_sigma(model, x)
    assert 0.3 <= sigma <= 0.45 and len(table) == 3 and "training range's ends and middle" in rule
