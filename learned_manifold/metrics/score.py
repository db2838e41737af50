"""Score-based baselines of SPEC §7, all built on a denoiser ``x̂(y, σ)`` and its Tweedie score.

The score at bandwidth ``σ`` is ``s(y) = (x̂(y, σ) − y) / σ²`` (Tweedie), so ``∂x̂/∂y = Cov[x | y]/σ²`` is the
mean-centred CDC (SPEC §2) and ``J_s = ∂s/∂y = (∂x̂/∂y − I)/σ²``.

* `ScoreJacobianMetric` (Kharitenko et al. 2025): ``G = ½(J + Jᵀ)``, ``J = ∂x̂/∂y``, by one JVP and one VJP.
* `SteinScoreMetric` (Azeglio & Di Bernardo 2025): metric ``I + λ s sᵀ``, co-metric by Sherman–Morrison.
* `TangentialMetric` (Saito & Matsubara 2025): metric ``J_sᵀ J_s + εI``, by one JVP and one VJP.

The denoiser must act point by point (row ``b`` of its output depends on row ``b`` of its input only: no
batch statistics) and be traceable by ``torch.func`` (no ``.item()``, no NumPy). Jacobians are never formed
(except by `ScoreJacobianMetric.jacobian`, for tests); JVPs and VJPs are batched over the points.
``torch.func`` transforms ignore an outer ``torch.no_grad()``, so the fields work inside optimiser steps.
A denoiser that is an ``nn.Module`` is put in eval mode and kept there, as `LearnedCDC`'s network is
(`_DenoiserField`). ``metric`` solves run batched conjugate gradients (`conjugate_gradients.batched_cg`), which
also run under ``torch.func.vmap`` over the vectors at fixed points. Derivatives of every order (autograd, double
backward, ``torch.func`` forward and reverse mode), in the points, the vectors and the weights of the denoiser
however it is given, match finite differences: where one may be taken, ``layer_norm`` runs in elementary operations
(`_DenoiserField._linearise`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from ..func_transforms import differentiating, unwrapped
from ..precision import full_precision
from ..torch_quirks import load_forward_ad
from .base import CoMetricField, as_denoiser, check_count, check_points, check_scalar, check_vectors
from .conjugate_gradients import LinearMap, batched_cg

__all__ = ["ScoreJacobianMetric", "SteinScoreMetric", "TangentialMetric"]


def _layer_norm(x: Tensor, normalized_shape: tuple[int, ...], weight: Tensor | None = None,
                bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """`torch.nn.functional.layer_norm` in elementary operations (mean, ``rsqrt``), whose derivatives of every
    order autograd gets right: ``(B, ..., *normalized_shape)`` → same shape."""
    dims = tuple(range(-len(normalized_shape), 0))
    centred = x - x.mean(dims, keepdim=True)
    out = centred * torch.rsqrt(centred.pow(2).mean(dims, keepdim=True) + eps)
    out = out if weight is None else out * weight
    return out if bias is None else out + bias


class _ExplicitLayerNorm(TorchFunctionMode):
    """Within it, ``F.layer_norm`` (hence ``nn.LayerNorm``) runs as `_layer_norm` (see `_DenoiserField._linearise`)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is nn.functional.layer_norm:
            return _layer_norm(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


class _DenoiserField(CoMetricField):
    """Shared part of the score-based fields: the denoiser at a fixed ``σ``, the score and the landing map.

    A denoiser that is an ``nn.Module`` is registered as the submodule ``model`` (so ``.to()`` moves it);
    any other callable is kept as is. The module is put in eval mode **in place** (the very module given, not a
    copy), as `LearnedCDC` does, and stays there whatever ``.train()`` is called on (the field, a
    `LearnedDataManifold` or a user module holding it, `train`): in train mode dropout made ``G`` random and
    non-symmetric (the JVP and the VJP drew different masks), and BatchNorm made a point's answer depend on its
    batch mates, updated the module's running statistics on every query, and crashed ``torch.func``. Its
    parameters keep their ``requires_grad`` (a geometry may be differentiated in them); a ``.train()`` on the
    denoiser itself turns train mode back on for the field too.
    """

    def __init__(self, denoiser: object, sigma: float) -> None:
        super().__init__()
        as_denoiser(denoiser)  # fail early (TypeError) on something that cannot denoise
        if getattr(denoiser, "has_denoiser", True) is False:
            raise ValueError(f"{type(self).__name__} needs a denoiser, and this model was trained without one "
                             "(uncentred, centred=False): train a mean-centred model (the default)")
        self.model = denoiser.eval() if isinstance(denoiser, nn.Module) else None  # no dropout, batch statistics
        self._callable = None if isinstance(denoiser, nn.Module) else denoiser
        self.sigma = check_scalar(sigma, "sigma")
        shape = tuple(getattr(denoiser, "data_shape", ()) or ())
        self.dim = math.prod(shape) if shape else None

    def train(self, mode: bool = True) -> _DenoiserField:
        """`torch.nn.Module.train` for the field's other submodules; the denoiser module stays in eval mode."""
        super().train(mode)
        if self.model is not None:
            self.model.eval()
        return self

    def length_scale(self) -> float | None:
        """The data scale ``s`` of the denoiser (a `MetricModel`'s, SPEC §1: any denoiser with a positive scalar
        attribute ``scale``), else ``None``."""
        scale = getattr(self.model if self.model is not None else self._callable, "scale", None)
        if isinstance(scale, Tensor) and scale.numel() == 1:
            scale = float(scale)
        return float(scale) if isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0 else None

    @full_precision
    def denoise(self, y: Tensor) -> Tensor:
        """Posterior mean ``x̂(y, σ)`` at the field's ``σ``: ``(B, D)`` → ``(B, D)``."""
        return self.denoise_at(y, self.sigma)

    @full_precision
    def denoise_at(self, y: Tensor, sigma: float) -> Tensor:
        """Posterior mean ``x̂(y, s)`` at any bandwidth ``s`` (e.g. an annealed landing): ``(B, D)`` → ``(B, D)``.

        Raises:
            ValueError: naming the denoiser, if its output does not have the shape of ``y``.
        """
        denoiser = self.model if self.model is not None else self._callable
        out = as_denoiser(denoiser)(y, sigma)
        if not isinstance(out, Tensor) or out.shape != y.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            name = getattr(denoiser, "__name__", type(denoiser).__name__)
            raise ValueError(
                f"the denoiser {name!r} must map points (B, D) = {tuple(y.shape)} to the same shape, got {got}"
            )
        return out

    @full_precision
    def score(self, y: Tensor) -> Tensor:
        """Tweedie score ``s(y) = (x̂(y, σ) − y) / σ²``: ``(B, D)`` → ``(B, D)``."""
        return (self.denoise(y) - y) / self.sigma**2

    @full_precision
    def project(self, x: Tensor) -> Tensor:
        """Landing projection ``x̂(x, σ)`` (Kharitenko et al. 2025; SPEC §6): ``(B, D)`` → ``(B, D)``."""
        check_points(x, self.dim)
        return self.denoise(x)

    @property
    def can_project(self) -> bool:
        """``True``: `project` is the denoiser."""
        return True

    def _linearise(self, fn: LinearMap, x: Tensor) -> tuple[LinearMap, LinearMap]:
        """Batched ``t ↦ J t`` and ``c ↦ Jᵀ c`` for ``J = ∂fn/∂y`` at ``x`` (``fn`` point-wise).

        The VJP's forward pass is run once here and reused by every call (e.g. every CG iteration). ``x`` is made
        contiguous first: ``torch.func`` refuses a primal whose rows share memory (one point broadcast by
        ``expand`` against several vectors, as `LearnedDataManifold` does).

        ``J t`` is a forward-mode JVP, ``Jᵀ c`` a reverse-mode VJP. Where the result may be differentiated
        (`_derivatives_wanted`) both run with ``layer_norm`` written out in elementary operations
        (`_ExplicitLayerNorm`): in torch 2.13 the derivatives of the fused layer norm's JVP and of its backward
        (reverse mode, forward mode, double backward) are wrong, by 0.5 on a gradient of norm 1 and up to 57% on
        a Hessian-vector product, and the film_mlp blocks use LayerNorm. Elsewhere (no grad and no differentiating
        transform, e.g. ``vmap`` over the vectors under ``no_grad``) the fused kernel runs: the fast path.
        """
        x = x.contiguous()
        explicit = self._derivatives_wanted(x)  # once per linearisation, not per CG iteration
        if explicit:
            with _ExplicitLayerNorm():
                _, vjp_fn = torch.func.vjp(fn, x)
        else:
            _, vjp_fn = torch.func.vjp(fn, x)

        load_forward_ad()

        def jvp(t: Tensor) -> Tensor:
            if explicit or (unwrapped(t).requires_grad and torch.is_grad_enabled()):  # vmap hides requires_grad
                with _ExplicitLayerNorm():
                    return torch.func.jvp(fn, (x,), (t,))[1]
            return torch.func.jvp(fn, (x,), (t,))[1]

        def vjp(c: Tensor) -> Tensor:
            return vjp_fn(c)[0]

        return jvp, vjp

    def _derivatives_wanted(self, x: Tensor) -> bool:
        """Whether a result computed from the points ``x`` may be differentiated in ``x`` or in the denoiser's
        weights, so that `_linearise` must avoid the fused layer norm: under a transform that differentiates
        (`func_transforms.differentiating`: ``grad``, ``jacrev``, ``vjp``, ``jvp``, ``jacfwd`` or a ``forward_ad``
        level, grad mode or not; ``vmap`` alone derives nothing), or with grad mode on and ``x`` (under its ``vmap``
        wrappers: `func_transforms.unwrapped`) or a parameter of the denoiser's module requiring grad. The module
        is ``model``, or the owner of a bound-method denoiser (``model.denoise``); any other callable may close over
        trainable tensors that cannot be seen from here, so with grad mode on it counts as wanting derivatives
        (tester B: its parameter gradients had been 10–52% off). That route costs about 15% more per ``apply``;
        ``no_grad`` calls run the fused kernel, also under ``vmap``."""
        if differentiating():
            return True
        if not torch.is_grad_enabled():
            return False
        if unwrapped(x).requires_grad:  # a batched tensor under vmap reports requires_grad=False
            return True
        owner = self.model if self.model is not None else getattr(self._callable, "__self__", None)
        if isinstance(owner, nn.Module):
            return any(p.requires_grad for p in owner.parameters())
        return True

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, delta={self.delta}"


class ScoreJacobianMetric(_DenoiserField):
    """Score-Jacobian / Tweedie co-metric ``G = ½(J + Jᵀ)``, ``J = ∂x̂/∂y`` (SPEC §2, §7).

    By Tweedie ``J = Cov[x | y]/σ²`` is the mean-centred CDC, symmetric for an exact denoiser; a learned one
    is symmetrised. ``apply`` costs one JVP and one VJP of the denoiser, never a Jacobian. ``metric`` solves
    ``(G + δI) u = v`` by batched conjugate gradients and therefore needs ``δ > 0``: ``G`` is singular on
    the data (a near-projector) and, for a learned denoiser, need not be positive semi-definite; CG raises a
    ``ValueError`` where ``G + δI`` turns out not to be positive definite.

    Args:
        denoiser: a model with ``denoise(y, sigma)`` or a callable ``x̂(y (B, D), sigma: float) -> (B, D)``.
        sigma: bandwidth ``σ > 0`` in data units.
        delta: isotropic part ``δ ≥ 0`` (``metric`` needs ``δ > 0``).
        cg_iters: maximum CG iterations per ``metric`` call.
        cg_tol: relative residual at which CG stops.

    Attributes:
        centred: ``True``. low_rank: ``False``. dim: ``prod(denoiser.data_shape)`` if known, else ``None``.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import ScoreJacobianMetric
        >>> def to_sphere(y, sigma):  # posterior mean of data on the unit sphere, as sigma -> 0: the projection
        ...     return y / y.norm(dim=-1, keepdim=True)
        >>> field = ScoreJacobianMetric(to_sphere, sigma=0.01, delta=0.01)
        >>> x = torch.tensor([[0.0, 0.0, 1.0]])
        >>> field.apply(x, torch.tensor([[1.0, 1.0, 1.0]]))  # G = I − xxᵀ at x on the sphere, plus δI
        tensor([[1.0100, 1.0100, 0.0100]])
    """

    centred = True

    def __init__(
        self, denoiser: object, sigma: float, *, delta: float = 0.0, cg_iters: int = 100, cg_tol: float = 1e-6
    ) -> None:
        super().__init__(denoiser, sigma)
        self.delta = check_scalar(delta, "delta", allow_zero=True)
        self.cg_iters = check_count(cg_iters, "cg_iters")
        self.cg_tol = check_scalar(cg_tol, "cg_tol")

    def _operator(self, x: Tensor) -> LinearMap:
        """``w ↦ (½(J + Jᵀ) + δI) w`` at ``x``."""
        jvp, vjp = self._linearise(self.denoise, x)
        delta = self.delta

        def op(w: Tensor) -> Tensor:
            out = 0.5 * (jvp(w) + vjp(w))
            return out + delta * w if delta else out

        return op

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``(½(J + Jᵀ) + δI) w`` by one JVP and one VJP: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, w, self.dim, "w")
        return self._operator(x)(w)

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(½(J + Jᵀ) + δI)^{-1} v`` by batched CG: ``(B, D)``, ``(B, D)`` → ``(B, D)``.

        Raises:
            ValueError: if ``δ = 0``, or if ``G + δI`` is not positive definite at some point.
        """
        check_vectors(x, v, self.dim, "v")
        if self.delta <= 0:
            raise ValueError(
                "ScoreJacobianMetric.metric solves (G + delta I) u = v by conjugate gradients and needs "
                "delta > 0 (G is singular on the data); construct the field with delta > 0"
            )
        return batched_cg(self._operator(x), v, iters=self.cg_iters, tol=self.cg_tol)

    @full_precision
    def jacobian(self, y: Tensor) -> Tensor:
        """Dense, unsymmetrised ``J = ∂x̂/∂y`` per point by ``torch.func.jacfwd``: ``(B, D)`` → ``(B, D, D)``.

        Small ``D`` only (tests and plots); the denoiser must also work under ``torch.func.vmap``.
        """
        check_points(y, self.dim, "y")

        def single(point: Tensor) -> Tensor:
            return self.denoise(point.unsqueeze(0)).squeeze(0)

        return torch.func.vmap(torch.func.jacfwd(single))(y)


class SteinScoreMetric(_DenoiserField):
    """Stein score metric ``M = I + λ s sᵀ`` (Azeglio & Di Bernardo 2025; SPEC §7), in closed form.

    Convention: the co-metric is ``G = M^{-1} = I − c s sᵀ`` with ``c = λ / (1 + λ‖s‖²)``
    (Sherman–Morrison) and, as for every field, ``apply(x, w) = (G + δI) w`` and
    ``metric(x, v) = (G + δI)^{-1} v``. For ``δ = 0``, ``metric`` is ``M v = v + λ⟨s, v⟩ s``; for ``δ > 0``,
    Sherman–Morrison on ``(1 + δ)I − c s sᵀ`` gives ``(v + λ⟨s, v⟩ s / (1 + δ(1 + λ‖s‖²))) / (1 + δ)``.
    It penalises one normal direction only (the score's). ``λ`` has units of length² (SPEC §1:
    ``λ_x = scale² λ_z``), so the default is the paper's 1000 (for data of unit scale) times ``s²``, ``s`` the
    data's scale (`length_scale`: a model's; 1 for a denoiser without one), as `TangentialMetric` scales its
    default ``ε``: the normal/tangent cost ratio ``1 + λ‖s_score‖²`` is then the same in any units (a fixed
    1000 gave 4001 for a circle of radius 1 and 1.4 for the same circle of radius 100). One denoiser call per
    ``apply`` or ``metric``.

    Args:
        denoiser: a model with ``denoise(y, sigma)`` or a callable ``x̂(y (B, D), sigma: float) -> (B, D)``.
        sigma: bandwidth ``σ > 0`` in data units.
        lam: weight ``λ ≥ 0`` of the score direction, in data units² and used as given; ``None`` (default)
            means ``1000 s²`` (the paper's 1000 in units of the data's scale), fixed at construction.
        delta: isotropic part ``δ ≥ 0``.

    Attributes:
        centred: ``True`` (it penalises leaving the data along the score, fit for paths). low_rank: ``False``.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import SteinScoreMetric
        >>> def to_sphere(y, sigma):
        ...     return y / y.norm(dim=-1, keepdim=True)
        >>> field = SteinScoreMetric(to_sphere, sigma=0.1, lam=1000.0)
        >>> y = torch.tensor([[0.0, 0.0, 1.01]])  # off the sphere: the score (0, 0, −1) points back along the normal
        >>> field.metric(y, torch.tensor([[1.0, 0.0, 0.0]])), field.metric(y, torch.tensor([[0.0, 0.0, 1.0]])).round()
        (tensor([[1., 0., 0.]]), tensor([[   0.,    0., 1001.]]))
    """

    centred = True

    LAM_UNIT = 1000.0
    """The default ``λ`` in units of the data's scale squared (Azeglio & Di Bernardo's 1000 for unit-scale data)."""

    def __init__(self, denoiser: object, sigma: float, *, lam: float | None = None, delta: float = 0.0) -> None:
        super().__init__(denoiser, sigma)
        scale = self.length_scale() or 1.0
        self.lam = self.LAM_UNIT * scale**2 if lam is None else check_scalar(lam, "lam", allow_zero=True)
        self.delta = check_scalar(delta, "delta", allow_zero=True)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``(1 + δ) w − c⟨s, w⟩ s`` with ``c = λ/(1 + λ‖s‖²)``: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, w, self.dim, "w")
        s = self.score(x)
        c = self.lam / (1 + self.lam * (s * s).sum(-1, keepdim=True))
        return (1 + self.delta) * w - c * (s * w).sum(-1, keepdim=True) * s

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(v + λ⟨s, v⟩ s / (1 + δ(1 + λ‖s‖²))) / (1 + δ)``: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, v, self.dim, "v")
        s = self.score(x)
        c = self.lam / (1 + self.delta * (1 + self.lam * (s * s).sum(-1, keepdim=True)))
        return (v + c * (s * v).sum(-1, keepdim=True) * s) / (1 + self.delta)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, lam={self.lam}, delta={self.delta}"


class TangentialMetric(_DenoiserField):
    """Pullback metric ``M = J_sᵀ J_s + εI``, ``J_s = ∂s/∂y``: "Be Tangential" (Saito & Matsubara; SPEC §7).

    Near the data ``J_s ≈ −P_N/σ²``, so ``M`` is about ``1/σ⁴ + ε`` along normals and ``ε`` along tangents.
    ``metric(x, v) = (J_sᵀJ_s + εI) v`` is native (one JVP and one VJP of the score);
    ``apply(x, w) = M^{-1} w`` by batched conjugate gradients (``M`` is positive definite for ``ε > 0``).
    In the protocol's terms ``G := (J_sᵀJ_s + εI)^{-1}`` and ``δ = 0``: ``ε`` is the regulariser.

    The default ``ε = 1/(σ² s²)``, ``s`` the data's scale (`length_scale`: a model's; 1 for a denoiser without
    one), makes normal directions ``≈ 1 + s²/σ²`` times dearer than tangent ones in any units (``J_sᵀJ_s`` has
    units of 1/length⁴; ``ε = 1/σ²`` alone had given a Euclidean metric for data in thousandths and a condition
    number of 1e8 for data in thousands), like ``G + δI`` with ``δ ≈ (σ/s)²`` for the CDC fields, and keeps
    CG's condition number near ``1 + s²/σ²``. Note the scale: the tangent eigenvalues of ``G`` are
    ``≈ 1/ε = σ² s²``, not 1, so step sizes of gradient flows with this field are ``≈ σ² s²`` times those of
    the CDC fields.

    Args:
        denoiser: a model with ``denoise(y, sigma)`` or a callable ``x̂(y (B, D), sigma: float) -> (B, D)``.
        sigma: bandwidth ``σ > 0`` in data units.
        eps: ``ε > 0`` (units of 1/length⁴); ``None`` (default) means ``1/(σ² s²)``, fixed at construction.
        cg_iters: maximum CG iterations per ``apply`` call.
        cg_tol: relative residual at which CG stops.

    Attributes:
        centred: ``True``. low_rank: ``False``. delta: ``0``.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import TangentialMetric
        >>> def to_sphere(y, sigma):
        ...     return y / y.norm(dim=-1, keepdim=True)
        >>> field = TangentialMetric(to_sphere, sigma=0.1)  # eps = 1/(sigma s)² = 100 (no scale: s = 1)
        >>> x = torch.tensor([[0.0, 0.0, 1.0]])
        >>> field.metric(x, torch.tensor([[1.0, 0.0, 1.0]]))  # tangent: eps; normal: 1/sigma⁴ + eps
        tensor([[  100.,     0., 10100.]])
    """

    centred = True

    def __init__(
        self,
        denoiser: object,
        sigma: float,
        *,
        eps: float | None = None,
        cg_iters: int = 100,
        cg_tol: float = 1e-6,
    ) -> None:
        super().__init__(denoiser, sigma)
        scale = self.length_scale() or 1.0
        self.eps = 1.0 / (self.sigma * scale) ** 2 if eps is None else check_scalar(eps, "eps")
        self.cg_iters = check_count(cg_iters, "cg_iters")
        self.cg_tol = check_scalar(cg_tol, "cg_tol")

    def _operator(self, x: Tensor) -> LinearMap:
        """``v ↦ (J_sᵀ J_s + εI) v`` at ``x``."""
        jvp, vjp = self._linearise(self.score, x)
        eps = self.eps

        def op(v: Tensor) -> Tensor:
            return vjp(jvp(v)) + eps * v

        return op

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``(J_sᵀ J_s + εI) v`` by one JVP and one VJP of the score: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, v, self.dim, "v")
        return self._operator(x)(v)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``(J_sᵀ J_s + εI)^{-1} w`` by batched CG: ``(B, D)``, ``(B, D)`` → ``(B, D)``."""
        check_vectors(x, w, self.dim, "w")
        return batched_cg(self._operator(x), w, iters=self.cg_iters, tol=self.cg_tol)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, eps={self.eps}"
