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


def circle3(n: int = 500) -> torch.Tensor:
    """``(n, 3)`` float32: a unit circle in the plane z = 0, points in seeded random order."""
    t = torch.rand(n, generator=torch.Generator().manual_seed(0)) * (2 * math.pi)
    return torch.stack([t.cos(), t.sin(), torch.zeros_like(t)], 1)


def answers(field: KNNCDC, q: torch.Tensor) -> tuple:
    """What a query reads: nearest distances, the off-data distance and ``G`` at ``q``."""
    with torch.no_grad():
        a = field.factor(q)
        return field.nearest_distance(q), field.far_distance(), a @ a.mT


def assert_same_answers(field: KNNCDC, fresh: KNNCDC, q: torch.Tensor) -> None:
    got, want = answers(field, q), answers(fresh, q)
    torch.testing.assert_close(got[0], want[0])
    assert got[1] == pytest.approx(want[1], rel=1e-5)
    torch.testing.assert_close(got[2], want[2])


def test_numpy_data_are_copied_so_an_edit_of_the_array_cannot_leave_a_stale_index():
    """A NumPy edit bumps no torch version counter: a field sharing the array searched the moved data with the old
    index (``far_distance`` 3.99 against 0.049, tester C s35 1). The field copies NumPy input and answers as a
    field of the data it was given."""
    arr = circle3().numpy()
    given = arr.copy()
    field = KNNCDC(arr, k=16, sigma=0.2)
    q = torch.tensor([[1.0, 0.0, 0.0], [101.0, 100.0, 100.0]])
    answers(field, q)  # index and spacing built before the edit
    arr += 100.0
    assert torch.equal(field.data, torch.from_numpy(given))
    assert_same_answers(field, KNNCDC(torch.from_numpy(given), k=16, sigma=0.2), q)


def test_an_inference_tensor_is_copied_as_a_normal_tensor_so_its_edits_cannot_leave_a_stale_index():
    """An inference tensor has no version counter: a field over it never saw an in-place edit (nearest distances
    1.8 from data points, tester C s35 8). It is copied, as a normal tensor (also when built in inference mode)."""
    with torch.inference_mode():
        data = circle3()
        field = KNNCDC(data, k=16, sigma=0.2)
    given = data.clone()
    assert not field.data.is_inference() and field.data.data_ptr() != data.data_ptr()
    q = given[:3] + torch.tensor([100.0, 0.0, 0.0])
    answers(field, q)
    with torch.inference_mode():
        data.add_(torch.tensor([100.0, 0.0, 0.0]))
    assert_same_answers(field, KNNCDC(given, k=16, sigma=0.2), q)


def test_a_tensor_that_cannot_be_viewed_as_rows_is_copied_and_a_contiguous_one_is_followed():
    """The documented rule (tester C s35 2): a tensor whose rows can be viewed as ``(N, D)`` is the field's data
    (an in-place edit is followed); a permuted view cannot be, so it is copied in row order (an edit is not seen,
    and the field answers for the data as given, with no stale index)."""
    base = torch.randn(2, 2, 400, generator=torch.Generator().manual_seed(0))
    followed, permuted = base.permute(2, 1, 0).contiguous(), base.clone().permute(2, 1, 0)
    f_followed, f_copied = KNNCDC(followed, k=16, sigma=0.3), KNNCDC(permuted, k=16, sigma=0.3)
    assert f_followed.data.data_ptr() == followed.data_ptr()
    given = permuted.reshape(400, 4).clone()
    assert torch.equal(f_copied.data, given)
    followed.add_(100.0)
    permuted.add_(100.0)
    q = followed[:2].reshape(2, 4)
    assert f_followed.nearest_distance(q).abs().max() == 0
    assert_same_answers(f_copied, KNNCDC(given, k=16, sigma=0.3), q)


@pytest.mark.parametrize("route", ["built", "cast"])
def test_float16_data_at_pixel_scale_find_the_neighbours_a_float32_field_finds(route):
    """float16 data of radius 300 (raw pixels' spread): their squared norms overflow float16, and the search ranked
    on ``data_sq = inf``: data points' nearest data point read 200-490 away and ``G`` was 88-100% off, silently
    (tester C s35 6). The search ranks them in float32; built from float16 data or cast by ``.half()``."""
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    data = (300 * x / x.norm(dim=1, keepdim=True)).half().float()  # float16-representable points
    wide = KNNCDC(data, k=16, sigma=30.0)
    half = KNNCDC(data.half(), k=16, sigma=30.0) if route == "built" else KNNCDC(data, k=16, sigma=30.0).half()
    q = torch.cat([data[:20], data[20:40] * 1.05]).half().float()  # data points, and points near the data
    assert half.nearest_distance(q.half()).float()[:20].abs().max() == 0
    # the same neighbours (their order may differ where float16 rounds two distances alike)
    assert torch.equal(half.neighbours(q.half())[1].sort(1).values, wide.neighbours(q)[1].sort(1).values)
    assert torch.equal(half.neighbour_graph(10)[0], wide.neighbour_graph(10)[0])
    a, b = half.factor(q.half()).float(), wide.factor(q)
    g_half, g_wide = a @ a.mT, b @ b.mT
    assert float(((g_half - g_wide).norm(dim=(1, 2)) / g_wide.norm(dim=(1, 2))).max()) < 0.02
