"""Cost of a field's evaluation: time per query point and peak GPU memory of one call (SPEC §8).

Re-exported by `learned_manifold.evaluation`, beside the scores every comparison reports.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from .metrics.base import check_count

__all__ = ["peak_memory", "time_per_query"]


def _sync(x: Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def time_per_query(fn: Callable[[Tensor], object], x: Tensor, *, repeats: int = 10, warmup: int = 2) -> float:
    """Wall-clock seconds per query point of ``fn(x)`` (SPEC §8 compares methods per query).

    ``fn`` is called ``warmup`` times untimed, then ``repeats`` times, each timed alone (CUDA is synchronised
    before and after each call when ``x`` is on a GPU); the median call time is divided by the batch size
    ``x.shape[0]``. Multiply by the batch size for the time of one batched call.

    Args:
        fn: maps a ``(B, D)`` batch to anything (e.g. ``field.factor``).
        x: ``(B, D)`` queries.
        repeats: timed calls, an integer ``≥ 1``.
        warmup: untimed calls first, an integer ``≥ 0``.

    Raises:
        ValueError: ``repeats`` or ``warmup`` is not an integer in range (a bool is not one).

    Returns:
        Seconds per query point.
    """
    repeats = check_count(repeats, "repeats", low=1)
    warmup = check_count(warmup, "warmup", low=0)
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(repeats):
        _sync(x)
        start = time.perf_counter()
        fn(x)
        _sync(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / max(x.shape[0], 1)


def peak_memory(fn: Callable[[Tensor], object], x: Tensor) -> int | None:
    """Peak extra GPU memory of one call ``fn(x)`` in bytes (SPEC §8 reports memory per evaluation).

    On CUDA: ``torch.cuda.max_memory_allocated`` during the call minus the memory allocated before it (the result
    counts while it is alive). Resets the device's peak statistics. On CPU there is no faithful allocator
    counter for torch tensors (``tracemalloc`` does not see them), so the answer is ``None``.

    Args:
        fn: maps a ``(B, D)`` batch to anything.
        x: ``(B, D)`` queries.

    Returns:
        Bytes, or ``None`` when ``x`` is not on a CUDA device.
    """
    if not x.is_cuda:
        return None
    device = x.device
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del out
    return int(peak)
