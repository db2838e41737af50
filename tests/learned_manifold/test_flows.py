"""Gradient flows and interpolation (SPEC §6): closed forms on a flat subspace, behaviour on a learned sphere."""

import math
import re
import warnings

import pytest
import torch

from learned_manifold import FlowResult, LearnedDataManifold, gradient_flow, interpolate
from learned_manifold.evaluation import lerp, path_quality
from learned_manifold.metrics import KNNCDC
from learned_manifold.regularised import UncentredFieldWarning
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q


def subspace_points(n, seed):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ Q.T


def test_interpolation_on_a_subspace_is_exponential_decay():
    """ẋ = −QQᵀ(x − x₁) with x₀, x₁ ∈ span(Q): x(t) = x₁ + e^{−t}(x₀ − x₁)."""
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x0, x1 = subspace_points(3, 1), subspace_points(3, 2)
    res = interpolate(M, x0, x1, t_end=4.0, n_points=9, rtol=1e-9, atol=1e-10, stop_tol=1e-12)
    assert isinstance(res, FlowResult) and res.path.shape == (3, 9, 4)
    exact = x1[:, None] + torch.exp(-res.times)[None, :, None] * (x0 - x1)[:, None]
    torch.testing.assert_close(res.path, exact, atol=1e-7, rtol=0)
    torch.testing.assert_close(res.final_gap, math.exp(-4.0) * (x0 - x1).norm(dim=-1), atol=1e-7, rtol=0)
    # a straight path inside the subspace: Euclidean and metric lengths agree (G is the projector there)
    torch.testing.assert_close(res.length, (1 - math.exp(-4.0)) * (x0 - x1).norm(dim=-1), atol=1e-7, rtol=0)
    torch.testing.assert_close(res.metric_length, res.length, atol=1e-6, rtol=0)


def test_euler_is_riemannian_gradient_descent():
    """Euler with step η: x_{k+1} = x_k − η G(x_k − x₁), i.e. the gap shrinks by (1 − η) per step."""
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x0, x1 = subspace_points(2, 3), subspace_points(2, 4)
    res = interpolate(M, x0, x1, t_end=2.0, n_points=11, method="euler", stop_tol=1e-12)
    gaps = (res.path - x1[:, None]).norm(dim=-1)
    torch.testing.assert_close(gaps[:, 1:] / gaps[:, :-1], torch.full((2, 10), 0.8, dtype=torch.float64))


def test_gradient_flow_of_any_objective_and_isotropic_part():
    """f = ½‖x − t‖² under G = QQᵀ + δI: the normal part decays at rate δ, the tangent part at 1 + δ."""
    delta = 0.1
    M = LearnedDataManifold(FixedSubspaceField(Q, delta))
    x0 = torch.randn(2, 4, dtype=torch.float64)
    t = torch.randn(4, dtype=torch.float64)
    res = gradient_flow(M, lambda x: 0.5 * (x - t).pow(2).sum(-1), x0, t_end=3.0, rtol=1e-9, atol=1e-10)
    P = Q @ Q.T
    d0 = x0 - t
    exact = t + math.exp(-3.0 * (1 + delta)) * d0 @ P + math.exp(-3.0 * delta) * d0 @ (torch.eye(4) - P)
    torch.testing.assert_close(res.path[:, -1], exact, atol=1e-7, rtol=0)
    torch.testing.assert_close(res.final_gap, 0.5 * (exact - t).pow(2).sum(-1), atol=1e-7, rtol=0)


def test_unknown_method_lists_valid_names_and_bad_inputs():
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x = subspace_points(2, 0)
    with pytest.raises(ValueError, match="dopri5"):
        interpolate(M, x, x, method="leapfrog")
    with pytest.raises(ValueError, match="same number"):
        interpolate(M, x, x[:1])
    with pytest.raises(ValueError, match="NaN"):
        interpolate(M, x * float("nan"), x)
    with pytest.raises(ValueError, match="D = 4"):
        interpolate(M, torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="landing"):
        interpolate(M, x, x, landing=True)


@pytest.mark.parametrize("stop_tol", [float("nan"), -1.0, 0.0, True])
def test_a_bad_stop_tol_is_refused_before_any_work(stop_tol):
    """Before: NaN ended in torchdiffeq's "underflow in dt", -1 and 0 were accepted and never stopped a pair."""
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x = subspace_points(2, 0)
    with pytest.raises(ValueError, match="stop_tol must be a finite number > 0"):
        interpolate(M, x, x + 1, stop_tol=stop_tol)


@pytest.mark.parametrize("method", ["dopri5", "euler"])
def test_a_flow_that_turns_nan_is_one_clear_error(method):
    """An objective whose gradient is NaN along the flow (sqrt of a negative once x₀ < 0.5): adaptive solvers
    failed with torchdiffeq's bare "AssertionError: underflow in dt 0.0", fixed-step ones returned NaN rows."""
    M = LearnedDataManifold(FixedSubspaceField(Q, 0.1))
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"became NaN or inf .*sqrt or log of a negative"):
        gradient_flow(M, lambda y: torch.sqrt(y[:, 0] - 0.5) + y[:, 0] ** 2, x, t_end=5.0, method=method)


def test_points_with_more_than_one_batch_axis_are_refused():
    """(B1, B2, D) used to come back as B1·B2 paths with the batch axes merged; geodesic refuses them too."""
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x = subspace_points(6, 0).reshape(2, 3, 4)
    with pytest.raises(ValueError, match=r"one batch axis, got \(2, 3, 4\)"):
        interpolate(M, x, x)


def test_single_pair_in_single_path_out():
    M = LearnedDataManifold(FixedSubspaceField(Q))
    x0, x1 = subspace_points(1, 5)[0], subspace_points(1, 6)[0]
    res = interpolate(M, x0, x1, n_points=5)
    assert res.path.shape == (5, 4) and res.final_gap.shape == ()


def test_single_image_point_drops_the_batch_axis_as_geodesic_does():
    """One ``data_shape`` point is a single point, as a flat ``(D,)`` one is: path ``(T, *data_shape)`` and 0-d
    scores (it came back as ``(1, T, *data_shape)`` with ``(1,)`` scores); a batch of one keeps its axis."""
    M = LearnedDataManifold(FixedSubspaceField(Q), data_shape=(1, 2, 2))
    a, b = subspace_points(1, 5).reshape(1, 2, 2), subspace_points(1, 6).reshape(1, 2, 2)
    res = interpolate(M, a, b, n_points=5)
    assert res.path.shape == (5, 1, 2, 2) and res.final_gap.shape == () and res.metric_length.shape == ()
    assert res.reached.shape == () and res.gap_closed.shape == () and res.stalled.shape == ()
    batched = interpolate(M, a[None], b[None], n_points=5)
    assert batched.path.shape == (1, 5, 1, 2, 2) and batched.final_gap.shape == (1,)
    torch.testing.assert_close(res.path, batched.path[0])
    flow = gradient_flow(M, lambda x: 0.5 * x.pow(2).sum(-1), b, n_points=5)
    assert flow.path.shape == (5, 1, 2, 2) and flow.final_gap.shape == () and flow.length.shape == ()
    torch.testing.assert_close(flow.path[0], b)


def great_circle_pairs():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    b = torch.tensor([[-0.5, math.sqrt(3) / 2, 0.0], [0.0, 0.0, 1.0], [0.6, 0.0, 0.8]])
    return a, b


def test_interpolation_on_the_learned_sphere_stays_closer_than_lerp(sphere_model, sphere):
    a, b = great_circle_pairs()
    M = LearnedDataManifold(sphere_model, delta=1e-2)
    res = interpolate(M, a, b)
    flow = path_quality(res.path, manifold=sphere, target=b)
    line = path_quality(lerp(a, b, 65), manifold=sphere, target=b)
    assert (flow.max_distance < 0.5 * line.max_distance).all(), (flow.max_distance, line.max_distance)
    assert (flow.endpoint_gap < 0.15).all(), flow.endpoint_gap
    landed = interpolate(M, a, b, landing=True)
    landed_q = path_quality(landed.path, manifold=sphere, target=b)
    # landing keeps the path on the data; near the end the denoiser's inward shift (≈ dσ²/2R per landing)
    # balances the flow's pull, so the end gap is of the same order as without landing
    assert (landed_q.max_distance < 0.05).all() and landed_q.max_distance.max() <= flow.max_distance.max(), (
        landed_q
    )
    assert (landed_q.endpoint_gap < 0.15).all(), landed_q


def test_gradient_flow_climbs_the_learned_sphere_and_stays_near_it(sphere_model):
    c = torch.tensor([0.0, 0.0, 1.0])
    x0 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, -0.3], [0.3, 1.0, -0.5]]), dim=-1)
    M = LearnedDataManifold(sphere_model, delta=1e-2)
    res = gradient_flow(M, lambda x: -(x @ c), x0, t_end=6.0, landing=True)
    assert (res.path.norm(dim=-1) - 1).abs().max() < 0.05
    assert (res.path[:, -1] @ c > 0.95).all()
    # without the manifold's geometry (plain Euclidean flow) the same objective leaves the sphere
    straight = x0 + 6.0 * c
    assert (straight.norm(dim=-1) > 5).all()


def test_a_flow_needs_only_apply_metric_length_is_nan_where_the_metric_is_undefined():
    """ScoreJacobianMetric with δ = 0 has no metric (CG needs δ > 0); its flow still runs."""
    from learned_manifold.metrics import ScoreJacobianMetric

    def denoiser(y, sigma):  # exact posterior mean of N(0, diag(c)) data: linear, G = diag(c / (c + σ²))
        c = torch.tensor([1.0, 1e-4], dtype=y.dtype)
        return y * c / (c + sigma**2)

    field = ScoreJacobianMetric(denoiser, 0.1)
    res = interpolate(field, torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]]), t_end=4.0)
    assert torch.isnan(res.metric_length).all() and torch.isfinite(res.length).all()
    assert res.final_gap.item() < 0.5


def test_a_small_pair_is_judged_on_its_own_scale():
    """A pair 1e-4 apart near the origin that closed 0.1% of its gap is not "reached" (the rounding floor was an
    absolute 1e-4 in float32), and its flow is as accurate in a batch beside a pair of gap 1 as alone (the
    tolerances were absolute and the step size is shared by the batch)."""
    field = FixedSubspaceField(torch.eye(3)[:, :2].contiguous())
    x0, x1 = torch.tensor([[1e-4, 0.0, 0.0]]), torch.zeros(1, 3)
    short = interpolate(field, x0, x1, t_end=1e-3)
    assert short.gap_closed.item() < 0.01 and not short.reached.item()
    small = x0.double(), x1.double()
    alone = interpolate(field.double(), *small, t_end=3.0, stop_tol=1e-12)
    both = interpolate(field.double(), torch.cat([small[0], torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)]),
                       torch.cat([small[1], torch.zeros(1, 3, dtype=torch.float64)]), t_end=3.0, stop_tol=1e-12)
    exact = 1e-4 * math.exp(-3.0)  # ẋ = −(x − x₁) in the subspace
    assert abs(alone.final_gap.item() - exact) < 1e-3 * exact
    assert abs(both.final_gap[0].item() - exact) < 1e-3 * exact


def test_landing_flow_keeps_identical_ends_and_reaches_data_targets(sphere_model, sphere):
    """Data points lie ~dσ²/2R off the denoiser's image: landing carries the ends' offsets (as geodesics do)."""
    manifold = LearnedDataManifold(sphere_model)
    x = sphere.sample(6, generator=torch.Generator().manual_seed(3))
    assert (manifold.field.project(x) - x).norm(dim=-1).min() > 1e-3  # not fixed points of the landing map
    same = interpolate(manifold, x[:3], x[:3], landing=True)
    assert bool(same.reached.all()) and same.length.abs().max() == 0
    torch.testing.assert_close(same.path, x[:3, None].expand_as(same.path), rtol=0, atol=0)
    res = interpolate(manifold, x[:3], x[3:], landing=True)
    assert bool(res.reached.all()), res.reason
    assert ((res.path.norm(dim=-1) - 1).abs().max() < 0.05)  # on the sphere throughout


def test_a_diverging_flow_says_so_and_names_the_step():
    """An uncentred k-NN field with a large Euler step blows up; the field's own refusal is reported as the
    flow's divergence (it named neither the flow nor the step before)."""
    from learned_manifold.metrics import KNNCDC

    th = torch.linspace(0, 2 * math.pi, 10001, dtype=torch.float64)[:-1]
    field = KNNCDC(torch.stack([th.cos(), th.sin()], -1), sigma=0.05, delta=0.01, centred=False)
    a = 2 * math.pi / 3
    with pytest.raises(ValueError, match=r"the flow \('euler'\) reached a point .* smaller step_size"), \
            pytest.warns(UncentredFieldWarning, match="not mean-centred"):
        interpolate(field, torch.tensor([[1.0, 0.0]], dtype=torch.float64),
                    torch.tensor([[math.cos(a), math.sin(a)]], dtype=torch.float64), method="euler", step_size=0.05)


def test_a_pair_that_cannot_move_is_not_reached_in_float32():
    """|x1| = 100, a gap of 5e-3 normal to the field's range: the rounding floor 1e3·eps·|x1| = 0.012 had called
    it "reached" in float32 (float64 said "stalled")."""
    field = FixedSubspaceField(torch.eye(4)[:, :2].contiguous())
    x1 = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    x0 = x1 + torch.tensor([[0.0, 0.0, 5e-3, 0.0]])
    for dtype in (torch.float32, torch.float64):
        res = interpolate(field.to(dtype), x0.to(dtype), x1.to(dtype))
        assert not res.reached.item() and res.stalled.item(), (dtype, res.reason)


def test_a_gradient_flow_is_the_same_in_any_units_and_at_any_position():
    """The flow of ``f(x) = −c (x − s)_z`` under the k-NN CDC of a unit sphere scaled by ``c`` and moved by ``s``
    is, in the sphere's own coordinates ``(x − s)/c``, the same flow for every ``c`` and ``s``: the solver's
    tolerances apply to the deviation from the start in units of the field's `length_scale`. (In raw coordinates
    the end point was 0.19 off for data in thousandths and 0.04 off at a shift of 1,000.)"""
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g, dtype=torch.float64), dim=-1)
    start = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    ends = []
    for c, s in [(1.0, 0.0), (1e-3, 0.0), (1e3, 0.0), (1.0, 1e3)]:
        field = KNNCDC(u * c + s, k=64, sigma=0.1 * c)
        assert field.length_scale() == pytest.approx(c, rel=1e-3)
        res = gradient_flow(field, lambda x, c=c, s=s: -c * (x[:, 2] - s), start * c + s, t_end=2.0)
        ends.append((res.path[0, -1] - s) / c)
        assert torch.equal(res.path[0, 0], (start * c + s)[0])
    assert float(ends[0][2]) > 0.9  # it climbed
    for end in ends[1:]:
        torch.testing.assert_close(end, ends[0], rtol=0, atol=1e-6)


def sphere_knn_field() -> KNNCDC:
    """The docstrings' k-NN field of S² (2,000 points, k = 32, σ = 0.1, δ = 1e-2), float32."""
    data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    return KNNCDC(data, k=32, sigma=0.1, delta=1e-2)


def test_half_precision_points_are_integrated_in_float32_and_returned_in_their_dtype():
    """A float16 time grid has t + dt == t after a few steps: torchdiffeq gave up ("underflow in dt") and the flow
    reported a non-finite velocity that was finite everywhere."""
    field = sphere_knn_field()
    x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    flow32 = gradient_flow(field, lambda x: -x[:, 2], x0, t_end=4.0)
    path32 = interpolate(field, x0, x1)
    for dtype in (torch.float16, torch.bfloat16):
        flow = gradient_flow(field, lambda x: -x[:, 2], x0.to(dtype), t_end=4.0)
        path = interpolate(field, x0.to(dtype), x1.to(dtype))
        assert flow.path.dtype == path.path.dtype == flow.times.dtype == path.times.dtype == dtype
        torch.testing.assert_close(flow.path[0, -1].float(), flow32.path[0, -1], atol=2e-2, rtol=0)
        torch.testing.assert_close(path.path[0, -1].float(), path32.path[0, -1], atol=2e-2, rtol=0)
        assert path.reason == ["reached"] and torch.equal(flow.path[:, 0], x0.to(dtype))


def test_flows_under_inference_mode_are_the_flows_outside_it():
    """``f`` is differentiated: under inference mode this failed with the raw autograd error "element 0 of tensors
    does not require grad"."""
    field = sphere_knn_field()
    x0, x1 = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])
    flow, path = gradient_flow(field, lambda x: -x[:, 2], x0, t_end=1.0, n_points=5), interpolate(field, x0, x1)
    with torch.inference_mode():
        a, b = x0.clone(), x1.clone()  # inference tensors
        flow_i = gradient_flow(field, lambda x: -x[:, 2], a, t_end=1.0, n_points=5)
        path_i = interpolate(field, a, b)
    torch.testing.assert_close(flow_i.path, flow.path, atol=0, rtol=0)
    torch.testing.assert_close(path_i.path, path.path, atol=0, rtol=0)
    assert not flow_i.path.is_inference()


def test_a_flow_names_its_euclidean_length_as_a_geodesic_does():
    """``FlowResult.length`` is Euclidean while ``GeodesicResult.length`` is metric: ``euclidean_length`` (and
    ``metric_length``) are the names both results share."""
    M = LearnedDataManifold(FixedSubspaceField(Q, 0.5))  # G = QQᵀ + 0.5 I: metric and Euclidean lengths differ
    res = interpolate(M, subspace_points(2, 1), subspace_points(2, 2), n_points=9)
    assert torch.equal(res.euclidean_length, res.length)
    torch.testing.assert_close(res.euclidean_length, (res.path[:, 1:] - res.path[:, :-1]).norm(dim=-1).sum(-1))
    assert (res.metric_length < 0.9 * res.euclidean_length).all()  # g = (G + δI)^{-1}: in span(Q) 1/1.5 of I


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_integer_start_points_become_the_default_float_dtype_as_in_geodesic(kind):
    """A uint8 tensor (an image as stored) was refused "must have a floating-point dtype"; a NumPy array refused as
    not a tensor. Both now flow from the same point as its float version; bool points stay refused."""
    field = FixedSubspaceField(torch.eye(3)[:, :2])
    x = torch.tensor([[1, 2, 0]], dtype=torch.uint8)
    start = x.numpy() if kind == "numpy" else x
    res = gradient_flow(field, lambda y: -(y ** 2).sum(-1), start, t_end=0.5)
    ref = gradient_flow(field, lambda y: -(y ** 2).sum(-1), x.float(), t_end=0.5)
    assert res.path.dtype == torch.get_default_dtype()
    torch.testing.assert_close(res.path, ref.path)
    with pytest.raises(ValueError, match="x0 must have a floating-point"):
        gradient_flow(field, lambda y: y.sum(-1), x.bool(), t_end=0.5)


class UncentredSubspace(FixedSubspaceField):
    """`FixedSubspaceField` marked uncentred (as `KNNCDC(centred=False)` or a model trained ``--uncentred``)."""

    centred = False


@pytest.mark.parametrize("kind", ["interpolate", "gradient_flow"])
def test_an_uncentred_field_gives_one_warning_naming_it_and_the_path_is_computed(kind):
    """SPEC §2: paths need a mean-centred field. An uncentred one is used (geometries are compared) with one
    `UncentredFieldWarning` per call, pointing at the caller; a centred one warns nothing (warnings are errors)."""
    x0, x1 = subspace_points(2, 1), subspace_points(2, 2)

    def run(field):
        if kind == "interpolate":
            return interpolate(field, x0, x1, t_end=2.0, n_points=5)
        return gradient_flow(field, lambda x: 0.5 * (x - x1).pow(2).sum(-1), x0, t_end=2.0, n_points=5)

    with pytest.warns(UncentredFieldWarning) as record:
        res = run(UncentredSubspace(Q))
    assert len(record) == 1 and record[0].filename == __file__
    assert str(record[0].message).startswith(f"{kind}: the field UncentredSubspace is not mean-centred (centred=False)")
    assert "use a centred field" in str(record[0].message).lower()
    torch.testing.assert_close(res.path, run(FixedSubspaceField(Q)).path)


@pytest.mark.parametrize("f, got", [(lambda x: x[:, 0].mean(), "()"), (lambda x: -x, "(3, 4)"),
                                    (lambda x: x[:, :1], "(3, 1)")])
def test_an_objective_that_is_not_one_value_per_point_is_refused_before_integrating(f, got):
    """``f`` must map (B, D) to (B,): a mean slows every point B-fold, a (B, D) output is summed. One error at the
    first evaluation, before any velocity is computed."""
    calls = []

    def counted(x):
        calls.append(x.shape)
        return f(x)

    msg = (f"f must map points of shape (B, D) = (3, 4) to one value per point, shape (B,) = (3,); got {got} "
           "(return the per-point values, not their mean or sum)")
    with pytest.raises(ValueError, match=re.escape(msg) + "$"):
        gradient_flow(FixedSubspaceField(Q), counted, subspace_points(3, 1), t_end=1.0, n_points=3)
    assert calls == [(3, 4)]


class _LazyLanding(FixedSubspaceField):
    """The plane ``span(e₀, e₁)`` in R³ whose landing map barely moves points (a denoiser below the data's noise)
    and whose data are the points within 1 of the origin (``beyond_data``: the distance past 1, as landmarks)."""

    sigma = 0.1

    def project(self, x):
        return x

    @property
    def can_project(self):
        return True

    def beyond_data(self, x):
        return (x.norm(dim=-1) - 1).clamp_min(0)


def test_a_landed_flow_that_ends_far_from_the_data_says_so():
    """``gradient_flow(landing=True)`` projects once per interval and never looked at the result: a linear
    objective's flow on a noisy circle at a σ below the noise ended 8.7 off the circle, silently. The end points
    are checked against the data the field holds, as `land` checks its points; the path is still returned."""
    field = _LazyLanding(torch.eye(3, dtype=torch.float64)[:, :2])
    x0 = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.2, 0.0]], dtype=torch.float64)

    def f(x):  # falls without bound along −e₀
        return x[:, 0]

    with pytest.warns(UserWarning, match=r"gradient_flow: points beyond the data: landed end points \(2 of 2\), up "
                                         r"to 2\.\d+ from the nearest data point the field holds \(its data or a "
                                         r"model's landmarks\), farther than sigma = 0\.1") as seen:
        res = gradient_flow(field, f, x0, t_end=3.0, n_points=4, landing=True)
    assert seen[0].filename == __file__  # points at the caller
    torch.testing.assert_close(res.path[:, -1, 0], x0[:, 0] - 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradient_flow(field, f, x0, t_end=0.3, n_points=4, landing=True)  # ends within the data: silent


@pytest.mark.parametrize("f", [lambda x: torch.zeros(x.shape[0], dtype=x.dtype), lambda x: x.detach().pow(2).sum(-1)],
                         ids=["constant", "detached"])
def test_an_objective_that_does_not_depend_on_the_points_is_refused_by_name(f):
    """A constant f, or one computed from x.detach(), failed inside the flow with torch's bare "element 0 of
    tensors does not require grad and does not have a grad_fn"."""
    msg = ("f must be differentiable in x by autograd, but f(x0) does not depend on the points x: a constant "
           "objective (which has no flow: its gradient is zero everywhere), or one computed from x.detach(), .item() "
           "or NumPy; compute f from x with torch operations")
    with pytest.raises(ValueError, match=re.escape(msg) + "$"):
        gradient_flow(FixedSubspaceField(Q), f, subspace_points(3, 1), t_end=1.0, n_points=3)


def test_a_fixed_step_method_gives_a_pair_the_same_path_alone_or_in_a_batch():
    """The docstring's batch independence: fixed steps do not depend on the batch (an adaptive method's shared step
    size does: a pair beside 999 short ones moved 75× rtol·gap on a k-NN circle)."""
    field = sphere_knn_field()
    x0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    x1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.01, 0.99995]])
    alone = interpolate(field, x0[:1], x1[:1], method="rk4", t_end=8.0, n_points=33)
    both = interpolate(field, x0, x1, method="rk4", t_end=8.0, n_points=33)
    torch.testing.assert_close(both.path[:1], alone.path, rtol=0, atol=1e-6)
    assert both.reason[0] == alone.reason[0] == "reached"


def test_a_flow_without_landing_that_starts_or_ends_beyond_the_data_says_so():
    """Tester E: without landing (the default) a flow started 8 above a learned circle ran and ended there with no
    warning, where a landed one warned. One warning per call names the points beyond the data and how far; on the
    data both flows are silent."""
    field = _LazyLanding(torch.eye(3, dtype=torch.float64)[:, :2])  # data: within 1 of the origin
    on, off = torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 3.0, 0.0]], dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"^gradient_flow: points beyond the data: x0 \(1 of 1\), the flow's end "
                                         r"\(1 of 1\), up to 2 from .* or use landing=True, or expect") as seen:
        gradient_flow(field, lambda x: x[:, 0], off, t_end=0.1, n_points=3)
    assert len(seen) == 1 and seen[0].filename == __file__
    with pytest.warns(UserWarning, match=r"^interpolate: points beyond the data: x1 \(1 of 1\), up to 2 ") as seen:
        interpolate(field, on, off, n_points=3, t_end=0.1)
    assert len(seen) == 1 and seen[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradient_flow(field, lambda x: x[:, 0], on, t_end=0.1, n_points=3)
        interpolate(field, on, -on, n_points=3)
