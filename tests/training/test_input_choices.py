"""What the trainer decides from the data before the first step (`learned_manifold_training.input_choices`): the
norm feature under ``norm_feature="auto"``, and the reason the model file records."""

import pytest
import torch

from learned_manifold.model_file import read_metadata
from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.config import NORM_SPREAD, TrainConfig
from learned_manifold_training.data import Sphere, SwissRoll, Torus
from learned_manifold_training.input_choices import choose_norm_feature
from learned_manifold_training.trainer import train

SMALL = {"batch_size": 32, "hidden": 16, "depth": 1, "emb_dim": 8, "precision": "fp32"}


def _rows(data: torch.Tensor) -> TrainingRows:
    return TrainingRows(data, val_points=50, seed=0, batch_size=32, device=torch.device("cpu"))


@pytest.mark.parametrize(("manifold", "on"), [(Sphere(8, 64), True), (Sphere(2, 10), True), (Sphere(1, 2), True),
                                              (Torus(3), False), (SwissRoll(10, scale=1.0), False)])
def test_auto_turns_the_norm_feature_on_for_data_near_a_sphere_about_their_mean(manifold, on):
    """Spheres (centred anywhere, any scale) have distances from their mean that vary by about 1%; the torus and
    the swiss roll by about 23%. The spread is measured, not looked up: shifting and scaling the data changes
    nothing, and the reason names the rule and the spread."""
    data = manifold.sample(3000, generator=torch.Generator().manual_seed(0))
    chosen, why = choose_norm_feature(TrainConfig(), _rows(data), "film_mlp")
    assert chosen is on and why["chosen"] is on
    assert (why["norm_spread"] < NORM_SPREAD) is on
    moved = choose_norm_feature(TrainConfig(), _rows(data * 7.0 + 3.0), "film_mlp")[1]
    assert moved["norm_spread"] == pytest.approx(why["norm_spread"], rel=1e-4)
    assert "auto" in why["rule"]


def test_forced_settings_and_the_unet_are_not_measured():
    data = Sphere(2, 10).sample(500, generator=torch.Generator().manual_seed(0))
    rows = _rows(data)
    assert choose_norm_feature(TrainConfig(norm_feature=False), rows, "film_mlp") == (False, {
        "chosen": False, "rule": "asked for"})
    assert choose_norm_feature(TrainConfig(norm_feature=True), rows, "film_mlp")[0] is True
    assert choose_norm_feature(TrainConfig(norm_feature=True), rows, "unet")[0] is False


@pytest.mark.parametrize(("manifold", "on"), [(Sphere(2, 10), True), (Torus(3), False)])
def test_a_run_builds_the_network_it_chose_and_the_file_says_why(tmp_path, manifold, on):
    data = manifold.sample(600, generator=torch.Generator().manual_seed(0))
    out = tmp_path / "m.lmm"
    result = train(data, TrainConfig(steps=2, val_points=50, **SMALL), out=out, progress=False)
    assert result.model.config.arch_kwargs.get("norm_feature", False) is on
    assert (result.model.factor_net.norm_in is not None) is on
    assert read_metadata(out)["extra"]["norm_feature"]["chosen"] is on


def test_a_bad_value_is_refused_naming_the_field():
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="norm_feature must be True or False or 'auto'"):
            TrainConfig(norm_feature=bad)
