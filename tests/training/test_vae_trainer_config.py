"""`VAETrainConfig` holds the rules it shares with `VAEConfig` and `train` once: the conv backbone's width, the
image rule of ``arch="auto"`` (`is_image_shape`) and the step limit (`config.MAX_STEPS`)."""

import pytest

from learned_manifold_training.config import MAX_STEPS
from learned_manifold_training.vae_trainer import VAETrainConfig


def test_a_conv_backbone_too_wide_is_refused_by_the_config_before_any_data():
    """``channels · 2**depth`` beyond the widest layer was refused only by `vae_config`, after the data were read."""
    with pytest.raises(ValueError, match=r"channels \* 2\*\*depth = 131072 exceeds 65536"):
        VAETrainConfig(latent_dim=2, arch="conv", channels=512, depth=8)
    assert VAETrainConfig(latent_dim=2, arch="conv", channels=256, depth=8).channels == 256  # at the limit


def test_the_width_rule_is_the_conv_backbones_only():
    """An MLP (or ``auto``, which may pick one) ignores ``channels``: the same sizes are accepted there."""
    assert VAETrainConfig(latent_dim=2, arch="mlp", channels=512, depth=8).depth == 8


@pytest.mark.parametrize(("shape", "arch"), [((28, 28), "conv"), ((1, 8, 8), "conv"), ((4, 4), "conv"),
                                             ((3, 3), "mlp"), ((100, 3), "mlp"), ((2, 3), "mlp"),
                                             ((5, 2, 2), "mlp"), ((64,), "mlp")])
def test_auto_calls_images_what_train_calls_images(shape, arch):
    """``train-vae --arch auto`` took every 2- or 3-axis point for an image; `train --backbone auto` asks for
    ``H, W ≥ 4`` (`is_image_shape`): one rule, so a (100, 3) point cloud per sample is no image for either."""
    assert VAETrainConfig(latent_dim=2).vae_config(shape, 100).arch == arch


def test_the_step_limit_is_trains():
    VAETrainConfig(latent_dim=2, steps=MAX_STEPS, std_steps=MAX_STEPS, checkpoint_every=MAX_STEPS)
    for name in ("steps", "std_steps", "checkpoint_every"):
        with pytest.raises(ValueError, match=rf"{name} must be in \[\d, {MAX_STEPS}\]"):
            VAETrainConfig(latent_dim=2, **{name: MAX_STEPS + 1})
