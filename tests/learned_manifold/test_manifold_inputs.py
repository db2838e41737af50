"""The inputs `LearnedDataManifold` accepts and refuses: array-likes, bad and empty batches, mixed and half
precision, huge and meta points, batch axes, a caller's autocast, and the norm's gradient at its edges."""

import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import KNNCDC
from tests.conftest import FixedSubspaceField
from tests.learned_manifold.test_manifold import on_sphere
from tests.learned_manifold.test_manifold_construction import _tiny_model


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
    # (δ = 0: tangent_dim, as the gap rule may drop a real direction of the untrained model and warn)
    M = LearnedDataManifold(_tiny_model(rank=3), delta=delta, tangent_dim=2 if delta == 0 else None)
    x, u, v = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    calls = {"egrad2rgrad": lambda: M.egrad2rgrad(x, u), "inner": lambda: M.inner(x, u, v),
             "proju": lambda: M.proju(x, u), "norm": lambda: M.norm(x, u)}
    for name, call in calls.items():
        M.clear_cache()
        plain = call()
        M.clear_cache()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = call()
        assert inside.dtype == torch.float32, name
        torch.testing.assert_close(inside, plain, atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("delta", [0.0, 0.1])
def test_the_norm_has_a_zero_gradient_at_the_zero_vector(delta):
    """geoopt's ``inner ** 0.5`` had a NaN gradient at ``u = 0`` (δ = 0 and δ > 0): a velocity penalty started at
    rest turned every parameter NaN. Now 0 there (``torch.linalg.vector_norm``'s subgradient), the values and
    ``keepdim`` shapes unchanged, and ``gradcheck`` passes away from 0 (float64)."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=torch.float64), dim=-1)
    # (δ = 0: tangent_dim, as the gap rule drops a real k-NN direction at these points and warns)
    M = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.3, delta=delta), tangent_dim=2 if delta == 0 else None)
    x = data[:2]
    u = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(M.norm(x, u).sum(), u)
    assert torch.equal(grad, torch.zeros_like(grad))
    v = M.proju(x, torch.randn(2, 3, generator=g, dtype=torch.float64)).requires_grad_(True)
    torch.testing.assert_close(M.norm(x, v), M.inner(x, v).sqrt(), atol=0, rtol=0)
    assert M.norm(x, v, keepdim=True).shape == (2, 1)
    assert torch.autograd.gradcheck(lambda y, w: M.norm(y, w), (x.clone().requires_grad_(True), v))
