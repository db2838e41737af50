"""Which network a run trains: ``backbone`` and ``preset`` of `TrainConfig`, and the CLI's ``--backbone``/``--preset``.

Rule (``backbone="auto"``): points of shape ``(H, W)`` or ``(C, H, W)`` with ``H, W ≥ 4`` are images and get the
UNet (preset ``"small"`` unless one is named, rank = the preset's capped at ``D``); everything else gets the MLP
with ``hidden``/``depth``/``emb_dim`` and rank ``min(D, 16)``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from learned_manifold import load_model
from learned_manifold.unet import unet_preset
from learned_manifold_training.cli import build_parser, main
from learned_manifold_training.config import TrainConfig, is_image_shape


@pytest.mark.parametrize("shape, image", [
    ((8, 8), True), ((1, 8, 8), True), ((3, 32, 32), True), ((4, 4), True), ((1, 28, 28), True),
    ((64,), False), ((3, 3), False), ((2, 8), False), ((8, 3), False), ((1, 3, 8), False), ((1, 2, 8, 8), False),
])
def test_the_image_rule(shape, image):
    assert is_image_shape(shape) is image


def test_auto_picks_the_unet_for_images_and_the_mlp_otherwise():
    cfg = TrainConfig(hidden=32, depth=2, emb_dim=16)
    with pytest.warns(UserWarning, match="hidden, depth, emb_dim size the MLP only and are ignored"):
        assert cfg.model_spec((1, 8, 8)) == ("unet", unet_preset("small")["arch_kwargs"], 16)
    mlp = {"hidden": 32, "depth": 2, "emb_dim": 16}  # the norm feature "auto": the trainer adds it from the data
    assert cfg.model_spec((10,)) == ("film_mlp", mlp, 10)
    assert cfg.model_spec((3, 3)) == ("film_mlp", mlp, 9)
    assert TrainConfig(backbone="mlp").model_spec((1, 8, 8))[0] == "film_mlp"
    assert TrainConfig(backbone="unet").model_spec((2, 3))[0] == "unet"  # explicit: small images allowed


def test_the_unet_rank_defaults_to_the_presets_capped_at_D_and_an_explicit_rank_wins():
    mnist = TrainConfig(preset="mnist")
    assert mnist.model_spec((1, 28, 28)) == ("unet", unet_preset("mnist")["arch_kwargs"], 100)
    assert mnist.model_spec((1, 8, 8))[2] == 64  # D = 64 < 100
    assert TrainConfig(preset="mnist", rank=5).model_spec((1, 28, 28))[2] == 5
    assert TrainConfig(loss="full").model_spec((1, 4, 4))[2] == 16  # the full loss needs rank = D
    with pytest.raises(ValueError, match="rank must be at most the data dimension D = 64"):
        TrainConfig(rank=65).model_spec((8, 8))


@pytest.mark.parametrize("kwargs, shape, message", [
    ({"backbone": "cnn"}, None, "backbone must be one of auto, mlp, unet"),
    ({"preset": "imagenet"}, None, "preset must be one of"),
    ({"preset": "small", "backbone": "mlp"}, None, "needs backbone 'unet' or 'auto'"),
    ({"preset": "small"}, (10,), r"points of shape \(10,\) are not images"),
    ({"backbone": "unet"}, (10,), r"backbone 'unet' needs image points of shape \(H, W\) or \(C, H, W\)"),
    ({"backbone": "unet"}, (1, 2, 8, 8), "backbone 'unet' needs image points"),
])
def test_a_backbone_or_preset_that_does_not_fit_is_one_clear_error(kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs).model_spec(shape)


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_the_cli_flags_reach_the_config_and_list_the_presets(tmp_path, capsys):
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    text = train_parser.format_help()
    for name in ("small", "mnist", "cifar10", "celeba64", "ffhq256"):
        assert name in text
    assert "--backbone" in text and "--preset" in text
    data = tmp_path / "images.npy"
    np.save(data, np.random.default_rng(0).random((80, 6, 6), dtype=np.float32))
    out = tmp_path / "m.lmm"
    small = ["--steps", "2", "--batch-size", "8", "--no-progress", "--device", "cpu", "--checkpoint-every", "0"]
    assert main(["train", str(data), "--out", str(out), "--backbone", "unet", "--preset", "small", "--rank", "3",
                 *small]) == 0
    model = load_model(out)
    assert model.config.arch == "unet" and model.config.rank == 3 and model.config.data_shape == (6, 6)
    # a preset on non-image data: one line naming the option, exit status 2, nothing written
    flat = tmp_path / "flat"
    flat.mkdir()
    np.save(flat / "points.npy", np.zeros((80, 5), dtype=np.float32) + np.arange(80)[:, None])
    capsys.readouterr()
    assert main(["train", str(flat / "points.npy"), "--out", str(flat / "m.lmm"), "--preset", "mnist", *small]) == 2
    err = capsys.readouterr().err
    assert "--preset mnist is a UNet preset" in err and len(err.splitlines()) == 1, err
    assert os.listdir(flat) == ["points.npy"]
    with pytest.raises(SystemExit) as stop:  # argparse's own error for an unknown choice
        main(["train", str(data), "--out", str(out), "--preset", "bogus", *small])
    assert stop.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
