"""`LearnedDataManifold.inner(x, u)` is a squared norm (SPEC §5): never negative and never NaN, where Woodbury's
difference rounds below zero (float32, small δ) and where ``tangent_dim`` asks for more directions than the
factor's rank (zero eigenvalues)."""

import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import CoMetricField
from tests.conftest import FixedSubspaceField

A0 = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))  # float32, eigenvalues of A0 A0ᵀ ~ 20


class ConstantFactor(CoMetricField):
    """``G = A0 A0ᵀ + δ I`` in ``R²⁰``, float32, with the small ``δ = 1e-6`` (``δ / λ ~ 5e-8``, below float32's
    rounding of the Gram)."""

    dim, delta = 20, 1e-6

    def factor(self, x):
        return A0.to(x.dtype).expand(x.shape[0], 20, 3)


def test_a_float32_squared_norm_at_a_tiny_delta_is_never_negative_and_its_norm_is_finite():
    """``inner(x, u) = uᵀ (G + δI)^{-1} u`` by Woodbury, ``(|u|² − uᵀA(δI + AᵀA)^{-1}Aᵀu) / δ``: for ``u`` in the
    range of ``A`` the two terms nearly cancel, and in float32 at ``δ = 1e-6`` their rounded difference divided by
    ``δ`` goes down to −28 (74 of these 2,000 vectors). `inner` clamps a squared norm at 0 (Adam takes its square
    root), so every value is ≥ 0 and every `norm` finite; without the clamp `norm` is NaN there."""
    M = LearnedDataManifold(ConstantFactor())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, 20, generator=g)
    u = (A0 @ torch.randn(2000, 3, 1, generator=g)).squeeze(-1)
    squared = M.inner(x, u)
    assert squared.dtype == torch.float32
    assert bool((squared >= 0).all()), float(squared.min())
    assert bool(torch.isfinite(M.norm(x, u)).all())


def test_inner_with_tangent_dim_above_the_rank_is_the_pseudo_inverse_on_the_range():
    """At ``δ = 0`` `inner` is ``uᵀ Û Λ_d^{-1} Ûᵀ u`` over the top ``d = tangent_dim`` eigen-directions, where a zero
    eigenvalue contributes nothing (`spectral_apply`, SPEC §5). ``G = diag(4, 1, 0, 0)`` has rank 2; with
    ``tangent_dim = 3`` (it warns) ``|(1, 1, 1, 1)|² = 1/4 + 1 = 1.25`` and the norm ``√1.25``, not NaN."""
    Q = torch.zeros(4, 3, dtype=torch.float64)
    Q[0, 0], Q[1, 1] = 2.0, 1.0  # G = Q Qᵀ = diag(4, 1, 0, 0); the third column is zero
    M = LearnedDataManifold(FixedSubspaceField(Q), tangent_dim=3)
    x, u = torch.zeros(2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.float64)
    with pytest.warns(UserWarning, match="d = 3 asks for more directions than have eigenvalues above"):
        squared, norm = M.inner(x, u), M.norm(x, u)
    torch.testing.assert_close(squared, torch.full((2,), 1.25, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(norm, torch.full((2,), 1.25**0.5, dtype=torch.float64), rtol=1e-12, atol=0)
