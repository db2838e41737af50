"""`regularising_delta`, `geodesic`'s default ``δ`` for a low-rank field (SPEC §6, geodesics): ``10⁻³`` times the
MEAN top eigenvalue of ``G`` at each pair's own two ends, in closed form on a field whose scale varies."""

import torch

from learned_manifold.metrics import CoMetricField
from learned_manifold.regularised import regularising_delta

F64 = torch.float64


class Stretched(CoMetricField):
    """``G(x) = (1 + x₁)² e₁e₁ᵀ`` in ``R²``: rank 1, top eigenvalue ``λ₁ = (1 + x₁)²``, ``δ = 0``."""

    dim, low_rank, delta = 2, True, 0.0

    def factor(self, x):
        return torch.stack([1 + x[:, 0], torch.zeros_like(x[:, 0])], -1).unsqueeze(-1)


def test_the_default_delta_is_a_thousandth_of_the_mean_top_eigenvalue_at_each_pairs_ends():
    """Pairs with ``λ₁`` = (1, 9), (4, 0) and (4, 4) at their ends get ``δ = 10⁻³ (λ₁(x₀) + λ₁(x₁)) / 2`` =
    5e-3, 2e-3 and 4e-3 (the larger end's ``λ₁`` would give 9e-3 and 4e-3 for the first two), and each pair's ``δ``
    is the same alone as in the batch."""
    x0 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.5]], dtype=F64)
    x1 = torch.tensor([[2.0, 0.0], [-1.0, 0.0], [1.0, -3.0]], dtype=F64)
    want = torch.tensor([5e-3, 2e-3, 4e-3], dtype=F64)
    torch.testing.assert_close(regularising_delta(Stretched(), x0, x1), want, rtol=1e-12, atol=0)
    for b in range(3):
        torch.testing.assert_close(regularising_delta(Stretched(), x0[b:b + 1], x1[b:b + 1]), want[b:b + 1],
                                   rtol=1e-12, atol=0)
