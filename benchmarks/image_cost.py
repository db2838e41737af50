"""The paper's Table 1 (issue 9; SPEC §9, §10): time and peak memory of one evaluation of each image geometry.

One evaluation is one draw of ``z ~ N(0, G(x))`` at one point (batch 1): metric matching (factor network),
Stein (one denoiser call) and the score Jacobian (``m`` Lanczos steps, each a JVP and a VJP through the denoiser),
with the UNet presets at MNIST, CIFAR-10, CelebA-64 and FFHQ-256 sizes, untrained (cost only).

How the numbers are taken (benchmarks/README.md, "How the numbers are taken"):

* time: `time_fn`'s median after warm-up calls, on CPU and CUDA alike;
* CUDA memory: ``torch.cuda.max_memory_allocated`` during one warm call, minus what was allocated before;
* CPU memory: each (preset, method) runs in a fresh process (forked from a ``forkserver`` that imported torch and
  ran nothing; spawned where there is no forkserver, as on Windows: `start_method`), which builds the network and
  the input, then reads the peak growth of its resident set during its first call (one-off allocations of a first
  call included). CPU memory has no allocator counter, and
  in a process that already ran something, freed memory is reused and the growth reads about 0: measured in the
  same process, the figure would record the order of the methods instead of their working memory.

A call above the memory cap, or raising out-of-memory (a fresh process killed for memory included), is OOM.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import torch

from learned_manifold.feature_stability import sample_cometric
from learned_manifold.metrics import LearnedCDC, ScoreJacobianMetric, SteinScoreMetric
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.unet import unet_preset

from .timing import max_rss_bytes, synchronize, time_fn

__all__ = ["METHODS", "measure_cpu", "run_table1", "start_method"]

METHODS = ("metric matching", "Stein", "score Jacobian")
"""The geometries of Table 1, in the order of its rows."""

SIGMA = 0.1
"""The noise level of every evaluation (cost does not depend on it)."""


def _rss() -> int:
    """The process's current resident set size in bytes (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Peak RSS growth while the block runs: sampled every 5 ms by a thread, and exact (``getrusage``'s high-water
    mark) whenever the block raises the process's peak RSS, as the first work of a fresh process does."""

    def __enter__(self) -> _PeakRSS:
        self.before = self.peak = _rss()
        self._high_before = max_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        high = max_rss_bytes()
        # the high-water mark (unknown without Unix's ``resource``) rose during the block: it is the block's exact peak
        if high is not None and self._high_before is not None and high > self._high_before:
            self.peak = max(self.peak, high)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def _build(preset_name: str, device: torch.device) -> tuple[MetricModel, torch.Tensor]:
    """The untrained, centred UNet model of a preset (seed 0, no gradients) and one input ``(1, D)``."""
    preset = unet_preset(preset_name)
    config = ModelConfig(data_shape=tuple(preset["data_shape"]), rank=preset["rank"], arch="unet",
                         arch_kwargs=preset["arch_kwargs"], centred=True)
    torch.manual_seed(0)
    model = MetricModel(config).to(device).eval().requires_grad_(False)
    return model, torch.randn(1, model.dim, device=device)


def _evaluation(model: MetricModel, x: torch.Tensor, method: str, lanczos: int):
    """One evaluation of ``method`` at ``x`` (batch 1), as a callable."""
    field = {"metric matching": LearnedCDC, "Stein": SteinScoreMetric, "score Jacobian": ScoreJacobianMetric}[method]
    field = field(model, SIGMA)

    def once() -> None:
        sample_cometric(field, x, lanczos_steps=lanczos)

    return once


OOM_TEXTS = ("out of memory", "can't allocate memory")
"""What an allocator failure raised as a plain ``RuntimeError`` says: CUDA's "out of memory", and the CPU allocator's
"DefaultCPUAllocator: can't allocate memory" (a ``RuntimeError`` in torch 2.13)."""


def _is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``),
    ``MemoryError``, or an error whose text is one of `OOM_TEXTS`. Any other error mentioning memory ("an illegal
    memory access", "unsupported memory format") is not: it is re-raised, since after a CUDA error nothing measured
    later in the process is valid."""
    if isinstance(err, (torch.OutOfMemoryError, torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return any(t in text for t in OOM_TEXTS)


def start_method() -> str:
    """How `measure_cpu` starts its fresh process: ``"forkserver"`` where the platform has it (Linux, macOS), else
    ``"spawn"`` (Windows). Both start from a process that ran nothing, so the memory figure is the method's own."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _cpu_worker(preset: str, method: str, lanczos: int, threads: int, repeats: int, budget_s: float) -> dict:
    """Run in a fresh process: the first call's peak RSS growth (also the warm-up), then `time_fn`'s median."""
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    model, x = _build(preset, device)
    once = _evaluation(model, x, method, lanczos)
    gc.collect()
    try:
        with _PeakRSS() as rss:
            once()  # the memory figure, and the warm-up call
        timing = time_fn(once, device, warmup=0, repeats=repeats, budget_s=budget_s)
    except (MemoryError, RuntimeError) as err:
        if not _is_oom(err):
            raise
        return {"seconds": None, "memory_bytes": None, "oom": True}
    return {"seconds": timing.median, "timing": timing.to_dict(), "memory_bytes": rss.growth, "oom": False}


def measure_cpu(preset: str, method: str, *, lanczos: int, repeats: int = 5, budget_s: float = 20.0) -> dict:
    """Time and peak working memory of one CPU evaluation, measured in a fresh process (see the module's docstring).

    Args:
        preset: a UNet preset (`unet_preset`).
        method: one of `METHODS`.
        lanczos: Lanczos steps of the score-Jacobian draw.
        repeats, budget_s: `time_fn`'s, after one untimed warm-up call (the memory call).

    Returns:
        ``{"seconds": median or None, "timing": Timing.to_dict(), "memory_bytes": peak RSS growth of the first call
        over the process's RSS after building the network and input, "oom": bool}``. A process killed (for memory)
        reads as OOM.
    """
    context = multiprocessing.get_context(start_method())
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload([__name__])  # the server imports torch once and runs nothing
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(_cpu_worker, preset, method, lanczos, torch.get_num_threads(), repeats,
                               budget_s).result()
        except BrokenProcessPool:
            return {"seconds": None, "memory_bytes": None, "oom": True, "killed": True}


def _measure_cuda(once, device: torch.device, repeats: int, budget_s: float) -> dict:
    """One warm-up, one call for ``max_memory_allocated``, then `time_fn`'s median (CUDA)."""
    try:
        once()  # warm-up (kernels, allocator)
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        once()
        synchronize(device)
        used = torch.cuda.max_memory_allocated(device) - before
        timing = time_fn(once, device, warmup=0, repeats=repeats, budget_s=budget_s)
    except (MemoryError, RuntimeError) as err:
        if not _is_oom(err):
            raise
        return {"seconds": None, "memory_bytes": None, "oom": True}
    return {"seconds": timing.median, "timing": timing.to_dict(), "memory_bytes": used, "oom": False}


def run_table1(
    cfg: dict,
    device: torch.device,
    cap_bytes: int,
    *,
    methods: tuple[str, ...] = METHODS,
    repeats: int = 5,
    budget_s: float = 20.0,
    on_row: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Table 1: a row per (preset in ``cfg["presets"]``, method), in that order.

    Args:
        cfg: the run's settings; reads ``presets`` and ``lanczos``.
        device: CPU (each measurement in a fresh process, `measure_cpu`) or CUDA (in this process).
        cap_bytes: a call whose memory exceeds this is reported as OOM.
        methods: which of `METHODS`, in which order (the CPU figures do not depend on it).
        repeats, budget_s: `time_fn`'s.
        on_row: called with the rows so far after every row (`benchmarks.images` rewrites its report there, so a
            run the GPU suite stops at its cap keeps the rows it finished).

    Returns:
        Rows ``{"preset", "D", "method", "seconds", "timing", "memory_bytes", "oom"}``.
    """
    rows = []
    for name in cfg["presets"]:
        dim = int(torch.Size(unet_preset(name)["data_shape"]).numel())
        if device.type == "cuda":
            model, x = _build(name, device)
        for method in methods:
            if device.type == "cuda":
                row = _measure_cuda(_evaluation(model, x, method, cfg["lanczos"]), device, repeats, budget_s)
            else:
                row = measure_cpu(name, method, lanczos=cfg["lanczos"], repeats=repeats, budget_s=budget_s)
            if row["memory_bytes"] is not None and row["memory_bytes"] > cap_bytes:
                row["oom"] = True
            rows.append({"preset": name, "D": dim, "method": method, **row})
            if on_row is not None:
                on_row(rows)
        if device.type == "cuda":
            del model, x
            torch.cuda.empty_cache()
    return rows
