"""Derivatives of the score-based fields through a LayerNorm denoiser (SPEC §7), against finite differences in float64.

torch's fused layer norm has wrong derivatives of its JVP and of its backward (torch 2.13), so the fields run
``layer_norm`` in elementary operations wherever a result may be differentiated (`_DenoiserField._linearise`).
"""

import pytest
import torch

import learned_manifold.metrics.score as score
from learned_manifold.metrics.score import ScoreJacobianMetric, TangentialMetric
from tests.learned_manifold.metrics.test_score import LayerNormDenoiser  # x̂ = y + 0.3 W₂ silu(LN(W₁ y + σ))

F64 = torch.float64
SIGMA = 0.3


def field_call(which: str, denoiser: object):
    """``(x, w) ↦ ScoreJacobianMetric.apply`` or ``TangentialMetric.metric`` on ``denoiser``."""
    if which == "score_jacobian_apply":
        return ScoreJacobianMetric(denoiser, SIGMA).apply
    return TangentialMetric(denoiser, SIGMA).metric


def points():
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 3, dtype=F64, generator=g), torch.randn(2, 3, dtype=F64, generator=g)


@pytest.mark.parametrize("given_as", ["lambda", "bound_method"])
@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_parameter_gradients_with_a_callable_denoiser_match_finite_differences(which, given_as):
    """A denoiser given as a callable over a trainable module (``lambda y, s: net.denoise(y, s)``, or the bound
    method ``net.denoise``), with plain points: the gradient of ``‖field(x, w)‖²`` in the module's weights is the
    finite-difference one, as for the module itself (tester B: 10–52% off, since only the parameters of a denoiser
    given as a module were seen); central differences along a random direction of each weight tensor."""
    net = LayerNormDenoiser()
    denoiser = (lambda y, s: net.denoise(y, s)) if given_as == "lambda" else net.denoise
    call = field_call(which, denoiser)
    x, w = points()
    call(x, w).pow(2).sum().backward()
    g, h = torch.Generator().manual_seed(4), 1e-6
    for name, p in net.named_parameters():  # the derivative along a random direction of each weight tensor
        direction = torch.randn(p.shape, dtype=F64, generator=g)
        with torch.no_grad():
            p += h * direction
            up = call(x, w).pow(2).sum()
            p -= 2 * h * direction
            down = call(x, w).pow(2).sum()
            p += h * direction
        fd = (up - down) / (2 * h)
        torch.testing.assert_close((p.grad * direction).sum(), fd, atol=1e-9, rtol=1e-6, msg=name)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_second_derivatives_in_the_points_pass_gradgradcheck(which, frozen):
    """Double backward of ``ScoreJacobianMetric.apply`` / ``TangentialMetric.metric`` in ``(x, w)`` matches finite
    differences of the first derivatives (tester B: Hessian-vector products 10–57% off, as the VJP half ran the
    fused layer norm); for a denoiser module with trainable and with frozen weights."""
    call = field_call(which, LayerNormDenoiser().requires_grad_(not frozen))
    x, w = (t.requires_grad_() for t in points())
    assert torch.autograd.gradgradcheck(lambda x, w: call(x, w), (x, w), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_forward_mode_derivatives_in_the_points_equal_reverse_mode(which):
    """``torch.func.jacfwd`` of the field in ``x`` equals ``jacrev`` (which gradcheck verifies), and a
    forward-over-reverse Hessian-vector product ``jvp(grad(L))`` equals double backward (forward mode through the
    fused layer norm's JVP and backward was 50% off)."""
    call = field_call(which, LayerNormDenoiser().requires_grad_(False))
    x, w = points()
    forward = torch.func.jacfwd(lambda x: call(x, w))(x)
    reverse = torch.func.jacrev(lambda x: call(x, w))(x)
    assert forward.abs().max() > 1e-5  # not trivially zero
    torch.testing.assert_close(forward, reverse, atol=1e-12, rtol=1e-8)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return call(x, w).pow(2).sum()

    t = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    over = torch.func.jvp(torch.func.grad(loss), (x,), (t,))[1]
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(loss(xr), xr, create_graph=True)
    (double,) = torch.autograd.grad((g * t).sum(), xr)
    torch.testing.assert_close(over, double, atol=1e-12, rtol=1e-8)


def explicit_entries(monkeypatch) -> list[int]:
    """A one-element counter of the entries into `_ExplicitLayerNorm` (the differentiable, slower route)."""
    entered = [0]
    enter = score._ExplicitLayerNorm.__enter__

    def spy(self):
        entered[0] += 1
        return enter(self)

    monkeypatch.setattr(score._ExplicitLayerNorm, "__enter__", spy)
    return entered


@pytest.mark.parametrize("given_as", ["module", "lambda"])
@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_calls_that_derive_nothing_run_the_fused_layer_norm(which, given_as, monkeypatch):
    """Under ``no_grad``, also with ``torch.func.vmap`` over the vectors at fixed points (a batching transform that
    derives nothing), the fields never enter the explicit layer norm and give the differentiable route's values;
    with ``x`` requiring grad they do enter it (review finding 4: any transform, ``vmap`` too, had left the fast
    path)."""
    net = LayerNormDenoiser()
    call = field_call(which, net if given_as == "module" else lambda y, s: net.denoise(y, s))
    x, w = points()
    W = torch.stack([w, 2 * w, -w])
    entered = explicit_entries(monkeypatch)
    with torch.no_grad():
        fast = call(x, w)
        fast_vmapped = torch.func.vmap(lambda v: call(x, v))(W)
    assert entered[0] == 0
    slow = call(x.clone().requires_grad_(), w).detach()
    assert entered[0] > 0
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast_vmapped, torch.stack([call(x, v).detach() for v in W]), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("batched", ["points", "vectors"])
@pytest.mark.parametrize("which", ["score_jacobian_apply", "tangential_metric"])
def test_autograd_through_vmap_takes_the_differentiable_route(which, batched):
    """With a frozen denoiser, autograd through ``torch.func.vmap`` over the points (or the vectors) that require
    grad gives the gradient of the same call without ``vmap`` (a batched tensor reports ``requires_grad=False``, so
    the fields look under its wrapper: the fused layer norm's derivatives would be wrong here)."""
    call = field_call(which, LayerNormDenoiser().requires_grad_(False))
    x, w = points()
    W = torch.stack([w, 2 * w - 1])

    def loss(x: torch.Tensor, W: torch.Tensor, mapped: bool) -> torch.Tensor:
        if not mapped:
            return torch.stack([call(x, v) for v in W]).pow(3).sum()
        if batched == "vectors":
            return torch.func.vmap(lambda v: call(x, v))(W).pow(3).sum()
        return sum(torch.func.vmap(lambda y, v: call(y.unsqueeze(0), v.unsqueeze(0)))(x, v).pow(3).sum() for v in W)

    grads = []
    for mapped in (False, True):
        inputs = (x.clone().requires_grad_(), W.clone().requires_grad_())
        grads.append(torch.autograd.grad(loss(*inputs, mapped), inputs))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-12, rtol=1e-10)
