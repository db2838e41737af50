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


@pytest.mark.parametrize(("settings", "named"), [
    ({"hidden": 999}, "hidden sizes"), ({"depth": 7}, "depth sizes"), ({"emb_dim": 3}, "emb_dim sizes"),
    ({"final_norm": True}, "final_norm sizes"), ({"norm_feature": False}, "norm_feature sizes"),
    ({"hidden": 999, "emb_dim": 3}, "hidden, emb_dim size"),
])
def test_the_mlps_sizes_are_refused_with_the_unet_and_named_where_auto_chooses_it(settings, named):
    """On images the UNet trains, and ``hidden``, ``depth``, ``emb_dim``, ``final_norm`` and ``norm_feature`` did
    nothing, silently, while ``factor_hidden`` was refused: with ``backbone="unet"`` they are refused when the config
    is built; where ``"auto"`` chooses the UNet (one config may serve flat data too) a warning names them, once per
    config (`train` asks twice); on flat data they act and nothing is said."""
    them = "it" if "," not in named else "them"
    with pytest.raises(ValueError) as err:
        TrainConfig(backbone="unet", **settings)
    assert str(err.value) == (f"{named} the MLP only, but backbone 'unet' trains the UNet (preset sizes it): "
                              f"leave {them} out, or choose backbone 'mlp'")
    cfg = TrainConfig(**settings)
    verb = "is" if them == "it" else "are"
    with pytest.warns(UserWarning) as caught:
        assert cfg.model_spec((1, 8, 8))[0] == "unet"
        cfg.model_spec((1, 8, 8))
    assert [str(w.message) for w in caught] == [
        f"{named} the MLP only and {verb} ignored: points of shape (1, 8, 8) train the UNet (backbone auto chooses it "
        "for images; see is_image_shape), which preset sizes; choose backbone 'mlp' to train the MLP"]
    assert TrainConfig(**settings).model_spec((10,))[0] == "film_mlp"  # no warning: an error under pytest


def test_the_unets_defaults_and_its_own_settings_say_nothing():
    """Left at their defaults the MLP's sizes raise nothing with the UNet, nor do its own settings."""
    assert TrainConfig(backbone="unet", preset="mnist", rank=8).model_spec((1, 8, 8))[0] == "unet"
    assert TrainConfig().model_spec((3, 8, 8))[0] == "unet"


@pytest.mark.parametrize("scaling", ["none", "unit"])
def test_gaussian_rank_is_refused_where_no_gaussian_model_is_built(scaling):
    """``TrainConfig(input_scaling="none", gaussian_rank=3)`` was accepted and did nothing, though `ModelConfig`
    refuses the same combination; "auto" may choose the Gaussian model, so it keeps the setting."""
    with pytest.raises(ValueError) as err:
        TrainConfig(input_scaling=scaling, gaussian_rank=3)
    assert str(err.value) == (f"gaussian_rank acts on input_scaling 'gaussian' (or 'auto', which may choose it) only, "
                              f"but input_scaling is {scaling!r}: leave gaussian_rank out, or choose 'gaussian'")
    TrainConfig(input_scaling=scaling)
    for scaling in ("auto", "gaussian"):
        assert TrainConfig(input_scaling=scaling, gaussian_rank=3).gaussian_rank == 3


def test_one_landmark_is_refused_when_configured():
    """``landmarks=1`` trained, but its model file could not be opened as a manifold (one point makes no graph)."""
    with pytest.raises(ValueError, match=r"landmarks must be 0 \(store none\) or at least 2.*got 1"):
        TrainConfig(landmarks=1)
    assert TrainConfig(landmarks=0).landmarks == 0 and TrainConfig(landmarks=2).landmarks == 2


def test_the_backbone_choice_lives_in_its_own_module_and_still_warns_at_the_caller():
    """`TrainConfig.model_spec` moved to `backbone_spec.py` (config.py had passed ~450 lines): the method gives the
    module's answer, and its warning still names the line that called the method, not config.py."""
    from learned_manifold_training import backbone_spec

    assert TrainConfig().model_spec((10,)) == backbone_spec.model_spec(TrainConfig(), (10,))
    with pytest.warns(UserWarning, match="the MLP only") as caught:
        TrainConfig(hidden=999).model_spec((1, 8, 8))
    assert [w.filename for w in caught] == [__file__]
