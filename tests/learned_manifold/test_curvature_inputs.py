"""Curvature (SPEC §12) refuses what it cannot differentiate and warns about a batch of mixed dimensions: a factor
that autograd cannot differentiate, a field without a low-rank factor, and one gap-rule dimension for points that
read others."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learned_manifold import curvature
from learned_manifold.curvature import factor_jvp
from learned_manifold.metrics import ScoreJacobianMetric
from tests.learned_manifold.test_curvature import Factor


def spheres(x):
    """``I − x̂ x̂ᵀ``: the tangent projectors of the spheres about 0, ``(B, 3, 3)``."""
    n = x / x.norm(dim=-1, keepdim=True)
    return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


def spheres_numpy(x):
    n = x.detach().numpy()
    n = n / np.linalg.norm(n, axis=1, keepdims=True)
    return torch.from_numpy(np.eye(3) - n[:, :, None] * n[:, None, :]).to(x.dtype)


def spheres_no_grad(x):
    with torch.no_grad():
        return spheres(x)


@pytest.mark.parametrize("fn", [spheres_numpy, spheres_no_grad, lambda x: spheres(x).detach(),
                                lambda x: spheres(x.detach()) * torch.ones((), requires_grad=True)])
def test_a_factor_autograd_cannot_differentiate_is_refused(fn):
    """The sphere's projector computed in NumPy, under no_grad, or detached read R = 0 and H = 0 with no warning
    (truth R = 2, H = −x): `factor_jvp` took any factor without a gradient for a constant one."""
    x = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^the field's factor changes with x but autograd cannot differentiate it"):
        curvature(Factor(fn, 3), x, 2)
    want = curvature(Factor(spheres, 3), x, 2)
    assert want.scalar.item() == pytest.approx(2.0) and torch.allclose(want.mean, -x)


def test_a_constant_factor_without_a_gradient_is_still_flat():
    """A factor that does not depend on x (a fixed plane) needs no gradient: its derivative is 0."""
    q = torch.eye(4, dtype=torch.float64)[:, :2]
    field = Factor(lambda x: q.expand(x.shape[0], 4, 2), 4)
    x = torch.randn(3, 4, dtype=torch.float64)
    assert factor_jvp(field, x, torch.randn(3, 4, 2, dtype=torch.float64)).abs().max() == 0
    assert curvature(field, x, 2).scalar.abs().max() == 0


def test_a_field_without_a_low_rank_factor_is_refused_by_name():
    field = ScoreJacobianMetric(lambda y, sigma: 0.5 * y, 0.1)
    with pytest.raises(TypeError, match=r"^curvature needs a field with a low-rank factor .*ScoreJacobianMetric"):
        curvature(field, torch.randn(2, 3), 1)


def two_dimensions(x):
    """Columns ``e₁`` and ``s e₂`` with ``s = 1`` where ``x₃ > 0`` (a 2-D sheet) and ``0.1`` elsewhere (a 1-D
    branch: eigenvalues 1 and 0.01, gap rule 1): ``(B, 3, 2)``."""
    s = torch.where(x[:, 2] > 0, 1.0, 0.1).to(x.dtype)
    e1 = torch.tensor([1.0, 0.0, 0.0], dtype=x.dtype).expand(x.shape[0], 3)
    e2 = torch.tensor([0.0, 1.0, 0.0], dtype=x.dtype) * s.unsqueeze(-1)
    return torch.stack([e1, e2], dim=-1)


def test_a_batch_of_mixed_dimensions_is_warned_about():
    """One ``d`` (the batch median) served every point silently, though most read another dimension (tester J:
    85 of 120; |H| on a 1-D branch came out 0.027 with the median d = 2, 0.127 with its own d = 1)."""
    x = torch.tensor([[0.0, 0.0, 1.0]] * 4 + [[0.0, 0.0, -1.0]] * 3, dtype=torch.float64)
    field = Factor(two_dimensions, 3)
    with pytest.warns(RuntimeWarning, match=r"^3 of 7 points \(43%\) read another dimension by the gap rule than "
                                            r"the batch's 2 \(dimensions: 1: 3, 2: 4\)"):
        c = curvature(field, x)
    assert c.dim == 2
    curvature(field, x, 2)  # asked for: no warning
    curvature(field, x[:4])  # one dimension throughout: no warning


class _WeightedSpheres(Factor):
    """The spheres' projectors times a weight matrix held as a buffer (a network's weights, in little)."""

    def __init__(self, weights):
        super().__init__(spheres, 3)
        self.register_buffer("weights", weights)

    def factor(self, x):
        return spheres(x) @ self.weights


def test_a_field_built_under_inference_mode_is_copied_as_geodesic_copies_it():
    """A field loaded inside torch.inference_mode() holds inference tensors, which autograd cannot save for the
    double backward: curvature matched PyTorch's error text after work had started, while geodesic copied such a
    field up front (the reviewer). Both copy it now, and the user's field keeps its tensors."""
    x = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    with torch.inference_mode():
        field = _WeightedSpheres(torch.eye(3, dtype=torch.float64))
    assert field.weights.is_inference()
    c = curvature(field, x, 2)
    assert c.scalar.item() == pytest.approx(2.0) and torch.allclose(c.mean, -x)
    assert field.weights.is_inference()  # the copy was differentiated, not the user's field


def test_a_field_built_under_inference_mode_is_refused_with_the_cause():
    """A field whose weights were made inside torch.inference_mode() (a model loaded there) holds inference tensors:
    curvature failed with PyTorch's "Inference tensors cannot be saved for backward", which named neither the field
    nor the fix (tester M)."""
    x = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    with torch.inference_mode():
        weights = torch.eye(3, dtype=torch.float64)  # an inference tensor
        field = Factor(lambda p: spheres(p) @ weights, 3)
        with pytest.raises(RuntimeError, match=r"^Factor: the field's tensors .* were made under "
                                               r"torch.inference_mode\(\).* build or load the field"):
            curvature(field, x, 2)
