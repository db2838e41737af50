"""Score-based fields against dense Jacobians (torch.func.jacfwd) and the closed forms of Gaussian data."""

import pytest
import torch
from torch import nn

from learned_manifold.metrics.score import ScoreJacobianMetric, SteinScoreMetric, TangentialMetric

F64 = torch.float64
D = 5
SIGMA = 0.3


class TinyDenoiser(nn.Module):
    """``x̂(y, σ) = 0.6 y + 0.2 W₂ tanh(W₁ y + σ)``: smooth, with a non-symmetric Jacobian whose symmetric part
    stays positive definite (``0.6 − 0.2‖W₂‖‖W₁‖ > 0``)."""

    data_shape = (D,)

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = nn.Parameter(torch.randn(8, D, generator=g, dtype=F64) / 4)
        self.w2 = nn.Parameter(torch.randn(D, 8, generator=g, dtype=F64) / 4)

    def denoise(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return 0.6 * y + 0.2 * torch.tanh(y @ self.w1.T + sigma) @ self.w2.T


@pytest.fixture
def model():
    return TinyDenoiser()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 7, D, dtype=F64, generator=g)


def jacobians(fn, x):
    """Per-point dense Jacobians of a point-wise map, one ``jacfwd`` per point: ``(B, D, D)``."""
    return torch.stack([torch.func.jacfwd(lambda p: fn(p.unsqueeze(0)).squeeze(0))(xi) for xi in x])


# ---------------------------------------------------------------- ScoreJacobianMetric


def test_apply_is_symmetrised_jacobian(model, batch):
    x, w, _ = batch
    field = ScoreJacobianMetric(model, SIGMA, delta=0.05)
    J = jacobians(lambda y: model.denoise(y, SIGMA), x)
    assert (J - J.transpose(1, 2)).abs().max() > 1e-3  # the test would not see a missing symmetrisation
    expected = 0.5 * ((J + J.transpose(1, 2)) @ w.unsqueeze(-1)).squeeze(-1) + 0.05 * w
    torch.testing.assert_close(field.apply(x, w), expected)
    torch.testing.assert_close(field.jacobian(x), J)
    torch.testing.assert_close(field.dense(x), 0.5 * (J + J.transpose(1, 2)))
    torch.testing.assert_close(field.project(x), model.denoise(x, SIGMA))
    assert field.can_project and field.centred and field.dim == D


def test_metric_inverts_apply_by_cg(model, batch):
    x, v, _ = batch
    field = ScoreJacobianMetric(model, SIGMA, delta=0.1, cg_tol=1e-12)
    torch.testing.assert_close(field.metric(x, field.apply(x, v)), v)
    torch.testing.assert_close(field.apply(x, field.metric(x, v)), v)
    assert field.metric(x, v).shape == (7, D)


def test_works_under_no_grad(model, batch):
    x, v, _ = batch
    field = ScoreJacobianMetric(model, SIGMA, delta=0.1, cg_tol=1e-12)
    applied, solved = field.apply(x, v), field.metric(x, v)
    with torch.no_grad():
        torch.testing.assert_close(field.apply(x, v), applied)
        torch.testing.assert_close(field.metric(x, v), solved)


def test_metric_needs_delta_and_positive_definiteness(batch):
    x, v, _ = batch
    with pytest.raises(ValueError, match="delta > 0"):
        ScoreJacobianMetric(lambda y, s: 0.5 * y, SIGMA).metric(x, v)
    flipped = ScoreJacobianMetric(lambda y, s: -y, SIGMA, delta=0.5)  # G + δI = −½ I
    with pytest.raises(ValueError, match="not positive definite"):
        flipped.metric(x, v)


def test_gaussian_data_closed_form(batch):
    """x ~ N(0, diag(c)): x̂ = c/(c + σ²) y, G = diag(c/(c + σ²)), s = −y/(c + σ²), J_s = −diag(1/(c + σ²))."""
    x, v, _ = batch
    c = torch.tensor([2.0, 1.0, 0.5, 0.05, 0.001], dtype=F64)
    shrink = c / (c + SIGMA**2)

    def denoiser(y, sigma):
        return c / (c + sigma**2) * y

    jac = ScoreJacobianMetric(denoiser, SIGMA, delta=0.02, cg_tol=1e-12)
    torch.testing.assert_close(jac.dense(x), torch.diag(shrink).expand(7, D, D))
    torch.testing.assert_close(jac.metric(x, v), v / (shrink + 0.02))
    score = -x / (c + SIGMA**2)
    stein = SteinScoreMetric(denoiser, SIGMA, lam=3.0)
    torch.testing.assert_close(stein.score(x), score)
    torch.testing.assert_close(stein.metric(x, v), v + 3.0 * (score * v).sum(-1, keepdim=True) * score)
    tangential = TangentialMetric(denoiser, SIGMA, eps=0.7, cg_tol=1e-12)
    torch.testing.assert_close(tangential.metric(x, v), ((c + SIGMA**2) ** -2 + 0.7) * v)
    torch.testing.assert_close(tangential.apply(x, v), v / ((c + SIGMA**2) ** -2 + 0.7))


def test_denoiser_module_follows_to(batch):
    x, w, _ = batch
    model = TinyDenoiser().float()
    field = ScoreJacobianMetric(model, SIGMA)
    assert field.model is model and set(field.state_dict()) == {"model.w1", "model.w2"}
    field.double()
    assert model.w1.dtype == F64
    assert field.apply(x, w).dtype == F64


# ---------------------------------------------------------------- SteinScoreMetric


@pytest.mark.parametrize("delta", [0.0, 0.3])
def test_stein_cometric_inverts_metric(model, batch, delta):
    x, v, _ = batch
    lam = 50.0
    field = SteinScoreMetric(model, SIGMA, lam=lam, delta=delta)
    s = (model.denoise(x, SIGMA) - x) / SIGMA**2
    eye = torch.eye(D, dtype=F64)
    M = eye + lam * s.unsqueeze(-1) * s.unsqueeze(-2)
    torch.testing.assert_close(field.dense(x), torch.linalg.inv(M))
    metric_cols = torch.stack([field.metric(x, eye[i].expand(7, D)) for i in range(D)], -1)
    torch.testing.assert_close(metric_cols, torch.linalg.inv(torch.linalg.inv(M) + delta * eye))
    cometric_cols = torch.stack([field.apply(x, eye[i].expand(7, D)) for i in range(D)], -1)
    torch.testing.assert_close(cometric_cols @ metric_cols, eye.expand(7, D, D))
    if delta == 0.0:
        torch.testing.assert_close(field.metric(x, v), v + lam * (s * v).sum(-1, keepdim=True) * s)
    assert field.centred and field.can_project and not field.low_rank


def test_stein_large_lambda_is_stable(batch):
    x, v, _ = batch
    field = SteinScoreMetric(lambda y, s: 0.0 * y, 0.01, lam=1e12)  # λ‖s‖² ≈ 1e20
    s = -x / 0.01**2
    torch.testing.assert_close(field.metric(x, v), v + 1e12 * (s * v).sum(-1, keepdim=True) * s)
    expected = (v * s).sum(-1) / (1 + 1e12 * (s * s).sum(-1))  # ⟨s, G v⟩ = ⟨s, v⟩ / (1 + λ‖s‖²)
    torch.testing.assert_close((field.apply(x, v) * s).sum(-1), expected)


# ---------------------------------------------------------------- TangentialMetric


def test_tangential_inner_and_inverse(model, batch):
    x, v, _ = batch
    field = TangentialMetric(model, SIGMA, cg_tol=1e-12)
    assert field.eps == pytest.approx(1 / SIGMA**2) and field.delta == 0.0
    Js = jacobians(lambda y: (model.denoise(y, SIGMA) - y) / SIGMA**2, x)
    expected = (Js @ v.unsqueeze(-1)).pow(2).sum((1, 2)) + field.eps * (v * v).sum(-1)
    torch.testing.assert_close(field.inner(x, v, v), expected)
    torch.testing.assert_close(field.apply(x, field.metric(x, v)), v)
    torch.testing.assert_close(field.metric(x, field.apply(x, v)), v)
    with torch.no_grad():
        torch.testing.assert_close(field.apply(x, field.metric(x, v)), v)


class SphereDenoiser(nn.Module):
    """The exact σ → 0 denoiser of a sphere of radius ``c`` about ``centre``, with the data scale ``c``."""

    def __init__(self, c: float, centre: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor(c, dtype=F64))
        self.c, self.centre = c, centre

    def denoise(self, y, sigma):
        return self.centre + self.c * torch.nn.functional.normalize(y - self.centre, dim=-1)


def test_the_default_tangential_regulariser_is_unit_free():
    """Normals cost ``1 + s²/σ²`` times tangents whatever the units: the same sphere and σ in thousandths, units
    and thousands give the same ratio (``ε = 1/σ²`` alone gave 1e8, 101 and 1.0001)."""
    ratios = []
    for c in (1e-3, 1.0, 1e3):
        field = TangentialMetric(SphereDenoiser(c, 5 * c), 0.1 * c)
        assert field.length_scale() == c
        x = torch.tensor([[5 * c, 5 * c, 6 * c]], dtype=F64)  # on the sphere about (5c, 5c, 5c), normal e_z
        tangent, normal = torch.tensor([[1.0, 0.0, 0.0]], dtype=F64), torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
        ratios.append(float(field.inner(x, normal, normal) / field.inner(x, tangent, tangent)))
    assert ratios == pytest.approx([101.0] * 3, rel=1e-6)


# ---------------------------------------------------------------- shared input checks


FIELDS = [
    lambda m: ScoreJacobianMetric(m, SIGMA, delta=0.1),
    lambda m: SteinScoreMetric(m, SIGMA),
    lambda m: TangentialMetric(m, SIGMA),
]


@pytest.mark.parametrize("make", FIELDS)
def test_shapes_and_bad_inputs(model, batch, make):
    field = make(model)
    x, v, _ = batch
    assert field.apply(x, v).shape == field.metric(x, v).shape == (7, D)
    with pytest.raises(ValueError, match="shape"):
        field.apply(x[0], v[0])
    with pytest.raises(ValueError, match="batch size"):
        field.metric(x, v[:3])
    with pytest.raises(ValueError, match="D = 5"):
        field.apply(x[:, :4], v[:, :4])


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ScoreJacobianMetric, {"delta": -1.0}, "delta"),
        (ScoreJacobianMetric, {"cg_iters": 0}, "cg_iters"),
        (TangentialMetric, {"eps": 0.0}, "eps"),
        (TangentialMetric, {"cg_tol": -1e-3}, "cg_tol"),
        (SteinScoreMetric, {"lam": float("nan")}, "lam"),
    ],
)
def test_bad_settings_raise(model, cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(model, SIGMA, **kwargs)
    with pytest.raises(ValueError, match="sigma"):
        cls(model, 0.0)
    with pytest.raises(TypeError, match="denoiser"):
        cls(42, SIGMA)


@pytest.mark.parametrize("cls", [ScoreJacobianMetric, SteinScoreMetric, TangentialMetric])
@pytest.mark.parametrize("bad", ["extra_column", "scalar_per_point"])
def test_denoiser_with_the_wrong_output_shape_is_named(batch, cls, bad):
    """A denoiser returning (B, D + 1) or (B,) fails with one ValueError naming it and the shapes (issue 13),
    not deep inside broadcasting."""

    def extra_column(y, sigma):
        return torch.cat([y, y[:, :1]], dim=1)

    def scalar_per_point(y, sigma):
        return y.sum(-1)

    field = cls({"extra_column": extra_column, "scalar_per_point": scalar_per_point}[bad], 0.1)
    x = batch[0]  # (7, D)
    with pytest.raises(ValueError, match=f"denoiser '{bad}'.*same shape"):
        field.apply(x, torch.ones_like(x))
    with pytest.raises(ValueError, match=f"denoiser '{bad}'"):
        field.project(x)


@pytest.mark.parametrize("cls", [ScoreJacobianMetric, SteinScoreMetric, TangentialMetric])
def test_fields_on_a_trained_model_take_float64_and_empty_batches(sphere_model, cls):
    """As LearnedCDC does: points of another dtype are computed in the model's and returned in theirs, and a batch
    of none gives none (before: "mat1 and mat2 must have the same dtype", "cannot reshape tensor of 0 elements")."""
    field = cls(sphere_model, 0.1, **({} if cls is TangentialMetric else {"delta": 0.01}))
    x = torch.nn.functional.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    out64 = field.apply(x.double(), x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), field.apply(x, x), rtol=1e-4, atol=1e-5)
    assert field.apply(x[:0], x[:0]).shape == (0, 3)


@pytest.mark.parametrize("make", [lambda m: ScoreJacobianMetric(m, SIGMA, delta=0.1),
                                  lambda m: TangentialMetric(m, SIGMA), lambda m: SteinScoreMetric(m, SIGMA)])
def test_one_point_broadcast_against_several_vectors(model, batch, make):
    """A point expanded against several vectors (rows sharing memory, as `LearnedDataManifold` broadcasts) gives
    each row the answer of the point on its own; torch.func refused such a primal before."""
    from learned_manifold import LearnedDataManifold

    field = make(model)
    x, v, _ = batch
    one = x[:1].expand(7, D)
    torch.testing.assert_close(field.apply(one, v), field.apply(x[:1].repeat(7, 1), v))
    manifold = LearnedDataManifold(field, data_shape=(D,))
    torch.testing.assert_close(manifold.egrad2rgrad(x[0], v), field.apply(x[:1].repeat(7, 1), v))


def test_conjugate_gradients_out_of_iterations_say_so(model, batch):
    x, v, _ = batch
    with pytest.warns(RuntimeWarning, match=r"stopped after cg_iters=2 iterations .* relative residual up to"):
        TangentialMetric(model, SIGMA, cg_iters=2).apply(x, v)
    TangentialMetric(model, SIGMA, cg_iters=100).apply(x, v)  # converged: no warning (warnings are errors here)


def test_vectors_of_another_dtype_than_the_points_are_named(model, batch):
    x, v, _ = batch
    with pytest.raises(ValueError, match="w has dtype torch.float32 but x has torch.float64"):
        ScoreJacobianMetric(model, SIGMA, delta=0.1).apply(x, v.float())


@pytest.mark.parametrize("cls", [ScoreJacobianMetric, SteinScoreMetric, TangentialMetric])
def test_a_model_without_a_denoiser_is_refused_at_construction(cls):
    from learned_manifold import MetricModel, ModelConfig

    uncentred = MetricModel(ModelConfig(data_shape=(3,), rank=2, centred=False,
                                        arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8}))
    with pytest.raises(ValueError, match="needs a denoiser, and this model was trained without one"):
        cls(uncentred, 0.1)


# ---------------------------------------------------------------- units of the Stein default, gradients in x


class ScaledCircle:
    """The posterior mean of the circle of radius ``scale`` at small σ (its projection), with a data scale."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.scale * y / y.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("scale", [1e-2, 1.0, 1e2])
def test_stein_default_lam_gives_the_same_geometry_in_any_units(scale):
    """λ has units of length²: the default is 1000 s², so the normal/tangent cost ratio 1 + 1000 (s‖score‖)²
    is the same for the same circle in any units (a fixed 1000 gave 4001 at s = 1 and 1.4 at s = 100)."""
    field = SteinScoreMetric(ScaledCircle(scale), 0.1 * scale)
    assert field.lam == pytest.approx(1000.0 * scale**2)
    y = torch.tensor([[0.0, 1.02 * scale]], dtype=F64)  # 0.2 σ off the circle: ‖score‖ = 0.02 s / (0.1 s)²
    n, t = torch.tensor([[0.0, 1.0]], dtype=F64), torch.tensor([[1.0, 0.0]], dtype=F64)
    ratio = field.inner(y, n, n) / field.inner(y, t, t)
    torch.testing.assert_close(ratio, torch.tensor([1 + 1000 * 2.0**2], dtype=F64))
    assert SteinScoreMetric(ScaledCircle(scale), 0.1 * scale, lam=3.0).lam == 3.0  # an explicit λ as given


class LayerNormDenoiser(nn.Module):
    """A film_mlp-like block ``x̂(y) = y + W₂ SiLU(LayerNorm(W₁ y + σ))``: LayerNorm is where a reverse-mode
    derivative of ``torch.func.jvp`` went wrong (torch 2.13)."""

    data_shape = (3,)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = nn.Linear(3, 8).double()
        self.norm = nn.LayerNorm(8).double()
        self.outer = nn.Linear(8, 3).double()
        with torch.no_grad():
            self.norm.weight.normal_()
            self.norm.bias.normal_()

    def denoise(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return y + 0.3 * self.outer(nn.functional.silu(self.norm(self.inner(y) + sigma)))


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_gradients_in_x_through_a_layernorm_denoiser_match_finite_differences(which, frozen):
    """d/dx of ``ScoreJacobianMetric.apply(x, w)`` and ``TangentialMetric.metric(x, v)`` by autograd (gradcheck's
    central differences, float64): the JVP through LayerNorm used to give the wrong sign and size."""
    model = LayerNormDenoiser().requires_grad_(not frozen)
    field = ScoreJacobianMetric(model, SIGMA) if which == "score_jacobian_apply" else TangentialMetric(model, SIGMA)
    call = field.apply if which == "score_jacobian_apply" else field.metric
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, dtype=F64, generator=g).requires_grad_()
    w = torch.randn(2, 3, dtype=F64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: call(x, w), (x, w), eps=1e-6, atol=1e-7)
    with torch.no_grad():  # the fast forward-mode JVP where no graph is wanted: the same values
        fast = call(x, w)
    torch.testing.assert_close(call(x, w).detach(), fast)


def test_a_callers_autocast_does_not_change_the_fields(model):
    """Inside ``torch.autocast('cpu', bfloat16)`` float32 points give float32 answers equal to those outside (the
    denoiser's matmuls had run in bf16: Stein and Tangential changed by 1–2%)."""
    denoiser = model.float()
    x, w = torch.randn(4, D), torch.randn(4, D)
    fields = [ScoreJacobianMetric(denoiser, SIGMA, delta=0.1), SteinScoreMetric(denoiser, SIGMA),
              TangentialMetric(denoiser, SIGMA)]
    for field in fields:
        for name in ("apply", "metric", "inner", "project"):
            args = (x,) if name == "project" else (x, w, w) if name == "inner" else (x, w)
            plain = getattr(field, name)(*args)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                inside = getattr(field, name)(*args)
            assert inside.dtype == torch.float32, (type(field).__name__, name)
            torch.testing.assert_close(inside, plain, atol=0, rtol=0, msg=f"{type(field).__name__}.{name}")


class NoisyDenoiser(nn.Module):
    """``x̂ = y + 0.1 net(y)`` with a dropout or BatchNorm layer: random or batch-dependent in train mode."""

    data_shape = (3,)

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 32), layer, nn.Tanh(), nn.Linear(32, 3)).double()

    def forward(self, y: torch.Tensor, sigma: float) -> torch.Tensor:
        return y + 0.1 * self.net(y)


@pytest.mark.parametrize("cls", [ScoreJacobianMetric, SteinScoreMetric, TangentialMetric])
def test_a_denoiser_module_is_used_in_eval_mode_whatever_train_is_called_on(cls):
    """A denoiser module in train mode (a new module's default) made the fields random and non-symmetric (dropout:
    the JVP and the VJP drew different masks), batch-dependent with mutated running statistics, or a torch.func
    crash (BatchNorm; tester C). The field puts it in eval mode and keeps it there across ``.train()``."""
    g = torch.Generator().manual_seed(2)
    x, w = torch.randn(8, 3, generator=g, dtype=F64), torch.randn(8, 3, generator=g, dtype=F64)
    kwargs = {"delta": 0.01} if cls is ScoreJacobianMetric else {}
    dropout, norm = NoisyDenoiser(nn.Dropout(0.5)), NoisyDenoiser(nn.BatchNorm1d(32))
    fields = [cls(dropout, SIGMA, **kwargs), cls(norm, SIGMA, **kwargs)]
    for field in fields:
        field.train()
        nn.Sequential(field).train()  # a user module holding the field, at the start of an epoch
        assert field.training and not field.model.training
    running = norm.net[1].running_mean.clone()
    for field in fields:
        torch.testing.assert_close(field.apply(x, w), field.apply(x, w), atol=0, rtol=0)
        torch.testing.assert_close(field.apply(x[:2], w[:2]), field.apply(x, w)[:2], atol=1e-12, rtol=0)
        G = field.dense(x[:2])
        torch.testing.assert_close(G, G.transpose(-1, -2), atol=1e-10, rtol=0)
    torch.testing.assert_close(norm.net[1].running_mean, running, atol=0, rtol=0)
