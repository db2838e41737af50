"""The network (SPEC §4) and the model's units (SPEC §1)."""

import math
import re
import subprocess
import sys

import pytest
import torch

from learned_manifold.models import BACKBONES, FiLMResMLP, MetricModel, ModelConfig, build_backbone


def test_backbone_shapes_and_image_data_shape():
    net = FiLMResMLP((2, 4), out_channels=3, hidden=16, depth=2, emb_dim=8)
    out = net(torch.randn(5, 2, 4), torch.rand(5) + 0.1)
    assert out.shape == (5, 8, 3)


def test_head_is_small_random_not_zero_and_residual_branches_start_at_zero():
    net = FiLMResMLP((6,), out_channels=2, hidden=32, depth=2, head_std=1e-3)
    assert 0 < net.head.weight.std() < 3e-3
    assert all(b.fc2.weight.abs().max() == 0 for b in net.blocks)
    A = net(torch.randn(4, 6), torch.ones(4))
    # a nonzero factor, so AAᵀ has a gradient from the first step
    assert A.abs().max() > 0


def test_unknown_architecture_lists_valid_names():
    with pytest.raises(ValueError, match="film_mlp"):
        build_backbone("unet9000", (3,), 2)
    assert "film_mlp" in BACKBONES


def make_model(scale=2.5, mean=None, centred=True):
    cfg = ModelConfig(
        data_shape=(3,), rank=2, centred=centred, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}
    )
    torch.manual_seed(0)
    return MetricModel(cfg, scale=scale, mean=torch.tensor([1.0, -2.0, 0.5]) if mean is None else mean)


def test_public_methods_work_in_data_units():
    """Γ_x(y; σ) = Γ_z((y − μ)/s; σ/s) and A_x = A_z (SPEC §1)."""
    model = make_model()
    y, sigma = torch.randn(4, 3), 0.3
    z = (y - model.mean) / model.scale
    torch.testing.assert_close(
        model.factor(y, sigma), model.factor_z(z, torch.full((4,), sigma) / model.scale)
    )
    # x̂ = y − σ F in data units, F the noise prediction on standardised inputs
    F = model.noise_z(z, torch.full((4,), sigma) / model.scale)
    zhat = z - (sigma / model.scale) * F
    torch.testing.assert_close(model.denoise(y, sigma), zhat * model.scale + model.mean)
    torch.testing.assert_close(model.score(y, sigma), (model.denoise(y, sigma) - y) / sigma**2)


def test_one_bandwidth_broadcasts_like_one_per_point():
    """A scalar σ (embedded once per call) equals the same σ given per point; per-point σ stays per point."""
    model = make_model()
    y = torch.randn(5, 3)
    torch.testing.assert_close(model.factor(y, 0.4), model.factor(y, torch.full((5,), 0.4)), rtol=0, atol=0)
    torch.testing.assert_close(model.denoise(y, 0.4), model.denoise(y, torch.full((5,), 0.4)), rtol=0, atol=0)
    sigmas = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6])
    rows = torch.cat([model.factor(y[i:i + 1], float(sigmas[i])) for i in range(5)])
    torch.testing.assert_close(model.factor(y, sigmas), rows)
    torch.testing.assert_close(model.factor(y, sigmas.unsqueeze(-1)), rows)  # (B, 1): was an expand error
    with pytest.raises(ValueError, match=r"shape \(\) or \(5,\) with one bandwidth per point, got shape \(3,\)"):
        model.factor(y, sigmas[:3])


def test_default_sigma_and_bad_inputs():
    model = make_model()
    y = torch.randn(2, 3)
    torch.testing.assert_close(model.factor(y), model.factor(y, model.config.default_sigma))
    with pytest.raises(ValueError, match="shape"):
        model.factor(torch.randn(2, 4))
    with pytest.raises(ValueError, match="positive"):
        model.factor(y, -1.0)
    for bad in (float("inf"), float("nan"), torch.tensor([0.3, float("inf")])):  # inf gave NaN factors
        with pytest.raises(ValueError, match="finite and positive"):
            model.factor(y, bad)


def test_uncentred_model_has_no_denoiser():
    model = make_model(centred=False)
    assert model.denoiser_net is None and not model.has_denoiser
    with pytest.raises(RuntimeError, match="denoiser"):
        model.denoise(torch.randn(2, 3), 0.1)


def test_full_loss_needs_rank_D():
    with pytest.raises(ValueError, match="rank = D"):
        MetricModel(ModelConfig(data_shape=(3,), rank=2, loss="full"))


def test_config_round_trip_and_unknown_keys():
    cfg = make_model().config
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "surprise": 1})


def test_sigma_embedding_does_not_alias_bandwidths():
    """Distinct bandwidths over the whole training range get distinct sinusoidal features (no period wraps)."""
    from learned_manifold.models import SigmaEmbedding

    emb = SigmaEmbedding(8)
    sigma = torch.exp(torch.linspace(-8.0, 3.0, 400))
    log_sigma = sigma.log().unsqueeze(-1)
    feats = torch.cat([(log_sigma * emb.freqs).sin(), (log_sigma * emb.freqs).cos()], -1)
    lowest = (log_sigma * emb.freqs[0]).sin().squeeze(-1)
    assert (lowest[1:] > lowest[:-1]).all()  # the slowest feature is monotone over log σ ∈ [−8, 3]
    gaps = torch.cdist(feats, feats) + torch.eye(400) * 1e9
    assert gaps.min() > 1e-3


def test_final_norm_is_an_mlp_option_and_old_files_keep_theirs():
    """``final_norm=False`` (what `TrainConfig` builds for Gaussian-preconditioned input) drops the LayerNorm before
    the head;
    an ``arch_kwargs`` without the key (every older model file) builds the network with it, so its weights load."""
    from learned_manifold_training.config import TrainConfig

    with_norm = FiLMResMLP((5,), 2, hidden=8, depth=1, emb_dim=4)
    without = FiLMResMLP((5,), 2, hidden=8, depth=1, emb_dim=4, final_norm=False)
    assert "norm.weight" in with_norm.state_dict() and "norm.weight" not in without.state_dict()
    z, s = torch.randn(3, 5), torch.ones(3)
    assert without(z, s).shape == with_norm(z, s).shape == (3, 5, 2)
    # without the norm the head sees the stream's scale: a doubled input changes the head's input norm
    h1 = without.inp(z)
    h2 = without.inp(2 * z)
    assert not torch.allclose(without.norm(h1).norm(dim=1), without.norm(h2).norm(dim=1))
    assert "final_norm" not in TrainConfig().model_spec((5,))[1]  # None: the trainer decides by the input
    assert TrainConfig(final_norm=False).model_spec((5,))[1]["final_norm"] is False
    with pytest.raises(TypeError, match="final_norm"):
        FiLMResMLP((5,), 2, final_norm=1)


def test_the_norm_feature_adds_a_learned_vector_times_the_inputs_log_squared_norm():
    """``norm_feature=True``: the first layer's output gains ``w · log ‖z‖²`` (SPEC §4), so the scale of the input
    reaches the blocks, whose LayerNorms would otherwise erase it; with ``w = 0`` the network is the one without."""
    torch.manual_seed(0)
    plain = FiLMResMLP((6,), 2, hidden=8, depth=2, emb_dim=4)
    with_feature = FiLMResMLP((6,), 2, hidden=8, depth=2, emb_dim=4, norm_feature=True)
    assert set(with_feature.state_dict()) - set(plain.state_dict()) == {"norm_in.weight"}
    assert not with_feature.norm_in.weight.any()  # zero-initialised: a new network starts as the one without
    with_feature.load_state_dict({**plain.state_dict(), "norm_in.weight": torch.zeros(8, 1)})
    z, s = torch.randn(5, 6), torch.full((5,), 0.3)
    torch.testing.assert_close(with_feature(z, s), plain(z, s))
    # the feature, by hand: the same network with the first layer's bias moved by w · log ‖z‖², one point at a time
    w = torch.randn(8, 1)
    with torch.no_grad():
        with_feature.norm_in.weight.copy_(w)
    out = with_feature(z, s)
    for i in range(5):
        shifted = FiLMResMLP((6,), 2, hidden=8, depth=2, emb_dim=4)
        shifted.load_state_dict(plain.state_dict())
        with torch.no_grad():
            shifted.inp.bias += w[:, 0] * z[i].pow(2).sum().log()
        torch.testing.assert_close(out[i], shifted(z[i:i + 1], s[i:i + 1])[0])
    # a rescaled input changes the output beyond what the linear path carries (the feature itself is learned)
    out.sum().backward()
    assert with_feature.norm_in.weight.grad.abs().sum() > 0


def test_the_norm_feature_is_stored_when_on_and_files_without_it_build_the_network_without_it():
    from learned_manifold_training.config import TrainConfig

    assert TrainConfig(norm_feature=True).model_spec((5,))[1]["norm_feature"] is True  # stored in the file
    assert "norm_feature" not in TrainConfig().model_spec((5,))[1]  # "auto": the trainer decides from the data
    assert "norm_feature" not in TrainConfig(norm_feature=False).model_spec((5,))[1]
    with pytest.warns(UserWarning, match="norm_feature sizes the MLP only and is ignored"):
        assert "norm_feature" not in TrainConfig(norm_feature=True).model_spec((1, 8, 8))[1]  # the UNet has none
    old = FiLMResMLP((5,), 2, hidden=8, depth=1, emb_dim=4)  # arch_kwargs without the key: every older file
    assert old.norm_in is None and "norm_in.weight" not in old.state_dict()
    with pytest.raises(TypeError, match="norm_feature"):
        TrainConfig(norm_feature="yes")


def test_a_model_with_the_norm_feature_saves_and_loads_with_its_weight(tmp_path):
    from learned_manifold.model_file import load_model, save_model

    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 4,
                                                            "norm_feature": True})
    model = MetricModel(cfg)
    with torch.no_grad():
        model.factor_net.norm_in.weight.normal_()
    back = load_model(save_model(model, tmp_path / "m.lmm"))
    torch.testing.assert_close(back.factor_net.norm_in.weight, model.factor_net.norm_in.weight)
    y = torch.randn(4, 3)
    torch.testing.assert_close(back.factor(y, 0.1), model.factor(y, 0.1))



def test_a_narrower_denoiser_is_built_stored_and_loaded_and_older_files_get_the_factors_width(tmp_path):
    from learned_manifold.model_file import load_model, save_model

    mlp = {"hidden": 16, "depth": 1, "emb_dim": 4}
    cfg = ModelConfig(data_shape=(3,), rank=2, arch_kwargs=mlp, denoiser_arch_kwargs={"hidden": 4})
    model = MetricModel(cfg)
    assert model.denoiser_net.head.weight.shape == (3, 4) and model.factor_net.head.weight.shape == (2 * 3, 16)
    back = load_model(save_model(model, tmp_path / "m.lmm"))
    assert back.config.denoiser_arch_kwargs == {"hidden": 4}
    y = torch.randn(5, 3)
    torch.testing.assert_close(back.denoise(y, 0.1), model.denoise(y, 0.1))
    stored = cfg.to_dict()
    del stored["denoiser_arch_kwargs"]  # a file written before the field
    assert ModelConfig.from_dict(stored, complete=True).denoiser_arch_kwargs == {}
    with pytest.raises(ValueError, match="separate denoiser"):
        ModelConfig(data_shape=(3,), rank=2, centred=False, denoiser_arch_kwargs={"hidden": 4})
    with pytest.raises(ValueError, match="separate denoiser"):
        ModelConfig(data_shape=(3,), rank=2, shared_trunk=True, denoiser_arch_kwargs={"hidden": 4})
    with pytest.raises(ValueError, match="unknown arch_kwargs"):
        ModelConfig(data_shape=(3,), rank=2, denoiser_arch_kwargs={"width": 4})
    with pytest.raises(TypeError, match="denoiser_arch_kwargs"):
        ModelConfig(data_shape=(3,), rank=2, denoiser_arch_kwargs=[("hidden", 4)])


def test_points_of_another_dtype_than_the_model_get_one_clear_error():
    """A float32 model given float64 points (as a loaded model is): one line naming both dtypes and the remedies,
    not torch's "mat1 and mat2 must have the same dtype"."""
    model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8}))
    y = torch.randn(4, 3, dtype=torch.float64)
    for call in (model.factor, model.denoise):
        with pytest.raises(ValueError, match=r"points are torch.float64 but the model is torch.float32: convert"):
            call(y, 0.1)
    assert model.double().factor(y, 0.1).dtype == torch.float64


@pytest.mark.parametrize(("data_shape", "point", "forms"), [
    ((3,), (3,), "(B, 3)"),
    ((1, 2, 2), (1, 2, 2), "(B, 1, 2, 2) or (B, 4)"),
    ((1, 2, 2), (4,), "(B, 1, 2, 2) or (B, 4)"),
])
def test_a_single_point_is_told_to_add_a_batch_axis(data_shape, point, forms):
    """A flat model's refusal read "expected points of shape (B, 3) or (B, 3)" (the same shape twice) and did not say
    that a single point lacks its batch axis (tester A)."""
    cfg = ModelConfig(data_shape=data_shape, rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
    model = MetricModel(cfg)
    message = f"expected points of shape {forms}, got {point}: add a batch axis for a single point (y.unsqueeze(0))"
    for method in ("factor", "denoise"):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            getattr(model, method)(torch.zeros(point), 0.3)


@pytest.mark.parametrize("method", ["factor", "denoise", "score"])
def test_points_of_another_shape_with_the_same_size_are_refused(method):
    """A channels-last ``(B, H, W, C)`` batch for a ``(C, H, W)`` model has ``D`` numbers per point; it was
    reshaped to ``(B, C, H, W)`` and answered for scrambled images (off by up to 3.2 on a trained model)."""
    cfg = ModelConfig(data_shape=(2, 3, 4), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
    torch.manual_seed(0)
    model = MetricModel(cfg)
    y = torch.randn(5, 2, 3, 4)
    assert getattr(model, method)(y, 0.3).shape[0] == 5  # (B, *data_shape) and flat (B, D) still work
    torch.testing.assert_close(getattr(model, method)(y.flatten(1), 0.3).flatten(1),
                               getattr(model, method)(y, 0.3).flatten(1), rtol=0, atol=0)
    for bad in (y.permute(0, 2, 3, 1), y.reshape(5, 6, 4), y.reshape(5, 2, 12)):
        with pytest.raises(ValueError, match=r"^expected points of shape \(B, 2, 3, 4\) or \(B, 24\), got "
                                             rf"\({', '.join(map(str, bad.shape))}\)"):
            getattr(model, method)(bad, 0.3)


def test_loading_a_model_file_builds_its_meta_twin_without_importing_dynamo(tmp_path):
    """`load_model` builds the model under ``torch.device("meta")`` to check the file's shapes; `SigmaEmbedding`'s
    ``exp`` on a meta tensor ran a Python decomposition that imported ``torch._dynamo`` (1.2 s of the first load in
    a process). Its frequencies are the values ``exp(linspace)`` gives on the CPU, bit for bit, on every device."""
    from learned_manifold.model_file import save_model
    from learned_manifold.models import SigmaEmbedding

    small = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 4})
    unet = ModelConfig(data_shape=(1, 8, 8), rank=2, arch="unet", arch_kwargs={"channels": 8, "channel_mult": (1,)})
    for name, config in (("m.lmm", small), ("u.lmm", unet)):  # the UNet's head init did the same (its normal_)
        path = save_model(MetricModel(config), tmp_path / name)
        code = ("import sys\nfrom learned_manifold.model_file import load_model\n"
                f"load_model({str(path)!r})\nprint('torch._dynamo' in sys.modules)")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "False", name
    for dtype in (torch.float32, torch.float64):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            freqs = SigmaEmbedding(4).freqs
            with torch.device("meta"):
                assert SigmaEmbedding(4).freqs.is_meta
        finally:
            torch.set_default_dtype(previous)
        assert freqs.dtype == dtype
        assert torch.equal(freqs, torch.exp(torch.linspace(math.log(0.05), math.log(8.0), 16, dtype=dtype)))
