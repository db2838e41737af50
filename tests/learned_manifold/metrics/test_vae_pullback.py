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
