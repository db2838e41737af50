"""The flows' settings are checked before any work, each with one error naming it (`flow_inputs`, SPEC §6)."""

import re

import pytest
import torch

from learned_manifold import LearnedDataManifold, gradient_flow, interpolate
from learned_manifold.metrics import EuclideanMetric
from tests.conftest import FixedSubspaceField

Q = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).Q
M = LearnedDataManifold(FixedSubspaceField(Q))
X = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


class _Counted:
    """An objective that counts its calls: a refusal before any work never calls it."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return 0.5 * x.pow(2).sum(-1)


@pytest.mark.parametrize("landing", ["no", float("nan"), -1, 1])
def test_landing_that_is_not_a_bool_is_refused_as_the_manifold_refuses_it(landing):
    """``'no'``, ``nan`` and ``-1`` had switched landing on. ``None`` is the flows' default (the manifold's own
    setting, `flow_inputs._landing_of`), not the manifold's."""
    message = re.escape(f"landing must be True, False or None (the default: a LearnedDataManifold's own setting), "
                        f"got {landing!r}")
    f = _Counted()
    with pytest.raises(TypeError, match=message):
        gradient_flow(M, f, X, landing=landing)
    assert f.calls == 0
    with pytest.raises(TypeError, match=message):
        interpolate(M, X, X.flip(0), landing=landing)
    with pytest.raises(TypeError, match=re.escape(f"landing must be True or False, got {landing!r}")):
        LearnedDataManifold(FixedSubspaceField(Q), landing=landing)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_a_step_size_for_an_adaptive_method_is_refused(method):
    """torchdiffeq ignored it: step_size None, 0.5 and 1e-4 gave bit-identical paths with the same evaluations."""
    message = re.escape(f"step_size applies to the fixed-step methods ['euler', 'midpoint', 'rk4']; the adaptive "
                        f"method {method!r} chooses its own steps from rtol/atol")
    f = _Counted()
    with pytest.raises(ValueError, match=message):
        gradient_flow(M, f, X, method=method, step_size=0.5)
    assert f.calls == 0
    with pytest.raises(ValueError, match=message):
        interpolate(M, X, X.flip(0), method=method, step_size=0.5)


@pytest.mark.parametrize("name, value", [("rtol", float("nan")), ("atol", -5.0), ("rtol", "tight"), ("atol", True),
                                         ("rtol", 0.0)])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_tolerances_are_checked_for_fixed_step_methods_as_for_adaptive_ones(name, value, method):
    """A fixed-step method does not use rtol/atol, yet ``nan``, ``-5`` and ``'tight'`` are no tolerances: they were
    accepted there while dopri5 refused each by name."""
    message = re.escape(f"{name} must be a finite number > 0, got {value!r}" if isinstance(value, float) else
                        f"{name} must be a real number, got {type(value).__name__} {value!r}")
    for m in (method, "dopri5"):
        with pytest.raises(ValueError, match=message):
            gradient_flow(M, _Counted(), X, method=m, **{name: value})
        with pytest.raises(ValueError, match=message):
            interpolate(M, X, X.flip(0), method=m, **{name: value})


class _Diagonal(FixedSubspaceField.__mro__[1]):  # a CoMetricField: the constant factor diag(1, 0.6), G = diag(1, 0.36)
    low_rank = True
    dim = 2

    def factor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.diag(torch.tensor([1.0, 0.6], dtype=x.dtype)).expand(x.shape[0], 2, 2).clone()


class _WrongDtype(_Diagonal):
    def factor(self, x: torch.Tensor) -> torch.Tensor:
        return torch.eye(2, dtype=torch.float64).expand(x.shape[0], 2, 2)


def test_a_bare_fields_tangent_dim_is_taken_by_the_flows_length_and_the_gap_rule_warns_without_it():
    x0, x1 = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    dropped = r"metric lengths .* drop an eigenvalue above 0\.25 λ₁ at 64 of 64 points \(up to 0\.36 λ₁\)"
    with pytest.warns(UserWarning, match=dropped):
        short = interpolate(_Diagonal(), x0, x1).metric_length
    full = interpolate(_Diagonal(), x0, x1, tangent_dim=2)
    # the flow's path leaves x0 along −G∇f = (1, 0.36); its length in g = G⁻¹ is at least the straight line's 2.24
    # minus the curve's shortcut, and the first coordinate alone (the gap rule's d = 1) gives the Euclidean 1
    assert abs(float(short) - 1.0) < 1e-3 and float(full.metric_length) > 1.9
    with pytest.raises(ValueError, match="conflicts with the manifold's own tangent_dim=1"):
        interpolate(LearnedDataManifold(_Diagonal(), tangent_dim=1), x0, x1, tangent_dim=2)


def test_a_field_that_breaks_the_factor_contract_is_named_not_called_a_divergence():
    with pytest.raises(ValueError, match=r"^_WrongDtype\.factor returned A of dtype torch\.float64") as err:
        gradient_flow(_WrongDtype(), lambda x: (x ** 2).sum(-1), torch.tensor([[1.0, 1.0]]))
    assert "diverged" not in str(err.value)


def test_gradient_flow_reports_its_length_with_the_tangent_dim_it_is_given():
    # G = diag(1, 0.36), f = |x − (0, 1)|²: the flow moves along e₂ only, which the gap rule (d = 1) drops
    f = lambda x: ((x - torch.tensor([0.0, 1.0])) ** 2).sum(-1)  # noqa: E731
    x0 = torch.tensor([[0.0, 0.0]])
    with pytest.warns(UserWarning, match="keep the gap rule's directions"):
        assert float(gradient_flow(_Diagonal(), f, x0).metric_length) < 1e-6
    full = gradient_flow(_Diagonal(), f, x0, tangent_dim=2)
    through_manifold = gradient_flow(LearnedDataManifold(_Diagonal(), tangent_dim=2), f, x0)
    # the Euclidean path length along e₂ divided by the metric's sqrt(0.36)
    expected = float(full.length) / 0.6
    assert abs(float(full.metric_length) - expected) < 1e-3 * expected
    assert float(through_manifold.metric_length) == pytest.approx(float(full.metric_length), rel=1e-6)


def test_the_reported_length_names_a_broken_factor_instead_of_reading_nan():
    from learned_manifold.flows import polyline_lengths

    path = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    with pytest.raises(ValueError, match=r"^_WrongDtype\.factor returned A of dtype torch\.float64"):
        polyline_lengths(path, _WrongDtype())


def test_numpy_counts_and_numpy_float32_scalars_are_accepted():
    """README and `types.Count`: NumPy integers are counts; ``np.float32`` is a ``numbers.Real``. ``n_points=np.int64``
    was a TypeError ("must be an int"), ``t_end=np.float32`` a TypeError and ``rtol``/``stop_tol`` ValueErrors."""
    import numpy as np

    ref = interpolate(M, X, X.flip(0), n_points=5, t_end=2.0, rtol=1e-4, stop_tol=1e-3)
    got = interpolate(M, X, X.flip(0), n_points=np.int64(5), t_end=np.float32(2.0), rtol=np.float32(1e-4),
                      stop_tol=np.float32(1e-3))
    torch.testing.assert_close(got.path, ref.path)
    flow = gradient_flow(M, _Counted(), X, n_points=np.int32(3), t_end=np.float32(0.5))
    assert flow.path.shape == (2, 3, 4)
    with pytest.raises(TypeError, match="n_points must be an int, got bool"):
        interpolate(M, X, X.flip(0), n_points=True)
    with pytest.raises(ValueError, match="t_end must be a real number, got str"):
        gradient_flow(M, _Counted(), X, t_end="1")


class _Image(FixedSubspaceField.__mro__[1]):  # a CoMetricField in R⁴, G = I: points of data_shape (1, 2, 2)
    dim = 4

    def apply(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return w

    def metric(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v


def test_an_image_objective_gets_one_error_saying_f_receives_flat_points():
    """Tester F: ``f`` receives flat ``(B, D)`` points (documented); an image objective failed with torch's bare
    ``IndexError`` from inside the check at x0."""
    image = LearnedDataManifold(_Image(), data_shape=(1, 2, 2))
    message = re.escape("f failed at x0: f receives flat points of shape (B, D) = (3, 4), D = 4, not in the "
                        "manifold's data_shape (1, 2, 2): reshape them in f, x.view(-1, 1, 2, 2) "
                        "(x.view(-1, *data_shape)); f raised IndexError: ")
    with pytest.raises(ValueError, match=message):
        gradient_flow(image, lambda z: z.sum(dim=(1, 2, 3)), torch.zeros(3, 1, 2, 2))
    res = gradient_flow(image, lambda z: z.view(-1, 1, 2, 2).sum(dim=(1, 2, 3)), torch.zeros(3, 1, 2, 2), n_points=3)
    assert res.path.shape == (3, 3, 1, 2, 2)


def test_flow_paths_come_back_in_the_layout_the_points_were_given():
    """Tester F: on an image manifold flat ``(B, D)`` points gave ``(B, T, *data_shape)`` flow paths (geodesic:
    ``(B, T, D)``; one flat ``(D,)`` point: ``(T, D)``). Flat in, flat out; image-shaped in, image-shaped out."""
    image = LearnedDataManifold(_Image(), data_shape=(1, 2, 2))
    a, b = torch.zeros(2, 4), torch.ones(2, 4)
    assert interpolate(image, a, b, n_points=3).path.shape == (2, 3, 4)
    assert gradient_flow(image, lambda z: z.sum(-1), a, n_points=3).path.shape == (2, 3, 4)
    assert interpolate(image, a[0], b[0], n_points=3).path.shape == (3, 4)
    assert interpolate(image, a.view(2, 1, 2, 2), b.view(2, 1, 2, 2), n_points=3).path.shape == (2, 3, 1, 2, 2)
    assert interpolate(image, a[0].view(1, 2, 2), b[0].view(1, 2, 2), n_points=3).path.shape == (3, 1, 2, 2)


def test_mixed_precision_ends_are_promoted_and_the_path_ends_exactly_at_them():
    """Tester F: x1 was cast to x0's dtype, so interpolate(f32, f64) gave a float32 path aimed at a rounded x1
    (argument order set the precision). Both ends now promote to their common dtype, as the manifold's methods do:
    the path starts exactly at x0 and its gap is measured to the float64 x1."""
    x0 = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    x1 = torch.tensor([[1 / 3, 0.0, 0.0, 0.0]], dtype=torch.float64)
    for a, b in ((x0, x1), (x1.flip(-1).float(), x0.double())):
        res = interpolate(_Image(), a, b, n_points=5)
        assert res.path.dtype == torch.float64 and res.final_gap.dtype == torch.float64
        assert torch.equal(res.path[:, 0], a.double())
        assert torch.equal(res.final_gap, (res.path[:, -1] - b.double()).norm(dim=-1))


@pytest.mark.parametrize("objective, what", [
    (lambda x: (x[:, 0] - 1).log(), r"f\(x0\) is NaN or inf at start points \[1\]"),  # x0[1] outside f's domain
    (lambda x: (x[:, 0] - 0.5).abs().sqrt(), r"the gradient of f at x0 is NaN or inf at start points \[1\]"),
])
def test_a_start_where_f_or_its_gradient_is_not_finite_is_refused_before_any_work(objective, what):
    """``gradient_flow`` promises a finite objective along the flow; a NaN ``f(x0)`` was accepted (and its path
    returned with a NaN ``final_gap``), an infinite gradient at ``x0`` failed only after the solve."""
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return objective(x)

    x0 = torch.tensor([[2.0, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=what):
        gradient_flow(EuclideanMetric(), f, x0, t_end=1.0, n_points=3, method="euler")
    assert calls == [2]  # the check's one call only
