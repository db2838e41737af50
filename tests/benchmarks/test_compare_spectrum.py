"""`benchmarks/compare.py`'s `field_spectrum`, read off a field whose co-metric is known in closed form: the exact
denoiser of the unit sphere S² in R³ (SPEC §7's score-based fields), without running the compare benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# `benchmarks` is a folder of the repository, not part of the installed packages: import it from the root.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.compare import field_spectrum  # noqa: E402
from learned_manifold.geometry import projector_error, truncate_basis  # noqa: E402
from learned_manifold.metrics import ScoreJacobianMetric, SteinScoreMetric, TangentialMetric  # noqa: E402

SIGMA = 0.1
RADIUS = 1.05  # just off the sphere, where the Stein score s = (x̂ − y)/σ² = −0.05 x̂/σ² is not zero


def to_sphere(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The posterior mean of data on the unit sphere as σ → 0: the projection ``y/‖y‖``; its Jacobian is
    ``(I − ŷŷᵀ)/‖y‖``."""
    return y / y.norm(dim=-1, keepdim=True)


def points(n: int = 16) -> torch.Tensor:
    """``(n, 3)`` float64 points at distance ``RADIUS`` from the origin."""
    g = torch.Generator().manual_seed(0)
    return RADIUS * torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)


# The eigenvalues of G = M⁻¹ (tangent, tangent, normal) at distance r from the centre, with J_s = ∂s/∂y =
# ((1/r − 1) P_T − P_N)/σ² for the score s = (x̂ − y)/σ²:
#   Be Tangential, M = J_sᵀJ_s + εI, ε = 1/σ²: 1/((1 − 1/r)²/σ⁴ + ε) twice, 1/(1/σ⁴ + ε);
#   score Jacobian, G = ∂x̂/∂y = P_T/r: 1/r twice, 0;
#   Stein, M = I + λ s sᵀ, ‖s‖ = (r − 1)/σ², λ = 1000: 1, 1, 1/(1 + λ‖s‖²).
EPS = 1 / SIGMA**2
TANGENT = 1 / ((1 - 1 / RADIUS) ** 2 / SIGMA**4 + EPS)
FIELDS = {
    "tangential": (lambda: TangentialMetric(to_sphere, sigma=SIGMA), [TANGENT, TANGENT, 1 / (1 / SIGMA**4 + EPS)]),
    "score_jacobian": (lambda: ScoreJacobianMetric(to_sphere, sigma=SIGMA), [1 / RADIUS, 1 / RADIUS, 0.0]),
    "stein": (lambda: SteinScoreMetric(to_sphere, sigma=SIGMA),
              [1.0, 1.0, 1 / (1 + 1000 * ((RADIUS - 1) / SIGMA**2) ** 2)]),
}


@pytest.mark.parametrize("name", list(FIELDS))
def test_the_spectrum_of_a_dense_field_is_that_of_its_co_metric_with_the_tangent_plane_on_top(name):
    """Tester A, item 1: `compare`'s test only checked that the tangent error is finite, so the spectrum of the
    Be-Tangential ``M`` instead of ``G = M⁻¹`` (the normal direction ranked first: error 1.41) passed."""
    make, expected = FIELDS[name]
    x = points()
    pairs = field_spectrum(make(), x)
    assert pairs.values.shape == (16, 3) and pairs.vectors.shape == (16, 3, 3)
    torch.testing.assert_close(pairs.values, torch.tensor(expected, dtype=x.dtype).expand(16, 3),
                               rtol=1e-5, atol=1e-8)
    others = torch.randn(16, 3, 2, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    tangent = torch.linalg.qr(torch.cat([x.unsqueeze(-1), others], -1)).Q[..., 1:]  # (16, 3, 2): x's complement
    error = projector_error(truncate_basis(pairs.vectors, torch.full((16,), 2)), tangent)
    assert float(error.max()) < 1e-4
