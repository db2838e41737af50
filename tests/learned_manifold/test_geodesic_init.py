"""The data-following starts of `learned_manifold.geodesic_init` on large data: the graph's size is capped."""

import math

import torch

from learned_manifold.geodesic_init import graph_path
from learned_manifold.geodesics import geodesic
from learned_manifold.metrics import KNNCDC

F64 = torch.float64


def test_graph_start_on_a_large_field_walks_through_at_most_the_cap_of_data_points():
    """30,000 points on the unit circle: the graph joins KNNCDC.GRAPH_POINTS of them (it searched all N, O(N²)
    time and (N, 11, D) gathered copies), and the start between two points still runs round the circle through
    data points: every interior vertex before resampling is a graph point, so the resampled path stays within
    the chord sag of the graph's spacing (2π/4096) of the circle, and its length is the arc's."""
    t = torch.rand(30_000, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 * math.pi
    data = torch.stack([t.cos(), t.sin()], 1)
    field = KNNCDC(data, k=8, sigma=0.01)
    a = torch.tensor([[1.0, 0.0]], dtype=F64)
    b = torch.tensor([[math.cos(2.5), math.sin(2.5)]], dtype=F64)
    res = geodesic(field, a, b, n_points=33, steps=0)
    assert res.init == "graph"
    idx, dist = field.neighbour_graph(10)  # the graph geodesic built, cached
    assert idx.shape == dist.shape == (KNNCDC.GRAPH_POINTS, 10) and int(idx.max()) < KNNCDC.GRAPH_POINTS
    assert (res.path.norm(dim=-1) - 1).abs().max() < 1e-3
    assert abs(float((res.path[:, 1:] - res.path[:, :-1]).norm(dim=-1).sum()) - 2.5) < 0.01
    torch.testing.assert_close(graph_path(field, a, b, 33), res.path)
