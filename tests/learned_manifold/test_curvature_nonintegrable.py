"""Curvature of a plane field that is tangent to no surface (SPEC §12): its second fundamental form is not
symmetric, and the mean and scalar curvature use the symmetric part ``½(II + IIᵀ)``, as documented."""

import math

import torch

from learned_manifold import curvature
from learned_manifold.metrics import CoMetricField


class ContactPlanes(CoMetricField):
    """``G(x) = I − n nᵀ`` with ``n = (−y, 0, 1) / √(1 + y²)``: the planes ``ker(dz − y dx)`` of ``R³`` (the standard
    contact structure), which no family of surfaces is tangent to."""

    dim = 3

    def factor(self, x):
        n = torch.stack([-x[:, 1], torch.zeros_like(x[:, 0]), torch.ones_like(x[:, 0])], -1)
        n = n / n.norm(dim=-1, keepdim=True)
        return torch.eye(3, dtype=x.dtype) - n.unsqueeze(-1) * n.unsqueeze(-2)


def test_the_scalar_curvature_of_contact_planes_uses_the_symmetric_part_of_II():
    """For a projector field ``II(u, v) = −n ⟨Dn[u], v⟩``, and ``Dn[u] = u_y (−1, 0, −y) / (1 + y²)^{3/2}``. In the
    orthonormal tangent basis ``a = (0, 1, 0)``, ``b = (1, 0, y) / √(1 + y²)`` its scalar form is
    ``h = [[0, c], [0, 0]]``, ``c = 1 / (1 + y²)``: asymmetry ``‖h − hᵀ‖ / ‖h‖ = √2``, and with the symmetric part
    ``S = [[0, c/2], [c/2, 0]]`` the Gauss equation gives ``R = (tr S)² − ‖S‖² = −c² / 2`` (−0.32 at ``y = 0.5``)
    and ``H = 0``. Using ``h`` itself would give ``R = −c²`` (−0.64)."""
    x = torch.tensor([[0.1, 0.5, 0.2], [0.3, -0.8, 0.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    c = 1 / (1 + x[:, 1] ** 2)
    result = curvature(ContactPlanes(), x, tangent_dim=2)
    torch.testing.assert_close(result.scalar, -c**2 / 2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(result.asymmetry, torch.full((3,), math.sqrt(2), dtype=torch.float64), rtol=1e-9,
                               atol=0)
    torch.testing.assert_close(result.mean, torch.zeros(3, 3, dtype=torch.float64), rtol=0, atol=1e-12)
