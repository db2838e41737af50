"""`TrainConfig` (`learned_manifold_training.config`): messages of the checks that need the data's shape."""

import pytest

from learned_manifold_training.config import TrainConfig


@pytest.mark.parametrize("name", ["factor_hidden", "denoiser_hidden"])
@pytest.mark.parametrize(("backbone", "why"), [("unet", "backbone 'unet' was asked for"),
                                               ("auto", "backbone auto chooses it for images; see is_image_shape")])
def test_an_mlp_width_on_unet_data_names_why_the_unet_trains(name, backbone, why):
    """The error said "backbone auto chooses it for images" even where ``backbone="unet"`` was given: it names the
    reason that holds, and what to do."""
    cfg = TrainConfig(backbone=backbone, **{name: 64})
    with pytest.raises(ValueError) as err:
        cfg.model_spec((1, 8, 8))
    assert str(err.value) == (f"{name} sizes the MLP {'factor network' if name == 'factor_hidden' else 'denoiser'}, "
                              f"but points of shape (1, 8, 8) train the UNet ({why}): leave it out (preset sizes "
                              "the UNet), or choose backbone 'mlp'")
    assert TrainConfig(backbone="mlp", **{name: 64}).model_spec((1, 8, 8))[0] == "film_mlp"
