"""Curvature of the data manifold from a co-metric field: second fundamental form, mean and scalar curvature.

SPEC §12. The tangent projector ``P(x)`` is the spectral projector onto the top-``d`` eigenvectors of
``G(x) = A(x) A(x)ᵀ`` (for a field that has converged to the projector, ``G`` itself). For tangent ``u, v``
the second fundamental form is ``II(u, v) = (I − P) (DP(x)[u]) v``, normal-valued. Its derivative needs only
the factor's directional derivative ``Ȧ = DA(x)[u]`` (one double backward pass per batch of directions) and the
eigenpairs ``λ, U`` of ``G``: first-order perturbation of the spectral projector gives, for ``v = e_i`` a
top-``d`` eigenvector,

    II(u, e_i) = Σ_{d < j ≤ r} e_j (e_jᵀ Ġ e_i) / (λ_i − λ_j) + N Ġ e_i / λ_i,    Ġ e_i = Ȧ (Aᵀ e_i) + A (Ȧᵀ e_i),

with ``N = I − U Uᵀ`` the projector onto ``G``'s null space (the eigenvalues ``λ_j = 0``; the ``λ_j`` are the true
eigenvalues, also those ``rel_eps`` cuts: see `DERIVATIVE_EPS`). Only ``D × r``
factors appear: no ``D × D`` matrix is formed. Eigenvalues repeated inside the tangent space (a sphere's) do
not matter; the gap ``λ_d − λ_{d+1}`` must not be zero.

Mean curvature ``H = (1/d) Σ_i II(e_i, e_i)`` and, by the Gauss equation, the scalar curvature
``R = Σ_{i,j} ⟨II(e_i, e_i), II(e_j, e_j)⟩ − ‖II(e_i, e_j)‖²`` over the orthonormal basis ``e_1..e_d``.
Closed forms (tested): the unit ``d``-sphere has ``II(u, v) = −⟨u, v⟩ x`` and ``R = d(d − 1)``; a circle of
radius ``ρ`` has ``‖II(e, e)‖ = 1/ρ``; a torus of radii ``(a, b)`` has ``R = 2 cos v / (b (a + b cos v))``.

A true second fundamental form is symmetric; a learned field's need not be. ``asymmetry`` reports
``‖II(e_i, e_j) − II(e_j, e_i)‖ / ‖II‖`` per point as a check, and ``H`` and ``R`` use the symmetric part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from .checks import as_index, is_real
from .curvature_warnings import (
    CUTOFF_LIMIT,
    MIXED_SHARE,
    NEIGHBOURS_PER_DIM,
    warn_about_mixed_dimensions,
    warn_about_the_kernel,
    warn_about_zero_field,
)
from .dimension import CLUSTER_RATIO, split_ratio, warn_if_dropping, warn_if_splitting
from .func_transforms import refuse_transforms
from .geometry import eigenpairs, global_dimension, intrinsic_dimension
from .landing import ends_off_data
from .metrics.base import CoMetricField, as_field, check_finite_points, check_points
from .metrics.field_checks import autograd_ready
from .precision import full_precision
from .types import Count, FieldLike, Real
from .user_warnings import warn_user

__all__ = ["CLUSTER_RATIO", "CUTOFF_LIMIT", "DERIVATIVE_EPS", "GAP_MIN", "MIXED_SHARE", "NEIGHBOURS_PER_DIM",
           "SPREAD_LIMIT", "Curvature", "curvature", "factor_jvp"]

GAP_MIN = 1e-5
"""Points whose eigengap ``(λ_d − λ_{d+1}) / λ₁`` is at most this have no tangent projector to differentiate (a
sphere asked for ``d = 1``, a rank-1 factor for ``d = 2``): their rows are NaN, with a warning."""

DERIVATIVE_EPS = 1e-6
"""The projector's derivative takes eigenvalues ``≤ DERIVATIVE_EPS · λ₁`` as 0 (``geometry.eigenpairs``' default
for float32 factors; float64 factors default to ``geometry.FLOAT64_CUT`` ≈ 6e-14 there, curvature passes its own;
``≤ rel_eps · λ₁`` where ``rel_eps`` is smaller), whatever a larger ``rel_eps``: their eigenvectors come from
``A V Λ^{-1/2}`` with an error of ``eps · √(λ₁/λ_j)``, and taking ``λ_j`` as 0 changes ``II(·, e_i)`` by a relative
``λ_j / λ_i`` at most. ``rel_eps`` above it decides only the gap and dimension tests: a cut ``λ_j = c`` taken as 0
scaled ``II`` by ``1 − c`` (a unit sphere's field ``(1 − c) P + c I`` read ``R = 2 (1 − c)²`` at
``rel_eps = 0.25``; truth 2)."""

SPREAD_LIMIT = 0.5
"""A batch whose kept eigenvalues ``λ_d / λ₁`` have a median below this gets a warning: `curvature` is the extrinsic
curvature of the tangent distribution and ignores the eigenvalues (SPEC §12), while the metric ``g = G⁺`` stretches
the tangent directions unequally there, so its own (intrinsic) curvature differs. S¹(3)×S²(1) with tangent
eigenvalues 1 and 0.3 (`tangent_dim=3`) reads the embedded R = 2; ``g``'s is 0.6 (tester D). A learned or k-NN
field's tangent eigenvalues differ by noise only (``λ₂/λ₁`` median 0.77 and 0.99 on S², `CLUSTER_RATIO`)."""

@dataclass
class Curvature:
    """The curvature of a field at a batch of ``B`` points with tangent dimension ``d`` (SPEC §12).

    Attributes:
        basis: ``(B, D, d)`` the orthonormal tangent basis ``e_i`` (top-``d`` eigenvectors of ``G``).
        second_form: ``(B, d, d, D)`` ``II(e_i, e_j)`` as computed (row ``i`` differentiates along ``e_i``).
        mean: ``(B, D)`` the mean curvature vector ``H`` (normal-valued).
        scalar: ``(B,)`` the scalar curvature ``R`` (``2K`` on a surface, ``K`` the Gaussian curvature) of the
            embedded tangent distribution with the Euclidean induced metric, by the Gauss equation: the field's
            eigenvalues are ignored (SPEC §12), so it is the Riemannian curvature of the data only where ``G`` is
            close to the tangent projector (eigenvalues ≈ 1, as a trained CDC's), not of the metric ``g = G⁺`` of
            another field (the half-plane's ``G = y² I`` reads 0, its own is −2).
        asymmetry: ``(B,)`` ``‖II − IIᵀ‖ / ‖II‖`` (Frobenius over ``i, j``): 0 for an exact field.
        gap: ``(B,)`` ``(λ_d − λ_{d+1}) / λ_1`` (eigenvalues cut by ``rel_eps`` count as 0): the projector is
            ill-defined where it is near 0.
        dim: the tangent dimension ``d`` used.

    Example:
        >>> import torch
        >>> from learned_manifold import curvature
        >>> from learned_manifold.metrics import CoMetricField
        >>> class Circles(CoMetricField):  # G(x) = t tᵀ, t the unit tangent of the circle about 0 through x
        ...     dim = 2
        ...     def factor(self, x):
        ...         t = torch.stack([-x[:, 1], x[:, 0]], -1) / x.norm(dim=-1, keepdim=True)
        ...         return t.unsqueeze(-1)
        >>> c = curvature(Circles(), torch.tensor([[0.0, 2.0]]), 1)
        >>> c.dim, c.basis.shape, c.second_form.shape
        (1, torch.Size([1, 2, 1]), torch.Size([1, 1, 1, 2]))
        >>> c.mean  # II(e, e) = −x / ρ²: curvature 1/ρ = 0.5, towards the centre
        tensor([[ 0.0000, -0.5000]])
    """

    basis: Tensor
    second_form: Tensor
    mean: Tensor
    scalar: Tensor
    asymmetry: Tensor
    gap: Tensor
    dim: int


@full_precision
@torch.inference_mode(False)
def factor_jvp(field: CoMetricField, x: Tensor, directions: Tensor) -> Tensor:
    """Directional derivatives of the field's factor: ``DA(x)[u_k]`` for ``k = 1..K``, ``(B, K, D, r)``.

    One double backward pass through ``field.factor`` on ``B·K`` points (each point repeated once per
    direction; rows of a factor are independent), so any field whose factor is twice differentiable in reverse
    mode serves (networks; `KNNCDC` with its neighbours held fixed, a truncated kernel: see `CUTOFF_LIMIT`).
    It runs under ``inference_mode(False)`` on copies of ``x`` and ``directions`` (inference mode would switch the
    double backward off and every factor would look constant), and with attention on PyTorch's math kernel
    (`unet.FUSED_ATTENTION_MIN_TOKENS`: the fused kernels have no second derivative), with any autocast switched
    off (`precision.full_precision`).

    A factor with no autograd graph from ``x`` is taken as constant (derivative 0) only where it is: where it
    changes along a direction (`_check_constant`), a ``ValueError`` says that autograd cannot differentiate it.

    Args:
        field: a co-metric field with ``factor``.
        x: ``(B, D)`` points.
        directions: ``(B, D, K)`` directions ``u_k`` as columns.

    Raises:
        ValueError: ``directions`` of the wrong shape; a factor that changes with ``x`` but has no autograd graph
            from it (computed in NumPy, under ``torch.no_grad()``, or detached).
        RuntimeError: a field whose tensors are inference tensors (built or loaded under
            ``torch.inference_mode()``): autograd cannot save them for the double backward.
    """
    b, dim = x.shape
    if directions.ndim != 3 or directions.shape[:2] != (b, dim):
        raise ValueError(f"directions must have shape (B, D, K) = ({b}, {dim}, K) for x of shape {tuple(x.shape)}, "
                         f"got {tuple(directions.shape)}")
    k = directions.shape[-1]
    xs = x.detach().unsqueeze(1).expand(b, k, dim).reshape(b * k, dim).clone().requires_grad_(True)
    us = directions.detach().transpose(1, 2).reshape(b * k, dim).to(x.dtype).clone()
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        try:
            A = field.factor(xs)
        except RuntimeError as err:
            if "Inference tensors cannot be saved for backward" not in str(err):
                raise
            raise RuntimeError(f"{type(field).__name__}: the field's tensors (a network's weights, a KNNCDC's data) "
                               "were made under torch.inference_mode(), and autograd cannot differentiate through "
                               "inference tensors, which the curvature's derivative of the factor needs; build or "
                               "load the field (the LearnedDataManifold, model or KNNCDC) outside "
                               "torch.inference_mode() (calling curvature inside it is fine)") from err
        pullback = None
        if A.requires_grad:
            probe = torch.zeros_like(A, requires_grad=True)
            (pullback,) = torch.autograd.grad(A, xs, probe, create_graph=True, allow_unused=True)
        if pullback is None:  # no graph from x to A: right only for a constant factor (a flat subspace, Euclidean)
            _check_constant(field, xs, us, A.detach())
            return torch.zeros(b, k, *A.shape[1:], dtype=A.dtype, device=A.device)
        (dA,) = torch.autograd.grad(pullback, probe, us, allow_unused=True)
    if dA is None:  # a factor affine in x: its Jacobian does not depend on the probe's graph
        dA = torch.zeros_like(A)
    return dA.reshape(b, k, *A.shape[1:])


@full_precision
def curvature(field: FieldLike, x: Tensor, tangent_dim: Count | None = None, *, rel_eps: Real = 1e-6) -> Curvature:
    """Second fundamental form, mean and scalar curvature of the field's tangent distribution at ``x`` (SPEC §12).

    What it measures: the extrinsic curvature of the ``d``-planes spanned by ``G``'s top eigenvectors, embedded in
    ``R^D`` with the Euclidean induced metric (Gauss equation): the curvature of the data the planes follow. The
    eigenvalues of ``G`` are ignored, so it is also the Riemannian curvature of the metric ``g = G⁺`` only where
    ``G`` is close to the tangent projector (tangent eigenvalues ≈ 1, as a trained CDC's at the data). It is not the
    curvature of the ``g`` that `LearnedDataManifold.inner` uses for a field with other eigenvalues: the half-plane
    ``G = y² I`` reads 0 (its own ``R = −2``), as does any conformal metric on a flat plane. A warning fires where
    the kept eigenvalues are far from equal (`SPREAD_LIMIT`); equal ones that vary from point to point (those two
    examples) are not detected.

    Works under ``torch.no_grad()``, ``torch.inference_mode()`` (it runs under ``inference_mode(False)`` on a
    copy of ``x``; the results are normal tensors) and ``torch.autocast`` (switched off inside,
    `precision.full_precision`: float32 in, float32 out, the same numbers). The results are detached: not
    differentiable with respect to ``x`` or the field's parameters (the factor is evaluated under ``no_grad`` and
    detached, and ``II`` built from one JVP of it); a ``UserWarning`` says so where ``x`` requires grad with grad
    mode on (give ``x.detach()`` where no gradient is expected).

    Args:
        field: a co-metric field with a differentiable ``factor`` (`LearnedCDC`, a closed-form field, ...) or an
            object holding one as ``.field`` (`LearnedDataManifold`: give flat points).
        x: ``(B, D)`` points (on or near the data).
        tangent_dim: the tangent dimension ``d``; default: a `LearnedDataManifold`'s own ``tangent_dim`` where it
            has one, else the median pointwise dimension of the batch by the gap rule (SPEC §5). One ``d`` serves
            the whole batch (a warning when more than `MIXED_SHARE` of the points read another dimension, and
            one where the gap rule drops an eigenvalue above `dimension.DROPPED_LIMIT` ``· λ₁``, a real direction).
            ``d = D`` (data that fill ``R^D``) leaves no normal space: ``II = 0``, ``H = 0``, ``R = 0`` at the points
            whose own gap-rule dimension is ``D``; points that read a lower one (a sphere's, in ``R³``) get NaN
            rows, with a ``RuntimeWarning``.
        rel_eps: eigenvalues ``≤ rel_eps · λ₁`` count as zero in the eigengap (``gap``, the NaN rows, the warnings):
            a tangent eigenvalue cut by it leaves no projector. The projector's derivative uses the eigenvalues
            themselves (SPEC §12; only those ``≤`` `DERIVATIVE_EPS` ``· λ₁`` as 0), so raising ``rel_eps`` to cut
            a field's normal leakage does not bias ``II``.

    Returns:
        `Curvature`.

    Warns:
        UserWarning: points of ``x`` beyond the data the field holds (`landing.ends_off_data`: other units?);
            ``x`` requires grad (grad mode on): no gradient flows back through the results; with
            ``tangent_dim`` not given, the gap rule's ``d`` drops an eigenvalue above `dimension.DROPPED_LIMIT`
            ``· λ₁`` (`dimension.warn_if_dropping`: pass ``tangent_dim``).
        RuntimeWarning: points where the factor is not finite (their rows are NaN); points where ``G = 0`` (no
            tangent directions whatever ``d``: their rows are NaN, and they count neither towards the default ``d``
            nor in the other warnings); points whose eigengap at ``d`` is at most `GAP_MIN` (their rows are NaN);
            ``d = D`` where points read a lower dimension (their rows are NaN); kept eigenvalues far from equal
            (`SPREAD_LIMIT`: the metric's own curvature differs); a ``d`` that splits a cluster of tangent
            eigenvalues (`CLUSTER_RATIO`); a default ``d`` that more than `MIXED_SHARE` of the points do not read;
            a `KNNCDC` whose kernel is truncated (`CUTOFF_LIMIT`) or holds too few effective neighbours
            (`NEIGHBOURS_PER_DIM`).

    Example:
        >>> import torch
        >>> from learned_manifold import curvature
        >>> from learned_manifold.metrics import CoMetricField
        >>> class Spheres(CoMetricField):  # G(x) = I − x̂ x̂ᵀ: tangent projectors of the spheres about 0 in R³
        ...     dim = 3
        ...     def factor(self, x):
        ...         n = x / x.norm(dim=-1, keepdim=True)
        ...         return torch.eye(3) - n.unsqueeze(-1) * n.unsqueeze(-2)
        >>> c = curvature(Spheres(), torch.tensor([[0.0, 0.6, 0.8]]))
        >>> c.dim, round(c.scalar.item(), 4)  # d read by the gap rule; R = d (d − 1) on the unit sphere
        (2, 2.0)
        >>> c.mean  # H = −x
        tensor([[ 0.0000, -0.6000, -0.8000]])

    Raises:
        TypeError / ValueError: ``field`` is not a field or has no low-rank factor; ``x`` is not ``(B, D)``
            floating point or not finite; ``tangent_dim`` is not an integer in ``1..min(r, D)``; the factor changes
            with ``x`` but autograd cannot differentiate it (`factor_jvp`).
        RuntimeError: the field was built or loaded under ``torch.inference_mode()`` and cannot be copied with
            normal tensors (`metrics.field_checks.autograd_ready`; a copyable one is copied for the call, as by
            `geodesic`); called inside a ``torch.func`` transform (`func_transforms.refuse_transforms`).
    """
    refuse_transforms("curvature")
    if isinstance(x, Tensor) and x.requires_grad and torch.is_grad_enabled():  # (outside inference_mode(False),
        # which turns grad mode on): a loss mixing the results in had lost their gradient silently
        warn_user("curvature: x requires grad, but the results are detached (not differentiable with respect "
                  "to x): no gradient flows back through II, H or R; give x.detach() where none is expected")
    return _curvature(field, x, tangent_dim, rel_eps)


@torch.inference_mode(False)
def _curvature(field: FieldLike, x: Tensor, tangent_dim: Count | None, rel_eps: float) -> Curvature:
    """`curvature` under ``inference_mode(False)``."""
    if tangent_dim is None and getattr(field, "field", None) is not None:
        tangent_dim = getattr(field, "tangent_dim", None)  # a LearnedDataManifold's own
    field = as_field(field)
    check_points(x, field.dim)
    check_finite_points(x, "x")
    field = autograd_ready(field, "curvature")  # built under torch.inference_mode(): a copy with normal tensors
    if x.is_inference():
        x = x.clone()  # a normal tensor: the double backward of `factor_jvp` runs outside inference mode
    if not is_real(rel_eps) or not 0 < rel_eps < 1 \
            or not math.isfinite(rel_eps):
        raise ValueError(f"rel_eps must be a number in (0, 1), got {rel_eps!r}")
    dim = tangent_dim
    if dim is not None:
        dim = as_index(dim)  # ints, NumPy integers
        if dim is None:
            raise TypeError(f"tangent_dim must be an integer or None, got {tangent_dim!r}")
    if not field._has_own("factor"):
        raise TypeError("curvature needs a field with a low-rank factor (factor(x) -> A of shape (B, D, r), "
                        f"G = A Aᵀ): {type(field).__name__} has none (its co-metric is matrix-free); use a field "
                        "with one (LearnedCDC, KNNCDC, a closed-form field)")
    with torch.no_grad():  # points in other units than the data had silent answers (`landing.ends_off_data`)
        ends_off_data(field, {"x": x.detach()}, "curvature", "are they in other units than the data (0..1 vs "
                      "0..255, standardised vs raw)? The curvature there is extrapolation without meaning")
        A = field.factor(x).detach()  # a view of a Parameter made under no_grad still requires grad (tester C)
        pairs = eigenpairs(A, rel_eps=min(rel_eps, DERIVATIVE_EPS))  # once: rel_eps's cut is a mask below
    b, n, r = A.shape
    finite = torch.isfinite(A).flatten(1).all(1) if A.numel() else torch.ones(b, dtype=torch.bool, device=A.device)
    if not bool(finite.all()):
        # Every number is read from the tensors before its message is built, here and below: under torch.compile
        # a host sync (a graph break) inside an f-string, after a number that varies between calls, left that
        # number among the pieces the resumed frame joins ("TypeError: sequence item 1: expected str instance, int
        # found", s37; torch 2.13's dynamo).
        count, first = int((~finite).sum()), int((~finite).nonzero()[0])
        warn_user(f"{type(field).__name__}.factor is not finite (NaN or inf) at {count} of {b} "
                  f"point(s) (the first: {first}): their curvature is NaN; no tangent_dim "
                  "helps there (a singular point of the field, e.g. a cone's tip)", RuntimeWarning)
    zero = finite & ~(pairs.values[:, 0] > 0)  # G = 0: no tangent directions (NaN rows, their own warning)
    if dim is None:
        values = pairs.values[finite & ~zero]
        dim = max(1, global_dimension(values)) if values.shape[0] else 1
        if dim < n:  # d = D has its own warning below, and NaN, for the points that read lower
            warn_about_mixed_dimensions(values, dim)
        if dim < r:
            warn_if_dropping(values, dim, "curvature: II, H and R")
    if not 1 <= dim <= min(r, n):
        raise ValueError(f"tangent_dim must be an integer in 1..{min(r, n)} (at most the factor's rank {r} and the "
                         f"ambient dimension {n}), got {dim!r}")
    warn_about_the_kernel(field, x, dim)
    # the gap and dimension tests see rel_eps's cut; the derivative keeps the eigenvalues it cuts (SPEC §12)
    kept = (pairs.vectors.abs().amax(dim=1) > 0) & (pairs.values > rel_eps * pairs.values[:, :1])
    lam = torch.where(kept, pairs.values, 0.0)  # (B, r) descending, cut ones 0
    U = pairs.vectors  # (B, D, r): zero columns only for eigenvalues ≤ min(rel_eps, DERIVATIVE_EPS) · λ₁
    E = U[..., :dim]  # (B, D, d)
    II = A.new_zeros(b, dim, dim, n) if dim == n else _second_form(field, x, A, pairs.values, U, dim)  # d = D
    sym = 0.5 * (II + II.transpose(1, 2))
    diag = torch.diagonal(sym, dim1=1, dim2=2)  # (B, D, d): II(e_i, e_i)
    trace = diag.sum(-1)  # (B, D)
    scalar = (trace * trace).sum(-1) - (sym * sym).sum(dim=(1, 2, 3))
    size = II.flatten(1).norm(dim=1)
    asym = (II - II.transpose(1, 2)).flatten(1).norm(dim=1) / size.clamp_min(torch.finfo(size.dtype).tiny)
    lam_next = lam[:, dim] if dim < r else torch.zeros_like(lam[:, 0])
    gap = (lam[:, dim - 1] - lam_next) / lam[:, 0].clamp_min(torch.finfo(lam.dtype).tiny)
    bad = ~(gap > GAP_MIN) & finite & ~zero  # no projector to differentiate (NaN gaps of a finite factor included)
    mean = trace / dim
    if dim == n:  # "no normal space" holds only where the point itself reads dimension D (a sphere's points do not)
        lower = (intrinsic_dimension(lam) < n) & finite & ~zero
        count = int((lower & ~bad).sum())
        if count:
            warn_user(f"tangent_dim {n} (no normal space: curvature 0) does not fit {count} "
                      f"of {b} point(s), whose eigenvalues read a lower dimension by the gap rule: their "
                      f"curvature is NaN; give such points their own call (or tangent_dim)",
                      RuntimeWarning)
    else:
        lower = torch.zeros_like(bad)
    good = ~(bad | lower | zero) & finite
    spread = (lam[:, dim - 1] / lam[:, 0])[good]
    median_spread = float(spread.median()) if dim > 1 and spread.numel() else None
    if median_spread is not None and median_spread < SPREAD_LIMIT:
        warn_user(f"the kept eigenvalues are far from equal: λ_{dim} / λ₁ is {median_spread:.2g} at the "
                  f"median point (below {SPREAD_LIMIT:g}); curvature is the extrinsic curvature of the tangent "
                  "planes and ignores the eigenvalues (SPEC §12), so it is not the curvature of the metric G⁺, "
                  "which stretches the tangent directions unequally here", RuntimeWarning)
    ratio = split_ratio(lam, dim)[good]  # (`CLUSTER_RATIO`)
    if ratio.numel():
        warn_if_splitting(float(ratio.median()), dim, pairs.values, f"the tangent projector of dimension {dim} follows "
                          "the noise in the field's eigenvalues and its curvature is meaningless",
                          given=tangent_dim is not None)
    if bool(bad.any()):
        count, first = int(bad.sum()), int(bad.nonzero()[0])
        warn_user(f"the eigengap (λ_{dim} − λ_{dim + 1}) / λ₁ is at most {GAP_MIN:g} at {count} of {b} "
                  f"point(s) (the first: {first}): the tangent projector of dimension {dim} is "
                  f"undefined there, so their curvature is NaN; choose another tangent_dim",
                  RuntimeWarning)
    warn_about_zero_field(field, zero)
    bad = bad | lower | zero | ~finite
    if bool(bad.any()):
        nan = torch.tensor(float("nan"), dtype=II.dtype, device=II.device)
        II = torch.where(bad.view(-1, 1, 1, 1), nan, II)
        mean = torch.where(bad.view(-1, 1), nan, mean)
        scalar = torch.where(bad, nan, scalar)
        asym = torch.where(bad, nan, asym)
    return Curvature(basis=E, second_form=II, mean=mean, scalar=scalar, asymmetry=asym, gap=gap, dim=dim)


def _check_constant(field, xs: Tensor, us: Tensor, A: Tensor) -> None:
    """Check that a factor ``A`` ``(n, D, r)`` with no autograd graph from ``xs`` ``(n, D)`` is constant along the
    directions ``us`` ``(n, D)``: ``A(x + h u) = A(x)`` to round-off for a step ``h`` of 10⁻³ of ``|x|`` (at least
    10⁻³). A ``ValueError`` otherwise: its derivative is not 0, and autograd cannot compute it."""
    with torch.no_grad():
        size = xs.abs().amax(-1, keepdim=True).clamp_min(1.0)
        step = 1e-3 * size * us / us.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(us.dtype).tiny)
        moved = field.factor(xs.detach() + step).detach()
    tol = 64 * torch.finfo(A.dtype).eps * (float(A.abs().max()) if A.numel() else 0.0)  # round-off of A's size
    if moved.shape != A.shape or not bool(((moved - A).abs() <= tol).all()):
        raise ValueError("the field's factor changes with x but autograd cannot differentiate it "
                         f"({type(field).__name__}.factor returns a tensor with no gradient path from x: computed "
                         "outside torch, under torch.no_grad(), or detached), so its curvature cannot be computed; "
                         "write factor in differentiable torch operations")


def _second_form(field, x: Tensor, A: Tensor, lam: Tensor, U: Tensor, dim: int) -> Tensor:
    """``II(e_k, e_i)`` ``(B, d, d, D)`` by the perturbation formula (module docstring) from the factor ``A``
    ``(B, D, r)`` and its eigenpairs ``lam`` ``(B, r)``, ``U`` ``(B, D, r)`` at the points ``x`` ``(B, D)``."""
    E = U[..., :dim]  # (B, D, d)
    dA = factor_jvp(field, x, E)  # (B, d, D, r): DA[e_k]
    At_e = A.transpose(1, 2) @ E  # (B, r, d): Aᵀ e_i
    dAt_e = dA.transpose(-1, -2) @ E.unsqueeze(1)  # (B, d, r, d): DA[e_k]ᵀ e_i
    Gdot_e = dA @ At_e.unsqueeze(1) + A.unsqueeze(1) @ dAt_e  # (B, d, D, d): DG[e_k] e_i
    rest, lam_rest = U[..., dim:], lam[:, dim:]  # the other eigenvectors of the range
    lam_t = lam[:, :dim]
    coeff = rest.transpose(1, 2).unsqueeze(1) @ Gdot_e  # (B, d, r-d, d): e_jᵀ DG[e_k] e_i
    denom = lam_t.unsqueeze(1) - lam_rest.unsqueeze(2)  # (B, r-d, d): λ_i − λ_j
    in_range = rest.unsqueeze(1) @ (coeff / denom.unsqueeze(1))  # (B, d, D, d)
    null = Gdot_e - U.unsqueeze(1) @ (U.transpose(1, 2).unsqueeze(1) @ Gdot_e)  # N DG[e_k] e_i
    return (in_range + null / lam_t[:, None, None, :]).permute(0, 1, 3, 2)  # (B, d, d, D): [k, i] = II(e_k, e_i)
