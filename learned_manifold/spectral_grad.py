"""Exact autograd through the Gram's eigen-decomposition where eigenvalues tie (SPEC §5, `geometry.eigenpairs`).

`geometry.eigenpairs` builds ``U = A W Λ^{-1/2}`` from the eigenpairs ``S = AᵀA = W Λ Wᵀ`` of the ``r × r`` Gram.
``torch.linalg.eigh``'s backward divides by ``λ_i − λ_j``: where two eigenvalues are exactly equal (any projector
or orthonormal-frame field, e.g. the sphere's ``G = I − n̂n̂ᵀ``) it gives ``0 / 0 = NaN``, although what the
library returns (the projector ``U_d U_dᵀ``, ``U_d Λ_d^{±1} U_dᵀ``) is smooth there. The gradient path (taken only
when a gradient or a forward-mode tangent flows to ``A``, `geometry.eigenpairs`; the values are the same) has two
parts, the same in reverse and forward mode (`_TieSafeEigh.backward`, `_TieSafeEigh.jvp`):

1. `tie_safe_eigh`: ``eigh`` whose derivative drops the rotation terms ``(Wᵀ dS W)_ij / (λ_j − λ_i)`` of the
   pairs tied within rounding (`_tie_factors`: ``|λ_i − λ_j| ≤`` `tie_eps` ``· max(λ_i, λ_j)``, the factor's own
   rounding, which splits an exact tie of a float32 factor by ~1e-8 relatively, or ``≤`` `FLOAT64_CUT` ``· λ₁``,
   the float64 Gram's). Their rotation term is ``(rounding of the gradient) / (λ_i − λ_j)``; the Gram itself is
   decomposed in float64, so such a pair's eigenvectors are determined, but a quantity that is invariant under
   rotations of the pair loses nothing by dropping it.
2. The eigenvalue-dependent parts are built from ``M = WᵀSW`` (``r × r``), which equals ``Λ`` in value but whose
   derivative carries the within-block terms the dropped rotation had: ``dM = Wᵀ dS W + [Λ, Ω]`` with ``dW = W Ω``,
   so ``dM_ij = (Wᵀ dS W)_ij`` for a dropped pair and 0 for the others (``dM_ii = dλ_i``). `within_terms` gives
   ``E = M − Λ`` with its value set to exactly 0; a function ``g`` of the kept block is
   ``g(Λ) + L_g(Λ)[E]``, with ``L_g(Λ)[E]_ij = g[λ_i, λ_j] E_ij`` the Daleckii–Krein derivative at a diagonal
   matrix (the divided difference ``(g(λ_i) − g(λ_j)) / (λ_i − λ_j)``, ``g′(λ_i)`` on the diagonal): never
   singular for ``g(λ) = λ^{-1/2}`` (``−x_i x_j / (y_i + y_j)``, ``y = √λ``, ``x = 1/y``), ``λ^{-1}``
   (``−1/(λ_i λ_j)``) and ``λ`` (1).

Why it is exact: ``F(A, W) = A W g(WᵀAᵀAW) Wᵀ Aᵀ`` (``U Uᵀ`` with ``g = λ^{-1}``, ``U Λ^{±1} Uᵀ`` with
``g = 1, λ^{-2}``, each restricted to the kept top-``d`` columns) is unchanged by ``W → W Q`` for any rotation ``Q``
of the columns that mixes only columns on the same side of ``d`` (``g(Qᵀ M Q) = Qᵀ g(M) Q``). The dropped terms
are such a rotation, so they contribute nothing to ``dF``, and every other term is the true derivative. The
individual eigenvectors of a tied pair (``Eigenpairs.vectors``) lose that part of their derivative; ``F``'s is
exact. A tied pair that straddles ``d`` or `eigenpairs`' keep cut (relative gap ``≤ 256 ε``, float32: ``3e-5``)
loses its rotation term, which nothing puts back: the projector's derivative there is of order ``1 / gap``, and
the gradient is finite but not that derivative. Pairs with a larger relative gap keep their rotation term (a kept
``1.6e-5 λ₁`` beside a dropped ``2.5e-7 λ₁`` had counted as tied under the former absolute test ``≤ 256 ε λ₁``:
float32 gradients 3–5% off). Second derivatives are exact where no pair is dropped (then ``E ≡ 0``).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["FLOAT64_CUT", "TIES_IN_EPS", "tie_eps", "tie_safe_eigh", "within_terms", "inverse_sqrt_matrix",
           "power_matrix", "scale_coords"]

TIES_IN_EPS = 256
"""Eigenvalues closer than ``TIES_IN_EPS · ε · max(λ_i, λ_j)`` count as tied (`tie_eps`)."""

FLOAT64_CUT = TIES_IN_EPS * torch.finfo(torch.float64).eps
"""`geometry.eigenpairs`' default cut for a float64 factor, relative to ``λ₁`` (about ``6e-14``): the float64 Gram's
own rounding. Eigenvalues above it are resolved; their eigenvectors are accurate to about ``ε₆₄ λ₁ / λ``."""


def tie_eps(dtype: torch.dtype) -> float:
    """How close, relative to the larger of the two, two eigenvalues of the Gram of a factor of ``dtype`` count as
    tied: ``256 ε`` of ``dtype`` (float32 at least; float64: ``6e-14``, float32: ``3e-5``). Rounding the factor to
    ``dtype`` splits an exact tie (a float32 sphere projector: ``1e-8``) by about that much, and the rotation term,
    ``(rounding of the gradient) / (λ_i − λ_j)``, had made float32 gradients wrong by O(1)."""
    return TIES_IN_EPS * torch.finfo(torch.promote_types(dtype, torch.float32)).eps


def _tie_factors(values: Tensor, eps: float) -> Tensor:
    """``F_ij = 1 / (λ_j − λ_i)`` for the pairs that are not tied, 0 for the tied ones and the diagonal:
    ``(B, r)`` → ``(B, r, r)``. Tied: ``|λ_i − λ_j| ≤ eps · max(|λ_i|, |λ_j|)`` (relative: distinct small eigenvalues,
    such as a kept ``1.6e-5 λ₁`` and a dropped ``2.5e-7 λ₁`` in float32, are not) or ``≤`` `FLOAT64_CUT` ``· λ₁``
    (below the float64 Gram's rounding)."""
    diff = values.unsqueeze(-2) - values.unsqueeze(-1)  # λ_j − λ_i
    larger = torch.maximum(values.abs().unsqueeze(-2), values.abs().unsqueeze(-1))
    top = values.abs().amax(-1, keepdim=True).unsqueeze(-1)
    tied = (diff.abs() <= eps * larger) | (diff.abs() <= FLOAT64_CUT * top)
    return torch.where(tied, torch.zeros_like(diff), 1.0 / torch.where(tied, torch.ones_like(diff), diff))


class _TieSafeEigh(torch.autograd.Function):
    """``torch.linalg.eigh`` (ascending, through `geometry._small_eigh`) whose derivatives drop tied pairs."""

    @staticmethod
    def forward(S: Tensor, eps: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        from .geometry import _small_eigh

        return _small_eigh(S)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        values, vectors = output
        ctx.save_for_backward(values, vectors)
        ctx.save_for_forward(values, vectors)
        ctx.eps = inputs[1]

    @staticmethod
    def backward(ctx, grad_values: Tensor | None, grad_vectors: Tensor | None  # type: ignore[override]
                 ) -> tuple[Tensor, None]:
        """``gS = W (diag(gλ) + F ∘ skew(Wᵀ gW)) Wᵀ``, symmetric (``eigh``'s formula with ``F`` from
        `_tie_factors`); written in differentiable operations, so double backward works."""
        values, W = ctx.saved_tensors
        inner = torch.zeros_like(W)
        if grad_vectors is not None:
            wg = W.transpose(-1, -2) @ grad_vectors
            inner = _tie_factors(values, ctx.eps) * (wg - wg.transpose(-1, -2)) / 2
        if grad_values is not None:
            inner = inner + torch.diag_embed(grad_values)
        return W @ inner @ W.transpose(-1, -2), None

    @staticmethod
    def jvp(ctx, dS: Tensor, _: None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """``dλ = diag(Wᵀ dS W)``, ``dW = W (F ∘ Wᵀ dS W)``."""
        values, W = ctx.saved_tensors
        rotated = W.transpose(-1, -2) @ dS @ W
        return rotated.diagonal(dim1=-2, dim2=-1), W @ (_tie_factors(values, ctx.eps) * rotated)

    @staticmethod
    def vmap(info, in_dims: tuple, S: Tensor, eps: float) -> tuple[tuple[Tensor, Tensor], tuple]:  # type: ignore[override]
        """Every formula above is batched over the leading axes: the vmapped axis goes first."""
        axis = in_dims[0]
        if axis is None:
            return _TieSafeEigh.apply(S, eps), (None, None)
        return _TieSafeEigh.apply(S.movedim(axis, 0), eps), (0, 0)


def tie_safe_eigh(S: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``(B, r)`` ascending and eigenvectors ``(B, r, r)`` of symmetric ``S`` ``(B, r, r)``, as
    ``torch.linalg.eigh``, with derivatives that are finite where eigenvalues tie (`_tie_factors` with ``eps`` the
    `tie_eps` of the factor's dtype; module docstring)."""
    values, vectors = _TieSafeEigh.apply(S, eps)
    return values, vectors


def within_terms(S: Tensor, values: Tensor, vectors: Tensor, keep: Tensor) -> Tensor:
    """``E = WᵀSW − Λ`` on the kept columns, exactly 0 in value, carrying the derivative within tied blocks.

    Args:
        S: ``(B, r, r)`` the Gram; values ``(B, r)`` and vectors ``(B, r, r)``: its eigenpairs from
            `tie_safe_eigh` (any order, the same for both); keep: ``(B, r)`` the columns kept.

    Returns:
        ``(B, r, r)``, zero outside ``keep × keep``.
    """
    E = vectors.transpose(-1, -2) @ S @ vectors - torch.diag_embed(values)
    E = E - E.detach()
    both = keep.unsqueeze(-1) & keep.unsqueeze(-2)
    return torch.where(both, E, torch.zeros_like(E))


def _finite(t: Tensor) -> Tensor:
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def inverse_sqrt_matrix(values: Tensor, keep: Tensor, within: Tensor) -> Tensor:
    """``Λ^{-1/2} + L[E]`` on the kept columns, 0 elsewhere: ``(B, r)``, ``(B, r)``, ``(B, r, r)`` → ``(B, r, r)``,
    equal in value to ``diag(λ^{-1/2})`` (the same floats as ``λ.clamp_min(tiny).rsqrt()``)."""
    floor = torch.finfo(values.dtype).tiny
    x = torch.where(keep, values.clamp_min(floor).rsqrt(), torch.zeros_like(values))
    y = torch.where(keep, values.clamp_min(floor).sqrt(), torch.ones_like(values))
    divided = -(x.unsqueeze(-1) * x.unsqueeze(-2)) / (y.unsqueeze(-1) + y.unsqueeze(-2))
    return torch.diag_embed(x) + _finite(divided) * within


def power_matrix(values: Tensor, within: Tensor, power: int, keep: Tensor) -> Tensor:
    """``Λ^p + L[E]`` for ``p = ±1`` on the kept columns: ``(B, k)``, ``(B, k, k)``, → ``(B, k, k)`` in ``values``'
    dtype, equal in value to ``diag(λ)`` (``p = 1``) or ``diag(1/λ)`` on ``keep``, 0 elsewhere (``p = −1``)."""
    if power == 1:
        return torch.diag_embed(values) + within.to(values.dtype)
    safe = torch.where(keep, values, torch.ones_like(values))
    inv = torch.where(keep, 1.0 / safe, torch.zeros_like(values))
    inv64 = inv.double()
    divided = _finite(-(inv64.unsqueeze(-1) * inv64.unsqueeze(-2)))
    return torch.diag_embed(inv) + (divided * within.to(divided.dtype)).to(values.dtype)


def scale_coords(values: Tensor, within: Tensor | None, coords: Tensor, power: int, kept: Tensor) -> Tensor:
    """``Λ^p`` times the coordinates ``(B, k)`` along the first ``k`` eigenvectors, ``p = ±1`` (``p = −1``: 0 outside
    ``kept`` ``(B, k)``); ``values`` ``(B, r)``, ``within`` ``(B, r, r)`` from `geometry.Eigenpairs`. With a gradient
    (``within`` set) ``Λ^p`` is the matrix `power_matrix`, equal in value, whose derivative is exact within tied
    eigenvalues; else the diagonal product."""
    k = coords.shape[-1]
    lam = values[..., :k]
    if within is not None:
        matrix = power_matrix(lam, within[..., :k, :k], power, kept)
        return (matrix.to(coords.dtype) @ coords.unsqueeze(-1)).squeeze(-1)
    return coords * (lam if power == 1 else _inverse(lam, kept))


def _inverse(values: Tensor, keep: Tensor) -> Tensor:
    """``1/λ`` where ``keep``, 0 elsewhere, with a finite derivative everywhere: the discarded entries divide 1,
    not ``λ`` (``where(keep, 1/λ, 0)`` back-propagates ``0 · (−1/λ²) = NaN`` through a discarded ``λ ≈ 0``)."""
    safe = torch.where(keep, values, torch.ones_like(values))
    return torch.where(keep, 1.0 / safe, torch.zeros_like(values))
