"""`KNNCDC`'s warning for data its dtype cannot resolve at their offset from the origin (`warn_unresolved`)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import float_resolution_problem
from ..user_warnings import warn_user

__all__ = ["warn_unresolved"]


def warn_unresolved(data: Tensor, mean: Tensor, spread: float) -> None:
    """Warn (``UserWarning``, for the caller of the `KNNCDC` method that rebuilt its index) where the dtype of
    ``data`` ``(N, D)`` cannot resolve them at their offset: the trainer's check
    (`learned_manifold.checks.float_resolution_problem`) in the data's own dtype, on their ``mean`` ``(D,)`` and
    RMS ``spread`` about it. Run only for data whose mean lies farther out than their spread (`KNNCDC._index`;
    nearer, float32 and float64 resolve them); one pass over the data (`torch.aminmax`), no copy. A warning, not the
    trainer's refusal: the data given are already rounded and the field answers for them as given (the trainer
    refuses because its float32 model would round even float64 data), and a field built in code may be meant to
    show just this."""
    low, high = torch.aminmax(data, dim=0)  # (D,) each
    varying = high > low  # a constant coordinate, however large, merges nothing
    if not bool(varying.any()):
        return
    top = float(torch.maximum(low.abs(), high.abs())[varying].max())
    dtype = str(data.dtype).removeprefix("torch.")
    problem = float_resolution_problem(top, spread, torch.finfo(data.dtype).eps, f"{dtype}, the data's dtype,")
    if problem is not None:
        offset = float(mean.norm())  # read before the message (torch.compile: `landing._warn_far_landed`)
        warn_user(f"KNNCDC {problem}: the data's mean lies {offset:.3g} from the origin, and "
                  "neighbours, tangents and the neighbour graph carry that rounding (a connected curve may "
                  "read as separate clusters); build the field from float64 data, or subtract an offset (e.g. "
                  f"the mean) from the data before they are rounded to {dtype}", UserWarning)
