"""`LearnedDataManifold`: a geoopt-style contract suite (SPEC §5) over a learned and a closed-form geometry."""

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold.metrics import LearnedCDC
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(5, 2, generator=torch.Generator().manual_seed(0))).Q


def on_sphere(n, seed=0):
    return torch.nn.functional.normalize(
        torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


@pytest.fixture(
    params=["learned-delta0", "learned-delta", "learned-landing", "subspace-delta0", "subspace-delta"]
)
def case(request, sphere_model):
    """(manifold, points on it, ambient vectors, tolerance) for each configuration."""
    name = request.param
    g = torch.Generator().manual_seed(3)
    if name.startswith("learned"):
        kwargs = {"delta0": {}, "delta": {"delta": 0.05}, "landing": {"landing": True}}[name.split("-")[1]]
        M = LearnedDataManifold(sphere_model, **kwargs)
        x = on_sphere(6)
        if M.landing:
            x = M.projx(x)
        return name, M, x, torch.randn(6, 3, generator=g), 1e-4
    delta = 0.0 if name.endswith("delta0") else 0.05
    M = LearnedDataManifold(FixedSubspaceField(Q, delta))
    x = torch.randn(6, 2, generator=g) @ Q.T
    return name, M, x, torch.randn(6, 5, generator=g), 1e-5


def test_projx_is_idempotent(case):
    """Exactly for the identity; with landing, to within the known inward shift d·σ²/R of the posterior mean
    on a sphere of radius R (here d = 2, R = 1) plus a model error of 0.005."""
    _, M, x, _, tol = case
    px = M.projx(x)
    atol = 2 * M.field.sigma**2 + 5e-3 if M.landing else tol
    torch.testing.assert_close(M.projx(px), px, atol=atol, rtol=0)


def test_landing_projection_shift_is_small_and_inward(sphere_model):
    """x̂ of a point on the sphere lies inward by about dσ²/(2R) (d = 2, R = 1), plus a model error."""
    M = LearnedDataManifold(sphere_model, landing=True)
    x = on_sphere(200, seed=5)
    shift = M.projx(x).norm(dim=-1) - 1.0
    sigma = M.field.sigma
    assert shift.mean() < 0, "the posterior mean of a convex surface lies inside it"
    assert shift.abs().mean() < 2 * sigma**2 + 0.01, (shift.abs().mean(), sigma)


def test_proju_lands_in_tangent_space_and_is_idempotent(case):
    name, M, x, u, tol = case
    pu = M.proju(x, u)
    assert M.check_vector_on_tangent(x, pu, atol=tol, rtol=tol)
    torch.testing.assert_close(M.proju(x, pu), pu, atol=tol, rtol=tol)
    if M.delta > 0:
        torch.testing.assert_close(pu, u)  # every vector is tangent for δ > 0
    if name == "subspace-delta0":
        torch.testing.assert_close(pu, u @ Q @ Q.T)


def test_learned_tangent_space_matches_the_sphere(sphere_model):
    M = LearnedDataManifold(sphere_model)
    x = on_sphere(50, seed=9)
    u = torch.randn(50, 3)
    pu = M.proju(x, u)
    truth = u - (u * x).sum(-1, keepdim=True) * x
    assert (pu - truth).norm(dim=-1).mean() < 0.1 * u.norm(dim=-1).mean()
    assert (M.intrinsic_dimension(x) == 2).float().mean() >= 0.9


def test_retr_of_zero_is_identity_and_expmap_is_retr(case):
    _, M, x, u, tol = case
    torch.testing.assert_close(M.retr(x, torch.zeros_like(x)), M.projx(x), atol=tol, rtol=0)
    torch.testing.assert_close(M.expmap(x, 0.01 * u), M.retr(x, 0.01 * u))


def test_retr_handles_non_tangent_vectors(case):
    """geoopt's momentum seeds its buffer with a raw Euclidean gradient: retr must absorb the normal part."""
    name, M, x, u, tol = case
    if name == "subspace-delta0":
        y = M.retr(x, u)
        torch.testing.assert_close(y - x, (u @ Q) @ Q.T, atol=tol, rtol=0)  # stays in the subspace


def test_batched_equals_per_item(case):
    _, M, x, u, tol = case
    batched = (M.proju(x, u), M.egrad2rgrad(x, u), M.retr(x, 0.1 * u), M.inner(x, u, u))
    for i in range(x.shape[0]):
        single = (
            M.proju(x[i], u[i]),
            M.egrad2rgrad(x[i], u[i]),
            M.retr(x[i], 0.1 * u[i]),
            M.inner(x[i], u[i]),
        )
        for b, s in zip(batched, single, strict=True):
            torch.testing.assert_close(b[i], s, atol=10 * tol, rtol=1e-4)


def test_inner_shapes_with_and_without_keepdim(case):
    _, M, x, u, _ = case
    assert M.inner(x, u).shape == (6,)
    assert M.inner(x, u, keepdim=True).shape == (6, 1)
    assert M.component_inner(x, u).shape == (6, 1)
    assert M.norm(x, u).shape == (6,)
    xs = x.reshape(2, 3, -1)
    assert M.inner(xs, u.reshape(2, 3, -1)).shape == (2, 3)  # extra batch axes
    assert M.inner(x[0], u[0]).shape == ()


def test_inner_is_the_woodbury_metric_and_inverts_egrad2rgrad(case):
    _, M, x, u, tol = case
    if M.delta > 0:
        v = M.egrad2rgrad(x, u)  # (G + δI) u
        torch.testing.assert_close(M.inner(x, v, u), (u * u).sum(-1), atol=1e-3, rtol=1e-3)


def test_checks_explain_problems(sphere_model):
    M = LearnedDataManifold(sphere_model)
    ok, reason = M.check_point_on_manifold(torch.full((2, 3), float("nan")), explain=True)
    assert not ok and "NaN" in reason
    ok, reason = M.check_point_on_manifold(torch.zeros(2, 4), explain=True)
    assert not ok and "data shape" in reason
    x = on_sphere(4)
    ok, reason = M.check_vector_on_tangent(x, x, explain=True)  # the normal is not tangent for δ = 0
    assert not ok and "tangent" in reason


def test_follows_to_dtype_and_state_dict(sphere_model_path):
    M = LearnedDataManifold(sphere_model_path)
    assert any(k.startswith("field.model.factor_net") for k in M.state_dict())
    M64 = LearnedDataManifold(load_model(sphere_model_path)).to(torch.float64)
    x = on_sphere(3).double()
    assert M64.egrad2rgrad(x, x).dtype == torch.float64
    assert next(M64.field.model.parameters()).dtype == torch.float64


def test_constructor_errors(sphere_model):
    with pytest.raises(TypeError, match="model file path"):
        LearnedDataManifold(42)
    with pytest.raises(ValueError, match="belong to the field"):
        LearnedDataManifold(LearnedCDC(sphere_model), delta=0.1)
    with pytest.raises(ValueError, match="landing"):
        LearnedDataManifold(FixedSubspaceField(Q), landing=True)
    with pytest.raises(ValueError, match="data_shape"):
        LearnedDataManifold(FixedSubspaceField(Q), data_shape=(2, 3))
    with pytest.raises(FileNotFoundError):
        LearnedDataManifold("does-not-exist.lmm")


def test_geometry_queries_shapes(sphere_model):
    M = LearnedDataManifold(sphere_model)
    x = on_sphere(7)
    assert M.factor(x).shape == (7, 3, 3)
    values, vectors = M.tangent_space(x)
    assert values.shape == (7, 3) and vectors.shape == (7, 3, 3)
    assert (values[:, :-1] >= values[:, 1:]).all()
    assert M.intrinsic_dimension(x).dtype == torch.long


def test_manifold_parameter_and_image_shaped_points():
    field = FixedSubspaceField(torch.eye(6)[:, :2], delta=0.0)
    M = LearnedDataManifold(field, data_shape=(2, 3))
    assert M.ndim == 2
    p = geoopt.ManifoldParameter(torch.zeros(4, 2, 3), manifold=M)
    u = torch.randn(4, 2, 3)
    pu = M.proju(p, u)
    assert pu.shape == (4, 2, 3)
    torch.testing.assert_close(pu.reshape(4, 6)[:, 2:], torch.zeros(4, 4))


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
    from learned_manifold import manifold as manifold_module

    eigen_calls = []
    original_eigenpairs = manifold_module.eigenpairs
    monkeypatch.setattr(manifold_module, "eigenpairs", lambda A: eigen_calls.append(A.shape) or original_eigenpairs(A))

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
        M_ref._cache = None
        opt_ref.step()
        opt.step()
        torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-6)
    assert (p - on_sphere(4)).abs().max() > 1e-3  # it moved
    assert len(calls) == 2 + 3  # step 1: the point and the new point; each later step: the new point only
    assert len(eigen_calls) == 2 * 4 + 2 + 3  # M_ref: 2 per step (x and the new point); M: as for the network
