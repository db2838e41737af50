"""KNNCDC's search index follows its data (in-place edits, reassignment, moves) and its settings are checked."""

import math

import pytest
import torch

from learned_manifold.metrics.knn import KNNCDC

F64 = torch.float64


def brute_force(y: torch.Tensor, data: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, k)`` row indices of the ``k`` nearest rows, ties to the lower row index (float64 distances)."""
    d = (y.double().unsqueeze(1) - data.double().unsqueeze(0)).pow(2).sum(-1)
    return d.sort(dim=1, stable=True).indices[:, :k]


def two_circles(n: int = 400) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    data = torch.stack([t.cos(), t.sin()], 1)
    data[: n // 2] *= 3.0
    return data


def test_the_index_follows_in_place_edits_of_the_callers_data_without_a_copy():
    """An in-place edit of the caller's tensor (or of ``field.data``) used to leave the search on the old index:
    the farthest of 16 "neighbours" lay 1.4 away where the true one is 0.025."""
    data = two_circles()
    field = KNNCDC(data, k=16, sigma=0.05)
    assert field.data.data_ptr() == data.data_ptr()  # no copy at construction
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
    field.neighbours(q)  # the index is built and used once
    data[: data.shape[0] // 2] /= 3.0  # the caller rescales its data in place
    assert torch.equal(field.neighbours(q)[1], brute_force(q, data, 16))
    assert field.length_scale() == pytest.approx(1.0, rel=1e-5)
    field.data.mul_(2.0)  # through the field's buffer
    assert torch.equal(field.neighbours(q * 2)[1], brute_force(q * 2, data, 16))
    assert field.beyond_data(q * 2).abs().max() == 0  # the spacing cache was rebuilt too
    assert field.beyond_data(q).tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-5)


def test_the_index_follows_a_reassigned_data_buffer():
    g = torch.Generator().manual_seed(0)
    field = KNNCDC(torch.randn(300, 2, generator=g) * 5 + 20, k=8, sigma=0.1)  # far from the origin
    q = torch.randn(5, 2, generator=g)
    field.neighbours(q)
    new = two_circles(300)
    field.data = new
    assert torch.equal(field.neighbours(q)[1], brute_force(q, new, 8))
    idx, _ = field.neighbour_graph(4)
    assert torch.equal(idx, brute_force(new, new, 5)[:, 1:])  # the cached graph was dropped as well
    with pytest.raises(ValueError, match=r"KNNCDC data changed to shape \(300, 3\).*\(N, 2\) with N >= 8"):
        field.data = torch.randn(300, 3)
        field.neighbours(q)


def test_moving_the_field_keeps_its_index_and_spacing():
    """``.to(dtype)`` moves the derived buffers with the data: the search is not rebuilt (the spacing survives)."""
    field = KNNCDC(two_circles(), k=8, sigma=0.1)
    q = torch.tensor([[0.3, 0.2]])
    before = field.beyond_data(q)
    moved = field.to(F64)
    assert "_spacing_cache" in moved.__dict__
    assert moved.data_sq.dtype == F64 and moved._index_current()
    torch.testing.assert_close(moved.beyond_data(q.double()), before.double())


@pytest.mark.parametrize("persistent", ["no", float("nan"), None, 1])
def test_persistent_must_be_a_bool(persistent):
    """``persistent='no'`` and ``nan`` were taken as True."""
    with pytest.raises(ValueError, match=f"persistent must be a bool, got {type(persistent).__name__}"):
        KNNCDC(torch.randn(10, 2), k=3, sigma=1.0, persistent=persistent)


def grid_data() -> torch.Tensor:
    g = torch.arange(12.0)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return torch.cat([grid, torch.zeros(len(grid), 1)], 1)  # integer points: exact ties everywhere


@pytest.mark.parametrize("k", [2, 5, 8, 13])
def test_tied_neighbours_go_to_the_lower_row_whatever_the_chunk_size_and_batch(k):
    """On an integer grid the neighbours (and so the factor) depended on ``chunk_size``: G differed by 0.25."""
    data = grid_data()
    q = torch.tensor([[5.5, 7.5, 0.0], [10.0, 10.0, 0.3], [3.0, 3.5, 0.0], [6.0, 6.0, 0.0], [0.5, 0.5, 0.0]])
    others = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 11
    want = brute_force(q, data, k)
    ref = KNNCDC(data, k=k, sigma=1.0).factor(q)
    for chunk in (None, 1, 7, 64, 101):
        field = KNNCDC(data, k=k, sigma=1.0, chunk_size=chunk)
        assert torch.equal(field.neighbours(q)[1], want)
        in_batch = field.neighbours(torch.cat([others[:100], q, others[100:]]))[1][100:105]
        assert torch.equal(in_batch, want)
        assert torch.equal(field.factor(q), ref)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_ties_past_the_candidate_margin_go_to_the_lowest_rows(dtype):
    """40 copies of one point among 200 (more than `CANDIDATE_MARGIN` beyond ``k``): the ``k`` kept are the copies
    of lowest row index, for every chunk size (the float64 search left such queries to block order)."""
    g = torch.Generator().manual_seed(3)
    data = (torch.randn(200, 3, generator=g) * 5 + 10).to(dtype)
    copies = torch.randperm(200, generator=g)[:40]
    data[copies] = data[copies[0]].clone()
    q = torch.cat([data[copies[:1]], data[copies[:1]] + 1e-3, torch.randn(6, 3, generator=g, dtype=dtype) + 10])
    want = brute_force(q, data, 5)
    assert torch.equal(want[0], copies.sort().values[:5])
    for chunk in (None, 1, 7, 64):
        assert torch.equal(KNNCDC(data, k=5, sigma=1.0, chunk_size=chunk).neighbours(q)[1], want)
