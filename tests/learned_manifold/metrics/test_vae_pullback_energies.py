"""`VAEPullbackMetric.segment_energies` with the regulariser ``M + εI`` (SPEC §11): each curve energy adds
``ε ‖Δ_i‖²`` per segment, and the metric form is ``Δ_iᵀ M(z_{i+½}) Δ_i`` with the field's own ``M``, ``εI`` included."""

import pytest
import torch

from learned_manifold.metrics import VAEPullbackMetric
from learned_manifold.vae import VAE, VAEConfig

F64 = torch.float64


def _vae() -> VAE:
    """An untrained float64 MLP VAE ``R² → R⁶`` whose decoder std varies (random non-negative RBF weights)."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig((6,), 2, hidden=16, depth=2, n_centres=5), scale=1.7, mean=torch.linspace(-1, 1, 6)).double()
    vae.std_weights.data.uniform_(0.0, 4.0)
    return vae


def test_the_metric_energy_is_the_dense_pullback_with_eps_at_the_segment_midpoints():
    """``energy="metric"``, ``ε = 0.5``: each segment's energy equals ``Δᵀ (J_fᵀJ_f + εI) Δ`` at its midpoint, with
    the dense `pullback` (the Jacobian by `jacobian`, not the JVP `segment_energies` takes). Without the ``ε‖Δ‖²``
    term the energies of this untrained decoder are 1.2 to 48 times smaller."""
    field = VAEPullbackMetric(_vae(), eps=0.5)
    path = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    step, mid = path[:, 1:] - path[:, :-1], 0.5 * (path[:, 1:] + path[:, :-1])
    M = field.pullback(mid.reshape(-1, 2)).reshape(2, 4, 2, 2)
    want = torch.einsum("bti,btij,btj->bt", step, M, step)
    torch.testing.assert_close(field.segment_energies(path), want, rtol=1e-10, atol=0)


@pytest.mark.parametrize("energy", ["metric", "decoded"])
def test_eps_adds_eps_times_the_squared_step_to_either_energy(energy):
    """Same decoder, ``ε = 0.5`` against ``ε = 0``: the difference is exactly ``ε ‖Δ_i‖²`` per segment, for the
    metric and the decoded (Jacobian-free) energy alike."""
    vae = _vae()
    path = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    with_eps = VAEPullbackMetric(vae, eps=0.5, energy=energy).segment_energies(path)
    without = VAEPullbackMetric(vae, eps=0.0, energy=energy).segment_energies(path)
    step = path[:, 1:] - path[:, :-1]
    torch.testing.assert_close(with_eps - without, 0.5 * step.pow(2).sum(-1), rtol=1e-10, atol=1e-14)
