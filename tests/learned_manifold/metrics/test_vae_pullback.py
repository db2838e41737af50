"""`VAEPullbackMetric` under a caller's autocast (the rest of its tests are in tests/learned_manifold/test_vae.py)."""

import torch

from learned_manifold.metrics import VAEPullbackMetric
from learned_manifold.metrics.vae_pullback import latent_graph_path
from learned_manifold.vae import VAE, VAEConfig
from tests.conftest import assert_same_under_autocast


def test_a_callers_autocast_changes_nothing():
    """Under ``torch.autocast('cpu', bfloat16)`` the decoder and the algebra ran in bf16: float32 in must give
    float32 out and the same numbers as outside autocast."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16))
    vae.std_weights.data.uniform_(0.0, 4.0)
    codes = torch.randn(40, 2)
    field = VAEPullbackMetric(vae, eps=1e-3, codes=codes)
    z, v = torch.randn(5, 2), torch.randn(5, 2)
    path = torch.randn(2, 6, 2)
    calls = {"metric": lambda: field.metric(z, v), "apply": lambda: field.apply(z, v),
             "log_volume": lambda: field.log_volume(z), "energies": lambda: field.segment_energies(path),
             "graph_path": lambda: latent_graph_path(codes, z[:2], z[2:4], 9)}
    assert_same_under_autocast(calls, atol=1e-7)


def test_latent_graph_path_refuses_bad_counts_and_takes_single_ends():
    """``n_points`` below 2 or not an integer is refused by name (it returned a one-point path without ``z0``, or
    failed deep in torch); ``(d,)`` ends give one ``(n_points, d)`` path from ``z0`` to ``z1`` (they failed)."""
    import pytest

    th = torch.linspace(0, 6.0, 200)
    codes = torch.stack([th.cos(), th.sin()], -1)
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])
    for bad in (1, 0, -3):
        with pytest.raises(ValueError, match=r"n_points \(both ends included\) must be >= 2"):
            latent_graph_path(codes, z0, z1, bad)
    with pytest.raises(TypeError, match="n_points .* must be an integer, got float"):
        latent_graph_path(codes, z0, z1, 2.5)
    with pytest.raises(ValueError, match=r"z0 and z1 must both have shape \(B, 2\) or \(2,\)"):
        latent_graph_path(codes, z0, torch.zeros(1, 3), 9)
    path = latent_graph_path(codes, z0[0], z1[0], 9)
    assert path.shape == (9, 2)
    assert torch.equal(path[0], z0[0]) and torch.equal(path[-1], z1[0])
    assert torch.allclose(path, latent_graph_path(codes, z0, z1, 9)[0])
