"""A backbone's output layer restricted to some columns of the factor (the shared trunk, SPEC §3–§4).

A backbone producing ``k`` columns ends in one output layer whose outputs are laid out column-major: column
``j`` of ``A`` is output rows ``[j·m, (j+1)·m)`` of a ``Linear`` (``m = D``, the MLP) or output channels
``[j·m, (j+1)·m)`` of a ``Conv2d`` (``m = C``, the UNet, SPEC §9). A model with a shared trunk holds ``r + 1``
columns (the factor's ``r`` and the denoiser's one): `head_columns` computes only the block of rows a caller
asks for, so a query of the factor or of the denoiser alone costs what a separate network's head would; in
training it can scale (or stop) the gradient that the first columns send back into the trunk.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["head_columns", "scale_gradient"]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.alpha, None


def scale_gradient(x: Tensor, alpha: float) -> Tensor:
    """``x`` in the forward pass; its gradient times ``alpha`` in the backward pass (``0``: detached)."""
    if alpha == 0:
        return x.detach()
    return x if alpha == 1 else _ScaleGradient.apply(x, alpha)


def _layer(head: nn.Linear | nn.Conv2d, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if isinstance(head, nn.Linear):
        return F.linear(h, weight, bias)
    return F.conv2d(h, weight, bias, head.stride, head.padding, head.dilation, head.groups)


def head_columns(head: nn.Linear | nn.Conv2d, h: Tensor, columns: tuple[int, int] | None, per_column: int,
                 out_channels: int, trunk_grad: tuple[int, float] | None = None) -> tuple[Tensor, int]:
    """``head(h)`` restricted to the factor columns ``[lo, hi)``, and the number of columns produced.

    Args:
        head: the backbone's output layer, ``out_channels · per_column`` outputs.
        h: its input (the trunk's features), ``(B, hidden)`` for a ``Linear`` or ``(B, c, H, W)`` for a
            ``Conv2d``.
        columns: ``(lo, hi)`` with ``0 ≤ lo < hi ≤ out_channels``, or ``None`` for all of them.
        per_column: outputs per column (``D`` rows of a ``Linear``, ``C`` channels of a ``Conv2d``).
        out_channels: ``k``, the columns the layer holds.
        trunk_grad: ``(n, α)`` (all columns only): the gradient that columns ``0..n−1`` send back into ``h`` is
            scaled by ``α`` (``0``: those columns train their rows of the layer only, and their share of the
            backward matmul into ``h`` is skipped); the other columns' is untouched.

    Returns:
        ``(out, hi − lo)``: ``(B, (hi − lo)·per_column)`` or ``(B, (hi − lo)·per_column, H, W)``; the weights
        are sliced (a view), so gradients reach exactly the rows used.
    """
    if columns is not None:
        lo, hi = columns
        if not 0 <= lo < hi <= out_channels:
            raise ValueError(f"columns must be (lo, hi) with 0 <= lo < hi <= {out_channels}, got {columns}")
        rows = slice(lo * per_column, hi * per_column)
        return _layer(head, h, head.weight[rows], None if head.bias is None else head.bias[rows]), hi - lo
    if trunk_grad is None or trunk_grad[1] == 1:
        return head(h), out_channels
    n, alpha = trunk_grad
    if not 0 < n < out_channels:
        raise ValueError(f"trunk_grad must name 0 < n < {out_channels} columns, got {n}")
    sizes = [n * per_column, (out_channels - n) * per_column]
    weights = head.weight.split(sizes)  # split, not slicing: its backward is one concatenation
    biases = (None, None) if head.bias is None else head.bias.split(sizes)
    first = _layer(head, scale_gradient(h, alpha), weights[0], biases[0])
    return torch.cat([first, _layer(head, h, weights[1], biases[1])], dim=1), out_channels
