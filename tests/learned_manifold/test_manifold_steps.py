"""`LearnedDataManifold` under optimiser steps: one factor evaluation per point per step, landing that moves
points only along the normals, and what a point on the manifold is."""

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold
from tests.learned_manifold.test_manifold import on_sphere


def test_factor_is_evaluated_once_per_point_per_optimiser_step(sphere_model):
    """egrad2rgrad, component_inner and retr at the same point share one network call; a changed point does not."""
    from learned_manifold import RiemannianAdam

    M = LearnedDataManifold(sphere_model, delta=0.05)
    calls = []
    original = M.field.factor
    M.field.factor = lambda xf: calls.append(xf.shape) or original(xf)
    p = torch.nn.Parameter(on_sphere(4))
    opt = RiemannianAdam([p], manifold=M, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        (p**2).sum().backward()
        opt.step()
    assert len(calls) == 3  # one per step: δ > 0, so retr and transp need no factor
    with torch.no_grad():
        x = on_sphere(4)
        M.egrad2rgrad(x, x)
        x.mul_(1.01)  # in place: the version changes, the cache must not be used
        fresh = M.egrad2rgrad(x, x)
    torch.testing.assert_close(fresh, M.field.apply(x, x))


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_tangent_bundle_step_reuses_the_factor_transp_computed(sphere_model, kind, monkeypatch):
    """δ = 0: ``transp`` needs the factor (and eigenpairs) at the new point, which the next step starts from: one
    network call and one eigen step per step, and the same trajectory as an optimiser whose manifold forgets its
    cache before every step."""
    from learned_manifold import RiemannianAdam, RiemannianSGD
    from learned_manifold import manifold_factors as factors_module

    eigen_calls = []
    original_eigenpairs = factors_module.eigenpairs
    monkeypatch.setattr(factors_module, "eigenpairs", lambda A: eigen_calls.append(A.shape) or original_eigenpairs(A))

    def make(manifold, param):
        return (RiemannianAdam([param], manifold=manifold, lr=0.01) if kind == "adam"
                else RiemannianSGD([param], manifold=manifold, lr=0.01, momentum=0.9))

    M, M_ref = LearnedDataManifold(sphere_model), LearnedDataManifold(sphere_model)
    calls = []
    original = M.field.factor
    M.field.factor = lambda xf: calls.append(xf.shape) or original(xf)
    p, p_ref = torch.nn.Parameter(on_sphere(4)), torch.nn.Parameter(on_sphere(4))
    opt, opt_ref = make(M, p), make(M_ref, p_ref)
    for _ in range(4):
        for param, optimiser in ((p, opt), (p_ref, opt_ref)):
            optimiser.zero_grad()
            (param**2).sum().backward()
        M_ref.clear_cache()
        opt_ref.step()
        opt.step()
        torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-6)
    assert (p - on_sphere(4)).abs().max() > 1e-3  # it moved
    assert len(calls) == 2 + 3  # step 1: the point and the new point; each later step: the new point only
    assert len(eigen_calls) == 2 * 4 + 2 + 3  # M_ref: 2 per step (x and the new point); M: as for the network


# -- landing moves points only along the normals (issue 13, item 1) -------------------------------------------
@pytest.mark.parametrize("which", ["sphere", "torus"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_zero_gradient_leaves_landed_points_in_place(request, which, kind):
    """Under a zero gradient an optimiser with landing (and stabilize every step) moves landed points by at most
    1e-4 per step (before the normal-only landing: 4e-3 per step on S², 1.4e-3 on the torus)."""
    from learned_manifold import RiemannianAdam, RiemannianSGD

    model, data = request.getfixturevalue(f"{which}_model"), request.getfixturevalue(which)
    # tangent_dim = 2, what the gap rule reads at every point here: at 4 of these 32 torus points the learned
    # normal eigenvalue is 0.105-0.128 λ₁, above the dropped-direction warning's 0.1 (dimension.DROPPED_LIMIT)
    M = LearnedDataManifold(model, landing=True, tangent_dim=2)
    x0 = M.projx(data.sample(32, generator=torch.Generator().manual_seed(1)))
    p = torch.nn.Parameter(x0.clone())
    opt = (RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.9, stabilize=1) if kind == "sgd"
           else RiemannianAdam([p], manifold=M, lr=0.1, stabilize=1))
    steps = 20
    for _ in range(steps):
        opt.zero_grad()
        (0.0 * p).sum().backward()
        opt.step()
    drift = (p.detach() - x0).norm(dim=-1).max().item() / steps
    assert drift <= 1e-4, drift


def test_stabilize_does_not_move_a_frozen_manifold_parameter(sphere_model):
    """A ManifoldParameter without gradient, already landed, is left bit for bit where it is by stabilize."""
    M = LearnedDataManifold(sphere_model, landing=True)
    frozen = geoopt.ManifoldParameter(M.projx(on_sphere(8, seed=2)), manifold=M)
    before = frozen.detach().clone()
    moving = geoopt.ManifoldParameter(M.projx(on_sphere(4)), manifold=M)
    opt = geoopt.optim.RiemannianSGD([moving, frozen], lr=0.05, stabilize=1)
    for _ in range(5):
        opt.zero_grad()
        (-(moving[:, 2]).sum()).backward()
        opt.step()
    assert torch.equal(frozen.detach(), before)


def test_landing_brings_far_points_back(sphere_model):
    """One projx from radius 0.43 (and from N(0, I)) lands on the unit sphere, up to the posterior mean's
    known inward shift ≈ dσ²/(2R) (d = 2, R = 1) and the model error (before: 0.44 away after one projx)."""
    M = LearnedDataManifold(sphere_model, landing=True)
    bound = 2 * M.field.sigma**2 + 0.03
    far = 0.43 * on_sphere(100, seed=4)
    assert (M.projx(far).norm(dim=-1) - 1).abs().max() < bound
    p = geoopt.ManifoldParameter(torch.randn(100, 3, generator=torch.Generator().manual_seed(5)), manifold=M)
    with torch.no_grad():
        p.proj_()
    assert (p.detach().norm(dim=-1) - 1).abs().max() < bound
    assert M.check_point_on_manifold(p)


def test_landing_builds_no_graph_even_with_gradients_on(sphere_model):
    """projx's landing is documented as not differentiable: called with gradients enabled on a leaf that requires
    them it returns a plain tensor, instead of a graph through every iterate's network calls (before: a
    ``grad_fn`` chain as long as the landing's iterations)."""
    M = LearnedDataManifold(sphere_model, landing=True)
    far = (0.6 * on_sphere(20, seed=6)).requires_grad_()
    with torch.enable_grad():
        landed = M.projx(far)
    assert landed.grad_fn is None and not landed.requires_grad
    assert (landed.norm(dim=-1) - 1).abs().max() < 2 * M.field.sigma**2 + 0.03


def test_landing_that_cannot_converge_says_so(sphere_model):
    """A point that cannot land in the allowed iterations raises, naming the problem (never a silent result)."""
    M = LearnedDataManifold(sphere_model, landing=True, landing_steps=1)
    with pytest.raises(ValueError, match="did not land"):
        M.projx(3.0 * on_sphere(4))


def test_landing_moves_only_along_the_normal(sphere_model):
    """Landing from just off the sphere moves a point (almost) radially: its direction changes by far less than
    its radius (the full denoiser step also shifted points ~2e-3 along the sphere). At σ = 0.125 the offset 0.02
    lies within σ/2, where landing is normal-only (at the fixture's default σ, 0.031 on some draws, it is "far")."""
    M = LearnedDataManifold(sphere_model, landing=True, sigma=0.125)
    x = 1.02 * on_sphere(50, seed=6)
    y = M.projx(x)
    tangential = (torch.nn.functional.normalize(y, dim=-1) - torch.nn.functional.normalize(x, dim=-1)).norm(dim=-1)
    assert (y.norm(dim=-1) - x.norm(dim=-1)).abs().min() > 0.01  # it did move
    assert tangential.max() < 2e-3, tangential.max()


# -- what a point on the manifold is (item 2) -----------------------------------------------------------------
def test_check_point_with_landing_means_a_fixed_point_of_projx(sphere_model):
    """With landing a point is on the manifold iff projx leaves it in place; explain gives the distance."""
    M = LearnedDataManifold(sphere_model, landing=True)
    x = on_sphere(6)
    assert M.check_point_on_manifold(M.projx(x))
    ok, reason = M.check_point_on_manifold(x + 0.05 * x, explain=True)
    assert not ok and "fixed point" in reason and "|projx(x) - x| = " in reason


def test_check_point_without_landing_accepts_any_finite_point(sphere_model):
    """Without landing the geometry is defined everywhere: any finite point of the right shape is a point."""
    M = LearnedDataManifold(sphere_model)
    assert M.check_point_on_manifold(5 * torch.randn(4, 3))
    assert not M.check_point_on_manifold(torch.full((1, 3), float("inf")))
