"""Timing and memory of the benchmark scripts: `time_fn` (warm-up, CUDA synchronisation, repeats, median),
`time_interleaved` (rounds, so ratios share the machine's state), peak CUDA memory and peak RSS.

Importable on every platform: peak RSS needs Unix's ``resource`` module, which is imported only when it is read
(`max_rss_bytes` returns ``None`` where it is absent, as on Windows)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Timing", "max_rss_bytes", "peak_memory", "ratio", "synchronize", "time_fn", "time_interleaved"]


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Wall times of repeated calls, in seconds.

    Attributes:
        times: each measured call.
        median: median of ``times`` (the figure reported).
        best: the fastest call.
        cold: ``True`` when a single warm-up call already exceeded the time budget and is the only figure
            (it may include one-off start-up costs).
    """

    times: list[float]
    cold: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    def to_dict(self) -> dict:
        return {"median_s": self.median, "best_s": self.best, "repeats": len(self.times), "times_s": self.times,
                "cold": self.cold}


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 2,
    repeats: int = 7,
    budget_s: float = 60.0,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then up to ``repeats`` timed ones, each bracketed by a sync.

    Args:
        fn: the work to time; its result is dropped.
        device: the device whose queue is synchronised before and after every timed call.
        warmup: untimed calls first (allocator, kernels, lazy initialisation).
        repeats: most timed calls.
        budget_s: stop repeating once the timed calls have taken this long (at least one call is timed),
            so slow baselines do not dominate a run; a warm-up call longer than this is reported alone
            (``cold=True``) instead of being repeated.

    Returns:
        `Timing` of the timed calls; report its ``median``.
    """
    for _ in range(warmup):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed > budget_s:
            return Timing([elapsed], cold=True)
    times: list[float] = []
    while len(times) < max(1, repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if sum(times) > budget_s:
            break
    return Timing(times)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup: int = 1,
    repeats: int = 7,
    budget_s: float = 60.0,
) -> dict[str, Timing]:
    """Time several callables in rounds (each once per round, in turn) so they share the machine's state.

    On a shared, noisy machine, back-to-back rounds make the ratios between the callables more trustworthy
    than timing each one in its own block. Rounds stop after ``repeats`` or once ``budget_s`` has passed
    (at least one round is run).

    Returns:
        A `Timing` per key of ``fns``.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    spent = 0.0
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            spent += elapsed
        if spent > budget_s:
            break
    return {name: Timing(t) for name, t in times.items()}


def peak_memory(fn: Callable[[], object], device: torch.device) -> dict | None:
    """Peak CUDA memory while ``fn()`` runs: ``{"peak_bytes", "extra_bytes"}``; ``None`` on CPU.

    ``extra_bytes`` is the peak minus what was allocated before the call (the work's own footprint).
    """
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_bytes": peak, "extra_bytes": peak - before}


def max_rss_bytes() -> int | None:
    """The process's peak resident set size so far (``getrusage``; a high-water mark, so deltas are approximate).

    Returns:
        Bytes, or ``None`` where Python has no ``resource`` module (Windows): the figure is then unknown.
    """
    try:
        import resource  # Unix only
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
