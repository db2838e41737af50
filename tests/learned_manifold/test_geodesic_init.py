"""The data-following starts of `learned_manifold.geodesic_init`: the graph's size is capped on large data, ends in
separate clusters are reported, ends off the data keep their offsets."""

import math

import pytest
import torch
from torch import Tensor

from learned_manifold.evaluation import lerp
from learned_manifold.geodesic_init import DisconnectedDataWarning, graph_path, graph_paths, landing_anchors
from learned_manifold.geodesic_solvers import end_offsets
from learned_manifold.geodesics import geodesic
from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics import KNNCDC, LearnedCDC
from learned_manifold.metrics.base import CoMetricField

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


def two_circles() -> KNNCDC:
    """Two unit circles 10 apart in R², 200 points each: two components of any k-NN graph with k < 200."""
    t = torch.rand(400, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 * math.pi
    data = torch.stack([t.cos(), t.sin()], 1)
    data[200:, 0] += 10.0
    return KNNCDC(data, k=8, sigma=0.1)


def test_ends_in_separate_clusters_start_from_the_line_and_say_so():
    """The graph has no path between the circles, so the start is the straight line through the empty space
    between them. It was reported as ``init='graph'`` with no warning (a single-cell-like data set: a path up to
    1.98 from any data point, "converged")."""
    field = two_circles()
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    b = torch.tensor([[0.0, 1.0], [9.0, 0.0]], dtype=F64)  # pair 0 on one circle, pair 1 across the gap
    paths, joined = graph_paths(field, a, b, 9)
    assert joined.tolist() == [True, False]
    torch.testing.assert_close(paths[1], lerp(a[1:], b[1:], 9)[0])
    with pytest.warns(DisconnectedDataWarning, match=r"does not join the ends of 1 of 2 pair\(s\) \[1\]") as caught:
        res = geodesic(field, a, b, n_points=9, steps=0)
    assert res.init == "graph"  # pair 0 started on the data
    assert all(w.filename == __file__ for w in caught)  # points at the caller
    with pytest.warns(DisconnectedDataWarning, match=r"different connected components of its k-NN graph, separated "
                      r"by a gap wider than 4 times the data's median neighbour distance \(separate clusters, data "
                      r"this sparse between them, or coordinates that wrap around \(angles: give them as \(cos, "
                      r"sin\), README 'Your data's coordinates'\)\), and start"):  # raw angles across ±180 (tester A)
        res = geodesic(field, a[1:], b[1:], n_points=9, steps=0)
    assert res.init == "linear"  # what every pair really started from


@pytest.mark.parametrize("seed", [1, 3, 6, 16, 18])
def test_a_sparse_stretch_of_a_line_does_not_cut_the_graph(seed):
    """1,600 uniform samples of [0, 1]: the 10-NN graph (±5 neighbours) was cut by the largest gap (12–22 spacings,
    below σ) in these 5 of 20 samples, and the geodesic warned of separate clusters and started from the line. Its
    components are now joined where their gap is at most `GRAPH_BRIDGE` times the median 10th-neighbour distance:
    the start runs monotonically through data points from 0.02 to 0.98, and no warning is given (warnings are errors
    in this suite)."""
    from learned_manifold.geodesic_graph import GRAPH_BRIDGE, _components

    data = torch.rand(1600, 1, generator=torch.Generator().manual_seed(seed))
    field = KNNCDC(data, k=32, sigma=0.01)
    idx, dist = field.neighbour_graph(10)
    src = torch.arange(1600).unsqueeze(1).expand_as(idx)
    assert len(set(_components(1600, src.flatten().numpy(), idx.flatten().numpy()).tolist())) > 1  # cut before
    gaps = data[:, 0].sort().values.diff()
    assert float(gaps.max()) < 0.01 and float(gaps.max()) <= GRAPH_BRIDGE * float(dist[:, -1].median())  # < σ
    a, b = torch.tensor([[0.02]]), torch.tensor([[0.98]])
    paths, joined = graph_paths(field, a, b, 33)
    assert bool(joined.all()) and bool((paths[0, 1:, 0] > paths[0, :-1, 0]).all())
    res = geodesic(field, a, b, n_points=8, steps=5)
    assert res.init == "graph"


def test_the_graph_is_bridged_once_per_neighbour_graph(monkeypatch):
    """The components and bridges (``O(M² D)`` per round for a disconnected graph) were recomputed on every
    ``init="graph"`` call; they are found once per cached neighbour graph, and again after the data change."""
    import learned_manifold.geodesic_graph as gi

    calls = []
    real = gi._graph_csr
    monkeypatch.setattr(gi, "_graph_csr", lambda *args: calls.append(1) or real(*args))
    data = torch.rand(400, 1, generator=torch.Generator().manual_seed(0))
    field = KNNCDC(data, k=16, sigma=0.02)
    a, b = torch.tensor([[0.05]]), torch.tensor([[0.95]])
    first, _ = graph_paths(field, a, b, 9)
    again, _ = graph_paths(field, a, b, 9)
    assert len(calls) == 1 and torch.equal(first, again)
    data.mul_(0.5)  # in place: the field rebuilds its index and graph
    graph_paths(field, a * 0.5, b * 0.5, 9)
    assert len(calls) == 2


class HalvingPlane(CoMetricField):
    """The plane ``x₃ = 0`` in R³ (``G = e₁e₁ᵀ + e₂e₂ᵀ + δI``) whose denoiser halves the height, ``P(x) = (x₁, x₂,
    x₃/2)``: two steps bring a point at height 1 only to 0.25, where its foot on the data is at 0."""

    low_rank = True
    centred = True
    sigma = 0.1

    def __init__(self) -> None:
        super().__init__()
        self.dim, self.delta = 3, 1e-2

    def factor(self, x: Tensor) -> Tensor:
        return torch.eye(3, 2, dtype=x.dtype).expand(x.shape[0], 3, 2)

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return lowrank_solve(self.factor(x), v, self.delta)

    def project(self, x: Tensor) -> Tensor:
        return x * x.new_tensor([1.0, 1.0, 0.5])

    @property
    def can_project(self) -> bool:
        return True


def test_an_end_off_the_data_is_offset_by_its_distance_from_the_data():
    """An end 1 above the plane is anchored at its foot (0.3, 0.2, 0), so its offset is its height, 1; two
    denoiser steps alone measured 0.75. An end within σ of where it lands is its own anchor (as before)."""
    field = HalvingPlane()
    x0 = torch.tensor([[0.3, 0.2, 1.0]], dtype=F64)
    x1 = torch.tensor([[0.5, 0.2, 0.01]], dtype=F64)
    anchors = landing_anchors(field, x0, x1)
    torch.testing.assert_close(anchors[0], torch.tensor([0.3, 0.2, 0.0], dtype=F64), atol=1e-4, rtol=0)
    torch.testing.assert_close(anchors[1], x1[0], atol=0, rtol=0)
    offsets = end_offsets(field, x0, x1, 3, anchors)  # the one interior point, halfway: (1 + 0.0075) / 2
    torch.testing.assert_close(offsets[0, 0], torch.tensor([0.0, 0.0, 0.50375], dtype=F64), atol=1e-4, rtol=0)


def test_default_geodesic_between_close_points_off_the_learned_sphere_stays_between_them(sphere_model):
    """Two points 0.01 apart at radius 0.3, inside the learned unit sphere, with the defaults (graph start through
    the landmarks, landing on): the path detoured to the sphere and back (Euclidean length 0.34 on this fixture,
    0.63 at radius 0.6 on a CLI-trained model, "converged"), as the ends' offsets measured by two denoiser steps
    fell far short of their distance from the data. Both ends lie 0.7 off the data: warned, and not converged."""
    a = torch.tensor([[0.3, 0.0, 0.0]])
    b = a + torch.tensor([0.0, 0.01, 0.0])
    with pytest.warns(UserWarning, match=r"geodesic: points beyond the data: x0 \(1 of 1\), x1 \(1 of 1\), up to 0\.7"):
        res = geodesic(LearnedCDC(sphere_model), a, b)
    assert res.init == "graph" and not bool(res.converged[0]) and float(res.ends_off_data[0]) > 0.6
    assert float(res.euclidean_length[0]) < 0.0105
    assert float((res.path[0].norm(dim=-1) - 0.3).abs().max()) < 0.005


def _circle_with_a_gap() -> Tensor:
    """1,600 evenly spaced angles on the unit circle (spacing 0.0039; a 10-NN graph reaches 5 spacings, 0.02)
    with a gap of 0.05 from angle 1.0: the graph stays one component, joined the long way round."""
    t = torch.linspace(0, 2 * math.pi, 1601)[:-1]
    t = t[(t < 1.0) | (t > 1.05)]
    return torch.stack([t.cos(), t.sin()], -1)


def test_a_sampling_gap_inside_one_component_is_crossed_not_gone_round():
    """Tester E (twenty-ninth session): on 1,600 points of a circle with one gap the graph start between points
    1.11 apart ran 5.17 the long way round, and the solver converged to the long arc."""
    data = _circle_with_a_gap()
    a = torch.tensor([[math.cos(0.5), math.sin(0.5)]])
    b = torch.tensor([[math.cos(1.5), math.sin(1.5)]])
    path = graph_path(KNNCDC(data, k=10, sigma=0.05), a, b, 64)
    length = float((path[:, 1:] - path[:, :-1]).norm(dim=-1).sum())
    assert length < 1.05  # the short arc is 1.0; the long way 5.28
    solved = geodesic(KNNCDC(data, k=10, sigma=0.05), a, b).path  # the solver stays on the short side
    assert float((solved[:, 1:] - solved[:, :-1]).norm(dim=-1).sum()) < 1.1


def test_sampling_gaps_are_linked_along_a_rolled_sheet_never_across_its_layers():
    from learned_manifold.geodesic_graph import GRAPH_BRIDGE, _gap_links

    g = torch.Generator().manual_seed(0)
    u = torch.rand(3000, 2, generator=g)
    t = 1.5 * math.pi * (1 + 2 * u[:, 0])  # a swiss roll, its layers 2π apart radially
    roll = torch.stack([t * t.cos(), 21 * u[:, 1], t * t.sin()], -1)
    field = KNNCDC(roll, k=10, sigma=1.0)
    idx, dist = field.neighbour_graph(10)
    links = _gap_links(roll[field.graph_rows()], idx, dist, GRAPH_BRIDGE * float(dist[:, -1].median()))
    assert links  # the sheet's sampling gaps

    def arc(s: Tensor) -> Tensor:  # arc length of the spiral r = t from 0
        return 0.5 * (s * (1 + s * s).sqrt() + torch.asinh(s))

    rows = field.graph_rows()
    i, j, length = (torch.tensor(v) for v in zip(*links, strict=True))
    along = torch.hypot(arc(t[rows][i]) - arc(t[rows][j]), 21 * (u[rows][i, 1] - u[rows][j, 1]))
    assert (along < 1.5 * length.float()).all()  # each link is as long on the sheet as in space


def test_no_gap_links_where_every_point_is_one_sided():
    """In high dimensions every point's neighbours lie to one side (noise in R⁶⁴: all of them), and no gap can be
    told: the search is skipped instead of costing O(M² D)."""
    from learned_manifold.geodesic_graph import GRAPH_BRIDGE, _gap_links

    noise = torch.randn(500, 64, generator=torch.Generator().manual_seed(0))
    field = KNNCDC(noise, k=10, sigma=1.0)
    idx, dist = field.neighbour_graph(10)
    assert _gap_links(noise, idx, dist, GRAPH_BRIDGE * float(dist[:, -1].median())) == []
