"""`CoMetricField`'s defaults (``apply``/``metric`` from ``factor``) and `as_points`' rule for integer points."""

import re

import numpy as np
import pytest
import torch

from learned_manifold.metrics import CoMetricField
from learned_manifold.metrics.base import as_points

F64 = torch.float64


class Spheres(CoMetricField):
    """The `curvature` docstring's example: ``G = I − n nᵀ`` (``n = x/‖x‖``), given by ``factor`` only."""

    dim = 3

    def __init__(self, delta: float = 0.0) -> None:
        super().__init__()
        self.delta = delta

    def factor(self, x):
        n = x / x.norm(dim=-1, keepdim=True)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


@pytest.mark.parametrize("delta", [0.0, 0.1])
def test_a_field_with_only_a_factor_gets_apply_metric_dense_and_inner(delta):
    """They used to raise an empty NotImplementedError; now (AAᵀ + δI) w and its (pseudo-)inverse, in closed form."""
    x = torch.tensor([[0.0, 0.6, 0.8], [2.0, 0.0, 0.0]], dtype=F64)
    w = torch.tensor([[1.0, 2.0, -1.0], [0.5, 1.0, 3.0]], dtype=F64)
    n = x / x.norm(dim=-1, keepdim=True)
    tangent = w - (w * n).sum(-1, keepdim=True) * n
    field = Spheres(delta)
    torch.testing.assert_close(field.apply(x, w), tangent + delta * w)
    torch.testing.assert_close(field.dense(x), torch.eye(3, dtype=F64) - n.unsqueeze(-1) * n.unsqueeze(-2))
    expected = tangent / (1 + delta) + (w - tangent) / delta if delta else tangent  # δ = 0: the pseudo-inverse
    torch.testing.assert_close(field.metric(x, w), expected)
    torch.testing.assert_close(field.inner(x, w, w), (w * expected).sum(-1))


def test_a_field_without_apply_metric_or_factor_says_what_to_implement():
    class Empty(CoMetricField):
        dim = 3

    class ApplyOnly(CoMetricField):
        dim = 3

        def apply(self, x, w):
            return w

    x = torch.zeros(1, 3)
    with pytest.raises(NotImplementedError, match=r"Empty implements neither apply\(\) nor factor\(\): implement "
                                                  r"apply\(x, w\)"):
        Empty().apply(x, x)
    with pytest.raises(NotImplementedError, match=r"ApplyOnly implements neither metric\(\) nor factor\(\)"):
        ApplyOnly().inner(x, x, x)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_points_become_the_default_float_dtype_as_tensors_and_as_arrays(dtype):
    """A uint8 image tensor was refused ("must be a floating-point tensor") while the same NumPy array was
    converted; both now convert where the caller converts (``convert=True``, the public query methods)."""
    x = torch.tensor([[0, 128, 255]], dtype=dtype)
    for given in (x, x.numpy()):
        out = as_points(given, (3,), convert=True)
        assert out.dtype == torch.get_default_dtype()
        torch.testing.assert_close(out, torch.tensor([[0.0, 128.0, 255.0]]))
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor, got torch\.(uint8|int64) \(convert"):
        as_points(x, (3,))  # the geoopt primitives and the fields keep needing floating tensors


def test_bool_points_are_refused_as_tensors_and_as_arrays():
    mask = torch.tensor([[True, False, True]])
    for given in (mask, np.asarray(mask)):
        with pytest.raises(ValueError, match=r"x must be a floating-point tensor, got torch\.bool"):
            as_points(given, (3,), convert=True)


def test_meta_points_are_refused_naming_the_argument():
    """A meta tensor has a shape but no values: one ValueError naming the argument (it had failed later, inside
    autocast or ``.item()``)."""
    with pytest.raises(ValueError, match="pts is on the 'meta' device: meta tensors have shapes but no values"):
        as_points(torch.zeros(2, 3, device="meta"), (3,), "pts")


class _CountedIdentity(CoMetricField):
    """``G = I`` of any ``D`` (no low-rank factor, as the score fields), counting its applications."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def apply(self, x, w):
        self.calls += 1
        return w

    def metric(self, x, v):
        return v


def test_dense_refuses_a_dimension_above_the_limit_before_any_field_application():
    """A field without a factor at D = 12288 (a 64×64×3 image) went to D applications and a D × D eigh per point from
    `tangent_space` / `intrinsic_dimension` / `field_eigenpairs` (tester C, item 3); D = 4096 still works."""
    from learned_manifold import LearnedDataManifold
    from learned_manifold.evaluation import field_eigenpairs
    from learned_manifold.metrics.euclidean import MAX_DENSE_DIM

    field = _CountedIdentity()
    message = (f"_CountedIdentity.dense builds the D x D co-metric from D field applications per point (then a D x D "
               f"eigh for its spectrum); D = {MAX_DENSE_DIM + 1} > MAX_DENSE_DIM = {MAX_DENSE_DIM}: for large D use "
               f"a low-rank field (LearnedCDC, KNNCDC), whose spectrum costs O(D r^2)")
    x = torch.zeros(1, MAX_DENSE_DIM + 1)
    for call in (field.dense, lambda x: field_eigenpairs(field, x),
                 LearnedDataManifold(field, data_shape=(MAX_DENSE_DIM + 1,)).intrinsic_dimension):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            call(x)
    assert field.calls == 0
    assert field.dense(torch.zeros(0, MAX_DENSE_DIM)).shape == (0, MAX_DENSE_DIM, MAX_DENSE_DIM)
