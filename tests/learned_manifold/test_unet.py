"""The UNet image backbone (SPEC §9): factor layout, any image size, presets, model files, training.

The factor of an image ``(C, H, W)`` is ``(B, D, r)`` with column ``j`` = output channels ``[j·C, (j+1)·C)``
flattened in ``(C, H, W)`` order; one bandwidth ``(1,)`` broadcasts like ``B`` copies of it; the paper's MNIST
preset has the documented size; a model file with a UNet round-trips exactly, and a hostile UNet config is
refused before anything is allocated.
"""

from __future__ import annotations

import json
import math
import time
import tracemalloc

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from learned_manifold import ModelFileError, load_model, save_model
from learned_manifold.model_file import read_metadata
from learned_manifold.models import BACKBONES, MAX_WIDTH, MetricModel, ModelConfig, backbone_options, build_backbone
from learned_manifold.unet import (
    FUSED_ATTENTION_MIN_TOKENS,
    MAX_LEVELS,
    MAX_MULT,
    MAX_RES_BLOCKS,
    UNET_PRESETS,
    UNet,
    _Attention,
    unet_preset,
)
from learned_manifold_training.trainer import TrainConfig, train

TINY = {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "emb_dim": 16, "groups": 4}
# Documented in `unet_preset`'s docstring: the factor network at the preset's own data shape and rank.
DOCUMENTED_PARAMETERS = {"small": 709_152, "mnist": 6_996_068, "cifar10": 38_601_004, "celeba64": 13_372_096,
                         "ffhq256": 77_046_528}
# The paper's configs/*.yaml (jacobbamb/metric-matching): model_channels, channel_mult, num_res_blocks,
# attention_resolutions (downsample rates), dropout, rank, heads (num_heads 1 unless num_head_channels is set),
# image size and channels; out_bias is true in all four.
PAPER_CONFIGS = {
    "mnist": (64, (1, 2, 2), 2, (4,), 0.0, 100, None, (1, 28, 28)),
    "cifar10": (128, (1, 2, 2, 2), 2, (2,), 0.1, 100, 64, (3, 32, 32)),
    "celeba64": (64, (1, 2, 2, 2), 3, (4, 8), 0.0, 128, None, (3, 64, 64)),
    "ffhq256": (128, (1, 2, 2, 4), 2, (8, 16), 0.0, 256, None, (3, 256, 256)),
}


def _net(shape, k, **kw):
    torch.manual_seed(0)
    return UNet(shape, k, **{**TINY, **kw})


def _trained_like(net: UNet) -> UNet:
    """Random values in the zero-initialised convolutions (as after training), so that σ and every branch act."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            for name in ("conv2", "proj"):
                if hasattr(m, name):
                    getattr(m, name).weight.normal_(0, 0.1)
    return net


def _head_output(net: UNet, z, sigma):
    """The output convolution's raw ``(B, k·C, H, W)`` and the backbone's ``(B, D, k)`` from one call."""
    seen = {}
    handle = net.head.register_forward_hook(lambda mod, inp, out: seen.update(out=out))
    try:
        A = net(z, sigma)
    finally:
        handle.remove()
    return seen["out"], A


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_factor_shape_and_one_sigma_broadcasts_like_per_sample_copies(shape):
    net = _trained_like(_net(shape, 3, attention_levels=[1])).eval()
    D = math.prod(shape)
    z = torch.randn(2, *shape)
    per_sample = net(z, torch.tensor([0.3, 0.3]))
    one = net(z, torch.tensor([0.3]))
    assert per_sample.shape == one.shape == (2, D, 3)
    torch.testing.assert_close(one, per_sample)
    # a flat (B, D) input is the same point
    torch.testing.assert_close(net(z.reshape(2, D), torch.tensor([0.3])), one)
    # the bandwidth matters: per-sample σ reach their own sample
    mixed = net(z, torch.tensor([0.3, 2.0]))
    torch.testing.assert_close(mixed[0], one[0])
    assert not torch.allclose(mixed[1], one[1])


def test_two_dimensional_data_shape_is_one_channel():
    """``(H, W)`` and ``(1, H, W)`` are the same network (same parameter names and shapes, same output)."""
    a, b = _net((8, 8), 2), _net((1, 8, 8), 2)
    b.load_state_dict(a.state_dict())
    z = torch.randn(3, 8, 8)
    torch.testing.assert_close(a(z, torch.tensor([0.5])), b(z.unsqueeze(1), torch.tensor([0.5])))


def test_column_j_of_the_factor_is_output_channels_j_times_C():
    """SPEC §9: ``A[:, :, j]`` = channels ``[j·C, (j+1)·C)`` of the output convolution, in (C, H, W) order."""
    net = _net((3, 5, 6), 4, out_bias=True).eval()
    z = torch.randn(2, 3, 5, 6)
    out, A = _head_output(net, z, torch.tensor([0.7]))
    assert out.shape == (2, 12, 5, 6)
    for j in range(4):
        torch.testing.assert_close(A[:, :, j], out[:, 3 * j: 3 * j + 3].reshape(2, -1), rtol=0, atol=0)
    # One output channel lit (bias only): exactly one column, one colour plane of it, every pixel.
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        net.head.bias[2 * 3 + 1] = 1.0  # column j = 2, channel c = 1
    A = net(z, torch.tensor([0.7]))
    lit = torch.zeros(90, 4)
    lit[30:60, 2] = 1.0  # rows c·H·W .. (c+1)·H·W of column 2
    torch.testing.assert_close(A, lit.expand(2, 90, 4), rtol=0, atol=0)


def test_output_bias_is_one_learnable_value_per_output_channel_broadcast_over_pixels():
    net = _net((2, 4, 4), 3, out_bias=True).eval()
    assert net.head.bias.shape == (6,) and net.head.bias.requires_grad and net.head.bias.abs().max() == 0
    assert _net((2, 4, 4), 3).head.bias is None
    z = torch.randn(5, 2, 4, 4)
    before = net(z, torch.tensor([1.0]))
    bias = torch.randn(6)
    with torch.no_grad():
        net.head.bias.copy_(bias)
    shift = net(z, torch.tensor([1.0])) - before  # (B, D, k)
    torch.testing.assert_close(shift, bias.reshape(3, 2, 1).expand(3, 2, 16).reshape(3, 32).T.expand(5, 32, 3))


@pytest.mark.parametrize("shape", [(1, 7, 7), (1, 9, 9), (2, 7, 5), (3, 13, 6), (1, 1, 1), (1, 28, 28)])
def test_any_image_size_works_with_attention_at_every_level(shape):
    net = _trained_like(_net(shape, 2, channel_mult=[1, 2, 2], attention_levels=[0, 1, 2], head_channels=4))
    A = net(torch.randn(2, *shape), torch.rand(2) + 0.1)
    assert A.shape == (2, math.prod(shape), 2) and bool(torch.isfinite(A).all())
    # The output depends on every input pixel, corners included (the skips and crops line up).
    z = torch.randn(1, *shape, requires_grad=True)
    net(z, torch.tensor([0.5])).pow(2).sum().backward()
    assert bool((z.grad != 0).all())


def test_initialisation_residual_branches_start_at_zero_and_the_head_is_small_random():
    net = _net((1, 8, 8), 2, attention_levels=[1], head_std=2e-3)
    blocks = [m for m in net.modules() if type(m).__name__ == "_ResBlock"]
    attns = [m for m in net.modules() if type(m).__name__ == "_Attention"]
    assert len(blocks) == 2 * 1 + 2 + 2 * 2 and len(attns) == 1 + 1 + 2  # down, middle, up
    assert all(b.conv2.weight.abs().max() == 0 for b in blocks) and all(a.proj.weight.abs().max() == 0 for a in attns)
    assert 1e-3 < net.head.weight.std() < 3e-3
    assert net(torch.randn(2, 1, 8, 8), torch.ones(2)).abs().max() > 0  # AAᵀ has a gradient from step one


def test_float64_gradients_match_finite_differences():
    net = _trained_like(_net((1, 5, 5), 1, channels=4, groups=2, emb_dim=8, attention_levels=[1], head_std=0.3))
    net = net.double()
    z = torch.randn(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    assert net(z, sigma).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda z, s: net(z, s), (z, sigma), atol=1e-6)
    # after one backward every parameter has a gradient; the zero-initialised convolutions get a nonzero one
    net(z, sigma).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert all(b.conv2.weight.grad.abs().max() > 0 for b in net.modules() if type(b).__name__ == "_ResBlock")


def _jvps(net: UNet, z, v, sigma):
    """The JVP of ``z ↦ net(z, σ)`` along ``v`` by ``torch.func.jvp`` and by dual tensors."""
    _, forward = torch.func.jvp(lambda z: net(z, sigma), (z,), (v,))
    with fwAD.dual_level():
        dual = fwAD.unpack_dual(net(fwAD.make_dual(z, v), sigma)).tangent
    return forward, dual


def test_jvps_and_second_derivatives_through_attention_at_few_pixels():
    """At 8×8 and 4×4 attention runs the math kernel: forward-mode JVPs work and agree with the reverse-mode JVP
    of `torch.autograd.functional.jvp`, which differentiates a backward pass (a second derivative)."""
    net = _trained_like(_net((1, 8, 8), 1, channels=64, head_channels=32, attention_levels=[0, 1])).eval()
    z, v, sigma = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8), torch.tensor([0.3])
    _, reverse = torch.autograd.functional.jvp(lambda z: net(z, sigma), z, v)
    for jvp in _jvps(net, z, v, sigma):
        torch.testing.assert_close(jvp, reverse, rtol=1e-4, atol=1e-6)
    assert reverse.abs().max() > 1e-3


def test_jvps_through_fused_attention_fall_back_to_the_math_kernel():
    """At 32×32 = `FUSED_ATTENTION_MIN_TOKENS` pixels SDPA may run a fused kernel, which has no forward-mode
    derivative (on this CPU build it does run one); the JVPs still work and match central differences."""
    assert 32 * 32 >= FUSED_ATTENTION_MIN_TOKENS
    net = _trained_like(_net((1, 32, 32), 1, channel_mult=[1], attention_levels=[0], mid_attention=False,
                             head_channels=4)).double().eval()
    g = torch.Generator().manual_seed(0)
    z, v = torch.randn(2, 1, 1, 32, 32, generator=g, dtype=torch.float64).unbind(0)  # one image and a direction
    sigma, h = torch.tensor([0.3], dtype=torch.float64), 1e-6
    central = (net(z + h * v, sigma) - net(z - h * v, sigma)) / (2 * h)
    for jvp in _jvps(net, z, v, sigma):
        torch.testing.assert_close(jvp, central, rtol=1e-6, atol=1e-8)


def test_registered_and_options_read_from_the_constructor():
    assert BACKBONES["unet"] is UNet
    assert set(backbone_options("unet")) == {"channels", "channel_mult", "num_res_blocks", "attention_levels",
                                             "mid_attention", "head_channels", "dropout", "emb_dim", "groups",
                                             "head_std", "out_bias"}
    with pytest.raises(ValueError, match="unknown arch_kwargs.*'hidden'.*valid"):
        build_backbone("unet", (1, 8, 8), 2, hidden=16)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"channels": 0}, ValueError, "channels must be in"),
    ({"channels": "32"}, TypeError, "channels must be an integer"),
    ({"channels": 10**9}, ValueError, "channels must be in"),
    ({"channels": 4096, "channel_mult": [1, 32]}, ValueError, r"channels \* max\(channel_mult\)"),
    ({"channel_mult": []}, ValueError, "channel_mult must have at least one"),
    ({"channel_mult": 2}, TypeError, "channel_mult must be a list"),
    ({"channel_mult": [1, 0]}, ValueError, r"channel_mult\[1\] must be in"),
    ({"channel_mult": [1] * (MAX_LEVELS + 1)}, ValueError, "channel_mult may have at most"),
    ({"num_res_blocks": 0}, ValueError, "num_res_blocks must be in"),
    ({"num_res_blocks": MAX_RES_BLOCKS + 1}, ValueError, "num_res_blocks must be in"),
    ({"attention_levels": [2]}, ValueError, r"attention_levels\[0\] must be in \[0, 1\]"),
    ({"attention_levels": [1, 1]}, ValueError, "must not repeat"),
    ({"attention_levels": [0.5]}, TypeError, r"attention_levels\[0\] must be an integer"),
    ({"dropout": 1.0}, ValueError, "dropout must be in"),
    ({"dropout": float("nan")}, ValueError, "dropout must be a finite number >= 0"),
    ({"groups": 0}, ValueError, "groups must be in"),
    ({"head_channels": 0}, ValueError, "head_channels must be in"),
    ({"emb_dim": True}, TypeError, "emb_dim must be an integer"),
    ({"head_std": 0.0}, ValueError, "head_std must be a finite number > 0"),
    ({"out_bias": 1}, TypeError, "out_bias must be a bool"),
    ({"mid_attention": "yes"}, TypeError, "mid_attention must be a bool"),
])
def test_bad_arguments_raise_one_clear_error_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        UNet((1, 8, 8), 2, **kwargs)


@pytest.mark.parametrize("shape", [(64,), (1, 2, 8, 8)])
def test_only_image_shapes_are_accepted(shape):
    with pytest.raises(ValueError, match=r"data_shape \(C, H, W\) or \(H, W\)"):
        UNet(shape, 2)


def test_tuples_and_json_lists_build_the_same_network():
    a = _net((1, 8, 8), 2, channel_mult=(1, 2), attention_levels=(1,))
    b = _net((1, 8, 8), 2, channel_mult=[1, 2], attention_levels=[1])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


@pytest.mark.parametrize("name", sorted(UNET_PRESETS))
def test_preset_parameter_counts_are_the_documented_ones(name):
    preset = unet_preset(name)
    with torch.device("meta"):
        net = UNet(preset["data_shape"], preset["rank"], **preset["arch_kwargs"])
    assert sum(p.numel() for p in net.parameters()) == DOCUMENTED_PARAMETERS[name]
    assert json.loads(json.dumps(preset["arch_kwargs"])) == preset["arch_kwargs"]  # JSON-ready (lists)


def test_the_mnist_preset_is_the_papers():
    """SPEC §9: 64 channels, 2 residual blocks per level, multipliers (1, 2, 2), attention at 7×7, rank 100."""
    p = unet_preset("mnist")
    kw = p["arch_kwargs"]
    assert (kw["channels"], kw["num_res_blocks"], kw["channel_mult"], p["rank"]) == (64, 2, [1, 2, 2], 100)
    assert [math.ceil(28 / 2**level) for level in kw["attention_levels"]] == [7]
    with pytest.raises(ValueError, match="unknown UNet preset 'mnst'; valid"):
        unet_preset("mnst")
    unet_preset("mnist")["arch_kwargs"]["channels"] = 1  # a copy: the registry is unchanged
    assert UNET_PRESETS["mnist"]["arch_kwargs"]["channels"] == 64


@pytest.mark.parametrize("name", sorted(PAPER_CONFIGS))
def test_the_image_presets_are_the_papers_configs(name):
    """SPEC §9 / report Q item 2: every option `UNet` has is set as in the paper's config; the paper's attention
    rates ``2^level`` that are levels of the network become ``attention_levels``, and its heads (one, or width / 64
    with ``num_head_channels: 64``) are what ``head_channels`` gives at every attention layer."""
    channels, mult, blocks, rates, dropout, rank, head_channels, shape = PAPER_CONFIGS[name]
    p = unet_preset(name)
    kw = p["arch_kwargs"]
    assert (kw["channels"], kw["channel_mult"], kw["num_res_blocks"]) == (channels, list(mult), blocks)
    assert kw["attention_levels"] == [level for level in range(len(mult)) if 2**level in rates]
    assert (kw["dropout"], p["rank"], tuple(p["data_shape"]), kw["out_bias"]) == (dropout, rank, shape, True)
    assert kw["emb_dim"] == 4 * channels and kw["mid_attention"]
    with torch.device("meta"):
        net = UNet(p["data_shape"], p["rank"], **kw)
    attention = [m for m in net.modules() if isinstance(m, _Attention)]
    assert attention and all(m.heads == (1 if head_channels is None else m.qkv.in_features // head_channels)
                             for m in attention)


def _unet_model() -> MetricModel:
    torch.manual_seed(5)
    cfg = ModelConfig(data_shape=(1, 6, 6), rank=3, arch="unet", arch_kwargs={**TINY, "attention_levels": [1]},
                      default_sigma=0.3, sigma_rule="test")
    return MetricModel(cfg, scale=2.0, mean=torch.linspace(0, 1, 36))


def test_a_unet_model_saves_and_loads_to_the_same_factor_and_denoiser(tmp_path):
    model = _unet_model()
    path = save_model(model, tmp_path / "unet.lmm")
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.config.arch == "unet"
    y = torch.randn(4, 1, 6, 6)
    torch.testing.assert_close(loaded.factor(y, 0.3), model.factor(y, 0.3), rtol=0, atol=0)
    torch.testing.assert_close(loaded.denoise(y), model.denoise(y), rtol=0, atol=0)
    assert loaded.factor(y).shape == (4, 36, 3)


def _with_arch_kwargs(raw: bytes, **changes) -> bytes:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    config = json.loads(header["__metadata__"]["config"])
    config["arch_kwargs"].update(changes)
    header["__metadata__"]["config"] = json.dumps(config)
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + raw[8 + n:]


@pytest.mark.parametrize("changes", [
    {"channels": 10**9},
    {"num_res_blocks": 10**7},
    {"channel_mult": [1] * 10**5},
    {"channels": MAX_WIDTH // MAX_MULT, "channel_mult": [MAX_MULT] * MAX_LEVELS, "num_res_blocks": MAX_RES_BLOCKS,
     "attention_levels": list(range(MAX_LEVELS)), "emb_dim": MAX_WIDTH, "groups": 7, "head_channels": 1},
    {"channels": 16},  # a valid config whose weights are not those in the file
    {"attention_levels": [0, 0]},
    {"dropout": "0.1"},
])
def test_a_hostile_unet_config_is_refused_quickly_without_allocating(tmp_path, changes):
    """The reader builds the claimed network on the meta device only: at the size caps, too, it is refused in
    seconds with under 200 MB allocated (the weights claimed at the caps would be terabytes). Time is measured
    without tracemalloc, which slows the Python-heavy build several times over; `load_model` does every check of
    `read_metadata` and more, so its peak memory bounds both."""
    path = tmp_path / "hostile.lmm"
    path.write_bytes(_with_arch_kwargs(save_model(_unet_model(), tmp_path / "good.lmm").read_bytes(), **changes))
    for reader in (load_model, read_metadata):
        start = time.perf_counter()
        with pytest.raises(ModelFileError, match="hostile.lmm"):
            reader(path)
        assert time.perf_counter() - start < 10
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="hostile.lmm"):
            load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 2**20


def _blobs(n: int, size: int = 8, width: float = 1.2) -> torch.Tensor:
    """Gaussian blobs ``exp(−‖(i, j) − p‖²/(2w²))`` with centres ``p`` uniform in the middle of the image (SPEC §9)."""
    g = torch.Generator().manual_seed(0)
    p = 2.0 + (size - 5.0) * torch.rand(n, 2, generator=g)
    grid = torch.arange(size, dtype=torch.float32)
    d2 = (grid[None, :, None] - p[:, 0, None, None]) ** 2 + (grid[None, None, :] - p[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * width**2))


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_training_on_images_picks_the_unet_and_writes_a_model_that_loads(tmp_path):
    cfg = TrainConfig(steps=50, batch_size=32, val_points=24, sigma_min=0.01, sigma_max=1.0, seed=1)
    assert cfg.backbone == "auto"
    result = train(_blobs(224), cfg, out=tmp_path / "blobs.lmm", progress=False, device="cpu")
    model = load_model(tmp_path / "blobs.lmm")
    c = model.config
    assert c.arch == "unet" and c.arch_kwargs == unet_preset("small")["arch_kwargs"] and c.rank == 16
    x = _blobs(3)
    A = model.factor(x)
    assert A.shape == (3, 64, 16) and bool(torch.isfinite(A).all())
    torch.testing.assert_close(A, result.model.factor(x), rtol=0, atol=0)
    assert math.isfinite(result.history[-1]["loss"])
