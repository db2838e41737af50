"""The tolerances of `LearnedDataManifold.check_point_on_manifold` (with landing: ``|projx(x) − x|_∞ ≤ atol · L +
rtol · |x − μ|_∞``) and `check_vector_on_tangent` (``|proju(x, u) − u|_∞ ≤ (atol + rtol) · |u|_∞``),
`learned_manifold.manifold_checks` (tester A, item 5): a point or vector a few tolerances off is rejected, one
inside is accepted, in any units."""

import pytest
import torch

from learned_manifold import LearnedDataManifold
from tests.conftest import FixedSubspaceField

E = torch.eye(3, dtype=torch.float64)
TOL = 2e-5  # atol + rtol at their defaults (1e-5 each)


class _Plane(FixedSubspaceField):
    """The plane ``z = 0`` in R³ with its exact denoiser (landing moves a point straight down onto it)."""

    def __init__(self, scale: float):
        super().__init__(E[:, :2])
        self.sigma = 0.1 * scale

    def project(self, x):
        return x * x.new_tensor([1.0, 1.0, 0.0])

    @property
    def can_project(self):
        return True


@pytest.mark.parametrize("scale", [1.0, 1e3])
@pytest.mark.parametrize(("off", "accepted"), [(0.75, True), (3.0, False)])
def test_a_point_off_the_data_by_a_fraction_of_the_tolerance_passes_and_by_a_few_tolerances_fails(scale, off,
                                                                                                  accepted):
    """``L`` is the spread of the points here (the field knows no data scale, its centre is the origin): the point
    ``(3, 1, h)·scale`` is judged against ``TOL · 3 · scale``. ``h`` stays above the landing's own tolerance
    (``1e-4 σ``), so the landing moves it by ``h`` exactly."""
    M = LearnedDataManifold(_Plane(scale), landing=True)
    spread = 3.0 * scale
    x = torch.tensor([[3.0, 1.0, 0.0]], dtype=torch.float64) * scale
    x[0, 2] = off * TOL * spread
    assert x[0, 2] > 1e-4 * M.field.sigma
    ok, reason = M.check_point_on_manifold(x, explain=True)
    assert ok == accepted, reason
    if not accepted:
        assert reason.startswith("x is not a fixed point of the landing projection")


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize(("off", "accepted"), [(0.75, True), (3.0, False)])
def test_a_vector_off_the_tangent_space_by_a_fraction_of_the_tolerance_passes_and_by_a_few_tolerances_fails(
        scale, off, accepted):
    """The tolerance is relative to ``|u|_∞`` alone: the same verdict for ``u`` in any units."""
    M = LearnedDataManifold(FixedSubspaceField(E[:, :2]))
    x = torch.tensor([[0.3, -2.0, 0.0]], dtype=torch.float64)
    u = torch.tensor([[1.0, 0.5, off * TOL]], dtype=torch.float64) * scale
    ok, reason = M.check_vector_on_tangent(x, u, explain=True)
    assert ok == accepted, reason
    if not accepted:
        assert reason.startswith("u is not in the learned tangent space")
