"""Building a `LearnedDataManifold` and asking it about itself: constructor errors, the checks' explanations,
dtype and state-dict moves, geometry queries' shapes and the tangent dimension it reports."""

import warnings

import geoopt
import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, load_model
from learned_manifold.metrics import CoMetricField, LearnedCDC
from tests.conftest import FixedSubspaceField
from tests.learned_manifold.test_manifold import Q, on_sphere


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


# -- fixers' session s25 -----------------------------------------------------------------------------------------
def _tiny_model(rank=2, seed=0):
    from learned_manifold import MetricModel, ModelConfig

    torch.manual_seed(seed)
    return MetricModel(ModelConfig(data_shape=(3,), rank=rank, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))


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
    with pytest.warns(RuntimeWarning, match="kept eigenvalues are far from equal"):  # (eigenvalues 1 and 0.25)
        assert curvature(M, x).basis.shape[-1] == 2  # where it acts
    with warnings.catch_warnings():  # the gap rule's d = 1 drops 0.25 λ₁, at the warning's limit: rounding decides
        warnings.filterwarnings("ignore", message=".*keep the gap rule's directions")
        assert curvature(plain, x).basis.shape[-1] == 1
    LearnedDataManifold(FixedSubspaceField(Q, 0.0), tangent_dim=1)  # δ = 0: no warning (warnings are errors here)


class _UnflaggedProjector(CoMetricField):
    """The sphere's tangent projector ``I − n nᵀ`` given by ``factor`` only, without ``low_rank = True``."""

    dim = 3

    def __init__(self, delta: float = 0.0):
        super().__init__()
        self.delta = delta

    def factor(self, x):
        n = torch.nn.functional.normalize(x, dim=-1)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


def test_delta_0_refuses_the_fields_it_would_misread():
    """At δ = 0 a field without ``low_rank = True`` is read as R^D with the metric G⁻¹ (proju = identity). Before,
    a factor-only field without the flag (tester C, item 6: proju 0.71 off the tangent projection) and
    ScoreJacobianMetric with δ = 0 (tester A, item 3: proju the identity, inner and RiemannianAdam raising) were
    accepted silently. Full-rank fields (Euclidean, Stein, VAE pullback) keep working at δ = 0."""
    from learned_manifold.metrics import EuclideanMetric, ScoreJacobianMetric, SteinScoreMetric

    with pytest.raises(ValueError, match=r"_UnflaggedProjector implements factor\(\) but does not set low_rank = "
                                         r"True.*set low_rank = True on _UnflaggedProjector if factor returns A"):
        LearnedDataManifold(_UnflaggedProjector())
    to_sphere = lambda y, sigma: torch.nn.functional.normalize(y, dim=-1)  # noqa: E731
    with pytest.raises(ValueError, match=r"ScoreJacobianMetric's G is singular on the data and its metric needs "
                                         r"delta > 0.*construct it with delta > 0"):
        LearnedDataManifold(ScoreJacobianMetric(to_sphere, 0.1), data_shape=(3,))
    for accepted in (_UnflaggedProjector(delta=0.1), ScoreJacobianMetric(to_sphere, 0.1, delta=0.1),
                     SteinScoreMetric(to_sphere, 0.1), EuclideanMetric(3)):
        LearnedDataManifold(accepted, data_shape=(3,))
    flagged = type("Flagged", (_UnflaggedProjector,), {"low_rank": True})()
    x = on_sphere(4)
    u = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    tangent = u - (u * x).sum(-1, keepdim=True) * x
    torch.testing.assert_close(LearnedDataManifold(flagged).proju(x, u), tangent, atol=1e-6, rtol=0)


def test_random_says_it_is_not_available():
    """``random`` carried geoopt's "Random sampling on the manifold..." docstring (tester A, item 5)."""
    assert LearnedDataManifold.random.__doc__.startswith("Not available: a learned manifold has no intrinsic sampler")
    with pytest.raises(NotImplementedError, match="no intrinsic sampler"):
        LearnedDataManifold(FixedSubspaceField(Q)).random(3)


@pytest.mark.parametrize("given", [np.int64(2), torch.tensor(2), torch.tensor(2, dtype=torch.uint8)])
def test_tangent_dim_given_as_a_numpy_or_tensor_integer_is_stored_as_the_int(given):
    """Tester F (s30, item 1): ``tangent_dim=np.int64(2)`` (or ``M.intrinsic_dimension(x).max()``) was stored raw,
    and ``proju``/``inner`` then failed with "d must be an int, ... got int64" (an internal name), the flows with
    "tangent_dim must be an int". Now it is stored as the int and every call equals ``tangent_dim=2``'s."""
    M, plain = (LearnedDataManifold(FixedSubspaceField(Q, 0.0), tangent_dim=d) for d in (given, 2))
    assert type(M.tangent_dim) is int and M.tangent_dim == 2
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    for name in ("proju", "inner", "egrad2rgrad"):
        torch.testing.assert_close(getattr(M, name)(x, u), getattr(plain, name)(x, u), atol=0, rtol=0)


@pytest.mark.parametrize(("given", "what"), [(torch.tensor([2]), r"shape \(1,\) and dtype torch\.int64"),
                                             (torch.tensor(2.0), r"shape \(\) and dtype torch\.float32"),
                                             (torch.tensor(True), r"shape \(\) and dtype torch\.bool")])
def test_tangent_dim_given_as_another_tensor_is_refused_naming_it(given, what):
    """A one-element 1-d tensor and a bool tensor passed ``operator.index`` (read as 2 and 1); a float tensor was
    refused as "must be an integer, got Tensor". Each now gets one message naming what an integer may be."""
    with pytest.raises(TypeError, match=r"^tangent_dim must be an integer \(an int, a NumPy integer or a 0-d integer "
                                         r"tensor\), got a tensor of " + what):
        LearnedDataManifold(FixedSubspaceField(Q, 0.0), tangent_dim=given)
