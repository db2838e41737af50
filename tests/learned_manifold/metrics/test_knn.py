"""KNNCDC against dense samples (circle, S²), the dense formula from the weights and full-sort neighbours."""

import math

import pytest
import torch

from learned_manifold import geometry
from learned_manifold.metrics import nearest
from learned_manifold.metrics.knn import KNNCDC, _pinv_solve
from tests.conftest import assert_same_under_autocast

F64 = torch.float64


def circle(n: int) -> torch.Tensor:
    t = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    return torch.stack([t.cos(), t.sin()], 1)


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=F64) + 0.5
    z = 1 - 2 * i / n
    r = (1 - z * z).sqrt()
    phi = i * math.pi * (3 - math.sqrt(5))
    return torch.stack([r * phi.cos(), r * phi.sin(), z], 1)


@pytest.fixture(scope="module")
def circle_data():
    return circle(2000)


def test_circle_tangent_and_dimension(circle_data):
    field = KNNCDC(circle_data, k=64, sigma=0.05)
    t = torch.rand(24, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    y = torch.stack([t.cos(), t.sin()], 1)
    tangent = torch.stack([-t.sin(), t.cos()], 1).unsqueeze(-1)
    A = field.factor(y)
    assert A.shape == (24, 2, 64)
    pairs = geometry.eigenpairs(A)
    assert geometry.projector_error(pairs.vectors[..., :1], tangent).max() < 0.1
    assert (geometry.intrinsic_dimension(pairs.values) == 1).all()
    assert (pairs.values[:, 0] > 0.5).all() and (pairs.values[:, 1] < 0.01).all()


@pytest.mark.parametrize("h", [0.1, 0.15])
def test_off_manifold_normal_spike_only_when_uncentred(circle_data, h):
    sigma = 0.05
    angle = torch.tensor([0.3, 2.0, 4.0], dtype=F64)
    normal = torch.stack([angle.cos(), angle.sin()], 1)
    y = (1 + h) * normal
    centred = KNNCDC(circle_data, k=64, sigma=sigma)
    uncentred = KNNCDC(circle_data, k=64, sigma=sigma, centred=False)
    assert centred.centred and not uncentred.centred

    A = uncentred.factor(y)
    pairs = geometry.eigenpairs(A)
    torch.testing.assert_close(pairs.values[:, 0], torch.full_like(angle, (h / sigma) ** 2), rtol=0.1, atol=0)
    assert geometry.projector_error(pairs.vectors[..., :1], normal.unsqueeze(-1)).max() < 0.1

    A = centred.factor(y)
    normal_value = (A.transpose(1, 2) @ normal.unsqueeze(-1)).pow(2).sum((1, 2))  # nᵀ Γ̂ᶜ n
    assert normal_value.max() < 0.05
    assert geometry.eigenpairs(A).values[:, 0].max() < 1.2


def test_sphere_tangent_plane():
    data = fibonacci_sphere(4000)
    field = KNNCDC(data, k=64, sigma=0.1)
    p = torch.randn(24, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    p = p / p.norm(dim=1, keepdim=True)
    e1, e2 = torch.eye(3, dtype=F64)[:2]
    a = torch.where(p[:, :1].abs() < 0.9, e1, e2)
    t1 = a - (a * p).sum(1, keepdim=True) * p
    t1 = t1 / t1.norm(dim=1, keepdim=True)
    basis = torch.stack([t1, torch.linalg.cross(p, t1)], -1)
    pairs = geometry.eigenpairs(field.factor(p))
    assert geometry.projector_error(pairs.vectors[..., :2], basis).max() < 0.1
    assert (geometry.intrinsic_dimension(pairs.values) == 2).all()


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100, 500, 10_000])
def test_chunked_neighbours_equal_full_sort(monkeypatch, chunk_size):
    monkeypatch.setattr(nearest, "BLOCK_ELEMENTS", 256)  # several query blocks too
    g = torch.Generator().manual_seed(2)
    data = torch.randn(500, 4, dtype=F64, generator=g)
    y = torch.randn(30, 4, dtype=F64, generator=g)
    field = KNNCDC(data, k=20, sigma=1.0, chunk_size=chunk_size)
    dist2, idx = field.neighbours(y)
    full = (y.unsqueeze(1) - data.unsqueeze(0)).pow(2).sum(-1)
    ref_d, ref_i = full.sort(dim=1)
    assert torch.equal(idx, ref_i[:, :20])
    torch.testing.assert_close(dist2, ref_d[:, :20])


@pytest.mark.parametrize("copies", [10, 12])
def test_copies_of_one_point_have_no_spread(copies):
    """Neighbours that are all copies of one data point have zero centred covariance, as a single point has:
    before, the rounding of their mean was read as an eigen-direction (top eigenvalue 6e-12, dimension 1 along a
    random line, ``inner(u, u)`` 2e11 at δ = 0)."""
    from learned_manifold import LearnedDataManifold

    p = torch.tensor([[0.3, -1.7, 2.9]])
    g = torch.Generator().manual_seed(0)
    data = torch.cat([torch.randn(500, 3, generator=g) + 10, p.expand(copies, 3)])
    field = KNNCDC(data, k=copies, sigma=0.1)
    x = torch.cat([p, p + 0.01, torch.zeros(1, 3)])
    M = LearnedDataManifold(field)
    u = torch.ones(3, 3)
    with pytest.warns(RuntimeWarning, match=r"G = 0 at 3 of 3 .*copies of one data row \(rows 500,"):  # named
        assert torch.equal(field.factor(x), torch.zeros(3, 3, copies))
        assert torch.equal(M.proju(x, u), torch.zeros(3, 3)) and torch.equal(M.inner(x, u), torch.zeros(3))
    spread = KNNCDC(torch.cat([data, p + 0.05]), k=copies + 1, sigma=0.1)  # one other point near: a direction
    assert int(geometry.intrinsic_dimension(geometry.eigenpairs(spread.factor(p)).values)) == 1
    assert float(spread.factor(p).abs().amax()) > 0.01


@pytest.mark.parametrize("offset", [0.0, 100.0, 1000.0])
def test_float32_neighbours_are_exact_wherever_the_data_sit(offset):
    """The search's ‖x‖² − 2q·x lost the digits that separate neighbours of float32 data far from the origin
    (a unit sphere moved by 1,000: the nearest neighbour wrong for 88% of queries, the k-th distance up to 66×
    too far); such data are now ranked about their mean. Reference: the float64 full sort."""
    g = torch.Generator().manual_seed(0)
    sphere = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g, dtype=F64), dim=-1)
    queries = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=F64), dim=-1)
    shift = torch.tensor([offset, -offset, offset], dtype=F64)
    field = KNNCDC((sphere + shift).float(), k=8, sigma=0.1)
    assert (field._search_data is not None) == (offset > 0)  # the centred copy only where the offset dominates
    _, idx = field.neighbours((queries + shift).float())
    data64, q64 = (sphere + shift).float().double(), (queries + shift).float().double()
    ref = (q64.unsqueeze(1) - data64.unsqueeze(0)).pow(2).sum(-1).topk(8, largest=False).indices
    assert torch.equal(idx.sort(-1).values, ref.sort(-1).values)


def test_float32_data_too_far_from_the_origin_to_resolve_are_warned_about():
    """A float32 unit circle moved by 1e5 (values 0.0078 apart: 862 distinct points of 3,000) was accepted without a
    word, though the trainer refuses it; its tangents were 10 times worse and its geodesic called the circle two
    clusters. The warning names the offset and the remedies; the same data in float64, centred, or at 1e3 are
    silent, and a huge constant coordinate is harmless."""
    import warnings

    ring = torch.cat([circle(3000), torch.zeros(3000, 1, dtype=F64)], 1)
    with pytest.warns(UserWarning, match=r"^KNNCDC data lie far from the origin .* 1\.2% of the spread, .* the data's "
                      r"mean lies 1\.73e\+05 from the origin, .* float64 data, or subtract an offset") as record:
        KNNCDC((ring + 1e5).float(), k=8, sigma=0.1)
    assert record[0].filename == __file__  # the warning points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        constant = ring.float() + torch.tensor([0.0, 0.0, 1e9])
        for data in (ring + 1e5, (ring + 1e5 - 1e5).float(), (ring + 1e3).float(), constant):
            KNNCDC(data, k=8, sigma=0.1)


@pytest.mark.parametrize("centred", [True, False])
def test_factor_matches_dense_formula(centred):
    g = torch.Generator().manual_seed(3)
    data = torch.randn(300, 3, dtype=F64, generator=g)
    y = torch.randn(8, 3, dtype=F64, generator=g)
    k, sigma = 25, 0.4
    field = KNNCDC(data, k=k, sigma=sigma, centred=centred, chunk_size=64)
    d2 = (y.unsqueeze(1) - data.unsqueeze(0)).pow(2).sum(-1)
    near_d, near_i = d2.topk(k, dim=1, largest=False)
    w = torch.softmax(-near_d / (2 * sigma**2), dim=1)
    pts = data[near_i]
    mean = (w.unsqueeze(-1) * pts).sum(1)
    diff = pts - (mean if centred else y).unsqueeze(1)
    dense = torch.einsum("bj,bjd,bje->bde", w, diff, diff) / sigma**2
    A = field.factor(y)
    assert A.shape == (8, 3, k)
    torch.testing.assert_close(A @ A.transpose(1, 2), dense)
    torch.testing.assert_close(field.dense(y), dense)
    torch.testing.assert_close(field.project(y), mean)
    assert field.can_project and field.low_rank and field.dim == 3


def test_metric_inverts_apply():
    g = torch.Generator().manual_seed(4)
    data = torch.randn(400, 6, dtype=F64, generator=g)
    field = KNNCDC(data, k=10, sigma=0.8, delta=0.01)  # rank 9 in R^6 plus δ: all directions
    x, v = torch.randn(2, 5, 6, dtype=F64, generator=g)
    torch.testing.assert_close(field.metric(x, field.apply(x, v)), v)
    torch.testing.assert_close(field.apply(x, field.metric(x, v)), v)
    assert field.apply(x, v).shape == field.metric(x, v).shape == (5, 6)
    dense = field.dense(x) + 0.01 * torch.eye(6, dtype=F64)
    expected = torch.einsum("bd,bde,be->b", v, torch.linalg.inv(dense), v)
    torch.testing.assert_close(field.inner(x, v, v), expected)


def test_gradient_stays_finite_when_weights_underflow(circle_data):
    field = KNNCDC(circle_data, k=64, sigma=0.002)  # far neighbours get weight exp(-large) = 0
    y = torch.tensor([[1.0, 0.001]], dtype=F64, requires_grad=True)
    field.factor(y).pow(2).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_data_shape_and_device_dtype():
    data = torch.randn(50, 2, 2)
    field = KNNCDC(data, k=5, sigma=0.5)
    assert field.dim == 4 and field.data.shape == (50, 4)
    assert "data" in dict(field.named_buffers()) and list(field.state_dict()) == ["data"]  # derived buffers: not
    # a query of another floating dtype is computed in the data's dtype and answered in its own
    q = torch.randn(3, 4)
    for dtype in (F64, torch.bfloat16):
        A = field.factor(q.to(dtype))
        assert A.dtype == dtype
        torch.testing.assert_close(A, field.factor(q.to(dtype).float()).to(dtype))
        assert field.project(q.to(dtype)).dtype == dtype
    field = field.to(F64)
    assert field.data.dtype == F64 and field.factor(torch.randn(3, 4, dtype=F64)).shape == (3, 4, 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 11}, "k must lie"),
        ({"k": 0}, "k must lie"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"delta": -1e-3}, "delta"),
        ({"centred": "yes"}, "centred"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    settings = {"k": 3, "sigma": 1.0} | kwargs
    with pytest.raises(ValueError, match=match):
        KNNCDC(torch.randn(10, 2), **settings)


def test_bad_data_and_inputs_raise():
    with pytest.raises(ValueError, match="NaN"):
        KNNCDC(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), k=1, sigma=1.0)
    with pytest.raises(ValueError, match="floating"):
        KNNCDC(torch.ones(5, 2, dtype=torch.long), k=1, sigma=1.0)
    with pytest.raises(ValueError, match="shape"):
        KNNCDC(torch.ones(5), k=1, sigma=1.0)
    field = KNNCDC(torch.randn(10, 2), k=3, sigma=1.0)
    with pytest.raises(ValueError, match="coordinates"):
        field.factor(torch.randn(4, 3))
    with pytest.raises(ValueError, match="shape"):
        field.neighbours(torch.randn(2))
    with pytest.raises(ValueError, match="batch size"):
        field.apply(torch.randn(4, 2), torch.randn(3, 2))
    with pytest.raises(ValueError, match="coordinates"):
        field.metric(torch.randn(4, 2), torch.randn(4, 3))


def test_delta_zero_metric_is_the_pseudo_inverse_with_finite_gradients():
    """δ = 0 with k > D: the metric is the pseudo-inverse of G (here full rank in R³) and its gradient is finite.
    Through eigh of the k×k Gram (k − 3 repeated zero eigenvalues) the backward pass was NaN (issue 12)."""
    g = torch.Generator().manual_seed(5)
    data = torch.nn.functional.normalize(torch.randn(2000, 3, dtype=F64, generator=g), dim=-1)
    field = KNNCDC(data, k=16, sigma=0.1)
    x = (torch.nn.functional.normalize(torch.randn(6, 3, dtype=F64, generator=g), dim=-1) * 0.97).requires_grad_()
    v = torch.randn(6, 3, dtype=F64, generator=g)
    out = field.metric(x, v)
    expected = torch.linalg.solve(field.dense(x), v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=0)
    (grad,) = torch.autograd.grad((v * out).sum(), x)
    assert torch.isfinite(grad).all()
    for dtype in (torch.float32, F64):  # the same in float32, where eigh's NaN used to appear
        f = KNNCDC(data.to(dtype), k=16, sigma=0.1)
        y = x.detach().to(dtype).requires_grad_()
        (gy,) = torch.autograd.grad((v.to(dtype) * f.metric(y, v.to(dtype))).sum(), y)
        assert torch.isfinite(gy).all()


@pytest.mark.parametrize("r", [3, 12])
def test_pinv_solve_is_the_pseudo_inverse_on_either_side(r):
    """`_pinv_solve` works on the r × r Gram for r ≤ D and on G = AAᵀ for r > D (k = N neighbours in 64
    dimensions would otherwise build an N × N matrix per query); both are G⁺v for a rank-deficient G."""
    g = torch.Generator().manual_seed(2)
    A = torch.randn(4, 7, 2, dtype=F64, generator=g) @ torch.randn(4, 2, r, dtype=F64, generator=g)  # rank 2
    v = torch.randn(4, 7, dtype=F64, generator=g)
    pinv = torch.linalg.pinv(A @ A.transpose(-1, -2), hermitian=True)
    torch.testing.assert_close(_pinv_solve(A, v), (pinv @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("delta", [0.0, 0.1])
def test_every_point_as_a_neighbour_solves_on_the_small_side(delta):
    """k = N = 20,000 neighbours in R³: the metric is the (pseudo-)inverse of the 3 × 3 matrix G + δI. On the
    k × k side each query asked for a 20,000² Gram (3.2 GB in float64)."""
    g = torch.Generator().manual_seed(3)
    data = torch.nn.functional.normalize(torch.randn(20_000, 3, dtype=F64, generator=g), dim=-1)
    field = KNNCDC(data, k=data.shape[0], sigma=0.5, delta=delta)
    x, v = torch.randn(4, 3, dtype=F64, generator=g) * 0.5, torch.randn(4, 3, dtype=F64, generator=g)
    expected = torch.linalg.solve(field.dense(x) + delta * torch.eye(3, dtype=F64), v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(field.metric(x, v), expected, rtol=1e-6, atol=1e-9)


def test_neighbour_graph_excludes_self_and_matches_brute_force():
    g = torch.Generator().manual_seed(6)
    data = torch.randn(300, 4, dtype=F64, generator=g)
    idx, dist = KNNCDC(data, k=5, sigma=0.5, chunk_size=64).neighbour_graph(7)
    full = torch.cdist(data, data).fill_diagonal_(float("inf"))
    ref_d, ref_i = full.topk(7, dim=-1, largest=False)
    torch.testing.assert_close(dist, ref_d)
    assert (idx == ref_i).all()


def test_beyond_data_is_the_distance_to_the_data_only_where_it_exceeds_a_few_spacings():
    """2,000 points on the unit circle are 2π/2000 ≈ 0.0031 apart: a point on the circle between two of them, or
    just off it, is not beyond the data (0); the centre is beyond it by exactly 1, a point at radius 3 by 2."""
    field = KNNCDC(circle(2000), k=16, sigma=0.05)
    assert field.median_spacing() == pytest.approx(2 * math.sin(math.pi / 2000), rel=1e-9)
    half_step = torch.tensor([[math.cos(math.pi / 2000), math.sin(math.pi / 2000)]], dtype=F64)
    near = torch.cat([half_step, 1.003 * circle(8)])  # within FAR_SPACINGS · 0.0031 of a data point
    assert (field.beyond_data(near) == 0).all()
    far = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, -1.5]], dtype=F64)
    torch.testing.assert_close(field.beyond_data(far), torch.tensor([1.0, 2.0, 0.5], dtype=F64))
    assert field.beyond_data(far.float()).dtype == torch.float32  # answers in the query's dtype


def test_points_on_a_sparsely_sampled_curve_between_its_data_are_not_beyond_the_data():
    """On a curve the gaps between random data points reach 9-11 median spacings (500 uniform points on a circle):
    with 4 spacings as the rule, 6% of points on the circle read "beyond the data", so geodesics between them warned
    and landing refused them at a small σ (reviewer R). Twice the 99th percentile of the nearest-neighbour distances
    covers the gaps; a point 0.3 off the circle is still beyond."""
    g = torch.Generator().manual_seed(3)
    t = torch.rand(500, generator=g, dtype=F64) * 2 * math.pi
    field = KNNCDC(torch.stack([t.cos(), t.sin()], -1), k=16, sigma=1 / 64)
    s = torch.linspace(0, 2 * math.pi, 4001, dtype=F64)[:-1]
    on = torch.stack([s.cos(), s.sin()], -1)
    assert (field.beyond_data(on) == 0).all()
    assert field.far_distance() > 4 * field.median_spacing()  # the quantile rule decided here
    off = 1.3 * on[:10]
    assert (field.beyond_data(off) > 0.29).all()


def test_state_dict_round_trip_carries_the_data_and_rebuilds_the_search():
    """The data were non-persistent buffers: state_dict was {} and load_state_dict(strict=True) kept the target's
    own data. Now the data travel (any N >= k) and the search (offset origin, norms, caches) follows them."""
    g = torch.Generator().manual_seed(0)
    source = KNNCDC(fibonacci_sphere(300) + 1000.0, k=16, sigma=0.2)  # far from 0: the centred search copy
    target = KNNCDC(torch.randn(200, 3, dtype=F64, generator=g), k=16, sigma=0.2)
    target.neighbour_graph(5), target.beyond_data(torch.zeros(1, 3, dtype=F64))  # caches of the old data
    assert list(source.state_dict()) == ["data"]
    assert str(target.load_state_dict(source.state_dict(), strict=True)) == "<All keys matched successfully>"
    x = fibonacci_sphere(7) * 1.05 + 1000.0
    torch.testing.assert_close(target.factor(x), source.factor(x))
    torch.testing.assert_close(target.neighbour_graph(5)[1], source.neighbour_graph(5)[1])
    torch.testing.assert_close(target.beyond_data(x + 5.0), source.beyond_data(x + 5.0))
    assert target.length_scale() == source.length_scale()
    with pytest.raises(RuntimeError, match=r"KNNCDC cannot load the data 'data': it holds 4 points, fewer than "
                                           r"the field's k = 16"):
        target.load_state_dict({"data": torch.zeros(4, 3, dtype=F64)})


def test_effective_neighbours_count_the_kernel_from_one_to_k():
    """``(Σw)²/Σw²``: 1 when σ is far below the spacing (one neighbour carries all), k when far above it, and
    exactly 2 for two neighbours at equal distance with the rest out of reach."""
    data = torch.tensor([[0.0], [1.0], [-1.0], [10.0], [20.0]], dtype=torch.float64)
    x = torch.tensor([[0.0]], dtype=torch.float64)
    assert float(KNNCDC(data, k=4, sigma=1e-3).effective_neighbours(x)) == pytest.approx(1.0)
    assert float(KNNCDC(data, k=4, sigma=1e6).effective_neighbours(x)) == pytest.approx(4.0)
    assert float(KNNCDC(data, k=4, sigma=1e-3).effective_neighbours(torch.tensor([[0.5]], dtype=torch.float64))) \
        == pytest.approx(2.0)


def dense_float32_circle(n: int) -> torch.Tensor:
    t = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 * math.pi
    return torch.stack([t.cos(), t.sin()], 1).float()


def test_dense_float32_neighbours_are_exact():
    """200,000 float32 points on the unit circle (spacing 3e-5): the ranking ‖x‖² − 2 q·x rounds by ~1e-7, more
    than the gaps between the squared distances of neighbours; 42% of the 8-NN were wrong before, and the CDC with
    them. Now the neighbours are those of a float64 brute force, and so are the graph's and the spacing."""
    data = dense_float32_circle(200_000)
    q = data[:40] * (1 + 1e-5)
    field = KNNCDC(data, k=8, sigma=1e-4)
    dist2, idx = field.neighbours(q)
    truth = (data.double().unsqueeze(0) - q.double().unsqueeze(1)).pow(2).sum(-1).topk(8, largest=False)
    assert torch.equal(idx, truth.indices)
    torch.testing.assert_close(dist2.double(), truth.values, rtol=1e-5, atol=0)
    field64 = KNNCDC(data.double(), k=8, sigma=1e-4)
    torch.testing.assert_close(field.factor(q).double(), field64.factor(q.double()), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["highest", "high"])
def test_nearest_rows_are_exact_for_ordinary_data_and_any_matmul_precision(precision):
    """Gaussian data (no fallback needed) and the same with TF32 allowed: `nearest_rows` is the brute force."""
    g = torch.Generator().manual_seed(1)
    data, q = torch.randn(3000, 16, generator=g), torch.randn(50, 16, generator=g)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        dist2, idx = nearest.nearest_rows(q, data, 5, data_rows=512)
    finally:
        torch.set_float32_matmul_precision(before)
    truth = torch.cdist(q.double(), data.double()).topk(5, largest=False)
    assert torch.equal(idx, truth.indices)
    torch.testing.assert_close(dist2, truth.values.square())


def test_delta_zero_metric_gives_a_nan_row_for_a_nan_point_only():
    """δ = 0: one NaN query made `_pinv_solve`'s Cholesky raise for the whole batch; now its row is NaN and the
    others are as without it (as ``apply`` and δ > 0 do)."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(500, 3, generator=g, dtype=F64), dim=-1)
    field = KNNCDC(data, k=32, sigma=0.2)
    x, v = data[:3].clone(), torch.randn(3, 3, generator=g, dtype=F64)
    good = field.metric(x, v)
    x[1, 0] = float("nan")
    out, inner = field.metric(x, v), field.inner(x, v, v)
    assert torch.isfinite(out).all(-1).tolist() == [True, False, True]
    assert torch.isfinite(inner).tolist() == [True, False, True]
    torch.testing.assert_close(out[[0, 2]], good[[0, 2]])


def test_a_large_fields_graph_joins_at_most_the_cap_of_seeded_points():
    """20,000 points: the graph joins GRAPH_POINTS of them (a seeded subsample, the same every time), each row's
    neighbours being those of a brute force among them. Before, it searched all N (O(N²)) through (N, 11, D)
    gathered copies."""
    data = dense_float32_circle(20_000).double()  # random angles: no ties
    field = KNNCDC(data, k=8, sigma=0.01)
    rows = field.graph_rows()
    assert rows.shape == (KNNCDC.GRAPH_POINTS,) and torch.equal(rows, KNNCDC(data, k=8, sigma=0.01).graph_rows())
    assert bool((rows[1:] > rows[:-1]).all())
    idx, dist = field.neighbour_graph(10)
    assert idx.shape == dist.shape == (KNNCDC.GRAPH_POINTS, 10)
    points = data[rows]
    ref_d, ref_i = torch.cdist(points, points).fill_diagonal_(float("inf")).topk(10, dim=-1, largest=False)
    torch.testing.assert_close(dist, ref_d)
    assert (idx == ref_i).all()


def test_caller_autocast_does_not_change_the_answers():
    """Under a caller's ``torch.autocast('cpu', bfloat16)``, float32 in gives float32 out and the same answer
    (``apply`` returned bfloat16 with 2.6% error)."""
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(1000, 3, generator=g), dim=-1)
    field = KNNCDC(data, k=32, sigma=0.2)
    x = torch.nn.functional.normalize(torch.randn(8, 3, generator=g), dim=-1)
    u = torch.randn(8, 3, generator=g)
    calls = {"apply": lambda: field.apply(x, u), "metric": lambda: field.metric(x, u),
             "factor": lambda: field.factor(x), "neighbours": lambda: field.neighbours(x)[0],
             "beyond_data": lambda: field.beyond_data(3 * x)}
    assert_same_under_autocast(calls, atol=1e-6)
