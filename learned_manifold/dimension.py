"""Intrinsic dimension from the eigenvalues of a co-metric (SPEC §5): the pointwise largest-gap rule and its
median over points. Re-exported by `learned_manifold.geometry`."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["intrinsic_dimension", "global_dimension"]


def intrinsic_dimension(values: Tensor) -> Tensor:
    """Pointwise intrinsic dimension by the scale-free largest-gap rule (SPEC §5).

    Sort eigenvalues descending, divide by ``λ₁``, append 0; ``d = argmax_{k=1..r} (λ̃_k − λ̃_{k+1})``.

    The rule is scale-free, so it reads 1..r and never 0: a 0-dimensional set (tight clusters, a single point)
    whose eigenvalues are all tiny (``λ₁ ~ 1e-7``) or exactly 0 still reads 1 or more, and a tiny ``λ₁`` is not
    flagged. To tell "no tangent direction" apart, look at the absolute size of ``λ₁``: the CDC's tangent
    eigenvalues tend to 1 (SPEC §2), normal ones to 0.

    Args:
        values: ``(B, r)`` eigenvalues (any order).

    Returns:
        ``(B,)`` integer tensor with values in ``1..r``.
    """
    v = values.sort(dim=-1, descending=True).values
    v = v / v[..., :1].clamp_min(torch.finfo(v.dtype).tiny)
    v = torch.cat([v, torch.zeros_like(v[..., :1])], dim=-1)
    gaps = v[..., :-1] - v[..., 1:]
    return gaps.argmax(dim=-1) + 1


def global_dimension(values: Tensor) -> int:
    """Global intrinsic dimension: the lower median of the pointwise dimensions of ``values`` ``(B, r)``.

    For an even count it is the lower of the two middle dimensions (``torch.median``), not their mean: always a
    dimension some point has, and the conservative one (dimensions ``[1, 1, 2, 2]`` give 1, where
    ``quantile(0.5)`` gives 1.5).
    """
    return int(intrinsic_dimension(values).median().item())
