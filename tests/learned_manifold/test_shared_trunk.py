"""A shared trunk (`ModelConfig.shared_trunk`): one backbone whose ``r + 1`` output columns are the factor head
and the denoiser head (SPEC §3–§4, §9). What it computes, what a query of one head costs, how it is stored, and
that files written before the field existed load as the two networks they hold."""

import json

import pytest
import torch
from safetensors.torch import save as st_save

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.heads import head_columns
from learned_manifold.model_file import FORMAT, VERSION, checksum, read_metadata
from learned_manifold.models import LEGACY_DEFAULTS, MAX_RANK, MetricModel, ModelConfig, build_backbone

MLP = {"arch": "film_mlp", "data_shape": (5,), "arch_kwargs": {"hidden": 16, "depth": 2, "emb_dim": 8,
                                                                "out_bias": True}}
UNET = {"arch": "unet", "data_shape": (2, 6, 5), "arch_kwargs": {"channels": 8, "channel_mult": [1, 2], "emb_dim": 16,
                                                                   "groups": 4, "out_bias": True}}


def _model(spec: dict, shared: bool = True, seed: int = 0, **changes) -> MetricModel:
    torch.manual_seed(seed)
    config = ModelConfig(rank=3, shared_trunk=shared, **{**spec, **changes})
    model = MetricModel(config, scale=1.7, mean=torch.randn(config.data_shape))
    with torch.no_grad():  # an untrained output layer is tiny: give every column a visible value
        head = model.trunk.head if shared else model.factor_net.head
        head.weight.normal_(0, 0.3)
        if head.bias is not None:
            head.bias.normal_(0, 0.3)
    return model


def _inputs(model: MetricModel, n: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model.data_shape, generator=g), torch.rand(n, generator=g) + 0.05


@pytest.mark.parametrize("spec", [MLP, UNET], ids=["mlp", "unet"])
def test_the_two_heads_are_the_columns_of_one_trunk(spec):
    """Factor = columns 0..r−1 and noise prediction = column r of one ``(B, D, r + 1)`` pass; the one-pass
    `factor_and_noise_z` a training step uses agrees with the two single-head queries."""
    model = _model(spec)
    z, s = _inputs(model)
    full = model.trunk(z, s)
    D = model.dim
    assert full.shape == (4, D, 4)
    A, noise = model.factor_and_noise_z(z, s)
    assert A.shape == (4, D, 3) and noise.shape == (4, D)
    torch.testing.assert_close(A, full[..., :3])
    torch.testing.assert_close(noise, full[..., 3])
    torch.testing.assert_close(model.factor_z(z, s), A)
    torch.testing.assert_close(model.noise_z(z, s), noise)
    y = z * 1.7
    assert model.factor(y, 0.2).shape == (4, D, 3)
    assert model.denoise(y, 0.2).shape == y.shape


@pytest.mark.parametrize("spec", [MLP, UNET], ids=["mlp", "unet"])
def test_asking_for_some_columns_computes_only_their_rows_of_the_output_layer(spec):
    """``columns=(lo, hi)`` equals the slice of the full output, and its gradient reaches only the output-layer
    rows (MLP) or channels (UNet) of those columns: a one-head query costs what a separate network's head costs."""
    torch.manual_seed(0)
    net = build_backbone(spec["arch"], spec["data_shape"], 4, **spec["arch_kwargs"])
    with torch.no_grad():
        net.head.weight.normal_(0, 0.3)
        net.head.bias.normal_(0, 0.3)
    z = torch.randn(3, *spec["data_shape"])
    s = torch.rand(3) + 0.1
    per = net.head.weight.shape[0] // 4  # D rows (MLP) or C channels (UNet) per column
    for lo, hi in [(0, 3), (3, 4), (1, 2)]:
        part = net(z, s, columns=(lo, hi))
        torch.testing.assert_close(part, net(z, s)[..., lo:hi])
        net.zero_grad()
        part.sum().backward()
        rows = net.head.weight.grad.flatten(1).abs().sum(-1) > 0
        assert rows[lo * per:hi * per].all() and rows.sum() == (hi - lo) * per
    for bad in [(0, 5), (2, 2), (-1, 1)]:
        with pytest.raises(ValueError, match="columns must be"):
            net(z, s, columns=bad)


def test_head_columns_is_the_plain_layer_without_columns():
    layer = torch.nn.Linear(4, 6)
    h = torch.randn(2, 4)
    out, k = head_columns(layer, h, None, 3, 2)
    assert k == 2
    torch.testing.assert_close(out, layer(h))


def test_one_trunk_holds_about_half_the_weights_of_two_networks():
    shared, separate = _model(MLP), _model(MLP, shared=False)
    assert {k.split(".")[0] for k in shared.state_dict()} == {"trunk", "scale", "mean"}
    assert {k.split(".")[0] for k in separate.state_dict()} == {"factor_net", "denoiser_net", "scale", "mean"}
    assert shared.factor_net is None and shared.denoiser_net is None and shared.has_denoiser
    n_shared = sum(p.numel() for p in shared.parameters())
    n_factor = sum(p.numel() for p in separate.factor_net.parameters())
    n_separate = sum(p.numel() for p in separate.parameters())
    # the trunk is the factor network plus one more output column (its D rows and their bias)
    assert n_shared == n_factor + 16 * 5 + 5
    assert n_shared < 0.6 * n_separate


def test_the_config_refuses_a_shared_trunk_without_a_denoiser_naming_the_field():
    with pytest.raises(ValueError, match="shared_trunk needs centred=True"):
        ModelConfig(data_shape=(3,), rank=2, centred=False, shared_trunk=True)
    with pytest.raises(ValueError, match="shared_trunk needs .* rank <"):
        ModelConfig(data_shape=(3,), rank=MAX_RANK, shared_trunk=True)
    with pytest.raises(TypeError, match="shared_trunk must be a bool"):
        ModelConfig(data_shape=(3,), rank=2, shared_trunk=1)


@pytest.mark.parametrize("spec", [MLP, UNET], ids=["mlp", "unet"])
def test_a_shared_trunk_model_saves_and_loads_to_the_same_outputs(spec, tmp_path):
    model = _model(spec, seed=3)
    path = save_model(model, tmp_path / "shared.lmm")
    assert read_metadata(path)["config"]["shared_trunk"] is True
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.trunk is not None
    y, _ = _inputs(model, seed=4)
    torch.testing.assert_close(loaded.factor(y, 0.3), model.factor(y, 0.3))
    torch.testing.assert_close(loaded.denoise(y, 0.3), model.denoise(y, 0.3))


def _write(path, state: dict, config: dict) -> None:
    """Write ``state`` with ``config`` as a writer of this format version did: with its checksum (a version-2 file
    without one is refused as edited)."""
    state = {k: v.contiguous() for k, v in state.items()}
    metadata = {"format": FORMAT, "version": VERSION, "config": json.dumps(config), "extra": "{}"}
    metadata["sha256"] = checksum(metadata, state)
    path.write_bytes(st_save(state, metadata=metadata))


def test_a_file_written_before_the_field_loads_as_its_two_networks(tmp_path):
    """A config without ``shared_trunk`` is a legacy file: two networks, outputs as they were."""
    model = _model(MLP, shared=False, seed=5)
    config = model.config.to_dict()
    del config["shared_trunk"]
    _write(tmp_path / "old.lmm", model.state_dict(), config)
    loaded = load_model(tmp_path / "old.lmm")
    assert loaded.config.shared_trunk is LEGACY_DEFAULTS["shared_trunk"] is False and loaded.trunk is None
    y, _ = _inputs(model, seed=6)
    torch.testing.assert_close(loaded.factor(y, 0.4), model.factor(y, 0.4))
    torch.testing.assert_close(loaded.denoise(y, 0.4), model.denoise(y, 0.4))


def test_a_config_that_disagrees_with_the_weights_is_refused_by_the_shape_check(tmp_path):
    """The meta-device build of the stored config (`model_file._read_checked`) finds the mismatch either way."""
    two, one = _model(MLP, shared=False), _model(MLP)
    _write(tmp_path / "a.lmm", two.state_dict(), {**two.config.to_dict(), "shared_trunk": True})
    _write(tmp_path / "b.lmm", one.state_dict(), {**one.config.to_dict(), "shared_trunk": False})
    for name in ("a.lmm", "b.lmm"):
        with pytest.raises(ModelFileError, match="does not match its architecture"):
            load_model(tmp_path / name)
