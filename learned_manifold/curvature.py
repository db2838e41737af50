"""Curvature of the data manifold from a co-metric field: second fundamental form, mean and scalar curvature.

SPEC §12. The tangent projector ``P(x)`` is the spectral projector onto the top-``d`` eigenvectors of
``G(x) = A(x) A(x)ᵀ`` (for a field that has converged to the projector, ``G`` itself). For tangent ``u, v``
the second fundamental form is ``II(u, v) = (I − P) (DP(x)[u]) v``, normal-valued. Its derivative needs only
the factor's directional derivative ``Ȧ = DA(x)[u]`` (one double backward pass per batch of directions) and the
eigenpairs ``λ, U`` of ``G``: first-order perturbation of the spectral projector gives, for ``v = e_i`` a
top-``d`` eigenvector,

    II(u, e_i) = Σ_{d < j ≤ r} e_j (e_jᵀ Ġ e_i) / (λ_i − λ_j) + N Ġ e_i / λ_i,    Ġ e_i = Ȧ (Aᵀ e_i) + A (Ȧᵀ e_i),

with ``N = I − U Uᵀ`` the projector onto ``G``'s null space (the eigenvalues ``λ_j = 0``). Only ``D × r``
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
import operator
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from .geometry import eigenpairs, global_dimension
from .metrics.base import as_field, check_finite_points, check_points

__all__ = ["CUTOFF_LIMIT", "GAP_MIN", "Curvature", "curvature", "factor_jvp"]

GAP_MIN = 1e-5
"""Points whose eigengap ``(λ_d − λ_{d+1}) / λ₁`` is at most this have no tangent projector to differentiate (a
sphere asked for ``d = 1``, a rank-1 factor for ``d = 2``): their rows are NaN, with a warning."""

CUTOFF_LIMIT = 1e-4
"""A field that reports ``cutoff_weight`` (`KNNCDC`: its ``k``-th neighbour's kernel weight relative to the
nearest's) above this at the median point gets a warning: its curvature is biased low."""


@dataclass
class Curvature:
    """The curvature of a field at a batch of ``B`` points with tangent dimension ``d`` (SPEC §12).

    Attributes:
        basis: ``(B, D, d)`` the orthonormal tangent basis ``e_i`` (top-``d`` eigenvectors of ``G``).
        second_form: ``(B, d, d, D)`` ``II(e_i, e_j)`` as computed (row ``i`` differentiates along ``e_i``).
        mean: ``(B, D)`` the mean curvature vector ``H`` (normal-valued).
        scalar: ``(B,)`` the scalar curvature ``R`` (``2K`` on a surface, ``K`` the Gaussian curvature).
        asymmetry: ``(B,)`` ``‖II − IIᵀ‖ / ‖II‖`` (Frobenius over ``i, j``): 0 for an exact field.
        gap: ``(B,)`` ``(λ_d − λ_{d+1}) / λ_1``: the projector is ill-defined where it is near 0.
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


def factor_jvp(field, x: Tensor, directions: Tensor) -> Tensor:
    """Directional derivatives of the field's factor: ``DA(x)[u_k]`` for ``k = 1..K``, ``(B, K, D, r)``.

    One double backward pass through ``field.factor`` on ``B·K`` points (each point repeated once per
    direction; rows of a factor are independent), so any field whose factor is twice differentiable in reverse
    mode serves (networks; `KNNCDC` with its neighbours held fixed, a truncated kernel: see `CUTOFF_LIMIT`).

    Args:
        field: a co-metric field with ``factor``.
        x: ``(B, D)`` points.
        directions: ``(B, D, K)`` directions ``u_k`` as columns.
    """
    b, dim = x.shape
    if directions.ndim != 3 or directions.shape[:2] != (b, dim):
        raise ValueError(f"directions must have shape (B, D, K) = ({b}, {dim}, K) for x of shape {tuple(x.shape)}, "
                         f"got {tuple(directions.shape)}")
    k = directions.shape[-1]
    xs = x.detach().unsqueeze(1).expand(b, k, dim).reshape(b * k, dim).requires_grad_(True)
    us = directions.transpose(1, 2).reshape(b * k, dim).detach().to(x.dtype)
    with torch.enable_grad():
        A = field.factor(xs)
        if not A.requires_grad:  # a factor that does not depend on x (a flat subspace, the Euclidean metric)
            return torch.zeros(b, k, *A.shape[1:], dtype=A.dtype, device=A.device)
        probe = torch.zeros_like(A, requires_grad=True)
        (pullback,) = torch.autograd.grad(A, xs, probe, create_graph=True, allow_unused=True)
        if pullback is None:
            return torch.zeros(b, k, *A.shape[1:], dtype=A.dtype, device=A.device)
        (dA,) = torch.autograd.grad(pullback, probe, us, allow_unused=True)
    if dA is None:  # a factor affine in x: its Jacobian does not depend on the probe's graph
        dA = torch.zeros_like(A)
    return dA.reshape(b, k, *A.shape[1:])


def curvature(field, x: Tensor, tangent_dim: int | None = None, *, rel_eps: float = 1e-6) -> Curvature:
    """Second fundamental form, mean and scalar curvature of ``field``'s geometry at ``x`` (SPEC §12).

    Args:
        field: a co-metric field with a differentiable ``factor`` (`LearnedCDC`, a closed-form field, ...) or an
            object holding one as ``.field`` (`LearnedDataManifold`: give flat points).
        x: ``(B, D)`` points (on or near the data).
        tangent_dim: the tangent dimension ``d``; default: the median pointwise dimension of the batch by the gap
            rule (SPEC §5). One ``d`` serves the whole batch.
        rel_eps: eigenvalues ``≤ rel_eps · λ₁`` count as zero (`geometry.eigenpairs`).

    Returns:
        `Curvature`.

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
        TypeError / ValueError: ``field`` is not a field; ``x`` is not ``(B, D)`` floating point or not finite;
            ``tangent_dim`` is not an integer in ``1..min(r, D − 1)``.
    """
    field = as_field(field)
    check_points(x, field.dim)
    check_finite_points(x, "x")
    if isinstance(rel_eps, bool) or not isinstance(rel_eps, (int, float)) or not 0 < rel_eps < 1 \
            or not math.isfinite(rel_eps):
        raise ValueError(f"rel_eps must be a number in (0, 1), got {rel_eps!r}")
    dim = tangent_dim
    if dim is not None:
        try:
            dim = operator.index(dim) if not isinstance(dim, bool) else None  # ints, NumPy integers
        except TypeError:
            dim = None
        if dim is None:
            raise ValueError(f"tangent_dim must be an integer or None, got {tangent_dim!r}")
    with torch.no_grad():
        A = field.factor(x)
        pairs = eigenpairs(A, rel_eps=rel_eps)
    b, n, r = A.shape
    if dim is None:
        dim = global_dimension(pairs.values) if b else 1
        if dim > min(r, n - 1):
            raise ValueError(f"the gap rule reads dimension {dim} here (the median over the batch), which leaves no "
                             f"normal direction in R^{n} with a factor of rank {r}: give tangent_dim")
    if not 1 <= dim <= min(r, n - 1):
        raise ValueError(f"tangent_dim must be an integer in 1..{min(r, n - 1)} (at most the factor's rank {r} and "
                         f"below the ambient dimension {n}), got {dim!r}")
    cutoff = getattr(field, "cutoff_weight", None)
    if callable(cutoff) and b:
        weight = float(cutoff(x).median())
        if weight > CUTOFF_LIMIT:
            warnings.warn(f"{type(field).__name__}: the k-th neighbour still carries {weight:.2g} of the nearest's "
                          f"kernel weight (median point), so the field is a truncated kernel whose tangent planes "
                          f"turn too little as x moves: its curvature is biased low; raise k or lower sigma until "
                          f"cutoff_weight is below {CUTOFF_LIMIT:g}", RuntimeWarning, stacklevel=2)
    lam, U = pairs.values, pairs.vectors  # (B, r) descending, (B, D, r): zero columns for zero eigenvalues
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
    II = (in_range + null / lam_t[:, None, None, :]).permute(0, 1, 3, 2)  # (B, d, d, D): [k, i] = II(e_k, e_i)
    sym = 0.5 * (II + II.transpose(1, 2))
    diag = torch.diagonal(sym, dim1=1, dim2=2)  # (B, D, d): II(e_i, e_i)
    trace = diag.sum(-1)  # (B, D)
    scalar = (trace * trace).sum(-1) - (sym * sym).sum(dim=(1, 2, 3))
    size = II.flatten(1).norm(dim=1)
    asym = (II - II.transpose(1, 2)).flatten(1).norm(dim=1) / size.clamp_min(torch.finfo(size.dtype).tiny)
    lam_next = lam[:, dim] if dim < r else torch.zeros_like(lam[:, 0])
    gap = (lam[:, dim - 1] - lam_next) / lam[:, 0].clamp_min(torch.finfo(lam.dtype).tiny)
    bad = ~(gap > GAP_MIN)  # no projector to differentiate (NaN gaps included)
    mean = trace / dim
    if bool(bad.any()):
        warnings.warn(f"the eigengap (λ_{dim} − λ_{dim + 1}) / λ₁ is at most {GAP_MIN:g} at {int(bad.sum())} of {b} "
                      f"point(s) (the first: {int(bad.nonzero()[0])}): the tangent projector of dimension {dim} is "
                      f"undefined there, so their curvature is NaN; choose another tangent_dim",
                      RuntimeWarning, stacklevel=2)
        nan = torch.tensor(float("nan"), dtype=II.dtype, device=II.device)
        II = torch.where(bad.view(-1, 1, 1, 1), nan, II)
        mean = torch.where(bad.view(-1, 1), nan, mean)
        scalar = torch.where(bad, nan, scalar)
        asym = torch.where(bad, nan, asym)
    return Curvature(basis=E, second_form=II, mean=mean, scalar=scalar, asymmetry=asym, gap=gap, dim=dim)
