"""The one check of what a field's ``factor(x)`` returns (`learned_manifold.metrics.factor_checks`): shape
``(B, D, r)`` with ``r ≥ 1``, the points' dtype and device, one ``ValueError`` naming ``<FieldClass>.factor``
wherever the factor is read (tester C, items 1-3)."""

import pytest
import torch

from learned_manifold import LearnedDataManifold, curvature
from learned_manifold.metrics import CoMetricField

X = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
U = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))


class Projector(CoMetricField):
    """``G = I − n nᵀ`` (``n = x/‖x‖``), the sphere's tangent projector, as a ``(B, 3, 3)`` factor."""

    low_rank, dim = True, 3

    def factor(self, x):
        n = torch.nn.functional.normalize(x, dim=-1)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


class Float64(Projector):
    """The projector computed in float64 whatever the points' dtype."""

    def factor(self, x):
        return super().factor(x.double())


class FirstPoint(Projector):
    """The projector of the first point only (batch 1): it had been broadcast to every point silently."""

    def factor(self, x):
        return super().factor(x[:1])


class NoColumn(Projector):
    """A factor with no column, ``(B, D, 0)``: ``G = 0``."""

    def factor(self, x):
        return x.new_zeros(x.shape[0], 3, 0)


class Meta(Projector):
    """A factor on another device than the points (the meta device stands for a GPU here)."""

    def factor(self, x):
        return super().factor(x).to("meta")


def _consumers(field):
    """Every way the factor is read: the manifold's primitives and queries, the base class's derived apply, and
    curvature."""
    M = LearnedDataManifold(field)
    return {"proju": lambda: M.proju(X, U), "inner": lambda: M.inner(X, U), "tangent_space": lambda: M.tangent_space(X),
            "M.factor": lambda: M.factor(X), "field.apply": lambda: field.apply(X, U),
            "field.metric": lambda: field.metric(X, U), "curvature": lambda: curvature(field, X, 2)}


@pytest.mark.parametrize(("field", "message"), [
    (Float64(), r"^Float64\.factor returned A of dtype torch\.float64 for points x of dtype torch\.float32: return "
                r"the factor in the points' dtype"),
    (FirstPoint(), r"^FirstPoint\.factor must return A of shape \(B, D, r\) = \(4, 3, r\) for points x of shape "
                   r"\(4, 3\) .*; got \(1, 3, 3\)"),
    (NoColumn(), r"^NoColumn\.factor returned A of shape \(4, 3, 0\), with no column: rank 0 \(G = 0\) has no "
                 r"geometry"),
    (Meta(), r"^Meta\.factor returned A on device meta for points x on cpu"),
], ids=["dtype", "batch_1", "no_column", "device"])
def test_a_bad_factor_gets_one_error_naming_the_field_from_every_consumer(field, message):
    """Before: torch's "expected scalar type Double but found Float" (or a float64 tangent space), a silent
    broadcast of the first point's factor to all (proju 1.22 off), and "argmax(): Expected reduction dim 1 to
    have non-zero size" or "cannot reshape tensor of 0 elements" for a factor without columns."""
    for name, call in _consumers(field).items():
        with pytest.raises(ValueError, match=message):
            call()
            pytest.fail(f"{name} accepted the factor")


def test_a_factor_that_is_not_a_tensor_is_named():
    class Listed(Projector):
        def factor(self, x):
            return super().factor(x).tolist()

    with pytest.raises(ValueError, match=r"^Listed\.factor must return a torch\.Tensor A with G = AAᵀ.*got list"):
        LearnedDataManifold(Listed()).proju(X, U)


def test_a_good_factor_passes_unchanged_and_each_class_is_wrapped_once():
    """The check returns the factor itself (no copy); a subclass that calls ``super().factor`` is checked at each
    level, and its wrapper has its own code object, named after the method (``torch.compile`` caches frames per
    code object, as for `precision.full_precision`)."""
    A = Projector().factor(X)
    assert A.shape == (4, 3, 3) and A.dtype == X.dtype
    assert getattr(Projector.factor, "_checked_factor", False) and getattr(Float64.factor, "_checked_factor", False)
    assert Projector.factor.__code__ is not Float64.factor.__code__
    assert Projector.factor.__code__.co_name == "factor"
    assert Float64()._has_own("factor") and not CoMetricField()._has_own("factor")
    torch.testing.assert_close(Float64().factor(X.double()), Projector().factor(X.double()), atol=0, rtol=0)


def test_the_wrapped_factor_takes_its_arguments_as_the_users_signature_does():
    """Tester D (s30, item 2): the wrapper was ``checked(self, x, ...)``, so ``f.factor(points=...)`` for a user's
    ``def factor(self, points)`` raised "missing 1 required positional argument: 'x'", a parameter the user's
    method does not have. Now the points pass by position or by the user's keyword, both checked, and a wrong call
    gets the user's own error."""

    class Named(CoMetricField):
        low_rank, dim = True, 2

        def factor(self, points, scale=1.0):
            return scale * torch.eye(2, dtype=torch.float64).expand(points.shape[0], 2, 2)

    f, x = Named(), torch.zeros(3, 2, dtype=torch.float64)
    for call in (lambda: f.factor(x), lambda: f.factor(points=x), lambda: f.factor(x, 2.0),
                 lambda: f.factor(scale=2.0, points=x)):
        assert call().shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"^Named\.factor returned A of dtype torch\.float64 for points x of dtype "
                                         r"torch\.float32"):
        f.factor(points=x.float())  # (the keyword's points are checked too)
    with pytest.raises(TypeError, match=r"factor\(\) missing 1 required positional argument: 'points'"):
        f.factor()
