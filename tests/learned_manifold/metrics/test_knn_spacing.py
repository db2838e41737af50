"""`KNNCDC.median_spacing` / `far_distance`: the typical spacing is the distance to the nearest row of another value, so
copies of rows (data stored twice, oversampled or concatenated sets) leave the off-data check as it is on the
unique rows. Before, every row's nearest neighbour was its copy, no spacing was left, ``far_distance`` was ``inf``
and `beyond_data` called a point 49 away from the data "on" it."""

import math

import pytest
import torch

from learned_manifold.metrics import KNNCDC


def circle(n: int) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    return torch.stack([t.cos(), t.sin()], -1)


@pytest.mark.parametrize("copies", [2, 3, 20])
def test_copies_of_every_row_leave_the_spacing_and_the_off_data_check_unchanged(copies):
    unique = KNNCDC(circle(500), k=4, sigma=0.1)
    field = KNNCDC(circle(500).repeat(copies, 1), k=4, sigma=0.1)
    assert field.median_spacing() == pytest.approx(2 * math.sin(math.pi / 500), rel=1e-9)  # the circle's chord
    assert field.far_distance() == pytest.approx(unique.far_distance(), rel=1e-9)
    far = torch.tensor([[0.0, 50.0]], dtype=torch.float64)
    assert float(field.beyond_data(far)[0]) == pytest.approx(49.0, rel=1e-9)


def test_data_of_a_single_value_have_no_spacing():
    field = KNNCDC(torch.ones(10, 2, dtype=torch.float64), k=2, sigma=0.1)
    assert field.median_spacing() == math.inf and field.far_distance() == math.inf


def test_the_spacing_quantile_and_nearest_distance_of_a_regular_grid():
    """On a grid of spacing 0.1 every nearest-neighbour distance is 0.1 (its 99th percentile too, copies or not);
    a point's distance to the nearest grid point is exact, and `beyond_data` keeps it only beyond 4 spacings."""
    grid = torch.arange(101, dtype=torch.float64) * 0.1
    field = KNNCDC(torch.stack([grid, torch.zeros_like(grid)], -1).repeat(2, 1), k=2, sigma=1.0)
    assert field.spacing_quantile() == pytest.approx(0.1, rel=1e-9)
    x = torch.tensor([[5.03, 0.0], [-0.3, 0.4], [3.0, -0.45]], dtype=torch.float64)
    torch.testing.assert_close(field.nearest_distance(x), torch.tensor([0.03, 0.5, 0.45], dtype=torch.float64))
    torch.testing.assert_close(field.beyond_data(x), torch.tensor([0.0, 0.5, 0.45], dtype=torch.float64))


def test_editing_a_returned_neighbour_graph_does_not_change_later_answers():
    """`neighbour_graph` handed out its cache: a caller's ``dist.mul_(1000)`` came back from the next call (and from
    the geodesic start's graph, tester C s35 11). The caller gets copies; unedited ones are handed out again (the
    same objects: a reader may key on their identity), edited ones replaced."""
    field = KNNCDC(circle(200), k=8, sigma=0.1)
    idx, dist = field.neighbour_graph(10)
    want = (idx.clone(), dist.clone())
    again = field.neighbour_graph(10)
    assert again[0] is idx and again[1] is dist
    dist.mul_(1000.0)
    dist.numpy()[0, 0] = -1.0  # also through a NumPy view, which bumps no version counter
    idx.sub_(1)
    got = field.neighbour_graph(10)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[1] is not dist


@pytest.mark.parametrize("change", ["assigned", "edited in place"])
def test_the_spacing_follows_a_change_of_the_data(change):
    """`far_distance` and `spacing_quantile` are computed once per state of the data: after ``field.data = new`` or
    an in-place edit of the caller's tensor (which the field follows) they are those of the new data, as a new
    field's, not the old ones kept (report A, s36, #4: the off-data check would use the old spacing)."""
    data = circle(300)
    field = KNNCDC(data, k=8, sigma=0.1)
    before = (field.far_distance(), field.spacing_quantile())
    if change == "assigned":
        field.data = data * 100.0
    else:
        with torch.no_grad():
            data.mul_(100.0)
    fresh = KNNCDC(circle(300) * 100.0, k=8, sigma=0.1)
    after = (field.far_distance(), field.spacing_quantile())
    assert after == pytest.approx((fresh.far_distance(), fresh.spacing_quantile()), rel=1e-9)
    assert after == pytest.approx((100 * before[0], 100 * before[1]), rel=1e-9)
