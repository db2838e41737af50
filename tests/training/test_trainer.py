"""The training loop: accuracy on a known manifold, resume, checkpoints, validation of inputs."""

import math

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.geometry import eigenpairs, intrinsic_dimension, projector_error
from learned_manifold.precision import PRECISIONS, native_bf16
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, standardisation, train


def random_subspace_error(d, D):
    """Expected ‖P − Q‖_F between a fixed and a random d-plane in R^D is about sqrt(2d(1 − d/D))."""
    return math.sqrt(2 * d * (1 - d / D))


def test_sphere_model_recovers_tangent_planes_and_dimension(sphere_model, sphere):
    x = sphere.sample(500, generator=torch.Generator().manual_seed(7))
    pairs = eigenpairs(sphere_model.factor(x))
    err = projector_error(pairs.vectors[..., :2], sphere.tangent_basis(x)).mean().item()
    assert err <= 0.25 * random_subspace_error(2, 3), err
    assert (intrinsic_dimension(pairs.values) == 2).float().mean() >= 0.9


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_circle_model_in_a_few_seconds(precision):
    circle = Circle(2)
    data = circle.sample(2000, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=400, batch_size=256, rank=2, hidden=64, depth=2, emb_dim=32, val_points=300,
                      precision=precision)
    result = train(data, cfg, manifold=circle, progress=False, device="cpu")
    assert result.precision == precision
    v = result.validation
    assert v["tangent_error"] <= 0.25 * random_subspace_error(1, 2), v
    assert v["dimension_accuracy"] >= 0.9
    assert result.model.config.sigma_rule == "lowest validation tangent error"
    table = v["sigma_table"]
    assert v["sigma"] == min(table, key=lambda r: r["tangent_error"])["sigma"]


def test_bf16_autocast_runs_on_cpu_and_auto_follows_the_hardware():
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = dict(steps=5, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50)
    runs = {p: train(data, TrainConfig(**cfg, precision=p), progress=False, device="cpu") for p in PRECISIONS}
    w32, w16 = (runs[p].model.state_dict()["factor_net.blocks.0.fc1.weight"] for p in ("fp32", "bf16"))
    assert not torch.equal(w32, w16)  # autocast really ran in bf16 on the CPU
    assert runs["auto"].precision == ("bf16" if native_bf16("cpu") else "fp32")
    torch.testing.assert_close(runs["auto"].model.state_dict()["factor_net.blocks.0.fc1.weight"],
                               runs[runs["auto"].precision].model.state_dict()["factor_net.blocks.0.fc1.weight"],
                               rtol=0, atol=0)


def test_resumed_run_reaches_the_same_weights(tmp_path):
    data = Circle(2).sample(500, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=40, batch_size=64, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      checkpoint_every=15)
    full = train(data, cfg, out=tmp_path / "full.lmm", progress=False, device="cpu")
    half = train(data, cfg, out=tmp_path / "half.lmm", progress=False, device="cpu", stop_after=20)
    assert half.stopped_at == 20
    resumed = train(data, cfg, out=tmp_path / "half.lmm", resume=True, progress=False, device="cpu")
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the files agree too
    y = data[:5]
    torch.testing.assert_close(load_model(tmp_path / "full.lmm").factor(y), load_model(tmp_path / "half.lmm").factor(y))


def test_resume_refuses_other_settings_or_data(tmp_path):
    data = Circle(2).sample(200, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=10, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=20)
    train(data, cfg, out=tmp_path / "m.lmm", progress=False, device="cpu", stop_after=5)
    with pytest.raises(ValueError, match="settings differ"):
        train(data, TrainConfig(**{**cfg.__dict__, "lr": 0.5}), out=tmp_path / "m.lmm", resume=True,
              progress=False, device="cpu")
    with pytest.raises(ValueError, match="data differ"):
        train(data * 2, cfg, out=tmp_path / "m.lmm", resume=True, progress=False, device="cpu")
    with pytest.raises(FileNotFoundError, match="training state"):
        train(data, cfg, out=tmp_path / "other.lmm", resume=True, progress=False, device="cpu")


def test_bad_data_is_refused_before_training():
    good = torch.randn(50, 3)
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train(bad, TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        train(torch.randn(50), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="identical"):
        train(torch.ones(50, 3), TrainConfig(steps=1), progress=False, device="cpu")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")


def test_standardisation_is_one_global_scale():
    x = torch.randn(1000, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 5.0
    scale, mean = standardisation(x)
    torch.testing.assert_close(mean, x.mean(0), atol=1e-5, rtol=0)
    z = (x - mean) / scale
    assert abs(z.pow(2).sum(-1).mean().item() - 1.0) < 1e-4  # E‖z‖² = 1, per-coordinate ratios kept


@pytest.mark.parametrize("sampler", ["loguniform", "lognormal", "uniform"])
def test_bandwidths_scale_with_the_data(sampler):
    """σ settings are in units of the data scale s: scaling the data by 10 scales every sampled σ by 10."""
    from learned_manifold_training.trainer import bandwidth_sampler

    cfg = TrainConfig(sampler=sampler, sigma_min=1e-3, sigma_max=4.0)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    small = bandwidth_sampler(cfg, 1.0)(5000, generator=g())
    large = bandwidth_sampler(cfg, 10.0)(5000, generator=g())
    torch.testing.assert_close(large, 10 * small, rtol=1e-5, atol=0)
