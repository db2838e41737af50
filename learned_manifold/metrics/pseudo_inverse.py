"""The smooth pseudo-inverse solve of a low-rank co-metric ``G = AAᵀ`` (SPEC §5): `KNNCDC.metric` for ``δ = 0``."""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import nan_rows, zero_bad_rows

__all__ = ["pinv_solve"]


def pinv_solve(A: Tensor, v: Tensor, rel_eps: float = 1e-9) -> Tensor:
    """Smooth pseudo-inverse ``A (AᵀA + εI)^{-2} Aᵀ v`` of ``G = AAᵀ``: ``(B, D, r)``, ``(B, D)`` → ``(B, D)``.

    In the eigenbasis of ``G`` this multiplies by ``λ / (λ + ε)²``: ``1/λ`` for ``λ ≫ ε`` (the pseudo-inverse of
    SPEC §5, relative error ``≈ 2ε/λ``) and ``0`` on the null space, with ``ε = rel_eps · tr(AᵀA)`` (between
    ``rel_eps · λ₁`` and ``r · rel_eps · λ₁``). The algebra runs in float64 by Cholesky, whose gradient stays
    finite for repeated (e.g. zero) eigenvalues, unlike ``eigh``'s, on the smaller side: the ``r × r`` Gram
    (cost ``O(D r² + r³)``) for ``r ≤ D``, else ``G + εI = AAᵀ + εI`` itself, by the push-through identity
    ``A (AᵀA + εI)^{-1} = (G + εI)^{-1} A =: W``, so the operator is ``W Wᵀ`` (cost ``O(D² r + D³)``; ``k = N``
    neighbours in 64 dimensions used to build an ``N × N`` Gram per query). ``W Wᵀ v``, not ``(G + εI)^{-2} G v``:
    the latter amplifies rounding in the null space of ``G`` by ``1/ε²``. Non-finite rows of ``A`` give NaN rows.
    """
    A, finite = zero_bad_rows(A)  # a NaN point's row: NaN out, not a failed Cholesky for the batch
    Ad, vd = A.double(), v.double().unsqueeze(-1)
    wide = Ad.shape[-1] > Ad.shape[-2]
    g = Ad @ Ad.transpose(-1, -2) if wide else Ad.transpose(-1, -2) @ Ad
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    eps = (rel_eps * g.diagonal(dim1=-2, dim2=-1).sum(-1)).clamp_min(1e-300)
    chol = torch.linalg.cholesky(g + eps.view(-1, 1, 1) * eye)
    if wide:
        W = torch.cholesky_solve(Ad, chol)
        return nan_rows((W @ (W.transpose(-1, -2) @ vd)).squeeze(-1).to(v.dtype), finite)
    coords = torch.cholesky_solve(torch.cholesky_solve(Ad.transpose(-1, -2) @ vd, chol), chol)
    return nan_rows((Ad @ coords).squeeze(-1).to(v.dtype), finite)
