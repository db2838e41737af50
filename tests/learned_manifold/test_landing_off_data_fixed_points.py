"""Landing warns where a landed point lies farther from the data the field holds than points on the data do
(`landing.WARN_SIGMAS` σ and `landing.WARN_QUANTILE_FACTOR` times those points' 99th-percentile spacing), though
nearer than the distance at which it refuses (`off_data_threshold`). A learned swiss roll's denoiser has fixed
points off the data at its inner edge: points landed 0.7-1.2 off the roll were accepted silently, and an optimiser
with landing walked a point 1.1-1.6 off it for ~80 steps before "did not land"."""

import re
import warnings

import pytest
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold
from learned_manifold.landing import off_data_threshold
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import CoMetricField

SPACING, SIGMA = 0.1, 0.01


class FieldWithDataPoints(CoMetricField):
    """A hand-made field that holds data points as a `KNNCDC` (``data_graph``, set by a subclass) and lands with
    bandwidths ``(band, 1)``: what landing's off-data checks read from a learned model's landmarks."""

    band = SIGMA

    def beyond_data(self, x: Tensor) -> Tensor:
        return self.data_graph.beyond_data(x)

    def landing_bandwidths(self) -> tuple[float, float]:
        return self.band, 1.0

    @property
    def can_project(self) -> bool:
        return True


class EdgeWithOffDataFixedPoints(FieldWithDataPoints):
    """Data: a grid of spacing 0.1 on the segment ``[0, 10] × {0}`` of R². Its denoiser sends ``p`` to
    ``(p₀, g(p₀))``, ``g = 0`` on the data's side (``p₀ ≥ 0``) and ``g = −2 p₀`` past its edge: there its fixed
    points leave the data, as a learned roll's do at its inner edge. Factor ``(B, 2, 1)``: the unit tangent of
    that curve."""

    dim, low_rank = 2, True

    def __init__(self):
        super().__init__()
        grid = torch.arange(101, dtype=torch.float64) * SPACING
        self.data_graph = KNNCDC(torch.stack([grid, torch.zeros_like(grid)], -1), k=2, sigma=1.0)

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        slope = torch.where(x[:, 0] < 0, -2.0, 0.0).to(x.dtype)
        return torch.nn.functional.normalize(torch.stack([torch.ones_like(slope), slope], -1), dim=-1)[..., None]

    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        return torch.stack([x[:, 0], torch.where(x[:, 0] < 0, -2 * x[:, 0], 0 * x[:, 0])], -1)



def test_points_landed_on_the_data_are_not_warned_of():
    M = LearnedDataManifold(EdgeWithOffDataFixedPoints(), landing=True)
    x = torch.tensor([[0.0, 0.003], [0.05, -0.3], [5.05, 0.2], [10.0, 0.0]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        landed = M.projx(x)
    torch.testing.assert_close(landed, torch.stack([x[:, 0], torch.zeros(4, dtype=torch.float64)], -1))


def test_a_point_landed_on_a_fixed_point_beside_the_data_is_warned_of():
    """(−0.1, 0.2) is a fixed point of the denoiser, 0.224 from the nearest data point (0, 0): beyond 1.5 spacings
    (0.15; 3σ = 0.03) but within the refusal's 4 spacings (0.4). It is returned, with a warning that names the count
    and the distance; a fixed point 0.67 away, (−0.3, 0.6), is refused as before."""
    M = LearnedDataManifold(EdgeWithOffDataFixedPoints(), landing=True)
    assert off_data_threshold(M.field) == pytest.approx(4 * SPACING)
    x = torch.tensor([[-0.1, 0.2], [5.0, 0.1]], dtype=torch.float64)
    with pytest.warns(UserWarning, match=re.escape("landing: 1 of 2 landed point(s) lie up to 0.224 from the nearest "
                                                   "data point the field holds (a model's landmarks), farther than "
                                                   "0.15 (the larger of 3 sigma = 0.03 and 1.5 times the 0.1")):
        landed = M.projx(x)
    torch.testing.assert_close(landed, torch.tensor([[-0.1, 0.2], [5.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="did not land on the data"):
        M.projx(torch.tensor([[-0.3, 0.6]], dtype=torch.float64))
