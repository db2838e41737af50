"""Input scaling ``c_in(σ)`` of the networks (issue 12, item 1): what it computes, how it is stored, how old
model files keep their behaviour, and that the trainer's default uses it."""

import json

import pytest
import torch
from safetensors.torch import save as st_save

from learned_manifold import load_model
from learned_manifold.model_file import FORMAT, VERSION, checksum, save_model
from learned_manifold.models import LEGACY_DEFAULTS, MetricModel, ModelConfig, input_scale
from learned_manifold_training.data import Sphere
from learned_manifold_training.trainer import TrainConfig, train

NET = {"hidden": 16, "depth": 1, "emb_dim": 8}


def _model(scaling: str, seed: int = 0, D: int = 5) -> MetricModel:
    torch.manual_seed(seed)
    return MetricModel(ModelConfig(data_shape=(D,), rank=2, arch_kwargs=NET, input_scaling=scaling))


def test_input_scale_gives_noisy_standardised_points_unit_rms_norm():
    """For standardised data (E‖z‖² = 1), ``c_in(σ) (z + σε)`` has mean squared norm 1 at every bandwidth,
    while the raw noisy point grows as ``1 + Dσ²``; ``c_in → 1`` as σ → 0."""
    g = torch.Generator().manual_seed(0)
    D, n = 10, 200_000
    z = torch.randn(n, D, generator=g, dtype=torch.float64) / D**0.5  # E‖z‖² = 1
    for sigma in (1e-3, 0.1, 1.0, 4.0):
        y = z + sigma * torch.randn(n, D, generator=g, dtype=torch.float64)
        c = input_scale(torch.full((n,), sigma, dtype=torch.float64), D)
        assert (c[:, None] * y).pow(2).sum(-1).mean().item() == pytest.approx(1.0, rel=0.01)
        assert y.pow(2).sum(-1).mean().item() == pytest.approx(1 + D * sigma**2, rel=0.01)
    assert input_scale(torch.tensor([1e-6]), 64).item() == pytest.approx(1.0, abs=1e-9)


def test_unit_scaling_feeds_both_networks_c_in_times_the_point():
    """A ``"unit"`` model is a ``"none"`` model with the same weights evaluated at ``c_in(σ) z``: factor and
    denoiser, for per-point and for one shared bandwidth."""
    unit, plain = _model("unit"), _model("none")
    plain.load_state_dict(unit.state_dict())
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 5, generator=g)
    for sigma in (torch.rand(7, generator=g) * 3 + 0.01, torch.tensor([2.5])):
        c = input_scale(sigma, 5).reshape(-1, 1)
        torch.testing.assert_close(unit.factor_z(z, sigma), plain.factor_z(c * z, sigma))
        torch.testing.assert_close(unit.noise_z(z, sigma), plain.noise_z(c * z, sigma))
        assert not torch.allclose(unit.factor_z(z, sigma), plain.factor_z(z, sigma), atol=1e-4)


def test_public_denoise_applies_the_scaling_in_data_units():
    """``denoise`` in data units goes through the scaled network: ``x̂ = y − σ F(c_in (y − μ)/s)`` (SPEC §1, §3)."""
    torch.manual_seed(2)
    cfg = ModelConfig(data_shape=(4,), rank=2, arch_kwargs=NET, input_scaling="unit")
    mean = torch.tensor([0.5, -1.0, 2.0, 0.0])
    model = MetricModel(cfg, scale=3.0, mean=mean)
    y = torch.randn(6, 4)
    sigma = 0.7
    zs = (y - mean) / 3.0
    sz = torch.full((1,), sigma / 3.0)
    F = model.denoiser_net(zs * input_scale(sz, 4), sz).squeeze(-1)
    torch.testing.assert_close(model.denoise(y, sigma), y - sigma * F)


def test_bad_input_scaling_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="input_scaling"):
        ModelConfig(data_shape=(3,), rank=2, input_scaling="edm")
    with pytest.raises(ValueError, match="input_scaling"):
        ModelConfig(data_shape=(3,), rank=2, input_scaling=None)
    with pytest.raises(ValueError, match="input_scaling"):
        TrainConfig(input_scaling="bogus")


def test_the_scaling_is_stored_in_the_model_file(tmp_path):
    """A saved ``"unit"`` model loads as ``"unit"`` and gives the same factor."""
    model = _model("unit", seed=3)
    path = save_model(model, tmp_path / "m.lmm")
    loaded = load_model(path)
    assert loaded.config.input_scaling == "unit"
    x = torch.randn(4, 5)
    torch.testing.assert_close(loaded.factor(x, 0.3), model.factor(x, 0.3))


def test_a_file_written_before_the_field_loads_with_the_old_behaviour(tmp_path):
    """A model file whose config lacks ``input_scaling`` (written before it existed) loads unscaled, as it was
    trained: its outputs are those of the raw network on the standardised point."""
    model = _model("none", seed=4)
    config = model.config.to_dict()
    del config["input_scaling"]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path / "old.lmm"
    metadata = {"format": FORMAT, "version": VERSION, "config": json.dumps(config), "extra": "{}"}
    metadata["sha256"] = checksum(metadata, state)  # as the writer of this version did
    path.write_bytes(st_save(state, metadata=metadata))
    loaded = load_model(path)
    assert loaded.config.input_scaling == LEGACY_DEFAULTS["input_scaling"] == "none"
    x = torch.randn(4, 5)
    torch.testing.assert_close(loaded.factor(x, 2.0), model.factor_net(x, torch.tensor([2.0])))


def test_from_dict_still_requires_every_other_field():
    """Only the legacy fields may be missing from a complete (file) config."""
    config = ModelConfig(data_shape=(3,), rank=2).to_dict()
    del config["sigma_rule"]
    with pytest.raises(ValueError, match="sigma_rule"):
        ModelConfig.from_dict(config, complete=True)


@pytest.mark.parametrize("scaling", ["none", "unit"])
@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_training_passes_the_scaling_to_the_model_and_its_file(tmp_path, scaling):
    """`TrainConfig.input_scaling` reaches the trained model and its file. The default, ``"auto"``, resolves to
    ``"none"`` or ``"gaussian"`` from the data (`tests/training/test_factor_target.py`)."""
    assert TrainConfig().input_scaling == "auto"
    sphere = Sphere(2, 3)
    data = sphere.sample(300, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=5, batch_size=32, rank=3, hidden=16, depth=1, emb_dim=8, val_points=50,
                      input_scaling=scaling)
    result = train(data, cfg, out=tmp_path / "s.lmm", progress=False, device="cpu")
    assert result.model.config.input_scaling == scaling
    assert load_model(tmp_path / "s.lmm").config.input_scaling == scaling
