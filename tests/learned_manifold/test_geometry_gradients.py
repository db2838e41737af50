"""Gradients of the low-rank geometry (SPEC §5) where eigenvalues tie or small ones straddle the rounding cut: exact
in float64, float32's match float64's, and the gradient path gives the same values."""

import pytest
import torch

from learned_manifold import geometry as geo
from tests.learned_manifold.test_geometry import float64, random_factor  # noqa: F401
from tests.learned_manifold.test_geometry_solves import singular_value_factor

# (float64: test_geometry's autouse fixture, float64 by default here too)


def sphere_projector_factor(b=3, seed=0):
    """``A = I − n̂n̂ᵀ`` (the sphere's projector field): the Gram's eigenvalues are exactly 1, 1, 0."""
    n = torch.randn(b, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    n = n / n.norm(dim=-1, keepdim=True)
    return torch.eye(3, dtype=torch.float64) - n.unsqueeze(-1) * n.unsqueeze(-2)


def tied_and_zero_block_factor(b=2, seed=0):
    """``A = Q diag(2, 2, 1, 0, 0) Rᵀ`` (D = 6, r = 5): a tied kept block, a distinct eigenvalue, a zero block."""
    g = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(b, 6, 6, generator=g, dtype=torch.float64)).Q[..., :5]
    R = torch.linalg.qr(torch.randn(b, 5, 5, generator=g, dtype=torch.float64)).Q
    return Q * torch.tensor([2.0, 2.0, 1.0, 0.0, 0.0], dtype=torch.float64) @ R.transpose(-1, -2)


FACTORS = {"sphere projector": sphere_projector_factor, "generic": lambda: random_factor(b=3, d=5, r=3),
           "tied and zero blocks": tied_and_zero_block_factor}


MAPS = {
    "range_project": lambda A, u: geo.range_project(A, u),
    "range_project d=2": lambda A, u: geo.range_project(A, u, 2),
    "spectral_apply p=-1": lambda A, u: geo.spectral_apply(geo.eigenpairs(A), u, power=-1),
    "spectral_apply p=0 d=2": lambda A, u: geo.spectral_apply(geo.eigenpairs(A), u, 2, power=0),
    "spectral_apply p=1 d=2": lambda A, u: geo.spectral_apply(geo.eigenpairs(A), u, 2, power=1),
    "spectral_apply p=-1 per point": lambda A, u: geo.spectral_apply(
        geo.eigenpairs(A), u, torch.full((A.shape[0],), 2), power=-1),
    "lowrank_solve": lambda A, u: geo.lowrank_solve(A, u),
    "lowrank_inner": lambda A, u: geo.lowrank_inner(A, u, u.flip(-1)),
}


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("name", MAPS)
def test_gradients_are_exact_where_eigenvalues_tie(factor, name):
    """gradcheck (float64) with respect to A and u. Exactly tied eigenvalues (a projector field) had given NaN:
    eigh's backward divides by λ_i − λ_j (`spectral_grad`)."""
    A = FACTORS[factor]().requires_grad_()
    u = torch.randn(A.shape[0], A.shape[1], generator=torch.Generator().manual_seed(5)).requires_grad_()
    assert torch.autograd.gradcheck(MAPS[name], (A, u), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("factor", ["sphere projector", "tied and zero blocks"])
@pytest.mark.parametrize("name", ["range_project", "spectral_apply p=-1", "lowrank_solve"])
def test_float32_gradients_where_eigenvalues_tie_match_float64(factor, name):
    """A float32 factor's rounding splits the tie by ~1e-8 λ₁: the rotation term, rounding / (λ_i − λ_j), had made
    the gradient wrong by O(1); pairs that close count as tied (`spectral_grad.tie_eps`)."""
    grads = []
    for dtype in (torch.float32, torch.float64):
        A = FACTORS[factor]().float().to(dtype).requires_grad_()
        u = torch.randn(A.shape[0], A.shape[1], generator=torch.Generator().manual_seed(5)).to(dtype)
        grads.append(torch.autograd.grad(MAPS[name](A, u).sum(), A)[0].double())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5 * grads[1].abs().max().item())


@pytest.mark.parametrize("factor", FACTORS)
def test_the_gradient_path_gives_the_same_values(factor):
    """With a gradient to A the eigenpairs go through `spectral_grad`: bit for bit the old ``A W Λ^{-1/2}``."""
    A = FACTORS[factor]()
    values, W = torch.linalg.eigh(A.transpose(-1, -2) @ A)
    values, W = values.flip(-1).clamp_min(0), W.flip(-1)
    keep = values > geo.FLOAT64_CUT * values[:, :1]
    old = A @ (W * torch.where(keep, values.rsqrt(), 0).unsqueeze(-2))
    u = torch.randn(A.shape[0], A.shape[1], generator=torch.Generator().manual_seed(5))
    plain, tracked = geo.eigenpairs(A), geo.eigenpairs(A.clone().requires_grad_())
    assert plain.within is None and tracked.within is not None and (tracked.within == 0).all()
    assert torch.equal(plain.values, tracked.values.detach()) and torch.equal(plain.vectors, tracked.vectors.detach())
    torch.testing.assert_close(plain.vectors, old, rtol=0, atol=1e-12)
    for power, d in [(-1, None), (0, 2), (1, 2)]:
        assert torch.equal(geo.spectral_apply(plain, u, d, power=power),
                           geo.spectral_apply(tracked, u, d, power=power).detach())
    assert torch.equal(geo.lowrank_solve(A, u), geo.lowrank_solve(A.clone().requires_grad_(), u).detach())


@pytest.mark.parametrize("name", ["lowrank_solve", "spectral_apply p=0 d=3", "spectral_apply p=-1 d=3"])
def test_float32_gradients_of_distinct_small_eigenvalues_across_the_cut_match_float64(name):
    """λ = (1, 0.09, 1.6e-5, 2.5e-7): λ₃ is kept, λ₄ falls below the float32 cut 1e-6 λ₁ and below d = 3. Their
    gap (relative ~1) had counted as a tie under the absolute test ``≤ 256 ε₃₂ λ₁ = 3e-5 λ₁``: the rotation term
    across the cut was dropped and the float32 gradient was 4–5% off (`spectral_grad._tie_factors`)."""
    maps = {"lowrank_solve": lambda A, u: geo.lowrank_solve(A, u, rel_eps=1e-6),  # float32's cut in both
            "spectral_apply p=0 d=3": lambda A, u: geo.spectral_apply(geo.eigenpairs(A), u, 3, power=0),
            "spectral_apply p=-1 d=3": lambda A, u: geo.spectral_apply(geo.eigenpairs(A), u, 3, power=-1)}
    A64 = singular_value_factor([1.0, 0.3, 4e-3, 5e-4]).float().double()
    u = torch.randn(1, 8, generator=torch.Generator().manual_seed(2))
    grads = []
    for A in (A64.float(), A64):
        A = A.clone().requires_grad_()
        grads.append(torch.autograd.grad(maps[name](A, u.to(A.dtype)).sum(), A)[0].double())
    assert ((grads[0] - grads[1]).norm() / grads[1].norm()).item() < 1e-4
