"""The carré du champ of two functions through a low-rank co-metric factor (SPEC §5). Re-exported by
`learned_manifold.geometry`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .precision import full_precision

__all__ = ["cdc_of_functions"]


@full_precision
def cdc_of_functions(
    f: Callable[[Tensor], Tensor], g: Callable[[Tensor], Tensor] | None, x: Tensor, A: Tensor
) -> Tensor:
    """Carré du champ of two functions, ``Γ(f, g)(x) = (J_f A)(J_g A)ᵀ`` (SPEC §5, chain rule).

    ``J_f A`` is computed with ``r`` forward-mode JVPs (one per column of ``A``), never a full Jacobian.

    Args:
        f: maps ``(B, D)`` to ``(B, p)`` (or ``(B,)``), acting point-wise.
        g: maps ``(B, D)`` to ``(B, q)``; ``None`` means ``g = f``.
        x: ``(B, D)`` points.
        A: ``(B, D, r)`` factor of ``G`` at ``x``.

    Returns:
        ``(B, p, q)``.
    """

    def jac_times_factor(fn: Callable[[Tensor], Tensor]) -> Tensor:
        cols = []
        for k in range(A.shape[-1]):
            _, t = torch.func.jvp(fn, (x,), (A[..., k],))
            cols.append(t.reshape(x.shape[0], -1))
        return torch.stack(cols, dim=-1)  # (B, p, r)

    jf = jac_times_factor(f)
    jg = jf if g is None else jac_times_factor(g)
    return jf @ jg.transpose(-1, -2)
