"""Geodesic inputs are checked up front (issue 13), starts follow the data, and ``converged`` is honest (issue 12)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import Tensor

from learned_manifold.evaluation import lerp
from learned_manifold.geodesic_init import auto_init, graph_path, resample
from learned_manifold.geodesic_solvers import _Energy, verify_minimum
from learned_manifold.geodesics import geodesic
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import CoMetricField
from tests.conftest import FixedSubspaceField

F64 = torch.float64


class Flat(CoMetricField):
    """``g = I``: geodesics are straight lines."""

    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        return w

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return v


def ends():
    return torch.zeros(2, 3, dtype=F64), torch.ones(2, 3, dtype=F64)


@pytest.mark.parametrize("n_points", [0, 1, -3])
def test_n_points_below_two_raises(n_points):
    with pytest.raises(ValueError, match="n_points"):
        geodesic(Flat(), *ends(), n_points=n_points)


def test_bad_endpoints_raise_one_clear_error():
    a, b = ends()
    with pytest.raises(ValueError, match="x0 contains NaN"):
        geodesic(Flat(), a * float("nan"), b)
    with pytest.raises(ValueError, match="x1 contains NaN"):
        geodesic(Flat(), a, b * float("inf"))
    with pytest.raises(ValueError, match="same shape"):
        geodesic(Flat(), a, b[:1])
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor, a NumPy array or nested lists"):
        geodesic(Flat(), "x0", b)
    with pytest.raises(ValueError, match=r"x0 must have a floating-point \(or integer\) dtype, got torch.complex64"):
        geodesic(Flat(), torch.zeros(2, 3, dtype=torch.complex64), b)
    with pytest.raises(TypeError, match="steps"):
        geodesic(Flat(), a, b, steps=2.5)
    with pytest.raises(ValueError, match="init"):
        geodesic(Flat(), a, b, init="spline")
    with pytest.raises(ValueError, match="graph"):
        geodesic(Flat(), a, b, init="graph")
    with pytest.raises(ValueError, match="landing"):
        geodesic(Flat(), a, b, init="landing")


def test_numpy_endpoints_are_converted():
    a, b = ends()
    res = geodesic(Flat(), a.numpy(), np.asarray(b), n_points=5)
    torch.testing.assert_close(res.path, lerp(a, b, 5))
    assert res.converged.all()


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
def test_integer_endpoints_become_the_default_float_dtype(kind):
    """A uint8 NumPy array was converted and then refused as "torch.uint8"; integer tensors likewise refused."""
    a, b = (t.to(torch.uint8) for t in ends())
    if kind == "numpy":
        a, b = a.numpy(), b.numpy()
    res = geodesic(Flat(), a, b, n_points=5)
    assert res.path.dtype == torch.get_default_dtype()
    torch.testing.assert_close(res.path, lerp(*ends(), 5).to(res.path.dtype))


def test_bool_endpoints_are_refused_as_by_the_manifold():
    a, b = ends()
    with pytest.raises(ValueError, match=r"x0 must have a floating-point \(or integer\) dtype, got torch.bool"):
        geodesic(Flat(), a.bool(), b.bool(), n_points=5)


def test_geodesic_runs_under_inference_mode_as_under_no_grad():
    """Under ``torch.inference_mode()`` the solver's autograd failed with a raw "does not require grad" error."""
    a, b = ends()
    bent = lerp(a, b, 9)
    bent[:, 1:-1, 0] += 0.3  # a bent start: the solver must straighten it, by autograd
    with torch.no_grad():
        want = geodesic(Flat(), a, b, init=bent)
    with torch.inference_mode():
        got = geodesic(Flat(), a.clone(), b.clone(), init=bent.clone())
    assert not got.path.is_inference() and got.converged.all()
    torch.testing.assert_close(got.path, want.path)
    torch.testing.assert_close(got.path, lerp(a, b, 9), atol=1e-6, rtol=0)


def test_empty_batch_gives_an_empty_result():
    e = torch.zeros(0, 3, dtype=F64)
    res = geodesic(Flat(), e, e, n_points=6)
    assert res.path.shape == (0, 6, 3) and res.energy.shape == res.converged.shape == (0,) and res.steps == 0


def test_resample_is_equally_spaced_and_keeps_the_ends():
    t = torch.linspace(0, 1, 50, dtype=F64) ** 3  # points crowded at the start
    arc = torch.stack([torch.cos(t * math.pi), torch.sin(t * math.pi)], -1)[None]
    out = resample(arc, 11)
    seg = (out[:, 1:] - out[:, :-1]).norm(dim=-1)
    assert (seg.amax() / seg.amin()) < 1.01
    torch.testing.assert_close(out[:, 0], arc[:, 0]) and torch.testing.assert_close(out[:, -1], arc[:, -1])


def test_graph_path_goes_round_a_circle_not_across_it():
    """k-NN data on the unit circle: the graph path between opposite-ish points follows the circle (length ≈ the
    arc, every point near the circle), unlike the chord through the middle."""
    th = torch.linspace(0, 2 * math.pi, 721, dtype=F64)[:-1]
    data = torch.stack([th.cos(), th.sin()], -1)
    field = KNNCDC(data, k=8, sigma=0.02)
    assert auto_init(field) == "graph" and auto_init(Flat()) == "linear"
    a = torch.tensor([[1.0, 0.0]], dtype=F64)
    b = torch.tensor([[math.cos(2.5), math.sin(2.5)]], dtype=F64)
    path = graph_path(field, a, b, 33)
    assert (path.norm(dim=-1) - 1).abs().max() < 1e-3
    length = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum()
    assert abs(length.item() - 2.5) < 0.01


def test_verify_minimum_refutes_a_bent_path_and_accepts_the_line():
    a, b = ends()
    line = lerp(a, b, 7)
    problem = _Energy(Flat(), a, b, line)
    v = torch.zeros_like(problem.base)
    v[1] += 0.3  # the second pair bent away from the straight line
    ok = verify_minimum(problem, v, torch.tensor([True, True]), rtol=1e-6)
    assert ok.tolist() == [True, False]
    assert not verify_minimum(problem, v, torch.tensor([False, False]), rtol=1e-6).any()  # never adds claims


class _NaNBackward(torch.autograd.Function):
    """Identity forward, NaN backward."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad * float("nan")


class NaNGradient(Flat):
    """``g = I`` whose gradient is NaN (like eigh's backward on repeated eigenvalues): finite energies, NaN
    gradients; a solver must not call the result converged."""

    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        return v * (1 + 0 * _NaNBackward.apply(x).sum(-1, keepdim=True))


def test_non_finite_gradients_are_never_reported_as_converged():
    a, b = ends()
    res = geodesic(NaNGradient(), a, b, n_points=6, init="linear")
    assert not res.converged.any()


def test_image_shaped_points_of_an_image_manifold_give_image_shaped_paths():
    """As `interpolate` does: points in the manifold's data shape in, paths in it out; flat points stay flat."""
    from learned_manifold import LearnedDataManifold
    from learned_manifold.metrics import EuclideanMetric

    manifold = LearnedDataManifold(EuclideanMetric(), data_shape=(1, 4, 4))
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(2, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    res = geodesic(manifold, x0, x1, n_points=5)
    assert res.path.shape == (2, 5, 1, 4, 4)
    torch.testing.assert_close(res.path[:, 2], 0.5 * (x0 + x1))  # the straight line
    flat = geodesic(manifold, x0.reshape(2, -1), x1.reshape(2, -1), n_points=5)
    assert flat.path.shape == (2, 5, 16)
    one = geodesic(manifold, x0[0], x1[0], n_points=5)
    assert one.path.shape == (5, 1, 4, 4)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("lr", -1.0, "lr must be a finite number > 0, got -1.0"),
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("lr", float("nan"), "lr must be a finite number > 0, got nan"),
    ("verify_tol", -1.0, "verify_tol must be a finite number > 0, got -1.0"),
    ("tol", -1e-9, "tol must be a finite number >= 0, got -1e-09"),
])
def test_solver_options_out_of_range_are_refused_by_name(option, value, message):
    """``lr ≤ 0`` gave the chord back, unconverged, after one step; ``verify_tol < 0`` refuted every pair."""
    with pytest.raises(ValueError, match=re.escape(message)):
        geodesic(Flat(), *ends(), **{option: value})


def test_landing_on_a_field_without_projection_names_the_users_field():
    """A low-rank field with δ = 0 is wrapped internally for the solver's δ (`regularised.Regularised`); the
    message named that wrapper ("Regularised has none")."""
    field = FixedSubspaceField(torch.eye(3, 2, dtype=F64))
    field.centred = True
    with pytest.raises(ValueError, match="landing needs a field with a landing projection .*; "
                                         "FixedSubspaceField has none"):
        geodesic(field, *ends(), landing=True)


@pytest.mark.parametrize("landing", ["no", float("nan"), -1, 1, "True"])
def test_a_landing_that_is_not_a_bool_is_refused_before_any_work(landing):
    """``bool(landing)`` turned ``'no'``, NaN and −1 into landing on (as `LearnedDataManifold` refuses them)."""
    with pytest.raises(TypeError, match=re.escape(f"landing must be True, False or None (the default, chosen by "
                                                  f"the start), got {landing!r}")):
        geodesic(Flat(), *ends(), landing=landing)


def test_a_graph_start_on_a_field_without_data_names_every_field_that_has_some():
    """The message named only KNNCDC and VAEPullbackMetric, yet a LearnedCDC with landmarks or data runs it."""
    with pytest.raises(ValueError, match=re.escape("init='graph' needs a field that holds data to build its neighbour "
                                                   "graph from: a KNNCDC, a LearnedCDC whose model stores at "
                                                   "least 2 landmarks or built with data=points, or a "
                                                   "VAEPullbackMetric built with "
                                                   "codes=; this Flat holds none")):
        geodesic(Flat(), *ends(), init="graph")


def test_a_field_built_under_inference_mode_gives_the_same_geodesic():
    """A field built (or loaded) inside ``torch.inference_mode()`` holds inference tensors, which autograd cannot
    save: geodesic failed with PyTorch's "Inference tensors cannot be saved for backward". It now solves on a copy
    with normal tensors, and leaves the caller's field as it was."""
    q = torch.tensor([[0.6, 0.0], [0.8, 0.0], [0.0, 1.0]], dtype=F64)
    a, b = torch.tensor([[0.0, 0.0, 0.0]], dtype=F64), torch.tensor([[0.6, 0.8, 1.0]], dtype=F64)
    bent = lerp(a, b, 7)
    bent[:, 1:-1, 0] += 0.3  # off the line: the solver must straighten it, by autograd through the field
    want = geodesic(FixedSubspaceField(q.clone(), delta=0.1), a, b, init=bent)
    with torch.inference_mode():
        field = FixedSubspaceField(q.clone(), delta=0.1)
        got = geodesic(field, a, b, init=bent)
    assert field.Q.is_inference() and not got.path.is_inference()
    torch.testing.assert_close(got.path, want.path)
    assert bool(got.converged.all())


def test_half_precision_points_are_solved_in_float32_and_returned_in_their_dtype():
    """Tester B: bfloat16 ends were solved in bfloat16 with ``tol = 10 ε`` of bfloat16 (8e-2): paths 0.018 off the
    float32 ones and 1.2–1.5% long, "converged". Solved in float32 they agree with the float32 solve to the
    points' rounding (bfloat16's spacing is 2⁻⁷ at 1.5) and come back in bfloat16."""
    from tests.learned_manifold.test_geodesics import SphereProjector

    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    b = torch.tensor([[0.0, 1.0, 0.0], [0.6, -0.8, 0.0]])
    want = geodesic(SphereProjector(1e-3), a, b, n_points=8)
    got = geodesic(SphereProjector(1e-3), a.to(torch.bfloat16), b.to(torch.bfloat16), n_points=8)
    assert got.path.dtype == got.length.dtype == got.energy.dtype == got.delta.dtype == torch.bfloat16
    assert bool(got.converged.all())
    assert float((got.path.float() - want.path).abs().max()) < 0.008
    assert float((got.length.float() - want.length).abs().max()) <= 2**-7


def test_a_half_precision_field_is_solved_on_a_float32_copy():
    """Tester B: a ``.half()`` model computed the energy at half precision whatever the points' dtype. `geodesic`
    solves on a copy whose half-precision parameters and buffers are float32 (float64 ones kept); the field itself
    is not changed."""
    from learned_manifold.geodesic_inputs import _float32_field

    field = torch.nn.Module()
    field.register_parameter("w", torch.nn.Parameter(torch.ones(2, dtype=torch.float16)))
    field.register_buffer("b", torch.ones(2, dtype=torch.bfloat16))
    field.register_buffer("c", torch.ones(2, dtype=F64))
    copied = _float32_field(field)
    assert copied is not field and field.w.dtype == torch.float16 and field.b.dtype == torch.bfloat16
    assert (copied.w.dtype, copied.b.dtype, copied.c.dtype) == (torch.float32, torch.float32, F64)
    assert isinstance(copied.w, torch.nn.Parameter)
    plain = torch.nn.Linear(2, 2)
    assert _float32_field(plain) is plain


def test_nested_list_endpoints_are_converted_as_numpy_ones():
    """Tester F: geodesic took NumPy arrays but refused nested lists (TypeError), which the manifold converts."""
    a, b = ends()
    res = geodesic(Flat(), a.tolist(), b.tolist(), n_points=5)
    torch.testing.assert_close(res.path, lerp(a, b, 5).to(res.path.dtype))


def test_mixed_precision_ends_are_promoted_and_the_path_ends_exactly_at_them():
    """Tester F: x1 was cast to x0's dtype: geodesic(f32, f64) gave a float32 path whose last point was not x1, while
    geodesic(f64, f32) gave float64. Both now promote to the common dtype, as the manifold's methods do."""
    x0 = torch.tensor([[0.1, 0.2, 0.3]])
    x1 = torch.tensor([[1 / 3, 2 / 3, 0.1]], dtype=F64)
    for a, b in ((x0, x1), (x1, x0)):
        res = geodesic(Flat(), a, b, n_points=5)
        assert res.path.dtype == F64
        assert torch.equal(res.path[:, 0], a.double()) and torch.equal(res.path[:, -1], b.double())


def test_numpy_float32_options_are_real_numbers():
    """``np.float32`` is a ``numbers.Real``: ``geodesic(delta=np.float32(...))`` was "not a real number"; a
    non-number is a ValueError, as for every scalar option (`checks.check_real`, `metrics.base.check_scalar`)."""
    a, b = (t.unsqueeze(0) for t in (torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)))
    field = FixedSubspaceField(torch.eye(2, dtype=F64)[:, :1])
    ref = geodesic(field, a, b, n_points=5, delta=0.5, lr=0.5)
    got = geodesic(field, a, b, n_points=5, delta=np.float32(0.5), lr=np.float32(0.5))
    torch.testing.assert_close(got.path, ref.path)
    with pytest.raises(ValueError, match="lr must be a real number, got str"):
        geodesic(field, a, b, lr="0.5")
