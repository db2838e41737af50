"""`LearnedDataManifold`: a geoopt-style contract suite (SPEC §5) over a learned and a closed-form geometry."""

import geoopt
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold.metrics import KNNCDC, CoMetricField, LearnedCDC
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
    """projx(projx(x)) == projx(x) exactly: the identity, or landing, which returns its fixed points unchanged."""
    _, M, x, _, _ = case
    px = M.projx(x)
    assert torch.equal(M.projx(px), px)


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


def test_retr_of_zero_is_identity_and_tiny_steps_stay_tiny(case):
    """retr(x, 0) == x exactly on the manifold, and a step of 1e-8 moves a point by about 1e-8, not by the
    landing tolerance or the denoiser's tangential shift."""
    _, M, x, u, _ = case
    assert torch.equal(M.retr(x, torch.zeros_like(x)), x)
    moved = (M.retr(x, 1e-8 * u / u.norm(dim=-1, keepdim=True)) - x).norm(dim=-1).max().item()
    assert moved < 1e-6, moved


def test_expmap_is_refused_and_points_to_geodesics(case):
    """A learned manifold has no closed-form exponential map: refused, never silently replaced by retr."""
    _, M, x, u, _ = case
    with pytest.raises(NotImplementedError, match="geodesic"):
        M.expmap(x, u)
    for call in (M.logmap, M.dist, M.dist2):  # geoopt's own stubs raised with an empty message
        with pytest.raises(NotImplementedError, match="learned_manifold.geodesic"):
            call(x, x)


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


def test_a_field_without_a_dimension_needs_data_shape():
    """EuclideanMetric fixes no D: without data_shape the constructor says so (before: accepted with data_shape
    (None,), then every call failed with "unsupported operand type(s) for *: 'int' and 'NoneType'"); with it, the
    manifold is plain R^D."""
    from learned_manifold.metrics import EuclideanMetric

    with pytest.raises(ValueError, match=r"data_shape is needed: EuclideanMetric"):
        LearnedDataManifold(EuclideanMetric())
    M = LearnedDataManifold(EuclideanMetric(), data_shape=(3,))
    x, u = torch.randn(4, 3), torch.randn(4, 3)
    assert M.dim == 3
    torch.testing.assert_close(M.inner(x, u), (u * u).sum(-1))
    torch.testing.assert_close(M.egrad2rgrad(x, u), u)


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


# -- landing moves points only along the normals (issue 13, item 1) -------------------------------------------
@pytest.mark.parametrize("which", ["sphere", "torus"])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_zero_gradient_leaves_landed_points_in_place(request, which, kind):
    """Under a zero gradient an optimiser with landing (and stabilize every step) moves landed points by at most
    1e-4 per step (before the normal-only landing: 4e-3 per step on S², 1.4e-3 on the torus)."""
    from learned_manifold import RiemannianAdam, RiemannianSGD

    model, data = request.getfixturevalue(f"{which}_model"), request.getfixturevalue(which)
    M = LearnedDataManifold(model, landing=True)
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
    its radius (the full denoiser step also shifted points ~2e-3 along the sphere)."""
    M = LearnedDataManifold(sphere_model, landing=True)
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


# -- the factor cache is never stale (item 5) -----------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), [("sigma", 0.3), ("k", 8), ("centred", False)])
def test_cache_is_not_used_after_the_field_settings_change(name, value):
    """Before: keyed on sigma only, so a k-NN field's new k or centred returned the old factor under no_grad."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)
    x, u = data[:4].clone(), torch.randn(4, 3, generator=g)
    field = KNNCDC(data, k=32, sigma=0.1)
    M = LearnedDataManifold(field)
    with torch.no_grad():
        M.egrad2rgrad(x, u)  # fills the cache
        setattr(field, name, value)
        torch.testing.assert_close(M.egrad2rgrad(x, u), LearnedDataManifold(field).egrad2rgrad(x, u))


def test_cache_is_not_used_after_the_network_is_cast(sphere_model):
    """``M.double()`` casts the network: a float64 point cached before the cast (computed by the float32 weights)
    must not be served afterwards (it was, 3e-6 off the float64 network's factor)."""
    import copy

    M = LearnedDataManifold(copy.deepcopy(sphere_model))
    x, u = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        M.egrad2rgrad(x, u)  # cached by the float32 network
        M.double()
        fresh = LearnedDataManifold(M.field).egrad2rgrad(x, u)
        assert torch.equal(M.egrad2rgrad(x, u), fresh)


def test_cache_sees_in_place_data_edits_that_skip_the_version_counter(sphere_model):
    """``x.data.add_()`` does not bump the version counter; the cache compares values with a private copy."""
    M, fresh = LearnedDataManifold(sphere_model), LearnedDataManifold(sphere_model)
    x = torch.nn.Parameter(on_sphere(4))
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _ in range(4):
            got = M.egrad2rgrad(x, u)
            fresh._cache = None
            torch.testing.assert_close(got, fresh.egrad2rgrad(x.detach().clone(), u), rtol=0, atol=1e-6)
            x.data.add_(0.1 * u)


# -- egrad2rgrad agrees with proju and inner (item 6) ---------------------------------------------------------
def test_riemannian_gradient_is_tangent_and_inverts_inner_at_delta_zero(sphere_model):
    """δ = 0: egrad2rgrad = G_d u lies in the tangent space proju keeps (the full G u had a normal part up to
    0.045), and inner(x, egrad2rgrad(u), v) = ⟨u, v⟩ for tangent v (it is the Riemannian gradient)."""
    M = LearnedDataManifold(sphere_model)
    x = on_sphere(20, seed=7)
    g = torch.Generator().manual_seed(8)
    u, w = torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g)
    r = M.egrad2rgrad(x, u)
    assert M.check_vector_on_tangent(x, r, atol=1e-5, rtol=1e-5)
    v = M.proju(x, w)
    torch.testing.assert_close(M.inner(x, r, v), (u * v).sum(-1), atol=1e-4, rtol=1e-4)


# -- input validation in one place (item 7) -------------------------------------------------------------------
def test_query_methods_accept_array_likes(sphere_model):
    """factor, tangent_space and intrinsic_dimension convert numpy arrays and lists (torch.as_tensor)."""
    np = pytest.importorskip("numpy")
    M = LearnedDataManifold(sphere_model)
    x = on_sphere(3)
    torch.testing.assert_close(M.tangent_space(x.numpy())[0], M.tangent_space(x)[0])
    torch.testing.assert_close(M.factor(x.tolist()), M.factor(x))
    assert torch.equal(M.intrinsic_dimension(np.asarray(x.tolist())), M.intrinsic_dimension(x.double()))
    with pytest.raises(TypeError, match="torch.Tensor"):
        M.proju(x.numpy(), x)  # the geoopt primitives need tensors


def test_bad_points_get_one_clear_error(sphere_model):
    """Wrong trailing axes are named with the data shape; a (3, 4) batch on a D = 3 model is refused."""
    M = LearnedDataManifold(sphere_model)
    with pytest.raises(ValueError, match=r"x has last axes \(7,\).*the manifold's data shape is \(3,\)"):
        M.egrad2rgrad(torch.randn(2, 7), torch.randn(2, 7))
    with pytest.raises(ValueError, match="data shape"):
        M.tangent_space(torch.randn(3, 4))
    with pytest.raises(ValueError, match="floating"):
        M.factor(torch.ones(2, 3, dtype=torch.long).bool())


def test_empty_batches_give_empty_results(sphere_model):
    for M in (LearnedDataManifold(sphere_model, landing=True), LearnedDataManifold(sphere_model)):
        x = torch.zeros(0, 3)
        assert M.projx(x).shape == M.retr(x, x).shape == M.egrad2rgrad(x, x).shape == (0, 3)
        assert M.inner(x, x).shape == (0,)


def test_mixed_float32_float64_computes_in_float64(sphere_model):
    M = LearnedDataManifold(sphere_model)
    x, u = on_sphere(4), torch.randn(4, 3, dtype=torch.float64)
    out = M.proju(x, u)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, M.proju(x.double(), u), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_points_work_with_delta(sphere_model, dtype):
    """float16/bf16 points: the r × r algebra runs in float32, results come back in the input dtype."""
    M = LearnedDataManifold(sphere_model, delta=0.05)
    x, u = on_sphere(4), torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    for method in (M.egrad2rgrad, M.inner):
        low = method(x.to(dtype), u.to(dtype))
        assert low.dtype == dtype
        torch.testing.assert_close(low.float(), method(x, u), rtol=0.05, atol=0.05)


def test_huge_inputs_raise_instead_of_turning_parameters_into_nan(sphere_model):
    """|x| ~ 1e30 overflows the network's float32 layers: the optimiser step raises and names it."""
    from learned_manifold import RiemannianSGD

    M = LearnedDataManifold(sphere_model)
    p = torch.nn.Parameter(torch.full((2, 3), 1e30))
    opt = RiemannianSGD([p], manifold=M, lr=0.1)
    (p.sum()).backward()
    with pytest.raises(ValueError, match="NaN/inf at 2 finite point"):
        opt.step()
    assert torch.isfinite(p).all()


def test_tangent_space_of_a_field_without_a_factor_goes_through_its_dense_g():
    from learned_manifold.evaluation import field_eigenpairs
    from learned_manifold.metrics import TangentialMetric

    field = TangentialMetric(lambda y, s: y / y.norm(dim=-1, keepdim=True), 0.1)  # denoiser onto the unit sphere
    x = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    manifold = LearnedDataManifold(field, data_shape=(3,))
    values, vectors = manifold.tangent_space(x)
    torch.testing.assert_close(values, field_eigenpairs(field, x).values)
    assert values.shape == (4, 3) and vectors.shape == (4, 3, 3)
    assert manifold.intrinsic_dimension(x).tolist() == [2, 2, 2, 2]
    assert (vectors[..., 2] * x).sum(-1).abs().min() > 0.999  # the smallest eigenvalue's vector is the normal


def test_the_norm_has_a_finite_gradient_for_a_factor_wider_than_tall_in_float32():
    """k-NN with k = 64 in R³: the truncated columns' eigenvalues are ~0, and ``where(λ > 0, 1/λ, 0)`` had
    back-propagated ``0 · (−1/λ²) = NaN`` into 2–3 of 10 gradient rows in float32 (float64 hid it)."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)
    M = LearnedDataManifold(KNNCDC(data, k=64, sigma=0.1))
    x = torch.nn.functional.normalize(torch.randn(10, 3, generator=g), dim=-1).requires_grad_(True)
    u = torch.randn(10, 3, generator=g)
    M.norm(x, M.proju(x, u)).sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    x64 = x.detach().double().requires_grad_(True)
    LearnedDataManifold(KNNCDC(data.double(), k=64, sigma=0.1)).norm(x64, M.proju(x64, u.double())).sum().backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-2, atol=1e-3)


def test_tangent_spaces_and_dimensions_keep_the_batch_axes_of_the_points():
    """Points ``(2, 4, 3)``: eigenpairs ``(2, 4, r)``/``(2, 4, 3, r)`` and dimensions ``(2, 4)``, as `proju` keeps
    them (they had been flattened to 8 rows); a single point gives ``(r,)``, ``(3, r)`` and ``()``."""
    M = LearnedDataManifold(FixedSubspaceField(_plane()))
    x = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(1))
    values, vectors = M.tangent_space(x)
    flat_values, flat_vectors = M.tangent_space(x.reshape(8, 3))
    assert values.shape[:2] == (2, 4) and vectors.shape[:3] == (2, 4, 3)
    assert torch.equal(values.reshape(8, -1), flat_values) and torch.equal(vectors.reshape(8, 3, -1), flat_vectors)
    assert M.intrinsic_dimension(x).shape == (2, 4) and M.intrinsic_dimension(x[0, 0]).shape == ()
    assert M.tangent_space(x[0, 0])[1].shape == (3, values.shape[-1])


def test_empty_batches_pass_the_checks_and_batches_that_do_not_broadcast_are_named():
    M = LearnedDataManifold(FixedSubspaceField(_plane()))
    assert M.check_point_on_manifold(torch.zeros(0, 3))
    assert M.check_vector_on_tangent(torch.zeros(0, 3), torch.zeros(0, 3))
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=-1)
    landing = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.1), landing=True)
    assert landing.check_point_on_manifold(torch.zeros(0, 3))  # had raised a bare torch error
    with pytest.raises(ValueError, match=r"batch shapes of x \(2, 3\), u \(3, 3\) do not broadcast"):
        M.proju(torch.randn(2, 3), torch.randn(3, 3))


def _plane() -> torch.Tensor:
    """A fixed random orthonormal basis ``(3, 2)``."""
    return torch.linalg.qr(torch.randn(3, 2, generator=torch.Generator().manual_seed(2))).Q


# -- fixers' session s25 -----------------------------------------------------------------------------------------
def _tiny_model(rank=2, seed=0):
    from learned_manifold import MetricModel, ModelConfig

    torch.manual_seed(seed)
    return MetricModel(ModelConfig(data_shape=(3,), rank=rank, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))


def test_the_cache_sees_new_knn_data():
    """`KNNCDC.load_state_dict` replaces the data: the next no-grad query (an optimiser step's) had returned the
    factor of the old data (proju(e_y) = e_y on the plane z = 0 after loading the plane y = 0)."""
    g = torch.Generator().manual_seed(0)
    plane_xy = torch.cat([torch.randn(500, 2, generator=g), torch.zeros(500, 1)], 1)
    field = KNNCDC(plane_xy, k=16, sigma=0.3)
    M = LearnedDataManifold(field)
    x, u = torch.tensor([[0.1, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(M.proju(x, u), u, atol=1e-5, rtol=0)
        field.load_state_dict({"data": plane_xy[:, [0, 2, 1]].contiguous()})  # now the plane y = 0
        torch.testing.assert_close(M.proju(x, u), torch.zeros(1, 3), atol=1e-5, rtol=0)


def test_the_cache_sees_weights_changed_in_place():
    """``model.load_state_dict`` (``copy_``) and an in-place update of a parameter: the next no-grad query equals a
    fresh manifold's (it had returned the old weights' geometry, 34 off on a trained model)."""
    model, other = _tiny_model(seed=0), _tiny_model(seed=1)
    M = LearnedDataManifold(model, delta=1e-2)
    x, u = torch.randn(4, 3), torch.randn(4, 3)
    with torch.no_grad():
        before = M.egrad2rgrad(x, u)
        model.load_state_dict(other.state_dict())
        after = M.egrad2rgrad(x, u)
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, LearnedDataManifold(model, delta=1e-2).egrad2rgrad(x, u), atol=0, rtol=0)
        next(model.parameters()).mul_(2.0)  # e.g. an optimiser step on the network
        torch.testing.assert_close(M.egrad2rgrad(x, u), LearnedDataManifold(model, delta=1e-2).egrad2rgrad(x, u),
                                   atol=0, rtol=0)
        assert M.egrad2rgrad(x, u) is not None and M._cache is not None  # an unchanged field still hits
        cached = M._cache
        M.egrad2rgrad(x, u)
        assert M._cache is cached


class _NoRankField(FixedSubspaceField):
    """A low-rank field that does not tell its rank before a query."""


def test_tangent_dim_above_the_rank_is_refused_naming_it():
    """A rank-2 factor with tangent_dim = 3 ≤ D: refused at construction where the rank is known (a model's rank),
    else at the first query, naming tangent_dim (it had failed at the first step with "d must lie in 1..r")."""
    with pytest.raises(ValueError, match=r"tangent_dim = 3 exceeds the rank r = 2"):
        LearnedDataManifold(_tiny_model(rank=2), tangent_dim=3)
    Q = torch.linalg.qr(torch.randn(3, 2, dtype=torch.float64)).Q
    M = LearnedDataManifold(_NoRankField(Q), tangent_dim=3)
    x = torch.zeros(2, 3, dtype=torch.float64)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"tangent_dim = 3 exceeds the rank r = 2"):
            M.proju(x, x)


def test_meta_points_are_refused_naming_the_argument():
    """Points on the meta device had failed inside autocast ("unsupported autocast device_type 'meta'")."""
    M = LearnedDataManifold(_tiny_model())
    with pytest.raises(ValueError, match="x is on the 'meta' device: meta tensors have shapes but no values"):
        M.tangent_space(torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="'meta' device"):
        M.field.factor(torch.zeros(2, 3, device="meta"))


@pytest.mark.parametrize("delta", [1e-2, 0.0])
def test_a_callers_autocast_does_not_change_the_geometry(delta):
    """Inside ``torch.autocast('cpu', bfloat16)`` the manifold's answers are float32 and equal to those outside
    (the Woodbury/Gram algebra had run in bf16)."""
    M = LearnedDataManifold(_tiny_model(rank=3), delta=delta)
    x, u, v = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    calls = {"egrad2rgrad": lambda: M.egrad2rgrad(x, u), "inner": lambda: M.inner(x, u, v),
             "proju": lambda: M.proju(x, u), "norm": lambda: M.norm(x, u)}
    for name, call in calls.items():
        M._cache = None
        plain = call()
        M._cache = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = call()
        assert inside.dtype == torch.float32, name
        torch.testing.assert_close(inside, plain, atol=0, rtol=0, msg=name)


class _UndeclaredFactor(CoMetricField):
    """Implements ``factor`` but leaves ``low_rank`` False (as `curvature`'s ``Spheres`` example)."""

    dim = 3

    def factor(self, x):
        return torch.eye(3, 2, dtype=x.dtype).expand(x.shape[0], 3, 2)


def test_tangent_dim_on_an_undeclared_factor_says_to_set_low_rank():
    """Before: "… has no factor", though the field implements one; the missing piece is ``low_rank = True``."""
    with pytest.raises(ValueError, match=r"_UndeclaredFactor implements factor\(\) but does not set low_rank = True"):
        LearnedDataManifold(_UndeclaredFactor(), tangent_dim=1)
    with pytest.raises(ValueError, match=r"_Denoising implements factor\(\) but does not set low_rank = True"):
        LearnedDataManifold(_Denoising(), landing=True)


class _Denoising(_UndeclaredFactor):
    can_project = True

    def project(self, x):
        return x


def test_tangent_dim_with_delta_and_no_landing_warns_naming_both():
    """With δ > 0 and no landing, ``tangent_dim`` changes none of inner/proju/egrad2rgrad (checked here): it had been
    accepted silently. It still acts in `curvature`, so a warning rather than an error."""
    from learned_manifold import curvature

    A = Q * torch.tensor([1.0, 0.5])  # eigenvalues 1 and 0.25 (the gap rule reads dimension 1), then 0
    with pytest.warns(UserWarning, match=r"tangent_dim = 2 does not change inner.*delta = 0\.05 > 0"):
        M = LearnedDataManifold(FixedSubspaceField(A, 0.05), tangent_dim=2)
    plain = LearnedDataManifold(FixedSubspaceField(A, 0.05))
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    for name in ("inner", "proju", "egrad2rgrad"):
        torch.testing.assert_close(getattr(M, name)(x, u), getattr(plain, name)(x, u), atol=0, rtol=0)
    assert curvature(M, x).basis.shape[-1] == 2 and curvature(plain, x).basis.shape[-1] == 1  # where it acts
    LearnedDataManifold(FixedSubspaceField(Q, 0.0), tangent_dim=1)  # δ = 0: no warning (warnings are errors here)


@pytest.mark.parametrize("delta", [0.0, 0.1])
def test_the_norm_has_a_zero_gradient_at_the_zero_vector(delta):
    """geoopt's ``inner ** 0.5`` had a NaN gradient at ``u = 0`` (δ = 0 and δ > 0): a velocity penalty started at
    rest turned every parameter NaN. Now 0 there (``torch.linalg.vector_norm``'s subgradient), the values and
    ``keepdim`` shapes unchanged, and ``gradcheck`` passes away from 0 (float64)."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=torch.float64), dim=-1)
    M = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.3, delta=delta))
    x = data[:2]
    u = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(M.norm(x, u).sum(), u)
    assert torch.equal(grad, torch.zeros_like(grad))
    v = M.proju(x, torch.randn(2, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    torch.testing.assert_close(M.norm(x, v), M.inner(x, v).sqrt(), atol=0, rtol=0)
    assert M.norm(x, v, keepdim=True).shape == (2, 1)
    assert torch.autograd.gradcheck(lambda y, w: M.norm(y, w), (x.clone().requires_grad_(True), v))
